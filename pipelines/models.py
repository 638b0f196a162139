"""Load the backends a build configuration names, and identify their weights for the config hash."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from hmtools.errors import InputError
from pipelines.config import BuildConfig
from pipelines.run import Models


def check_names(cfg: BuildConfig) -> None:
    """Fail fast (exit 2, valid names listed) on an unknown segmenter; detectors are checked on load."""
    from pipelines.segment_names import SEGMENTER_NAMES

    if cfg.segment.model not in SEGMENTER_NAMES:
        raise InputError(f"unknown segmenter {cfg.segment.model!r}; valid names: {', '.join(SEGMENTER_NAMES)}")


def load_models(cfg: BuildConfig, device: str) -> Models:
    """Build the detector and segmenter of ``cfg`` on ``device``.

    Named weights that are not on disk are downloaded once (ultralytics for YOLO, our verified
    download for SAM) unless ``HMTOOLS_OFFLINE=1``.
    """
    check_names(cfg)
    weights: dict[str, str] = {}
    lite = None
    if "lite" in (cfg.detect.model, cfg.segment.model):
        from importlib.metadata import version

        from pipelines.lite import build_lite

        lite = build_lite()
        weights["lite"] = f"mediapipe=={version('mediapipe')}"
    if cfg.detect.model == "lite":
        detect = lite[0]  # type: ignore[index]
    else:
        from pipelines.detect import build_detector, detect_people
        from pipelines.weights import sha256_file

        det = build_detector(
            cfg.detect.model,
            device,
            conf=cfg.detect.conf,
            imgsz=cfg.detect.imgsz,
            batch_size=cfg.frames.batch_size,
        )
        ckpt = getattr(det.model, "ckpt_path", None)
        weights["detector"] = sha256_file(Path(ckpt)) if ckpt and Path(ckpt).is_file() else cfg.detect.model
        detect = partial(detect_people, det)
    if cfg.segment.model == "lite":
        segmenter = lite[1]  # type: ignore[index]
    else:
        from pipelines.segment import build_segmenter, resolve_checkpoint
        from pipelines.weights import sha256_file

        offline = os.environ.get("HMTOOLS_OFFLINE", "") not in ("", "0")
        ckpt_arg = None if cfg.segment.checkpoint is None else Path(cfg.segment.checkpoint).expanduser()
        path = resolve_checkpoint(cfg.segment.model, ckpt_arg, download=not offline)
        weights["segmenter"] = sha256_file(path)
        s = cfg.segment
        segmenter = build_segmenter(
            s.model,
            path,
            device,
            batch_size=cfg.frames.batch_size,
            dtype=s.dtype,
            sdpa=s.sdpa,
            fold_rel_pos=s.fold_rel_pos,
            compile=s.compile,
        )
    return Models(detect=detect, segmenter=segmenter, weights=weights)
