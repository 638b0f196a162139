"""FineParser-style mask folder: one 8-bit single-channel image per frame, mirroring the frame tree.

``<out>/<frame key>`` with the extension replaced by ``.jpg`` (default) or ``.png``; pixel
values 0 (background) and 255 (athlete). This is the layout the public FineParser code reads as
its mask root (``FineDiving_HM/<video>/<idx>/<frame>.jpg``). Frames without a selected mask get
no file (the manifest counts them); an empty mask is an all-zero image.

Import reads any such folder: files are matched to frames by frame key with the extension
ignored (else by position in the clip: :func:`pair_masks`); JPEG masks are lossy, so pixels >= 128
(of the brightest channel in a colour file) are foreground (:func:`read_mask_image`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path, PurePosixPath

import numpy as np

from hmtools.errors import DataFormatError
from hmtools.exchange.common import SampleMasks
from hmtools.exchange.manifest import SUMS_NAME
from hmtools.exchange.parallel import batched, ordered_map
from hmtools.frames import frame_number
from hmtools.masks import RLE

IMAGE_FORMATS = {".jpg": 95, ".png": 1}
"""Mask file extension -> encoder setting (JPEG quality 95; PNG compression level 1)."""
MASK_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
THRESHOLD = 128
BATCH = 16
"""Frames per thread-pool task (amortises the per-task overhead)."""


def mask_relpath(frame_key: str, ext: str) -> str:
    """Relative mask path for a frame key: same folders and name, extension ``ext``.

    Raises:
        DataFormatError: the key is absolute or climbs out of the root (``..``).
    """
    p = PurePosixPath(frame_key)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataFormatError(f"frame key {frame_key!r} is not a relative path inside the dataset root")
    return str(p.with_suffix(ext))


def encode_mask_image(mask: np.ndarray, ext: str) -> bytes:
    """Encode an ``(H, W)`` mask (nonzero = foreground) as an 8-bit single-channel 0/255 ``.jpg``/``.png``.

    The 0/255 scaling is NumPy's: ``cv2.threshold`` runs on OpenCV's thread pool, whose workers
    then spin on the other cores (~100 us of CPU per call measured here), starving our own
    threads. OpenCV releases the GIL for the encoding.
    """
    import cv2

    img = (np.ascontiguousarray(mask) != 0).view(np.uint8)
    img *= np.uint8(255)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, IMAGE_FORMATS[ext]]
        if ext == ".jpg"
        else [
            cv2.IMWRITE_PNG_COMPRESSION,
            IMAGE_FORMATS[ext],
        ]
    )
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} mask as {ext}")
    return buf.tobytes()


def write_fineparser(samples: Iterable[SampleMasks], out: Path, ext: str, workers: int) -> None:
    """Write one mask image per frame under the folder ``out`` and ``out/SHA256SUMS``.

    Each thread-pool task decodes its frames' RLEs together (:func:`hmtools.masks.decode_counts`,
    which also validates them), then encodes and writes one image per frame.
    """
    from hmtools.masks import decode_counts

    if ext not in IMAGE_FORMATS:
        raise DataFormatError(f"mask image format must be one of {', '.join(IMAGE_FORMATS)}; got {ext!r}")

    def jobs() -> Iterator[tuple[str, bytes, int, int]]:
        last_parent = None
        names: set[str] = set()  # mask names in the current folder (frames differing only by extension)
        for sm in samples:
            for frame, rec in zip(sm.frames, sm.records, strict=True):
                if rec is None:
                    continue
                rel = mask_relpath(frame.key, ext)
                parent = os.path.dirname(rel)
                if parent != last_parent:
                    (out / parent).mkdir(parents=True, exist_ok=True)
                    last_parent, names = parent, set()
                if rel in names:
                    raise DataFormatError(f"two frames of {parent or 'the root'} map to the mask file {rel}")
                names.add(rel)
                yield rel, rec.rle["counts"].encode("ascii"), sm.height, sm.width

    def work(batch: list[tuple[str, bytes, int, int]]) -> str:
        lines = []
        for (height, width), same_size in groupby(batch, key=lambda job: (job[2], job[3])):
            group = list(same_size)
            masks = decode_counts([counts for _, counts, _, _ in group], height, width)  # (N, H, W) bool
            for (rel, *_), mask in zip(group, masks, strict=True):
                data = encode_mask_image(mask, ext)
                fd = os.open(out / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}\n")
        return "".join(lines)

    with open(out / SUMS_NAME, "w", encoding="utf-8") as sums:
        for lines in ordered_map(work, batched(jobs(), BATCH), workers):
            sums.write(lines)


def scan_mask_folder(folder: Path) -> dict[str, str]:
    """Map each mask image under ``folder`` to its frame key stem: ``{key without extension: relpath}``.

    Raises:
        DataFormatError: two files differ only by extension (which one is the mask?).
    """
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, folder)
        _add_masks(found, folder, "" if rel_dir == "." else rel_dir.replace(os.sep, "/"), filenames)
    return found


def scan_mask_subfolder(folder: Path, rel_dir: str) -> dict[str, str]:
    """:func:`scan_mask_folder` of the files directly in ``folder/rel_dir`` only (``""`` = the top);
    ``{}`` when that folder does not exist.

    Raises:
        DataFormatError: two files differ only by extension.
        OSError: the folder exists but cannot be listed.
    """
    found: dict[str, str] = {}
    try:
        with os.scandir(folder / rel_dir) as entries:
            names = [e.name for e in entries if e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return found
    _add_masks(found, folder, rel_dir, names)
    return found


def _add_masks(found: dict[str, str], folder: Path, rel_dir: str, filenames: Iterable[str]) -> None:
    """Add the mask images among ``filenames`` (files of ``folder/rel_dir``) to ``found`` as
    ``{key stem: relpath}``, in name order.

    Raises:
        DataFormatError: two files differ only by extension (which one is the mask?).
    """
    for name in sorted(filenames):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in MASK_EXTENSIONS:
            continue
        rel = f"{rel_dir}/{name}" if rel_dir else name
        key = rel[: len(rel) - len(ext)]
        if key in found:
            raise DataFormatError(f"{folder}: {found[key]} and {rel} are both masks of one frame; remove one")
        found[key] = rel


def masks_by_folder(found: dict[str, str]) -> dict[str, list[str]]:
    """The mask key stems of :func:`scan_mask_folder`'s result grouped by their folder (``""`` = top)."""
    out: dict[str, list[str]] = {}
    for stem in found:
        out.setdefault(stem.rpartition("/")[0], []).append(stem)
    return out


