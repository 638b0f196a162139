"""Telling a ``--root`` that points at the wrong level of a dataset, and where the right one is.

A common first mistake is to pass a folder inside the dataset (one AQA-7 class folder
``diving-out/``, one FineDiving video folder, one frame folder, the annotation folder) or the folder
above it. Read as the root, such a folder gives "annotation files not found" or a dataset with every
frame missing, which says nothing about the real cause. The adapters call these helpers to recognise
the shape of such a folder and stop with one line naming the folder to pass instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hmtools.errors import InputError
from hmtools.frames import IMAGE_SUFFIXES

MAX_ENTRIES = 512
"""Folder entries looked at per folder (a wrong root may be a huge folder such as ``/data``)."""


def holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds a frame image file directly (hidden files left out)."""
    try:
        with os.scandir(folder) as it:
            for i, e in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file():
                    return True
    except OSError:
        return False
    return False


def child_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` (not hidden), sorted by name; at most :data:`MAX_ENTRIES` entries read."""
    out = []
    try:
        with os.scandir(folder) as it:
            for i, e in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                if not e.name.startswith(".") and e.is_dir():
                    out.append(Path(e.path))
    except OSError:
        return []
    return sorted(out)


def up(root: Path, levels: int) -> Path:
    """The folder ``levels`` above ``root``, as an absolute normalised path (``.`` and ``..`` resolved
    by name, so ``--root .`` still has a parent)."""
    here = Path(os.path.normpath(root.absolute()))
    for _ in range(levels):
        here = here.parent
    return here


def first_up(root: Path, test: Callable[[Path], bool], levels: int = 3) -> Path | None:
    """The nearest folder above ``root`` (up to ``levels`` up) for which ``test`` holds, else ``None``."""
    for n in range(1, levels + 1):
        here = up(root, n)
        if test(here):
            return here
        if here.parent == here:
            return None
    return None


def wrong_root(dataset: str, root: Path, what: str, fix: Path, holds: str) -> InputError:
    """The error for a ``--root`` that looks like ``what``: pass ``fix``, the folder that holds ``holds``.

    Example: ``--root /d/Seven/diving-out looks like one class folder of AQA-7 (...), not the AQA-7
    dataset root; pass --root /d/Seven (its parent), the folder that holds the <class>-out/ ...``.
    """
    f = Path(os.path.normpath(fix.absolute()))
    where = {up(root, 1): " (its parent)", up(root, 2): " (two levels up)"}.get(f, "")
    if f.parent == up(root, 0):
        where = " (inside it)"
    return InputError(
        f"--root {root} looks like {what}, not the {dataset} dataset root; pass --root {f}{where}, "
        f"the folder that holds {holds}"
    )
