"""Glue between the CLI and the library: dataset + masks -> train; checkpoint -> data, model, split.

``hmtools train`` calls :func:`train_from_dataset`; ``hmtools eval`` calls
:func:`evaluate_checkpoint`; ``hmtools explain`` uses :func:`open_run`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmtools.config import build, to_dict
from hmtools.errors import DataFormatError, InputError
from hmtools.schema import Sample
from uni_fineparser.cache import ClipCache, build_cache
from uni_fineparser.checkpoint import load_checkpoint
from uni_fineparser.config import RunConfig
from uni_fineparser.data import ExemplarPool, carve_validation, exemplar_group, split_and_scale
from uni_fineparser.distributed import DistInfo, resolve_device
from uni_fineparser.evaluate import EvalResult, evaluate_split
from uni_fineparser.mask_source import MaskSource, open_mask_source
from uni_fineparser.metrics import fisher_z_mean
from uni_fineparser.model import UniFineParser
from uni_fineparser.report import write_json
from uni_fineparser.train import check_same_split, place_model, train

log = logging.getLogger(__name__)


def load_samples(data: dict[str, Any]) -> tuple[list[Sample], Path]:
    """Samples of ``data["dataset"]`` under ``data["root"]`` (adapter options and class filter applied)
    and the folder their frame keys are relative to (the adapter's frame folder)."""
    from hmtools.datasets import load_dataset

    index = load_dataset(data["dataset"], data["root"], data.get("annotations"), **(data.get("options") or {}))
    keep = data.get("filter") or {}
    return [s for s in index.samples if all(getattr(s, k) == v for k, v in keep.items())], Path(index.root)


def train_from_dataset(
    cfg: RunConfig,
    dataset: str,
    root: str | Path,
    masks: str | Path,
    out: str | Path,
    *,
    annotations: str | Path | None = None,
    options: dict[str, Any] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Index the dataset, open the masks and train (AQA-7: one model per class).

    Returns:
        The run's ``metrics.json`` content.
    """

    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"--out {out} is a file; pass a folder for the run (checkpoints, metrics, plots)")
    data = {
        "dataset": dataset,
        "root": str(Path(root).resolve()),
        "annotations": None if annotations is None else str(Path(annotations).resolve()),
        "masks": str(Path(masks).resolve()),
        "options": options or {},
    }
    samples, frame_root = load_samples(data)
    check_masks_are_not_frames(masks, Path(data["root"]), frame_root, samples)
    source = open_mask_source(masks)
    if dataset.replace("_", "-").lower() == "aqa7":
        return train_per_class(cfg, samples, source, frame_root, out, device=device, data=data)
    check_resumable(cfg, samples, out)
    train(cfg, samples, source, frame_root, out, device=device, data=data)
    metrics_file = Path(out) / "metrics.json"
    return json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}


def check_masks_are_not_frames(masks: str | Path, root: Path, frame_root: Path, samples: list[Sample]) -> None:
    """Refuse ``--masks`` naming the frames themselves: the dataset root, the frame folder, or a folder
    whose "mask" of a frame is that frame's own file (a symlink to the frame folder). Read as a mask
    folder, every RGB frame would become its own mask (pixels >= 128 of its brightest channel).

    Raises:
        InputError: one of those.
    """
    m = Path(masks).resolve()
    if not m.is_dir():
        return
    for what, folder in (("the dataset root (--root)", root), ("the frame folder", frame_root)):
        if m == Path(folder).resolve():
            raise InputError(
                f"--masks {masks} is {what}: every frame would be read as its own mask; pass the mask store, "
                "HDF5 export or mask folder (e.g. an `hmtools export --format fineparser` folder)"
            )
    key = next((s.frames[0] for s in samples if s.frames), None)
    if key is None:
        return
    try:
        same = os.path.samefile(m / key, Path(frame_root) / key)
    except OSError:  # no file of the frame's own name there (the usual case), or no frame
        same = False
    if same or _looks_like_a_frame(m / key):
        what = f"{m / key} is the frame {key}" if same else f"{m / key} is a colour picture, not a mask"
        raise InputError(
            f"--masks {masks} holds the frames themselves ({what}): every frame would be read as its own "
            "mask; pass the mask store, HDF5 export or mask folder"
        )


def _looks_like_a_frame(path: Path) -> bool:
    """Whether the image at ``path`` (if any) is a video frame rather than a mask: a colour picture with
    mostly mid-tones. A mask, even a coloured JPEG one, is near black or near full brightness but at its
    edges; a diving frame is > 60% mid-tones (measured: the examples/ frames, 66-70%).
    """
    from uni_fineparser.cache import import_cv2

    if not path.is_file():
        return False
    cv2 = import_cv2()
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None or img.size == 0:
        return False
    hi, lo = img.max(axis=2).astype(np.int16), img.min(axis=2).astype(np.int16)
    coloured = float(np.mean(hi - lo > 16))  # pixels whose channels differ: not grey
    mid = float(np.mean((hi >= 48) & (hi <= 207)))  # neither background nor foreground
    return coloured > 0.2 and mid > 0.4


@dataclass
class OpenRun:
    """A trained model with the data it was trained on."""

    cfg: RunConfig
    model: UniFineParser
    samples: list[Sample]
    splits: dict[str, list[Sample]]
    pool: ExemplarPool
    cache: ClipCache
    score_scale: float
    device: torch.device


def open_run(
    checkpoint: str | Path,
    *,
    device: str = "auto",
    samples: list[Sample] | None = None,
    masks: str | Path | None = None,
    voters: int | None = None,
    cudnn_benchmark: bool | None = None,
) -> OpenRun:
    """Load a checkpoint and find its data again (through its ``data`` entry unless given).
    ``voters`` and ``cudnn_benchmark`` (None: the run's own setting) override the checkpoint's config."""
    ckpt = load_checkpoint(checkpoint)
    cfg = run_config_from(ckpt)
    overrides = {k: v for k, v in (("voters", voters), ("cudnn_benchmark", cudnn_benchmark)) if v is not None}
    if overrides:
        cfg = replace(cfg, train=replace(cfg.train, **overrides))
    data = ckpt["data"]
    if samples is None:
        if not data.get("dataset"):
            raise InputError(f"{checkpoint} does not name its dataset (trained from a sample list); pass samples=")
        _recorded_path_exists(checkpoint, "dataset root", data["root"])
        samples, _ = load_samples(data)
    if masks is None and not data.get("masks"):
        raise InputError(f"{checkpoint} does not record its masks path; pass masks=")
    if masks is None:
        _recorded_path_exists(checkpoint, "masks", data["masks"])
    if masks is not None and data.get("frame_root"):
        check_masks_are_not_frames(
            masks, Path(data.get("root") or data["frame_root"]), Path(data["frame_root"]), samples
        )
    source = open_mask_source(masks or data["masks"])
    dev = resolve_device(device)
    train_all = [s for s in samples if s.split == "train" and s.score is not None]
    test = [s for s in samples if s.split == "test" and s.score is not None]
    _check_trained_on(checkpoint, ckpt, cfg, train_all)
    val_ids = set(ckpt["splits"]["val"])
    splits = {
        "train": [s for s in train_all if s.sample_id not in val_ids],
        "val": [s for s in train_all if s.sample_id in val_ids],
        "test": test,
    }
    cache_dir = Path(data["cache_dir"])
    if not cache_dir.is_dir():  # the run folder moved (its cache with it), or train.cache_dir was on another
        cache_dir = Path(checkpoint).resolve().parent / "cache"  # machine: not a rebuild under that old path
        log.info("clip cache %s not found; using %s (built there if missing)", data["cache_dir"], cache_dir)
    cache = build_cache(
        [*train_all, *test], data["frame_root"], source, cache_dir, cfg.train.resize, allow_missing=True
    )
    model = UniFineParser(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise DataFormatError(
            f"{checkpoint}: its weights do not fit the model its config describes ({first[0].strip()}); "
            "was it written by another version of hmtools?"
        ) from e
    place_model(model, cfg.train, dev)  # the device settings the run trained with (channels-last, cuDNN search)
    model.eval()
    pool = ExemplarPool(splits["train"], exemplar_group(cfg.train))
    return OpenRun(cfg, model, samples, splits, pool, cache, float(ckpt["score_scale"]), dev)


def _check_trained_on(checkpoint: str | Path, ckpt: dict[str, Any], cfg: RunConfig, train_all: list[Sample]) -> None:
    """Refuse samples other than those the checkpoint was trained on (another dataset, class or version):
    its exemplars, validation split and score units would be wrong, and the numbers silently meaningless.

    Raises:
        InputError: the recorded validation ids or the training score range do not match ``train_all``.
    """
    _, val_s, scale = split_and_scale(train_all, cfg.train)
    old, here = list(ckpt["splits"]["val"]), {s.sample_id for s in train_all}
    gone = [i for i in old if i not in here]
    problems = []
    if gone:
        problems.append(f"{len(gone)} of its {len(old)} validation samples are not scored training samples here "
                        f"(e.g. {gone[0]})")  # fmt: skip
    elif old != [s.sample_id for s in val_s]:
        problems.append("its validation split is not the one the training samples here give")
    if not math.isclose(float(ckpt["score_scale"]), scale):
        problems.append(f"training scores span {scale:g} here, {float(ckpt['score_scale']):g} when it was trained")
    if problems:
        name = ckpt.get("data", {}).get("dataset") or "its dataset"
        raise InputError(
            f"checkpoint {checkpoint} was trained on other samples ({'; '.join(problems)}); "
            f"evaluate it on the data it was trained on ({name}, the same version and class)"
        )


def _recorded_path_exists(checkpoint: str | Path, what: str, path: str) -> None:
    """eval/explain read the data from the paths train recorded; say so when one has gone."""
    if not Path(path).exists():
        raise InputError(
            f"checkpoint {checkpoint} was trained with {what} {path}, which does not exist here; "
            "put it back at that path (or a symlink to it), since eval and explain read the data the checkpoint records"
        )


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str = "test",
    *,
    device: str = "auto",
    samples: list[Sample] | None = None,
    masks: str | Path | None = None,
    voters: int | None = None,
    reuse_features: bool = True,
    cudnn_benchmark: bool | None = None,
) -> EvalResult:
    """Evaluate a checkpoint on ``split`` (``test``, ``val`` or ``train``) in one process.
    ``cudnn_benchmark`` (CUDA only; None: as the run trained) lets cuDNN time its algorithms for the
    evaluation's fixed shapes: 1.46x the queries/s on an H100 (docs/training.md), at the cost of
    run-to-run differences in the last digits (cuDNN may pick another algorithm each run).

    Raises:
        InputError: unknown split; see also :func:`open_run`.
    """
    if split not in ("test", "val", "train"):
        raise InputError(f"--split must be test, val or train; got {split!r}")
    run = open_run(
        checkpoint, device=device, samples=samples, masks=masks, voters=voters, cudnn_benchmark=cudnn_benchmark
    )
    if not run.splits[split]:  # every metric would be NaN with n = 0, reported as if it were a result
        why = " (trained with train.val_fraction=0)" if split == "val" and not run.cfg.train.val_fraction else ""
        raise InputError(f"the {split} split of checkpoint {checkpoint}'s data holds no scored samples{why}")
    return evaluate_split(
        run.model,
        run.splits[split],
        run.pool,
        run.cache,
        run.cfg,
        run.device,
        DistInfo(),
        run.score_scale,
        reuse_features,
    )


def train_per_class(
    cfg: RunConfig,
    samples: list[Sample],
    masks: MaskSource,
    root: str | Path,
    out: str | Path,
    *,
    device: str = "auto",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """AQA-7: one model per ``action_class`` in ``<out>/<class>/``, then the Fisher-z mean of rho and the
    mean R-l2 over classes in ``<out>/metrics.json``. Returns that summary."""
    classes = sorted({s.action_class for s in samples if s.action_class})
    counts = {
        c: sum(s.action_class == c and s.split == "train" and s.score is not None for s in samples) for c in classes
    }
    short = [f"{c} ({n})" for c, n in counts.items() if n < 2]
    if short:  # checked for every class up front, not after hours of training the classes before it
        raise InputError(
            "AQA-7 trains one model per class and each needs at least 2 training samples with scores; "
            f"too few in: {', '.join(short)}; add training samples to those classes"
        )
    t, world = cfg.train, int(os.environ.get("WORLD_SIZE", "1"))
    few = []  # what train() would refuse only after the classes before it have trained
    for cls in classes:
        scored = [s for s in samples if s.action_class == cls and s.split == "train" and s.score is not None]
        pairs = len(carve_validation(scored, t.val_fraction, t.seed)[0])
        if pairs // world // t.batch_size < t.accumulate:
            few.append(f"{cls} ({pairs} training pairs after validation)")
    if few:
        raise InputError(
            f"too few training pairs for {world} process(es) x train.batch_size={t.batch_size} x "
            f"train.accumulate={t.accumulate} in: {', '.join(few)}; lower train.batch_size or train.accumulate"
        )
    for cls in classes:
        check_resumable(cfg, [s for s in samples if s.action_class == cls], Path(out) / cls)
    per: dict[str, Any] = {}
    for cls in classes:
        subset = [s for s in samples if s.action_class == cls]
        sub_data = {**(data or {}), "filter": {"action_class": cls}}
        train(cfg, subset, masks, root, Path(out) / cls, device=device, data=sub_data)
        per[cls] = json.loads((Path(out) / cls / "metrics.json").read_text())["test"]
    rhos = [v["rho"] for v in per.values() if v.get("rho") is not None]
    undefined = sorted(c for c, v in per.items() if v.get("rho") is None)
    if undefined:  # e.g. fewer than 2 test samples: the mean is then over the other classes only
        log.warning("test rho undefined for %s; rho_fisher_z averages the other %d classes", undefined, len(rhos))
    rl2 = [v["rl2"] for v in per.values() if v.get("rl2") is not None]
    summary = {
        "per_class": per,
        "rho_fisher_z": fisher_z_mean(rhos) if rhos else None,
        "rl2_mean": float(np.mean(rl2)) if rl2 else None,
    }
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(out) / "metrics.json", summary)
    return summary


def check_resumable(cfg: RunConfig, samples: list[Sample], out: str | Path) -> None:
    """Refuse a run folder whose ``last.pt`` this run could not resume, before :func:`train` rewrites its
    ``config.yaml`` and builds the cache: the folder's config would otherwise describe a run it never held.

    Raises:
        ConfigError: ``last.pt`` has another model config, validation split or score scale.
    """
    last = Path(out) / "last.pt"
    if not last.is_file():
        return
    ckpt = load_checkpoint(last, to_dict(cfg.model))
    _, val_s, scale = split_and_scale([s for s in samples if s.split == "train" and s.score is not None], cfg.train)
    check_same_split(ckpt, val_s, scale, last, cfg.train)


def run_config_from(ckpt: dict[str, Any]) -> RunConfig:
    """Rebuild the :class:`RunConfig` stored in a checkpoint."""
    return build(RunConfig, ckpt["config"], "checkpoint config")
