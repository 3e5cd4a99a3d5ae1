"""``HookEngine``: runs a model in this process, with PyTorch hooks placed for one run at a time.

This is the one place LayerLens puts hooks on a model. ``run`` places them on the modules
the named sites resolve to and removes them afterwards. Patching runs need not start at
the beginning: ``record`` keeps, for one plain pass, every block's input and the arguments
the model gave it, and ``resume`` runs only the blocks from the first one written, on a
batch of copies (lens/engine/packed.py packs many residual patches into one call).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import sys
import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import AttentionWeightsUnavailable, LensError
from ..jobs import checkpoint
from ..model.adapters import Adapter
from .base import (HEAD_MEANS, Capabilities, Edit, Metric, Positions, Read, Readout, Reduce, RunOutput, SiteCall,
                   head_mean_lower)
from .sites import Location, Site, locate, parse, resid_rows


@contextlib.contextmanager
def attention_implementation(model, wanted: str):
    """Run with ``wanted`` attention ("sdpa", "eager" or ``ROWS``), then restore the model's own.

    Only eager attention returns the weights, and it builds every [heads, T, T] score
    matrix; a pass that keeps no weights uses PyTorch's fused SDPA instead (at 2048
    tokens several times faster and without the T² memory). Models that cannot switch
    stay as they are.
    """
    current = getattr(model.config, "_attn_implementation", None)
    if current == wanted or current not in ("eager", "sdpa") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    try:
        model.set_attn_implementation(wanted)
    except Exception:  # this architecture has no SDPA path: stay eager
        yield
        return
    try:
        yield
    finally:
        model.set_attn_implementation(current)


# Head-averaged attention (``Read(map=head_mean)`` at ``attn_pattern.l``) comes from a pass under an attention
# implementation of this name: each attention calls the model's own eager attention function on blocks of query rows
# (the same numbers as an eager pass) and keeps only their mean over heads, so no [heads, T, T] score matrix is ever
# held (every layer's would be 4.5 GB at 2048 tokens on the bundled model; one layer's, 2 × 151 MB at a time).
ROWS = "layerlens_rows"
# One block's [B, H, rows, T] scores: 4 MiB (56 rows at 2048 tokens, 9 heads). Small blocks are as fast as large
# ones here, and the C heap keeps (does not give back) a few blocks' worth of freed scores: at 16 MiB that held
# ~0.1 GB more through a 2048-token pass.
ROW_BLOCK_BYTES = 2**22
# id() of each attention module whose head mean a run keeps, while it runs -> (where to write it, or None; whether
# as the lower triangle, ``head_mean_lower``): [B, T, T] or [B, T(T+1)/2] (or a tensor of as many numbers: the read's
# ``into``)
_row_means: dict[int, tuple[torch.Tensor | None, bool]] = {}
_rows_registered: bool | None = None


def _own_eager(module):
    """The eager attention function of ``module``'s modelling file (what eager attention runs), or None."""
    return getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)


def _all_masked(mask: torch.Tensor) -> bool:
    return not bool(mask.any()) if mask.dtype == torch.bool else bool((mask <= torch.finfo(mask.dtype).min / 2).all())


def _kept(into: torch.Tensor | None, shape: tuple, device) -> torch.Tensor:
    """``into`` viewed as ``shape`` when it fits, else a new float32 tensor of that shape."""
    ok = into is not None and into.numel() == math.prod(shape) and into.dtype == torch.float32 and into.is_contiguous()
    return into.view(shape) if ok else torch.empty(shape, dtype=torch.float32, device=device)


