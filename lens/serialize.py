"""Moving typed results (lens/results.py) to and from the cache and JSON, field by field."""
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


class NotThisType(ValueError):
    """Stored fields that do not make a ``cls``: written by another version, or damaged."""


def join(cls, arrays: dict[str, np.ndarray], fields: dict):
    """Rebuild a ``cls`` from what ``split`` gave; raise NotThisType if the fields do not fit it."""
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    given = set(arrays) | set(fields)
    if set(arrays) & set(fields) or not given <= names or not required <= given:
        raise NotThisType(f"stored fields do not make a {cls.__name__}: "
                          f"unknown {sorted(given - names)}, missing {sorted(required - given)}")
    for f in dataclasses.fields(cls):  # an array field must come back as an array, a plain one as JSON
        if f.name in fields and "ndarray" in str(f.type):
            raise NotThisType(f"{cls.__name__}.{f.name} should be an array")
    return cls(**arrays, **fields)


def plain(value):
    """``value`` as JSON can hold it: arrays and numpy numbers as lists and numbers, NaN as None."""
    return _plain(value)


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
