"""Temporal repair: prompts for frames the detector missed, and masks that jump.

* :func:`fill_gaps` linearly interpolates an athlete's box across gaps of at most
  ``max_interp_gap`` frames between two detections (a diver lost mid-somersault or in the
  splash). Frames before the first / after the last detection, or in longer gaps, get no box.
Reasons are fixed phrases (no numbers or paths), so ``hmtools stats`` can count them.

* :func:`jump_reason` compares a mask with the previous frame's mask of the same athlete:
  area changing by more than ``jump_area_ratio`` times, or a centre-aligned IoU below
  ``jump_iou`` (aligned, so fast but rigid motion is not a jump), is a jump.
* :func:`box_reason` checks a mask against its prompt box: mostly outside the box (it leaked
  onto water, board or crowd) or filling under ``min_box_fill`` of it.

The run loop (:mod:`pipelines.run`) re-prompts a frame whose box was interpolated or whose mask
jumped, with the previous frame's low-resolution logits as a mask prompt, keeps the result that
is consistent, and flags the frame when neither is.
"""

from __future__ import annotations

import numpy as np

from pipelines.config import FlagConfig, RepairConfig

DETECTED, INTERPOLATED, MISSING = 0, 1, 2
"""Box provenance codes returned by :func:`fill_gaps`."""


def fill_gaps(boxes: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate missing boxes of one athlete.

    Args:
        boxes: ``(T, 4)`` XYXY, NaN rows where the athlete was not detected.
        max_gap: Longest run of missing frames that is filled.

    Returns:
        ``(boxes (T, 4) float32 with filled gaps, provenance (T,) int8 of DETECTED/INTERPOLATED/MISSING)``.
    """
    out = boxes.astype(np.float32).copy()
    seen = ~np.isnan(out[:, 0])
    kind = np.where(seen, DETECTED, MISSING).astype(np.int8)
    idx = np.flatnonzero(seen)
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if 1 < b - a <= max_gap + 1:
            w = (np.arange(a + 1, b) - a) / (b - a)
            out[a + 1 : b] = (1 - w)[:, None] * out[a] + w[:, None] * out[b]
            kind[a + 1 : b] = INTERPOLATED
    return out, kind


def _crop(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def aligned_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``(H, W)`` bool masks with their bounding boxes centred on each other.

    Each mask is cropped to its bounding box and both crops are centred in a common canvas, so
    translation does not count; shape and size do. Two empty masks give 1, one empty gives 0.
    """
    ca, cb = _crop(a), _crop(b)
    if ca is None or cb is None:
        return float(ca is None and cb is None)
    h, w = max(ca.shape[0], cb.shape[0]), max(ca.shape[1], cb.shape[1])
    pa, pb = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for src, dst in ((ca, pa), (cb, pb)):
        y, x = (h - src.shape[0]) // 2, (w - src.shape[1]) // 2
        dst[y : y + src.shape[0], x : x + src.shape[1]] = src
    union = np.count_nonzero(pa | pb)
    return float(np.count_nonzero(pa & pb)) / union if union else 1.0


def jump_reason(prev: np.ndarray | None, mask: np.ndarray, cfg: RepairConfig) -> str | None:
    """Why ``mask`` is inconsistent with the previous frame's mask of the same athlete, or ``None``."""
    if prev is None:
        return None
    pa, ma = int(np.count_nonzero(prev)), int(np.count_nonzero(mask))
    if pa == 0:
        return None
    if ma == 0:
        return "mask vanished since the previous frame"
    ratio = max(pa, ma) / min(pa, ma)
    if ratio > cfg.jump_area_ratio:
        return "mask area jumped from the previous frame"
    iou = aligned_iou(prev, mask)
    if iou < cfg.jump_iou:
        return "mask shape jumped from the previous frame"
    return None


def box_reason(mask: np.ndarray, box: np.ndarray, cfg: FlagConfig) -> str | None:
    """Why ``mask`` disagrees with its prompt ``box`` (XYXY), or ``None``."""
    h, w = mask.shape
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    ex1, ey1 = int(max(0, np.floor(x1 - 0.15 * bw))), int(max(0, np.floor(y1 - 0.15 * bh)))
    ex2, ey2 = int(min(w, np.ceil(x2 + 0.15 * bw))), int(min(h, np.ceil(y2 + 0.15 * bh)))
    total = int(np.count_nonzero(mask))
    if total == 0:
        return "empty mask inside the athlete box"
    inside = int(np.count_nonzero(mask[ey1:ey2, ex1:ex2]))
    if inside < 0.7 * total:
        return "mask leaks outside the athlete box"
    fill = inside / max(bw * bh, 1.0)
    if fill < cfg.min_box_fill:
        return "mask fills little of the athlete box"
    return None
