"""Convert a GGUF file once into a safetensors folder under cache/models/.

Loading a GGUF with transformers de-quantises every tensor (~30 s for the
bundled model); the converted folder loads in about half a second. The folder
is written under a temporary name and renamed when complete, so an interrupted
conversion never looks finished (a writer killed half-way leaves only its
temporary folder, which the next conversion sweeps away); a folder whose files do
not load is removed and converted again. Converted folders of GGUF files other
than the bundled ones are kept ``MAX_CONVERTED`` at most, least recently used out.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

from ..errors import LensError
from ..files import DIR_TMP_MARK, atomic_dir
from ..options import Progress

MANIFEST = "layerlens.json"
MAX_CONVERTED = int(os.environ.get("LAYERLENS_MAX_CONVERTED", "3"))  # besides the bundled models
STALE_SECONDS = 3600  # a temporary folder this old belongs to a conversion that died


def file_identity(path: Path) -> str:
    """A quick content hash: size plus the first and last MiB (a GGUF differs in both)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _report_tensor_progress(progress: Progress | None) -> Iterator[None]:
    """Relay transformers' per-tensor GGUF progress to ``progress`` instead of its own bar."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # the bar is a nicety; conversion works without it
        yield
        return
    real = getattr(gguf_utils, "tqdm", None)
    if progress is None or real is None:
        yield
        return

    def reporting(iterable=None, *args, **kwargs):
        items = list(iterable)
        for i, item in enumerate(items):
            if i % 8 == 0 or i == len(items) - 1:
                progress(0.05 + 0.85 * (i + 1) / len(items), f"de-quantising tensor {i + 1}/{len(items)}")
            yield item

    gguf_utils.tqdm = reporting
    try:
        yield
    finally:
        gguf_utils.tqdm = real


def converted_dir(cache_root: Path, name: str, gguf_path: Path) -> Path:
    return cache_root / "models" / f"{name}-{file_identity(gguf_path)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def sweep_unfinished(models_dir: Path) -> None:
    """Remove the temporary folders of conversions whose process has died (or that are old)."""
    import time

    if not models_dir.is_dir():
        return
    for tmp in models_dir.glob(f"*{DIR_TMP_MARK}*"):
        pid = tmp.name.rsplit(DIR_TMP_MARK, 1)[-1]
        try:
            old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if old or not (pid.isdigit() and _pid_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)


def prune_converted(models_dir: Path, keep: Path, protected: set[str], limit: int = MAX_CONVERTED) -> list[Path]:
    """Keep at most ``limit`` converted folders besides ``protected`` names (the bundled models)
    and ``keep`` (the one just used); least recently converted or used go first."""
    found = []
    for d in models_dir.glob("*"):
        if not d.is_dir() or DIR_TMP_MARK in d.name or d == keep or d.name.rsplit("-", 1)[0] in protected:
            continue
        try:
            found.append((d.stat().st_mtime, d))
        except OSError:
            continue
    removed = []
    for _, d in sorted(found, reverse=True)[max(0, limit - 1):]:
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def is_complete(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all((folder / f).is_file() for f in manifest.get("files", []))


def convert_gguf(gguf_path: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    """Write ``gguf_path`` as a float32 safetensors folder at ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = progress or (lambda frac, msg: print(f"[{frac:4.0%}] {msg}", file=sys.stderr))
    say(0.0, f"converting {gguf_path.name} once (about half a minute)")
    sweep_unfinished(out_dir.parent)
    try:
        with atomic_dir(out_dir) as tmp:
            with _report_tensor_progress(progress):
                tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
                model = AutoModelForCausalLM.from_pretrained(
                    gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
                )
            # The weights are de-quantised float32 now; drop the GGUF marker so they save as plain tensors.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            say(0.92, "writing safetensors")
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            files = sorted(p.name for p in tmp.iterdir())
            (tmp / MANIFEST).write_text(json.dumps({"source": str(gguf_path), "files": files}))
    except Exception as exc:
        if isinstance(exc, LensError):
            raise
        raise LensError(f"could not convert {gguf_path.name}: {exc}") from exc
    say(1.0, "converted")
    return out_dir
