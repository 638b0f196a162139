"""Evaluation metrics, numpy only.

Definitions (also in docs/training.md):

* Spearman rho: Pearson correlation of the average ranks (ties share their mean rank), as
  ``scipy.stats.spearmanr``.
* R-l2 x100: ``100 * mean(((y_hat - y) / (y_max - y_min))**2)`` with the range of the split's
  true scores (the literature's choice; 104.4 on FineDiving's test split).
* Fisher-z mean of per-class rhos (AQA-7): ``tanh(mean(artanh(rho_k)))``.
* AIoU@d: share of clips whose 1-D IoU between the true and predicted middle segment
  ``[t1, t2]`` (sampled-frame index space, continuous IoU as in TSA's ``segment_iou``) is >= d.
* Mask IoU: intersection over union of attention (> 0.5) and human masks, summed over all
  frames of a clip, averaged over clips.
"""

from __future__ import annotations

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of a 1-D array."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.r_[True, xs[1:] != xs[:-1], True]
    starts = np.flatnonzero(boundaries)
    ranks_sorted = np.empty(len(x))
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        ranks_sorted[lo:hi] = (lo + hi + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = ranks_sorted
    return ranks


def spearman_rho(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays; NaN when fewer than 2 values, one is constant, or a
    value is NaN/inf (as ``scipy.stats.spearmanr``: a diverged model's NaN predictions must not rank
    as the largest scores and yield a finite rho that could pick ``best.pt``)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {pred.shape} and {true.shape}")
    if len(pred) < 2 or not (np.isfinite(pred).all() and np.isfinite(true).all()):
        return float("nan")
    a, b = rankdata(pred) - (len(pred) + 1) / 2, rankdata(true) - (len(true) + 1) / 2
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def relative_l2(pred: np.ndarray, true: np.ndarray, score_range: float | None = None) -> float:
    """R-l2 x100: ``100 * mean(((pred - true) / range)**2)``; ``range`` defaults to ``max(true) - min(true)``."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(true) == 0:
        return float("nan")
    rng = float(true.max() - true.min()) if score_range is None else float(score_range)
    if rng <= 0:
        return float("nan")
    return float(100.0 * np.mean(((pred - true) / rng) ** 2))


def fisher_z_mean(rhos: list[float] | np.ndarray) -> float:
    """``tanh(mean(artanh(rho)))`` over the classes (rho clipped to +-(1 - 1e-12))."""
    r = np.clip(np.asarray(rhos, dtype=np.float64), -1 + 1e-12, 1 - 1e-12)
    return float(np.tanh(np.arctanh(r).mean()))


def segment_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """1-D IoU of ``(n, 2)`` segments ``[start, end]`` (continuous: length = end - start); ``(n,)``.

    As ``segment_iou`` of TSA/FineParser (``inter / (union + eps)``): two zero-length segments score 0.
    """
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    inter = np.clip(np.minimum(true[:, 1], pred[:, 1]) - np.maximum(true[:, 0], pred[:, 0]), 0, None)
    union = (true[:, 1] - true[:, 0]) + (pred[:, 1] - pred[:, 0]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def aiou(ious: np.ndarray, threshold: float) -> float:
    """Share of clips whose segment IoU is at least ``threshold``; NaN for no clips."""
    ious = np.asarray(ious, dtype=np.float64)
    return float((ious >= threshold).mean()) if len(ious) else float("nan")


def mask_iou(intersections: np.ndarray, unions: np.ndarray) -> float:
    """Mean over clips of per-clip IoU (``intersection / union`` summed over frames); clips with an empty union are skipped."""
    i, u = np.asarray(intersections, dtype=np.float64), np.asarray(unions, dtype=np.float64)
    keep = u > 0
    return float((i[keep] / u[keep]).mean()) if keep.any() else float("nan")


def score_report(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """``{"rho", "rl2", "l2", "n"}`` for one split (R-l2 x100 over the split's true-score range)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return {
        "rho": spearman_rho(pred, true),
        "rl2": relative_l2(pred, true),
        "l2": float(np.mean((pred - true) ** 2)) if len(true) else float("nan"),
        "n": int(len(true)),
    }
