"""Evaluation with multi-exemplar voting, each video encoded once.

``encode`` sees one video at a time, so a split is evaluated in two passes: (1) encode every
query and every exemplar it votes with, once, batched (sharded over ranks under torchrun and
gathered); (2) run the small contrastive regressor on all (query, exemplar) pairs at once. The
prediction of a query is ``mean_m(y_m + scale * delta(q, m))`` over its voters. With
``reuse_features=False`` the full pair forward runs for every pair instead (the reference
code's way, 20 video encodings per query for 10 voters); both give the same numbers.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from hmtools.schema import Sample
from uni_fineparser import metrics
from uni_fineparser.cache import ClipCache
from uni_fineparser.config import RunConfig
from uni_fineparser.data import ExemplarPool, VideoDataset, load_view, target_of
from uni_fineparser.distributed import DistInfo, gather_objects
from uni_fineparser.model import UniFineParser, attention_to_frames, decode_boundaries, step_posterior


@dataclass
class VideoResult:
    """Per-video outputs of pass 1 (CPU tensors / plain numbers)."""

    z: torch.Tensor  # (K, d) float32
    bounds_pred: list[int]  # first frame of steps 1..K-1
    bounds_true: list[int] | None  # same from the labels, None when unlabelled
    inter: float  # mask-attention intersection with the human masks (valid frames)
    union: float


@dataclass
class EvalResult:
    """Metrics of a split and one row per query."""

    metrics: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)


def autocast(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    """bf16 autocast context for ``amp == "bf16"``, else a null context."""
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _bounds(steps: torch.Tensor, k: int) -> list[int] | None:
    if bool((steps < 0).any()) or k < 2:
        return None
    return [int((steps < j).sum()) for j in range(1, k)]


def _video_results(
    model: UniFineParser, batch: dict[str, torch.Tensor], device: torch.device, amp: str
) -> list[VideoResult]:
    video = batch["video"].to(device, non_blocking=True)
    with torch.no_grad(), autocast(device, amp):
        enc = model.encode(video)
    t, size = video.shape[1], video.shape[2:4]
    bounds = decode_boundaries(step_posterior(enc.attn, t)).cpu()
    pred_mask = attention_to_frames(enc.mask_logits, t, tuple(size)).cpu() > 0.5  # (B, T, H, W)
    gt, valid = batch["masks"], batch["valid"][:, :, None, None]
    inter = ((pred_mask & gt) & valid).flatten(1).sum(1)
    union = ((pred_mask | gt) & valid).flatten(1).sum(1)
    z = enc.z.float().cpu()
    k = z.shape[1]
    return [
        VideoResult(z[i], bounds[i].tolist(), _bounds(batch["steps"][i], k), float(inter[i]), float(union[i]))
        for i in range(len(z))
    ]


def encode_all(
    model: UniFineParser,
    samples: list[Sample],
    cache: ClipCache,
    cfg: RunConfig,
    device: torch.device,
    info: DistInfo,
    batch_size: int = 8,
) -> dict[str, VideoResult]:
    """Pass 1: encode each sample once (this rank's share), gather everything on every rank."""
    mine = samples[info.rank :: info.world]
    loader = DataLoader(
        VideoDataset(mine, cache, cfg.model),
        batch_size=batch_size,
        num_workers=cfg.train.workers,
        pin_memory=device.type == "cuda",
    )
    out: dict[str, VideoResult] = {}
    for batch in loader:
        for i, res in zip(batch["index"].tolist(), _video_results(model, batch, device, cfg.train.amp), strict=True):
            out[mine[i].sample_id] = res
    merged: dict[str, VideoResult] = {}
    for part in gather_objects(info, out):
        merged.update(part)
    return merged


def _pair_deltas(
    model: UniFineParser,
    pairs: list[tuple[Sample, Sample]],
    feats: dict[str, VideoResult],
    device: torch.device,
) -> np.ndarray:
    """Pass 2: ``(P, K)`` weighted per-step deltas of all pairs, batched."""
    if not pairs:
        return np.zeros((0, model.cfg.num_steps))
    out = []
    with torch.no_grad():
        for lo in range(0, len(pairs), 4096):
            chunk = pairs[lo : lo + 4096]
            zq = torch.stack([feats[q.sample_id].z for q, _ in chunk]).to(device)
            ze = torch.stack([feats[e.sample_id].z for _, e in chunk]).to(device)
            out.append(model.regress(zq, ze).float().cpu())
    return torch.cat(out).numpy()


def _pair_deltas_uncached(
    model: UniFineParser,
    pairs: list[tuple[Sample, Sample]],
    cache: ClipCache,
    cfg: RunConfig,
    device: torch.device,
) -> np.ndarray:
    """The slow reference path: a full pair forward per (query, exemplar)."""
    m = cfg.model
    out = []
    with torch.no_grad():
        for q, e in pairs:
            vq = load_view(cache, q, m.frames, m.size, m.num_steps, None)["video"][None].to(device)
            ve = load_view(cache, e, m.frames, m.size, m.num_steps, None)["video"][None].to(device)
            with autocast(device, cfg.train.amp):
                enc = model.encode(torch.cat([vq, ve]))
            out.append(model.regress(enc.z[:1], enc.z[1:]).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, m.num_steps))


