"""Where the human masks come from: ``open_mask_source(path) -> MaskSource``.

Supported now:

* a mask store (SQLite file, :class:`hmtools.store.MaskStore`): the newest version of each
  frame's mask (``current_masks``), unless an annotator rejected it (a known-bad mask is no
  supervision: the frame counts as having none);
* a FineParser mask folder: ``<mask_root>/<frame key with a .jpg (or .png, ...) suffix>``
  (FineDiving-HM's ``diving_mask_annotation_gray``), read pixel for pixel as ``hmtools import`` reads
  it (:func:`hmtools.exchange.fineparser.read_mask_image`: 0/255 grey or colour thresholded at 128 on
  the brightest channel, 0/1 or label PNGs by nonzero, palette PNGs by index != 0);
* an hmtools HDF5 export (format ``hmtools-masks`` version 1, docs/formats.md): group
  ``/samples/<quoted sample id>`` with ``masks`` ``(T, ceil(H/8), W)`` uint8 bit-packed along the
  height (bitorder big), ``present`` ``(T,)`` and ``frame_keys`` ``(T,)``.

A new format is one more class with ``available``/``read``/``fingerprint`` and one more branch in
:func:`open_mask_source`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import numpy as np

from hmtools.errors import DataFormatError, InputError
from hmtools.schema import Sample

if TYPE_CHECKING:
    from hmtools.store_types import MaskRecord

log = logging.getLogger(__name__)


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


class FolderMasks:
    """FineParser-style mask folder mirroring the frame layout, read exactly as ``hmtools import`` reads it.

    A frame ``<dir>/<name>.<ext>`` has the mask ``<root>/<dir>/<name>.<mask ext>``, where the mask
    extension is one of :data:`hmtools.exchange.fineparser.MASK_EXTENSIONS`, in any case (``.PNG``).
    Two files of one name with different extensions are refused (which one is the mask?). When no frame
    of a sample has a mask of its own name and the mirrored folder holds exactly one mask per frame,
    they are paired in frame-number order (FineDiving-HM copies named by position, ``00000.jpg`` first),
    as the import and the FineParser loaders do; also when their names partly overlap the frames'
    (:func:`hmtools.exchange.fineparser.pair_masks`, shared with the import).
    Pixels are read by :func:`hmtools.exchange.fineparser.read_mask_image`: palette PNGs by index
    (!= 0), lossless 0/1 or label masks (brightest pixel < 128) by nonzero, others by >= 128 (the
    brightest channel of a colour file).
    """

    def __init__(self, root: Path):
        self.root = root
        self.description = f"mask folder {root}"
        self._rules_told: set[str] = set()

    def _listing(self, folder: str) -> dict[str, str]:
        """``{mask key stem: mask relpath}`` of the mask files directly in ``<root>/<folder>``.

        Raises:
            DataFormatError: two files there differ only by extension.
            InputError: the folder exists but cannot be listed.
        """
        from hmtools.exchange.fineparser import scan_mask_subfolder

        try:
            return scan_mask_subfolder(self.root, folder)
        except OSError as e:  # e.g. a folder this user may not read
            raise InputError(f"cannot list the mask folder {self.root / folder}: {e.strerror}") from e

    def _paths(self, sample: Sample) -> list[Path | None]:
        """The mask file of each frame of ``sample`` (``None`` where it has none)."""
        from hmtools.exchange.fineparser import masks_by_folder, pair_masks

        found: dict[str, str] = {}
        for folder in dict.fromkeys(key.rpartition("/")[0] for key in sample.frames):
            found.update(self._listing(folder))
        pairs, positional = pair_masks(sample.sample_id, sample.frames, found, lambda: masks_by_folder(found))
        by_key = dict(pairs)  # by frame name, else by position in the clip (as the import pairs them)
        rels = [by_key.get(k) for k in sample.frames]
        if positional and "position" not in self._rules_told:
            self._rules_told.add("position")
            log.warning(
                "%s: the masks of sample %s (and maybe others) are named by position, not by frame: paired with "
                "the frames in order, as `hmtools import` and the FineParser loaders pair them",
                self.root,
                sample.sample_id,
            )
        return [None if r is None else self.root / r for r in rels]

    def available(self, sample: Sample) -> list[bool]:
        return [p is not None for p in self._paths(sample)]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        """``(H, W)`` bool masks at the files' own size (the cache resizes them to the frames' size).

        Raises:
            DataFormatError: a mask file is not a readable image, or is ambiguous (see the class).
        """
        from hmtools.exchange.fineparser import read_mask_image
        from uni_fineparser.cache import import_cv2

        import_cv2()  # OpenCV's own thread pool off before the first decode (see there)
        out: list[np.ndarray | None] = []
        for p in self._paths(sample):
            if p is None:
                out.append(None)
                continue
            mask, rule = read_mask_image(p)
            if rule != "threshold" and rule not in self._rules_told:
                self._rules_told.add(rule)
                what = "are palette images" if rule == "palette" else "have no pixel >= 128 (0/1 or label masks)"
                how = "palette index != 0" if rule == "palette" else "nonzero pixels"
                log.warning(
                    "%s: masks such as %s %s: foreground = %s, as `hmtools import` reads them", self.root, p, what, how
                )
            out.append(mask)
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
        self.path = path
        self.description = f"HDF5 export {path}"
        with self._open() as f:
            if f.attrs.get("format") != "hmtools-masks" or "samples" not in f:
                raise InputError(f"--masks {path} is an HDF5 file but not an hmtools mask export")
            if int(f.attrs.get("format_version", 0)) > 1:
                raise InputError(f"--masks {path} has export format version {f.attrs['format_version']}; this reads 1")

    def _open(self) -> Any:
        """The file opened read-only (h5py's ``OSError`` on a truncated or damaged file as one error line)."""
        import h5py

        try:
            return h5py.File(self.path, "r")
        except OSError as e:
            raise DataFormatError(
                f"--masks {self.path} is not a readable HDF5 file ({e}); a truncated copy? export or copy it again"
            ) from e

    def _group(self, f: Any, sample: Sample) -> Any:
        """The sample's group, its keys checked against the dataset and its arrays against its frame count
        (``None`` when the export lacks the sample)."""
        name = quote(sample.sample_id, safe="")
        if name not in f["samples"]:
            return None
        g = f["samples"][name]
        try:
            keys = tuple(g["frame_keys"].asstr()[()])
            shapes = (g["masks"].shape, g["present"].shape, int(g["masks"].attrs["height"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(f"--masks {self.path}: sample {sample.sample_id} is damaged ({e})") from e
        if keys != tuple(sample.frames):
            raise InputError(
                f"sample {sample.sample_id}: the export lists {len(keys)} frames, the dataset {len(sample.frames)} "
                "(or other keys); the export was made from another version of the dataset"
            )
        (masks, present, height), t = shapes, len(keys)
        if len(masks) != 3 or masks[0] != t or masks[1] != (height + 7) // 8 or present != (t,):
            raise DataFormatError(
                f"--masks {self.path}: sample {sample.sample_id} has masks {masks}, present {present} and height "
                f"{height}, which do not fit its {t} frames (expected ({t}, {(height + 7) // 8}, W) and ({t},))"
            )
        return g

    def available(self, sample: Sample) -> list[bool]:
        with self._open() as f:
            g = self._group(f, sample)
            return [False] * len(sample.frames) if g is None else [bool(x) for x in g["present"][()]]

    def read(self, sample: Sample) -> list[np.ndarray | None]:
        with self._open() as f:
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
