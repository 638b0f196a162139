"""Propagate a corrected mask to neighbouring frames by re-prompting SAM frame by frame.

From the corrected mask on frame t, frame t±1 is prompted with the mask's box (padded) and one
positive point at the deepest interior pixel of each large connected part (both divers of a
synchronised dive get a point), then t±2 from that answer, and so on. The result is a preview: the
caller shows it and saves it only when the annotator says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from annotator_app.backend import Prompt, SegmentBackend


def prompt_from_mask(mask: np.ndarray, pad: float = 0.08, max_parts: int = 2) -> Prompt:
    """A SAM prompt that re-finds the object of ``mask`` (``(H, W)`` bool, not empty) on a
    neighbouring frame: its XYXY box padded by ``pad`` of its size, clipped to the frame, and one
    positive point per connected part (the ``max_parts`` largest parts over 5 % of the largest)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    px, py = pad * (x2 - x1), pad * (y2 - y1)
    box = np.array([max(0, x1 - px), max(0, y1 - py), min(w, x2 + px), min(h, y2 + py)], np.float32)
    parts, n = ndimage.label(mask)
    sizes = np.bincount(parts.ravel())[1:]
    order = np.argsort(sizes)[::-1][:max_parts]
    points = []
    for p in order:
        if sizes[p] < 0.05 * sizes[order[0]]:
            continue
        depth = ndimage.distance_transform_edt(parts == p + 1)
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        points.append((float(x), float(y)))
    return Prompt(
        points=np.asarray(points, np.float32), labels=np.ones(len(points), np.int32), box=box, mask_input=None
    )


def propagate(
    backend: SegmentBackend,
    keys: Sequence[str],
    loaders: Sequence[Callable[[], np.ndarray]],
    start_mask: np.ndarray,
    min_area: int = 16,
) -> tuple[dict[int, np.ndarray], dict[int, float], str]:
    """Run the chain over ``keys`` (the frames in propagation order) starting from ``start_mask``.

    Returns:
        ``({position in keys: (H, W) bool mask}, {position: SAM score}, note)``; the chain stops
        early (``note`` says where) when the object is lost: its mask under ``min_area`` pixels, or
        under half the start mask's area when that is smaller (a small athlete far away).
    """
    masks: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    backend.prefetch(list(zip(keys, loaders, strict=True)))
    area = int(start_mask.sum())
    if area == 0:
        return masks, scores, "the mask is empty"
    lost_below = min(min_area, (area + 1) // 2)
    current = start_mask
    for pos, (key, load) in enumerate(zip(keys, loaders, strict=True)):
        pred = backend.predict(key, load, prompt_from_mask(current))
        if int(pred.mask.sum()) < lost_below:
            return masks, scores, f"stopped at {key}: the athlete was lost"
        masks[pos], scores[pos] = pred.mask, pred.score
        current = pred.mask
    return masks, scores, ""
