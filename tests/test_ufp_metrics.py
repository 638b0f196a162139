"""Metrics against hand-computed values and the published AQA-7 averages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from uni_fineparser import metrics


def test_spearman_hand_values_and_ties():
    assert metrics.spearman_rho(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert metrics.spearman_rho(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): rho = 1 - 6*2/(3*8) = 0.5
    assert metrics.spearman_rho(np.array([1.0, 2, 3]), np.array([5.0, 9, 7])) == pytest.approx(0.5)
    assert metrics.rankdata(np.array([3.0, 1, 3, 2])).tolist() == [3.5, 1.0, 3.5, 2.0]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)
    assert metrics.spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert math.isnan(metrics.spearman_rho(np.array([1.0, 1.0]), np.array([1.0, 2.0])))


def test_relative_l2_uses_split_range_x100():
    true = np.array([0.0, 50.0, 104.4])
    pred = np.array([10.44, 50.0, 104.4])
    # only the first is off, by 10% of the range: 100 * (0.1**2) / 3
    assert metrics.relative_l2(pred, true) == pytest.approx(100 * 0.01 / 3)
    assert metrics.relative_l2(pred, true, score_range=10.44) == pytest.approx(100 / 3)


def test_fisher_z_mean_reproduces_published_aqa7_averages():
    uni = [0.9180, 0.8051, 0.7614, 0.6639, 0.9407, 0.9605]
    fineparser = [0.8645, 0.7429, 0.4615, 0.5867, 0.9158, 0.9112]
    usdl = [0.8099, 0.7570, 0.6538, 0.7109, 0.9166, 0.8878]
    assert round(metrics.fisher_z_mean(uni), 4) == 0.8773
    assert round(metrics.fisher_z_mean(fineparser), 4) == 0.7967
    assert round(metrics.fisher_z_mean(usdl), 4) == 0.8102
    assert metrics.fisher_z_mean([0.5, 0.5]) == pytest.approx(0.5)


def test_segment_iou_and_aiou():
    true = np.array([[10, 30], [10, 30], [10, 30], [0, 0]])
    pred = np.array([[10, 30], [20, 40], [40, 50], [0, 0]])
    iou = metrics.segment_iou(true, pred)
    assert iou.tolist() == pytest.approx([1.0, 10 / 30, 0.0, 0.0])  # zero-length: 0, as TSA/FineParser
    assert metrics.aiou(iou, 0.5) == 0.25
    assert metrics.aiou(iou, 0.75) == 0.25
    assert math.isnan(metrics.aiou(np.array([]), 0.5))


def test_mask_iou_mean_over_clips_skipping_empty():
    assert metrics.mask_iou(np.array([5, 0, 3]), np.array([10, 0, 3])) == pytest.approx(0.75)


def test_score_report_keys():
    r = metrics.score_report(np.array([1.0, 2, 3]), np.array([1.0, 2, 4]))
    assert r["n"] == 3 and r["rho"] == pytest.approx(1.0) and r["l2"] == pytest.approx(1 / 3)
