"""Incremental JSON: write large arrays element by element, read them back the same way.

COCO and YouTube-VIS files hold one object with a few huge arrays (``images``,
``annotations``). :class:`SpooledArray` writes an array's elements to a temporary file as they
come so the writer never holds the array; :func:`iter_array` reads one top-level array of a file
element by element, so readers never hold the whole document either.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hmtools.errors import DataFormatError

_CHUNK = 1 << 20
_DECODER = json.JSONDecoder()


def dumps(obj: Any) -> str:
    """Compact, key-sorted JSON (the same object always gives the same bytes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


class SpooledArray:
    """A JSON array written element by element to an anonymous temporary file."""

    def __init__(self, folder: Path) -> None:
        """Spool into a temporary file created in ``folder`` (deleted on close)."""
        self._file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)
        self.count = 0

    def append(self, obj: Any) -> None:
        """Append one element."""
        self._file.write((",\n" if self.count else "\n") + dumps(obj))
        self.count += 1

    def copy_to(self, out: IO[str]) -> None:
        """Write the whole array (``[`` ... ``]``) to ``out`` and close the spool."""
        out.write("[")
        self._file.seek(0)
        shutil.copyfileobj(self._file, out, _CHUNK)
        out.write("\n]" if self.count else "]")
        self._file.close()


def write_object(out: IO[str], fields: dict[str, Any]) -> None:
    """Write a top-level JSON object in sorted key order; :class:`SpooledArray` values are streamed."""
    out.write("{")
    for i, key in enumerate(sorted(fields)):
        out.write(("," if i else "") + json.dumps(key) + ":")
        value = fields[key]
        if isinstance(value, SpooledArray):
            value.copy_to(out)
        else:
            out.write(dumps(value))
    out.write("}\n")


class _Reader:
    """A text buffer over a file that grows on demand, for ``raw_decode``-based scanning."""

    def __init__(self, f: IO[str], path: Path) -> None:
        self.f, self.path = f, path
        self.buf, self.pos, self.eof = "", 0, False

    def fill(self, need_more: bool = False) -> bool:
        if self.eof:
            return False
        size = max(_CHUNK, len(self.buf) - self.pos) if need_more else _CHUNK
        chunk = self.f.read(size)
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        self.eof = chunk == ""
        return not self.eof

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                raise DataFormatError(f"{self.path} ends early: the JSON is truncated; re-export it")

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise DataFormatError(
                f"{self.path}: expected {ch!r} in the JSON, found {self.buf[self.pos : self.pos + 20]!r}"
            )
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.fill(need_more=True):
                    continue
                raise DataFormatError(f"{self.path} is not valid JSON ({e.msg}); is it truncated?") from e
            if end == len(self.buf) and not self.eof and isinstance(obj, int | float):
                self.fill(need_more=True)  # a number may continue in the next chunk
                continue
            self.pos = end
            return obj


def iter_array(path: Path, key: str) -> Iterator[Any]:
    """Yield the elements of the top-level array ``key`` of the JSON object in ``path``, one by one.

    Other top-level values are parsed and dropped (arrays element by element). A missing key
    yields nothing.

    Raises:
        DataFormatError: the file is not a JSON object, is truncated or malformed, or ``key``
            is not an array.
    """
    for name, element in iter_arrays(path, (key,)):
        if name == key:
            yield element


def iter_arrays(path: Path, keys: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, element)`` for the elements of the top-level arrays ``keys``, in file order, in one pass.

    Raises:
        DataFormatError: as :func:`iter_array`.
    """
    for name, is_item, element in _walk(path, frozenset(keys)):
        if is_item:
            yield name, element


def top_level_keys(path: Path) -> list[str]:
    """The keys of the top-level JSON object in ``path`` (values are parsed and dropped)."""
    return [name for name, is_item, _ in _walk(path, frozenset()) if not is_item]


def _walk(path: Path, keys: frozenset[str]) -> Iterator[tuple[str, bool, Any]]:
    """Yield ``(name, False, None)`` per top-level key, ``(name, True, element)`` per element of a ``keys`` array."""
    try:
        with path.open(encoding="utf-8") as f:
            r = _Reader(f, path)
            r.expect("{")
            if r.peek() == "}":
                return
            while True:
                name = r.value()
                if not isinstance(name, str):
                    raise DataFormatError(f"{path}: top-level JSON keys must be strings, found {name!r:.40}")
                yield name, False, None
                r.expect(":")
                if r.peek() == "[":
                    r.pos += 1
                    for element in _elements(r):
                        if name in keys:
                            yield name, True, element
                elif name in keys:
                    raise DataFormatError(f"{path}: {name!r} must be a JSON array")
                else:
                    r.value()
                if r.peek() == "}":
                    return
                r.expect(",")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path} is not UTF-8 text ({e.reason}); expected a JSON file") from e


def _elements(r: _Reader) -> Iterator[Any]:
    if r.peek() == "]":
        r.pos += 1
        return
    while True:
        yield r.value()
        ch = r.peek()
        r.pos += 1
        if ch == "]":
            return
        if ch != ",":
            raise DataFormatError(f"{r.path}: expected ',' or ']' in a JSON array, found {ch!r}")
