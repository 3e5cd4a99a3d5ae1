"""The Jacobian lens (Gurnee et al. 2026), read from a published checkpoint.

Each block's output ``h_l`` is carried into the last block's basis by ``J_l``, the corpus-averaged
Jacobian ``E[∂h_final / ∂h_l]``, and read with the model's own final norm and unembedding:
``unembed(norm_f(J_l h_l))``. There is no bias. Identity matrices give the logit lens exactly.

The published format is that of Anthropic's reference implementation (github.com/anthropics/jacobian-lens,
``jlens.JacobianLens.save``), in which the lenses on huggingface.co/neuronpedia/jacobian-lens are
released: a ``.pt`` file holding ``{"J": {l: Tensor[d_model, d_model]}, "n_prompts": int,
"source_layers": [l, ...], "d_model": int}`` (float16 on disk). ``l`` is a block index from 0, ``J_l``
maps the *output* of block ``l`` (our lens row ``l + 1``), and row ``i`` of ``J_l`` is output coordinate
``i`` (the map is ``J @ h``; for row vectors ``h @ Jᵀ``). The default fit has one matrix for every block
but the last (``0 … n_layers − 2``); the last block's output is the model's own, read as it is. The file
is read with ``torch.load(weights_only=True)``: plain tensors, numbers and lists only, no pickled code runs.

The same matrices also load from a plain safetensors file (nothing in it can run code): tensors
``J.<l>`` (``J.0`` … ``J.<n_layers − 2>``), each ``[d_model, d_model]`` in the same orientation, and
optional header metadata ``d_model`` and ``n_prompts``. A folder may hold one such file (``.pt`` or
``.safetensors``) and a ``config.json`` (``d_model``, ``num_hidden_layers``, ``n_prompts``), checked
against the model like a tuned-lens checkpoint's.

The embeddings (lens row 0) have no matrix in either format: that row is read as the logit lens reads it.
The lens is stored as an AffineLens of kind ``jacobian`` with ``M_r = J_{r-1}ᵀ`` and a zero bias, so
every path that reads rows through a fitted lens (one prompt, a suite, a generation) reads through it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..errors import LensError
from .affine import AffineLens, content_id

log = logging.getLogger("layerlens")
KIND = "jacobian"

SUFFIXES = (".pt", ".safetensors")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _block(key, where: Path) -> int:
    text = str(key)
    if isinstance(key, bool) or not text.isdigit():
        raise LensError(f"{where}: {key!r} is not a block number: not a Jacobian-lens file")
    return int(text)


def _read_pt(path: Path) -> tuple[dict[int, torch.Tensor], dict]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled objects beyond plain tensors are refused, not run
        raise LensError(f"cannot read {path} as plain tensors ({_first_line(exc)}): only tensor files are "
                        "loaded") from None
    if not isinstance(state, dict) or not isinstance(state.get("J"), dict):
        keys = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise LensError(f"{path} holds no 'J' dictionary of matrices (found {keys}): not a Jacobian-lens file")
    found = {}
    for key, value in state["J"].items():
        if not isinstance(value, torch.Tensor):
            raise LensError(f"{path}: J[{key!r}] is not a tensor: not a Jacobian-lens file")
        found[_block(key, path)] = value
    info = {k: state.get(k) for k in ("d_model", "n_prompts", "source_layers")}
    return found, info


def _read_safetensors(path: Path) -> tuple[dict[int, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            header = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise LensError(f"cannot read {path} as safetensors ({_first_line(exc)})") from None
    found = {}
    for key, value in tensors.items():
        name, _, index = key.partition(".")
        if name != "J":
            raise LensError(f"{path}: tensor {key!r} is not named J.<block>: not a Jacobian-lens file")
        found[_block(index, path)] = value
    info = {}
    for k in ("d_model", "n_prompts"):
        if k in header:
            try:
                info[k] = int(header[k])
            except ValueError:
                raise LensError(f"{path}: the metadata {k}={header[k]!r} is not a whole number") from None
    return found, info


def _lens_file(path: Path) -> tuple[Path, dict]:
    """The lens file ``path`` names (itself, or the one in a folder) and the folder's config.json, if any."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise LensError(f"{path} is neither a .pt nor a .safetensors file: not a Jacobian-lens checkpoint")
        return path, {}
    if not path.is_dir():
        raise LensError(f"no such file or folder: {path} (a Jacobian-lens checkpoint is a .pt or .safetensors file)")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    if len(files) != 1:
        raise LensError(f"{path} holds {len(files)} .pt or .safetensors files"
                        + (f" ({', '.join(p.name for p in files)})" if files else "")
                        + ": give the one Jacobian-lens file itself")
    config = {}
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise LensError(f"cannot read {path / 'config.json'}: {_first_line(exc)}") from None
        if not isinstance(config, dict):
            raise LensError(f"{path / 'config.json'} is not a JSON object")
    return files[0], config


