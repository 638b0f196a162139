"""Binary masks and COCO compressed RLE, through pycocotools, with its traps handled.

pycocotools traps this module hides:

* ``encode`` wants a Fortran-ordered (column-major) ``uint8`` array of shape ``(H, W, N)``
  or ``(H, W)``; a C-ordered array is silently transposed garbage in old versions and an
  error in new ones. We always pass ``np.asfortranarray``.
* ``counts`` comes back as ``bytes``; JSON needs ``str``. :func:`encode_rle` returns ``str``
  and :func:`decode_rle` accepts either.
* ``size`` is ``[H, W]`` (rows first), not ``[W, H]``.
* ``decode`` returns ``(H, W)`` uint8 (or ``(H, W, N)``); we return ``bool``.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
from pycocotools import mask as _coco_mask

from hmtools.errors import DataFormatError


class RLE(TypedDict):
    """COCO compressed RLE as stored in JSON: ``{"size": [H, W], "counts": str}``."""

    size: list[int]
    counts: str


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode a binary mask as COCO compressed RLE.

    Args:
        mask: ``(H, W)`` array; any nonzero value is foreground (bool or integer dtype).

    Returns:
        ``{"size": [H, W], "counts": str}`` with ``counts`` as an ASCII string.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {mask.shape}")
    fortran = np.asfortranarray(mask if mask.dtype == np.bool_ else mask != 0, dtype=np.uint8)
    rle = _coco_mask.encode(fortran)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed ``counts`` as str/bytes, or uncompressed ``counts`` list).

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``.

    Returns:
        ``(H, W)`` bool mask.

    Raises:
        DataFormatError: the dict is not RLE or its counts disagree with its size.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(f"expected RLE {{'size': [H, W], 'counts': ...}}, found {rle!r:.80}") from e
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != height * width:
            raise DataFormatError(f"uncompressed RLE counts sum to {sum(counts)}, expected H*W = {height * width}")
        compressed = _coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        compressed = {"size": [height, width], "counts": raw}
        if rle_length(raw) != height * width:
            raise DataFormatError(
                f"RLE counts cover {rle_length(raw)} pixels but size {height}x{width} needs {height * width}"
            )
    return _coco_mask.decode(compressed).astype(bool)


def rle_length(counts: bytes) -> int:
    """Total run length of a compressed COCO counts string (pure Python port of rleFrString)."""
    total = 0
    runs: list[int] = []
    pos = 0
    n = len(counts)
    while pos < n:
        value = 0
        shift = 0
        more = True
        while more:
            if pos >= n:
                return -1
            c = counts[pos] - 48
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        total += value
    return total


def mask_area(mask: np.ndarray) -> int:
    """Number of foreground pixels of an ``(H, W)`` mask."""
    return int(np.count_nonzero(mask))


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight XYXY box of the foreground of an ``(H, W)`` mask, or ``None`` if it is empty.

    The box covers whole pixels: a single foreground pixel at (x=3, y=2) gives (3, 2, 4, 3).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def xyxy_to_xywh(box: tuple[float, float, float, float]) -> list[float]:
    """Convert an XYXY box to COCO's ``[x, y, width, height]``."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(H, W)`` masks; 1.0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixel count of a compressed RLE without decoding it."""
    raw = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return int(_coco_mask.area({"size": list(rle["size"]), "counts": raw}))


def rle_to_box(rle: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """XYXY box of a compressed RLE without decoding it, or ``None`` if empty."""
    raw = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    compressed = {"size": list(rle["size"]), "counts": raw}
    if _coco_mask.area(compressed) == 0:
        return None
    x, y, w, h = (float(v) for v in _coco_mask.toBbox(compressed))
    return (x, y, x + w, y + h)
