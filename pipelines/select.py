"""Choose the judged athlete(s) from per-frame person detections (pure numpy).

1. **Link** detections over time into tracks: greedy matching, best affinity first, where
   affinity = IoU + 0.5 * max(0, 1 - centre distance / (link_dist * box diagonal)); a track
   survives ``max_age`` frames without a match, so a few missed detections do not break it.
2. **Stitch** tracks into chains: a track that starts at most ``max_gap`` frames after another
   ends, near where it ended or where it was heading at its last velocity (centre within
   ``stitch_dist`` box diagonals: the position relative to the previous choice), continues it,
   because a detector loses a diver mid-somersault and finds them again as a "new" person, and
   fast motion breaks the linking.
3. **Score** each chain with cues that single out the performer in a diving, vault or skiing
   clip, each normalised to [0, 1] over the clip's chains:
   ``size`` (median box height / frame height, relative to the largest chain), ``motion``
   (extent of the centre's path, 5th-95th percentile, relative to the frame, relative to the
   most moving chain), ``shape`` (spread of the box aspect ratio: twists and somersaults change
   it; standing judges do not), ``persistence`` (share of frames seen) and ``confidence``.
   Chains shorter than ``min_track_len`` observations are not candidates. A chain whose median
   height is at least ``min_rel_height`` of the frame is one on its size alone; a smaller one
   (down to ``small_min_rel_height``) only if its centre travels at least ``small_min_travel``
   of its own heights, in scene coordinates: the crowd and far-away officials stay put, a skier
   in a wide 320x240 shot or a 10 m diver filmed from afar crosses the frame.
4. **Pick** the best-scoring chain; synchronized events add the best other chain that shares
   at least ``sync_overlap`` of its frames with the first and moves at least ``sync_min_motion``
   as far (synchronized divers fly together; a judge beside them does not). When a chosen
   athlete is under ``min_rel_height`` the choice rests on motion alone, so the selection asks
   for a review (:data:`SMALL_ATHLETE`; the run loop flags every frame of the sample with it);
   so does a synchronized event where only one athlete is found (:data:`SYNC_PARTNER_MISSING`).

Scores and weights live in :class:`pipelines.config.SelectConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.config import SelectConfig

SMALL_ATHLETE = "athlete small in frame (check the choice)"  # flag reason: chosen under min_rel_height
SYNC_PARTNER_MISSING = "synchronized event but one athlete found"  # flag reason: the partner is not chosen


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
        notes: What went wrong, in words (no athlete found, a synchronized partner missing).
        review: Flag reasons (fixed phrases, e.g. :data:`SMALL_ATHLETE`) that every frame of the
            sample gets, so a person checks the choice.
    """

    boxes: np.ndarray
    det_idx: np.ndarray
    scores: np.ndarray
    candidates: int
    notes: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)


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


def _predict(track: dict[str, list], t: int, span: int = 3) -> np.ndarray:
    """Where a track's box should be at frame ``t``: its last box moved on at the mean velocity of its last
    ``span`` steps (its last box when it has one). Matching against it, not the last box, keeps two people
    who cross (a vault run-up past a coach, skiers passing) on their own tracks instead of swapping."""
    frames, boxes = track["frames"][-span - 1 :], track["boxes"][-span - 1 :]
    if len(frames) < 2:
        return boxes[-1]
    v = (boxes[-1] - boxes[0]) / float(frames[-1] - frames[0])
    return boxes[-1] + v * float(t - frames[-1])


