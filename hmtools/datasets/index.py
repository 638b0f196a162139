"""The adapter map and :func:`load_dataset`, the one entry point callers use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmtools.errors import InputError
from hmtools.schema import Problem, Sample


@dataclass
class DatasetIndex:
    """What an adapter found under a root.

    Attributes:
        dataset: Adapter name.
        root: The folder frame keys are relative to: the root given by the user, or the frame folder
            the adapter found inside it (FineDiving's ``FINADiving_MTL_256s``/``FineDiving``, ...).
        annotations: The folder the annotation files were read from.
        samples: Samples sorted by ``sample_id``.
        problems: Problems found (missing frame folders, count mismatches, ...).
        notes: Facts worth telling the user (e.g. which score scale was detected).
    """

    dataset: str
    root: Path
    annotations: Path
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _finediving(root: Path, annotations: Path | None, **options: Any) -> DatasetIndex:
    from hmtools.datasets import finediving

    return finediving.load(root, annotations, **options)


def _mtl_aqa(root: Path, annotations: Path | None, **options: Any) -> DatasetIndex:
    from hmtools.datasets import mtl_aqa

    return mtl_aqa.load(root, annotations, **options)


def _aqa7(root: Path, annotations: Path | None, **options: Any) -> DatasetIndex:
    from hmtools.datasets import aqa7

    return aqa7.load(root, annotations, **options)


DATASETS: dict[str, Callable[..., DatasetIndex]] = {
    "finediving": _finediving,
    "mtl-aqa": _mtl_aqa,
    "aqa7": _aqa7,
}
"""Adapter name -> loader ``(root, annotations, **options) -> DatasetIndex``."""


def dataset_key(name: str) -> str:
    """The adapter key of a dataset name (``"MTL_AQA"`` -> ``"mtl-aqa"``).

    Raises:
        InputError: not one of :data:`DATASETS` (exit 2; the valid names listed).
    """
    key = name.replace("_", "-").lower()
    if key not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def load_dataset(name: str, root: str | Path, annotations: str | Path | None = None, **options: Any) -> DatasetIndex:
    """Index a dataset with the named adapter.

    Args:
        name: ``"finediving"``, ``"mtl-aqa"`` or ``"aqa7"`` (``"mtl_aqa"`` is accepted too).
        root: Dataset root folder.
        annotations: Folder of annotation files; ``None`` means the adapter's default under ``root``.
        **options: Adapter options (e.g. ``score_scale`` for AQA-7).

    Raises:
        InputError: unknown name, missing root or annotation files (exit 2).
        DataFormatError: malformed or hostile annotation files (exit 2).
    """
    key = dataset_key(name)
    root_path = Path(root)
    if not root_path.is_dir():
        raise InputError(f"dataset root {root_path} is not a folder; pass --root DIR of the {key} dataset")
    index = DATASETS[key](root_path, None if annotations is None else Path(annotations), **options)
    index.problems.sort(key=lambda p: (p.sample_id, p.kind))
    return index
