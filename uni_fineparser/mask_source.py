"""Where the human masks come from: ``open_mask_source(path) -> MaskSource``.

Supported now:

* a mask store (SQLite file, :class:`hmtools.store.MaskStore`): the newest version of each
  frame's mask (``current_masks``), unless an annotator rejected it (a known-bad mask is no
  supervision: the frame counts as having none);
* a FineParser mask folder: ``<mask_root>/<frame key with a .jpg (or .png, ...) suffix>``, grayscale,
  foreground where the value is >= 128 (FineDiving-HM's ``diving_mask_annotation_gray``);
* an hmtools HDF5 export (format ``hmtools-masks`` version 1, docs/formats.md): group
  ``/samples/<quoted sample id>`` with ``masks`` ``(T, ceil(H/8), W)`` uint8 bit-packed along the
  height (bitorder big), ``present`` ``(T,)`` and ``frame_keys`` ``(T,)``.

A new format is one more class with ``available``/``read``/``fingerprint`` and one more branch in
:func:`open_mask_source`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import numpy as np

from hmtools.errors import InputError
from hmtools.schema import Sample

if TYPE_CHECKING:
    from hmtools.store_types import MaskRecord


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
        self.store = MaskStore(path, read_only=True)
        self.description = f"mask store {path} (a mask rejected in review counts as none)"

    def _records(self, sample: Sample) -> list[MaskRecord | None]:
        recs = self.store.current_masks(sample.sample_id)
        if not recs:
            raise InputError(
                f"sample {sample.sample_id} is not in {self.path}; register it (build-masks) or pass another --masks"
            )
        if len(recs) != len(sample.frames):
            raise InputError(
                f"sample {sample.sample_id}: the store lists {len(recs)} frames, the dataset {len(sample.frames)}; "
                "the store was built from another version of the dataset"
            )
        # masks are used by position: a frame's record must carry that frame's key (same keys in
        # another order would pair every frame with another frame's mask)
        for i, (r, key) in enumerate(zip(recs, sample.frames, strict=True)):
            if r is not None and r.frame_key != key:
                raise InputError(
                    f"sample {sample.sample_id}: frame {i} is {key} in the dataset but {r.frame_key} in the "
                    "store (another frame order); the store was built from another version of the dataset"
                )
        return recs

    def available(self, sample: Sample) -> list[bool]:
        return [r is not None and r.status != "rejected" for r in self._records(sample)]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        return [None if r is None or r.status == "rejected" else r.mask() for r in self._records(sample)]

    def fingerprint(self) -> str:
        rows = self.store.query("SELECT COUNT(*), COALESCE(SUM(head_version), 0) FROM frames")
        return f"store:{self.path.resolve()}:{rows[0][0]}:{rows[0][1]}"


# what `hmtools export --format fineparser --image-format jpg|png` writes, then the other readable kinds
MASK_SUFFIXES = (".jpg", ".png", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class FolderMasks:
    """FineParser-style mask folder mirroring the frame layout (grayscale, threshold 128)."""

    def __init__(self, root: Path):
        self.root = root
        self.description = f"mask folder {root}"

    def _path(self, key: str) -> Path:
        """The mask file of a frame: its key with a mask-image suffix (.jpg first, as FineDiving-HM)."""
        base = self.root / key
        for ext in MASK_SUFFIXES:
            if base.with_suffix(ext).is_file():
                return base.with_suffix(ext)
        return base.with_suffix(".jpg")

    def available(self, sample: Sample) -> list[bool]:
        return [self._path(k).is_file() for k in sample.frames]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        from uni_fineparser.cache import import_cv2

        cv2 = import_cv2()
        out: list[np.ndarray | None] = []
        for key in sample.frames:
            p = self._path(key)
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION) if p.is_file() else None
            out.append(None if img is None else img >= 128)
        return out

    def fingerprint(self) -> str:
        """Path, size and mtime of every file below the root (a mask corrected in place changes it;
        the folder's own mtime does not). One ``stat`` per file: 7 ms for 1030 masks, warm file cache, 2-core dev VM."""
        h = hashlib.sha256(str(self.root.resolve()).encode())
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(folder, name))
                h.update(f"{os.path.relpath(folder, self.root)}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return f"folder:{h.hexdigest()}"


class Hdf5Masks:
    """Masks from an hmtools HDF5 export (read with h5py, one sample group at a time)."""

    def __init__(self, path: Path):
        import h5py

        self.path = path
        self.description = f"HDF5 export {path}"
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "hmtools-masks" or "samples" not in f:
                raise InputError(f"--masks {path} is an HDF5 file but not an hmtools mask export")
            if int(f.attrs.get("format_version", 0)) > 1:
                raise InputError(f"--masks {path} has export format version {f.attrs['format_version']}; this reads 1")

    def _group(self, f: Any, sample: Sample) -> Any:
        name = quote(sample.sample_id, safe="")
        if name not in f["samples"]:
            return None
        g = f["samples"][name]
        keys = tuple(g["frame_keys"].asstr()[()])
        if keys != tuple(sample.frames):
            raise InputError(
                f"sample {sample.sample_id}: the export lists {len(keys)} frames, the dataset {len(sample.frames)} "
                "(or other keys); the export was made from another version of the dataset"
            )
        return g

    def available(self, sample: Sample) -> list[bool]:
        import h5py

        with h5py.File(self.path, "r") as f:
            g = self._group(f, sample)
            return [False] * len(sample.frames) if g is None else [bool(x) for x in g["present"][()]]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        import h5py

        with h5py.File(self.path, "r") as f:
            g = self._group(f, sample)
            if g is None:
                return [None] * len(sample.frames)
            height = int(g["masks"].attrs["height"])
            masks = np.unpackbits(g["masks"][()], axis=1, count=height).astype(bool)  # (T, H, W)
            return [m if ok else None for m, ok in zip(masks, g["present"][()], strict=True)]

    def fingerprint(self) -> str:
        st = os.stat(self.path)
        return f"hdf5:{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def open_mask_source(path: str | Path) -> MaskSource:
    """Open the masks at ``path``: a store file (SQLite), an HDF5 export or a FineParser mask folder.

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
        if head.startswith(b"\x89HDF\r\n\x1a\n"):
            return Hdf5Masks(p)
        raise InputError(
            f"--masks {p} is neither a mask store (SQLite), an HDF5 export nor a mask folder; "
            "pass the store file written by build-masks, an `hmtools export --format hdf5` file or a "
            "folder of <frame key>.jpg/.png masks"
        )
    raise InputError(f"--masks {p} does not exist; pass a mask store file or a mask folder")


def source_key(source: MaskSource) -> str:
    """Short hash of :meth:`MaskSource.fingerprint`."""
    return hashlib.sha256(source.fingerprint().encode()).hexdigest()[:12]
