"""Where the human masks come from: ``open_mask_source(path) -> MaskSource``.

Supported now:

* a mask store (SQLite file, :class:`hmtools.store.MaskStore`): the newest version of each
  frame's mask (``current_masks``), whatever its review status;
* a FineParser mask folder: ``<mask_root>/<frame key with a .jpg suffix>``, grayscale JPEG/PNG,
  foreground where the value is >= 128 (FineDiving-HM's ``diving_mask_annotation_gray``).

A new format is one more class with ``available``/``read``/``fingerprint`` and one more branch in
:func:`open_mask_source`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from hmtools.errors import InputError
from hmtools.schema import Sample


class MaskSource(Protocol):
    """Per-frame human masks of samples."""

    description: str

    def available(self, sample: Sample) -> list[bool]:
        """Whether each frame of the sample has a mask (cheap: no decoding)."""
        ...

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        """``(H, W)`` bool mask of each frame in order, ``None`` where it has none."""
        ...

    def fingerprint(self) -> str:
        """Changes whenever the masks change (used to invalidate the packed cache)."""
        ...


class StoreMasks:
    """Masks from a :class:`hmtools.store.MaskStore` file."""

    def __init__(self, path: Path):
        from hmtools.store import MaskStore

        self.path = path
        self.store = MaskStore(path, create=False)
        self.description = f"mask store {path}"

    def _records(self, sample: Sample):  # type: ignore[no-untyped-def]
        recs = self.store.current_masks(sample.sample_id)
        if not recs:
            raise InputError(
                f"sample {sample.sample_id} is not in {self.path}; register it (build-masks) or pass another --masks"
            )
        keys = tuple(r.frame_key for r in recs if r is not None)
        if len(recs) != len(sample.frames) or not set(keys) <= set(sample.frames):
            raise InputError(
                f"sample {sample.sample_id}: the store lists {len(recs)} frames, the dataset {len(sample.frames)}; "
                "the store was built from another version of the dataset"
            )
        return recs

    def available(self, sample: Sample) -> list[bool]:
        return [r is not None for r in self._records(sample)]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        return [None if r is None else r.mask() for r in self._records(sample)]

    def fingerprint(self) -> str:
        rows = self.store.query("SELECT COUNT(*), COALESCE(SUM(head_version), 0) FROM frames")
        return f"store:{self.path.resolve()}:{rows[0][0]}:{rows[0][1]}"


class FolderMasks:
    """FineParser-style mask folder mirroring the frame layout (grayscale, threshold 128)."""

    def __init__(self, root: Path):
        self.root = root
        self.description = f"mask folder {root}"

    def _path(self, key: str) -> Path:
        return (self.root / key).with_suffix(".jpg")

    def available(self, sample: Sample) -> list[bool]:
        return [self._path(k).is_file() for k in sample.frames]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        from uni_fineparser.cache import import_cv2

        cv2 = import_cv2()
        out: list[np.ndarray | None] = []
        for key in sample.frames:
            p = self._path(key)
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) if p.is_file() else None
            out.append(None if img is None else img >= 128)
        return out

    def fingerprint(self) -> str:
        st = os.stat(self.root)
        return f"folder:{self.root.resolve()}:{st.st_mtime_ns}"


def open_mask_source(path: str | Path) -> MaskSource:
    """Open the masks at ``path``: a store file (SQLite) or a FineParser mask folder.

    Raises:
        InputError: nothing at ``path``, or a file that is not a mask store.
    """
    p = Path(path)
    if p.is_dir():
        return FolderMasks(p)
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(16)
        if head.startswith(b"SQLite format 3"):
            return StoreMasks(p)
        raise InputError(
            f"--masks {p} is neither a mask store (SQLite) nor a mask folder; "
            "pass the store file written by build-masks or a folder of <frame key>.jpg masks"
        )
    raise InputError(f"--masks {p} does not exist; pass a mask store file or a mask folder")


def source_key(source: MaskSource) -> str:
    """Short hash of :meth:`MaskSource.fingerprint`."""
    return hashlib.sha256(source.fingerprint().encode()).hexdigest()[:12]
