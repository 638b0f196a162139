"""Temporal repair checks and prompt building on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import FlagConfig, RepairConfig, SegmentConfig
from pipelines.prompts import athlete_prompt
from pipelines.repair import DETECTED, INTERPOLATED, MISSING, aligned_iou, box_reason, fill_gaps, jump_reason


def _rect(h, w, y1, y2, x1, x2):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def test_fill_gaps_interpolates_short_gaps_only() -> None:
    nan = [np.nan] * 4
    boxes = np.array([[0, 0, 10, 10], nan, nan, [30, 0, 40, 10], nan, nan, nan, nan, [0, 0, 1, 1], nan], np.float32)
    out, kind = fill_gaps(boxes, max_gap=3)
    assert kind.tolist() == [
        DETECTED,
        INTERPOLATED,
        INTERPOLATED,
        DETECTED,
        MISSING,
        MISSING,
        MISSING,
        MISSING,
        DETECTED,
        MISSING,
    ]
    assert np.allclose(out[1], [10, 0, 20, 10]) and np.allclose(out[2], [20, 0, 30, 10])
    assert np.isnan(out[5]).all() and np.isnan(out[9]).all()


def test_aligned_iou_ignores_translation_not_shape() -> None:
    a = _rect(100, 100, 10, 30, 10, 20)
    assert aligned_iou(a, _rect(100, 100, 60, 80, 70, 80)) == pytest.approx(1.0)
    assert aligned_iou(a, _rect(100, 100, 10, 20, 10, 30)) == pytest.approx(100 / 300)  # 20x10 vs 10x20, centred
    assert aligned_iou(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0
    assert aligned_iou(a, np.zeros((100, 100), bool)) == 0.0


def test_jump_reasons() -> None:
    cfg = RepairConfig()
    prev = _rect(100, 100, 10, 50, 10, 30)
    assert jump_reason(None, prev, cfg) is None
    assert jump_reason(prev, _rect(100, 100, 40, 80, 50, 70), cfg) is None  # moved, same shape
    assert "area jumped" in jump_reason(prev, _rect(100, 100, 0, 100, 0, 30), cfg)
    assert "shape jumped" in jump_reason(prev, _rect(100, 100, 10, 22, 0, 66), cfg)
    assert "vanished" in jump_reason(prev, np.zeros((100, 100), bool), cfg)


def test_box_reasons() -> None:
    cfg = FlagConfig()
    box = np.array([20, 20, 60, 80], np.float32)
    assert box_reason(_rect(100, 100, 25, 75, 25, 55), box, cfg) is None
    assert "leaks outside" in box_reason(_rect(100, 100, 0, 100, 0, 100), box, cfg)
    assert "fills little" in box_reason(_rect(100, 100, 40, 45, 35, 40), box, cfg)
    assert "empty" in box_reason(np.zeros((100, 100), bool), box, cfg)


def test_prompt_puts_negatives_on_nearby_people_only() -> None:
    athlete = np.array([100, 100, 140, 200], np.float32)
    dets = np.array(
        [
            [100, 100, 140, 200, 0.9],  # the athlete itself
            [150, 110, 190, 210, 0.9],  # a judge right beside
            [600, 100, 640, 200, 0.9],  # far away
            [110, 120, 130, 150, 0.5],  # centre inside the athlete box (a part of them)
        ],
        np.float32,
    )
    p = athlete_prompt(athlete, dets, {0}, SegmentConfig())
    assert p.labels.tolist() == [1, 0]
    assert np.allclose(p.points, [[120, 150], [170, 160]])
    assert np.array_equal(p.box, athlete) and p.mask_input is None
    square = athlete_prompt(np.array([100, 100, 180, 180], np.float32), dets[:1], {0}, SegmentConfig())
    assert square.points is None  # a tuck or pike: no positive point at a centre that may be air
    none = athlete_prompt(athlete, dets, {0}, SegmentConfig(positive_point=False, negative_points=0))
    assert none.points is None and none.labels is None