def link_tracks(detections: Sequence[np.ndarray], cfg: SelectConfig) -> list[Track]:
    """Link per-frame detections into tracks, matching each to where a track is heading (:func:`_predict`).

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
            last = np.array([_predict(tracks[i], t) for i in active], np.float32)
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


def score_tracks(
    tracks: Sequence[Track],
    n_frames: int,
    frame_hw: tuple[int, int],
    cfg: SelectConfig,
    camera: np.ndarray | None = None,
) -> np.ndarray:
    """Selection score of each track (higher = more likely the judged athlete); -inf for non-candidates.

    A candidate has ``min_track_len`` observations (or the whole clip) and a median height of at
    least ``min_rel_height`` of the frame, or of at least ``small_min_rel_height`` when its centre
    :func:`travels <travel>` ``small_min_travel`` of its heights. ``camera``: see :func:`motion_extent`.
    """
    h, w = frame_hw
    feats = np.zeros((len(tracks), 5))
    ok = np.zeros(len(tracks), bool)
    for i, tr in enumerate(tracks):
        heights = tr.boxes[:, 3] - tr.boxes[:, 1]
        aspect = np.log((tr.boxes[:, 2] - tr.boxes[:, 0] + 1) / (heights + 1))
        feats[i] = [
            np.median(heights) / h,
            motion_extent(tr, frame_hw, camera),
            float(np.std(aspect)),
            len(tr.frames) / max(n_frames, 1),
            float(np.mean(tr.conf)),
        ]
        big = feats[i, 0] >= cfg.min_rel_height
        small_mover = feats[i, 0] >= cfg.small_min_rel_height and travel(tr, camera) >= cfg.small_min_travel
        ok[i] = len(tr.frames) >= min(cfg.min_track_len, n_frames) and (big or small_mover)
    if not ok.any():
        return np.full(len(tracks), -np.inf)
    norm = feats.copy()
    for j in range(3):  # size, motion, shape: relative to the best candidate
        top = feats[ok, j].max()
        norm[:, j] = feats[:, j] / top if top > 0 else 0.0
    weights = np.array([cfg.w_size, cfg.w_motion, cfg.w_shape, cfg.w_persistence, cfg.w_confidence])
    return np.where(ok, norm @ weights, -np.inf)


def motion_extent(track: Track, frame_hw: tuple[int, int], camera: np.ndarray | None = None) -> float:
    """How far the track's centre travels: 5th-95th percentile extent over the frame size, larger axis.

    ``camera``: ``(T, 2)`` cumulative background shift ``(dx, dy)`` per clip frame
    (:class:`pipelines.camera.CameraPath`); the path is then measured in scene coordinates, so a
    diver the camera follows still travels and a bystander the camera sweeps past does not.
    """
    c = _centre(track.boxes)
    if camera is not None:
        c = c - camera[track.frames]
    extent = (np.percentile(c, 95, axis=0) - np.percentile(c, 5, axis=0)) / np.array([frame_hw[1], frame_hw[0]])
    return float(np.max(extent))


def travel(track: Track, camera: np.ndarray | None = None) -> float:
    """How far the track's centre travels in its own median box heights: the 5th-95th percentile
    extent in pixels, larger axis, in scene coordinates with ``camera`` (see :func:`motion_extent`)."""
    height = float(np.median(track.boxes[:, 3] - track.boxes[:, 1]))
    return motion_extent(track, (1, 1), camera) / max(height, 1.0)  # a (1, 1) frame: the extent in pixels


def _heading(chain: Sequence[Track], gap: int, span: int = 5) -> np.ndarray:
    """Where a chain's centre would be ``gap`` frames after its last box, at the velocity of its last ``span`` boxes."""
    frames = np.concatenate([t.frames for t in chain])[-span:]
    c = _centre(np.concatenate([t.boxes for t in chain])[-span:])
    if len(frames) < 2:
        return c[-1]
    return c[-1] + (c[-1] - c[0]) / (frames[-1] - frames[0]) * gap


