"""The narrow interface between the dashboard and whatever runs the model.

Pages only call a Backend: "describe the model", "tokenize this", "trace this",
"run the logit lens on this". ``LocalBackend`` runs a transformers model in this
process; a backend on a GPU box or an NDIF/nnsight engine implements the same
methods and no page changes.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from .attention_backend import AttentionMethods
from .cache import ResultCache, make_key
from .heads import HeadPatterns, HeadSummary
from .rollout import FlowResult, RolloutResult
from .routes import AttentionContributions, NodeDetail, RouteGraph
from .convert import Progress
from .errors import LensError
from .logit_lens import LensOptions, LogitLensResult, logit_lens
from .geometry import GeometryOptions, GeometryResult, geometry
from .projection import ProjectionOptions, ProjectionResult, project
from .models import LoadedModel
from .results import join, split
from .tokens import encode, token_strings
from .trace import CaptureSpec, Trace, capture


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str
    model_type: str
    n_layers: int
    n_heads: int
    d_model: int
    vocab_size: int
    context_length: int
    has_lm_head: bool
    fingerprint: str


@runtime_checkable
class Backend(Protocol):
    def info(self) -> ModelInfo: ...

    def tokenize(self, text: str) -> list[str]: ...

    def trace(self, text: str, spec: CaptureSpec = CaptureSpec()) -> Trace: ...

    def logit_lens(self, text: str, options: LensOptions = LensOptions(),
                   progress: Progress | None = None) -> LogitLensResult: ...

    def projection(self, texts: str | Sequence[str], options: ProjectionOptions = ProjectionOptions(),
                   progress: Progress | None = None) -> ProjectionResult: ...

    def geometry(self, texts: str | Sequence[str], options: GeometryOptions = GeometryOptions()) -> GeometryResult: ...

    # Attention flow (lens/attention_backend.py); layers are 1-based, positions 0-based (None: last).
    def rollout(self, text: str, position: int | None = None) -> RolloutResult: ...

    def attention_flow(self, text: str, position: int | None = None,
                       layers: list[int] | None = None) -> FlowResult: ...

    def head_patterns(self, text: str, layer: int) -> HeadPatterns: ...

    def head_summary(self, text: str) -> HeadSummary: ...

    def contributions(self, text: str, layer: int, position: int | None = None) -> AttentionContributions: ...

    def route_graph(self, text: str, position: int | None = None, threshold: float = 0.04) -> RouteGraph: ...

    def node_detail(self, text: str, layer: int, position: int | None, block: str = "attn",
                    top_k: int = 8) -> NodeDetail: ...


class LocalBackend(AttentionMethods):
    """Runs one loaded model in this process; results go through an optional disk cache."""

    def __init__(self, loaded: LoadedModel, cache: ResultCache | None = None, max_tokens: int | None = None):
        self.loaded = loaded
        self.cache = cache
        self.max_tokens = min(max_tokens or loaded.context_length, loaded.context_length)
        # Hooks live on shared modules: one capture at a time per model.
        self._lock = threading.Lock()

    def info(self) -> ModelInfo:
        m, cfg = self.loaded.model, self.loaded.model.config
        return ModelInfo(
            name=self.loaded.name,
            source=self.loaded.source,
            model_type=cfg.model_type,
            n_layers=self.loaded.n_layers,
            n_heads=int(getattr(cfg, "num_attention_heads", getattr(cfg, "n_head", 0)) or 0),
            d_model=int(getattr(cfg, "hidden_size", getattr(cfg, "n_embd", 0)) or 0),
            vocab_size=int(m.get_input_embeddings().weight.shape[0]),
            context_length=self.max_tokens,
            has_lm_head=self.loaded.adapter.has_lm_head,
            fingerprint=self.loaded.fingerprint,
        )

    def _ids(self, text: str) -> list[int]:
        return encode(self.loaded.tokenizer, text, self.max_tokens)

    def tokenize(self, text: str) -> list[str]:
        return token_strings(self.loaded.tokenizer, self._ids(text))

    def trace(self, text: str, spec: CaptureSpec = CaptureSpec()) -> Trace:
        ids = self._ids(text)
        with self._lock:
            return capture(
                self.loaded.model, self.loaded.adapter, ids, spec,
                model_name=self.loaded.name, fingerprint=self.loaded.fingerprint,
                tokens=token_strings(self.loaded.tokenizer, ids),
            )

    def logit_lens(self, text: str, options: LensOptions = LensOptions(),
                   progress: Progress | None = None) -> LogitLensResult:
        if not self.loaded.adapter.has_lm_head:
            raise LensError(f"{self.loaded.name} has no language-model head: the logit lens does not apply")
        key = make_key("lens", model=self.loaded.fingerprint, prompt=text, options=options.key())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return join(LogitLensResult, *hit)
        result = logit_lens(self.trace(text, CaptureSpec(residual=True)), self.loaded.tokenizer, options, progress)
        if self.cache is not None:
            self.cache.put(key, *split(result))
        return result

    def _traces(self, texts: str | Sequence[str]) -> list[Trace]:
        """One residual-stream trace per text (a corpus is traced text by text)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise LensError("no text given: type a prompt or at least one sentence")
        return [self.trace(t, CaptureSpec(residual=True)) for t in items]

    def _special_ids(self) -> list[int]:
        return sorted(int(i) for i in (getattr(self.loaded.tokenizer, "all_special_ids", None) or []))

    def projection(self, texts: str | Sequence[str], options: ProjectionOptions = ProjectionOptions(),
                   progress: Progress | None = None) -> ProjectionResult:
        """Every kept token at every layer projected to 2-D/3-D; ``texts`` is a prompt or a corpus."""
        options.check()
        key = make_key("projection", model=self.loaded.fingerprint,
                       prompt=texts if isinstance(texts, str) else list(texts), options=options.key())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return join(ProjectionResult, *hit)
        result = project(self._traces(texts), options, self._special_ids(), progress)
        if self.cache is not None:
            self.cache.put(key, *split(result))
        return result

    def geometry(self, texts: str | Sequence[str], options: GeometryOptions = GeometryOptions()) -> GeometryResult:
        """Per-layer geometry metrics of a prompt or a corpus."""
        key = make_key("geometry", model=self.loaded.fingerprint,
                       prompt=texts if isinstance(texts, str) else list(texts), options=options.key())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return join(GeometryResult, *hit)
        result = geometry(self._traces(texts), options, self._special_ids())
        if self.cache is not None:
            self.cache.put(key, *split(result))
        return result
