"""Athlete selection and gap repair on synthetic broadcast-diving detection sequences.

Frames are FineDiving's 455x256 unless noted; boxes are what a person detector would return
(NaN rows of a track = not detected in that frame). No images are involved.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import RepairConfig, SelectConfig
from pipelines.repair import DETECTED, INTERPOLATED, MISSING, fill_gaps
from pipelines.select import SMALL_ATHLETE, box_iou, select_athletes

CFG = SelectConfig()
HW = (256, 455)
T = 60
GAP = RepairConfig().max_interp_gap


def dive(x0=200.0, y0=40.0, fall=190.0, h0=50.0, t_jump=0.3) -> np.ndarray:
    """A diver in image coordinates: stands/hurdles until ``t_jump``, then flies and falls, rotating."""
    s = np.clip((np.linspace(0, 1, T) - t_jump) / (1 - t_jump), 0, 1)
    cx, cy = x0 + 30 * s, y0 + fall * s**2
    rot = np.abs(np.sin(3 * np.pi * s))  # straight <-> tuck: the box changes shape
    w, h = h0 * (0.4 + 0.6 * rot), h0 * (1 - 0.5 * rot)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def dive_10m(x0=220.0) -> np.ndarray:
    """A 10 m platform wide shot: a ~20 px diver falling fast (7 px a frame near the water)."""
    return dive(x0=x0, y0=20, fall=220, h0=28, t_jump=0.2)


def still(box, seed=0, jitter=1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.array(box, np.float32)[None] + rng.normal(0, jitter, (T, 4))).astype(np.float32)


def missed(boxes: np.ndarray, frames) -> np.ndarray:
    out = boxes.copy()
    out[list(frames)] = np.nan
    return out


def detections(*people: tuple[np.ndarray, float], seed: int = 0) -> list[np.ndarray]:
    """Per-frame ``(N, 5)`` detections of ``(boxes (T, 4), confidence)`` people, shuffled per frame."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(T):
        rows = [np.r_[b[t], c] for b, c in people if not np.isnan(b[t, 0])]
        arr = np.array(rows, np.float32).reshape(-1, 5)
        out.append(arr[rng.permutation(len(arr))])
    return out


def who(boxes: np.ndarray, people: list[np.ndarray]) -> list[int | None]:
    """Per frame: the person a chosen box lies on (best IoU, > 0.5), -1 for nobody, None where no box."""
    out: list[int | None] = []
    for t in range(len(boxes)):
        if np.isnan(boxes[t, 0]):
            out.append(None)
            continue
        ious = [0.0 if np.isnan(p[t, 0]) else float(box_iou(boxes[t : t + 1], p[t : t + 1])[0, 0]) for p in people]
        out.append(int(np.argmax(ious)) if max(ious, default=0.0) > 0.5 else -1)
    return out


JUDGE = (150, 150, 185, 205)  # seated by the board, 55 px
BIG_JUDGE = (300, 120, 345, 210)  # closer to the camera than the diver


@pytest.mark.parametrize("judge", [JUDGE, BIG_JUDGE])
def test_a_still_confident_judge_loses_to_the_moving_diver(judge) -> None:
    diver, j = dive(), still(judge)
    sel = select_athletes(detections((diver, 0.5), (j, 0.95)), HW, CFG)
    assert sel.boxes.shape[0] == 1
    assert who(sel.boxes[0], [diver, j]) == [0] * T


@pytest.mark.parametrize("make", [dive, dive_10m], ids=["3m", "10m"])
@pytest.mark.parametrize("n_missed", [5, 8, 10])
def test_a_diver_missed_mid_somersault_stays_one_athlete(make, n_missed) -> None:
    # the detector loses the diver for 5-10 frames in the fastest part of the fall; a 10 m diver
    # moves about two box diagonals meanwhile, so the fragment after the gap is only found again
    # where the diver was heading, not where they were last seen
    diver = make()
    gap = range(38, 38 + n_missed)
    sel = select_athletes(detections((missed(diver, gap), 0.5), (still(JUDGE), 0.9)), HW, CFG)
    ids = who(sel.boxes[0], [diver])
    assert [ids[t] for t in range(T) if t not in gap] == [0] * (T - n_missed)
    filled, kind = fill_gaps(sel.boxes[0], GAP)
    assert (kind[list(gap)] == INTERPOLATED).all() and (kind[[t for t in range(T) if t not in gap]] == DETECTED).all()
    assert not np.isnan(filled).any()


