"""What the benchmark measures: one ``Step`` per analysis.

A step's ``prepare(ctx)`` does the untimed set-up (e.g. the trace a lens reads)
and returns the function that is timed. Adding an analysis is one entry in
``STEPS``; a step whose module is not there (yet) is reported as skipped.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch

FLOOR_ONE_MAX_BYTES = 2**30  # the floor is one big matmul when its [(L+1)·T, V] output fits in this


@dataclass
class Ctx:
    loaded: object  # lens.model.loading.LoadedModel
    ids: list[int]
    tokens: list[str]

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def residual_trace(self):
        """One residual-stream trace shared by the set-ups of a process (untimed)."""
        if not hasattr(self, "_residual"):
            self._residual = self.trace(residual=True)
        return self._residual

    def trace(self, **spec):
        from lens.engine.hooks import HookEngine
        from lens.engine.trace import CaptureSpec, capture

        lm = self.loaded
        return capture(HookEngine(lm.model, lm.adapter), self.ids, CaptureSpec(**spec), model_name=lm.name,
                       fingerprint=lm.fingerprint, tokens=self.tokens)


@dataclass
class Step:
    name: str
    label: str
    prepare: Callable[[Ctx], Callable[[], object]]
    modules: tuple[str, ...] = ()  # lens modules it needs; missing: skipped
    max_tokens: Callable[[Ctx], int | None] = lambda ctx: None  # longer prompts: skipped (the analysis refuses them)
    # Timed in the same process, interleaved with the step (prepared after its peak memory is read).
    companions: dict[str, Callable[[Ctx], Callable[[], object] | None]] = field(default_factory=dict)
    largest_only: bool = False  # run only at the largest prompt of the run
    bench_max_tokens: int | None = 512  # beyond this the bench leaves the step to "trace+lens+rollout"


def available(step: Step) -> str | None:
    """None, or why the step cannot run here."""
    for mod in step.modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            return f"{mod} not available ({exc})"
    return None


# ---------------------------------------------------------------- the steps

def _forward(ctx: Ctx):
    model = ctx.loaded.model
    ids = torch.tensor([ctx.ids])

    @torch.no_grad()
    def run():
        return model(input_ids=ids, use_cache=False)
    return run


def _trace(ctx: Ctx):
    return lambda: ctx.trace(residual=True)


def _lens(ctx: Ctx):
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    trace = ctx.residual_trace()
    tok = ctx.loaded.tokenizer
    return lambda: logit_lens(trace, tok, LensOptions(top_k=5))


def _floor_inputs(ctx: Ctx):
    adapter = ctx.loaded.adapter
    trace = ctx.residual_trace()
    with torch.no_grad():
        X = adapter.normed(trace.residual).reshape(-1, trace.residual.shape[-1]).contiguous()
    return X, adapter.unembed.weight.detach()


def _floor_one(ctx: Ctx):
    """The bare unembedding matmul, [(L+1)·T, d] @ W_Uᵀ in one call, into a preallocated output."""
    X, W = _floor_inputs(ctx)
    if X.shape[0] * W.shape[0] * 4 > FLOOR_ONE_MAX_BYTES:
        return None
    out = torch.empty(X.shape[0], W.shape[0])
    return lambda: torch.mm(X, W.T, out=out)


def _floor_chunked(ctx: Ctx):
    """The same matmul in the lens's own chunks (positions × all rows), into one reused buffer."""
    import lens.analysis.logit_lens as ll

    X, W = _floor_inputs(ctx)
    R = ctx.loaded.n_layers + 1
    V = W.shape[0]
    step = max(1, ll._rows_per_chunk(V) // R)
    Xr = X.view(R, -1, X.shape[-1])
    T = Xr.shape[1]
    out = torch.empty(R * min(step, T), V)

    def run():
        for c0 in range(0, T, step):
            x = Xr[:, c0:c0 + step].reshape(-1, X.shape[-1])
            torch.mm(x, W.T, out=out[: x.shape[0]])
    return run


def _rollout(ctx: Ctx):
    from lens.analysis.rollout import layer_means, rollout

    def run():
        tr = ctx.trace(residual=False, attentions=True, attention_mean=True)
        return rollout(layer_means(tr), tr.tokens, None)
    return run


def _routes(ctx: Ctx):
    from lens.analysis.routes import RouteData, route_capture, route_graph
    from lens.engine.hooks import HookEngine
    from lens.engine.trace import capture
    from lens.options import DEFAULT_THRESHOLD

    lm = ctx.loaded

    def run():
        tr = capture(HookEngine(lm.model, lm.adapter), ctx.ids, route_capture(lm.n_layers), model_name=lm.name, tokens=ctx.tokens)
        return route_graph(RouteData.from_trace(tr), None, DEFAULT_THRESHOLD, tokenizer=lm.tokenizer)
    return run


def _routes_max(ctx: Ctx) -> int | None:
    from lens.options import ROUTE_MAX_TOKENS

    return ROUTE_MAX_TOKENS


def _projection(method: str):
    def prepare(ctx: Ctx):
        from lens.analysis.projection import project
        from lens.options import ProjectionOptions

        trace = ctx.residual_trace()
        special = sorted(getattr(ctx.loaded.tokenizer, "all_special_ids", None) or [])
        return lambda: project([trace], ProjectionOptions(method=method), special)
    return prepare


def _umap_max(ctx: Ctx) -> int | None:
    from lens.options import MAX_UMAP_POINTS

    return MAX_UMAP_POINTS // (ctx.loaded.n_layers + 1)


def _lens_window(ctx: Ctx):
    """What the lens page does first for a long prompt: one trace, then the 48 positions on screen."""
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    tok = ctx.loaded.tokenizer

    def run():
        T = ctx.n_tokens
        return logit_lens(ctx.trace(residual=True), tok, LensOptions(top_k=5, positions=(max(0, T - 48), T)))
    return run


def _trace_lens_rollout(ctx: Ctx):
    """What the dashboard holds at once for one long prompt: the trace, the full lens, the rollout."""
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    import time

    rollout = _rollout(ctx)

    def run():
        t0 = time.perf_counter()
        trace = ctx.trace(residual=True)
        t1 = time.perf_counter()
        res = logit_lens(trace, ctx.loaded.tokenizer, LensOptions(top_k=5))
        t2 = time.perf_counter()
        roll = rollout()
        t3 = time.perf_counter()
        for name, dt in (("trace", t1 - t0), ("lens", t2 - t1), ("rollout", t3 - t2)):
            run.parts.setdefault(name, []).append(dt)
        return trace, res, roll
    run.parts = {}
    return run


def _lens_long(ctx: Ctx):
    """The full lens of a long prompt on its own (the CLI's ``lens``, an export): the trace, then every position."""
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    tok = ctx.loaded.tokenizer
    return lambda: logit_lens(ctx.trace(residual=True), tok, LensOptions(top_k=5))


STEPS: list[Step] = [
    Step("forward", "forward pass alone", _forward),
    Step("trace", "trace capture (residual stream)", _trace),
    Step("lens", "full-grid logit lens (top-5, entropy, KL, rank)", _lens,
         companions={"floor_one": _floor_one, "floor_chunked": _floor_chunked}),
    Step("rollout", "attention rollout (capture + rollout)", _rollout, modules=("lens.analysis.rollout",)),
    Step("routes", "information-flow graph (capture + routes)", _routes, modules=("lens.analysis.routes",),
         max_tokens=_routes_max),
    Step("pca", "PCA projection (joint)", _projection("pca"), modules=("lens.analysis.projection",)),
    Step("umap", "UMAP projection (joint)", _projection("umap"), modules=("lens.analysis.projection",),
         max_tokens=_umap_max),
    Step("lens-window", "lens page, long prompt: trace + the 48 positions on screen", _lens_window,
         largest_only=True, bench_max_tokens=None),
    # Each view of a long prompt in a process of its own (peak memory per view, weights included): the lens
    # page is "lens-window" above; these are the full lens and the attention page's rollout.
    Step("lens-long", "long prompt: trace + full lens, alone", _lens_long, largest_only=True, bench_max_tokens=None),
    Step("rollout-long", "long prompt: attention rollout (capture + rollout), alone", _rollout,
         modules=("lens.analysis.rollout",), largest_only=True, bench_max_tokens=None),
    # The largest prompt only: its parts are timed one by one, and the lens's floor after them.
    Step("trace+lens+rollout", "trace + full lens + rollout, one process", _trace_lens_rollout,
         modules=("lens.analysis.rollout",), largest_only=True, bench_max_tokens=None,
         companions={"floor_one": _floor_one, "floor_chunked": _floor_chunked}),
]
STEP_NAMES = [s.name for s in STEPS]


def by_name(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(name)
