"""A fitted lens: one affine map per lens row, read out with the model's own final norm and unembedding.

Row r (0: the embeddings, r: after block r) is decoded as ``norm_f(h_r @ M_r + b_r)``
instead of the logit lens's ``norm_f(h_r)``. The last row keeps no map: it is the
model's own output, as in every lens. Both kinds are stored the same way:

- ``linear``: the linear shortcut (Din et al. 2023), ``M_r, b_r`` fitted by ridge least
  squares so that ``h_r M_r + b_r ≈ h_L``;
- ``tuned``: the tuned lens (Belrose et al. 2023), ``h_r + h_r W_rᵀ + b_r``, i.e.
  ``M_r = I + W_rᵀ``, trained by gradient descent on KL to the final distribution or
  read from a tuned-lens checkpoint.

On disk: one safetensors file per model, kind and corpus (or checkpoint), ``cache/lenses/
<model fingerprint>/<kind>-<corpus digest>.safetensors``, whose metadata says where it came from;
the newest of a kind is the one in use. Nothing in it can run code.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import LensError
from ..files import atomic_path

log = logging.getLogger("layerlens")
FITTED_KINDS = ("linear", "tuned")


@dataclass
class AffineLens:
    kind: str  # linear | tuned
    weight: torch.Tensor  # [L, d, d] float32: row r maps h @ weight[r] + bias[r]
    bias: torch.Tensor  # [L, d]
    meta: dict = field(default_factory=dict)  # where it came from: corpus, tokens, ridge, seconds, source

    @property
    def n_rows(self) -> int:
        return self.weight.shape[0]

    @property
    def lens_id(self) -> str:
        """Names this fit in cache keys: another corpus or another training gives another id."""
        return str(self.meta.get("id", ""))

    def apply(self, residual: torch.Tensor) -> torch.Tensor:
        """[L+1, n, d] rows of a residual stream, each row through its map; the last row unchanged."""
        L = self.n_rows
        if residual.shape[0] != L + 1:
            raise LensError(f"this {self.kind} lens has maps for {L} rows, the model has {residual.shape[0] - 1} layers")
        W = self.weight.to(residual.device, residual.dtype)
        b = self.bias.to(residual.device, residual.dtype)
        out = torch.empty_like(residual)
        torch.baddbmm(b.unsqueeze(1), residual[:L], W, out=out[:L])
        out[L] = residual[L]
        return out


def content_id(weight: torch.Tensor, bias: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(weight.float().contiguous().numpy().tobytes())
    h.update(bias.float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


KEEP_PER_KIND = 3  # fits kept per model and kind (a 7B model's maps are ~2 GB each): the oldest go first


def lens_path(cache_root: Path, fingerprint: str, kind: str, source: str) -> Path:
    """Where the ``kind`` lens of a model fitted on ``source`` (a corpus digest, or a checkpoint's id) lives."""
    return Path(cache_root) / "lenses" / fingerprint / f"{kind}-{source}.safetensors"


def stored_lenses(cache_root: Path, fingerprint: str, kind: str) -> list[Path]:
    """The stored fits of ``kind``, newest first (the first is the one in use)."""
    folder = Path(cache_root) / "lenses" / fingerprint
    found = []
    for p in folder.glob(f"{kind}-*.safetensors"):
        try:
            found.append((p.stat().st_mtime_ns, p))
        except OSError:  # removed by another process meanwhile
            continue
    return [p for _, p in sorted(found, reverse=True)]


def use_lens(path: Path, keep: int = KEEP_PER_KIND) -> None:
    """Make ``path`` the fit in use (the newest) and drop the oldest fits of its kind beyond ``keep``."""
    try:
        os.utime(path)
    except OSError:
        return
    kind = path.name.split("-", 1)[0]
    for old in stored_lenses(path.parent.parent.parent, path.parent.name, kind)[keep:]:
        try:
            old.unlink()
        except OSError:
            pass


def save_lens(path: Path, lens: AffineLens) -> None:
    """Written to a temporary file and renamed: a reader never sees half a lens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(lens.meta, kind=lens.kind)
    with atomic_path(path, mode=0o600) as tmp:
        save_file({"weight": lens.weight.float().contiguous(), "bias": lens.bias.float().contiguous()}, str(tmp),
                  metadata={"layerlens": json.dumps(meta)})
    use_lens(path)


def load_lens(path: Path, n_layers: int, d_model: int) -> AffineLens | None:
    """The lens stored at ``path``, or None when there is none or it cannot be used (damaged, another
    model's shape, altered): a fitted lens is re-creatable, so a bad file is a miss, not an error."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("layerlens", "{}"))
        tensors = load_file(str(path))
        weight, bias = tensors["weight"], tensors["bias"]
    except (SafetensorError, OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        log.warning("the fitted lens %s cannot be read (%s): fitting again", path, exc)
        return None
    if tuple(weight.shape) != (n_layers, d_model, d_model) or tuple(bias.shape) != (n_layers, d_model):
        log.warning("the fitted lens %s has shape %s, not this model's: fitting again", path, tuple(weight.shape))
        return None
    if meta.get("id") != content_id(weight, bias) or meta.get("kind") not in FITTED_KINDS:
        log.warning("the fitted lens %s does not match its own digest: fitting again", path)
        return None
    return AffineLens(kind=meta["kind"], weight=weight, bias=bias, meta=meta)
