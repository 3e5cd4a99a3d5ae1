"""``NnsightEngine``: every pass an nnsight trace, in this process or on NDIF's shared GPUs.

nnsight (https://nnsight.net) runs interventions on a model here or, with ``remote=True``, on
NDIF, where models too big for a laptop are already loaded (an API key in ``NDIF_API_KEY``).
The same named sites resolve to nnsight's envoys of the same modules, visited in the order
the model computes them (nnsight reads each value as it happens).

Code inside a trace may run on the server, which has torch and nnsight but not LayerLens:
the trace body uses plain locals and torch operations, and the functions it calls (a read's
``map``, a ``reduce``) are shipped by value. On NDIF the weights stay there: the engine
declares no weights here, no edits, no gradients, no resumed runs and no generation.

A whole-block edit (``block.l``) gets what the hook engine gives it: the block's input, kept as
the block is entered, and ``run_block(m)``, block m's module run on that input with the
arguments the model gave block l (without the trace's KV cache, which block m would extend).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Mapping

import torch

from ..errors import LensError
from ..jobs import checkpoint
from .base import Capabilities, Edit, Metric, Positions, Read, Readout, Reduce, RunOutput, SiteCall
from .hooks import attention_implementation, first
from .sites import locate, parse


def _envoy(root, path: str):
    """The nnsight envoy of the submodule at dotted ``path`` (list indices as parts)."""
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _block_call(site, entered, blocks) -> SiteCall:
    """The ``SiteCall`` of a ``block.l`` edit: ``entered`` is (the block's input, its positional and keyword
    arguments) as kept when the block was entered; ``blocks`` the model's own block modules."""
    from .hooks import is_cache

    x, (args, kwargs) = entered
    kw = {k: (None if is_cache(v) else v) for k, v in kwargs.items() if k != "hidden_states"}
    if "use_cache" in kw:
        kw["use_cache"] = False
    rest = tuple(None if is_cache(v) else v for v in args[1:])

    def run_block(layer: int) -> torch.Tensor:
        with _outside_the_trace(blocks[layer - 1]):
            return first(blocks[layer - 1](x, *rest, **kw))
    return SiteCall(site, input=x, run_block=run_block)


@contextlib.contextmanager
def _outside_the_trace(module):
    """Module calls that nnsight does not hand to the trace: another block run inside an edit is no step of the
    model's own pass (nnsight would count it as that block's call, and the block's real call, later, as its
    second). nnsight (pinned in requirements.txt) passes values straight through while its interleaver is not
    interleaving; the model's own thread waits at the edited block meanwhile."""
    state = getattr(vars(module).get("forward"), "state", None)
    interleaver = state.active()[0] if state is not None else None
    if interleaver is None:
        yield
        return
    interleaver.interleaving = False
    try:
        yield
    finally:
        interleaver.interleaving = True


# A block's output, written whole, before the stream it carries on is read there (as the hook engine orders them);
# the block's input is kept as it is entered, after any edit of resid_pre.l.
_ORDER = {"block": 6.5, "block_in": 0.25}


def _ship_by_value(*fns) -> None:
    """Functions a remote trace calls travel as source, not as a reference to a LayerLens module."""
    import sys

    import cloudpickle

    for fn in fns:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        if module is not None and module.__name__.startswith("lens."):
            cloudpickle.register_pickle_by_value(module)


