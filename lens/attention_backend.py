"""The attention-flow methods of ``LocalBackend`` (mixed in; see lens/backend.py).

Each method builds a cache key with ``make_key``, returns a cached result when
there is one, else runs one forward pass capturing only what it needs. The route
computations also keep the last prompt's ``RouteData`` in memory, so moving the
threshold slider or picking another node costs no new forward pass.
"""
from __future__ import annotations

from .cache import make_key
from .errors import LensError
from .heads import (HeadPatterns, HeadSummary, check_layer, head_patterns, head_summary,
                    repeated_random_ids)
from .results import join, split
from .rollout import FlowResult, RolloutResult, attention_flow, mean_attention_stack, rollout
from .routes import (DEFAULT_THRESHOLD, AttentionContributions, NodeDetail, RouteData, RouteGraph,
                     attention_contributions, capture_route_data, check_supported, node_detail, route_graph)
from .tokens import token_strings
from .trace import CaptureSpec, Trace, capture


class AttentionMethods:
    """Needs ``self.loaded``, ``self.cache``, ``self._ids(text)`` and ``self._lock``."""

    _route_memo: tuple[str, RouteData] | None = None

    def _cached(self, cls, key: str, compute):
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return join(cls, *hit)
        result = compute()
        if self.cache is not None:
            self.cache.put(key, *split(result))
        return result

    def _key(self, kind: str, text: str, **options) -> str:
        return make_key(kind, model=self.loaded.fingerprint, prompt=text, options=options)

    def _attention_trace(self, ids: list[int], spec: CaptureSpec) -> Trace:
        with self._lock:
            try:
                return capture(self.loaded.model, self.loaded.adapter, ids, spec, model_name=self.loaded.name,
                               fingerprint=self.loaded.fingerprint, tokens=token_strings(self.loaded.tokenizer, ids))
            except RuntimeError as exc:
                if "returned no weights" in str(exc):
                    raise LensError(f"{self.loaded.name} returned no attention weights "
                                    "(it must be loaded with eager attention)") from None
                raise

    def _mean_attention(self, text: str):
        tr = self._attention_trace(self._ids(text), CaptureSpec(residual=False, attentions=True, attention_mean=True))
        return tr, mean_attention_stack(tr.attentions, tr.n_layers)

    # ------------------------------------------------------------ rollout and flow

    def rollout(self, text: str, position: int | None = None) -> RolloutResult:
        def compute():
            tr, A = self._mean_attention(text)
            return rollout(A, tr.tokens, position, model=self.loaded.name)
        return self._cached(RolloutResult, self._key("rollout", text, position=position), compute)

    def attention_flow(self, text: str, position: int | None = None,
                       layers: list[int] | None = None) -> FlowResult:
        def compute():
            tr, A = self._mean_attention(text)
            return attention_flow(A, tr.tokens, position, model=self.loaded.name, layers=layers)
        key = self._key("flow", text, position=position, layers=sorted(layers) if layers else None)
        return self._cached(FlowResult, key, compute)

    # ------------------------------------------------------------ heads

    def head_patterns(self, text: str, layer: int) -> HeadPatterns:
        L = self.loaded.n_layers
        layer = check_layer(layer, L)

        def compute():
            tr = self._attention_trace(self._ids(text), CaptureSpec(residual=False, attentions=(layer - 1,)))
            return head_patterns(tr.attentions, tr.tokens, layer, L, model=self.loaded.name)
        return self._cached(HeadPatterns, self._key("head-patterns", text, layer=layer), compute)

    def head_summary(self, text: str) -> HeadSummary:
        def compute():
            tok = self.loaded.tokenizer
            vocab = int(self.loaded.model.get_input_embeddings().weight.shape[0])
            ids, n, offset = repeated_random_ids(tok, vocab, max_tokens=self.max_tokens)
            rep = self._attention_trace(ids, CaptureSpec(residual=False, attentions=True))
            tr = self._attention_trace(self._ids(text), CaptureSpec(residual=False, attentions=True))
            return head_summary(tr.attentions, rep.attentions, tr.n_layers, n, offset,
                                token_strings(tok, ids), model=self.loaded.name)
        return self._cached(HeadSummary, self._key("head-summary", text), compute)

    # ------------------------------------------------------------ routes

    def _route_data(self, text: str) -> RouteData:
        check_supported(self.loaded.adapter)
        memo_key = f"{self.loaded.fingerprint}:{text}"
        memo = self._route_memo
        if memo is not None and memo[0] == memo_key:
            return memo[1]
        ids = self._ids(text)
        with self._lock:
            data = capture_route_data(self.loaded.model, self.loaded.adapter, ids, model_name=self.loaded.name,
                                      tokens=token_strings(self.loaded.tokenizer, ids))
        self._route_memo = (memo_key, data)
        return data

    def contributions(self, text: str, layer: int, position: int | None = None) -> AttentionContributions:
        check_supported(self.loaded.adapter)

        def compute():
            return attention_contributions(self._route_data(text), layer, position)
        return self._cached(AttentionContributions,
                            self._key("contributions", text, layer=layer, position=position), compute)

    def route_graph(self, text: str, position: int | None = None,
                    threshold: float = DEFAULT_THRESHOLD) -> RouteGraph:
        check_supported(self.loaded.adapter)

        def compute():
            return route_graph(self._route_data(text), position, threshold, tokenizer=self.loaded.tokenizer)
        key = self._key("routes", text, position=position, threshold=round(float(threshold), 6))
        return self._cached(RouteGraph, key, compute)

    def node_detail(self, text: str, layer: int, position: int | None, block: str = "attn",
                    top_k: int = 8) -> NodeDetail:
        check_supported(self.loaded.adapter)
        layer = check_layer(layer, self.loaded.n_layers)

        def compute():
            if block == "mlp":  # neuron activations: one more pass that keeps only this layer
                ids = self._ids(text)
                with self._lock:
                    data = capture_route_data(self.loaded.model, self.loaded.adapter, ids, layers=(layer - 1,),
                                              neurons=True, model_name=self.loaded.name,
                                              tokens=token_strings(self.loaded.tokenizer, ids))
            else:
                data = self._route_data(text)
            return node_detail(data, self.loaded.tokenizer, layer, position, block, top_k=top_k)
        key = self._key("node", text, layer=layer, position=position, block=block, top_k=top_k)
        return self._cached(NodeDetail, key, compute)
