"""Which folder a store's frame keys are relative to, given the ``--root`` a user passed.

Frame keys are relative to the frame folder a dataset adapter found, which may lie inside the
dataset root (FineDiving's ``FINADiving_MTL_256s/``, MTL-AQA's ``whole_videos_frames/`` or
``new/new_total_frames_256s/``, the AQA-7 zip's doubled ``AQA-7/``). ``inspect``, ``build-masks``,
``import`` and ``train`` accept either folder; the commands that only get a store and a root
(``preview``, ``annotate``, ``validate``) look for the keys the same way here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hmtools.store import MaskStore

MAX_FOLDERS = 4000
"""Folders looked into at most (one and two levels below the root) before giving up."""


def find_frame_root(root: Path, keys: Iterable[str], probes: int = 8) -> Path:
    """The folder that holds the frames named by ``keys``: ``root`` itself, or the first folder
    one or two levels inside it (in name order) that holds any of the first ``probes`` keys.

    Args:
        root: The folder a user passed as ``--root``.
        keys: Frame keys of the store (paths relative to the frame folder, ``/``-separated).
        probes: How many keys are tried in each folder.

    Returns:
        That folder, or ``root`` when none holds a probed key (the caller then reports the missing
        frames relative to ``root``, as the user passed it).
    """
    probe = [k for _, k in zip(range(probes), keys, strict=False)]
    if not probe or not root.is_dir() or _holds(root, probe):
        return root
    looked = 0
    for child in _subfolders(root):
        if _holds(child, probe):
            return child
        for grandchild in _subfolders(child):
            looked += 1
            if looked > MAX_FOLDERS:
                return root
            if _holds(grandchild, probe):
                return grandchild
    return root


def _holds(folder: Path, keys: list[str]) -> bool:
    return any((folder / key).is_file() for key in keys)


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:  # unreadable: nothing to find there
        return []


def store_frame_root(store: MaskStore, root: Path) -> Path:
    """:func:`find_frame_root` probed with the first frame of each of the store's first samples."""
    return find_frame_root(root, (f.key for s in store.sample_ids()[:8] for f in store.frames(s)[:1]))
