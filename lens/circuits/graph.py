"""The graph of a circuit: its writers (the embedding, every head, every MLP), its readers (each block's attention
and MLP, the logits) and which edges exist, in the order the model computes them. Plain numpy (no torch): the
pages size their controls from it."""
from __future__ import annotations

import numpy as np


class Graph:
    """The writers, readers and which edges exist, for L blocks of H heads.

    ``kv_heads`` None: each block's attention is one reader (``a{l}``: its heads share one input, the residual
    stream at their norm). A number: every head's query is a reader of its own (``a{l}.h{h}.q``) and so are the
    keys and the values of each of the ``kv_heads`` key/value heads (``a{l}.kv{g}.k``, ``a{l}.kv{g}.v``; with
    grouped-query attention a key/value head serves H / kv_heads query heads)."""

    def __init__(self, n_layers: int, n_heads: int, kv_heads: int | None = None):
        L, H = n_layers, n_heads
        self.L, self.H, self.kv_heads = L, H, kv_heads
        self.writers: list[str] = ["emb"]
        self.writer_layer = [0]  # the block a writer belongs to (0: the embedding)
        self.writer_readers: list[list[int]] = [[]]  # the readers whose inputs the writer computes from
        self.readers: list[str] = []
        self.reader_site: list[str] = []  # the site holding the reader's input (per-head readers: their block's)
        self.reader_part: list[tuple[str, int] | None] = []  # per-head readers: ("q", head) or ("k"/"v", kv head)
        self.head_index: dict[int, list[int]] = {}  # block -> its heads' writer indices
        self.mlp_index: dict[int, int] = {}
        self.attn_readers: dict[int, list[int]] = {}  # block -> its attention's readers
        self.mlp_reader: dict[int, int] = {}
        before: list[int] = []
        group = H // kv_heads if kv_heads else H
        for l in range(1, L + 1):
            first_head = len(self.writers)
            heads = list(range(first_head, first_head + H))
            parts = [None] if kv_heads is None else (
                [("q", h) for h in range(H)] + [(p, g) for p in ("k", "v") for g in range(kv_heads)])
            self.attn_readers[l] = []
            for part in parts:
                self.attn_readers[l].append(len(self.readers))
                self.readers.append(f"a{l}" if part is None else
                                    f"a{l}.h{part[1]}.q" if part[0] == "q" else f"a{l}.kv{part[1]}.{part[0]}")
                self.reader_site.append(f"attn_in.{l}")
                self.reader_part.append(part)
                before.append(first_head)
            self.mlp_reader[l] = len(self.readers)
            self.readers.append(f"m{l}")
            self.reader_site.append(f"mlp_in.{l}")
            self.reader_part.append(None)
            before.append(first_head + H)
            self.head_index[l] = heads
            self.writers += [f"a{l}.h{h}" for h in range(H)]
            self.writer_layer += [l] * H
            for h in range(H):
                self.writer_readers.append([v for v, part in zip(self.attn_readers[l], parts)
                                            if part is None or part == ("q", h) or
                                            (part[0] in "kv" and part[1] == h // group)])
            self.mlp_index[l] = len(self.writers)
            self.writers.append(f"m{l}")
            self.writer_layer.append(l)
            self.writer_readers.append([self.mlp_reader[l]])
        self.readers.append("logits")
        self.reader_site.append(f"resid_post.{L}")
        self.reader_part.append(None)
        U = len(self.writers)
        before.append(U)
        # Writers computed before each reader: a prefix of the writers, in the order the model computes them.
        self.before = np.array(before, int)
        self.valid = np.arange(U)[:, None] < self.before[None, :]  # [U, R]
        self._reader_writers = [[] for _ in self.readers]
        for u, rs in enumerate(self.writer_readers):
            for r in rs:
                self._reader_writers[r].append(u)

    @property
    def per_head(self) -> bool:
        return self.kv_heads is not None

    def reader_writers(self, v: int) -> list[int]:
        """The writers that compute from reader ``v``'s input (none for the logits)."""
        return self._reader_writers[v]

    @staticmethod
    def of(info) -> "Graph":
        """The graph of a model (its ModelInfo): per-head query, key and value readers where its q, k and v
        projections are sites of their own, else one reader per attention block."""
        return Graph(info.n_layers, info.n_heads, info.n_kv_heads if info.has_qkv_sites else None)

    def greedy_order(self, key: np.ndarray) -> np.ndarray:
        """Every edge's index (into ``np.nonzero(self.valid)``), in the order a circuit grown from the logits takes
        them: each step adds the edge of largest ``key`` whose reader already matters (the logits, or a reader of
        a writer taken before), so every prefix reaches the logits. Ties: the order computed."""
        import heapq

        u, v = np.nonzero(self.valid)
        by_reader: list[list[int]] = [[] for _ in self.readers]
        for i, r in enumerate(v):
            by_reader[r].append(i)
        heap: list[tuple[float, int]] = []
        active = [False] * len(self.readers)

        def activate(r: int) -> None:
            if not active[r]:
                active[r] = True
                for i in by_reader[r]:
                    heapq.heappush(heap, (-float(key[i]), i))
        activate(len(self.readers) - 1)
        taken = [False] * len(self.writers)  # per writer: its readers activated
        order = []
        while heap:
            _, i = heapq.heappop(heap)
            order.append(i)
            w = int(u[i])
            if not taken[w]:
                taken[w] = True
                for r in self.writer_readers[w]:
                    activate(r)
        return np.asarray(order, dtype=np.int64)

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
                    if v in alive:
                        for r in self.writer_readers[u]:
                            if r not in alive:
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
