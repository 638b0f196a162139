"""Choose the judged athlete(s) from per-frame person detections (pure numpy).

1. **Link** detections over time into tracks: greedy matching, best affinity first, where
   affinity = IoU + 0.5 * max(0, 1 - centre distance / (link_dist * box diagonal)); a track
   survives ``max_age`` frames without a match, so a few missed detections do not break it.
2. **Score** each track with cues that single out the performer in a diving, vault or skiing
   clip, each normalised to [0, 1] over the clip's tracks:
   ``size`` (median box height / frame height, relative to the largest track), ``motion``
   (extent of the centre's path, 5th-95th percentile, relative to the frame, relative to the
   most moving track), ``shape`` (spread of the box aspect ratio: twists and somersaults change
   it; standing judges do not), ``persistence`` (share of frames seen) and ``confidence``.
   Tracks shorter than ``min_track_len`` observations or whose median height is under
   ``min_rel_height`` of the frame (crowd, far-away officials) are not candidates.
3. **Pick** the best-scoring track, then **stitch**: a track that starts after the chosen chain
   ends (within ``max_gap`` frames) near where it ended (centre within ``stitch_dist`` box
   diagonals), or ends just before it starts, continues it, because a detector loses a diver
   mid-somersault and finds them again as a "new" person. Synchronized events pick a second
   chain the same way among tracks that overlap the first in time and are not part of it.

Scores and weights live in :class:`pipelines.config.SelectConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.config import SelectConfig


@dataclass
class Track:
    """Detections linked over time.

    Attributes:
        frames: ``(n,)`` int frame indices, increasing.
        boxes: ``(n, 4)`` float32 XYXY pixels.
        conf: ``(n,)`` float32 detector confidences.
        det_idx: ``(n,)`` int index of each box within its frame's detections.
    """

    frames: np.ndarray
    boxes: np.ndarray
    conf: np.ndarray
    det_idx: np.ndarray


@dataclass
class Selection:
    """The chosen athlete(s) of one clip.

    Attributes:
        boxes: ``(K, T, 4)`` float32 XYXY per athlete and frame, NaN where the athlete was not detected.
        det_idx: ``(K, T)`` int index into that frame's detections, -1 where not detected.
        scores: ``(K,)`` selection score of each chosen chain.
        candidates: Number of candidate tracks considered.
    """

    boxes: np.ndarray
    det_idx: np.ndarray
    scores: np.ndarray
    candidates: int
    notes: list[str] = field(default_factory=list)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` XYXY boxes -> ``(N, M)`` float."""
    a, b = a[:, None, :4], b[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _centre(b: np.ndarray) -> np.ndarray:
    return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], axis=-1)


def _diag(b: np.ndarray) -> np.ndarray:
    return np.hypot(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])


def link_tracks(detections: Sequence[np.ndarray], cfg: SelectConfig) -> list[Track]:
    """Link per-frame detections into tracks.

    Args:
        detections: Per frame an ``(N, 5)`` array ``[x1, y1, x2, y2, conf]``.
        cfg: Linking thresholds (``link_dist``, ``min_affinity``, ``max_age``).

    Returns:
        Tracks in order of their first frame.
    """
    tracks: list[dict[str, list]] = []  # frames, boxes, conf, det
    active: list[int] = []
    for t, dets in enumerate(detections):
        dets = np.asarray(dets, np.float32).reshape(-1, 5)
        active = [i for i in active if t - tracks[i]["frames"][-1] <= cfg.max_age]
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        if active and len(dets):
            last = np.array([tracks[i]["boxes"][-1] for i in active], np.float32)
            aff = box_iou(last, dets)
            dist = np.linalg.norm(_centre(last)[:, None] - _centre(dets[:, :4])[None], axis=-1)
            aff = aff + 0.5 * np.clip(1 - dist / (cfg.link_dist * _diag(last)[:, None] + 1e-9), 0, None)
            for flat in np.argsort(-aff, axis=None, kind="stable"):
                r, c = divmod(int(flat), len(dets))
                if aff[r, c] < cfg.min_affinity:
                    break
                if r in matched_t or c in matched_d:
                    continue
                matched_t.add(r)
                matched_d.add(c)
                tr = tracks[active[r]]
                (
                    tr["frames"].append(t),
                    tr["boxes"].append(dets[c, :4]),
                    tr["conf"].append(dets[c, 4]),
                    tr["det"].append(c),
                )
        for c in range(len(dets)):
            if c not in matched_d:
                tracks.append({"frames": [t], "boxes": [dets[c, :4]], "conf": [dets[c, 4]], "det": [c]})
                active.append(len(tracks) - 1)
    return [
        Track(
            np.array(d["frames"]),
            np.array(d["boxes"], np.float32).reshape(-1, 4),
            np.array(d["conf"], np.float32),
            np.array(d["det"]),
        )
        for d in tracks
    ]


