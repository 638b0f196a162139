"""Strict configuration loading (hmtools.config): suggestions, override precedence, type errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from hmtools.config import apply_overrides, build, config_hash, load_config, load_yaml, to_dict
from hmtools.errors import ConfigError


@dataclass(frozen=True)
class DetectConfig:
    model: str = "yolo11n"
    conf: float = 0.25
    classes: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-3
    epochs: int = 10
    device: Literal["cpu", "cuda"] = "cpu"
    out: Path = Path("runs")
    weights: dict[str, float] = field(default_factory=dict)
    resume: str | None = None


@dataclass(frozen=True)
class Config:
    detect: DetectConfig = DetectConfig()
    train: TrainConfig = TrainConfig()
    seed: int = 0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_and_yaml(tmp_path: Path) -> None:
    assert load_config(Config) == Config()
    cfg = load_config(Config, write(tmp_path, "detect:\n  conf: 0.4\ntrain:\n  epochs: 3\n  out: /tmp/x\n"))
    assert cfg.detect.conf == 0.4 and cfg.train.epochs == 3 and cfg.train.out == Path("/tmp/x")
    assert cfg.detect.model == "yolo11n"  # untouched keys keep their defaults
    assert load_config(Config, write(tmp_path, "")) == Config()


def test_misspelled_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key config\.detect\.conff; did you mean 'conf'\?"):
        load_config(Config, write(tmp_path, "detect:\n  conff: 0.4\n"))
    with pytest.raises(ConfigError, match=r"config\.trian; did you mean 'train'\?.*valid keys: detect, train, seed"):
        load_config(Config, None, ["trian.lr=0.1"])
    with pytest.raises(ConfigError, match="unknown key config.zzz \\(valid keys"):
        build(Config, {"zzz": 1})


def test_overrides_win_over_yaml_and_later_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lr: 0.01\n  epochs: 5\nseed: 1\n")
    cfg = load_config(Config, path, ["train.lr=0.5", "seed=7", "seed=8", "detect.classes=[0, 2]"])
    assert cfg.train.lr == 0.5 and cfg.train.epochs == 5 and cfg.seed == 8 and cfg.detect.classes == (0, 2)
    assert path.read_text() == "train:\n  lr: 0.01\n  epochs: 5\nseed: 1\n"
    data = {"train": {"lr": 0.01}}
    apply_overrides(data, ["train.lr=1"])
    assert data == {"train": {"lr": 0.01}}  # the input mapping is not modified
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


def test_yaml_style_floats_without_a_dot() -> None:
    # PyYAML reads 1e-4 (no dot) as a string; float fields accept it, other strings stay errors
    assert load_config(Config, None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    assert build(TrainConfig, {"lr": "3E+2"}).lr == 300.0
    with pytest.raises(ConfigError, match="config.lr must be a number, got 'fast'"):
        build(TrainConfig, {"lr": "fast"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochs=2.5"], "config.train.epochs must be of type int, got 2.5"),
        (["train.epochs=true"], "config.train.epochs must be of type int, got True"),
        (["seed=abc"], "config.seed must be of type int, got 'abc'"),
        (["train.device=tpu"], r"config.train.device must be one of \['cpu', 'cuda'\], got 'tpu'"),
        (["detect.classes=3"], "config.detect.classes must be a list, got 3"),
        (["detect.classes=[0, x]"], r"config.detect.classes\[1\] must be of type int"),
        (["detect=5"], "config.detect must be a mapping"),
        (["train.weights=[1]"], "config.train.weights must be a mapping"),
        (["train.weights={a: x}"], "config.train.weights.a must be a number"),
        (["train.lr"], "must look like key=value"),
        (["seed.x=1"], "config.seed must be of type int, got {'x': 1}"),
    ],
)
def test_wrong_types_are_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Config, None, overrides)


def test_optional_and_dict_fields() -> None:
    cfg = load_config(Config, None, ["train.resume=last.pt", "train.weights={mask: 2}"])
    assert cfg.train.resume == "last.pt" and cfg.train.weights == {"mask": 2.0}
    assert load_config(Config, None, ["train.resume=null"]).train.resume is None


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(write(tmp_path, "- 1\n- 2\n"))


def test_to_dict_and_hash_are_stable() -> None:
    cfg = load_config(Config, None, ["train.out=/data/run1"])
    d = to_dict(cfg)
    assert d["train"]["out"] == "/data/run1" and d["detect"]["classes"] == [0]
    assert build(Config, d) == cfg  # round trip
    assert config_hash(cfg) == config_hash(build(Config, d)) != config_hash(Config())
    assert len(config_hash(cfg)) == 16