def pair_by_position(
    frames: Sequence[str], found: dict[str, str], by_folder: dict[str, list[str]]
) -> list[tuple[str, str]]:
    """``[(frame key, mask relpath)]`` for a sample whose masks are named by position (see :func:`pair_masks`).

    When the mask folder mirroring the sample's frame folder holds exactly one mask per frame,
    they are paired in frame-number order, which is how the FineParser loaders read masks (by
    position in the sorted list; a FineDiving-HM copy may name its masks by position in the clip,
    ``00000.jpg`` for the first frame, rather than by the frame's number). The paired masks leave
    ``found``. Returns ``[]`` (nothing paired) when the sample spans several folders or the counts differ.
    """
    folder = frames[0].rpartition("/")[0] if frames else ""
    if not frames or any(k.rpartition("/")[0] != folder for k in frames):
        return []
    stems = [s for s in by_folder.get(folder, []) if s in found]
    if len(stems) != len(frames):
        return []
    stems.sort(key=_number_order)
    return [(key, found.pop(stem)) for key, stem in zip(frames, stems, strict=True)]


def _number_order(stem: str) -> tuple[bool, int, str]:
    """Sort key of a mask stem: by the frame number in its name (as frame folders are listed), then by name."""
    n = frame_number(stem.rpartition("/")[2] + ".jpg")
    return (n is None, n or 0, stem)


def _run_start(names: Sequence[str]) -> int | None:
    """``k`` when the numbers in the names (stems or frame keys) are exactly ``k..k+n-1``, else ``None``."""
    found = [frame_number(name.rpartition("/")[2] + ".jpg") for name in names]
    nums = sorted(n for n in found if n is not None)
    if not nums or len(nums) != len(names) or nums != list(range(nums[0], nums[0] + len(nums))):
        return None
    return nums[0]


def pair_masks(
    sample_id: str,
    frames: Sequence[str],
    found: dict[str, str],
    by_folder: Callable[[], dict[str, list[str]]],
) -> tuple[list[tuple[str, str]], bool]:
    """Pair a sample's frames with masks: ``([(frame key, mask relpath)], paired by position?)``.

    ``found`` is :func:`scan_mask_folder`'s ``{stem: relpath}`` (the paired masks leave it);
    ``by_folder`` gives :func:`masks_by_folder` of it (called only when needed).

    * Every frame has a mask of its own name (extension ignored): those.
    * No frame has one: :func:`pair_by_position` (one mask per frame in the mirrored folder).
    * Some frames have one, others not, and the mirrored folder holds exactly as many masks as the
      sample has frames, numbered ``0..n-1`` or ``1..n``: they are named by position (frames
      ``00050..00149``, masks ``00000..00099``: the overlapping names ``00050..00099`` are not those
      frames' masks) and are paired in order. Numbered ``k..k+n-1`` for another ``k`` while the
      frames are numbered consecutively too: refused (shifted numbering: which mask is whose?).
    * Otherwise the frames with a mask of their name get it (a partly annotated clip, a stray file).

    Raises:
        DataFormatError: the shifted numbering of the third case.
    """
    from hmtools.exchange.sink import key_stem

    stems = [key_stem(k) for k in frames]
    named = [s in found for s in stems]
    if not any(named):
        pairs = pair_by_position(frames, found, by_folder()) if frames else []
        return pairs, bool(pairs)
    folder = frames[0].rpartition("/")[0]
    if not all(named) and all(k.rpartition("/")[0] == folder for k in frames):
        masks = [s for s in by_folder().get(folder, []) if s in found]
        start = _run_start(masks) if len(masks) == len(frames) else None
        if start in (0, 1):
            return pair_by_position(frames, found, by_folder()), True
        if start is not None and _run_start(frames) is not None:
            unnamed = sorted(set(masks) - set(stems), key=_number_order)
            raise DataFormatError(
                f"sample {sample_id}: {sum(named)} of its {len(frames)} frames have a mask of their own name in "
                f"{folder or 'the top folder'}, but the masks there are numbered from {start} (e.g. "
                f"{found[unnamed[0]]}, which names none of its frames), the frames from another number; "
                "which mask belongs to which frame? name each mask after its frame, or number a clip's masks "
                "by position from 0"
            )
    return [(k, found.pop(s)) for k, s, ok in zip(frames, stems, named, strict=True) if ok], False


