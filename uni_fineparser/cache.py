"""The packed clip cache: every frame and mask of every sample, resized once, memory-mapped.

Layout of ``<cache_dir>/<key>/`` (``key`` hashes the samples' frame lists, the size and the
mask source's fingerprint, so corrected masks or a changed dataset build a new cache):

* ``frames.npy``: ``(N, h, w, 3)`` uint8 RGB, all frames of all samples back to back;
* ``masks.npy``: ``(N, h, ceil(w / 8))`` uint8, bool masks packed along width (``np.packbits``);
* ``valid.npy``: ``(N,)`` bool, False where the frame has no mask;
* ``index.json``: ``{"size": [h, w], "samples": {sample_id: [offset, n]}, "frames_key": key,
  "frame_sizes": {sample_id: [H, W]}}`` (``frames_key`` hashes the frame lists and the size only;
  ``frame_sizes`` are the first frames' own sizes, so a cache that reuses these frames still checks
  its masks' aspect ratio against them).

A cache for corrected masks of the same frames takes its ``frames.npy`` from the earlier cache (a
hard link where the file system allows, else a copy) and decodes only the masks: frames are ~96 %
of a cache (about 21 GB for FineDiving at 200x112) and their JPEG decoding most of its build time.

Frames are resized with ``INTER_AREA``, masks with ``INTER_NEAREST`` (never bilinear); a mask whose
aspect ratio is not its frame's (a transposed mask) is refused, not stretched. The folder
is written under a temporary name and renamed when complete, so a killed build leaves no
half cache. Training then reads ~2 MB per pair instead of decoding 192 JPEGs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from hmtools.errors import DataFormatError
from hmtools.schema import Sample
from uni_fineparser.mask_source import MaskSource, source_key

log = logging.getLogger(__name__)


REBUILD = "delete that folder and rerun to rebuild it from the frames and masks"


class ClipCache:
    """Read access to a packed cache (opens the memory maps lazily, so it is fork/worker safe)."""

    def __init__(self, folder: Path):
        """Open ``folder`` and check that its arrays are complete (headers only; nothing is read).

        Raises:
            DataFormatError: ``index.json`` or an array is missing, truncated or of another shape
                (a copy cut short, a file deleted to free space).
        """
        self.folder = folder
        try:
            info = json.loads((folder / "index.json").read_text())
            self.size: tuple[int, int] = (int(info["size"][0]), int(info["size"][1]))
            self.index: dict[str, tuple[int, int]] = {k: (int(v[0]), int(v[1])) for k, v in info["samples"].items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise DataFormatError(f"clip cache {folder} is damaged (index.json: {e}); {REBUILD}") from e
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        n, (h, w) = sum(v[1] for v in self.index.values()), self.size
        expect = {"frames": ((n, h, w, 3), np.uint8), "masks": ((n, h, (w + 7) // 8), np.uint8), "valid": ((n,), bool)}
        for name, (shape, dtype) in expect.items():
            try:
                arr = np.load(folder / f"{name}.npy", mmap_mode="r")
            except (OSError, ValueError) as e:  # missing, or shorter than its header says
                why = "missing" if isinstance(e, FileNotFoundError) else str(e)
                raise DataFormatError(f"clip cache {folder} is damaged ({name}.npy: {why}); {REBUILD}") from e
            if arr.shape != shape or arr.dtype != dtype:
                got = f"{arr.dtype}{list(arr.shape)}"
                del arr
                raise DataFormatError(
                    f"clip cache {folder} is damaged ({name}.npy is {got}, expected "
                    f"{np.dtype(dtype)}{list(shape)}); {REBUILD}"
                )
            del arr

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def length(self, sample_id: str) -> int:
        """Number of frames cached for the sample."""
        return self.index[sample_id][1]

    def get(
        self, sample_id: str, idx: np.ndarray, box: tuple[int, int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames, masks and mask-valid flags of a sample at clip indices ``idx`` ``(T,)``.

        Args:
            sample_id: A cached sample.
            idx: Clip frame indices (clipped to the sample's length).
            box: ``(y, x, size)``: gather only that square crop (one copy of the crop, not of the
                whole frame); ``None``: whole frames.

        Returns:
            Contiguous frames ``(T, h, w, 3)`` uint8 and masks ``(T, h, w)`` bool (``h = w = size``
            with ``box``), and valid ``(T,)`` bool.
        """
        if self._arrays is None:
            d = self.folder
            self._arrays = (
                np.load(d / "frames.npy", mmap_mode="r"),
                np.load(d / "masks.npy", mmap_mode="r"),
                np.load(d / "valid.npy", mmap_mode="r"),
            )
        frames, masks, valid = self._arrays
        offset, n = self.index[sample_id]
        rows = offset + np.clip(idx, 0, n - 1)
        if box is None:
            f = np.asarray(frames[rows])
            m = np.unpackbits(masks[rows], axis=-1, count=self.size[1]).astype(bool)
        else:
            y, x, size = box
            f = frames[rows, y : y + size, x : x + size]  # fancy + slices: one copy of the crop only
            lo = x // 8  # masks are packed 8 columns a byte: unpack the covering bytes, then cut
            bits = np.unpackbits(masks[rows, y : y + size, lo : (x + size + 7) // 8], axis=-1)
            m = bits[..., x - 8 * lo : x - 8 * lo + size].astype(bool)
        return f, m, np.asarray(valid[rows])


def cache_key(samples: list[Sample], size: tuple[int, int], source: MaskSource) -> str:
    """Hash of what the cache contents depend on."""
    h = hashlib.sha256(json.dumps([list(size), source_key(source)]).encode())
    for s in sorted(samples, key=lambda s: s.sample_id):
        h.update(s.sample_id.encode())
        h.update("\0".join(s.frames).encode())
    return h.hexdigest()[:16]


def frames_key(samples: list[Sample], size: tuple[int, int]) -> str:
    """Hash of what ``frames.npy`` depends on: the samples' frame lists, in order, and the size."""
    h = hashlib.sha256(json.dumps(list(size)).encode())
    for s in samples:
        h.update(s.sample_id.encode() + b"\0" + "\0".join(s.frames).encode() + b"\1")
    return h.hexdigest()[:16]


def _frames_donor(cache_dir: Path, key: str) -> Path | None:
    """An intact ``frames.npy`` of another cache in ``cache_dir`` built from the same frames, or ``None``."""
    for index in sorted(cache_dir.glob("*/index.json")):
        try:
            if json.loads(index.read_text()).get("frames_key") == key:
                ClipCache(index.parent)  # checks every array's shape (headers only)
                return index.parent / "frames.npy"
        except (OSError, ValueError, DataFormatError):
            continue
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (cache files are never written after their build), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def check_masks(samples: list[Sample], source: MaskSource, allow_missing: bool) -> int:
    """Count frames without a mask; fail unless ``allow_missing``.

    Raises:
        DataFormatError: masks missing and not allowed (names how many, where, and the fix).
    """
    missing, first, n_samples = 0, "", 0
    for s in samples:
        avail = source.available(s)
        gaps = [k for k, ok in zip(s.frames, avail, strict=True) if not ok]
        if gaps:
            missing, n_samples, first = missing + len(gaps), n_samples + 1, first or gaps[0]
    total = sum(len(s.frames) for s in samples)
    if missing and not allow_missing:
        raise DataFormatError(
            f"{missing} of {total} frames ({n_samples} samples) have no mask in {source.description} "
            f"(first: {first}); complete them or pass --allow-missing-masks to leave those frames out of L_A"
        )
    if missing:
        log.warning("%d of %d frames have no mask; they are left out of L_A", missing, total)
    return missing


def import_cv2() -> ModuleType:
    """OpenCV with its own thread pool off: its spinning workers slow torch's CPU kernels ~5x in the
    same process (measured on the 2-core dev VM); parallelism comes from our thread pool instead."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


ASPECT_TOLERANCE = 0.02
"""Largest relative difference between a mask's and its frame's aspect ratio resized without complaint."""


def check_mask_shape(sample: Sample, key: str, mask_hw: tuple[int, int], frame_hw: tuple[int, int], where: str) -> None:
    """Refuse a mask whose aspect ratio is not its frame's: resizing it to the training size would stretch it.

    A mask of the frame's size, or of another size with the same aspect ratio (a half-size export;
    within :data:`ASPECT_TOLERANCE` or a pixel of rounding), passes: it is resized (nearest) like the frame.

    Args:
        sample: The sample (named in the error).
        key: The frame key (named in the error).
        mask_hw: ``(H, W)`` of the mask in pixels.
        frame_hw: ``(H, W)`` of the frame in pixels.
        where: The mask source's description (named in the error).

    Raises:
        DataFormatError: another aspect ratio (a transposed mask, a crop, another video's mask).
    """
    (mh, mw), (fh, fw) = mask_hw, frame_hw
    if (mh, mw) == (fh, fw) or (mw and abs(mh * fw / mw - fh) <= max(1.0, ASPECT_TOLERANCE * fh)):
        return
    raise DataFormatError(
        f"sample {sample.sample_id}: the mask of frame {key} is {mh}x{mw} (HxW) but the frame is {fh}x{fw}, "
        "another aspect ratio (a transposed or cropped mask, another video's?) that resizing to the training size "
        f"would stretch; correct that mask in {where}"
    )


def _read_sample(
    sample: Sample,
    root: Path,
    source: MaskSource,
    size: tuple[int, int],
    with_frames: bool = True,
    frame_hw: tuple[int, int] | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Frames ``(T, h, w, 3)`` uint8 RGB (``None`` unless ``with_frames``), packed masks ``(T, h, ceil(w / 8))``,
    valid ``(T,)`` and the first frame's ``(H, W)`` (``frame_hw`` without frames; ``None`` if unknown).

    Each mask is checked against its frame's size (:func:`check_mask_shape`; without frames, against
    ``frame_hw``, the size the frames had when they were packed; unchecked when ``None``).
    """
    cv2 = import_cv2()
    h, w = size
    frames = np.empty((len(sample.frames), h, w, 3), np.uint8) if with_frames else None
    sizes: list[tuple[int, int]] = []
    for i, key in enumerate(sample.frames if frames is not None else ()):
        img = cv2.imread(str(root / key), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # as hmtools.frames
        if img is None:
            raise DataFormatError(f"frame {root / key} of sample {sample.sample_id} is missing or not an image")
        sizes.append((int(img.shape[0]), int(img.shape[1])))
        frames[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1]
    masks = np.zeros((len(sample.frames), h, (w + 7) // 8), np.uint8)
    valid = np.zeros(len(sample.frames), bool)
    for i, m in enumerate(source.read(sample)):
        if m is None:
            continue
        own = sizes[i] if sizes else frame_hw
        if own is not None:
            check_mask_shape(sample, sample.frames[i], (int(m.shape[0]), int(m.shape[1])), own, source.description)
        small = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        masks[i], valid[i] = np.packbits(small, axis=-1), True
    return frames, masks, valid, sizes[0] if sizes else frame_hw


def _donor_frame_sizes(donor: Path, samples: list[Sample], root: Path) -> dict[str, tuple[int, int] | None]:
    """The frames' ``(H, W)`` of each sample when the frames come from ``donor``: as its ``index.json`` records
    them, else from the first frame's header under ``root`` (``None`` where neither is known)."""
    from hmtools.frames import frame_size

    try:
        recorded = json.loads((donor.parent / "index.json").read_text()).get("frame_sizes") or {}
    except (OSError, ValueError, AttributeError):  # unreadable, or not an object
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    out: dict[str, tuple[int, int] | None] = {}
    for s in samples:
        hw = recorded.get(s.sample_id)
        if hw is None and s.frames:
            try:
                hw = frame_size(root, s.frames[0])
            except DataFormatError:  # the frames are gone (that is why the donor's are used): unchecked
                hw = None
        out[s.sample_id] = None if hw is None else (int(hw[0]), int(hw[1]))
    return out


def build_cache(
    samples: list[Sample],
    root: str | Path,
    source: MaskSource,
    cache_dir: str | Path,
    size: tuple[int, int],
    *,
    allow_missing: bool = False,
    threads: int = 4,
    progress: bool = False,
) -> ClipCache:
    """Pack frames and masks of ``samples`` (or reuse the cache built from the same inputs).

    Args:
        samples: Samples to pack (frame keys relative to ``root``).
        root: Dataset root.
        source: Mask source (see :func:`uni_fineparser.mask_source.open_mask_source`).
        cache_dir: Parent folder of caches.
        size: ``(height, width)`` frames and masks are resized to.
        allow_missing: Accept frames without a mask (``valid`` False).
        threads: Decoding threads (OpenCV releases the GIL).
        progress: Show a progress bar.

    Raises:
        DataFormatError: a frame is missing/unreadable or masks are missing (see :func:`check_masks`).
    """
    from tqdm import tqdm

    folder = Path(cache_dir) / cache_key(samples, size, source)
    if (folder / "index.json").is_file():
        try:
            return ClipCache(folder)
        except DataFormatError as e:  # derived data only: rebuild it rather than stop on it
            log.warning("%s; rebuilding it", str(e).split("; delete")[0])
            shutil.rmtree(folder, ignore_errors=True)
    check_masks(samples, source, allow_missing)
    log.info("packing %d samples into the clip cache %s", len(samples), folder)
    total = sum(len(s.frames) for s in samples)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    h, w = size
    fkey = frames_key(samples, size)
    donor = _frames_donor(Path(cache_dir), fkey)
    try:
        if donor is not None:
            log.info("the frames are those of %s: reusing them, packing the masks only", donor.parent)
            _link_or_copy(donor, tmp / "frames.npy")
            frames = None
        else:
            frames = np.lib.format.open_memmap(tmp / "frames.npy", "w+", np.uint8, (total, h, w, 3))
        masks = np.lib.format.open_memmap(tmp / "masks.npy", "w+", np.uint8, (total, h, (w + 7) // 8))
        valid = np.lib.format.open_memmap(tmp / "valid.npy", "w+", bool, (total,))
        index, offset = {}, 0
        for s in samples:
            index[s.sample_id] = [offset, len(s.frames)]
            offset += len(s.frames)
        known = {} if donor is None else _donor_frame_sizes(donor, samples, Path(root))
        sizes: dict[str, list[int]] = {}
        with ThreadPoolExecutor(max(1, threads)) as pool:
            jobs = pool.map(
                lambda s: (s, _read_sample(s, Path(root), source, size, donor is None, known.get(s.sample_id))),
                samples,
            )
            for s, (f, m, v, hw) in tqdm(jobs, total=len(samples), desc="packing clips", disable=not progress):
                o, n = index[s.sample_id]
                masks[o : o + n], valid[o : o + n] = m, v
                if frames is not None and f is not None:
                    frames[o : o + n] = f
                if hw is not None:
                    sizes[s.sample_id] = list(hw)
        for arr in (frames, masks, valid):
            if arr is not None:
                arr.flush()
        del frames, masks, valid
        info = {"size": [h, w], "samples": index, "frames_key": fkey, "frame_sizes": sizes}
        (tmp / "index.json").write_text(json.dumps(info))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ClipCache(folder)
