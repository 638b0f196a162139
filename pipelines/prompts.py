"""Segmenter prompts for the chosen athlete(s): a box, a positive point, negatives on neighbours."""

from __future__ import annotations

import numpy as np

from pipelines.config import SegmentConfig
from pipelines.segment_types import Prompt


def athlete_prompt(
    box: np.ndarray,
    detections: np.ndarray,
    own: set[int],
    cfg: SegmentConfig,
    mask_input: np.ndarray | None = None,
) -> Prompt:
    """The prompt for one athlete in one frame.

    Args:
        box: ``(4,)`` XYXY athlete box (detected or interpolated).
        detections: ``(N, 5)`` this frame's person detections.
        own: Indices of ``detections`` that are the athlete itself (never a negative).
        cfg: ``positive_point``, ``negative_points`` (max count), ``negative_margin`` (box sizes).
        mask_input: Low-resolution logits of a neighbouring frame, or ``None``.

    Returns:
        A :class:`Prompt`: the box; a positive point at the box centre when the box is elongated
        (aspect ratio >= 1.5: a straight body, standing or stretched, whose centre is on the torso;
        a squarish box of a tuck or pike may have air at its centre, so it gets none); negative
        points at the centres of the nearest other people whose boxes touch the athlete box grown by
        ``negative_margin`` and whose centres lie outside the athlete box.
    """
    pts, labels = [], []
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw, bh = max(float(box[2] - box[0]), 1e-6), max(float(box[3] - box[1]), 1e-6)
    if cfg.positive_point and max(bw / bh, bh / bw) >= 1.5:  # a straight body: its centre is the torso
        pts.append((cx, cy))
        labels.append(1)
    if cfg.negative_points > 0 and len(detections):
        mw, mh = cfg.negative_margin * (box[2] - box[0]), cfg.negative_margin * (box[3] - box[1])
        grown = (box[0] - mw, box[1] - mh, box[2] + mw, box[3] + mh)
        cand = []
        for i, d in enumerate(detections):
            if i in own:
                continue
            dx, dy = (d[0] + d[2]) / 2, (d[1] + d[3]) / 2
            touches = d[0] < grown[2] and d[2] > grown[0] and d[1] < grown[3] and d[3] > grown[1]
            inside = box[0] <= dx <= box[2] and box[1] <= dy <= box[3]
            if touches and not inside:
                cand.append((float(np.hypot(dx - cx, dy - cy)), dx, dy))
        for _, dx, dy in sorted(cand)[: cfg.negative_points]:
            pts.append((dx, dy))
            labels.append(0)
    points = np.array(pts, np.float32).reshape(-1, 2) if pts else None
    return Prompt(
        box=np.asarray(box, np.float32),
        points=points,
        labels=np.array(labels, np.int32) if pts else None,
        mask_input=mask_input,
    )
