"""A model that runs on NDIF (nnsight's remote engine): its structure here, its weights there.

nnsight builds the model from its Hugging Face config on the ``meta`` device (shapes, no
weights), which is all the adapter needs to find the modules; every forward pass is a
remote trace (lens/nnsight_backend.py). The API key is read by nnsight from NDIF_API_KEY:
it never enters a cache key, a URL or a log line.
"""
from __future__ import annotations

import hashlib
import json

from ..errors import LensError
from .adapters import adapt
from .loading import LoadedModel, _context_length, _HUB_ID


def load_remote(ref: str) -> LoadedModel:
    """``ref`` (a hub id NDIF serves, e.g. meta-llama/Llama-3.1-70B) as a LoadedModel for NnsightBackend."""
    from ..nnsight_backend import ndif_ready

    ref = (ref or "").strip()
    if not ref or not _HUB_ID.match(ref):
        raise LensError(f"{ref!r} is not a hub model id: NDIF runs models by their Hugging Face id "
                        "(e.g. meta-llama/Llama-3.1-8B)")
    ndif_ready()
    try:
        from nnsight import LanguageModel

        nn = LanguageModel(ref)  # config and tokenizer from the hub; weights stay on NDIF
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LensError(f"cannot prepare {ref!r} for NDIF ({first[:200]})") from None
    model = nn._model
    cfg = model.config.to_dict()
    cfg.pop("_name_or_path", None)
    cfg.pop("transformers_version", None)
    fingerprint = hashlib.sha256(("ndif:" + ref + json.dumps(cfg, sort_keys=True, default=str)).encode()).hexdigest()[:16]
    return LoadedModel(name=ref, source="ndif", model=model, tokenizer=nn.tokenizer, adapter=adapt(model),
                       fingerprint=fingerprint, context_length=_context_length(model, nn.tokenizer), nnsight_model=nn)
