"""Turn a model reference into a loaded model, its tokenizer and its adapter.

A reference is one of: a bundled model name (see ``known_models``), a tiny random
test model (``tiny-llama``, ...), a local folder with a ``config.json`` (a
fine-tuned checkpoint), a ``.gguf`` file, or a Hugging Face hub id (needs
network). Remote code is never run unless asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LensError
from ..options import Progress
from .adapters import Adapter, adapt
from .architectures import is_encoder_type
from .convert import convert_gguf, converted_dir, is_complete, prune_converted
from .registry import BUNDLED, DEFAULT_MODEL, bundled_file, default_cache_root
from .tiny import TINY_ARCHS, tiny_model

MAX_REF_CHARS = 1024  # longer than any path or hub id in use
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    name: str
    source: str  # bundled | tiny | local | gguf | hub
    model: torch.nn.Module
    tokenizer: object
    adapter: Adapter
    fingerprint: str
    context_length: int
    nnsight_model: object = None  # a model on NDIF: nnsight's handle (its weights are not here)

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Identity of config and weights: a few values from each end of every tensor.

    Reading all weights would cost ~1 s for 135M parameters; a fine-tune changes
    essentially every tensor, so its ends are a sound witness.
    """
    h = hashlib.sha256()
    cfg = model.config.to_dict()
    cfg.pop("_name_or_path", None)
    cfg.pop("transformers_version", None)
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, p in model.state_dict().items():
        flat = p.detach().reshape(-1)
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(flat[:64].float().cpu().numpy().tobytes())
        h.update(flat[-64:].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def context_length_of(model, tokenizer) -> int:
    cfg = model.config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        n = getattr(cfg, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    n = getattr(tokenizer, "model_max_length", 0)
    return n if 0 < n < 10**7 else 2048


def plain_wanted(plain: bool | None) -> bool:
    """Whether a load may use the plain PyTorch model (lens/model/plain_llama.py): asked for, or by default
    unless ``LAYERLENS_PLAIN=0`` (transformers' model code for every model: to compare the two)."""
    if plain is not None:
        return plain
    return os.environ.get("LAYERLENS_PLAIN", "1").strip().lower() not in ("0", "false", "no", "off")


def _plain(where: str):
    """(model, tokenizer) of a local Llama folder as plain PyTorch modules, or None where the folder needs
    transformers' model code (another architecture, remote code, sharded weights, another tokenizer class)."""
    from .plain_llama import WEIGHTS, load_plain, load_plain_tokenizer, unsupported

    folder = Path(where)
    try:
        values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(values, dict) or values.get("auto_map") or unsupported(values) \
            or not (folder / WEIGHTS).is_file():
        return None
    tokenizer = load_plain_tokenizer(folder)
    if tokenizer is None:
        return None
    try:
        return load_plain(folder), tokenizer
    except ValueError:  # weights that do not fit: transformers says what is wrong with them
        return None


def _from_pretrained(where: str, trust_remote_code: bool, local_only: bool, device_map=None,
                     plain: bool | None = None):
    if device_map is None and not trust_remote_code and plain_wanted(plain):
        found = _plain(where)
        if found is not None:
            return found
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code, local_files_only=local_only)
    cls = AutoModel if is_encoder_type(config.model_type) else AutoModelForCausalLM
    model = cls.from_pretrained(
        where, config=config, trust_remote_code=trust_remote_code, local_files_only=local_only,
        attn_implementation="eager", dtype=torch.float32,
        **({"device_map": device_map} if device_map is not None else {}),
    )
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, local_files_only=local_only)
    return model, tokenizer


MULTI = "multi"  # --device multi: the layers spread over every visible GPU (accelerate's device_map="auto")


def device_map_for(device) -> str | dict | None:
    """The ``device_map`` a load needs: "auto" for ``multi``, a given map as it is, else None (one device)."""
    if isinstance(device, dict):
        return device
    if device == MULTI:
        if torch.cuda.device_count() < 1:
            raise LensError("device 'multi' spreads a model over the GPUs, but no CUDA GPU is available")
        return "auto"
    return None


