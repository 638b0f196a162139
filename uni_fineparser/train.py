"""The trainer: ``train(cfg, samples, masks, root, out) -> best checkpoint path``, read top to bottom.

Seed, device, AMP once; carve a seeded validation split from train; pack the clip cache; build
model, optimizer (backbone at ``lr * backbone_lr_factor``) and warmup+cosine schedule; resume
from ``<out>/last.pt`` if present; then per epoch: forward, losses, backward (accumulated),
clip, step, schedule; validate every ``eval_every`` epochs (best validation rho ->
``best.pt``); save ``last.pt``. At the end the test split is evaluated at the best-validation
checkpoint and ``metrics.json``, ``predictions_test.csv`` and ``curves.png`` are written.
Under torchrun every rank trains its share (DistributedSampler + DDP) and rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from hmtools.config import to_dict
from hmtools.errors import ConfigError, InputError
from hmtools.schema import Sample
from uni_fineparser import distributed, losses
from uni_fineparser.backbone import load_kinetics_weights, load_resnet18_weights, warn_random_init
from uni_fineparser.cache import build_cache
from uni_fineparser.checkpoint import load_checkpoint, save_checkpoint
from uni_fineparser.config import RunConfig, TrainConfig
from uni_fineparser.data import ExemplarPool, PairDataset, exemplar_group, split_and_scale
from uni_fineparser.distributed import all_reduce_mean, barrier, init_distributed, shutdown
from uni_fineparser.evaluate import autocast, evaluate_split
from uni_fineparser.mask_source import MaskSource
from uni_fineparser.model import PairOutput, UniFineParser, count_parameters
from uni_fineparser.report import plot_curves, write_json, write_predictions

log = logging.getLogger(__name__)


def lr_lambda(step: int, warmup: int, total: int, floor: float) -> float:
    """Multiplier of a group's peak lr at optimizer step ``step``: linear warmup from ``floor`` to 1, then
    cosine down to ``floor``. As timm's ``CosineLRScheduler`` in the reference recipe (warmup_lr_init =
    lr_min): a group whose floor is 1 keeps its lr constant."""
    if step < warmup:
        return floor + (1 - floor) * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup + cosine per optimizer step, with one absolute floor ``min_lr_ratio * lr`` for every group
    (the reference's ``lr_min``): the head warms up from the floor to ``lr`` and decays back to it; the
    backbone group, whose lr ``lr * backbone_lr_factor`` is at or below the floor (1e-4 both in the
    reference), stays constant."""
    floor_lr = t.min_lr_ratio * t.lr
    floors = [min(1.0, floor_lr / g["lr"]) if g["lr"] > 0 else 1.0 for g in optimizer.param_groups]
    warmup, total = round(t.warmup_epochs * steps_per_epoch), t.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [partial(lr_lambda, warmup=warmup, total=total, floor=f) for f in floors]
    )


RESTORED_KEYS = ("lr", "backbone_lr_factor", "weight_decay")
"""``train`` keys whose values live in the optimizer's saved state: a resumed run keeps the checkpoint's."""


def _warn_kept_optimizer_keys(ckpt: dict[str, Any], t: Any, main: bool) -> None:
    """Say when a resumed run was given another value of a :data:`RESTORED_KEYS` key: the optimizer's
    state, restored from the checkpoint, keeps the old one (a new --out starts with the new one)."""
    old = ckpt.get("config", {}).get("train", {})
    changed = [f"{k} {old[k]} -> {getattr(t, k)}" for k in RESTORED_KEYS if k in old and old[k] != getattr(t, k)]
    if changed and main:
        log.warning(
            "resuming keeps the checkpoint's optimizer settings, so these changes do not apply: %s; "
            "train into a new --out to use them",
            ", ".join(changed),
        )


