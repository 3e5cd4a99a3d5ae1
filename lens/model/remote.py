"""A model that runs on NDIF (nnsight's remote engine): its structure here, its weights there.

nnsight builds the model from its Hugging Face config on the ``meta`` device (shapes, no
weights), which is all the adapter needs to find the modules; every forward pass is a
remote trace (lens/engine/nnsight.py). The API key is read by nnsight from NDIF_API_KEY:
it never enters a cache key, a URL or a log line.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from urllib.parse import urlparse

from ..errors import LensError
from .adapters import adapt
from .loading import LoadedModel, context_length_of, HUB_ID

CONNECT_TIMEOUT_S = 3.0


def ndif_ready(host: str | None = None) -> None:
    """Raise a one-line LensError unless an NDIF API key is set and the NDIF host answers a TCP connect
    within a few seconds (so an offline machine fails at once, not after minutes of retries)."""
    if not os.environ.get("NDIF_API_KEY"):
        raise LensError("running on NDIF needs an API key: get one at https://login.ndif.us and set NDIF_API_KEY")
    from nnsight import CONFIG

    url = host or os.environ.get("NDIF_HOST") or CONFIG.API.HOST
    parsed = urlparse(url if "//" in url else "https://" + url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise LensError(f"cannot reach NDIF at {parsed.hostname}:{port} ({exc.strerror or exc}); "
                        "check the network, or run the model on this machine (--backend local)") from None


def ndif_models() -> list[str]:
    """The models NDIF has deployed now (an empty list when it cannot be asked)."""
    try:
        ndif_ready()
        from nnsight.ndif import status

        found = status(raw=True)
        models = found.get("deployments", found) if isinstance(found, dict) else {}
        names = [v.get("repo_id", k) if isinstance(v, dict) else k for k, v in models.items()]
        return sorted(n for n in names if isinstance(n, str))
    except Exception:  # the list is a convenience: typing a model id works without it
        return []


def load_remote(ref: str) -> LoadedModel:
    """``ref`` (a hub id NDIF serves, e.g. meta-llama/Llama-3.1-70B) as a LoadedModel for the nnsight engine (lens/engine/nnsight.py)."""
    ref = (ref or "").strip()
    if not ref or not HUB_ID.match(ref):
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
                       fingerprint=fingerprint, context_length=context_length_of(model, nn.tokenizer), nnsight_model=nn)
