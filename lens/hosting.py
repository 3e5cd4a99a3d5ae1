"""How a server is hosted: open (the default, for one person) or demo mode (for a room).

Demo mode is for a URL handed to strangers: visitors pick only from an allowlist of
models (nothing else is loaded, and no path they type is ever looked at), prompts and
corpora are capped, remote code cannot run, and each visitor may start only so many
new computations a minute. It is turned on by ``LAYERLENS_DEMO=1`` or by

    # .streamlit/layerlens.toml (beside .streamlit/config.toml; LAYERLENS_CONFIG names another file)
    [layerlens]
    demo = true
    models = ["smollm2-135m", "minilm-l6"]   # names, local folders or hub ids the host allows
    max_prompt_tokens = 512

Every key of ``Hosting`` and ``Limits`` may be set there; environment variables win
(``LAYERLENS_DEMO``, ``LAYERLENS_DEMO_MODELS`` as a comma-separated list). Imports
nothing heavy.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import LensError
from .options import MAX_UMAP_POINTS

CONFIG_FILE = Path(__file__).resolve().parents[1] / ".streamlit" / "layerlens.toml"


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_prompt_tokens: int = 2048  # the page stays interactive; the CLI takes the model's full context
    max_corpus_texts: int = 100
    max_corpus_tokens: int = 4096  # all sentences together: each keeps its residual stream until projected
    max_umap_points: int = MAX_UMAP_POINTS
    # Attention flow needs no cap of its own here: its work limit (lens/analysis/flow_plan.py)
    # bounds every request to a few seconds of one core, and the job queue runs one at a time.


DEMO_LIMITS = Limits(max_prompt_tokens=512, max_corpus_texts=40, max_corpus_tokens=2048, max_umap_points=4000)


@dataclass(frozen=True)
class Hosting:
    demo: bool = False
    models: tuple[str, ...] = ()  # the allowlist; empty outside demo mode (any model)
    limits: Limits = field(default_factory=Limits)
    rate_per_minute: int | None = None  # new computations a visitor may start a minute; None: no limit
    slots: int = 1  # heavy computations at once (the CPU is shared: more only make each slower)
    max_waiting: int = 64  # computations waiting for a slot; beyond: "busy, try again"
    max_loaded_models: int = 2

    def check_model(self, ref: str) -> str:
        """``ref`` if this server may load it; else a LensError naming the models it offers.
        Only the text is compared: a refused path is never looked at."""
        ref = (ref or "").strip()
        if not self.demo or ref in self.models:
            return ref
        shown = ref if len(ref) <= 60 else ref[:57] + "…"
        raise LensError(f"this demo server does not offer the model {shown!r}; it offers "
                        f"{', '.join(self.models) or 'no models'}")


def _bundled_names() -> tuple[str, ...]:
    from .model.registry import BUNDLED

    return tuple(name for name, entry in BUNDLED.items() if entry.available())


def _from_file(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("layerlens", {})
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LensError(f"cannot read the hosting settings in {path}: {exc}") from None
    if not isinstance(table, dict):
        raise LensError(f"{path}: [layerlens] must be a table of settings")
    return table


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def read_hosting(env: dict | None = None, path: Path | None = None) -> Hosting:
    """The hosting settings from the config file and the environment (checked: a wrong key or
    value is a LensError naming it)."""
    env = os.environ if env is None else env
    path = Path(env.get("LAYERLENS_CONFIG") or path or CONFIG_FILE)
    table = dict(_from_file(path))
    if "LAYERLENS_DEMO" in env:
        table["demo"] = _truthy(env["LAYERLENS_DEMO"])
    if env.get("LAYERLENS_DEMO_MODELS"):
        table["models"] = [m.strip() for m in env["LAYERLENS_DEMO_MODELS"].split(",") if m.strip()]
    demo = bool(table.pop("demo", False))
    base = DEMO_LIMITS if demo else Limits()
    limit_keys = {f.name for f in dataclasses.fields(Limits)}
    host_keys = {f.name for f in dataclasses.fields(Hosting)} - {"demo", "limits"}
    unknown = set(table) - limit_keys - host_keys
    if unknown:
        raise LensError(f"{path}: unknown [layerlens] settings {', '.join(sorted(unknown))}; "
                        f"known: demo, {', '.join(sorted(limit_keys | host_keys))}")
    limits = dataclasses.replace(base, **{k: table[k] for k in limit_keys & set(table)})
    host = {k: table[k] for k in host_keys & set(table)}
    if "models" in host:
        if not isinstance(host["models"], (list, tuple)) or not all(isinstance(m, str) for m in host["models"]):
            raise LensError(f"{path}: models must be a list of model names, folders or hub ids")
        host["models"] = tuple(m.strip() for m in host["models"] if m.strip())
    elif demo:
        host["models"] = _bundled_names()
    if demo:
        host.setdefault("rate_per_minute", 30)
        host.setdefault("max_waiting", 32)
    hosting = Hosting(demo=demo, limits=limits, **host)
    _check(hosting, path)
    return hosting


def _check(h: Hosting, path: Path) -> None:
    def whole(name, value, low, none_ok=False):
        if value is None and none_ok:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise LensError(f"{path}: {name} must be a whole number ≥ {low}, not {value!r}")

    for f in dataclasses.fields(Limits):
        whole(f.name, getattr(h.limits, f.name), 2)
    whole("rate_per_minute", h.rate_per_minute, 1, none_ok=True)
    whole("slots", h.slots, 1)
    whole("max_waiting", h.max_waiting, 0)
    whole("max_loaded_models", h.max_loaded_models, 1)
    if h.demo and not h.models:
        raise LensError(f"{path}: demo mode needs at least one model in models (no bundled model is installed)")


@lru_cache(maxsize=1)
def hosting() -> Hosting:
    """This process's hosting settings, read once."""
    return read_hosting()
