"""Uni-FineParser commands: ``train``, ``eval`` and ``explain`` (torch is imported inside)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (under torchrun: cuda).")]
CheckpointOpt = Annotated[Path, typer.Option("--checkpoint", help="A best.pt/last.pt written by hmtools train.")]


def train(
    dataset: Annotated[str, typer.Option("--dataset", help="finediving, mtl-aqa or aqa7.")],
    root: Annotated[Path, typer.Option("--root", help="Dataset root folder (frames).")],
    masks: Annotated[Path, typer.Option("--masks", help="Mask store file, HDF5 export, or FineParser mask folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; an existing last.pt there is resumed.")],
    annotations: Annotated[Path | None, typer.Option("--annotations", help="Annotation folder.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (see configs/train_*.yaml).")] = None,
    preset: Annotated[str, typer.Option("--preset", help="paper (full size) or tiny (CPU smoke runs).")] = "paper",
    device: DeviceOpt = "auto",
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. train.lr=3e-4 (repeatable).")
    ] = None,
    allow_missing_masks: Annotated[
        bool,
        typer.Option("--allow-missing-masks", help="Leave frames without a mask out of L_A instead of failing."),
    ] = False,
) -> None:
    """Train Uni-FineParser; writes checkpoints, metrics.json, predictions_test.csv and curves.png into --out."""
    from hmtools.commands._checks import check_writable
    from hmtools.errors import InputError
    from uni_fineparser.config import load_run_config
    from uni_fineparser.run import train_from_dataset

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    extra = ["train.allow_missing_masks=true"] if allow_missing_masks else []
    cfg = load_run_config(preset, config, [*(overrides or []), *extra])
    check_writable(out, "--out")
    _check_run_folder(out)
    made = out  # the topmost folder this run creates
    while not made.parent.exists() and made.parent != made.parent.parent:
        made = made.parent
    was_empty = out.is_dir() and not any(out.iterdir())
    existed = out.exists()
    try:
        summary = train_from_dataset(cfg, dataset, root, masks, out, annotations=annotations, device=device)
    except InputError:
        # bad input found after --out was filled (masks, weights): leave no half-made run folder behind
        if (was_empty or not existed) and not any((out / n).exists() for n in ("last.pt", "best.pt")):
            for path in list(out.iterdir()) if existed else [made]:  # an empty --out given stays, empty
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise
    if os.environ.get("RANK", "0") == "0":  # under torchrun every process returns the summary: print it once
        typer.echo(json.dumps(summary.get("test", summary), sort_keys=True, default=str))


RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.json", "cache")
"""Names a train run folder (or, for AQA-7, each per-class subfolder) holds from its first epoch."""


def _check_run_folder(out: Path) -> None:
    """Refuse an ``--out`` that holds files but is no train run: a frame folder or a dataset root would
    otherwise get checkpoints, a mask cache and reports written between its files.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder with none of :data:`RUN_FILES` in it or in
            a subfolder.
    """
    from hmtools.errors import InputError

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder (new, empty, or an earlier run to resume)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    folders = [out, *(p for p in out.iterdir() if p.is_dir())]
    if not any((f / name).exists() for f in folders for name in RUN_FILES):
        raise InputError(
            f"--out {out} holds files but is not a train run (none of {', '.join(RUN_FILES)}); "
            "pass a new or empty folder, or an earlier run's folder to resume it"
        )


def evaluate(
    checkpoint: CheckpointOpt,
    split: Annotated[str, typer.Option("--split", help="test, val (carved from train) or train.")] = "test",
    voters: Annotated[
        int | None, typer.Option("--voters", help="Exemplars per query (default: the config's, 10).")
    ] = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    cudnn_benchmark: Annotated[
        bool | None,
        typer.Option(
            "--cudnn-benchmark/--no-cudnn-benchmark",
            help="CUDA: let cuDNN time its algorithms (faster evaluation, last digits may vary between runs; "
            "default: as the run trained, train.cudnn_benchmark).",
        ),
    ] = None,
) -> None:
    """Evaluate a checkpoint: Spearman rho, R-l2 x100, AIoU@0.5/0.75, mask IoU."""
    from hmtools.errors import InputError
    from uni_fineparser.run import evaluate_checkpoint

    if voters is not None and voters < 1:
        raise InputError(f"--voters must be >= 1, got {voters}")
    m = evaluate_checkpoint(checkpoint, split, device=device, voters=voters, cudnn_benchmark=cudnn_benchmark).metrics
    keys = ("rho", "rl2", "aiou_0.5", "aiou_0.75", "mask_iou", "n")
    report = {k: (None if isinstance(m[k], float) and math.isnan(m[k]) else m[k]) for k in keys}
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(
        f"{split}: n={m['n']}  rho={m['rho']:.4f}  R-l2x100={m['rl2']:.4f}  "
        f"AIoU@0.5={m['aiou_0.5']:.4f}  AIoU@0.75={m['aiou_0.75']:.4f}  mask IoU={m['mask_iou']:.4f}"
    )


def explain(
    checkpoint: CheckpointOpt,
    sample: Annotated[str, typer.Option("--sample", help="Sample id, e.g. FINADivingWorldCup2021_Men3m_final_r1/0.")],
    out: Annotated[Path, typer.Option("--out", help="PNG contact sheet to write.")],
    mp4: Annotated[Path | None, typer.Option("--mp4", help="Also write the attention overlay as an MP4.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Render the mask attention, the predicted vs true step boundaries and the per-step scores of one sample."""
    from hmtools.commands._checks import check_writable
    from hmtools.errors import InputError
    from uni_fineparser.explain import explain_sample

    if out.is_dir():
        raise InputError(f"--out {out} is a folder; pass a file name ending in .png (the contact sheet to write)")
    for path, option in ((out, "--out"), (mp4, "--mp4")):
        if path is not None:
            check_writable(path, option)
    ex = explain_sample(checkpoint, sample, out, device=device, mp4=mp4)
    sheet = out if out.suffix else out.with_name(out.name + ".png")  # matplotlib adds .png to a bare name
    typer.echo(f"wrote {sheet}" + (f" and {mp4}" if mp4 else "") + f": predicted {ex.pred:.2f}, true {ex.true:.2f}")
