"""Encode many binary masks to COCO compressed RLE at once (a whole sample per call).

The store writes ~100 frames per sample. Encoding them one by one (numpy transitions over the
whole frame, then pycocotools to compress the runs) cost ~45 us per 256x455 frame, most of it
spent on pixels far from the person. :func:`encode_masks` instead

1. finds each mask's foreground rows (one OpenCV row reduction per mask) and transposes only
   those rows, plus a zero row above and below, to column-major order (OpenCV);
2. finds the transitions of all these small crops with one compare and one ``flatnonzero`` over
   their concatenation, and maps them back to column-major positions in the full frame;
3. turns the transitions into runs, compresses all runs of all masks into counts characters in
   a few vectorised numpy passes (:func:`compress_runs`), and takes area and XYXY box from the
   same arrays.

The counts strings are byte-identical to ``pycocotools.mask.encode`` (checked in
``tests/test_store_encode.py``). Format reminder: runs alternate background/foreground starting
with background (0 when pixel (0, 0) is foreground), column by column; each run after the
second is stored as the difference to the run two before, in 5-bit groups, low first, as
characters ``48 + bits`` (``+ 0x20`` while more groups follow); the last group's bit ``0x10``
is the sign.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hmtools.rle_codec import column_runs

Box = tuple[float, float, float, float]

_GROUP_LIMITS = np.array([1 << (5 * k - 1) for k in range(1, 13)], dtype=np.int64)
"""A value ``v`` fits in ``k`` 5-bit groups iff ``v`` (or ``~v`` when negative) < ``_GROUP_LIMITS[k - 1]``."""


def encode_masks(masks: Sequence[np.ndarray]) -> list[tuple[str, int, Box | None]]:
    """Encode 2-D masks to COCO counts strings with their area and box, batching equal sizes.

    Args:
        masks: ``(H, W)`` arrays of any dtype and memory order (nonzero = foreground); sizes may
            differ between masks.

    Returns:
        One ``(counts, area, box)`` per mask, in order: ``counts`` the ASCII compressed-RLE
        string (byte-identical to ``pycocotools.mask.encode``), ``area`` the foreground pixels,
        ``box`` the XYXY float box of the foreground or ``None`` when it is empty.

    Raises:
        ValueError: a mask is not 2-D.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(masks):
        if m.ndim != 2:
            raise ValueError(f"expected a 2-D (H, W) mask, got shape {m.shape}")
        groups.setdefault((int(m.shape[0]), int(m.shape[1])), []).append(i)
    out: list[tuple[str, int, Box | None]] = [("", 0, None)] * len(masks)
    for (height, width), idx in groups.items():
        for i, result in zip(idx, _encode_same_size([masks[i] for i in idx], height, width), strict=True):
            out[i] = result
    return out


def _as_u8(mask: np.ndarray) -> np.ndarray:
    """C-contiguous uint8 0/1 view or copy of a mask (a bool C-contiguous mask is not copied)."""
    if mask.dtype != np.bool_:
        mask = mask != 0
    return np.ascontiguousarray(mask).view(np.uint8)


