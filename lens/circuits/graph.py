"""The graph of a circuit: its writers (the embedding, every head, every MLP), its readers (each block's attention
and MLP, the logits) and which edges exist, in the order the model computes them. Plain numpy (no torch): the
pages size their controls from it."""
from __future__ import annotations

import numpy as np


class Graph:
    """The writers, readers and which edges exist, for L blocks of H heads."""

    def __init__(self, n_layers: int, n_heads: int):
        L, H = n_layers, n_heads
        self.L, self.H = L, H
        self.writers: list[str] = ["emb"]
        self.writer_layer = [0]  # the block a writer belongs to (0: the embedding)
        self.writer_reader: list[int | None] = [None]  # the reader whose input the writer computes from
        self.readers: list[str] = []
        self.reader_site: list[str] = []
        self.head_index: dict[int, list[int]] = {}  # block -> its heads' writer indices
        self.mlp_index: dict[int, int] = {}
        for l in range(1, L + 1):
            self.readers += [f"a{l}", f"m{l}"]
            self.reader_site += [f"attn_in.{l}", f"mlp_in.{l}"]
            self.head_index[l] = list(range(len(self.writers), len(self.writers) + H))
            self.writers += [f"a{l}.h{h}" for h in range(H)]
            self.writer_layer += [l] * H
            self.writer_reader += [2 * (l - 1)] * H
            self.mlp_index[l] = len(self.writers)
            self.writers.append(f"m{l}")
            self.writer_layer.append(l)
            self.writer_reader.append(2 * (l - 1) + 1)
        self.readers.append("logits")
        self.reader_site.append(f"resid_post.{L}")
        U, R = len(self.writers), len(self.readers)
        # Writers computed before each reader: a prefix of the writers, in the order the model computes them.
        self.before = np.empty(R, int)
        for l in range(1, L + 1):
            self.before[2 * (l - 1)] = self.head_index[l][0]  # attention l: everything of blocks < l
            self.before[2 * (l - 1) + 1] = self.mlp_index[l]  # MLP l: … and the heads of block l
        self.before[R - 1] = U
        self.valid = np.arange(U)[:, None] < self.before[None, :]  # [U, R]

    def reader_writers(self, v: int) -> list[int]:
        """The writers that compute from reader ``v``'s input (none for the logits)."""
        if v == len(self.readers) - 1:
            return []
        l = v // 2 + 1
        return self.head_index[l] if v % 2 == 0 else [self.mlp_index[l]]

    def prune(self, edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The edges left once what cannot reach the logits, or cannot be reached from the embedding, is dropped
        (neither changes the circuit's metric: such an edge carries nothing that arrives, or carries no change)."""
        kept = list(edges)
        while True:
            sink = len(self.readers) - 1
            alive = {sink}  # readers whose input reaches the logits
            changed = True
            while changed:
                changed = False
                for u, v in kept:
                    r = self.writer_reader[u]
                    if v in alive and r is not None and r not in alive:
                        alive.add(r)
                        changed = True
            useful = [(u, v) for u, v in kept if v in alive]
            reached = {0}  # writers whose value can differ from the corrupted run's
            changed = True
            while changed:
                changed = False
                for u, v in useful:
                    if u in reached:
                        for w in self.reader_writers(v):
                            if w not in reached:
                                reached.add(w)
                                changed = True
            out = [(u, v) for u, v in useful if u in reached]
            if out == kept:
                return out
            kept = out
