"""Moving typed results to and from the cache and JSON, field by field."""
from __future__ import annotations

import dataclasses
import math

import numpy as np


def split(result) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays (for safetensors) and everything else (for JSON)."""
    arrays, fields = {}, {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        (arrays if isinstance(value, np.ndarray) else fields)[f.name] = value
    return arrays, fields


def join(cls, arrays: dict[str, np.ndarray], fields: dict):
    return cls(**arrays, **fields)


def _plain(value):
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def to_json_dict(result) -> dict:
    return {f.name: _plain(getattr(result, f.name)) for f in dataclasses.fields(result)}
