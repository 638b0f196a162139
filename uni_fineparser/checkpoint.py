"""One checkpoint dict per file, saved atomically and loaded with ``torch.load(weights_only=True)``.

Keys: ``model`` (state dict), ``optimizer``, ``scheduler``, ``config`` (the resolved
:class:`~uni_fineparser.config.RunConfig` as a plain dict), ``step`` (optimizer steps done),
``epoch`` (epochs done), ``best_metric`` (best validation rho so far), ``score_scale`` (score
units per regression unit), ``data`` (dataset name, root, annotations, masks path, options, so
``hmtools eval`` can find the data again), ``splits`` (validation sample ids), ``history``
(per-epoch losses and metrics) and ``format`` (version of this layout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hmtools.errors import ConfigError, DataFormatError, InputError
from uni_fineparser.config import diff_model_configs

FORMAT = 1


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Write ``ckpt`` to ``path`` atomically (temporary file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    torch.save({**ckpt, "format": FORMAT}, tmp)
    os.replace(tmp, p)


def load_checkpoint(path: str | Path, model_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) onto the CPU.

    Args:
        path: The ``.pt`` file.
        model_config: When given, the stored ``config["model"]`` must equal it.

    Raises:
        InputError: missing file.
        DataFormatError: not a checkpoint of this trainer.
        ConfigError: the checkpoint was trained with another model config (names each field).
    """
    p = Path(path)
    if p.is_dir():  # e.g. an AQA-7 run folder, which holds one model per class in <out>/<class>/
        found = sorted(p.glob("best.pt")) + sorted(p.glob("*/best.pt"))
        hint = f"e.g. {', '.join(map(str, found[:3]))}" if found else "no best.pt in it"
        raise InputError(f"checkpoint {p} is a folder; pass a checkpoint file ({hint})")
    if not p.is_file():
        raise InputError(f"checkpoint {p} not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in several types
        first = (str(e).strip().splitlines() or [""])[0]
        if "weights_only" in first:  # torch's multi-line advice to unpickle untrusted code: not ours to give
            first = "not a torch file of plain tensors and containers"
        raise DataFormatError(
            f"{p} is not a loadable checkpoint ({type(e).__name__}: {first}); "
            "pass a best.pt/last.pt written by hmtools train"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise DataFormatError(f"{p} is not an hmtools Uni-FineParser checkpoint (format {FORMAT})")
    if model_config is not None:
        diff = diff_model_configs(ckpt["config"]["model"], model_config)
        if diff:
            raise ConfigError(
                f"checkpoint {p} was trained with another model config ({'; '.join(diff)}); "
                "use the same --preset/--config, or a new --out"
            )
    return ckpt