def read_jacobian_checkpoint(path: str | Path, n_layers: int, d_model: int) -> AffineLens:
    """A Jacobian-lens checkpoint (file or folder, see the module's docstring) as an AffineLens for a model
    of ``n_layers`` blocks of width ``d_model``; anything that does not fit the model is one LensError."""
    path = Path(path).expanduser()
    file, config = _lens_file(path)
    found, info = _read_pt(file) if file.suffix == ".pt" else _read_safetensors(file)
    cfg_d = config.get("d_model", info.get("d_model"))
    cfg_l = config.get("num_hidden_layers", config.get("num_layers"))
    if cfg_d is not None and cfg_d != d_model or cfg_l is not None and cfg_l != n_layers:
        theirs = ", ".join(([f"{cfg_l} layers"] if cfg_l is not None else [])
                           + ([f"width {cfg_d}"] if cfg_d is not None else []))
        raise LensError(f"{file.name} is for a model of {theirs}; this model has {n_layers} layers of width {d_model}")
    want = set(range(n_layers - 1))  # every block but the last, whose output is the model's own
    if not found:
        raise LensError(f"{file} holds no J matrices")
    if set(found) != want:
        extra, missing = sorted(set(found) - want), sorted(want - set(found))
        raise LensError(f"{file.name} has matrices for {len(found)} blocks ({_span(sorted(found))}); this model has "
                        f"{n_layers} layers and a Jacobian lens has one for each but the last "
                        f"(0–{n_layers - 2})" + (f": blocks {_span(missing)} are missing" if missing else "")
                        + (f"{';' if missing else ':'} blocks {_span(extra)} are beyond it" if extra else ""))
    weight = torch.eye(d_model).repeat(n_layers, 1, 1)  # row 0 (the embeddings): read as the logit lens
    for block, J in sorted(found.items()):
        if tuple(J.shape) != (d_model, d_model):
            raise LensError(f"{file.name}: the matrix of block {block} has shape {tuple(J.shape)}, not "
                            f"{d_model}×{d_model} (this model's width)")
        J = J.float()
        bad = int((~torch.isfinite(J)).sum())
        if bad:
            raise LensError(f"{file.name}: the matrix of block {block} has {bad} values that are not finite "
                            "(NaN or infinite)")
        weight[block + 1] = J.T  # row block+1 is the output of block `block`; J h for a row vector is h Jᵀ
    weight = weight.contiguous()
    bias = torch.zeros(n_layers, d_model)
    n_prompts = config.get("n_prompts", info.get("n_prompts"))
    meta = {"id": content_id(weight, bias), "source": "checkpoint", "checkpoint": str(file.resolve()),
            "format": "jlens .pt" if file.suffix == ".pt" else "safetensors", "blocks": len(found),
            "n_prompts": int(n_prompts) if isinstance(n_prompts, int) else None,
            "base_model": config.get("base_model_name_or_path"), "embeddings": "read as the logit lens"}
    return AffineLens(KIND, weight, bias, meta)


def _span(blocks: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> '0–2, 5'."""
    parts, start = [], None
    for i, b in enumerate(blocks):
        if start is None:
            start = b
        if i + 1 == len(blocks) or blocks[i + 1] != b + 1:
            parts.append(str(start) if start == b else f"{start}–{b}")
            start = None
    return ", ".join(parts) if len(parts) <= 6 else ", ".join(parts[:3] + ["…"] + parts[-2:])


def write_jacobian_safetensors(path: str | Path, jacobians: dict[int, torch.Tensor], n_prompts: int = 0) -> Path:
    """Write ``{block: J [d, d]}`` in the plain safetensors form (``J.<block>``, ``J @ h`` orientation)."""
    from safetensors.torch import save_file

    path = Path(path)
    d = next(iter(jacobians.values())).shape[-1]
    save_file({f"J.{int(l)}": J.float().contiguous() for l, J in jacobians.items()}, str(path),
              metadata={"d_model": str(d), "n_prompts": str(int(n_prompts)), "format": "layerlens-jacobian-lens"})
    return path


def load_stored(path: Path, n_layers: int, d_model: int) -> AffineLens | None:
    """A Jacobian lens kept by the store (written by ``affine.save_lens``), or None when absent or unusable:
    as ``affine.load_lens`` reads the fitted kinds (the checkpoint can be imported again)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("layerlens", "{}"))
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:  # a missing tensor: SafetensorError
        log.warning("the stored Jacobian lens %s cannot be read (%s)", path, exc)
        return None
    if tuple(weight.shape) != (n_layers, d_model, d_model) or tuple(bias.shape) != (n_layers, d_model):
        log.warning("the stored Jacobian lens %s has shape %s, not this model's", path, tuple(weight.shape))
        return None
    if meta.get("kind") != KIND or meta.get("id") != content_id(weight, bias):
        log.warning("the stored Jacobian lens %s does not match its own digest", path)
        return None
    return AffineLens(KIND, weight, bias, meta)