class NnsightEngine:
    """Runs ``loaded``'s model through nnsight (``remote``: on NDIF)."""

    def __init__(self, loaded, remote: bool = False):
        import warnings

        from nnsight import LanguageModel

        from ..model.loading import with_transformers_model

        loaded = with_transformers_model(loaded)  # nnsight wraps transformers' models, not the plain one
        self.model, self.adapter, self.remote = loaded.model, loaded.adapter, remote
        with warnings.catch_warnings():  # nnsight 0.8 names LanguageModel deprecated; it still wraps a model object
            warnings.simplefilter("ignore")
            self.nn = getattr(loaded, "nnsight_model", None) or LanguageModel(loaded.model, tokenizer=loaded.tokenizer)
        self._paths = {id(m): name for name, m in loaded.model.named_modules()}
        self.capabilities = Capabilities(
            where="on NDIF" if remote else "through nnsight", weights_here=not remote, writes=not remote,
            gradients=False, resumes=False, generates=not remote, reduces_lens=True,
            results_key="nnsight-ndif" if remote else "nnsight")
        self.lock = threading.RLock()

    def _env(self, module):
        return None if module is None else _envoy(self.nn, self._paths[id(module)])

    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    def readout_modules(self) -> Readout:
        a = self.adapter
        return Readout(self._env(a.final_norm), self._env(a.project_out), self._env(a.unembed), a.softcap)

    def run(self, ids, read: Mapping[str, Read | Positions] | None = None, write: Mapping[str, Edit] | None = None,
            grad_of: Metric | None = None, logits: str = "last", reduce: Reduce | None = None,
            progress=None) -> RunOutput:
        checkpoint()
        a = self.adapter
        L = a.n_layers
        if grad_of is not None:
            raise LensError(f"gradients are not available {self.capabilities.where}")
        if write and not self.capabilities.writes:
            raise LensError(f"edits at sites run where the model runs, and not {self.capabilities.where}: "
                            "use the model on this machine")
        reads = {parse(k, L).name: (v if isinstance(v, Read) else Read(positions=v)) for k, v in (read or {}).items()}
        writes = {parse(k, L).name: v for k, v in (write or {}).items()}
        # The plan the trace walks: one step per module and side, in the order the model reaches them.
        # Plain tuples, builtins and envoys only: on NDIF the body runs where LayerLens is not installed.
        plan: dict[tuple[int, str], tuple] = {}
        blocks_in = [("block_in", parse(n, L)) for n in writes if parse(n, L).kind == "block"]

        def order(entry):
            role, site = entry
            key = role if role == "block_in" else site.kind
            return site.order(L) if key not in _ORDER else (site.layer, _ORDER[key])
        for role, site in sorted([("site", parse(n, L)) for n in set(reads) | set(writes)] + blocks_in, key=order):
            name = site.name
            if site.kind == "logits":
                continue
            if role == "block_in":  # the block's input and arguments, kept for its edit at the output
                step = plan.setdefault((id(a.blocks[site.block]), "input"), (self._env(a.blocks[site.block]),
                                                                              "input", []))
                step[2].append(("block_in", name, False, None, None, False, None, None))
                continue
            loc = locate(site, a)
            if site.kind == "block" and name in reads:
                raise LensError(f"{name} is a whole block: read resid_post.{site.layer} instead")
            if site.kind == "attn_mask":
                raise LensError(f"attention-mask edits ({name}) are not available {self.capabilities.where}: "
                                "use --backend local")
            rd, ed = reads.get(name), writes.get(name)
            step = plan.setdefault((id(loc.module), loc.side), (self._env(loc.module), loc.side, []))
            step[2].append((site.kind, name, loc.flat, None if rd is None else rd.positions,
                            None if rd is None else rd.map, rd is not None, ed, None if ed is None else SiteCall(site)))
        steps = list(plan.values())
        want_logits = reads.get("logits")
        logit_positions = None if want_logits is None else want_logits.positions
        if self.remote:
            _ship_by_value(*[r.map for r in reads.values() if r.map], *([reduce] if reduce else []))
        eager = any(e[0] == "attn_pattern" for _, _, entries in steps for e in entries)
        readout = self.readout_modules() if reduce is not None else None
        fused, kv, hd = bool(a.spec.value_fused), a.n_kv_heads, a.head_dim
        batch = torch.as_tensor(ids)
        batch = batch[None] if batch.dim() == 1 else batch
        B = batch.shape[0]
        nnm, keep, last = self.nn, logits != "none", logits == "last"
        import nnsight

        from .ndif import ndif_status

        blocks = a.blocks
        with self.lock, torch.no_grad(), attention_implementation(self.model, "eager" if eager else "sdpa"), \
                ndif_status(progress if self.remote else None):
            with nnm.trace(batch, remote=self.remote):
                got = nnsight.save({})
                entered = {}
                for env, side, entries in steps:
                    full = env.input if side == "input" else env.output
                    x0 = full[0] if side == "output" and isinstance(full, tuple) else full
                    x = x0
                    for kind, name, flat, positions, fn, wanted, edit, call in entries:
                        if kind == "block_in":
                            entered[name] = (x, env.inputs)
                            continue
                        if kind == "block":
                            call = _block_call(call.site, entered[name], blocks)
                        if kind == "attn_pattern":
                            y = full[1]
                        elif kind == "value":
                            y = (x[..., -kv * hd:] if fused else x).reshape(B, x.shape[1], kv, hd)
                        else:
                            if edit is not None:
                                xb = x.reshape(B, -1, x.shape[-1]) if flat else x
                                x = edit(xb, call).reshape(x.shape).to(x.dtype)
                            y = x.reshape(B, -1, x.shape[-1]) if flat else x
                        if wanted:
                            y = (y if positions is None else y[:, positions]).float()
                            got[name] = fn(y) if fn is not None else y
                    if x is not x0:
                        if side == "input":
                            env.input = x
                        else:
                            env.output = (x, *full[1:]) if isinstance(full, tuple) else x
                z = nnm.output.logits
                if want_logits is not None:
                    got["logits"] = (z if logit_positions is None else z[:, logit_positions]).float()
                kept = nnsight.save((z[:, -1] if last else z).float()) if keep else None
                reduced = nnsight.save(reduce(dict(got), readout)) if reduce is not None else None
        out = RunOutput()
        for name, value in dict(got).items():
            rd = reads[name]
            value = value.detach().cpu().float()
            if rd.into is not None:
                rd.into.copy_(value.reshape(rd.into.shape))
                value = rd.into
            out.reads[name] = value
        if keep:
            out.logits = kept.detach().cpu().float()
        if reduce is not None:
            out.reduced = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in dict(reduced).items()}
        return out

    def generate(self, ids, max_new_tokens: int, temperature: float = 0.0, seed: int = 0, stop_ids=(), write=None):
        """Generation reads no activations: the weights are here, so the model continues the prompt itself."""
        from ..model.generate import generate_ids

        if write:
            raise LensError("generating with edits (steering) runs on this machine's own engine: use --backend local")
        if not self.capabilities.generates:
            raise LensError(f"generation needs a loop of forward passes here, not {self.capabilities.where}")
        checkpoint()
        with self.lock, torch.no_grad():
            return generate_ids(self.model, ids, max_new_tokens, temperature, seed, stop_ids)
