"""Helpers shared by the adapters: locating annotation files, listing frame folders, checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hmtools.errors import DataFormatError, InputError
from hmtools.frames import frame_number, scan_frame_files
from hmtools.schema import Problem


def find_annotation_dir(
    dataset: str, given: Path | None, candidates: Sequence[Path], required: Sequence[Sequence[str]]
) -> Path:
    """The first folder that holds the annotation files.

    Args:
        dataset: Adapter name for messages.
        given: ``--annotations`` value; when set only it is tried.
        candidates: Default folders, in order of preference.
        required: Groups of alternative file names; a folder qualifies when it holds at least one
            name of every group.

    Raises:
        InputError: no folder qualifies; the message names every folder looked at and the files.
    """
    tried = [given] if given is not None else list(dict.fromkeys(candidates))
    for folder in tried:
        if folder.is_dir() and all(any((folder / n).is_file() for n in group) for group in required):
            return folder
    need = "; ".join(" or ".join(group) for group in required)
    where = ", ".join(str(p) for p in tried)
    hint = "" if given is not None else "; pass --annotations DIR"
    raise InputError(f"{dataset} annotation files not found (need {need}) in: {where}{hint}")


def first_file(folder: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` that exists in ``folder``."""
    for n in names:
        if (folder / n).is_file():
            return folder / n
    return None


def check(cond: bool, path: Path, what: str) -> None:
    """Raise a DataFormatError naming ``path`` unless ``cond``."""
    if not cond:
        raise DataFormatError(f"{path}: {what}; is this the right annotation file?")


def as_float(value: Any, path: Path, what: str) -> float:
    """A Python float from a number or numpy scalar, else DataFormatError."""
    check(isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool), path, what)
    return float(value)


def as_int(value: Any, path: Path, what: str) -> int:
    """A Python int from an integer (or integral float) or numpy scalar, else DataFormatError."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok or (isinstance(value, (float, np.floating)) and float(value).is_integer())
    check(ok, path, what)
    return int(value)


def int_tuple(values: Any, path: Path, what: str) -> tuple[int, ...]:
    """A tuple of Python ints from a 1-D integer array or list, else DataFormatError."""
    arr = np.asarray(values)
    check(arr.ndim == 1 and (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)), path, what)
    return tuple(int(v) for v in arr.tolist())


def list_folder(
    root: Path, rel: str, sample_id: str, problems: list[Problem], expected: int | None = None
) -> tuple[tuple[str, ...], list[str]]:
    """List one sample's frame folder and record what is wrong with it.

    Args:
        root: Dataset root; ``rel`` is relative to it.
        rel: Folder path relative to ``root`` (``/`` separators).
        sample_id: For the problems.
        problems: Appended to: ``missing_frames``, ``unreadable_folder``, ``empty_folder``,
            ``unreadable_frames`` (zero-byte files), ``duplicate_frames`` (two files with one frame number),
            ``frame_count_mismatch`` (when ``expected`` is set).
        expected: Frame count the annotation implies.

    Returns:
        ``(keys, names)``: frame keys ``rel/name`` in numeric order, and the bare names.
    """
    folder = root / rel
    try:
        names, empty = scan_frame_files(folder)
    except FileNotFoundError:
        problems.append(Problem(sample_id, "missing_frames", f"frame folder {rel}/ not found under {root}"))
        return (), []
    except OSError as e:
        problems.append(Problem(sample_id, "unreadable_folder", f"cannot list {rel}/: {e.strerror or e}"))
        return (), []
    if not names:
        problems.append(Problem(sample_id, "empty_folder", f"frame folder {rel}/ holds no image files"))
        return (), []
    if empty:
        shown = ", ".join(empty[:3]) + (" ..." if len(empty) > 3 else "")
        problems.append(
            Problem(sample_id, "unreadable_frames", f"{len(empty)} zero-byte frame files in {rel}/: {shown}")
        )
    dup = _duplicate_numbers(names)
    if dup:
        problems.append(
            Problem(
                sample_id,
                "duplicate_frames",
                f"{rel}/ holds more than one file for {len(dup)} frame numbers (e.g. {', '.join(dup[0])}); "
                "every one is taken as a frame: keep one file per frame",
            )
        )
    if expected is not None and len(names) != expected:
        problems.append(
            Problem(
                sample_id,
                "frame_count_mismatch",
                f"{rel}/ holds {len(names)} frames, the annotation implies {expected}",
            )
        )
    return tuple(f"{rel}/{n}" for n in names), names


def _duplicate_numbers(names: Sequence[str]) -> list[list[str]]:
    """Groups of file names that share a frame number (``img_00001.jpg`` beside ``img_00001.png``), in
    numeric order; ``names`` are sorted by frame number, so such files are neighbours."""
    groups: list[list[str]] = []
    prev: int | None = None
    for i, name in enumerate(names):
        n = frame_number(name)
        if n is not None and n == prev:
            if groups and groups[-1][-1] == names[i - 1]:
                groups[-1].append(name)
            else:
                groups.append([names[i - 1], name])
        prev = n
    return groups


def both_splits_problem(sample_id: str) -> Problem:
    """An ``annotation_anomaly`` for a sample listed in both the train and the test split file."""
    return Problem(sample_id, "annotation_anomaly", "listed in both the train and the test split file (kept in train)")


def middle_sum(scores: Sequence[float], keep: int) -> float:
    """Sum of the ``keep`` middle judge scores (highest and lowest dropped equally)."""
    s = sorted(scores)
    drop = (len(s) - keep) // 2
    return float(sum(s[drop : drop + keep]))


def judge_range_problem(sample_id: str, judges: Sequence[float]) -> Problem | None:
    """An ``annotation_anomaly`` when a judge score lies outside 0-10 (e.g. a typed 55.5 for 5.5)."""
    bad = [j for j in judges if not 0.0 <= j <= 10.0]
    if not bad:
        return None
    return Problem(sample_id, "annotation_anomaly", f"judge scores {bad} outside 0-10 in {list(judges)}")
