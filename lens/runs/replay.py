"""Record what a view asks of a backend, and answer the same questions again from the record.

A view (lens/views/) draws itself from backend calls; ``RecordingBackend`` passes each call on and keeps its
result, and ``ReplayBackend`` answers the same calls, in the same order, from the kept results. So any view
saved once opens again without a model, with the figure builders of today."""
from __future__ import annotations

from ..errors import LensError

# The Backend methods whose answers a view draws from (all but fitting a lens and comparing with a live model).
RECORDED = ("tokenize", "logit_lens", "lens_fits", "lens_comparison", "latent_language", "generate",
            "generation_lens", "generation_attention", "projection", "geometry", "rollout", "attention_flow",
            "head_patterns", "head_summary", "contributions", "route_graph", "node_detail", "patch", "patched_lens",
            "ablated_lens", "lens_suite", "patch_suite", "noise_trace")

RECORDED += ("dla", "sublayer_lens", "knockout")  # who writes the answer (lens/attribution/)

RECORDED += ("attribute", "circuit")  # attribution and circuits (lens/circuits/)

RECORDED += ("neurons", "neuron", "head_weights")  # the weight space (lens/weights/)
RECORDED += ("steer",)  # steering (lens/steering/)
RECORDED += ("probe",)  # probes (lens/probes/)
RECORDED += ("anatomy", "contrastive")  # layer anatomy (lens/anatomy/)
RECORDED += ("anatomy_suite",)  # layer anatomy over a suite (lens/anatomy/suite.py)

RECORDED += ("dla", "sublayer_lens", "knockout")  # who writes the answer (lens/attribution/)


class RecordingBackend:
    """``backend`` as it is, keeping (method, result) for every recorded call in ``calls``."""

    def __init__(self, backend):
        self._backend = backend
        self.calls: list[tuple[str, object]] = []

    def info(self):
        return self._backend.info()

    def __getattr__(self, name):
        method = getattr(self._backend, name)
        if name not in RECORDED:
            return method

        def recorded(*args, **kwargs):
            result = method(*args, **kwargs)
            self.calls.append((name, result))
            return result

        return recorded


class ReplayBackend:
    """Answers a view's calls from a record: the n-th call of a method gets the n-th result kept for it."""

    def __init__(self, info, calls: list[tuple[str, object]]):
        self._info = info
        self._left: dict[str, list] = {}
        for name, result in calls:
            self._left.setdefault(name, []).append(result)

    def info(self):
        return self._info

    def __getattr__(self, name):
        if name not in RECORDED:
            raise LensError(f"a saved run cannot answer {name}: it keeps results, not the model")

        def replayed(*args, **kwargs):
            left = self._left.get(name)
            if not left:
                raise LensError(f"this saved run has no {name.replace('_', ' ')} result to show: it was saved "
                                "from another view or options")
            return left.pop(0)

        return replayed