def _converge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b`` slides onto ``a`` over frames 18-22, stays there to 26, and slides back by 30."""
    off = np.zeros(T)
    off[18:30] = np.interp(np.arange(18, 30), [18, 22, 26, 30], [0, 1, 1, 0])
    out = b.copy()
    out[:, [0, 2]] += (off * ((a[:, 0] - b[:, 0]) + 10))[:, None]
    return out


@pytest.mark.parametrize("merged", [False, True], ids=["two-boxes", "one-merged-box"])
def test_synchronised_divers_overlapping_then_separating_are_both_kept(merged) -> None:
    d1, d2 = dive(x0=200), _converge(dive(x0=200), dive(x0=260))
    seen1, seen2 = d1.copy(), d2.copy()
    if merged:  # the detector returns one box around both while they overlap
        ov = np.arange(21, 27)
        seen1[ov] = np.c_[np.minimum(d1[ov, :2], d2[ov, :2]), np.maximum(d1[ov, 2:], d2[ov, 2:])]
        seen2[ov] = np.nan
    j = still(BIG_JUDGE)
    sel = select_athletes(detections((seen1, 0.8), (seen2, 0.8), (j, 0.9)), HW, CFG, synchronized=True)
    assert sel.boxes.shape[0] == 2 and not sel.notes
    for t in range(T):
        got = [who(sel.boxes[k, t : t + 1], [seen1[t : t + 1], seen2[t : t + 1], j[t : t + 1]])[0] for k in range(2)]
        assert 2 not in got and -1 not in got  # never the judge, never nobody-in-particular
        assert {0, 1} <= set(got) or np.isnan(seen2[t, 0])  # both divers wherever both were detected


def test_a_synchronised_partner_missed_mid_dive_is_still_kept() -> None:
    d1, d2 = dive_10m(x0=200), dive_10m(x0=250)
    dets = detections((d1, 0.7), (missed(d2, range(38, 46)), 0.7), (still(JUDGE), 0.9))
    sel = select_athletes(dets, HW, CFG, synchronized=True)
    assert sel.boxes.shape[0] == 2 and not sel.notes
    ids = [who(sel.boxes[k], [d1, d2]) for k in range(2)]
    assert ids[0] == [0] * T
    assert ids[1] == [1 if not 38 <= t < 46 else None for t in range(T)]


def _entry(diver: np.ndarray, last: int = 47) -> np.ndarray:
    """The diver goes into the water: the box shortens from the top over 8 frames, then is gone."""
    out = diver.copy()
    for i, t in enumerate(range(last - 7, last + 1)):
        out[t, 1] = out[t, 3] - (out[t, 3] - out[t, 1]) * (1 - (i + 1) / 9)
    out[last + 1 :] = np.nan
    return out


def test_water_entry_leaves_the_last_frames_empty_not_a_stale_box() -> None:
    diver, j = _entry(dive()), still(JUDGE)
    sel = select_athletes(detections((diver, 0.7), (j, 0.9)), HW, CFG)
    assert who(sel.boxes[0], [diver, j]) == [0] * 48 + [None] * 12
    filled, kind = fill_gaps(sel.boxes[0], GAP)
    assert (kind[48:] == MISSING).all() and np.isnan(filled[48:]).all()  # flagged "no detection", empty


def test_a_camera_cut_never_hands_the_athlete_to_someone_else() -> None:
    # a cut at frame 30 to another camera: the diver and both judges jump far and change size
    diver, j1, j2 = dive(), still(JUDGE, 1), still((400, 150, 440, 215), 2)
    diver[30:] = dive(x0=380, y0=-40, fall=300, h0=80, t_jump=0.0)[30:]
    j1[30:], j2[30:] = still((20, 170, 70, 250), 3)[30:], still((40, 20, 90, 100), 4)[30:]
    sel = select_athletes(detections((diver, 0.7), (j1, 0.9), (j2, 0.9)), HW, CFG)
    ids = who(sel.boxes[0], [diver, j1, j2])
    assert set(ids) <= {0, None}  # the diver or no box (flagged), never a judge
    assert ids[:30] == [0] * 30 or ids[30:] == [0] * 30  # at least one shot is complete


def _crowd(n: int, seed: int, flicker: float = 0.0) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x, y = rng.uniform(0, 440), rng.uniform(0, 60)
        b = still((x, y, x + 8, y + 16), seed + i, 0.7)
        b[rng.random(T) < flicker] = np.nan
        out.append((b, 0.6))
    return out


@pytest.mark.parametrize("flicker", [0.0, 0.3])
def test_a_crowd_of_twenty_small_detections_does_not_win(flicker) -> None:
    diver = dive()
    sel = select_athletes(detections((diver, 0.6), *_crowd(20, 5, flicker)), HW, CFG)
    assert who(sel.boxes[0], [diver]) == [0] * T


def test_a_spectator_walking_across_the_frame_is_not_picked() -> None:
    walker = np.full((T, 4), np.nan, np.float32)
    for t in range(10, 45):
        x = 20 + (t - 10) * 12
        walker[t] = [x, 180, x + 25, 245]
    diver = dive()
    sel = select_athletes(detections((diver, 0.6), (walker, 0.9), (still(JUDGE), 0.9)), HW, CFG)
    assert who(sel.boxes[0], [diver]) == [0] * T


def test_a_twenty_pixel_10m_diver_is_found() -> None:
    diver = dive_10m()
    assert 18 < np.median(diver[:, 3] - diver[:, 1]) < 22
    sel = select_athletes(detections((diver, 0.5), (still(JUDGE), 0.9), *_crowd(10, 7)), HW, CFG)
    assert who(sel.boxes[0], [diver]) == [0] * T


@pytest.mark.parametrize("compensated", [True, False])
def test_a_camera_that_follows_the_diver(compensated) -> None:
    # the camera tilts down with a 10 m diver: the diver stays put in the image (only the box
    # shape changes) while the people on the platform slide up and out of the frame
    rng = np.random.default_rng(0)
    diver = dive(x0=220, y0=100, fall=0, h0=45, t_jump=0.2) + rng.normal(0, 2, (T, 4)).astype(np.float32)
    tilt = np.clip((np.arange(T) - 12) * 6.0, 0, None)
    others = []
    for x, y, w, h in [(60, 150, 30, 60), (380, 160, 30, 55), (300, 200, 25, 50)]:
        b = np.array([[x, y - s, x + w, y - s + h] for s in tilt], np.float32)
        b[b[:, 3] < 0] = np.nan
        others.append((b, 0.9))
    camera = np.stack([np.zeros(T), -tilt], axis=1).astype(np.float32)  # the background's shift, as CameraPath
    sel = select_athletes(detections((diver, 0.6), *others), HW, CFG, camera=camera if compensated else None)
    # in the image the bystanders travel further than the followed diver: only scene motion tells them apart
    assert (who(sel.boxes[0], [diver]) == [0] * T) is compensated


# Small athletes: AQA-7's wide ski / snowboard big air shots at 320x240, and far-away 10 m divers.
AQA7_HW = (240, 320)
SPECTATORS = [(40, 190, 53, 222), (250, 185, 263, 216), (290, 195, 302, 226)]  # ~30 px, still, in the finish area


def big_air() -> np.ndarray:
    """A ~10 px skier (4% of 240 px) down the in-run, off the kicker, spinning through the air, landing."""
    s = np.linspace(0, 1, T)
    cx, cy = 20 + 270 * s, np.interp(s, [0, 0.35, 0.55, 0.85, 1], [50, 120, 80, 150, 160])
    rot = np.abs(np.sin(4 * np.pi * np.clip((s - 0.35) / 0.5, 0, 1)))  # spins change the box shape
    w, h = 6 + 6 * rot, 11 - 4 * rot
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def test_a_tiny_skier_crossing_a_wide_shot_beats_larger_still_spectators() -> None:
    # the skier is under min_rel_height: once not a candidate at all, so a spectator was chosen
    skier = missed(big_air(), [12, 13, 30, 31, 32])  # small people flicker in and out of the detector
    assert np.nanmedian(skier[:, 3] - skier[:, 1]) / AQA7_HW[0] < CFG.min_rel_height
    people = [(still(b, i), 0.9) for i, b in enumerate(SPECTATORS)]
    sel = select_athletes(detections((skier, 0.45), *people), AQA7_HW, CFG)
    assert sel.boxes.shape[0] == 1
    ids = who(sel.boxes[0], [skier])
    assert [ids[t] for t in range(T) if not np.isnan(skier[t, 0])] == [0] * (T - 5)
    assert sel.review == [SMALL_ATHLETE]  # every frame of the sample gets flagged for a human to check


def test_a_tiny_skier_alone_is_chosen_not_no_athlete() -> None:
    # nobody reaches min_rel_height: the clip used to get no athlete; a few still specks stay out
    specks = [(still((x, 200, x + 5, 208), 9 + x), 0.5) for x in (30, 150, 280)]
    skier = big_air()
    sel = select_athletes(detections((skier, 0.45), *specks), AQA7_HW, CFG)
    assert sel.boxes.shape[0] == 1 and who(sel.boxes[0], [skier]) == [0] * T
    assert sel.review == [SMALL_ATHLETE]


def test_still_small_people_alone_still_give_no_athlete() -> None:
    specks = [(still((x, 100, x + 6, 112), x), 0.6) for x in (30, 150, 280)]
    sel = select_athletes(detections(*specks), AQA7_HW, CFG)
    assert sel.boxes.shape[0] == 0 and sel.notes and sel.review == []


def test_a_small_walker_and_a_small_crowd_never_take_a_normal_dive() -> None:
    # small people that move (a walker along the far stands, a flickering crowd whose tracks hop
    # between neighbours) become candidates too; the diver, framed by the camera, still wins
    walker = np.full((T, 4), np.nan, np.float32)
    for t in range(T):
        x = 10 + 7 * t
        walker[t] = [x, 30, x + 6, 42]  # 12 px: under min_rel_height, crossing the whole frame
    crowd = [(b, c) for b, c in _crowd(20, 11, 0.3)]
    for b, _ in crowd:
        b[:, 3] -= 4  # 12 px tall: under min_rel_height
    diver, j = dive(), still(BIG_JUDGE)
    sel = select_athletes(detections((diver, 0.5), (j, 0.95), (walker, 0.8), *crowd), HW, CFG)
    assert who(sel.boxes[0], [diver]) == [0] * T
    assert sel.review == []