@dataclass(frozen=True)
class DecodedMask:
    """A mask file read for import: its RLE with area and XYXY box (``None`` when empty), the image's
    size, and how its pixels were read (``rule``: see :func:`decode_mask_files`)."""

    rle: RLE
    area: int
    box: tuple[float, float, float, float] | None
    height: int
    width: int
    rule: str = "threshold"


LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp")
"""Mask files whose pixel values are not exact (their 0/1 or label-map values cannot be trusted)."""
_PNG_COLOR_TYPE = 25
"""Byte offset of the IHDR colour type in a PNG file (3 = palette)."""


def read_mask_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read one mask file as an ``(H, W)`` bool foreground and the rule that made it.

    A pixel's value is its grey level, or for a colour image (3 or 4 channels; alpha is ignored)
    the **largest of its colour channels**, so a red (255, 0, 0), green or blue mask on black reads
    like a white one (its grey level, ~76 for pure red, would fall below the threshold). Rules,
    checked in this order:

    * ``palette``: a palette PNG (DAVIS / YouTube-VOS, SAM 2, Cutie and XMem write these):
      foreground = palette index != 0 (index 0 is the background; grey conversion would turn
      DAVIS' dark red index 1 into 38, i.e. background).
    * ``nonzero``: a lossless file (PNG/BMP/TIFF) whose brightest value is below half range
      (a 0/1 mask or a label map of athlete ids 1, 2, ...): foreground = nonzero.
    * ``threshold``: otherwise foreground = values >= half range (128 for 8-bit, 32768 for
      16-bit): 0/255 grey or colour masks, lossy JPEG edges and noise.

    Raises:
        DataFormatError: the file cannot be decoded.
    """
    import cv2

    ext = os.path.splitext(os.fspath(path))[1].lower()
    # ANYCOLOR: a grey file decodes as one channel (as fast as IMREAD_GRAYSCALE), a colour one as BGR
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION
    if ext in LOSSY_EXTENSIONS:
        img = cv2.imread(os.fspath(path), flags)
    else:
        try:
            data = np.fromfile(os.fspath(path), np.uint8)
        except OSError:
            data = np.zeros(0, np.uint8)
        if ext == ".png" and data.size > _PNG_COLOR_TYPE and data[_PNG_COLOR_TYPE] == 3:
            return _read_palette(path, data), "palette"
        img = cv2.imdecode(data, flags | cv2.IMREAD_ANYDEPTH) if data.size else None
    if img is None:
        raise DataFormatError(f"{path} is not a readable image; expected an 8-bit mask image")
    if img.ndim == 3:  # (H, W, C) colour: the brightest channel of each pixel (alpha, if any, left out)
        img = np.maximum(np.maximum(img[..., 0], img[..., 1]), img[..., 2]) if img.shape[2] >= 3 else img[..., 0]
    half = 32768 if img.dtype == np.uint16 else THRESHOLD
    if ext not in LOSSY_EXTENSIONS and 0 < int(img.max()) < half:
        return img != 0, "nonzero"
    if img.dtype != np.uint8:
        return img >= half, "threshold"
    fg = img.view(np.bool_)  # the same bytes, rewritten to 0/1 in place: the encoder takes it without a copy
    np.greater_equal(img, THRESHOLD, out=fg)
    return fg, "threshold"


def _read_palette(path: str | Path, data: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            return np.asarray(img) != 0
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataFormatError(f"{path} is not a readable image ({e}); expected a mask image") from e


def decode_mask_files(paths: Sequence[str | Path]) -> list[DecodedMask]:
    """Read mask images (any 8/16-bit, 1/3/4-channel or palette file OpenCV or PIL reads).

    Each image becomes a bool foreground by :func:`read_mask_image` (0/255 masks thresholded in
    place by NumPy, not ``cv2.threshold``: see :func:`encode_mask_image`), then all are encoded in
    one :func:`hmtools.rle_batch.encode_masks` call, which also gives area and box.

    Raises:
        DataFormatError: a file cannot be decoded.
    """
    from hmtools.rle_batch import encode_masks

    images = [read_mask_image(path) for path in paths]
    return [
        DecodedMask({"size": [img.shape[0], img.shape[1]], "counts": counts}, area, box, *img.shape, rule=rule)
        for (img, rule), (counts, area, box) in zip(images, encode_masks([img for img, _ in images]), strict=True)
    ]