def _encode_same_size(masks: list[np.ndarray], height: int, width: int) -> list[tuple[str, int, Box | None]]:
    """:func:`encode_masks` for masks that all have shape ``(height, width)``."""
    n, npix = len(masks), height * width
    if npix == 0:
        runs = column_runs(np.zeros((height, width), bool))
        return [(s, 0, None) for s in compress_runs(np.tile(runs, n), np.arange(n + 1) * runs.size)]
    cols = np.empty((n, width), dtype=np.uint8)
    u8 = []
    for i, m in enumerate(masks):
        u8.append(_as_u8(m))
        np.bitwise_or.reduce(u8[i], axis=0, out=cols[i])  # single-threaded (cv2.reduce is not)
    nonempty = cols.any(axis=1)
    left = np.argmax(cols, axis=1)
    right = width - 1 - np.argmax(cols[:, ::-1], axis=1)
    top, bottom = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    crops, seg_len, seg_count = [], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(nonempty).tolist():
        band = cv2.transpose(u8[i][:, left[i] : right[i] + 1])  # (w', H): the foreground columns
        rows = np.bitwise_or.reduce(band, axis=0)
        lo, hi = int(np.argmax(rows)), height - 1 - int(np.argmax(rows[::-1]))
        # each column of the box, with the zero pixel just above and below it as padding
        box = band[:, max(lo - 1, 0) : hi + 2]
        if lo == 0 or hi == height - 1:
            box = cv2.copyMakeBorder(box, 0, 0, int(lo == 0), int(hi == height - 1), cv2.BORDER_CONSTANT, value=0)
        crops.append(box.ravel())
        top[i], bottom[i] = lo, hi
        seg_len[i], seg_count[i] = hi - lo + 3, band.shape[0]
    sizes = seg_len * seg_count
    flat = np.concatenate(crops) if crops else np.zeros(0, dtype=np.uint8)
    # index of the first pixel of each new value; each column starts and ends with a 0 pad
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    offsets = np.cumsum(sizes) - sizes
    owner = np.repeat(np.arange(n), np.diff(np.searchsorted(change, np.cumsum(sizes)), prepend=0))
    col, row = np.divmod(change - offsets[owner], seg_len[owner])
    pos = (left[owner] + col) * height + top[owner] + row - 1  # column-major position in the full (H, W) frame
    # a full-height crop splits a run that wraps from the bottom of one column to the top of the
    # next into an end and a start at the same position: drop both; drop ends at H*W too
    key = owner * (npix + 1) + pos
    keep = np.ones(pos.size, dtype=bool)
    same = key[1:] == key[:-1]
    keep[1:] &= ~same
    keep[:-1] &= ~same
    pos, owner = pos[keep], owner[keep]
    # each mask's positions now alternate start, end (of foreground runs): area = sum(ends - starts)
    area = np.bincount(owner, weights=np.where(np.arange(pos.size) & 1, pos, -pos), minlength=n)
    pos, owner = pos[pos < npix], owner[pos < npix]
    per_mask = np.bincount(owner, minlength=n)
    # runs of mask i: diff of [0, its positions..., H*W]
    first = np.cumsum(per_mask + 2) - (per_mask + 2)
    bounds = np.empty(int(per_mask.sum()) + 2 * n, dtype=np.int64)
    bounds[first] = 0
    bounds[first + per_mask + 1] = npix
    bounds[np.arange(pos.size) + 2 * owner + 1] = pos
    diffs = np.diff(bounds)
    run_starts = first - np.arange(n)  # mask i has per_mask[i] + 1 runs
    run_keep = np.ones(diffs.size, dtype=bool)
    run_keep[(first + per_mask + 1)[:-1]] = False  # the step from one mask's H*W to the next 0
    runs = diffs[run_keep]
    counts = compress_runs(runs, np.append(run_starts, runs.size))
    boxes = np.stack([left, top, right + 1, bottom + 1], axis=1).astype(float).tolist()
    return [
        (c, a, tuple(b) if e else None)
        for c, a, b, e in zip(counts, area.astype(np.int64).tolist(), boxes, nonempty.tolist(), strict=True)
    ]


def compress_runs(runs: np.ndarray, bounds: np.ndarray) -> list[str]:
    """Compress the runs of several masks into COCO counts strings in one vectorised pass.

    Args:
        runs: ``(R,)`` int64 run lengths of all masks, concatenated.
        bounds: ``(N + 1,)`` int64; mask ``i`` has ``runs[bounds[i]:bounds[i + 1]]`` (at least one run).

    Returns:
        ``N`` ASCII counts strings, as ``pycocotools`` writes them.
    """
    bounds = np.asarray(bounds, dtype=np.int64)
    if runs.size == 0:
        return [""] * (bounds.size - 1)
    wide = int(runs.max()) >= 1 << 30
    runs = np.asarray(runs, dtype=np.int64 if wide else np.int32)
    values = runs.copy()
    values[3:] -= runs[1:-2]  # pycocotools: `if (i > 2) x -= cnts[i - 2]`, i counted within a mask
    head = (bounds[:-1, None] + np.arange(3)).ravel()  # the first three runs of each mask stay raw
    head = head[head < np.repeat(bounds[1:], 3)]
    values[head] = runs[head]
    magnitude = values ^ (values >> (63 if wide else 31))  # v, or -v - 1 when v < 0
    more = []  # more[g]: the value needs more than g + 1 groups (fits k groups iff magnitude < 2**(5k-1))
    for limit in _GROUP_LIMITS:
        over = magnitude >= limit
        if not over.any():
            break
        more.append(over)
    n_group = len(more) + 1
    chars = np.empty((values.size, n_group), dtype=np.uint8)
    used = np.empty((values.size, n_group), dtype=bool)
    for g in range(n_group):
        group = (values >> (5 * g)) & 0x1F
        if g < n_group - 1:
            group |= more[g].view(np.uint8) << np.uint8(5)  # 0x20: another group follows
        chars[:, g] = group + 48
        used[:, g] = True if g == 0 else more[g - 1]
    text = np.compress(used.ravel(), chars.ravel()).tobytes().decode("ascii")
    n_chars = np.ones(values.size, dtype=np.int32)
    for over in more:
        n_chars += over
    per_mask = np.add.reduceat(n_chars, bounds[:-1])
    cut = np.concatenate(([0], np.cumsum(per_mask))).tolist()
    return [text[a:b] for a, b in zip(cut[:-1], cut[1:], strict=True)]
