"""``LocalBackend``: the Backend (lens/backend.py) that runs one loaded model in this process.

Every method goes through ``_cached``: a result is looked up in the optional disk
cache under one key scheme (kind, model fingerprint, prompt, options), else computed
from one forward pass that keeps only what the analysis needs. ``_memo`` keeps the
last pass of each kind in memory, so the calls a page makes in a row (the threshold
slider, another node, another window, rollout then flow) cost no new forward pass.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np

from .analysis.geometry import geometry
from .analysis.heads import head_patterns, head_summary, repeated_random_ids
from .analysis.logit_lens import logit_lens
from .analysis.projection import project
from .analysis.rollout import attention_flow, mean_attention_stack, rollout
from .analysis.checks import check_layer
from .analysis.routes import (RouteData, attention_contributions, check_length, check_supported, node_detail,
                              route_capture, route_graph)
from .backend import ModelInfo
from .cache import ResultCache, make_key
from .local_causal import CausalMethods
from .local_fitted import FittedLensMethods
from .errors import LensError
from .hosting import Limits
from .jobs import Cancelled, JobQueue, checkpoint
from .model.loading import LoadedModel
from .model.tokens import encode, token_strings
from .model.trace import CaptureSpec, Trace, capture
from .options import DEFAULT_THRESHOLD, GenerateOptions, GeometryOptions, LensOptions, Progress, ProjectionOptions
from .results import (AttentionContributions, FlowResult, Generation, GenerationAttention, GeometryResult,
                      HeadPatterns, HeadSummary, LanguageMass, LogitLensResult, ModelComparison, NodeDetail,
                      PatchResult,
                      ProjectionResult,
                      RolloutResult, RouteGraph)
from .serialize import NotThisType, join, split

log = logging.getLogger("layerlens")
MEMO_ATTENTION_TOKENS = 512  # longer prompts' head-averaged attention is not kept between calls

# Cache kind -> the result type its entries rebuild into.
RESULT_TYPES: dict[str, type] = {
    "lens": LogitLensResult, "projection": ProjectionResult, "geometry": GeometryResult,
    "rollout": RolloutResult, "flow": FlowResult, "head-patterns": HeadPatterns, "head-summary": HeadSummary,
    "contributions": AttentionContributions, "routes": RouteGraph, "node": NodeDetail,
    "generation": Generation, "generation-lens": LogitLensResult, "generation-attention": GenerationAttention,
    "patch": PatchResult, "patched-lens": LogitLensResult, "ablated-lens": LogitLensResult,
    "compare": ModelComparison, "language": LanguageMass,
}


class LocalBackend(CausalMethods, FittedLensMethods):
    """Runs one loaded model in this process; results go through an optional disk cache."""

    def __init__(self, loaded: LoadedModel, cache: ResultCache | None = None, token_limit: int | None = None,
                 limits: Limits | None = None, jobs: JobQueue | None = None):
        """``limits``: what one request may ask (default: the model's whole context, corpora as in
        ``Limits``); ``jobs``: the queue every computation waits in (default: none, run at once)."""
        self.loaded = loaded
        self.cache = cache
        self.limits = limits or Limits(max_prompt_tokens=token_limit or loaded.context_length)
        self.token_limit = min(token_limit or self.limits.max_prompt_tokens, loaded.context_length)
        self.jobs = jobs
        # Hooks live on shared modules: one capture at a time per model.
        self._lock = threading.Lock()
        # In memory, the last result of each kind of forward pass (see _memo).
        self._memos: dict[str, tuple[str, object]] = {}
        # Results being computed, by cache key: a second caller waits for the first's.
        self._pending: dict[str, Future] = {}
        self._pending_lock = threading.Lock()
        # Fitted lenses read from cache/lenses, by kind: (file mtime, lens or None).
        self._lens_memo: dict[str, tuple[int, object]] = {}

    # ------------------------------------------------------------ model, tokens, traces

    def info(self) -> ModelInfo:
        a = self.loaded.adapter
        reason = a.routes_unavailable()
        return ModelInfo(
            name=self.loaded.name, source=self.loaded.source, model_type=a.model_type, n_layers=a.n_layers,
            n_heads=a.n_heads, n_kv_heads=a.n_kv_heads, head_dim=a.head_dim, d_model=a.d_model,
            vocab_size=int(self.loaded.model.get_input_embeddings().weight.shape[0]),
            context_length=self.loaded.context_length, token_limit=self.token_limit,
            has_lm_head=a.has_lm_head, is_causal=a.is_causal, post_ln=a.post_ln,
            supports_routes=reason is None, routes_note=reason or "", fingerprint=self.loaded.fingerprint,
            corpus_limit=self.limits.max_corpus_texts, corpus_token_limit=self.limits.max_corpus_tokens,
        )

    def busy(self) -> bool:
        """Whether a computation is under way (a model in use is not unloaded)."""
        return bool(self._pending) or self._lock.locked()

    def _ids(self, text: str) -> list[int]:
        return encode(self.loaded.tokenizer, text, self.token_limit)

    def tokenize(self, text: str) -> list[str]:
        return token_strings(self.loaded.tokenizer, self._ids(text))

    def _capture(self, ids: list[int], spec: CaptureSpec) -> Trace:
        checkpoint()  # an asker who has left starts no new forward pass
        with self._lock:
            return capture(self.loaded.model, self.loaded.adapter, ids, spec, model_name=self.loaded.name,
                           fingerprint=self.loaded.fingerprint, tokens=token_strings(self.loaded.tokenizer, ids))

    def trace(self, text: str, spec: CaptureSpec = CaptureSpec()) -> Trace:
        return self._capture(self._ids(text), spec)

    def _traces(self, texts: str | Sequence[str]) -> list[Trace]:
        """One residual-stream trace per text (a corpus is traced text by text)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise LensError("no text given: type a prompt or at least one sentence")
        if len(items) == 1:
            return [self._residual_trace(items[0])]
        lim = self.limits
        if len(items) > lim.max_corpus_texts:
            raise LensError(f"the corpus has {len(items)} sentences; at most {lim.max_corpus_texts} are allowed here")
        ids = [self._ids(t) for t in items]  # every sentence checked before any is run
        total = sum(map(len, ids))
        if total > lim.max_corpus_tokens:
            raise LensError(f"the corpus has {total:,} tokens in all; at most {lim.max_corpus_tokens:,} are allowed "
                            "here: use fewer or shorter sentences")
        return [self._capture(i, CaptureSpec(residual=True)) for i in ids]

    def _special_ids(self) -> list[int]:
        return sorted(int(i) for i in (getattr(self.loaded.tokenizer, "all_special_ids", None) or []))

    # ------------------------------------------------------------ the one cache path

    def _cached(self, kind: str, key: dict, compute: Callable[[], object]):
        """The cached ``kind`` result for ``key`` (prompt and options), else ``compute()``'s, stored.

        An entry that cannot be rebuilt into its result type (another version's fields,
        a damaged file) is a miss: recomputed and overwritten, never an error. Callers
        asking for the same result at once (several sessions, a warm-up) share one
        computation: the later ones wait for the first's result or error.
        """
        cls = RESULT_TYPES[kind]
        cache_key = make_key(kind, model=self.loaded.fingerprint, **key)
        with self._pending_lock:
            pending = self._pending.get(cache_key)
            if pending is None:
                mine = self._pending[cache_key] = Future()
        if pending is not None:
            return self._wait_for(pending, lambda: self._cached(kind, key, compute))
        try:
            result = self._stored(cls, cache_key)
            if result is None:
                result = self.jobs.run(compute) if self.jobs is not None else compute()
                self._store(cache_key, result)
            mine.set_result(result)
            return result
        except Cancelled:
            mine.set_exception(Cancelled())  # its waiters compute it themselves
            raise
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._pending_lock:
                del self._pending[cache_key]

    @staticmethod
    def _wait_for(pending: Future, again: Callable[[], object]):
        """``pending``'s result; if the asker computing it left, compute it ourselves (``again``)."""
        while True:
            checkpoint()
            try:
                return pending.result(timeout=0.25)
            except TimeoutError:
                continue
            except Cancelled:
                return again()

    def _store(self, cache_key: str, result) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(cache_key, *split(result))
        except Exception as exc:  # a cache is a speed-up: failing to write one is not an error
            log.warning("could not cache %s (%s): going on without it", cache_key, exc)

    def _stored(self, cls: type, cache_key: str):
        """The cache's entry for ``cache_key`` as a ``cls``, or None (also when the cache fails)."""
        try:
            hit = self.cache.get(cache_key) if self.cache is not None else None
        except Exception as exc:
            log.warning("could not read cache entry %s (%s): recomputing", cache_key, exc)
            hit = None
        if hit is None:
            return None
        try:
            return join(cls, *hit)
        except (NotThisType, TypeError, ValueError) as exc:
            log.warning("cache entry %s is not a %s (%s): recomputing", cache_key, cls.__name__, exc)
            return None

    @staticmethod
    def _prompt_key(texts: str | Sequence[str]) -> str | list[str]:
        return texts if isinstance(texts, str) else list(texts)

    # ------------------------------------------------------------ logit lens, projections, geometry

    def _memo(self, kind: str, key: str, compute: Callable[[], object]):
        """The last ``kind`` value, if it was made for ``key``; else ``compute()``'s, kept in its place.

        One forward pass serves the calls a page makes in a row: the windows of a long prompt's
        lens, the threshold slider and drill-down of routes, rollout then flow, a new prompt's head
        scores (the repeated sequence's pass is the same for every prompt).
        """
        memo = self._memos.get(kind)
        if memo is not None and memo[0] == key:
            return memo[1]
        value = compute()
        self._memos[kind] = (key, value)
        return value

    def _residual_trace(self, text: str) -> Trace:
        """The residual stream of ``text`` (kept: a long prompt's lens is decoded window by window)."""
        return self._memo("residual", text, lambda: self.trace(text, CaptureSpec(residual=True)))

    # ------------------------------------------------------------ watch it generate

    def generate(self, text: str, options: GenerateOptions = GenerateOptions()) -> Generation:
        """``text`` continued by up to ``options.max_new_tokens`` tokens (greedy, or sampled with a seed)."""
        options.check()
        if not (self.loaded.adapter.has_lm_head and self.loaded.adapter.is_causal):
            raise LensError(f"{self.loaded.name} is not a causal language model: it does not generate text")
        return self._cached("generation", {"prompt": text, "options": options.key()},
                            lambda: self._generate(text, options))

    def _generate(self, text: str, options: GenerateOptions) -> Generation:
        from .model.generate import generate_ids

        ids = self._ids(text)
        room = self.token_limit - len(ids)
        if room < 1:
            raise LensError(f"the prompt already fills the {self.token_limit} tokens allowed here: shorten it")
        stop = [i for i in [getattr(self.loaded.tokenizer, "eos_token_id", None)] if i is not None]
        with self._lock:
            new, probs, stopped = generate_ids(self.loaded.model, ids, min(options.max_new_tokens, room),
                                               float(options.temperature), options.seed, stop)
        all_ids = ids + new
        return Generation(
            model=self.loaded.name, token_ids=all_ids, tokens=token_strings(self.loaded.tokenizer, all_ids),
            n_prompt=len(ids), chosen_probs=np.asarray(probs, np.float32), temperature=float(options.temperature),
            seed=options.seed if options.temperature > 0 else None, stopped=stopped,
            text=self.loaded.tokenizer.decode(all_ids, skip_special_tokens=True))

    def generation_lens(self, text: str, options: GenerateOptions = GenerateOptions(),
                        lens: LensOptions = LensOptions()) -> LogitLensResult:
        """The logit lens over the prompt and its generated continuation, from the exact token ids
        generated (re-tokenising the decoded text could give other tokens). The model is causal, so
        column p is what the model saw and predicted when it had read the first p + 1 tokens."""
        lens.check()
        gen = self.generate(text, options)
        fitted = self._lens_for(lens.lens)
        key = {"prompt": text, "options": options.key(), "lens": lens.key(),
               "lens_id": fitted.lens_id if fitted else None}
        return self._cached("generation-lens", key,
                            lambda: logit_lens(self._capture(gen.token_ids, CaptureSpec(residual=True)),
                                               self.loaded.tokenizer, lens, fitted=fitted))

    def generation_attention(self, text: str, options: GenerateOptions = GenerateOptions()) -> GenerationAttention:
        """For each new token, the attention of the position that chose it, averaged over heads and
        layers: one attention pass over prompt and continuation, since the model is causal."""
        gen = self.generate(text, options)

        def compute():
            tr = self._capture(gen.token_ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
            A = mean_attention_stack(tr.attentions, tr.n_layers)
            positions = list(range(gen.n_prompt - 1, len(gen.token_ids) - 1))
            rows = A[:, positions, :].double().mean(0).cpu().numpy().astype(np.float32)
            return GenerationAttention(model=self.loaded.name, tokens=gen.tokens, n_prompt=gen.n_prompt,
                                       positions=positions, attention=rows)
        return self._cached("generation-attention", {"prompt": text, "options": options.key()}, compute)

    def logit_lens(self, text: str, options: LensOptions = LensOptions(),
                   progress: Progress | None = None) -> LogitLensResult:
        """The lens of every row at the positions of ``options.positions`` (default: all), read as
        ``options.lens`` says (a linear lens not fitted yet is fitted first, on the shipped corpus)."""
        options.check()
        if not self.loaded.adapter.has_lm_head:
            raise LensError(f"{self.loaded.name} has no language-model head: the logit lens does not apply")
        fitted = self._lens_for(options.lens, progress)
        key = {"prompt": text, "options": options.key(), "lens_id": fitted.lens_id if fitted else None}
        return self._cached("lens", key, lambda: logit_lens(
            self._residual_trace(text), self.loaded.tokenizer, options, progress, fitted=fitted))

    def projection(self, texts: str | Sequence[str], options: ProjectionOptions = ProjectionOptions(),
                   progress: Progress | None = None) -> ProjectionResult:
        """Every kept token at every layer projected to 2-D/3-D; ``texts`` is a prompt or a corpus."""
        options.check()
        return self._cached("projection", {"prompt": self._prompt_key(texts), "options": options.key()},
                            lambda: project(self._traces(texts), options, self._special_ids(), progress,
                                            max_umap_points=self.limits.max_umap_points))

    def geometry(self, texts: str | Sequence[str], options: GeometryOptions = GeometryOptions()) -> GeometryResult:
        """Per-layer geometry metrics of a prompt or a corpus."""
        return self._cached("geometry", {"prompt": self._prompt_key(texts), "options": options.key()},
                            lambda: geometry(self._traces(texts), options, self._special_ids()))

    # ------------------------------------------------------------ rollout and flow

    def _mean_attention(self, text: str):
        ids = self._ids(text)

        def compute():
            tr = self._capture(ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
            return tr, mean_attention_stack(tr.attentions, tr.n_layers)
        # Kept for short prompts only (L·T² floats: 31 MB at 512 tokens, 0.5 GB at 2048).
        if len(ids) > MEMO_ATTENTION_TOKENS:
            return compute()
        return self._memo("mean-attention", text, compute)

    def rollout(self, text: str, position: int | None = None) -> RolloutResult:
        def compute():
            tr, A = self._mean_attention(text)
            return rollout(A, tr.tokens, position, model=self.loaded.name)
        return self._cached("rollout", {"prompt": text, "options": {"position": position}}, compute)

    def attention_flow(self, text: str, position: int | None = None,
                       layers: list[int] | None = None) -> FlowResult:
        def compute():
            tr, A = self._mean_attention(text)
            return attention_flow(A, tr.tokens, position, model=self.loaded.name, layers=layers)
        options = {"position": position, "layers": sorted(layers) if layers else None}
        return self._cached("flow", {"prompt": text, "options": options}, compute)

    # ------------------------------------------------------------ heads

    def head_patterns(self, text: str, layer: int) -> HeadPatterns:
        L = self.loaded.n_layers
        layer = check_layer(layer, L)

        def compute():
            tr = self.trace(text, CaptureSpec(residual=False, attentions=(layer - 1,)))
            return head_patterns(tr.attentions, tr.tokens, layer, L, model=self.loaded.name)
        return self._cached("head-patterns", {"prompt": text, "options": {"layer": layer}}, compute)

    def head_summary(self, text: str) -> HeadSummary:
        def compute():
            tok = self.loaded.tokenizer
            vocab = int(self.loaded.model.get_input_embeddings().weight.shape[0])
            ids, n, offset = repeated_random_ids(tok, vocab, max_tokens=self.token_limit)
            rep = self._memo("repeated-sequence", str(ids),
                             lambda: self._capture(ids, CaptureSpec(residual=False, attentions=True)))
            tr = self.trace(text, CaptureSpec(residual=False, attentions=True))
            return head_summary(tr.attentions, rep.attentions, tr.n_layers, n, offset,
                                token_strings(tok, ids), model=self.loaded.name)
        return self._cached("head-summary", {"prompt": text, "options": {}}, compute)

    # ------------------------------------------------------------ routes

    def _route_trace(self, text: str, layers: Sequence[int] | None = None, neurons: bool = False) -> RouteData:
        ids = self._ids(text)
        check_length(len(ids), self.loaded.n_layers)
        return RouteData.from_trace(self._capture(ids, route_capture(self.loaded.n_layers, layers, neurons)))

    def _route_data(self, text: str) -> RouteData:
        return self._memo("routes", text, lambda: self._route_trace(text))

    def contributions(self, text: str, layer: int, position: int | None = None) -> AttentionContributions:
        check_supported(self.loaded.adapter)
        return self._cached("contributions", {"prompt": text, "options": {"layer": layer, "position": position}},
                            lambda: attention_contributions(self._route_data(text), layer, position))

    def route_graph(self, text: str, position: int | None = None,
                    threshold: float = DEFAULT_THRESHOLD) -> RouteGraph:
        check_supported(self.loaded.adapter)
        options = {"position": position, "threshold": round(float(threshold), 6)}
        return self._cached("routes", {"prompt": text, "options": options}, lambda: route_graph(
            self._route_data(text), position, threshold, tokenizer=self.loaded.tokenizer))

    def node_detail(self, text: str, layer: int, position: int | None, block: str = "attn",
                    top_k: int = 8) -> NodeDetail:
        check_supported(self.loaded.adapter)
        layer = check_layer(layer, self.loaded.n_layers)

        def compute():
            # MLP neurons: one more pass that keeps only this layer (every layer's would be L·T·N floats).
            data = (self._route_trace(text, layers=(layer - 1,), neurons=True) if block == "mlp"
                    else self._route_data(text))
            return node_detail(data, self.loaded.tokenizer, layer, position, block, top_k=top_k)
        options = {"layer": layer, "position": position, "block": block, "top_k": top_k}
        return self._cached("node", {"prompt": text, "options": options}, compute)
