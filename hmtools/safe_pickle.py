"""Load annotation pickles without running code from them.

The datasets ship their annotations as Python pickles. A pickle may name any importable callable and
have the loader call it, so a hostile file can run arbitrary code on ``pickle.load``. This module's
unpickler admits only builtin containers and scalars (which pickle encodes without naming globals)
plus the handful of numpy globals needed to rebuild arrays, dtypes and numpy scalars. Any other name
is refused *before* anything is called, with a :class:`~hmtools.errors.DataFormatError`
naming the file and the refused global.

What the real files need (checked with ``pickletools`` on all saved FineDiving / MTL-AQA / AQA-7
pickles): ``numpy.dtype``, ``numpy.ndarray``, ``numpy.core.multiarray._reconstruct`` and
``numpy.core.multiarray.scalar``. Files written by numpy 2.x name ``numpy._core.*`` instead, and
protocol-5 pickles use ``numpy._core.numeric._frombuffer``; both spellings are admitted and resolved
to whichever module the installed numpy has. Protocols 0-2 encode ``bytes`` with ``_codecs.encode``,
which is admitted too (it only converts text to bytes).
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

from hmtools.errors import DataFormatError, InputError

_NUMPY_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
}
"""Admitted numpy globals -> (submodule of numpy's core package, attribute) to resolve them to."""

_BUILTINS_ALLOWED = frozenset({"set", "frozenset", "complex", "bytearray", "slice", "range"})
"""Builtin types a pickle may name (lists, dicts, tuples, str, bytes, int, float, bool and None need no global)."""


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


def _numpy_core(submodule: str) -> Any:
    for package in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{package}.{submodule}")
        except ImportError:
            continue
    raise ImportError(f"numpy has neither numpy._core.{submodule} nor numpy.core.{submodule}")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _BUILTINS_ALLOWED:  # __builtin__: Python 2 name
            return getattr(importlib.import_module("builtins"), name)
        if (module, name) == ("_codecs", "encode"):  # protocols 0-2 store bytes (array buffers) this way
            return codecs.encode
        target = _NUMPY_ALLOWED.get((module, name))
        if target is None:
            raise _RefusedGlobal(module, name)
        where, attr = target
        if where == "numpy":
            return getattr(importlib.import_module("numpy"), attr)
        return getattr(_numpy_core(where), attr)


def loads_restricted(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only builtin containers/scalars and numpy arrays/scalars.

    Args:
        data: Pickle bytes (any protocol; Python-2 pickles decode ``str`` as latin-1, as numpy advises).
        source: Name used in error messages (usually the file path).

    Returns:
        The unpickled object.

    Raises:
        DataFormatError: the pickle names a global outside the allow-list (nothing is called), or it
            is truncated/malformed.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _RefusedGlobal as e:
        raise DataFormatError(
            f"{source}: refused to load global {e.qualname!r}; annotation pickles may only hold builtin "
            "containers/scalars and numpy arrays, so this file is hostile or not an annotation file"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataFormatError(
            f"{source}: not a readable pickle ({type(e).__name__}: {e}); re-download the annotation file"
        ) from e


def load_pickle(path: str | Path) -> Any:
    """Load a pickle file with :func:`loads_restricted`.

    Raises:
        InputError: the file does not exist or cannot be read.
        DataFormatError: the file is malformed or names a refused global.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"annotation file {p} not found") from None
    except OSError as e:
        raise InputError(f"cannot read annotation file {p}: {e.strerror or e}") from e
    return loads_restricted(data, source=str(p))
