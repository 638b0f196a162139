"""Athlete selection on synthetic scenes with distractors."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import SelectConfig
from pipelines.select import SMALL_ATHLETE, SYNC_PARTNER_MISSING, box_iou, link_tracks, select_athletes
from tests._pipeline_fixtures import H, W, scene

CFG = SelectConfig()


def _hit_rate(sel_boxes: np.ndarray, truth: np.ndarray) -> float:
    ok = ~np.isnan(sel_boxes[:, 0])
    ious = np.array([box_iou(sel_boxes[t : t + 1], truth[t : t + 1])[0, 0] for t in np.flatnonzero(ok)])
    return float((ious > 0.7).sum()) / len(truth)


@pytest.mark.parametrize(
    "kw",
    [
        {"judges": True},
        {"crowd": True},
        {"waiting": True},
        {"judges": True, "crowd": True, "waiting": True},
    ],
)
def test_picks_the_moving_athlete_among_distractors(kw) -> None:
    dets, truth = scene(**kw)
    sel = select_athletes(dets, (H, W), CFG)
    assert sel.boxes.shape == (1, 40, 4)
    assert _hit_rate(sel.boxes[0], truth[0]) == 1.0


def test_a_crowd_alone_gives_no_athlete() -> None:
    # only the crowd is left: its boxes are all below min_rel_height and stay put, so nobody is chosen
    dets, _ = scene(crowd=True)
    dets = [d[(d[:, 3] - d[:, 1]) < 60] for d in dets]
    sel = select_athletes(dets, (H, W), CFG)
    assert sel.boxes.shape[0] == 0 and sel.notes


def test_missed_detections_are_stitched_into_one_athlete() -> None:
    dropped = set(range(14, 22))  # lost mid-somersault for 8 frames
    dets, truth = scene(judges=True, waiting=True, drop_frames=dropped)
    sel = select_athletes(dets, (H, W), CFG)
    seen = ~np.isnan(sel.boxes[0, :, 0])
    assert not seen[sorted(dropped)].any()
    assert seen.sum() == 40 - len(dropped)
    assert sel.det_idx[0, 0] >= 0 and sel.det_idx[0, 15] == -1
    assert _hit_rate(sel.boxes[0], truth[0]) == pytest.approx((40 - len(dropped)) / 40)


def test_synchronized_keeps_both_divers() -> None:
    dets, truth = scene(sync=True, judges=True, waiting=True)
    sel = select_athletes(dets, (H, W), CFG, synchronized=True)
    assert sel.boxes.shape[0] == 2
    found = sorted(float(np.nanmean(b[:, 0])) for b in sel.boxes)
    want = sorted(float(b[:, 0].mean()) for b in truth)
    assert np.allclose(found, want, atol=5)
    single = select_athletes(dets, (H, W), CFG, synchronized=False)
    assert single.boxes.shape[0] == 1


def test_link_tracks_keeps_identities_through_a_crossing() -> None:
    a = [
        np.array([[100 + 10 * t, 100, 160 + 10 * t, 260, 0.9], [500 - 10 * t, 100, 560 - 10 * t, 260, 0.9]], np.float32)
        for t in range(30)
    ]
    tracks = link_tracks(a, CFG)
    assert len(tracks) == 2 and all(len(tr.frames) == 30 for tr in tracks)
    starts = sorted(float(tr.boxes[0, 0]) for tr in tracks)
    assert starts == [100.0, 500.0]


def test_fast_athlete_fragments_are_stitched_before_scoring() -> None:
    # a vaulter crossing the frame 0.8 box diagonals per frame: no two boxes overlap, so linking
    # leaves six one-frame tracks; only stitching makes them a candidate against the judges
    rng = np.random.default_rng(1)
    judges = [np.array([1150, 420, 1250, 700]), np.array([20, 430, 120, 700])]
    dets = []
    for t in range(6):
        run = np.array([150 + 180 * t, 300, 250 + 180 * t, 500, 0.8])
        rows = [run, *(np.r_[j + rng.normal(0, 2, 4), 0.9] for j in judges)]
        dets.append(np.array(rows, np.float32))
    assert len(link_tracks(dets, CFG)) == 8  # 6 fragments + 2 judges
    sel = select_athletes(dets, (H, W), CFG)
    assert np.allclose(sel.boxes[0, :, 0], [150 + 180 * t for t in range(6)])


def test_synchronized_never_takes_a_judge_as_the_partner() -> None:
    # the partner is hidden behind the first diver all clip long: only the judges are left
    dets, _ = scene(judges=True, waiting=True)
    sel = select_athletes(dets, (H, W), CFG, synchronized=True)
    assert sel.boxes.shape[0] == 1 and "only one athlete" in sel.notes[0]
    assert sel.review == [SYNC_PARTNER_MISSING]  # every frame gets flagged: a person adds the partner
    assert select_athletes(dets, (H, W), CFG).review == []  # one athlete is all an individual event needs


def test_a_far_away_10m_diver_below_min_rel_height_beats_the_close_judges() -> None:
    # filmed from far away: a 20 px diver (under 3% of 720 px) falls past two 280 px judges
    dets, truth = scene(judges=True)
    small = truth[0].copy()
    c, half = (small[:, :2] + small[:, 2:]) / 2, (small[:, 2:] - small[:, :2]) / 2 * 0.14
    small = np.c_[c - half, c + half]
    assert np.median(small[:, 3] - small[:, 1]) / H < CFG.min_rel_height
    dets = [
        np.r_[d[np.abs(d[:, 4] - 0.85) > 1e-6], np.r_[small[t], 0.5][None]].astype(np.float32)
        for t, d in enumerate(dets)
    ]
    sel = select_athletes(dets, (H, W), CFG)
    assert sel.boxes.shape[0] == 1
    assert _hit_rate(sel.boxes[0], small) == 1.0
    assert sel.review == [SMALL_ATHLETE]


def test_a_normal_dive_is_not_flagged_and_small_movers_do_not_win() -> None:
    dets, truth = scene(judges=True, crowd=True, waiting=True)
    for t, d in enumerate(dets):  # a 20 px spectator walking along the far stands
        dets[t] = np.r_[d, [[40 + 30 * t, 60, 50 + 30 * t, 80, 0.8]]].astype(np.float32)
    sel = select_athletes(dets, (H, W), CFG)
    assert _hit_rate(sel.boxes[0], truth[0]) == 1.0
    assert sel.review == []
