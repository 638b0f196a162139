"""Configuration of the Uni-FineParser model and trainer: frozen dataclasses, loaded strictly.

``RunConfig`` = ``{"model": ModelConfig, "train": TrainConfig}``. A run is built from a preset
(``PRESETS``: ``paper`` = the dataclass defaults, ``tiny`` = a CPU-sized model for tests), then
an optional YAML file, then ``key=value`` overrides (``train.lr=3e-4``), later sources winning.
Unknown keys fail with a "did you mean" suggestion (:func:`hmtools.config.build`).

Every field is documented in ``docs/training.md``; fields where the papers are silent are
explained in ``docs/model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hmtools.config import apply_overrides, build, load_yaml
from hmtools.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """The network. Changing any field makes old checkpoints incompatible (checked on load)."""

    frames: int = 96  # T: frames sampled evenly over each clip
    size: int = 112  # side of the square crop fed to the backbone, pixels
    backbone_width: float = 1.0  # I3D channel multiplier; 1.0 is required to load Kinetics weights
    token_stride: Literal[4, 8] = 4  # temporal stride of the backbone tokens (8 = stock I3D)
    attn_hidden: int = 64  # hidden channels of the mask-attention head f_A
    attn_bias_init: float = -2.2  # initial logit of A (sigmoid(-2.2) ~ 0.1, the usual foreground share)
    d_model: int = 256  # width of the step decoder and the score encoder
    heads: int = 8  # attention heads in the step decoder
    num_steps: int = 3  # learnable step queries (3 = take-off, flight, entry)
    mlp_ratio: int = 4  # hidden/d_model of the decoder MLP
    dropout: float = 0.1  # dropout in the decoder and regressor
    regressor_hidden: int = 256  # hidden width of the contrastive regressor MLP
    step_weights: tuple[float, ...] = (0.3, 0.5, 0.2)  # lambda_l of each step's delta (FineParser code)
    freeze_bn: bool = True  # keep the backbone's BatchNorm in eval mode (stats from Kinetics)
    static_stream: Literal["none", "resnet18"] = "none"  # 2nd (per-frame 2D) stream summed into K/V


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and evaluation settings (free to change between resumes)."""

    seed: int = 10086  # seeds torch/numpy/python, the validation split, pairs and voters
    epochs: int = 400  # passes over the training pairs (FineParser: 400)
    batch_size: int = 2  # query/exemplar pairs per process per micro-step
    accumulate: int = 2  # micro-steps per optimizer step
    optimizer: Literal["adamw", "adam"] = "adam"  # Adam as in FineParser; AdamW decouples weight decay
    lr: float = 1e-3  # head learning rate (peak)
    backbone_lr_factor: float = 0.1  # backbone lr = lr * factor
    weight_decay: float = 0.0  # L2 (adam) or decoupled (adamw) weight decay
    warmup_epochs: float = 5.0  # linear warmup length, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # cosine floor = min_lr_ratio * lr, one absolute lr for every group
    grad_clip: float = 10.0  # max global grad norm; 0 disables
    amp: Literal["bf16", "none"] = "bf16"  # bf16 autocast (CUDA and CPU); "none" = fp32
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # channels_last_3d memory format on CUDA
    cudnn_benchmark: bool = False  # let cuDNN time its convolution algorithms for the fixed shapes (CUDA)
    loss_e: float = 1.0  # weight of L_E (contrastive score regression, both directions)
    loss_a: float = 1.0  # weight of L_A (mask attention vs human masks)
    loss_t: float = 1.0  # weight of L_T (step-query attention vs step boundaries)
    score_norm: bool = True  # regress deltas divided by the training score range
    using_dd: bool = False  # regress score/DD and multiply back by the query's DD (CoRe/TPT on MTL-AQA)
    exemplar_by: Literal["auto", "action", "difficulty", "class", "any"] = (
        "auto"  # exemplar group; auto: dive number (FineDiving, MTL-AQA), class (AQA-7)
    )
    voters: int = 10  # exemplars per query at evaluation
    val_fraction: float = 0.1  # share of train carved out (seeded) to choose the best checkpoint
    eval_every: int = 2  # epochs between validations
    save_every: int = 1  # epochs between last.pt checkpoints
    temporal_shift: tuple[int, int] = (-3, 0)  # train-time shift of the clip end, frames
    resize: tuple[int, int] = (200, 112)  # (height, width) frames/masks are resized to in the cache
    flip: bool = True  # random horizontal flip (frames and masks together)
    workers: int = 4  # DataLoader worker processes
    cache_dir: str = ""  # packed clip cache folder; "" = <out>/cache
    allow_missing_masks: bool = False  # frames without a mask are left out of L_A instead of failing
    backbone_weights: str = ""  # path to I3D Kinetics model_rgb.pth; "" = random init (warns)
    static_weights: str = ""  # path to a torchvision ResNet-18 ImageNet state dict for model.static_stream
    progress: bool = True  # tqdm progress bar on rank 0
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs); for smoke runs


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs besides the data paths."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {
        "model": {
            "frames": 16,
            "size": 32,
            "backbone_width": 0.0625,
            "attn_hidden": 8,
            "d_model": 32,
            "heads": 4,
            "regressor_hidden": 32,
            "dropout": 0.0,
        },
        "train": {
            "epochs": 2,
            "batch_size": 2,
            "accumulate": 1,
            "optimizer": "adamw",
            "warmup_epochs": 0.5,
            "amp": "none",
            "channels_last": False,
            "voters": 3,
            "eval_every": 1,
            "resize": (40, 40),
            "temporal_shift": (-1, 0),
            "workers": 0,
            "progress": False,
        },
    },
}
"""Preset name -> partial config mapping applied under the YAML file and overrides."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_run_config(
    preset: str = "paper", path: str | Path | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Build a :class:`RunConfig` from a preset, an optional YAML file and ``key=value`` overrides.

    Raises:
        ConfigError: unknown preset, unknown key (with suggestion) or wrong value type.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    data = _merge({}, PRESETS[preset])
    if path is not None:
        data = _merge(data, load_yaml(path))
    data = apply_overrides(data, overrides or [])
    cfg = build(RunConfig, data, "config")
    check(cfg)
    return cfg


def check(cfg: RunConfig) -> None:
    """Reject combinations that cannot work, with the fix in the message.

    Raises:
        ConfigError: e.g. ``d_model`` not divisible by ``heads``.
    """
    m, t = cfg.model, cfg.train
    if m.d_model % m.heads:
        raise ConfigError(f"model.d_model ({m.d_model}) must be divisible by model.heads ({m.heads})")
    if m.frames % m.token_stride:
        raise ConfigError(f"model.frames ({m.frames}) must be a multiple of model.token_stride ({m.token_stride})")
    if m.size % 16:
        raise ConfigError(f"model.size ({m.size}) must be a multiple of 16")
    if len(m.step_weights) != m.num_steps:
        raise ConfigError(
            f"model.step_weights has {len(m.step_weights)} values but model.num_steps is {m.num_steps}; "
            "give one weight per step"
        )
    if min(t.resize) < m.size:
        raise ConfigError(f"train.resize {list(t.resize)} must be at least model.size ({m.size}) on both sides")
    if t.temporal_shift[0] > t.temporal_shift[1]:
        raise ConfigError(f"train.temporal_shift {list(t.temporal_shift)} must be (min, max)")
    if not 0.0 <= t.val_fraction < 1.0:
        raise ConfigError(f"train.val_fraction must be in [0, 1), got {t.val_fraction}")
    if t.batch_size < 1 or t.accumulate < 1 or t.voters < 1:
        raise ConfigError("train.batch_size, train.accumulate and train.voters must be >= 1")
    if t.eval_every < 1 or t.save_every < 1:  # both are epoch moduli: 0 crashed after the first epoch
        raise ConfigError(f"train.eval_every ({t.eval_every}) and train.save_every ({t.save_every}) must be >= 1")
    if t.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {t.epochs}")
    if not t.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")


def diff_model_configs(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names and values of the model fields that differ, e.g. ``["d_model: 256 != 32"]``."""
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
