"""Which folder a store's frame keys are relative to, given the ``--root`` a user passed.

Frame keys are relative to the frame folder a dataset adapter found, which may lie inside the
dataset root (FineDiving's ``FINADiving_MTL_256s/``, MTL-AQA's ``whole_videos_frames/`` or
``new/new_total_frames_256s/``, the AQA-7 zip's doubled ``AQA-7/``). ``inspect``, ``build-masks``,
``import`` and ``train`` accept either folder; the commands that only get a store and a root
(``preview``, ``annotate``, ``validate``) look for the keys the same way here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hmtools.store import MaskStore

MAX_FOLDERS = 4000
"""Folders looked into at most (one and two levels below the root together) before giving up."""


def find_frame_root(root: Path, keys: Iterable[str], probes: int = 8) -> Path:
    """The folder that holds the frames named by ``keys``: ``root`` itself, else the first folder one
    level inside it (in name order) that holds any of the first ``probes`` keys, else the first such
    folder two levels inside it. A shallower folder wins, as in the dataset adapters' lists of frame
    folders (MTL-AQA's ``whole_videos_frames/`` before ``new/new_total_frames_256s/``).

    Args:
        root: The folder a user passed as ``--root``.
        keys: Frame keys of the store (paths relative to the frame folder, ``/``-separated).
        probes: How many keys are tried in each folder.

    Returns:
        That folder, or ``root`` when none of the first :data:`MAX_FOLDERS` folders holds a probed key
        (the caller then reports the missing frames relative to ``root``, as the user passed it).
    """
    probe = [k for _, k in zip(range(probes), keys, strict=False)]
    if not probe or not root.is_dir() or holds_frames(root, probe):
        return root
    level, budget = [root], MAX_FOLDERS
    for _ in range(2):  # one level down, then two
        level = _subfolders(level, budget)
        budget -= len(level)
        found = next((folder for folder in level if holds_frames(folder, probe)), None)
        if found is not None:
            return found
    return root


def holds_frames(folder: Path, keys: Iterable[str]) -> bool:
    """Whether ``folder`` holds any of the frame files ``keys``; an unreadable folder or a key the
    file system cannot look up (a name too long) counts as not there, never as an error."""
    for key in keys:
        try:
            if (folder / key).is_file():
                return True
        except OSError:  # an unreadable folder, a name too long: not there
            continue
    return False


def _subfolders(folders: list[Path], limit: int) -> list[Path]:
    """The folders inside ``folders`` (those of each in name order), at most ``limit`` of them."""
    found: list[Path] = []
    for folder in folders:
        if len(found) >= limit:
            break
        try:
            with os.scandir(folder) as entries:  # no stat per entry: a frame folder lists fast
                found += [folder / name for name in sorted(e.name for e in entries if _is_dir(e))]
        except OSError:  # unreadable: nothing to find there
            continue
    return found[:limit]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to somewhere unreadable
        return False


def store_frame_root(store: MaskStore, root: Path) -> Path:
    """:func:`find_frame_root` probed with the first frame of each of the store's first samples."""
    return find_frame_root(root, (f.key for s in store.sample_ids()[:8] for f in store.frames(s)[:1]))
