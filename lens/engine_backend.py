"""``EngineBackend``: the Backend (lens/backend.py) over one engine (lens/engine/), for any engine.

Each method checks its request, then asks ``Computations`` (lens/computations.py) for the result:
from the disk cache, or computed from engine runs by the plain functions of lens/analysis/ and
lens/interventions/. What the engine cannot do (``engine.capabilities``) is refused with a message
before any work. ``local_backend`` and ``nnsight_backend`` build one over each engine.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .analysis.checks import check_position
from .analysis.geometry import geometry
from .analysis.heads import head_patterns, head_summary, repeated_random_ids
from .analysis.logit_lens import logit_lens
from .analysis.projection import project
from .analysis.rollout import attention_flow, layer_means, rollout
from .analysis.routes import (RouteData, attention_contributions, check_length, check_supported, node_detail,
                              route_capture, route_graph)
from .backend import ModelInfo
from .cache import ResultCache
from .computations import Computations, Memo
from .engine.trace import CaptureSpec, Trace, capture
from .errors import LensError
from .hosting import Limits
from .jobs import JobQueue
from .model.loading import LoadedModel
from .model.tokens import encode, token_strings, visible
from .options import (Ablation, CellPatchOptions, ComparisonOptions, ContributionOptions, FitOptions, FlowOptions,
                      GenerateOptions, GeometryOptions, HeadOptions, LanguageOptions, LensOptions, NodeOptions,
                      NoiseOptions, PatchOptions, Progress, ProjectionOptions, RolloutOptions, RouteOptions, check_lens,
                      check_patch_site)
from .results import (AttentionContributions, FlowResult, Generation, GenerationAttention, GeometryResult,
                      HeadPatterns, HeadSummary, LanguageMass, LensComparison, LensFit, LogitLensResult,
                      ModelComparison, NodeDetail, NoiseTraceResult, PatchResult, ProjectionResult, RolloutResult, RouteGraph)
from .suites.options import PairSuiteOptions, SuiteOptions
from .suites.results import SuiteLensResult, SuitePatchResult
from .suites.suite import Suite, SuiteItem
from .attribution.options import DLAOptions, KnockoutOptions, SublayerOptions
from .attribution.results import DLAResult, KnockoutResult, SublayerLensResult
from .circuits.options import AttributeOptions, CircuitOptions
from .circuits.results import AttributionResult, CircuitResult
from .steering.options import SteerOptions
from .steering.results import SteerResult
from .probes.results import ProbeResult

MEMO_ATTENTION_TOKENS = 512  # longer prompts' head-averaged attention is not kept between calls

# Cache kind -> the result type its entries rebuild into.
RESULT_TYPES: dict[str, type] = {
    "lens": LogitLensResult, "projection": ProjectionResult, "geometry": GeometryResult,
    "rollout": RolloutResult, "flow": FlowResult, "head-patterns": HeadPatterns, "head-summary": HeadSummary,
    "contributions": AttentionContributions, "routes": RouteGraph, "node": NodeDetail,
    "generation": Generation, "generation-lens": LogitLensResult, "generation-attention": GenerationAttention,
    "patch": PatchResult, "noise-trace": NoiseTraceResult, "patched-lens": LogitLensResult, "ablated-lens": LogitLensResult,
    "compare": ModelComparison, "language": LanguageMass, "lens-suite": SuiteLensResult,
    "patch-suite": SuitePatchResult,
}
RESULT_TYPES.update({"attribution": AttributionResult, "circuit": CircuitResult})  # lens/circuits/

RESULT_TYPES["steer"] = SteerResult  # lens/steering/
RESULT_TYPES["probe"] = ProbeResult  # lens/probes/
RESULT_TYPES.update({"dla": DLAResult, "sublayer-lens": SublayerLensResult, "knockout": KnockoutResult})

# What each method needs of the engine beyond plain reads (Capabilities fields), and its name in a message.
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "generate": (("generates",), "generation"),
    "generation_lens": (("generates",), "the lens of a generation"),
    "generation_attention": (("generates",), "the attention of a generation"),
    "patch": (("writes", "weights_here"), "patching"),
    "patched_lens": (("writes", "weights_here"), "patching one cell"),
    "noise_trace": (("writes", "weights_here"), "causal tracing with noise"),
    "ablated_lens": (("writes", "weights_here"), "ablation"),
    "compare_with": (("weights_here",), "comparing two models"),
    "fit_lens": (("weights_here",), "fitting a lens"),
    "contributions": (("weights_here",), "attention contributions"),
    "route_graph": (("weights_here",), "routes"),
    "node_detail": (("weights_here",), "a route node's detail"),
    "latent_language": (("weights_here",), "the language of each layer"),
    "fitted_lenses": (("weights_here",), "a fitted lens"),
    "patch_suite": (("writes", "weights_here"), "patching a suite"),
    "dla": (("weights_here",), "direct logit attribution"),
    "sublayer_lens": (("weights_here",), "the sub-layer lens"),
    "knockout": (("writes", "weights_here"), "attention knockout"),
}
NEEDS["steer"] = (("writes", "generates", "weights_here"), "steering")  # lens/steering/
NEEDS.update({"attribute": (("gradients", "weights_here"), "attribution patching"),
              "circuit": (("gradients", "writes", "weights_here"), "circuits")})


class EngineBackend:
    """Answers the Backend protocol for ``loaded`` with ``engine``; results go through an optional disk cache."""

    def __init__(self, loaded: LoadedModel, engine, cache: ResultCache | None = None, token_limit: int | None = None,
                 limits: Limits | None = None, jobs: JobQueue | None = None):
        """``limits``: what one request may ask (default: the model's whole context, corpora as in
        ``Limits``); ``jobs``: the queue every computation waits in (default: none, run at once)."""
        from .fitted.store import LensStore
        from .model.registry import default_cache_root

        self.loaded, self.engine = loaded, engine
        self.limits = limits or Limits(max_prompt_tokens=token_limit or loaded.context_length)
        self.token_limit = min(token_limit or self.limits.max_prompt_tokens, loaded.context_length)
        engine_key = engine.capabilities.results_key  # results keyed by the weights and the engine that computed them
        self.results = Computations(loaded.fingerprint + (f"+{engine_key}" if engine_key else ""), RESULT_TYPES,
                                    cache, jobs)
        self.memo = Memo()
        self.lenses = LensStore(default_cache_root(), loaded.name, loaded.fingerprint, loaded.tokenizer, engine)

    # ------------------------------------------------------------ model, tokens, what the engine can do

    @property
    def cache(self) -> ResultCache | None:
        return self.results.cache

    def info(self) -> ModelInfo:
        a = self.loaded.adapter
        reason = a.routes_unavailable()
        source = "ndif" if self.engine.capabilities.where == "on NDIF" else self.loaded.source
        return ModelInfo(
            name=self.loaded.name, source=source, model_type=a.model_type, n_layers=a.n_layers,
            n_heads=a.n_heads, n_kv_heads=a.n_kv_heads, head_dim=a.head_dim, d_model=a.d_model,
            vocab_size=self.engine.vocab_size(), context_length=self.loaded.context_length,
            token_limit=self.token_limit, has_lm_head=a.has_lm_head, is_causal=a.is_causal, post_ln=a.post_ln,
            supports_routes=reason is None, routes_note=reason or "", fingerprint=self.loaded.fingerprint,
            corpus_limit=self.limits.max_corpus_texts, corpus_token_limit=self.limits.max_corpus_tokens,
            has_head_sites=bool(a.out_proj), has_qkv_sites=bool(a.query_proj),
        )

    def busy(self) -> bool:
        """Whether a computation is under way (a model in use is not unloaded)."""
        if self.results.busy():
            return True
        if self.engine.lock.acquire(blocking=False):
            self.engine.lock.release()
            return False
        return True

    def _can(self, method: str) -> None:
        """Refuse ``method`` with a message when the engine lacks what it needs."""
        needs, what = NEEDS[method]
        caps = self.engine.capabilities
        if not all(getattr(caps, n) for n in needs):
            raise LensError(f"{what} needs the model's weights beside the forward pass, which stay {caps.where}: "
                            "run it with --backend local (or the nnsight backend without --remote)")

    def _lm_head(self, what: str = "the logit lens does not apply") -> None:
        self.loaded.adapter.require_lm_head(what, self.loaded.name)

    def _ids(self, text: str) -> list[int]:
        return encode(self.loaded.tokenizer, text, self.token_limit)

    def tokenize(self, text: str) -> list[str]:
        return token_strings(self.loaded.tokenizer, self._ids(text))

    def token_ids(self, text: str) -> list[int]:
        return [int(i) for i in self._ids(text)]

    def _shown(self, ids: list[int]) -> list[str]:
        return [visible(t) for t in token_strings(self.loaded.tokenizer, ids)]

    def _one_token(self, text: str, what: str) -> int:
        ids = self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise LensError(f"the {what} {text!r} is {len(ids)} tokens here ({self._shown(ids)}), not one: "
                            "give a single token, e.g. with its leading space")
        return int(ids[0])

    def _capture(self, ids: list[int], spec: CaptureSpec, write: dict | None = None) -> Trace:
        """One engine run of ``ids`` (with the edits ``write``, site -> edit) kept as ``spec`` says."""
        return capture(self.engine, ids, spec, model_name=self.loaded.name, fingerprint=self.loaded.fingerprint,
                       tokens=token_strings(self.loaded.tokenizer, ids), write=write)

    def trace(self, text: str, spec: CaptureSpec = CaptureSpec()) -> Trace:
        return self._capture(self._ids(text), spec)

    def _residual_trace(self, text: str) -> Trace:
        """The residual stream of ``text`` (kept: a long prompt's lens is decoded window by window)."""
        return self.memo.get("residual", text, lambda: self.trace(text, CaptureSpec(residual=True)))

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

    @staticmethod
    def _prompt_key(texts: str | Sequence[str]) -> str | list[str]:
        return texts if isinstance(texts, str) else list(texts)

    # ------------------------------------------------------------ the logit lens and its fitted kin

    def logit_lens(self, text: str, options: LensOptions = LensOptions(),
                   progress: Progress | None = None) -> LogitLensResult:
        """The lens of every row at the positions of ``options.positions`` (default: all), read as
        ``options.lens`` says (a fitted lens must exist: see ``fit_lens``)."""
        options.check()
        self._lm_head()
        if options.lens == "logit" and self.engine.capabilities.reduces_lens:
            key = {"prompt": text, "options": options.key(), "lens_id": None}
            return self.results.get("lens", key, lambda: self._reduced_lens(self._ids(text), options, progress))
        fitted = self._lens_for(options.lens, progress)
        key = {"prompt": text, "options": options.key(), "lens_id": fitted.lens_id if fitted else None}
        return self.results.get("lens", key, lambda: logit_lens(
            self._residual_trace(text), self.loaded.tokenizer, options, progress, fitted=fitted))

    def _reduced_lens(self, ids: list[int], options: LensOptions, progress: Progress | None) -> LogitLensResult:
        """The logit lens reduced where the model runs (a remote engine sends back [rows, T, k])."""
        from .analysis.logit_lens import resolve_target
        from .analysis.reduced_lens import lens_result, reduction, window
        from .engine.sites import resid_rows

        L = self.loaded.n_layers
        start, stop = window(ids, options, self.engine.vocab_size())
        target_id, note = resolve_target(self.loaded.tokenizer, options.target)
        rows = resid_rows(L)
        read = {s: slice(start, stop) for s in rows}
        read["logits"] = slice(start, stop)
        if progress is not None:
            progress(0.0, f"running {self.loaded.name} {self.engine.capabilities.where}")
        out = self.engine.run(ids, read=read, logits="none", progress=progress,
                              reduce=reduction(rows, ids, start, stop, options.top_k, target_id,
                                               options.alternatives))
        if progress is not None:
            progress(1.0, "decoded every layer")
        return lens_result(out.reduced, self.loaded.name, self.loaded.tokenizer, ids, start, stop, L, options, note)

    def fitted_lens(self, kind: str):
        """The fitted lens of ``kind`` in use for this model, or None."""
        return self.lenses.current(kind)

    def lens_fits(self) -> list[LensFit]:
        """The fitted lenses this model has now."""
        return self.lenses.fits()

    def fit_lens(self, options: FitOptions = FitOptions(), progress: Progress | None = None) -> LensFit:
        """Fit (``linear``), train (``tuned``) or import (``tuned`` from a tuned-lens ``checkpoint`` folder,
        ``jacobian`` from a Jacobian-lens checkpoint file) a lens for this model and store it; one already
        fitted the same way is returned at once."""
        from .hosting import hosting

        options.check()
        self._can("fit_lens")
        self._lm_head("a fitted lens does not apply")
        kind = options.kind
        refuse = (f"this demo server does not fit lenses; its host can run `python -m lens fit-lens --kind {kind}` "
                  "before the talk") if hosting().demo else None
        return self.lenses.fit(kind, options.corpus_file, options.checkpoint, options.steps, progress, self.results.run,
                               refuse)

    def _lens_for(self, kind: str, progress: Progress | None = None):
        """The maps a lens of ``kind`` reads rows through (None for the logit lens). A missing fit is a message,
        never a silent fit: fitting takes minutes, so the page and the CLI ask for it (``fit_lens``)."""
        check_lens(kind)
        if kind == "logit":
            return None
        if not self.engine.capabilities.weights_here:
            raise LensError(f"the {kind} lens applies maps kept on this machine: "
                            f"{self.engine.capabilities.where} only the logit lens runs (or use --backend local)")
        lens = self.lenses.current(kind)
        if lens is None and kind == "linear":
            raise LensError(f"{self.loaded.name} has no linear lens yet: fit one with `python -m lens fit-lens "
                            "--kind linear` (about 90 s for the bundled model on a laptop CPU) or the page's Fit button")
        if lens is None and kind == "jacobian":
            raise LensError(f"{self.loaded.name} has no Jacobian lens: import a checkpoint of it with `python -m lens "
                            "fit-lens --kind jacobian --checkpoint FILE` (a .pt of the jacobian-lens package, as "
                            "Neuronpedia publishes them, or a .safetensors of J.<block> matrices)")
        if lens is None:
            raise LensError(f"{self.loaded.name} has no {kind} lens yet: train one with "
                            f"`python -m lens fit-lens --kind tuned` (minutes on a CPU), or load a tuned-lens "
                            "checkpoint folder with `python -m lens fit-lens --kind tuned --checkpoint FOLDER`")
        return lens

    def lens_comparison(self, text: str, options: ComparisonOptions = ComparisonOptions()) -> LensComparison:
        """Every lens this model has (the logit lens and the fitted ones) on ``text``, row by row."""
        from .analysis.lens_comparison import compare_lenses
        from .fitted.store import STORED_KINDS

        kinds = ["logit"] + [k for k in STORED_KINDS if self.engine.capabilities.weights_here
                             and self.lenses.current(k) is not None]
        results = [self.logit_lens(text, LensOptions(top_k=1, positions=options.positions, lens=k)) for k in kinds]
        ids = [(self.lenses.current(k).lens_id if k != "logit" else "") for k in kinds]
        return compare_lenses(results, ids)

    def latent_language(self, text: str, options: LanguageOptions = LanguageOptions()) -> LanguageMass:
        """Per row, the reading's probability on each script and on ``words``, at ``position``."""
        from .analysis.language import language_mass, vocab_scripts

        options.check()
        self._can("latent_language")
        position, words, lens = options.position, tuple(options.words), options.lens
        fitted = self._lens_for(lens)
        self._lm_head("the lens does not apply")
        key = {"prompt": text, "options": {"position": position, "words": list(words), "lens": lens,
                                           "lens_id": fitted.lens_id if fitted else None}}

        def compute():
            scripts = self.memo.get("vocab-scripts", "", lambda: vocab_scripts(
                self.loaded.tokenizer, int(self.loaded.adapter.unembed.weight.shape[0])))
            return language_mass(self._residual_trace(text), self.loaded.tokenizer, scripts, position,
                                 list(words), fitted, lens)
        return self.results.get("language", key, compute)

    # ------------------------------------------------------------ watch it generate

    def generate(self, text: str, options: GenerateOptions = GenerateOptions()) -> Generation:
        """``text`` continued by up to ``options.max_new_tokens`` tokens (greedy, or sampled with a seed)."""
        options.check()
        self._can("generate")
        if not (self.loaded.adapter.has_lm_head and self.loaded.adapter.is_causal):
            raise LensError(f"{self.loaded.name} is not a causal language model: it does not generate text")
        return self.results.get("generation", {"prompt": text, "options": options.key()},
                                lambda: self._generate(text, options))

    def _generate(self, text: str, options: GenerateOptions) -> Generation:
        ids = self._ids(text)
        room = self.token_limit - len(ids)
        if room < 1:
            raise LensError(f"the prompt already fills the {self.token_limit} tokens allowed here: shorten it")
        stop = [i for i in [getattr(self.loaded.tokenizer, "eos_token_id", None)] if i is not None]
        new, probs, stopped = self.engine.generate(ids, min(options.max_new_tokens, room),
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
        return self.results.get("generation-lens", key, lambda: logit_lens(
            self._capture(gen.token_ids, CaptureSpec(residual=True)), self.loaded.tokenizer, lens, fitted=fitted))

    def generation_attention(self, text: str, options: GenerateOptions = GenerateOptions()) -> GenerationAttention:
        """For each new token, the attention of the position that chose it, averaged over heads and
        layers: one attention pass over prompt and continuation, since the model is causal."""
        gen = self.generate(text, options)

        def compute():
            tr = self._capture(gen.token_ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
            positions = list(range(gen.n_prompt - 1, len(gen.token_ids) - 1))
            rows = layer_means(tr).rows(positions).double().mean(0).cpu().numpy().astype(np.float32)
            return GenerationAttention(model=self.loaded.name, tokens=gen.tokens, n_prompt=gen.n_prompt,
                                       positions=positions, attention=rows)
        return self.results.get("generation-attention", {"prompt": text, "options": options.key()}, compute)

    # ------------------------------------------------------------ projections and geometry

    def projection(self, texts: str | Sequence[str], options: ProjectionOptions = ProjectionOptions(),
                   progress: Progress | None = None) -> ProjectionResult:
        """Every kept token at every layer projected to 2-D/3-D; ``texts`` is a prompt or a corpus."""
        options.check()
        return self.results.get("projection", {"prompt": self._prompt_key(texts), "options": options.key()},
                                lambda: project(self._traces(texts), options, self._special_ids(), progress,
                                                max_umap_points=self.limits.max_umap_points))

    def geometry(self, texts: str | Sequence[str], options: GeometryOptions = GeometryOptions()) -> GeometryResult:
        """Per-layer geometry metrics of a prompt or a corpus."""
        return self.results.get("geometry", {"prompt": self._prompt_key(texts), "options": options.key()},
                                lambda: geometry(self._traces(texts), options, self._special_ids()))

    # ------------------------------------------------------------ rollout, flow and heads

    def _mean_attention(self, text: str):
        ids = self._ids(text)

        def compute():
            tr = self._capture(ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
            return tr, layer_means(tr)
        # Kept for short prompts only (a causal model's: L·T²/2 floats, 16 MB at 512 tokens, 0.25 GB at 2048).
        if len(ids) > MEMO_ATTENTION_TOKENS:
            return compute()
        return self.memo.get("mean-attention", text, compute)

    def rollout(self, text: str, options: RolloutOptions = RolloutOptions()) -> RolloutResult:
        options.check()

        def compute():
            tr, A = self._mean_attention(text)
            return rollout(A, tr.tokens, options.position, model=self.loaded.name)
        return self.results.get("rollout", {"prompt": text, "options": options.key()}, compute)

    def attention_flow(self, text: str, options: FlowOptions = FlowOptions()) -> FlowResult:
        options.check()
        layers = list(options.layers) if options.layers else None

        def compute():
            tr, A = self._mean_attention(text)
            return attention_flow(A, tr.tokens, options.position, model=self.loaded.name, layers=layers)
        return self.results.get("flow", {"prompt": text, "options": options.key()}, compute)

    def head_patterns(self, text: str, options: HeadOptions) -> HeadPatterns:
        L = self.loaded.n_layers
        layer = options.check(L)

        def compute():
            tr = self.trace(text, CaptureSpec(residual=False, attentions=(layer - 1,)))
            return head_patterns(tr.attentions, tr.tokens, layer, L, model=self.loaded.name)
        return self.results.get("head-patterns", {"prompt": text, "options": {"layer": layer}}, compute)

    def head_summary(self, text: str) -> HeadSummary:
        def compute():
            tok = self.loaded.tokenizer
            ids, n, offset = repeated_random_ids(tok, self.engine.vocab_size(), max_tokens=self.token_limit)
            rep = self.memo.get("repeated-sequence", str(ids),
                                lambda: self._capture(ids, CaptureSpec(residual=False, attentions=True)))
            tr = self.trace(text, CaptureSpec(residual=False, attentions=True))
            return head_summary(tr.attentions, rep.attentions, tr.n_layers, n, offset,
                                token_strings(tok, ids), model=self.loaded.name)
        return self.results.get("head-summary", {"prompt": text, "options": {}}, compute)

    # ------------------------------------------------------------ routes

    def _route_trace(self, text: str, layers: Sequence[int] | None = None, neurons: bool = False) -> RouteData:
        ids = self._ids(text)
        check_length(len(ids), self.loaded.n_layers)
        return RouteData.from_trace(self._capture(ids, route_capture(self.loaded.n_layers, layers, neurons)))

    def _route_data(self, text: str) -> RouteData:
        return self.memo.get("routes", text, lambda: self._route_trace(text))

    def contributions(self, text: str, options: ContributionOptions) -> AttentionContributions:
        options.check()
        self._can("contributions")
        check_supported(self.loaded.adapter)
        return self.results.get("contributions", {"prompt": text, "options": options.key()},
                                lambda: attention_contributions(self._route_data(text), options.layer,
                                                                options.position))

    def route_graph(self, text: str, options: RouteOptions = RouteOptions()) -> RouteGraph:
        options.check()
        self._can("route_graph")
        check_supported(self.loaded.adapter)
        # The last position asked by its number or as None (the default) is one result: a link's and a page's alike.
        position = check_position(options.position, len(self._ids(text)))
        key = replace(options, position=position).key()
        return self.results.get("routes", {"prompt": text, "options": key}, lambda: route_graph(
            self._route_data(text), position, options.threshold, tokenizer=self.loaded.tokenizer))

    def node_detail(self, text: str, options: NodeOptions) -> NodeDetail:
        self._can("node_detail")
        check_supported(self.loaded.adapter)
        layer = options.check(self.loaded.n_layers)
        position, block, top_k = options.position, options.block, options.top_k

        def compute():
            # MLP neurons: one more pass that keeps only this layer (every layer's would be L·T·N floats).
            data = (self._route_trace(text, layers=(layer - 1,), neurons=True) if block == "mlp"
                    else self._route_data(text))
            return node_detail(data, self.loaded.tokenizer, layer, position, block, top_k=top_k)
        return self.results.get("node", {"prompt": text, "options": options.key(layer)}, compute)

    # ------------------------------------------------------------ causal experiments

    def _pair(self, clean: str, corrupt: str) -> tuple[list[int], list[int]]:
        from .analysis.patching import check_pair

        clean_ids, corrupt_ids = self._ids(clean), self._ids(corrupt)
        check_pair(clean_ids, corrupt_ids, self._shown(clean_ids), self._shown(corrupt_ids))
        return clean_ids, corrupt_ids

    def patch(self, clean: str, corrupt: str, options: PatchOptions,
              progress: Progress | None = None) -> PatchResult:
        """Activation patching of ``clean``'s activations at ``options.site`` into ``corrupt``'s run."""
        from .analysis.patching import lens_metric, normalised
        from .interventions.patching import patch_grid, run_for_patching

        options.check()
        self._can("patch")
        a = self.loaded.adapter
        check_patch_site(options.site, self.info())
        target = self._one_token(options.target, "target")
        foil = None if options.foil is None else self._one_token(options.foil, "foil")
        if foil == target:
            raise LensError("the target and the foil are the same token: the logit difference is always 0")
        clean_ids, corrupt_ids = self._pair(clean, corrupt)

        def compute():
            c = run_for_patching(self.engine, clean_ids, options.site)
            k = run_for_patching(self.engine, corrupt_ids, None)
            raw, m_clean, m_corrupt = patch_grid(self.engine, c, k, target, foil, options.site, progress)
            L, T = a.n_layers, len(corrupt_ids)
            rows = (["emb"] if options.site == "resid" else []) + [str(i) for i in range(1, L + 1)]  # as the lens
            cols = [f"head {h}" for h in range(a.n_heads)] if options.site == "head" else [str(p) for p in range(T)]
            tok = self.loaded.tokenizer
            return PatchResult(
                model=self.loaded.name, site=options.site, tokens=token_strings(tok, clean_ids),
                corrupt_tokens=token_strings(tok, corrupt_ids), layers=rows, columns=cols,
                target=options.target, foil=options.foil,
                metric_name="logit difference" if foil is not None else "log-probability",
                metric_clean=m_clean, metric_corrupt=m_corrupt, patch=normalised(raw, m_clean, m_corrupt),
                raw=raw.astype(np.float64), lens_clean=lens_metric(a, c.residual, target, foil).astype(np.float64),
                lens_corrupt=lens_metric(a, k.residual, target, foil).astype(np.float64))
        return self.results.get("patch", {"prompt": [clean, corrupt], "options": options.key()}, compute)

    def noise_trace(self, prompt: str, options: NoiseOptions, progress: Progress | None = None) -> NoiseTraceResult:
        """Causal tracing with noise (ROME): ``options.subject``'s embeddings noised, one activation of the
        clean run restored per cell, the metric averaged over the noise samples; ``options.target`` None
        follows the model's own answer."""
        from .analysis.patching import MIN_METRIC_GAP, normalised
        from .interventions.noise import noise_trace

        options.check()
        self._can("noise_trace")
        check_patch_site(options.site, self.info())
        ids = self._ids(prompt)
        T = len(ids)
        subject = sorted({p + T if p < 0 else p for p in options.subject})
        if not all(0 <= p < T for p in subject):
            raise LensError(f"a noised position is outside the prompt's {T} tokens (0 to {T - 1}, or -1 for the "
                            f"last): {list(options.subject)}")
        foil = None if options.foil is None else self._one_token(options.foil, "foil")

        def compute():
            if options.target is None:  # the model's own answer
                target = int(self.engine.run(ids, logits="last").logits[0].argmax())
            else:
                target = self._one_token(options.target, "target")
            if foil == target:
                raise LensError("the target and the foil are the same token: the logit difference is always 0")
            got = noise_trace(self.engine, ids, subject, target, foil, options.site, options.samples, options.seed,
                              options.scale, progress)
            m_clean, m_noised = got["m_clean"], got["m_noised"]
            if abs(m_clean - m_noised) < MIN_METRIC_GAP:
                raise LensError("the noise does not change the answer's metric: nothing to restore (noise other "
                                "tokens, or raise the scale)")
            L = self.loaded.n_layers
            tok = self.loaded.tokenizer
            return NoiseTraceResult(
                model=self.loaded.name, site=options.site, tokens=token_strings(tok, ids), subject=subject,
                layers=(["emb"] if options.site == "resid" else []) + [str(i) for i in range(1, L + 1)],
                target=token_strings(tok, [target])[0], foil=options.foil,
                metric_name="logit difference" if foil is not None else "log-probability",
                metric_clean=m_clean, metric_noised=m_noised, patch=normalised(got["raw"], m_clean, m_noised),
                raw=got["raw"].astype(np.float64), samples=options.samples, seed=options.seed,
                noise_std=got["noise_std"] * options.scale)
        return self.results.get("noise-trace", {"prompt": prompt, "options": options.key()}, compute)

    def _edited_lens(self, ids: list[int], write: dict, lens: LensOptions) -> LogitLensResult:
        """The logit lens of ``ids`` run with the edits ``write`` (site -> edit)."""
        return logit_lens(self._capture(ids, CaptureSpec(residual=True), write), self.loaded.tokenizer, lens)

    def patched_lens(self, clean: str, corrupt: str, options: CellPatchOptions) -> LogitLensResult:
        """The corrupted prompt's logit lens with one residual-stream vector (``row``: 0 the embeddings,
        r the output of block r; ``position``) taken from the clean prompt's run."""
        from .engine.sites import resid
        from .interventions.edits import set_vector

        options.check(self.loaded.n_layers)
        self._can("patched_lens")
        check_patch_site("resid", self.info())
        clean_ids, corrupt_ids = self._pair(clean, corrupt)
        row, lens = options.row, options.lens
        position = check_position(options.position, len(corrupt_ids))

        def compute():
            vector = self._capture(clean_ids, CaptureSpec(residual=True)).residual[row, position]
            return self._edited_lens(corrupt_ids, {resid(row): set_vector(position, vector)}, lens)
        key = {"prompt": [clean, corrupt], "options": {"row": row, "position": position, "lens": lens.key()}}
        return self.results.get("patched-lens", key, compute)

    def ablated_lens(self, text: str, ablation: Ablation, lens: LensOptions = LensOptions()) -> LogitLensResult:
        """The logit lens of ``text`` on the model with ``ablation`` applied (no ablation: the plain lens)."""
        from .interventions.ablation import ablation_edits, mean_sites

        lens.check()
        self._can("ablated_lens")
        a = self.loaded.adapter
        ablation.check(a.n_layers, a.n_heads)
        self._lm_head()
        if ablation.heads and not a.out_proj:
            raise LensError(f"heads of {a.model_type} cannot be ablated separately: {a.routes_unavailable()}")
        if ablation.mlp and a.post_ln:
            raise LensError(f"{a.model_type} normalises after each sub-block: its MLP output is not a separate write")
        ids = self._ids(text)

        def compute():
            sites = mean_sites(ablation)
            means = None
            if sites:
                out = self.engine.run(ids, read={s: None for s in sites}, logits="none")
                means = {s: v[0] for s, v in out.reads.items()}
            return self._edited_lens(ids, ablation_edits(ablation, a.head_dim, means), lens)
        if ablation.empty:
            return self.logit_lens(text, lens)
        return self.results.get("ablated-lens", {"prompt": text, "options": {"ablation": ablation.key(),
                                                                              "lens": lens.key()}}, compute)

    def compare_with(self, other: "EngineBackend", text: str) -> ModelComparison:
        """This model's logit lens of ``text`` beside ``other``'s (another backend), cell by cell."""
        from .analysis.compare import compare_models

        for b in (self, other):
            b._can("compare_with")
            b._lm_head()
        key = {"prompt": text, "options": {"other": other.loaded.fingerprint}}
        return self.results.get("compare", key, lambda: compare_models(
            self._residual_trace(text), other._residual_trace(text), self.loaded.tokenizer))

    # ------------------------------------------------------------ prompt suites (lens/suites/)

    def _item_token(self, item: SuiteItem, text: str | None, what: str) -> int | None:
        if text is None:
            return None
        try:
            return self._one_token(text, what)
        except LensError as exc:
            raise LensError(f"{item.where}: {exc}") from None

    def _item_ids(self, item: SuiteItem, text: str) -> list[int]:
        try:
            return self._ids(text)
        except LensError as exc:
            raise LensError(f"{item.where}: {exc}") from None

    @staticmethod
    def _suite_key(suite: Suite) -> dict:
        return {"prompt": suite.key(), "suite": [suite.name, [i.where for i in suite.items]]}

    def lens_suite(self, suite: Suite, options: SuiteOptions = SuiteOptions(),
                   progress: Progress | None = None) -> SuiteLensResult:
        """Every prompt of ``suite`` through the lens (``options.lens``) at one position each (the last unless
        the item names one), many prompts per forward pass: per prompt and row the target's probability,
        log-probability and rank, KL to the final distribution, top-1 and exit layer (lens/suites/batch.py).
        Every target and foil is checked (one token each) before any work."""
        from .analysis.early_exit import saturation_rows
        from .analysis.logit_lens import decode_table
        from .suites.batch import lens_at_positions

        options.check()
        self._lm_head()
        if not suite.items:
            raise LensError(f"{suite.name} holds no prompts")
        fitted = self._lens_for(options.lens)
        ids, positions, targets, foils = [], [], [], []
        for item in suite.items:
            item_ids = self._item_ids(item, item.prompt)
            T = len(item_ids)
            p = T - 1 if item.position is None else item.position + (T if item.position < 0 else 0)
            if not 0 <= p < T:
                raise LensError(f"{item.where}: position {item.position} is outside the prompt's {T} tokens")
            t, f = self._item_token(item, item.target, "target"), self._item_token(item, item.foil, "foil")
            if f is not None and f == t:
                raise LensError(f"{item.where}: the target and the foil are the same token")
            ids.append(item_ids)
            positions.append(p)
            targets.append(t)
            foils.append(f)

        def compute():
            got = lens_at_positions(self.engine, ids, positions, targets, foils,
                                    maps=fitted.apply if fitted is not None else None, progress=progress)
            top1 = got["top1_ids"]
            table = decode_table(self.loaded.tokenizer, np.concatenate([top1.ravel(), got["target_ids"]]))
            L = self.loaded.n_layers
            return SuiteLensResult(
                model=self.loaded.name, lens=options.lens, suite=suite.name,
                layers=["emb"] + [str(i) for i in range(1, L + 1)], prompts=[i.prompt for i in suite.items],
                where=[i.where for i in suite.items], n_tokens=[len(x) for x in ids], positions=positions,
                target_ids=got["target_ids"], targets=[table[int(i)] for i in got["target_ids"]],
                target_given=[t is not None for t in targets], foils=[i.foil for i in suite.items],
                labels={c: [i.label(c) for i in suite.items] for c in suite.columns},
                target_prob=got["target_prob"], target_logprob=got["target_logprob"],
                target_rank=got["target_rank"], kl_to_final=got["kl_to_final"], logit_diff=got["logit_diff"],
                top1_ids=top1, top1_tokens=[[table[int(i)] for i in row] for row in top1],
                top1_prob=got["top1_prob"], exit_layer=saturation_rows(top1.T, top1[:, -1]),
                final_prediction=[table[int(i)] for i in top1[:, -1]], options=options.key())
        key = {**self._suite_key(suite), "options": options.key(), "lens_id": fitted.lens_id if fitted else None}
        return self.results.get("lens-suite", key, compute)

    def patch_suite(self, suite: Suite, options: PairSuiteOptions = PairSuiteOptions(),
                    progress: Progress | None = None) -> SuitePatchResult:
        """Activation patching (``patch``) of every clean/corrupt pair of ``suite`` at ``options.site``, and the
        grids averaged over the pairs with positions counted from the end (pairs may differ in length).
        A pair whose prompts differ in token count, or whose two prompts give the same metric, is left out
        and listed with the reason; a target or foil that is not one token is an error naming its line."""
        from .model.tokens import token_strings as strings
        from .options import PatchOptions
        from .suites.aggregate import align_right, grid_mean

        options.check()
        self._can("patch_suite")
        check_patch_site(options.site, self.info())
        if not suite.pairs:
            raise LensError(f"{suite.name} holds no clean/corrupt pairs: give each item a 'clean' and a 'corrupt' "
                            "prompt (or build them from a template)")
        with_foil = {i.foil is not None for i in suite.pairs}
        if len(with_foil) > 1:
            raise LensError(f"{suite.name}: some pairs name a foil and some do not; the metric (logit difference "
                            "or log-probability) must be the same for every pair to average them")
        left_out: list[dict] = []
        kept: list[tuple[SuiteItem, list[int]]] = []
        for item in suite.items:
            if not item.is_pair:
                left_out.append({"where": item.where, "clean": item.prompt, "corrupt": None,
                                 "reason": "not a pair (no 'clean' and 'corrupt')"})
                continue
            if item.target is None:
                raise LensError(f"{item.where}: a pair needs a target, the clean prompt's answer (e.g. ' Paris')")
            t, f = self._item_token(item, item.target, "target"), self._item_token(item, item.foil, "foil")
            if f == t:
                raise LensError(f"{item.where}: the target and the foil are the same token")
            clean_ids, corrupt_ids = self._item_ids(item, item.clean), self._item_ids(item, item.corrupt)
            if len(clean_ids) != len(corrupt_ids):
                left_out.append({"where": item.where, "clean": item.clean, "corrupt": item.corrupt,
                                 "reason": f"the clean prompt has {len(clean_ids)} tokens and the corrupted one "
                                           f"{len(corrupt_ids)}"})
                continue
            kept.append((item, clean_ids))

        def compute():
            done, grids, results, errs = [], [], [], list(left_out)
            P = len(kept)
            for k, (item, clean_ids) in enumerate(kept):
                def step(fraction: float, message: str, k=k) -> None:
                    progress((k + fraction) / P, f"pair {k + 1} of {P}: {message}")
                try:
                    r = self.patch(item.clean, item.corrupt, PatchOptions(target=item.target, foil=item.foil,
                                                                          site=options.site),
                                   progress=step if progress is not None else None)
                except LensError as exc:  # two prompts with the same metric: nothing to restore
                    errs.append({"where": item.where, "clean": item.clean, "corrupt": item.corrupt,
                                 "reason": str(exc)})
                    continue
                done.append((item, clean_ids))
                results.append(r)
                grids.append(np.asarray(r.patch, np.float64))
                if progress is not None:
                    progress((k + 1) / P, f"patched pair {k + 1} of {P}")
            if not results:
                raise LensError(f"{suite.name}: every pair was left out ({errs[0]['reason']}, …)")
            stacked = align_right(grids)
            mean, count = grid_mean(stacked)
            C = stacked.shape[2]
            if options.site == "head":
                columns, column_tokens = list(results[0].columns), [""] * C
            else:
                columns = [str(c - C) for c in range(C)]
                toks = [strings(self.loaded.tokenizer, ids) for _, ids in done]
                column_tokens = []
                for c in range(C):
                    at = {t[len(t) - (C - c)] for t in toks if len(t) >= C - c}
                    column_tokens.append(at.pop() if len(at) == 1 else "")
            items = [i for i, _ in done]
            return SuitePatchResult(
                model=self.loaded.name, site=options.site, suite=suite.name, layers=list(results[0].layers),
                columns=columns, column_tokens=column_tokens, clean=[i.clean for i in items],
                corrupt=[i.corrupt for i in items], where=[i.where for i in items],
                targets=[i.target for i in items], foils=[i.foil for i in items],
                labels={c: [i.label(c) for i in items] for c in suite.columns},
                metric_name=results[0].metric_name,
                metric_clean=np.array([r.metric_clean for r in results], np.float64),
                metric_corrupt=np.array([r.metric_corrupt for r in results], np.float64),
                grids=stacked.astype(np.float32), mean=mean, count=count, left_out=errs, options=options.key())
        return self.results.get("patch-suite", {**self._suite_key(suite), "options": options.key()}, compute)

    # ------------------------------------------------------------ attribution and circuits (lens/circuits/)

    def _pair_tokens(self, clean: str, corrupt: str, target: str, foil: str | None):
        target_id = self._one_token(target, "target")
        foil_id = None if foil is None else self._one_token(foil, "foil")
        if foil_id == target_id:
            raise LensError("the target and the foil are the same token: the logit difference is always 0")
        return (*self._pair(clean, corrupt), target_id, foil_id)

    def attribute(self, clean: str, corrupt: str, options: AttributeOptions,
                  progress: Progress | None = None) -> AttributionResult:
        """Attribution patching of the grid ``patch`` computes at ``options.site`` (lens/circuits/atp.py); verified:
        beside the real grid, with their correlation and the cells where they disagree most."""
        from .circuits.atp import attribution_result

        options.check()
        self._can("attribute")
        check_patch_site(options.site, self.info())
        if (options.qk_fix or options.verify) and not self.engine.capabilities.writes:
            self._can("patch")
        clean_ids, corrupt_ids, target, foil = self._pair_tokens(clean, corrupt, options.target, options.foil)

        def compute():
            actual = None
            if options.verify:
                actual = self.patch(clean, corrupt, PatchOptions(options.target, options.foil, options.site))
            return attribution_result(self.engine, self.loaded.name, self.loaded.tokenizer, clean_ids, corrupt_ids,
                                      target, foil, options, actual, progress)
        return self.results.get("attribution", {"prompt": [clean, corrupt], "options": options.key()}, compute)

    def circuit(self, clean: str, corrupt: str, options: CircuitOptions,
                progress: Progress | None = None) -> CircuitResult:
        """Edge attribution patching, the circuit of the ``options.edges`` strongest edges and the faithfulness
        curve (lens/circuits/eap.py); the scores and the curve are kept for the next edge count."""
        from .circuits.eap import check_circuits, circuit_result, circuit_scores
        from .circuits.options import MAX_CIRCUIT_TOKENS

        options.check()
        self._can("circuit")
        check_patch_site("head", self.info())
        check_circuits(self.loaded.adapter)
        clean_ids, corrupt_ids, target, foil = self._pair_tokens(clean, corrupt, options.target, options.foil)
        if len(clean_ids) > MAX_CIRCUIT_TOKENS:
            raise LensError(f"the prompts have {len(clean_ids)} tokens; circuits take at most {MAX_CIRCUIT_TOKENS}")

        def compute():
            key = repr([clean, corrupt, options.target, options.foil, options.ig_steps, options.rank])
            scored = self.memo.get("circuit-scores", key, lambda: circuit_scores(
                self.engine, clean_ids, corrupt_ids, target, foil, progress, options.ig_steps, options.rank))
            return circuit_result(self.engine, self.loaded.name, self.loaded.tokenizer, scored, clean_ids,
                                  corrupt_ids, target, foil, options, progress)
        return self.results.get("circuit", {"prompt": [clean, corrupt], "options": options.key()}, compute)


    # ------------------------------------------------------------ who writes the answer (lens/attribution/)

    def _answer(self, target: str | None, foil: str | None = None) -> tuple[int | None, int | None]:
        """The target's and the foil's token ids (None where not given: the target is then the model's top-1)."""
        t = None if not target else self._one_token(target, "target")
        f = None if not foil else self._one_token(foil, "foil")
        if f is not None and f == t:
            raise LensError("the target and the foil are the same token: the logit difference is always 0")
        return t, f

    # ------------------------------------------------------------ the weight space (lens/weights/)

    def neurons(self, options, text: str | None = None, progress: Progress | None = None):
        """Every MLP neuron scored against ``options.token``'s unembedding row through the final norm's weight
        (lens/weights/neurons.py); the top promoters and suppressors with their own top and bottom tokens. No
        token: the model's own top-1 after ``text``."""
        from dataclasses import replace

        from .model.tokens import decode_token
        from .weights.neurons import check_weights, neuron_scores

        options.check()
        self._can("neurons")
        check_weights(self.loaded.adapter)
        if options.token is None:
            if not text:
                raise LensError("give a token (e.g. ' Paris'), or a prompt: the neurons then write its top-1")
            t = int(self.engine.run([self._ids(text)]).logits[0].argmax())  # by id: a byte token has no text
            token = decode_token(self.loaded.tokenizer, t)
        else:
            t, token = self._one_token(options.token, "token"), options.token
        key = {"options": replace(options, token=None).key(), "token_id": t}
        return self.results.get("neurons", key, lambda: neuron_scores(
            self.loaded.adapter, self.loaded.tokenizer, t, token, options.top, options.top_k, self.loaded.name,
            progress))

    def _shipped_corpus(self):
        from .fitted.corpus import load_corpus

        return self.memo.get("shipped-corpus", "", lambda: load_corpus(self.loaded.tokenizer))

    def neuron_contexts(self, progress: Progress | None = None):
        """Every neuron's top-activating positions over the shipped corpus: one pass, computed once, cached."""
        from .weights.neurons import check_weights, neuron_contexts

        self._can("neurons")
        check_weights(self.loaded.adapter)
        corpus = self._shipped_corpus()
        return self.results.get("neuron-contexts", {"corpus": corpus.digest}, lambda: neuron_contexts(
            self.engine, corpus.chunks, corpus.name, corpus.digest, self.loaded.name, progress=progress))

    def neuron(self, text: str, options, progress: Progress | None = None):
        """One neuron's page: its vocabulary projection, its activation on ``text``, its top contexts."""
        from .weights.neurons import check_weights, neuron_page

        a = self.loaded.adapter
        check_weights(a)
        options.check(a.n_layers, a.down_projection(0).shape[0])
        self._can("neurons")
        ids = self._ids(text)
        contexts = self.neuron_contexts(progress)
        stream = [t for c in self._shipped_corpus().chunks for t in c]
        return self.results.get("neuron", {"prompt": text, "options": options.key(), "corpus": contexts.corpus_digest},
                                lambda: neuron_page(self.engine, self.loaded.tokenizer, ids, options.layer,
                                                    options.neuron, options.top_k, options.contexts, contexts, stream,
                                                    self.loaded.name))

    def head_weights(self, options=None, progress: Progress | None = None):
        """Each head's OV copying over the shipped corpus's most frequent tokens, and the composition scores of one
        kind between heads (lens/weights/heads.py)."""
        from .weights.heads import composition_scores, head_weights
        from .weights.options import HeadWeightOptions

        options = options or HeadWeightOptions()
        options.check()
        self._can("head_weights")
        corpus = self._shipped_corpus()
        stream = [t for c in corpus.chunks for t in c]

        def compute():
            scores = composition_scores(self.loaded.adapter, options.composition, progress)
            return head_weights(self.loaded, stream, options.composition, options.top_k, options.vocab, scores,
                                progress)
        return self.results.get("head-weights", {"options": options.key(), "corpus": corpus.digest}, compute)

    def dla(self, text: str, options: DLAOptions = DLAOptions()) -> DLAResult:
        """Direct logit attribution at ``options.position`` (None: the last): each head's, attention block's,
        MLP's and the embeddings' part of logit(target) − logit(foil) (logit(target) without a foil), through the
        final norm with its scale frozen at the run's value; the parts add up to the model's own difference."""
        from .analysis.checks import check_position
        from .attribution.dla import dla

        options.check()
        self._can("dla")
        ids = self._ids(text)
        position = check_position(options.position, len(ids))
        target, foil = self._answer(options.target, options.foil)
        tok = self.loaded.tokenizer
        return self.results.get("dla", {"prompt": text, "options": options.key()}, lambda: dla(
            self.engine, ids, tok, token_strings(tok, ids), position, target, foil, options.top_k, self.loaded.name))

    def sublayer_lens(self, text: str, options: SublayerOptions = SublayerOptions()) -> SublayerLensResult:
        """Each block's attention and MLP write decoded on its own (lens/attribution/sublayer.py): top tokens per
        layer and position, and the target's direct logit (default target: the model's top-1)."""
        from .attribution.sublayer import sublayer_lens

        options.check()
        self._can("sublayer_lens")
        ids = self._ids(text)
        target, _ = self._answer(options.target)
        tok = self.loaded.tokenizer
        return self.results.get("sublayer-lens", {"prompt": text, "options": options.key()}, lambda: sublayer_lens(
            self.engine, ids, tok, token_strings(tok, ids), target, options.top_k, self.loaded.name))

    def knockout(self, text: str, options: KnockoutOptions = KnockoutOptions(),
                 progress: Progress | None = None) -> KnockoutResult:
        """Attention knockout (Geva et al. 2023): the last position's attention to ``options.sources`` (None: each
        token on its own) blocked in a window of layers at every layer; the target's probability after it."""
        from .attribution.knockout import groups, knockout

        options.check()
        self._can("knockout")
        ids = self._ids(text)
        tok = self.loaded.tokenizer
        tokens = token_strings(tok, ids)
        groups(tokens, options.sources)  # bad positions are a message before any run
        target, _ = self._answer(options.target)
        return self.results.get("knockout", {"prompt": text, "options": options.key()}, lambda: knockout(
            self.engine, ids, tok, tokens, target, options.sources, options.window, options.align,
            self.loaded.name, progress))

    # ------------------------------------------------------------ steering (lens/steering/)

    def steer(self, prompt: str, options: "SteerOptions", progress: Progress | None = None) -> "SteerResult":
        """``prompt`` continued plainly and with a steering vector at the residual stream entering block
        ``options.layer`` (lens/steering/options.py says how), from the same seed; the target's lens in both runs
        and the dose-response."""
        from .steering.steer import steer

        a = self.loaded.adapter
        options.check(a.n_layers)
        self._can("steer")
        if not (a.has_lm_head and a.is_causal):
            raise LensError(f"{self.loaded.name} is not a causal language model: it does not generate text")
        if a.post_ln:
            raise LensError(f"{a.model_type} normalises after each sub-block: it has no residual stream to steer")
        ids = self._ids(prompt)
        room = self.token_limit - len(ids)
        if room < 1:
            raise LensError(f"the prompt already fills the {self.token_limit} tokens allowed here: shorten it")
        target = None if options.target is None else self._one_token(options.target, "target")
        saved = self._saved_vector(options.saved) if options.vector == "saved" else None
        how = saved.how if saved is not None else {}
        if options.vector == "token" or (saved is not None and saved.source == "token" and how.get("token")):
            token_id = self._one_token(options.token or how["token"], "steering token")
            target = token_id if target is None else target
        elif target is None and (options.vector == "contrast" or how.get("positive")):
            # the first token where the first pair's texts differ, from the positive (" love")
            p = self._ids(options.positive[0] if options.vector == "contrast" else how["positive"][0])
            n = self._ids(options.negative[0] if options.vector == "contrast" else how["negative"][0])
            target = next((int(a) for a, b in zip(p, n) if a != b), int(p[len(n)]) if len(p) > len(n) else None)
        stop = [i for i in [getattr(self.loaded.tokenizer, "eos_token_id", None)] if i is not None]

        key = {"prompt": prompt, "options": options.key()}
        if saved is not None:  # a name saved again with other numbers is another vector
            key["vector"] = saved.digest
        done = None
        if options.dose and not self.results.has("steer", key):
            # The texts and lenses are the run's without the dose-response (cached when it was shown); asked for
            # here, not in compute(), which runs as one job.
            from dataclasses import replace

            done = self.steer(prompt, replace(options, dose=False), progress)

        def compute():
            v, label = self._vector(options, saved)
            return steer(self.engine, self.loaded.tokenizer, self.loaded.name, ids, v, options, label, target,
                         stop, room, progress, done=done)
        return self.results.get("steer", key, compute)

    def _saved_vector(self, name: str):
        """The saved vector ``name``, refused when its width is not this model's residual stream's."""
        from .steering.store import VectorStore

        v = VectorStore().get(name)
        v.fits(self.loaded.name, self.loaded.adapter.d_model)
        return v

    def _vector(self, options: "SteerOptions", saved=None):
        """(the steering vector [d] float64 torch, its label) for ``options``."""
        import torch

        from .steering.vectors import contrast_vector, token_vector

        a = self.loaded.adapter
        if options.vector == "token":
            return token_vector(a, self._one_token(options.token, "steering token")), \
                f"the unembedding of {options.token!r}"
        if options.vector == "saved":
            saved = saved or self._saved_vector(options.saved)
            label = saved.label()
            if saved.layer != options.layer:
                label += f", applied at layer {options.layer}"
            return torch.as_tensor(saved.vector, dtype=torch.float64), label
        if options.vector == "probe":
            from .probes.data import shipped
            from .probes.options import ProbeOptions

            r = self.probe(shipped(options.probe_set), ProbeOptions())
            row = options.layer - 1  # the lens row of the stream entering block ``layer``
            return torch.as_tensor(r.directions[row], dtype=torch.float64), (
                f"the {options.probe_set} probe's direction ({r.classes[1]} − {r.classes[0]}) at layer "
                f"{options.layer} (cross-validated accuracy {r.accuracy[row]:.0%})")
        pairs = [(self._ids(p), self._ids(n)) for p, n in zip(options.positive, options.negative)]
        return contrast_vector(self.engine, pairs, options.layer), \
            " / ".join(f"{p!r} − {n!r}" for p, n in zip(options.positive, options.negative))

    def steering_vector(self, options: "SteerOptions", name: str = ""):
        """The vector ``options`` steer with, as a ``SavedVector`` named ``name`` (not saved: see VectorStore)."""
        from .steering.store import SavedVector

        a = self.loaded.adapter
        options.check(a.n_layers)
        self._can("steer")
        v, label = self._vector(options)
        if options.vector == "saved":
            got = self._saved_vector(options.saved)
            return SavedVector(name, got.model, got.fingerprint, options.layer, got.source, got.how, got.vector)
        how = {"contrast": lambda: {"positive": list(options.positive), "negative": list(options.negative)},
               "token": lambda: {"token": options.token},
               "probe": lambda: {"set": options.probe_set, "label": label}}[options.vector]()
        return SavedVector(name, self.loaded.name, self.loaded.fingerprint, options.layer, options.vector, how,
                           v.double().cpu().numpy())

    # ------------------------------------------------------------ probes (lens/probes/)

    def probe(self, probe_set, options=None, progress: Progress | None = None):
        """Per lens row, a logistic-regression probe of ``probe_set``'s labels from the stream at each prompt's
        last token, k-fold cross-validated; each row's direction (lens/probes/)."""
        from .probes.options import ProbeOptions
        from .probes.probe import run_probe

        fewest = min(sum(probe_set.labels), len(probe_set.labels) - sum(probe_set.labels))
        options = options or ProbeOptions()
        options.check(fewest=fewest)
        options = options.fitted(fewest)  # fewer prompts of a label than folds: one fold per prompt of it
        ids = [self._ids(p) for p in probe_set.prompts]  # every prompt checked before any is run
        return self.results.get("probe", {"set": probe_set.key(), "options": options.key()}, lambda: run_probe(
            self.engine, self.loaded.name, ids, probe_set, options, progress))


    # ------------------------------------------------------------ layer anatomy (lens/anatomy/)

    def _anatomy_ids(self, text: str, what: str) -> list[int]:
        from .anatomy.options import MAX_TOKENS

        a = self.loaded.adapter
        if not (a.has_lm_head and a.is_causal) or a.post_ln:
            raise LensError(f"{self.loaded.name} is not a causal language model with a residual stream: {what} "
                            "does not apply")
        ids = self._ids(text)
        if len(ids) < 3:
            raise LensError(f"the prompt is {len(ids)} token{'s' if len(ids) > 1 else ''}: the measures leave out the "
                            "first position and need two after it: give at least three tokens")
        if len(ids) > MAX_TOKENS:
            raise LensError(f"the prompt is {len(ids):,} tokens; layer anatomy reads at most {MAX_TOKENS} "
                            "(every layer's similarity to every other is a tokens × tokens matrix each): shorten it")
        return ids

    def anatomy(self, text: str, options=None):
        """Per-layer measures of ``text`` (lens/anatomy/): residual norms, block changes and the attention's and MLP's
        shares, KL of the next token with each block skipped (and neighbours swapped), CKA between layers, outlier
        dimensions, kurtosis, the previous token's embedding in the stream; positions 1… (the first left out)."""
        from .anatomy.measure import anatomy
        from .anatomy.options import AnatomyOptions
        from .model.tokens import decode_token

        options = options or AnatomyOptions()
        options.check()
        self._can("anatomy")
        ids = self._anatomy_ids(text, "layer anatomy")
        tok = self.loaded.tokenizer
        return self.results.get("anatomy", {"prompt": text, "options": options.key()}, lambda: anatomy(
            self.engine, ids, token_strings(tok, ids), self.loaded.n_layers, options, self.loaded.name,
            lambda i: decode_token(tok, i)))

    def cka_with(self, other: "EngineBackend", text: str):
        """Linear CKA between every layer of this model and every layer of ``other`` on ``text``'s tokens (both models
        must read it as the same token ids)."""
        from .anatomy.measure import cka_between

        for b in (self, other):
            b._can("cka_with")
        ids = self._anatomy_ids(text, "layer similarity")
        other_ids = other._anatomy_ids(text, "layer similarity")
        if list(other_ids) != list(ids):
            raise LensError(f"{other.loaded.name} reads the prompt as other tokens than {self.loaded.name} "
                            f"({len(other_ids)} against {len(ids)}): layers are compared token by token, so both "
                            "models need the same tokenizer")
        key = {"prompt": text, "options": {"other": other.loaded.fingerprint}}
        return self.results.get("cka", key, lambda: cka_between(
            self.engine, other.engine, ids, self.loaded.n_layers, other.loaded.n_layers, self.loaded.name,
            other.loaded.name))

    def contrastive(self, text: str, options):
        """Autocontrastive decoding at ``text``'s last position (log p_L − log p_l over the plausible tokens, the
        amateur l = ``options.amateur_layer``'s logit lens), and greedy continuations with and without it."""
        from .anatomy.measure import contrastive
        from .model.tokens import decode_token

        options.check(self.loaded.n_layers)
        self._can("contrastive")
        ids = self._anatomy_ids(text, "autocontrastive decoding")
        room = self.token_limit - len(ids)
        if room < options.max_new_tokens:
            raise LensError(f"the prompt leaves room for {max(room, 0)} new tokens of the {self.token_limit} allowed "
                            f"here, not {options.max_new_tokens}: shorten it or ask for fewer")
        tok = self.loaded.tokenizer
        stop = [i for i in [getattr(tok, "eos_token_id", None)] if i is not None]
        return self.results.get("contrastive", {"prompt": text, "options": options.key()}, lambda: contrastive(
            self.engine, ids, options, self.loaded.name, lambda i: decode_token(tok, i),
            lambda new: tok.decode(new, skip_special_tokens=True), stop))

    def anatomy_suite(self, suite: Suite, options=None, progress: Progress | None = None):
        """``anatomy`` of every prompt of ``suite`` (a pair's clean prompt), one prompt at a time, stacked per prompt
        (lens/anatomy/suite.py; ``summary`` there gives the means over the prompts and their spread). Every prompt is
        checked before any is run."""
        from .anatomy.options import MAX_SUITE_PROMPTS, AnatomyOptions
        from .anatomy.suite import anatomy_suite
        from .model.tokens import decode_token

        options = options or AnatomyOptions()
        options.check()
        self._can("anatomy_suite")
        if not suite.items:
            raise LensError(f"{suite.name} holds no prompts")
        if len(suite.items) > MAX_SUITE_PROMPTS:
            raise LensError(f"{suite.name} holds {len(suite.items):,} prompts; layer anatomy measures at most "
                            f"{MAX_SUITE_PROMPTS} of a suite (each runs once with every block skipped): use fewer")
        ids = []
        for item in suite.items:
            try:
                ids.append(self._anatomy_ids(item.prompt, "layer anatomy"))
            except LensError as exc:
                raise LensError(f"{item.where}: {exc}") from None
        tok = self.loaded.tokenizer
        return self.results.get("anatomy-suite", {**self._suite_key(suite), "options": options.key()},
                                lambda: anatomy_suite(
                                    self.engine, ids, [token_strings(tok, x) for x in ids], self.loaded.n_layers,
                                    options, self.loaded.name, lambda i: decode_token(tok, i), suite.name,
                                    [i.prompt for i in suite.items], [i.where for i in suite.items], progress))

    # ------------------------------------------------------------ show the work (lens/explain/), sampling (lens/sampling/)

    def explain_cell(self, text: str, options: CellOptions) -> CellExplanation:
        """One logit-lens cell walked through from its residual vector to its probability (lens/explain/cell.py)."""
        from .explain.cell import explain_cell

        options.check(self.loaded.n_layers)
        self._lm_head()
        self._can("explain_cell")
        ids = self._ids(text)
        check_position(options.position, len(ids))
        return self.results.get("explain-cell", {"prompt": text, "options": options.key()}, lambda: explain_cell(
            self.engine, self.loaded.tokenizer, self.loaded.name, ids, token_strings(self.loaded.tokenizer, ids), options))

    def explain_attention(self, text: str, options: AttentionWeightOptions) -> AttentionExplanation:
        """One attention weight walked through from the query and key vectors (lens/explain/attention.py)."""
        from .explain.attention import explain_attention

        a = self.loaded.adapter
        options.check(a.n_layers, a.n_heads)
        self._can("explain_attention")
        ids = self._ids(text)
        check_position(options.query, len(ids))
        check_position(options.key_position, len(ids))
        return self.results.get("explain-attention", {"prompt": text, "options": options.key()}, lambda: explain_attention(
            self.engine, self.loaded.name, ids, token_strings(self.loaded.tokenizer, ids), options))

    def explain_neuron(self, text: str, options: NeuronAtOptions) -> NeuronExplanation:
        """One MLP neuron at one position walked through (lens/explain/neuron.py)."""
        from .explain.neuron import explain_neuron, n_neurons

        a = self.loaded.adapter
        options.check(a.n_layers, n_neurons(a) or None)
        self._can("explain_neuron")
        ids = self._ids(text)
        check_position(options.position, len(ids))
        return self.results.get("explain-neuron", {"prompt": text, "options": options.key()}, lambda: explain_neuron(
            self.engine, self.loaded.tokenizer, self.loaded.name, ids, token_strings(self.loaded.tokenizer, ids), options))

    def next_logits(self, text: str) -> NextLogits:
        """The model's own logits after ``text`` (every token of the vocabulary): one pass, then kept (in memory for the
        last prompt, and in the result cache), so that resampling them runs no model."""
        self._lm_head("there are no next-token logits to sample from")

        def compute():
            ids = self._ids(text)
            out = self.engine.run(ids, logits="last")
            return NextLogits(model=self.loaded.name, tokens=token_strings(self.loaded.tokenizer, ids), logits=out.logits[0].cpu().numpy())
        return self.memo.get("next-logits", text, lambda: self.results.get("next-logits", {"prompt": text}, compute))

    def sample(self, text: str, options: SampleOptions) -> SampleResult:
        """Temperature, top-k and top-p on the cached final logits of ``text``, and a sample (lens/sampling/sample.py):
        numpy on the kept logits, no model run once they are kept."""
        from .model.tokens import decode_token
        from .sampling.sample import sample

        options.check(self.engine.vocab_size())
        tok = self.loaded.tokenizer
        return sample(self.next_logits(text), options, lambda i: decode_token(tok, i))


def local_backend(loaded: LoadedModel, cache: ResultCache | None = None, **kwargs) -> EngineBackend:
    """A backend whose model runs in this process, with hooks."""
    from .engine.hooks import HookEngine

    return EngineBackend(loaded, HookEngine.of(loaded), cache, **kwargs)


def nnsight_backend(loaded: LoadedModel, cache: ResultCache | None = None, remote: bool = False,
                    **kwargs) -> EngineBackend:
    """A backend whose every pass is an nnsight trace, here or (``remote``) on NDIF."""
    from .engine.nnsight import NnsightEngine
    from .model.loading import with_transformers_model

    loaded = with_transformers_model(loaded)  # nnsight wraps transformers' models, not the plain one
    return EngineBackend(loaded, NnsightEngine(loaded, remote=remote), cache, **kwargs)

# The weight space (lens/weights/): neurons that write a token, a neuron's page, heads' OV circuits and composition.
from .weights.results import HeadWeights, NeuronContexts, NeuronPage, NeuronScores  # noqa: E402

RESULT_TYPES.update({"neurons": NeuronScores, "neuron-contexts": NeuronContexts, "neuron": NeuronPage,
                     "head-weights": HeadWeights})
NEEDS.update({"neurons": (("weights_here",), "the neurons that write a token"),
              "head_weights": (("weights_here",), "the heads' weights")})

# Layer anatomy (lens/anatomy/).
from .anatomy.results import AnatomyResult, CKAResult, ContrastiveResult  # noqa: E402

RESULT_TYPES.update({"anatomy": AnatomyResult, "cka": CKAResult, "contrastive": ContrastiveResult})
NEEDS.update({"anatomy": (("writes",), "layer anatomy (it skips blocks)"), "cka_with": ((), "comparing two models' layers"),
              "contrastive": ((), "autocontrastive decoding")})
from .anatomy.results import AnatomySuiteResult  # noqa: E402

RESULT_TYPES["anatomy-suite"] = AnatomySuiteResult
NEEDS["anatomy_suite"] = NEEDS["anatomy"]

# Show the work (lens/explain/) and sampling on the spot (lens/sampling/).
from .explain.options import AttentionWeightOptions, CellOptions, NeuronAtOptions  # noqa: E402
from .explain.results import AttentionExplanation, CellExplanation, NeuronExplanation  # noqa: E402
from .sampling.options import SampleOptions  # noqa: E402
from .sampling.results import NextLogits, SampleResult  # noqa: E402

RESULT_TYPES.update({"explain-cell": CellExplanation, "explain-attention": AttentionExplanation,
                     "explain-neuron": NeuronExplanation, "next-logits": NextLogits})
NEEDS.update({"explain_attention": (("weights_here",), "one attention weight's steps"),
              "explain_neuron": (("weights_here",), "one neuron's steps"),
              "explain_cell": (("weights_here",), "one lens cell's steps")})

