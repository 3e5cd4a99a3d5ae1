"""What travels between the server and its model worker: pickled messages, rebuilt by a restricted unpickler.

Pickle keeps a result exactly as computed (float32 arrays, numpy scalars, tuples, NaN, nested results), which
JSON (lens/serialize.py) does not. Both ends are this program: the worker is the server's own child, started
from this checkout, and the pipe is a socket pair nobody else holds. Still, the worker runs model code (a
model folder's, with --trust-remote-code), so the server rebuilds only what a Backend call can answer: the
dataclasses and exceptions LayerLens defines, numpy arrays and scalars, and Python's containers and
exceptions. Any other name in a message (a function, ``os.system``, ``builtins.eval``) is refused, so a message
cannot run code in the server. Model files themselves are never unpickled by this module or sent over it.
"""
from __future__ import annotations

import builtins
import dataclasses
import enum
import importlib
import io
import pickle
from dataclasses import dataclass

# numpy's own helpers for rebuilding arrays, scalars and dtypes (numpy 1.x and 2.x spellings)
NUMPY_NAMES = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
BUILTIN_TYPES = {"set", "frozenset", "complex", "slice", "range", "bytearray", "list", "dict", "tuple"}


@dataclass(frozen=True)
class OtherModel:
    """Stands for another model held by the same worker (``compare_with``, ``cka_with``)."""

    ref: str


class Refused(pickle.UnpicklingError):
    """A message named something a Backend call never answers with."""


def _allowed(module: str, name: str) -> bool:
    if (module, name) in NUMPY_NAMES:
        return True
    if module == "numpy.dtypes" and name.endswith("DType"):
        return True
    if module == "builtins":
        obj = getattr(builtins, name, None)
        return name in BUILTIN_TYPES or (isinstance(obj, type) and issubclass(obj, BaseException))
    return module == "lens" or module.startswith("lens.")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if not _allowed(module, name):
            raise Refused(f"a worker message named {module}.{name}, which no result holds")
        obj = super().find_class(module, name) if module != "builtins" else getattr(builtins, name)
        if module.startswith("lens") and not (isinstance(obj, type) and (
                dataclasses.is_dataclass(obj) or issubclass(obj, (BaseException, enum.Enum)))):
            raise Refused(f"a worker message named {module}.{name}, which is not a result, option or error type")
        return obj


def dumps(message) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes):
    return _Unpickler(io.BytesIO(data)).load()


def error_message(exc: BaseException) -> tuple:
    """An exception as ("error", bytes or None, module, name, text): the bytes rebuild it where they can."""
    try:
        blob = dumps(exc)
        loads(blob)  # it must come back on the other side, or it goes by its name and text
    except Exception:
        blob = None
    return blob, type(exc).__module__, type(exc).__qualname__, str(exc)


def rebuild_error(blob: bytes | None, module: str, name: str, text: str) -> BaseException:
    """The worker's exception, of the same type and message; a type that cannot be rebuilt becomes a
    LensError (when it was one) or a RuntimeError naming it."""
    if blob is not None:
        try:
            exc = loads(blob)
            if isinstance(exc, BaseException):
                return exc
        except Exception:
            pass
    from ..errors import LensError

    try:
        cls = getattr(importlib.import_module(module), name) if _allowed(module, name) else None
    except Exception:
        cls = None
    if isinstance(cls, type) and issubclass(cls, LensError):
        return LensError(text)
    return RuntimeError(f"{module}.{name}: {text}")