def vote(
    deltas: np.ndarray, query: Sample, voters: list[Sample], score_scale: float, using_dd: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each voter's prediction of ``query`` and the mean per-step contribution, in score units.

    Args:
        deltas: ``(M, K)`` predicted per-step differences query - voter, regression units.
        query: The query (its difficulty scales everything with ``using_dd``).
        voters: The ``M`` exemplars.
        score_scale: Target units per regression unit.
        using_dd: Targets are score/DD (:func:`uni_fineparser.data.target_of`): multiply back by the query's DD.

    Returns:
        ``(M,)`` predictions ``DD_q * (y_m + scale * sum_k delta_mk)`` (``DD_q`` = 1 without ``using_dd``)
        and ``(K,)`` contributions ``DD_q * scale * mean_m delta_mk``.
    """
    factor = float(query.difficulty) if using_dd else 1.0
    d = deltas * score_scale
    preds = (d.sum(1) + np.array([target_of(e, using_dd) for e in voters])) * factor
    return preds, d.mean(0) * factor


def evaluate_split(
    model: UniFineParser,
    queries: list[Sample],
    pool: ExemplarPool,
    cache: ClipCache,
    cfg: RunConfig,
    device: torch.device,
    info: DistInfo,
    score_scale: float,
    reuse_features: bool = True,
) -> EvalResult:
    """Predict every query by voting over ``cfg.train.voters`` same-group exemplars and score the split.

    Args:
        model: The unwrapped model (not DDP); switched to eval mode here.
        queries: Samples to score (their ``score`` is the truth).
        pool: Exemplars (the training part of train).
        cache: Packed clips holding queries and exemplars.
        cfg: Run configuration (voters, amp, workers, seed).
        device: Where to run.
        info: Rank info; every rank must call this, all ranks get the same result.
        score_scale: Target units per regression unit (targets: scores, or score/DD with ``train.using_dd``).
        reuse_features: Encode each video once (False: full pair forward per pair).

    Returns:
        Metrics ``{"rho", "rl2", "l2", "aiou_0.5", "aiou_0.75", "mask_iou", "n", "fallbacks"}`` and rows.
    """
    model.eval()
    before = pool.fallbacks
    voters = {q.sample_id: pool.voters(q, cfg.train.voters, cfg.train.seed) for q in queries}
    pairs = [(q, e) for q in queries for e in voters[q.sample_id]]
    needed = list({s.sample_id: s for s in [*queries, *(e for _, e in pairs)]}.values())
    feats = encode_all(model, needed if reuse_features else queries, cache, cfg, device, info)
    if reuse_features:
        deltas = _pair_deltas(model, pairs, feats, device)
    else:
        deltas = _pair_deltas_uncached(model, pairs, cache, cfg, device)
    rows, at = [], 0
    for q in queries:
        vs = voters[q.sample_id]
        preds, contrib = vote(deltas[at : at + len(vs)], q, vs, score_scale, cfg.train.using_dd)
        at += len(vs)
        f = feats[q.sample_id]
        row = {
            "sample_id": q.sample_id,
            "true": float(q.score or 0.0),
            "pred": float(preds.mean()),
            "voters": len(vs),
        }
        row.update({f"step{k}_contrib": float(v) for k, v in enumerate(contrib)})
        row.update({"bounds_pred": f.bounds_pred, "bounds_true": f.bounds_true})
        row.update({"mask_inter": f.inter, "mask_union": f.union})
        if f.bounds_true is not None and len(f.bounds_pred) >= 1:
            seg_t = [[f.bounds_true[0], f.bounds_true[-1]]]
            row["seg_iou"] = float(
                metrics.segment_iou(np.array(seg_t), np.array([[f.bounds_pred[0], f.bounds_pred[-1]]]))[0]
            )
        rows.append(row)
    pred = np.array([r["pred"] for r in rows])
    true = np.array([r["true"] for r in rows])
    ious = np.array([r["seg_iou"] for r in rows if "seg_iou" in r])
    out = metrics.score_report(pred, true)
    out["aiou_0.5"] = metrics.aiou(ious, 0.5)
    out["aiou_0.75"] = metrics.aiou(ious, 0.75)
    out["mask_iou"] = metrics.mask_iou(
        np.array([r["mask_inter"] for r in rows]), np.array([r["mask_union"] for r in rows])
    )
    out["fallbacks"] = pool.fallbacks - before
    return EvalResult(out, rows)