def stitch_tracks(tracks: Sequence[Track], cfg: SelectConfig) -> list[Track]:
    """Join tracks that continue one another into longer tracks ("chains").

    Tracks are visited by start frame; each joins the chain whose last box ends at most
    ``max_gap`` frames before it starts and lies nearest to its first box, within ``stitch_dist``
    box diagonals of that last box, measured from where the chain ended or from where it was
    heading (its last box moved on at the velocity of its last few boxes: a 10 m diver falls
    several box diagonals while the detector misses them); otherwise it starts a chain. A
    detector that loses a diver mid-somersault and finds them again (or links fast motion
    poorly) leaves fragments that this puts together before any scoring, so short fragments are
    not dropped as non-candidates.
    """
    chains: list[list[Track]] = []
    for tr in sorted(tracks, key=lambda t: int(t.frames[0])):
        best, best_d = None, np.inf
        for chain in chains:
            last = chain[-1]
            gap = int(tr.frames[0] - last.frames[-1])
            if not 0 < gap <= cfg.max_gap:
                continue
            end = _centre(last.boxes[-1])
            off = np.minimum(  # from where the chain ended, or from where it was heading
                np.linalg.norm(_centre(tr.boxes[0]) - end), np.linalg.norm(_centre(tr.boxes[0]) - _heading(chain, gap))
            )
            d = float(off / (_diag(last.boxes[-1]) + 1e-9))
            if d <= cfg.stitch_dist and d < best_d:
                best, best_d = chain, d
        if best is None:
            chains.append([tr])
        else:
            best.append(tr)
    return [
        Track(*(np.concatenate([getattr(t, f) for t in chain]) for f in ("frames", "boxes", "conf", "det_idx")))
        for chain in chains
    ]


def select_athletes(
    detections: Sequence[np.ndarray],
    frame_hw: tuple[int, int],
    cfg: SelectConfig,
    *,
    synchronized: bool = False,
    camera: np.ndarray | None = None,
) -> Selection:
    """Choose the judged athlete (two for synchronized events) from a clip's detections.

    Args:
        detections: Per frame an ``(N, 5)`` array ``[x1, y1, x2, y2, conf]``.
        frame_hw: ``(H, W)`` of the frames.
        cfg: Thresholds and cue weights.
        synchronized: Keep two athletes (synchronized diving).
        camera: ``(T, 2)`` cumulative background shift per frame, or ``None`` (a still camera);
            used for the motion cue when ``cfg.camera_motion``.

    Returns:
        A :class:`Selection` with K = 0, 1 or 2 athletes.
    """
    n = len(detections)
    chains = stitch_tracks(link_tracks(detections, cfg), cfg)
    camera = camera if cfg.camera_motion else None
    scores = score_tracks(chains, n, frame_hw, cfg, camera)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])]
    picked = order[:1]
    if synchronized and order:  # the partner shares the clip with the first athlete and moves like them
        first = set(chains[order[0]].frames.tolist())
        moves = cfg.sync_min_motion * motion_extent(chains[order[0]], frame_hw, camera)
        partners = [
            i
            for i in order[1:]
            if len(first & set(chains[i].frames.tolist())) >= cfg.sync_overlap * len(chains[i].frames)
            and motion_extent(chains[i], frame_hw, camera) >= moves
        ]
        picked += partners[:1]
    boxes = np.full((len(picked), n, 4), np.nan, np.float32)
    det_idx = np.full((len(picked), n), -1, int)
    for k, i in enumerate(picked):
        boxes[k, chains[i].frames] = chains[i].boxes
        det_idx[k, chains[i].frames] = chains[i].det_idx
    notes = [] if picked else ["no person track qualifies as the athlete"]
    if synchronized and len(picked) < 2:
        notes.append("synchronized event but only one athlete found")
    small = [
        i for i in picked if np.median(chains[i].boxes[:, 3] - chains[i].boxes[:, 1]) / frame_hw[0] < cfg.min_rel_height
    ]
    review = [SMALL_ATHLETE] if small else []  # chosen on motion alone: a person checks it
    if synchronized and len(picked) == 1:  # the second diver has no mask on any frame: a person adds it
        review.append(SYNC_PARTNER_MISSING)
    return Selection(boxes, det_idx, scores[picked], int(np.isfinite(scores).sum()), notes, review)
