"""Configuration of ``hmtools build-masks``: frozen dataclasses, one per stage.

Built with :func:`hmtools.config.load_config` from ``configs/build_masks.yaml`` (every key is
commented there) plus ``--set key=value`` overrides. :func:`result_config` is the part that
changes masks; its hash marks a built sample so reruns skip it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hmtools.config import to_dict
from hmtools.errors import ConfigError


@dataclass(frozen=True)
class FramesConfig:
    """Frame decoding: ``batch_size`` frames per step, decoded by ``workers`` threads ``prefetch`` batches ahead."""

    batch_size: int = 8
    workers: int = 2
    prefetch: int = 2

    def __post_init__(self) -> None:
        for key, low in (("batch_size", 1), ("workers", 1), ("prefetch", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"frames.{key} must be >= {low}, got {getattr(self, key)}")


@dataclass(frozen=True)
class DetectConfig:
    """Person detector: a name of ``pipelines.detect.DETECTORS``, a weights file, or ``lite``."""

    model: str = "yolo11m"
    conf: float = 0.2
    imgsz: int = 640


@dataclass(frozen=True)
class SelectConfig:
    """Track linking and the athlete selection rule (see :mod:`pipelines.select`)."""

    link_dist: float = 1.0
    min_affinity: float = 0.2
    max_age: int = 8
    min_track_len: int = 3
    min_rel_height: float = 0.06  # a candidate on size alone; smaller chains must travel (below)
    small_min_rel_height: float = 0.015  # no candidate below this; between the two only when travelling
    small_min_travel: float = 2.0  # in the chain's own median box heights (5th-95th percentile path)
    max_gap: int = 20
    stitch_dist: float = 1.5
    sync_overlap: float = 0.5
    sync_min_motion: float = 0.5
    w_size: float = 1.0
    w_motion: float = 1.0
    w_shape: float = 0.5
    w_persistence: float = 0.5
    w_confidence: float = 0.25
    camera_motion: bool = True  # measure motion in scene coordinates (the background's shift removed)


@dataclass(frozen=True)
class SegmentConfig:
    """Segmenter: ``sam_vit_b|l|h`` or ``lite``; prompts and encoder speed levers."""

    model: str = "sam_vit_h"
    checkpoint: str | None = None
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    sdpa: bool = True
    fold_rel_pos: bool = True
    compile: bool = False
    positive_point: bool = True
    negative_points: int = 3
    negative_margin: float = 0.5


@dataclass(frozen=True)
class RepairConfig:
    """Temporal repair: gap filling and jump detection (see :mod:`pipelines.repair`)."""

    max_interp_gap: int = 12
    jump_iou: float = 0.3
    jump_area_ratio: float = 2.5
    max_jump_run: int = 3
    reprompt: bool = True


@dataclass(frozen=True)
class FlagConfig:
    """When a frame is flagged for review."""

    min_score: float = 0.8
    min_box_fill: float = 0.15


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``build-masks`` needs besides the dataset and store paths."""

    device: str = "auto"
    frames: FramesConfig = field(default_factory=FramesConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    flags: FlagConfig = field(default_factory=FlagConfig)


def result_config(cfg: BuildConfig, weights: dict[str, str]) -> dict[str, Any]:
    """The parts of ``cfg`` that change the masks, plus the weights' sha256 (device and speed settings left out)."""
    body = to_dict(cfg)
    body.pop("device")
    body.pop("frames")
    for key in ("checkpoint", "sdpa", "fold_rel_pos", "compile"):
        body["segment"].pop(key)
    return {"config": body, "weights": dict(sorted(weights.items())), "pipeline_version": 4}
