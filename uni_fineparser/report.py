"""Run outputs: metrics JSON, per-sample predictions CSV, training-curve PNG (matplotlib Agg).

All files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _clean(obj: Any) -> Any:
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Pretty JSON with NaN written as null."""
    _atomic_write(Path(path), (json.dumps(_clean(obj), indent=2, sort_keys=True) + "\n").encode())


def write_predictions(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """One CSV row per query: id, true, pred, voters, per-step contributions, boundaries, IoUs."""
    if not rows:
        _atomic_write(Path(path), b"sample_id,true,pred\n")
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    _atomic_write(Path(path), buf.getvalue().encode())


def plot_curves(path: str | Path, history: list[dict[str, Any]]) -> None:
    """Losses per epoch (left) and validation rho / R-l2 (right) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    for key in ("loss", "loss_e", "loss_a", "loss_t"):
        ax1.plot(epochs, [h.get(key, float("nan")) for h in history], label=key, marker=".")
    ax1.set_xlabel("epoch")
    ax1.set_yscale("log")
    ax1.set_title("training losses (mean over epoch)")
    ax1.legend()
    val = [h for h in history if h.get("val_rho") is not None]
    ax2.plot([h["epoch"] for h in val], [h["val_rho"] for h in val], marker="o", label="val rho")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("Spearman rho")
    ax2.set_title("validation")
    twin = ax2.twinx()
    twin.plot(
        [h["epoch"] for h in val],
        [h.get("val_rl2") for h in val],
        color="tab:red",
        marker="x",
        label="val R-l2 x100",
    )
    twin.set_ylabel("R-l2 x100")
    handles = ax2.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax2.legend(handles, [str(h.get_label()) for h in handles], loc="center right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    _atomic_write(Path(path), buf.getvalue())
