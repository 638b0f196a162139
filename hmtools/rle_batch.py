"""Encode many binary masks to COCO compressed RLE at once (a whole sample per call).

The store writes ~100 frames per sample. Encoding them one by one (numpy transitions over the
whole frame, then pycocotools to compress the runs) cost ~45 us per 256x455 frame, most of it
spent on pixels far from the person. :func:`encode_masks` instead

1. finds the foreground columns of every mask (one max over 8-row folds per mask, then the
   columns of all masks in a few batched calls), then
   transposes just those columns to column-major order (OpenCV) into a reused ~128 KiB buffer,
   masks one after another with a 0 byte between them;
2. finds the transitions of a full buffer with one compare and one ``flatnonzero`` (the columns
   are whole, so these are the mask's own column-major transitions, shifted by its first
   column), and takes area and XYXY box from them;
3. turns the transitions into runs and compresses all runs of all masks into counts characters
   in a few vectorised numpy passes (:func:`compress_runs`).

Everything is serial (no threads; ``cv2.reduce`` is avoided because OpenCV runs it on several).
A call of this NumPy path costs ~0.2 ms on top of its per-mask work, so it pays off from a few
masks up; :func:`hmtools.masks.encode_rle` keeps its own one-mask path.

Where ``setup.py`` could build it (a C compiler at install time), the compiled encoder
``hmtools._rle`` does the same work in one pass over each mask's rows (``hmtools/_rle.c``), about
twice as fast (~11 against ~25 µs per 256x455 diver mask); :func:`encode_masks` uses it unless
told otherwise, and both give identical results (tested against pycocotools).

The counts strings are byte-identical to ``pycocotools.mask.encode`` (checked in
``tests/test_store_encode.py``). Format reminder: runs alternate background/foreground starting
with background (0 when pixel (0, 0) is foreground), column by column; each run from the
fourth on is stored as the difference to the run two before, in 5-bit groups, low first, as
characters ``48 + bits`` (``+ 0x20`` while more groups follow); the last group's bit ``0x10``
is the sign.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hmtools.rle_codec import column_runs

try:
    from hmtools import _rle  # the compiled encoder (setup.py builds it where a C compiler is there)
except ImportError:
    _rle = None

COMPILED = _rle is not None
"""Whether the compiled encoder is there (``encode_masks(..., backend="auto")`` then uses it)."""

Box = tuple[float, float, float, float]

_CHUNK_BYTES = 1 << 17  # lay out ~128 KiB of transposed columns at a time (stays in L2 with its compare)

_GROUP_LIMITS = np.array([1 << (5 * k - 1) for k in range(1, 13)], dtype=np.int64)
"""A value ``v`` fits in ``k`` 5-bit groups iff ``v`` (or ``~v`` when negative) < ``_GROUP_LIMITS[k - 1]``."""


def encode_masks(masks: Sequence[np.ndarray], *, backend: str = "auto") -> list[tuple[str, int, Box | None]]:
    """Encode 2-D masks to COCO counts strings with their area and box, batching equal sizes.

    Args:
        masks: ``(H, W)`` arrays of any dtype and memory order (nonzero = foreground); sizes may
            differ between masks.
        backend: ``"auto"`` (the compiled encoder where it is built, else NumPy), ``"c"`` or
            ``"numpy"``.

    Returns:
        One ``(counts, area, box)`` per mask, in order: ``counts`` the ASCII compressed-RLE
        string (byte-identical to ``pycocotools.mask.encode``), ``area`` the foreground pixels,
        ``box`` the XYXY float box of the foreground or ``None`` when it is empty.

    Raises:
        ValueError: a mask is not 2-D, an unknown backend, or ``"c"`` where it is not built.
    """
    if backend not in ("auto", "c", "numpy"):
        raise ValueError(f"backend must be auto, c or numpy; got {backend!r}")
    if backend == "c" and _rle is None:
        raise ValueError("the compiled encoder hmtools._rle is not built (reinstall with a C compiler)")
    compiled = _rle is not None and backend != "numpy"
    groups: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(masks):
        if m.ndim != 2:
            raise ValueError(f"expected a 2-D (H, W) mask, got shape {m.shape}")
        groups.setdefault((int(m.shape[0]), int(m.shape[1])), []).append(i)
    out: list[tuple[str, int, Box | None]] = [("", 0, None)] * len(masks)
    for (height, width), idx in groups.items():
        if compiled and height * width:
            results = _rle.encode_many([_as_u8(masks[i]) for i in idx])
        else:
            results = _encode_same_size([masks[i] for i in idx], height, width)
        for i, result in zip(idx, results, strict=True):
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
    change, left, right, start, band = _transitions([_as_u8(m) for m in masks], height, width)
    nonempty = band > 0
    per_mask = np.diff(np.searchsorted(change, start + band + 1), prepend=0)  # even: 0-framed
    owner = np.repeat(np.arange(n), per_mask)
    pos = change - (start - left * height)[owner]  # column-major position in the (H, W) mask
    first = np.cumsum(per_mask) - per_mask  # index in pos of each mask's first transition
    # foreground runs [begin, end): area, and rows (a run that crosses columns spans them all)
    begin, end = pos[0::2], pos[1::2]
    pair_owner = owner[0::2]
    area = np.bincount(pair_owner, weights=end - begin, minlength=n).astype(np.int64)
    one_col = begin // height == (end - 1) // height
    run_top = np.where(one_col, begin % height, 0)
    run_bottom = np.where(one_col, (end - 1) % height, height - 1)
    top, bottom = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    filled = np.flatnonzero(nonempty)
    if filled.size:
        top[filled] = np.minimum.reduceat(run_top, first[filled] // 2)
        bottom[filled] = np.maximum.reduceat(run_bottom, first[filled] // 2)
    # runs of mask i: diff of [0, its transitions..., H*W] (a last transition at H*W is dropped)
    at_end = pos == npix
    per_mask -= np.bincount(owner[at_end], minlength=n)
    pos, owner = pos[~at_end], owner[~at_end]
    first = np.cumsum(per_mask + 2) - (per_mask + 2)
    bounds = np.empty(int(per_mask.sum()) + 2 * n, dtype=np.int64)
    bounds[first] = 0
    bounds[first + per_mask + 1] = npix
    bounds[np.arange(pos.size) + 2 * owner + 1] = pos
    diffs = np.diff(bounds)
    run_keep = np.ones(diffs.size, dtype=bool)
    run_keep[(first + per_mask + 1)[:-1]] = False  # the step from one mask's H*W to the next 0
    runs = diffs[run_keep]
    counts = compress_runs(runs, np.append(first - np.arange(n), runs.size))
    boxes = np.stack([left, top, right + 1, bottom + 1], axis=1).astype(float).tolist()
    return [
        (c, a, tuple(b) if e else None)
        for c, a, b, e in zip(counts, area.tolist(), boxes, nonempty.tolist(), strict=True)
    ]


def _transitions(
    u8: list[np.ndarray], height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Value changes in the sequence ``0, foreground columns of mask 0, 0, ..., 0`` (column-major).

    The foreground columns ``left..right`` of all masks are found first (one NumPy call per mask,
    the rest batched); then each mask's columns are transposed into one reused ~128 KiB buffer,
    and a full buffer is compared and ``flatnonzero``-ed while it is in cache. (Against finding the
    columns mask by mask right before its transpose: the same speed on masks still in cache, as
    when they were just drawn or decoded, ~28 µs per 256x455 diver mask in all; ~12% faster on
    masks that have left the cache.)

    Returns:
        ``(change, left, right, start, band)``: ``change`` the indices in the sequence where a
        new value begins; per mask ``(N,)`` int64 its first and last foreground column (0 when
        empty), where its columns start in the sequence and their pixel count (0 when empty).
    """
    n = len(u8)
    fold = min(height & -height, 8)  # max over `fold` rows at a time: longer rows, fewer numpy steps
    # Per mask one reduce, into a shared (N, fold * W) array; then the columns of all masks at once.
    folded = np.empty((n, fold * width), dtype=np.uint8)
    for i, m in enumerate(u8):
        np.maximum.reduce(m.reshape(height // fold, fold * width), axis=0, out=folded[i])
    colmax = np.maximum.reduce(folded.reshape(n, fold, width), axis=1)  # (N, W): column has foreground
    has = colmax.any(axis=1)
    left = np.where(has, colmax.argmax(axis=1), 0).astype(np.int64)
    right = np.where(has, width - 1 - colmax[:, ::-1].argmax(axis=1), 0).astype(np.int64)
    band = np.where(has, (right - left + 1) * height, 0).astype(np.int64)
    starts = [0] * n
    buf = np.empty(max(_CHUNK_BYTES, height * width + 2), dtype=np.uint8)
    buf[0] = 0  # every other byte in use is written below: columns, or a 0 after them
    found = []
    base, used = 0, 1  # sequence index of buf[0]; bytes of buf in use (buf[0] is a 0 separator)
    for i, (m, a, b, size) in enumerate(zip(u8, left.tolist(), (right + 1).tolist(), band.tolist(), strict=True)):
        if size == 0:  # an empty mask: its (empty) band is the separator before it
            starts[i] = base + used - 1
            continue
        if used + size + 1 > buf.size:  # flush: the separator before mask i starts the next buffer
            found.append(np.flatnonzero(buf[1:used] != buf[: used - 1]) + (base + 1))
            base, used = base + used - 1, 1
        starts[i] = base + used
        cv2.transpose(m[:, a:b], dst=buf[used : used + size].reshape(b - a, height))
        buf[used + size] = 0
        used += size + 1
    found.append(np.flatnonzero(buf[1:used] != buf[: used - 1]) + (base + 1))
    start = np.array(starts, dtype=np.int64)
    return np.concatenate(found), left, right, start, band


def compress_runs(runs: np.ndarray, bounds: np.ndarray) -> list[str]:
    """Compress the runs of several masks into COCO counts strings in one vectorised pass.

    Args:
        runs: ``(R,)`` int64 run lengths of all masks, concatenated.
        bounds: ``(N + 1,)`` int64; mask ``i`` has ``runs[bounds[i]:bounds[i + 1]]`` (at least one run).

    Returns:
        ``N`` ASCII counts strings, as ``pycocotools`` writes them.
    """
    runs, bounds = np.asarray(runs, dtype=np.int64), np.asarray(bounds, dtype=np.int64)
    if runs.size == 0:
        return [""] * (bounds.size - 1)
    wide = int(runs.max()) >= 1 << 30
    runs = runs if wide else runs.astype(np.int32)  # int32 halves the memory traffic
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
        group = ((values >> (5 * g)) & 0x1F).astype(np.uint8)
        if g < n_group - 1:
            group |= more[g].view(np.uint8) << 5  # 0x20: another group follows
        group += 48
        chars[:, g] = group
        used[:, g] = True if g == 0 else more[g - 1]
    text = np.compress(used.ravel(), chars.ravel()).tobytes().decode("ascii")
    per_mask = np.diff(bounds)  # characters per mask: one per run, plus the extra groups
    for over in more:
        per_mask += np.diff(np.searchsorted(np.flatnonzero(over), bounds))
    cut = np.concatenate(([0], np.cumsum(per_mask))).tolist()
    return [text[a:b] for a, b in zip(cut[:-1], cut[1:], strict=True)]