def pick_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise LensError(f"unknown device {device!r} (use cpu, cuda, auto or multi)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LensError("device 'cuda' asked for, but no CUDA GPU is available")
    return dev


def _finish(name: str, source: str, model, tokenizer, device=None) -> LoadedModel:
    """``device``: one device, or a device map (``multi``, or a dict for accelerate): the blocks stay where
    the map put them, and every capture gathers what it keeps onto one device."""
    dmap = device_map_for(device)
    if dmap is None:
        model.to(pick_device(device))
    elif not hasattr(model, "hf_device_map"):  # built here (tiny, converted): spread it now
        from accelerate import dispatch_model, infer_auto_device_map

        dispatch_model(model, infer_auto_device_map(model) if dmap == "auto" else dmap)
    model.eval().requires_grad_(False)
    adapter = adapt(model)
    return LoadedModel(
        name=name, source=source, model=model, tokenizer=tokenizer, adapter=adapter,
        fingerprint=weights_fingerprint(model), context_length=context_length_of(model, tokenizer),
    )


def _load_gguf(name: str, source: str, gguf: Path, cache_root: Path, progress: Progress | None,
               device: str | None, plain: bool | None = None) -> LoadedModel:
    folder = converted_dir(cache_root, name, gguf)
    if not is_complete(folder):
        convert_gguf(gguf, folder, progress)
    try:
        model, tokenizer = _from_pretrained(str(folder), False, True, device_map_for(device), plain)
    except LensError:
        raise
    except Exception:
        # A damaged conversion (disk full, edited files): convert again once.
        convert_gguf(gguf, folder, progress)
        model, tokenizer = _from_pretrained(str(folder), False, True, device_map_for(device), plain)
    if source != "bundled":  # any .gguf a user points at is converted: keep their number bounded
        os.utime(folder)
        prune_converted(folder.parent, keep=folder, protected=set(BUNDLED))
    return _finish(name, source, model, tokenizer, device)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connection attempt, so an offline machine fails at once instead of retrying for ~30 s."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_model(ref: str | None = None, *, progress: Progress | None = None,
               cache_root: Path | None = None, trust_remote_code: bool = False,
               device: str | dict | None = "cpu", plain: bool | None = None) -> LoadedModel:
    """Load ``ref`` (default: the bundled model) with eager attention, in float32, for inference.
    ``plain``: a local Llama checkpoint (the bundled model) runs as plain PyTorch modules that give the same
    numbers without importing transformers' model code (2–3 s of a start); False: transformers' model, whatever
    it is; None: plain where it can, unless ``LAYERLENS_PLAIN=0``.
    ``device``: cpu, cuda, auto (a GPU if there is one), multi (spread over every GPU), or a device map.
    ``trust_remote_code`` is taken as given: whether this server allows it is the caller's policy (lens/hosting.py)."""
    ref = (ref or DEFAULT_MODEL).strip()
    cache_root = Path(cache_root) if cache_root else default_cache_root()
    if not ref:
        raise LensError("no model given")
    if len(ref) > MAX_REF_CHARS or "\x00" in ref:
        raise LensError(f"{_short(ref)!r} is not a model name, folder, .gguf file or hub id "
                        f"({len(ref):,} characters{', with a NUL' if chr(0) in ref else ''})")
    if ref in BUNDLED:
        found = bundled_file(BUNDLED[ref])
        if found.suffix == ".gguf":
            return _load_gguf(ref, "bundled", found, cache_root, progress, device, plain)
        model, tokenizer = _from_pretrained(str(found.parent), False, True, plain=plain)
        return _finish(ref, "bundled", model, tokenizer, device)
    if ref.startswith("tiny-") and ref[5:] in TINY_ARCHS:
        model, tokenizer = tiny_model(ref[5:])
        return _finish(ref, "tiny", model, tokenizer, device)

    try:
        return _load_path(ref, cache_root, progress, trust_remote_code, device, plain)
    except OSError as exc:  # a name the file system cannot take (too long, bad characters, no permission)
        raise LensError(f"cannot use {_short(ref)!r} as a model: {exc.strerror or exc}") from None


def with_transformers_model(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` itself, or, where it runs as plain PyTorch modules, the same folder loaded with transformers'
    model class (nnsight wraps transformers' models; the numbers are the same)."""
    model = loaded.model
    if not getattr(model, "is_plain", False):
        return loaded
    hf, tokenizer = _from_pretrained(model.folder, False, True, plain=False)
    return _finish(loaded.name, loaded.source, hf, tokenizer, str(next(model.parameters()).device))


def _short(ref: str) -> str:
    return ref if len(ref) <= 80 else ref[:77] + "…"


def _load_path(ref: str, cache_root: Path, progress: Progress | None, trust_remote_code: bool,
               device: str | None, plain: bool | None = None) -> LoadedModel:
    """A .gguf file, a model folder or a hub id."""
    try:
        path = Path(ref).expanduser()
    except RuntimeError:  # "~name" of a user this machine does not have
        raise LensError(f"no such file or folder: {_short(ref)} (there is no user {ref[1:].split('/')[0]!r} here)") from None
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LensError(f"no such GGUF file: {ref}")
        return _load_gguf(path.stem, "gguf", path.resolve(), cache_root, progress, device, plain)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LensError(f"{ref} is a folder but holds no config.json: not a model folder")
        try:
            model, tokenizer = _from_pretrained(str(path), trust_remote_code, True, device_map_for(device), plain)
        except LensError:
            raise
        except Exception as exc:
            raise LensError(f"could not load the model folder {ref}: {exc}") from exc
        return _finish(path.resolve().name, "local", model, tokenizer, device)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise LensError(f"no such file or folder: {ref}")
    if not HUB_ID.match(ref):
        raise LensError(f"unknown model {ref!r}: not a bundled model (see `python -m lens models`), "
                        "a local folder, a .gguf file or a hub id")
    try:
        try:  # the local Hugging Face cache first: no network needed
            model, tokenizer = _from_pretrained(ref, trust_remote_code, True, device_map_for(device), False)
        except Exception:
            if not _hub_reachable():
                raise LensError(
                    f"unknown model {ref!r}: not a bundled model (see `python -m lens models`), a local "
                    "folder or a .gguf file, and the Hugging Face hub is unreachable from here"
                ) from None
            model, tokenizer = _from_pretrained(ref, trust_remote_code, False, device_map_for(device), False)
    except LensError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LensError(
            f"unknown model {ref!r}: not a bundled model (see `python -m lens models`), a local "
            f"folder or a .gguf file, and the Hugging Face hub could not provide it ({first})"
        ) from exc
    return _finish(ref, "hub", model, tokenizer, device)
