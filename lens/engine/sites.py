"""Named sites: the places of a model where a tool reads, writes or differentiates an activation.

Layers in site names are 1-based blocks, as the lens rows and the pages count them:

=================  ==========================================================  ===================
site               what it holds                                               shape (batch first)
=================  ==========================================================  ===================
``resid_pre.l``    the residual stream entering block l (``resid_pre.1``:      [B, T, d]
                   the embeddings; lens row l − 1)
``resid_post.l``   the residual stream leaving block l (lens row l)            [B, T, d]
``attn_in.l``      what block l's attention reads: its norm's input (the       [B, T, d]
                   stream entering block l as a tensor of its own, so an
                   edit reaches the attention only, not the skip past it)
``mlp_in.l``       what block l's MLP reads: its norm's input (the stream      [B, T, d]
                   after attention; an edit reaches the MLP only)
``attn_out.l``     what block l's attention adds to the residual stream        [B, T, d]
``mlp_out.l``      what block l's MLP adds to the residual stream              [B, T, d]
``head_out.l``     every head's output of block l, before the output           [B, T, H·head_dim]
                   projection mixes them (head h: columns h·hd … (h+1)·hd)
``mlp_act.l``      block l's MLP neurons (the down projection's input)         [B, T, N]
``attn_pattern.l`` block l's attention weights (read only; eager attention)    [B, H, T, T]
``attn_mask.l``    block l's attention mask (write only): True where a query   [B, 1, T, T] bool
                   row may read a key column; the edit returns such a mask
                   ([B, 1 or H, T, T]), applied before the softmax (eager or
                   SDPA attention): an edge set False is knocked out
``value.l``        block l's value vectors (read only)                         [B, T, KV, head_dim]
``q_proj.l``       block l's query projection's output, before rotary          [B, T, H·head_dim]
                   positions (models with separate q, k, v projections)
``k_proj.l``       … its key projection's output, before rotary positions      [B, T, KV·head_dim]
``v_proj.l``       … its value projection's output (``value.l`` as a site      [B, T, KV·head_dim]
                   that can also be written and differentiated)
``block.l``        block l as a whole (write only: the edit gets the block's   [B, T, d]
                   output and may return its input, or another block's output)
``final_norm``     the final norm's output (what the unembedding reads)        [B, T, d]
``logits``         the model's output logits                                   [B, T, V]
=================  ==========================================================  ===================

``embed`` names ``resid_pre.1``. The adapter (lens/model/adapters.py) knows where each site
lives in each architecture; ``locate`` turns a name into the module and the side of its call
(input or output) that holds the activation, the one place engines learn it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LensError
from ..model.adapters import Adapter

PER_BLOCK = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head_out", "mlp_act", "attn_pattern", "value",
             "block", "attn_mask")
WHOLE_MODEL = ("final_norm", "logits")
READ_ONLY = ("attn_pattern", "value")
WRITE_ONLY = ("block", "attn_mask")
# Within one block, the order in which the model computes the sites (engines that must read in
# execution order, such as nnsight's, visit them so).
ORDER = {"resid_pre": 0, "attn_mask": 1, "value": 1, "head_out": 2, "attn_pattern": 3, "attn_out": 4, "mlp_act": 5, "mlp_out": 6,
         "resid_post": 7, "block": 8}
# Each sub-block's own input, at its norm's call (circuits give each reader an input of its own).
PER_BLOCK += ("attn_in", "mlp_in")
ORDER.update(attn_in=0.5, mlp_in=4.5)
# The query, key and value projections' outputs (circuits give each head's q, k and v an input of its own).
PER_BLOCK += ("q_proj", "k_proj", "v_proj")
ORDER.update(q_proj=0.6, k_proj=0.7, v_proj=0.8)


@dataclass(frozen=True)
class Site:
    """A parsed site name: ``kind`` and, for per-block sites, the 1-based ``layer``."""

    kind: str
    layer: int | None = None

    @staticmethod
    def kind_of(name: str) -> str:
        return "resid_pre" if name == "embed" else str(name).partition(".")[0]

    @property
    def name(self) -> str:
        return self.kind if self.layer is None else f"{self.kind}.{self.layer}"

    @property
    def block(self) -> int | None:
        """The 0-based block index (None for whole-model sites)."""
        return None if self.layer is None else self.layer - 1

    def order(self, n_layers: int) -> tuple[int, int]:
        """Sort key: the order in which a forward pass reaches this site."""
        if self.layer is None:
            return (n_layers + 1, WHOLE_MODEL.index(self.kind))
        return (self.layer, ORDER[self.kind])


def parse(name: str, n_layers: int) -> Site:
    """The Site ``name`` names on a model of ``n_layers`` blocks; a LensError says what is wrong."""
    if name == "embed":
        return Site("resid_pre", 1)
    if name in WHOLE_MODEL:
        return Site(name)
    kind, _, layer = str(name).partition(".")
    if kind not in PER_BLOCK:
        raise LensError(f"unknown site {name!r}: sites are {', '.join(k + '.L' for k in PER_BLOCK)}, "
                        f"{', '.join(WHOLE_MODEL)} and embed")
    if not layer.isdigit() or not 1 <= int(layer) <= n_layers:
        raise LensError(f"site {name!r} names no block of this model: give {kind}.1 … {kind}.{n_layers}")
    return Site(kind, int(layer))


def resid(row: int) -> str:
    """The site of lens row ``row`` (0: the embeddings; r: the output of block r)."""
    return "resid_pre.1" if row == 0 else f"resid_post.{row}"


def resid_rows(n_layers: int) -> list[str]:
    """The sites of every lens row, row 0 first."""
    return [resid(r) for r in range(n_layers + 1)]


@dataclass(frozen=True)
class Location:
    """Where a site's activation is: ``module``'s first input (``side="input"``) or first output."""

    module: object
    side: str  # input | output | mask (the attention mask the module is called with)
    flat: bool = False  # the module works on [B·T, *] (OPT's MLP): reshape to [B, T, *] around it


def locate(site: Site, adapter: Adapter) -> Location:
    """The module and side holding ``site``'s activation; a LensError where the model has no such place."""
    i, kind = site.block, site.kind
    a = adapter
    if kind == "resid_pre":
        return Location(a.blocks[i], "input")
    if kind in ("resid_post", "block"):
        return Location(a.blocks[i], "output")
    if kind in ("attn_out", "mlp_out"):
        if a.spec.is_encoder:
            raise LensError(f"{a.model_type} normalises after each sub-block (post-LN): its attention and MLP "
                            "outputs are not additive writes to a residual stream")
        return Location(a.attn_write[i] if kind == "attn_out" else a.mlp_write[i], "output", flat=kind == "mlp_out")
    if kind in ("attn_in", "mlp_in"):
        norm = (a.attn_norm if kind == "attn_in" else a.mlp_norm)[i]
        # A norm both sub-blocks read (Phi's parallel block) is no input of the attention's own.
        if norm is None or a.post_ln or a.mlp_norm[i] is None:
            raise LensError(f"{a.model_type} has no {kind.replace('_', ' ')} site: its attention and MLP read "
                            "no norm each of their own")
        return Location(norm, "input", flat=kind == "mlp_in")
    if kind == "attn_pattern":
        return Location(a.attn[i], "output")
    if kind == "attn_mask":
        return Location(a.attn[i], "mask")
    if kind in ("head_out", "mlp_act", "value"):
        mods = {"head_out": a.out_proj, "mlp_act": a.down_proj, "value": a.value_proj}[kind]
        if not mods:
            raise LensError(f"{a.model_type} has no {kind.replace('_', ' ')} site: {a.routes_unavailable()}")
        return Location(mods[i], "output" if kind == "value" else "input", flat=kind == "mlp_act")
    if kind in ("q_proj", "k_proj", "v_proj"):
        mods = {"q_proj": a.query_proj, "k_proj": a.key_proj, "v_proj": a.separate_value_proj}[kind]
        if not mods:
            raise LensError(f"{a.model_type} has no {kind.replace('_', ' ')} site: its queries, keys and values "
                            "do not come out of separate projections")
        return Location(mods[i], "output")
    if kind == "final_norm":
        if a.final_norm is None:
            raise LensError(f"{a.model_type} has no final norm")
        return Location(a.final_norm, "output")
    raise LensError(f"the site {site.name} is not a module's input or output")  # logits: the run's own output
