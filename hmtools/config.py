"""Strict configuration loading: YAML (or a dict) + ``key=value`` overrides -> frozen dataclasses.

Each package owns its config dataclasses (frozen, with defaults); this module only builds them.
Unknown keys raise :class:`~hmtools.errors.ConfigError` with a "did you mean" suggestion, values
are checked against the field types, and nothing is ever ``eval``'d.

Example::

    @dataclass(frozen=True)
    class DetectConfig:
        model: str = "yolo11n"
        conf: float = 0.25

    cfg = load_config(DetectConfig, "run.yaml", ["conf=0.4"])
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hmtools.errors import ConfigError

T = TypeVar("T")

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file gives ``{}``.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping at the top.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass --config FILE of an existing YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text ({e.reason}); pass --config FILE of a YAML file") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys, found {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML scalars) to a nested dict copy."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]}); quote it or fix it"
            ) from e
    return out


def build(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, strictly.

    Nested dataclass fields take nested mappings. Missing keys keep their defaults.

    Raises:
        ConfigError: unknown key (with suggestions), or a value of the wrong type.
    """
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, found {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown key {where}.{key}{hint} (valid keys: {', '.join(fields)})")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from an optional YAML file and ``key=value`` overrides (overrides win)."""
    data = load_yaml(path) if path is not None else {}
    return build(cls, apply_overrides(data, overrides or []))


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain JSON-able dict (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(config: Any) -> str:
    """Stable short sha256 of a config dataclass or dict (sorted-key JSON)."""
    body = to_dict(config) if dataclasses.is_dataclass(config) else config
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)  # type: ignore[arg-type]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(key_tp, k, where): _coerce(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string; "nan"/"inf" stay errors
    if tp in (int, str, bool) and type(value) is tp:
        return value
    if tp is float:
        raise ConfigError(f"{where} must be a number, got {value!r}")
    raise ConfigError(f"{where} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")