def rows_attention(module, query, key, value, attention_mask, **kwargs):
    """The model's eager attention, ``ROW_BLOCK_BYTES`` of scores at a time: returns the output and, for the modules
    in ``_row_means``, the weights' mean over heads, written where ``_row_means`` says: [B, 1, T, T], or as the lower
    triangle [B, 1, T(T+1)/2] (None for the other modules)."""
    eager = _own_eager(module)
    B, H, T, _ = query.shape
    Tk = key.shape[2]
    rows = max(1, ROW_BLOCK_BYTES // (4 * B * H * Tk))
    keep = id(module) in _row_means
    mean = None
    lower = False
    if keep:
        into, lower = _row_means[id(module)]
        if lower and Tk != T:
            raise LensError(f"a lower-triangle head mean needs as many keys as queries ({Tk} keys, {T} queries)")
        mean = _kept(into, (B, T * (T + 1) // 2) if lower else (B, T, Tk), query.device)
    out = None
    for r0 in range(0, T, rows):
        r1 = min(T, r0 + rows)
        mask = attention_mask
        if mask is not None and mask.shape[-2] > 1:
            mask = mask[:, :, r0:r1]
        n = Tk
        # Keys that every row of the block is masked from (a causal model's later positions) get a weight of
        # exactly 0 after the softmax: leaving them out changes no number and halves a causal pass's work.
        if mask is not None and r1 < Tk and _all_masked(mask[..., r1:Tk]):
            n, mask = r1, mask[..., :r1]
        o, w = eager(module, query[:, :, r0:r1], key[:, :, :n], value[:, :, :n], mask, **kwargs)
        if out is None:
            out = o.new_empty(B, T, *o.shape[2:])
        out[:, r0:r1] = o
        if not keep:
            continue
        m = w.float().mean(1)  # [B, rows, n]
        if not lower:
            mean[:, r0:r1, :n] = m
            mean[:, r0:r1, n:] = 0.0
            continue
        # Row i keeps keys 0..i: the block's rows one after another, as the packed triangle holds them. Only the
        # block's own square (and any keys past it) can hold a weight above the diagonal.
        square = m[:, :, r0:r1]
        if n > r1 and bool(m[:, :, r1:].any()) or bool(square.triu(1).any()):
            raise LensError("this model's attention looks ahead (a weight above the diagonal): its head means "
                            "cannot be kept as lower triangles")
        mean[:, r0 * (r0 + 1) // 2: r1 * (r1 + 1) // 2] = m[:, :, :r1].reshape(B, -1).index_select(
            1, _block_cells(r0, r1, m.device))
    return out, (None if mean is None else mean[:, None])


_cells: dict[tuple[int, int, str], torch.Tensor] = {}


def _block_cells(r0: int, r1: int, device) -> torch.Tensor:
    """The flat indices, in a block's [r1 - r0, r1] weights, of the cells on and below the diagonal (row i: keys
    0..i), row after row. Every layer of a run has the same blocks: found once per run (a boolean mask finds them
    anew each call)."""
    key = (r0, r1, str(device))
    cells = _cells.get(key)
    if cells is None:
        below = torch.ones(r1 - r0, r1, dtype=torch.bool, device=device).tril_(r0)
        cells = _cells[key] = below.view(-1).nonzero().squeeze(1).int()  # int32: half the memory
    return cells


def _rows_ready(model, adapter: Adapter) -> bool:
    """Whether ``model`` can run under ``ROWS`` (registered with transformers once; eager masks)."""
    global _rows_registered
    register = getattr(model, "register_attention", None)  # the plain model (lens/model/plain_llama.py) keeps its own
    if register is not None:
        register(ROWS, rows_attention, mask="additive")
        return (getattr(model.config, "_attn_implementation", None) in ("eager", "sdpa")
                and all(_own_eager(m) is not None for m in adapter.attn))
    if _rows_registered is None:
        try:
            from transformers import AttentionInterface
            from transformers.masking_utils import AttentionMaskInterface, eager_mask

            AttentionInterface.register(ROWS, rows_attention)
            AttentionMaskInterface.register(ROWS, eager_mask)
            _rows_registered = True
        except Exception:  # an older transformers: eager attention, whole
            _rows_registered = False
    return bool(_rows_registered and hasattr(model, "set_attn_implementation")
                and getattr(model.config, "_attn_implementation", None) in ("eager", "sdpa")
                and all(_own_eager(m) is not None for m in adapter.attn))


def first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _replace_first(out, x):
    return (x, *out[1:]) if isinstance(out, tuple) else x


def is_cache(value) -> bool:
    """A model's cache of keys and values: the plain model's, or transformers' (whose module is imported wherever
    one of its caches exists, so a model that never imported it is not made to)."""
    from ..model.plain_llama import KVCache

    cache_utils = sys.modules.get("transformers.cache_utils")
    return isinstance(value, KVCache) or (cache_utils is not None and isinstance(value, cache_utils.Cache))


def _batched(value, n: int):
    """A recorded argument for a batch of ``n``: tensors with a batch dimension of 1 expanded."""
    if isinstance(value, torch.Tensor):
        return value.expand(n, *value.shape[1:]) if value.dim() and value.shape[0] == 1 else value
    if isinstance(value, tuple):
        return tuple(_batched(v, n) for v in value)
    if isinstance(value, list):
        return [_batched(v, n) for v in value]
    return value


@dataclass
class Recording:
    """One plain pass that later runs can resume: every block's input and call, and its cache."""

    token_ids: list[int]
    residual: torch.Tensor  # [L+1, T, d]: row 0 the input of block 1, row l the output of block l
    calls: list[tuple[tuple, dict]]  # per block: the positional and keyword arguments after the hidden state
    last_logits: torch.Tensor  # [V] the model's own logits at the last position
    reads: dict[str, torch.Tensor]  # the other sites asked for (batch of 1 dropped)
    keys_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per block: its attention's keys, values
    cache_names: list[list[str]] | None = None  # per block: the keyword its cache came by ("past_key_values", ...)

    @property
    def n_tokens(self) -> int:
        return self.residual.shape[1]


class _Placement:
    """The hooks of one run: reads, writes and live values (for gradients) at resolved sites."""

    def __init__(self, engine: "HookEngine", batch: int, tokens: int, read, write, keep_live: bool):
        self.engine, self.B, self.T = engine, batch, tokens
        a = engine.adapter
        L = a.n_layers
        self.reads: dict[str, torch.Tensor] = {}
        self.live: dict[str, torch.Tensor] = {}
        self.live_shape: dict[str, torch.Size] = {}
        self.keep_live = keep_live
        self.start = 0  # the position of this call's first row (generation on a cache moves it on)
        self.read = {parse(k, L).name: (v if isinstance(v, Read) else Read(positions=v)) for k, v in (read or {}).items()}
        self.write = {parse(k, L).name: v for k, v in (write or {}).items()}
        for name in self.read:
            if Site.kind_of(name) == "block":
                raise LensError(f"{name} is a whole block: read resid_post.{name.split('.')[1]} instead")
            if Site.kind_of(name) == "attn_mask":
                raise LensError(f"{name} can be written, not read")
        for name in self.write:
            if Site.kind_of(name) in ("attn_pattern", "value"):
                raise LensError(f"{name} can be read, not written")
        # Group the sites by module and side: one hook each.
        self.groups: dict[tuple[int, str], list[tuple[Site, Location]]] = {}
        for name in list(self.write) + [n for n in self.read if n not in self.write]:
            site = parse(name, L)
            if site.kind == "logits":
                continue
            loc = locate(site, a)
            self.groups.setdefault((id(loc.module), loc.side), []).append((site, loc))
        patterns = [n for n in self.read if Site.kind_of(n) == "attn_pattern"]
        self.eager = bool(patterns)
        # Only head means read: the attention modules that keep theirs under ROWS (see rows_attention), with their
        # submodules (BERT's attention calls the attention function from a module inside it).
        self.row_means = ({id(m): (self.read[n].into, self.read[n].map is head_mean_lower)
                           for n in patterns for m in locate(parse(n, L), a).module.modules()}
                          if patterns and all(self.read[n].map in HEAD_MEANS for n in patterns) else None)

    def _as_bt(self, x: torch.Tensor, loc: Location) -> torch.Tensor:
        return x.reshape(self.B, -1, x.shape[-1]) if loc.flat else x

    def _keep(self, name: str, x: torch.Tensor, live: torch.Tensor | None = None) -> None:
        spec = self.read.get(name)
        if spec is None:
            return
        if self.keep_live:
            # The tensor the model goes on with (a flat site's [B·T, *], not a reshaped view of it, whose
            # gradient would be zero), and the shape its gradient is given in.
            self.live[name] = x if live is None else live
            self.live_shape[name] = x.shape
        y = x if spec.positions is None else x[:, spec.positions]
        y = y.detach()
        if spec.map in HEAD_MEANS and y.dim() == (3 if spec.map is head_mean_lower else 4) and y.shape[1] == 1:
            y = y[:, 0].float()  # the mean over heads already (rows_attention's), perhaps in ``into`` itself
        elif spec.map is not None:
            if spec.map is head_mean_lower and bool(y.triu(1).any()):
                raise LensError(f"{name} looks ahead (a weight above the diagonal): its head means cannot be kept "
                                "as lower triangles")
            y = spec.map(y.float())
        if spec.into is not None:
            if y.data_ptr() != spec.into.data_ptr():
                spec.into.copy_(y.reshape(spec.into.shape))
            self.reads[name] = spec.into
        else:
            self.reads[name] = y.float()

    def _apply(self, site: Site, loc: Location, x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        edit = self.write.get(site.name)
        if edit is None:
            return x
        shape = x.shape
        y = edit(self._as_bt(x, loc), call)
        return y.reshape(shape).to(x.dtype) if loc.flat else y.to(x.dtype)

    def install(self) -> list:
        a = self.engine.adapter
        handles = []
        for (_, side), sites in self.groups.items():
            module = sites[0][1].module
            # block.l before resid_post.l: a replaced block's output is what the stream carries on
            sites = sorted(sites, key=lambda s: 0 if s[0].kind == "block" else 1)
            if side == "input":
                handles.append(module.register_forward_pre_hook(self._pre(sites), with_kwargs=True))
            elif side == "mask":
                handles.append(module.register_forward_pre_hook(self._mask(sites), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(self._post(sites, a), with_kwargs=True))
        return handles

    def _pre(self, sites):
        def hook(module, args, kwargs):
            x0 = args[0] if args else kwargs["hidden_states"]
            x = x0
            for site, loc in sites:
                x = self._apply(site, loc, x, SiteCall(site, start=self.start))
                self._keep(site.name, self._as_bt(x, loc), live=x)
            if x is x0:
                return None
            return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})
        return hook

    def _mask(self, sites):
        """``attn_mask.l``: the edit gets the mask the attention module was called with as a boolean [B or 1, 1, T, T]
        (True: the query row may read the key column; no mask: causal) and returns one; the module then gets it as an
        additive mask (0, or the dtype's lowest number: the score's weight after the softmax is 0), which eager and
        SDPA attention both read. A mask returned unchanged (the same object) leaves the call as it was."""
        implementation = getattr(self.engine.model.config, "_attn_implementation", None)

        def hook(module, args, kwargs):
            if implementation not in ("eager", "sdpa", ROWS):
                raise LensError(f"attention masks are edited under eager or SDPA attention, not {implementation}")
            hidden = args[0] if args else kwargs["hidden_states"]
            T = hidden.shape[1]
            given, put = _mask_argument(module, args, kwargs)
            if given is None:
                allowed = torch.ones(T, T, dtype=torch.bool, device=hidden.device)
                allowed = (allowed.tril() if self.engine.adapter.is_causal else allowed)[None, None]
            elif given.dtype == torch.bool:
                allowed = given[..., :T, :T]
            else:  # additive: 0 where allowed, a large negative number where not
                allowed = given[..., :T, :T] > torch.finfo(given.dtype).min / 2
            x = allowed
            for site, _ in sites:
                x = self.write[site.name](x, SiteCall(site))
            if x is allowed:
                return None
            additive = torch.zeros(x.shape, dtype=hidden.dtype, device=hidden.device)
            return put(additive.masked_fill(~x.bool(), torch.finfo(hidden.dtype).min))
        return hook

    def _post(self, sites, adapter: Adapter):
        def hook(module, args, kwargs, out):
            x0 = first(out)
            x = x0
            for site, loc in sites:
                if site.kind == "attn_pattern":
                    w = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
                    if w is None:
                        raise AttentionWeightsUnavailable(
                            f"{adapter.model_type} returned no attention weights (it must run with eager attention)")
                    self._keep(site.name, w)
                    continue
                if site.kind == "value":
                    self._keep(site.name, torch.stack([adapter.values_from_output(x[b:b + 1])
                                                       for b in range(x.shape[0])]))
                    continue
                call = SiteCall(site, start=self.start)
                if site.kind == "block":
                    hidden = args[0] if args else kwargs["hidden_states"]
                    call = SiteCall(site, input=hidden, run_block=lambda layer, args=args, kwargs=kwargs:
                                    first(adapter.blocks[layer - 1].forward(*args, **kwargs)))  # .forward: no hooks
                x = self._apply(site, loc, x, call)
                self._keep(site.name, self._as_bt(x, loc), live=x)
            return None if x is x0 else _replace_first(out, x)
        return hook


def _mask_argument(module, args, kwargs):
    """The attention mask a module is called with, and a function giving the hook's return value with another."""
    if "attention_mask" not in kwargs:
        names = [n for n in inspect.signature(module.forward).parameters]
        i = names.index("attention_mask") if "attention_mask" in names else None
        if i is not None and i < len(args):
            return args[i], lambda m: ((*args[:i], m, *args[i + 1:]), kwargs)
    return kwargs.get("attention_mask"), lambda m: (args, {**kwargs, "attention_mask": m})


def _keeps_some_logits(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class HookEngine:
    """Runs ``model`` here; ``adapter`` says where its sites are."""

    def __init__(self, model, adapter: Adapter):
        self.model, self.adapter = model, adapter
        self.capabilities = Capabilities(where="on this machine")
        # Hooks live on shared modules: one run at a time per model.
        self.lock = threading.RLock()
        self._some_logits = _keeps_some_logits(model)

    @classmethod
    def of(cls, loaded) -> "HookEngine":
        return cls(loaded.model, loaded.adapter)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    def readout_modules(self) -> Readout:
        a = self.adapter
        return Readout(a.final_norm, a.project_out, a.unembed, a.softcap)

    def _ids(self, ids) -> torch.Tensor:
        t = torch.as_tensor(ids if not isinstance(ids, torch.Tensor) else ids, device=self.device)
        return t[None] if t.dim() == 1 else t

    # ------------------------------------------------------------ one whole pass

    def run(self, ids, read: Mapping[str, Read | Positions] | None = None, write: Mapping[str, Edit] | None = None,
            grad_of: Metric | None = None, logits: str = "last", reduce: Reduce | None = None,
            progress=None) -> RunOutput:
        """One forward pass of ``ids`` (a sequence, or a batch of equal-length sequences)."""
        checkpoint()  # an asker who has left starts no new forward pass
        x = self._ids(ids)
        B, T = x.shape
        grad = grad_of is not None
        if grad and not self.capabilities.gradients:
            raise LensError(f"gradients are not available {self.capabilities.where}")
        place = _Placement(self, B, T, read, write, keep_live=grad)
        want_logits = "logits" in place.read
        keep_all = logits == "all" or want_logits
        extra = {"logits_to_keep": 1} if self._some_logits and not keep_all else {}
        handles = []
        rows = place.row_means is not None and _rows_ready(self.model, self.adapter)
        implementation = ROWS if rows else "eager" if place.eager else "sdpa"
        with self.lock, (torch.enable_grad() if grad else torch.no_grad()), \
                attention_implementation(self.model, implementation):
            try:
                if rows:
                    _row_means.update(place.row_means)
                if grad:  # every activation joins the graph, even with frozen weights
                    handles.append(self.model.get_input_embeddings().register_forward_hook(
                        lambda m, a, out: out if out.requires_grad else out.detach().requires_grad_()))
                handles += place.install()
                out = self.model(input_ids=x, use_cache=False, **extra)
            finally:
                for h in handles:
                    h.remove()
                if rows:
                    for k in place.row_means:
                        _row_means.pop(k, None)
                    _cells.clear()  # the blocks' cells are this run's (8 MB at 2048 tokens)
            z = getattr(out, "logits", None)
            if want_logits:
                place._keep("logits", z)
            kept = None if z is None or logits == "none" else (z[:, -1] if logits == "last" else z)
            result = RunOutput(reads=place.reads, logits=None if kept is None else kept.detach().float())
            if grad:
                m = grad_of(kept.float())
                names = list(place.live)
                grads = torch.autograd.grad(m, [place.live[n] for n in names], allow_unused=True)
                for n, g in zip(names, grads):
                    g = torch.zeros_like(place.live[n]) if g is None else g
                    g = g.reshape(place.live_shape[n])
                    pos = place.read[n].positions
                    result.grads[n] = (g if pos is None else g[:, pos]).detach().float()
                result.metric = float(m.detach())
            if reduce is not None:
                with torch.no_grad():
                    result.reduced = reduce(place.reads, self.readout_modules())
        return result

    # ------------------------------------------------------------ resumable runs (patching)

    @torch.no_grad()
    def record(self, ids: Sequence[int], read: Mapping[str, Read | Positions] | None = None,
               write: Mapping[str, Edit] | None = None) -> Recording:
        """One pass of ``ids`` that ``resume`` can start from at any block: the residual stream, every
        block's call and the attention cache (and the sites of ``read``); with ``write``, of the run so
        edited (e.g. noised embeddings, for resumed runs that start from the noised stream)."""
        checkpoint()
        a = self.adapter
        L, T = a.n_layers, len(ids)
        residual = torch.empty(L + 1, T, a.d_model, dtype=torch.float32, device=self.device)
        reads = {s: Read(into=residual[r]) for r, s in enumerate(resid_rows(L))}
        reads.update({k: (v if isinstance(v, Read) else Read(positions=v)) for k, v in (read or {}).items()})
        place = _Placement(self, 1, T, reads, write, keep_live=False)
        calls: list = [None] * L
        cache_names: list = [[] for _ in range(L)]

        def keep_call(i):
            def hook(module, args, kwargs):
                # The run's own cache (kept below) is no argument for resumed runs: they get their own, or none.
                rest = tuple(None if is_cache(v) else v for v in (args[1:] if args else ()))
                kw = {k: (None if is_cache(v) else v) for k, v in kwargs.items() if k != "hidden_states"}
                cache_names[i] = [k for k, v in kwargs.items() if is_cache(v)]
                if "use_cache" in kw:
                    kw["use_cache"] = False
                calls[i] = (rest, kw)
            return hook
        with self.lock, attention_implementation(self.model, "sdpa"):
            handles = [b.register_forward_pre_hook(keep_call(i), with_kwargs=True) for i, b in enumerate(a.blocks)]
            try:
                handles += place.install()
                out = self.model(input_ids=self._ids(ids), use_cache=True)
            finally:
                for h in handles:
                    h.remove()
        cache = getattr(out, "past_key_values", None)
        layers = getattr(cache, "layers", None)
        kv = ([(layer.keys.detach(), layer.values.detach()) for layer in layers]
              if layers is not None and len(layers) == L and all(hasattr(x, "keys") for x in layers) else None)
        rows = set(resid_rows(L))
        return Recording(token_ids=list(ids), residual=residual, calls=calls,
                         last_logits=out.logits[0, -1].detach().float(),
                         reads={k: v[0] for k, v in place.reads.items() if k not in rows},
                         keys_values=kv, cache_names=cache_names)

    @torch.no_grad()
    def resume(self, rec: Recording | Sequence[Recording], batch: int, write: Mapping[str, Edit],
               read: Mapping[str, Read | Positions] | None = None, columns: list[int] | None = None) -> torch.Tensor:
        """[batch, V] last-position logits of ``batch`` copies of ``rec``'s run with ``write`` applied, run
        from the first block written (nothing before it changes); only ``columns`` of V when given. With several
        recordings of the same tokens (one per noise sample, say), the batch is theirs in equal shares, in order:
        one pass instead of one per recording."""
        checkpoint()
        recs = [rec] if isinstance(rec, Recording) else list(rec)
        rec = recs[0]
        if batch % len(recs) or any(r.token_ids != rec.token_ids for r in recs):
            raise LensError("a resumed run shares its batch equally among recordings of the same tokens")
        a = self.adapter
        L = a.n_layers
        sites = [parse(s, L) for s in write]
        if not sites or any(s.layer is None for s in sites):
            raise LensError("a resumed run starts at a block: write at per-block sites only")
        start = min(s.block for s in sites)
        place = _Placement(self, batch, rec.n_tokens, read, write, keep_live=False)
        with self.lock, attention_implementation(self.model, "sdpa"):
            handles = place.install()
            try:
                if len(recs) == 1:
                    h = rec.residual[start].unsqueeze(0).expand(batch, -1, -1).clone()
                else:
                    h = torch.stack([r.residual[start] for r in recs]).repeat_interleave(batch // len(recs), 0)
                for i in range(start, L):
                    rest, kw = rec.calls[i]
                    h = first(a.blocks[i](h, *_batched(rest, batch), **_batched(kw, batch)))
            finally:
                for handle in handles:
                    handle.remove()
        return a.readout(h[:, -1], columns).float()

    # ------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, ids: Sequence[int], max_new_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop_ids: Sequence[int] = (), write: Mapping[str, Edit] | None = None
                 ) -> tuple[list[int], list[float], str]:
        """The new token ids, the probability each had when chosen, and why generation stopped; with ``write``
        (site -> edit), generated by the model so edited: the edits stay on for the prompt's pass and every new
        token's, and each gets ``call.start``, the position of its first row (the prompt's pass starts at 0, each
        new token's pass at that token's position)."""
        from ..model.generate import generate_ids

        checkpoint()
        with self.lock:
            if not write:
                return generate_ids(self.model, ids, max_new_tokens, temperature, seed, stop_ids)
            place = _Placement(self, 1, len(ids), None, write, keep_live=False)
            handles = place.install()
            try:
                return generate_ids(self.model, ids, max_new_tokens, temperature, seed, stop_ids,
                                    at=lambda start: setattr(place, "start", start))
            finally:
                for h in handles:
                    h.remove()