def make_optimizer(model: UniFineParser, cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam/AdamW with two groups: pretrained streams (lower lr) and everything new (incl. mask attention)."""
    t = cfg.train
    pretrained = ("backbone.", "static.") if t.static_weights else ("backbone.",)
    slow, fast = [], []
    for name, p in model.named_parameters():
        is_pretrained = name.startswith(pretrained) and not name.startswith("backbone.mask_attention")
        (slow if is_pretrained else fast).append(p)
    groups = [{"params": slow, "lr": t.lr * t.backbone_lr_factor}, {"params": fast, "lr": t.lr}]
    kind = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=t.lr, weight_decay=t.weight_decay, fused=device.type == "cuda")


def compute_losses(
    out: PairOutput, batch: dict[str, torch.Tensor], cfg: RunConfig, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total loss and the detached ``[total, L_E, L_A, L_T]`` vector for one micro-batch."""
    t = cfg.train
    le = losses.loss_e(out.delta_qe, out.delta_eq, batch["q_score"] / scale, batch["e_score"] / scale)
    la = losses.loss_a(
        torch.cat([out.query.mask_logits, out.exemplar.mask_logits]),
        torch.cat([batch["q_masks"], batch["e_masks"]]),
        torch.cat([batch["q_valid"], batch["e_valid"]]),
    )
    lt = losses.loss_t(torch.cat([out.query.attn, out.exemplar.attn]), torch.cat([batch["q_steps"], batch["e_steps"]]))
    total = t.loss_e * le + t.loss_a * la + t.loss_t * lt
    return total, torch.stack([total, le, la, lt]).detach()


def check_same_split(ckpt: dict[str, Any], val: list[Sample], scale: float, path: Path, t: TrainConfig) -> None:
    """A resumed run must keep the validation split and the score units its weights were trained with.

    Raises:
        ConfigError: ``train.seed``, ``train.val_fraction``, ``train.score_norm``, ``train.using_dd`` or the
            training data changed.
    """
    old, new = list(ckpt["splits"]["val"]), [s.sample_id for s in val]
    diff = [] if old == new else [f"validation split ({len(old)} samples then, {len(new)} now, other ids)"]
    was_dd = bool(ckpt["config"]["train"].get("using_dd", False))
    if was_dd != t.using_dd:
        diff.append(f"target (train.using_dd {str(was_dd).lower()} then, {str(t.using_dd).lower()} now)")
    if not math.isclose(float(ckpt["score_scale"]), scale):
        diff.append(f"score scale ({float(ckpt['score_scale']):g} then, {scale:g} now)")
    if diff:
        raise ConfigError(
            f"checkpoint {path} was trained with another {'; '.join(diff)}; keep train.seed, train.val_fraction, "
            "train.score_norm, train.using_dd and the dataset as they were to resume, or use a new --out"
        )


def place_model(model: UniFineParser, t: TrainConfig, dev: torch.device) -> None:
    """Move ``model`` to ``dev`` with the run's CUDA settings, the same for training and ``hmtools
    eval``: channels_last_3d weights and inputs (``train.channels_last``) and cuDNN's algorithm search
    (``train.cudnn_benchmark``, process-wide). Nothing but the move on other devices."""
    model.to(dev)
    if dev.type != "cuda":
        return
    if t.channels_last:
        model.channels_last = True
        model.to(memory_format=torch.channels_last_3d)
    if t.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


def train(
    cfg: RunConfig,
    samples: list[Sample],
    masks: MaskSource,
    root: str | Path,
    out: str | Path,
    *,
    device: str = "auto",
    data: dict[str, Any] | None = None,
) -> Path:
    """Train one model; returns the path of the checkpoint chosen on validation (``best.pt``).

    Args:
        cfg: Model and training configuration.
        samples: All samples (``split`` train/test, ``score`` set); train is split into train/val.
        masks: Human masks of the samples' frames.
        root: Dataset root the frame keys are relative to.
        out: Output folder (checkpoints, metrics, predictions, plots, cache unless set).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        data: How to find the data again (dataset, root, annotations, masks, options), stored in
            the checkpoint for ``hmtools eval``.

    Raises:
        InputError: no training samples with scores; bad device.
        ConfigError: ``out`` holds a checkpoint of another model config.
    """
    m, t = cfg.model, cfg.train
    info, dev = init_distributed(device)
    out = Path(out)
    random.seed(t.seed + info.rank)
    np.random.seed(t.seed + info.rank)
    torch.manual_seed(t.seed + info.rank)

    # ---- data: seeded validation split, packed cache, pairs -------------------------------
    train_all = [s for s in samples if s.split == "train" and s.score is not None]
    test = [s for s in samples if s.split == "test" and s.score is not None]
    if len(train_all) < 2:
        raise InputError(f"need at least 2 training samples with scores, found {len(train_all)}")
    train_s, val_s, scale = split_and_scale(train_all, t)
    cache_dir = Path(t.cache_dir) if t.cache_dir else out / "cache"
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    everything = [*train_all, *test]
    if info.main:
        cache = build_cache(
            everything,
            root,
            masks,
            cache_dir,
            t.resize,
            allow_missing=t.allow_missing_masks,
            progress=t.progress,
        )
    barrier(info)
    if not info.main:
        cache = build_cache(everything, root, masks, cache_dir, t.resize, allow_missing=t.allow_missing_masks)
    pool = ExemplarPool(train_s, exemplar_group(t))
    dataset = PairDataset(train_s, pool, cache, m, t, t.seed)
    sampler = DistributedSampler(dataset, info.world, info.rank, shuffle=True, seed=t.seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=t.workers,
        pin_memory=dev.type == "cuda",
        drop_last=True,
        persistent_workers=False,  # workers must see set_epoch(): fresh copies of the dataset each epoch
    )
    if len(loader) < t.accumulate:
        raise InputError(
            f"{len(train_s)} training pairs give {len(loader)} batches per process, fewer than "
            f"train.accumulate={t.accumulate}; lower train.batch_size or train.accumulate"
        )

    # ---- model, optimizer, schedule ---------------------------------------------------------
    model = UniFineParser(m)
    if t.backbone_weights:
        n = load_kinetics_weights(model.backbone, t.backbone_weights)
        log.info("loaded %d I3D tensors from %s", n, t.backbone_weights)
    elif info.main:
        warn_random_init()
    if model.static is not None and t.static_weights:
        n = load_resnet18_weights(model.static, t.static_weights)
        log.info("loaded %d ResNet-18 tensors from %s", n, t.static_weights)
    elif model.static is not None and info.main:
        log.warning("model.static_stream=resnet18 without train.static_weights: the 2D stream starts random")
    place_model(model, t, dev)
    optimizer = make_optimizer(model, cfg, dev)
    steps_per_epoch = len(loader) // t.accumulate
    total_steps = t.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, t, steps_per_epoch)
    epoch, step, best, history, partial = 0, 0, -math.inf, [], None
    if (out / "last.pt").is_file():
        ckpt = load_checkpoint(out / "last.pt", to_dict(m))
        check_same_split(ckpt, val_s, scale, out / "last.pt", t)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        epoch, step, best, history = ckpt["epoch"], ckpt["step"], ckpt["best_metric"], ckpt["history"]
        partial = ckpt.get("partial")  # set when train.max_steps stopped the run inside an epoch
        if partial is not None and len(partial["ranks"]) != info.world:
            log.warning("last.pt stopped inside an epoch under %d processes: the rest of it is not exact", len(partial["ranks"]))  # fmt: skip
        _warn_kept_optimizer_keys(ckpt, t, info.main)
        if (out / "best.pt").is_file():  # may be newer than last.pt (save_every > 1, a crash between the two)
            best = max(best, float(load_checkpoint(out / "best.pt")["best_metric"]))
        if info.main:
            log.info("resumed from %s at epoch %d, step %d", out / "last.pt", epoch, step)
    ddp = DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None) if info.enabled else model
    forward = torch.compile(ddp) if t.compile else ddp

    def checkpoint() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": to_dict(cfg),
            "step": step,
            "epoch": epoch,
            "best_metric": best,
            "score_scale": scale,
            "data": {
                "root": str(Path(root).resolve()),
                **(data or {}),
                "frame_root": str(Path(root).resolve()),
                "cache_dir": str(cache_dir.resolve()),
            },
            "splits": {"val": [s.sample_id for s in val_s]},
            "history": history,
            "partial": partial,
        }

    if info.main:
        log.info(
            "%d params, %d train / %d val / %d test, %d steps/epoch",
            count_parameters(model),
            len(train_s),
            len(val_s),
            len(test),
            steps_per_epoch,
        )
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not (info.main and t.progress), desc="train")
    done, tail = t.max_steps > 0 and step >= t.max_steps, []
    while epoch < t.epochs and not done:
        # ---- one epoch ------------------------------------------------------------------------
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        torch.manual_seed(t.seed + 1000 * epoch + info.rank)
        model.train()
        mine = partial["ranks"][info.rank] if partial and len(partial["ranks"]) == info.world else None
        skip = partial["micro"] if partial else 0  # micro-batches a max_steps stop already trained
        sums = mine["sums"].to(dev) if mine is not None else torch.zeros(4, device=dev)
        micro, tic, seen = skip, time.perf_counter(), 0
        for i, batch in enumerate(loader):
            if i >= steps_per_epoch * t.accumulate:
                break
            if i < skip:
                continue
            if mine is not None:  # the dropout stream where the stop left it
                distributed.set_rng_state(mine["rng"], dev)
                mine = None
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            sync = (i + 1) % t.accumulate == 0
            with ddp.no_sync() if info.enabled and not sync else nullcontext():
                with autocast(dev, t.amp):
                    result = forward(batch["q_video"], batch["e_video"])
                loss, parts = compute_losses(result, batch, cfg, scale)
                (loss / t.accumulate).backward()
            sums += parts
            micro += 1
            seen += batch["q_video"].shape[0] * info.world
            if not sync:
                continue
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            bar.update(1)
            if info.main and t.progress and step % 10 == 0:
                bar.set_postfix(loss=f"{parts[0].item():.4f}", pairs_s=f"{seen / (time.perf_counter() - tic):.1f}")
            if t.max_steps and step >= t.max_steps:
                done = True
                break
        # stopped by max_steps inside the epoch: last.pt keeps where, so a resumed run trains its rest exactly
        stopped = done and micro < steps_per_epoch * t.accumulate
        here = {"sums": sums.cpu(), "rng": distributed.rng_state(dev)}  # every rank's, gathered (collective)
        partial = {"micro": micro, "ranks": distributed.gather_objects(info, here)} if stopped else None
        epoch += 0 if stopped else 1
        means = (all_reduce_mean(info, sums) / max(1, micro)).tolist()
        record = {
            "epoch": epoch + stopped,
            "step": step,
            "lr": scheduler.get_last_lr()[-1],
            "pairs_per_s": seen / (time.perf_counter() - tic),
        }
        record.update(dict(zip(("loss", "loss_e", "loss_a", "loss_t"), means, strict=True)))

        # ---- validate, checkpoint -------------------------------------------------------------
        if val_s and (epoch % t.eval_every == 0 or epoch == t.epochs or done):
            val = evaluate_split(model, val_s, pool, cache, cfg, dev, info, scale)
            record.update({"val_rho": val.metrics["rho"], "val_rl2": val.metrics["rl2"]})
            if info.main:
                log.info(
                    "epoch %d: loss %.4f, val rho %.4f, R-l2 %.3f",
                    epoch,
                    means[0],
                    val.metrics["rho"],
                    val.metrics["rl2"],
                )
            rho = val.metrics["rho"] if not math.isnan(val.metrics["rho"]) else -1.0
            if rho > best:
                best = rho
                if info.main:
                    save_checkpoint(out / "best.pt", checkpoint())
        (tail if stopped else history).append(record)  # a stopped epoch's record joins the history when it ends
        if info.main and (epoch % t.save_every == 0 or epoch == t.epochs or done):
            save_checkpoint(out / "last.pt", checkpoint())
    bar.close()
    barrier(info)

    # ---- test at the best-validation checkpoint ---------------------------------------------------
    if info.main and not val_s:
        save_checkpoint(out / "best.pt", checkpoint())
    barrier(info)
    chosen = out / ("best.pt" if (out / "best.pt").is_file() else "last.pt")
    model.load_state_dict(load_checkpoint(chosen)["model"])
    result = evaluate_split(model, test, pool, cache, cfg, dev, info, scale)
    if info.main:
        summary = {
            "test": result.metrics,
            "best_val_rho": best,
            "checkpoint": str(chosen),
            "epochs": epoch,
            "steps": step,
        }
        write_json(out / "metrics.json", summary)
        write_predictions(out / "predictions_test.csv", result.rows)
        plot_curves(out / "curves.png", history + tail)
        write_json(out / "history.json", history + tail)
    barrier(info)
    shutdown(info)
    return chosen