def score_tracks(tracks: Sequence[Track], n_frames: int, frame_hw: tuple[int, int], cfg: SelectConfig) -> np.ndarray:
    """Selection score of each track (higher = more likely the judged athlete); -inf for non-candidates."""
    h, w = frame_hw
    feats = np.zeros((len(tracks), 5))
    ok = np.zeros(len(tracks), bool)
    for i, tr in enumerate(tracks):
        heights = tr.boxes[:, 3] - tr.boxes[:, 1]
        c = _centre(tr.boxes)
        extent = (np.percentile(c, 95, axis=0) - np.percentile(c, 5, axis=0)) / np.array([w, h])
        aspect = np.log((tr.boxes[:, 2] - tr.boxes[:, 0] + 1) / (heights + 1))
        feats[i] = [
            np.median(heights) / h,
            float(np.max(extent)),
            float(np.std(aspect)),
            len(tr.frames) / max(n_frames, 1),
            float(np.mean(tr.conf)),
        ]
        ok[i] = len(tr.frames) >= min(cfg.min_track_len, n_frames) and feats[i, 0] >= cfg.min_rel_height
    if not ok.any():
        return np.full(len(tracks), -np.inf)
    norm = feats.copy()
    for j in range(3):  # size, motion, shape: relative to the best candidate
        top = feats[ok, j].max()
        norm[:, j] = feats[:, j] / top if top > 0 else 0.0
    weights = np.array([cfg.w_size, cfg.w_motion, cfg.w_shape, cfg.w_persistence, cfg.w_confidence])
    return np.where(ok, norm @ weights, -np.inf)


def _chain(start: int, tracks: Sequence[Track], used: set[int], cfg: SelectConfig) -> list[int]:
    """Grow a chain from track ``start`` forwards and backwards by stitching nearby tracks."""
    chain = [start]
    for forward in (True, False):
        while True:
            edge = tracks[chain[-1] if forward else chain[0]]
            t_edge = edge.frames[-1] if forward else edge.frames[0]
            b_edge = edge.boxes[-1] if forward else edge.boxes[0]
            best, best_d = None, np.inf
            for j, tr in enumerate(tracks):
                if j in used or j in chain:
                    continue
                gap = tr.frames[0] - t_edge if forward else t_edge - tr.frames[-1]
                if not 0 < gap <= cfg.max_gap:
                    continue
                d = np.linalg.norm(_centre(tr.boxes[0] if forward else tr.boxes[-1]) - _centre(b_edge)) / (
                    _diag(b_edge) + 1e-9
                )
                if d <= cfg.stitch_dist and d < best_d:
                    best, best_d = j, d
            if best is None:
                break
            chain = [*chain, best] if forward else [best, *chain]
    return chain


def select_athletes(
    detections: Sequence[np.ndarray],
    frame_hw: tuple[int, int],
    cfg: SelectConfig,
    *,
    synchronized: bool = False,
) -> Selection:
    """Choose the judged athlete (two for synchronized events) from a clip's detections.

    Args:
        detections: Per frame an ``(N, 5)`` array ``[x1, y1, x2, y2, conf]``.
        frame_hw: ``(H, W)`` of the frames.
        cfg: Thresholds and cue weights.
        synchronized: Keep two athletes (synchronized diving).

    Returns:
        A :class:`Selection` with K = 0, 1 or 2 athletes.
    """
    n = len(detections)
    tracks = link_tracks(detections, cfg)
    scores = score_tracks(tracks, n, frame_hw, cfg)
    used: set[int] = set()
    chains, chain_scores = [], []
    for _ in range(2 if synchronized else 1):
        order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i]) and int(i) not in used]
        if chains:  # the partner must share the clip with the first athlete
            first = set(np.concatenate([tracks[i].frames for i in chains[0]]).tolist())
            order = [
                i
                for i in order
                if len(first & set(tracks[i].frames.tolist())) >= cfg.sync_overlap * len(tracks[i].frames)
            ]
        if not order:
            break
        chain = _chain(order[0], tracks, used, cfg)
        used.update(chain)
        chains.append(chain)
        chain_scores.append(float(scores[order[0]]))
    boxes = np.full((len(chains), n, 4), np.nan, np.float32)
    det_idx = np.full((len(chains), n), -1, int)
    for k, chain in enumerate(chains):
        for i in chain:
            boxes[k, tracks[i].frames] = tracks[i].boxes
            det_idx[k, tracks[i].frames] = tracks[i].det_idx
    notes = [] if chains else ["no person track qualifies as the athlete"]
    if synchronized and len(chains) < 2:
        notes.append("synchronized event but only one athlete found")
    return Selection(boxes, det_idx, np.array(chain_scores), int(np.isfinite(scores).sum()), notes)
