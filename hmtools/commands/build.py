"""Mask-building commands: ``build-masks`` and ``preview``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def build_masks(
    dataset: Annotated[str, Opt("--dataset", help="Dataset adapter: finediving, mtl-aqa or aqa7.")],
    root: Annotated[Path, Opt("--root", help="Dataset root folder.")],
    store: Annotated[Path, Opt("--store", help="Mask store file (SQLite); created if absent.")],
    annotations: Annotated[Path | None, Opt("--annotations", help="Folder of the annotation files.")] = None,
    detector: Annotated[
        str | None, Opt("--detector", help="yolo11n/s/m/l/x, yolov8n/s/m/l/x, a YOLO weights file, or lite.")
    ] = None,
    segmenter: Annotated[str | None, Opt("--segmenter", help="sam_vit_b, sam_vit_l, sam_vit_h or lite.")] = None,
    sam_checkpoint: Annotated[
        Path | None, Opt("--sam-checkpoint", help="SAM weights file (else cached/downloaded once).")
    ] = None,
    device: Annotated[
        str | None,
        Opt(
            "--device",
            help="auto, cpu, cuda or cuda:N; auto and cuda mean cuda:LOCAL_RANK (one GPU per torchrun rank).",
        ),
    ] = None,
    samples: Annotated[
        list[str] | None, Opt("--samples", help="Only these sample ids (repeat, or comma-separated).")
    ] = None,
    limit: Annotated[int | None, Opt("--limit", help="Only the first N samples.")] = None,
    split: Annotated[
        str | None, Opt("--split", help="Only the samples of this split (train or test), e.g. test first.")
    ] = None,
    force: Annotated[bool, Opt("--force", help="Rebuild samples already built with this configuration.")] = False,
    keep_built: Annotated[
        bool,
        Opt("--keep-built", help="Skip samples built with any configuration or hmtools version; build only new ones."),
    ] = False,
    overwrite_human: Annotated[
        bool, Opt("--overwrite-human", help="Also rebuild samples with human edits/reviews or imported masks.")
    ] = False,
    batch_size: Annotated[
        int | None, Opt("--batch-size", help="Frames per batch (halves on GPU out-of-memory).")
    ] = None,
    rank_stores: Annotated[
        bool, Opt("--rank-stores", help="One store per rank beside --store (jobs across machines).")
    ] = False,
    merge: Annotated[
        bool,
        Opt(
            "--merge",
            help="Merge the per-rank stores into --store, then stop (--dataset is checked against the stores; "
            "--root is not read; build options are refused).",
        ),
    ] = False,
    config: Annotated[Path | None, Opt("--config", help="YAML file (see configs/build_masks.yaml).")] = None,
    sets: Annotated[list[str] | None, Opt("--set", help="Override a config key: key=value (repeatable).")] = None,
) -> None:
    """Build automatic athlete masks for a dataset into a mask store (resumable; see docs/pipeline.md)."""
    from hmtools.commands._checks import check_writable
    from hmtools.config import load_config
    from pipelines.config import BuildConfig
    from pipelines.job import refuse_build_options, run_build_masks

    if merge:  # a merge reads no dataset and builds nothing: refuse what it would silently ignore
        build_only = {
            "--annotations": annotations,
            "--detector": detector,
            "--segmenter": segmenter,
            "--sam-checkpoint": sam_checkpoint,
            "--device": device,
            "--samples": samples,
            "--limit": limit,
            "--split": split,
            "--force": force,
            "--keep-built": keep_built,
            "--batch-size": batch_size,
            "--config": config,
            "--set": sets,
        }
        refuse_build_options(build_only)
    check_writable(store, "--store")
    flags = {
        "detect.model": detector,
        "segment.model": segmenter,
        "segment.checkpoint": sam_checkpoint,
        "device": device,
        "frames.batch_size": batch_size,
    }
    # values quoted as JSON (a YAML subset), so a path like "a: b.pth" stays a string
    overrides = [
        *(sets or []),
        *(f"{k}={json.dumps(v if isinstance(v, int) else str(v))}" for k, v in flags.items() if v is not None),
    ]
    cfg = load_config(BuildConfig, config, overrides)
    summary = run_build_masks(
        dataset,
        root,
        annotations,
        store,
        cfg,
        sample_ids=samples,
        limit=limit,
        split=split,
        force=force,
        keep_built=keep_built,
        overwrite_human=overwrite_human,
        rank_stores=rank_stores,
        merge=merge,
    )
    if os.environ.get("RANK", "0") == "0":
        for line in summary.lines():
            typer.echo(line)
    if summary.failed:
        raise typer.Exit(1)


def preview(
    store: Annotated[Path, Opt("--store", help="Mask store file.")],
    root: Annotated[Path, Opt("--root", help="Dataset root folder (or the frame folder inside it).")],
    sample: Annotated[str, Opt("--sample", help="Sample id.")],
    out: Annotated[Path, Opt("--out", help="Output .mp4 or .gif; a .png contact sheet is written beside it.")],
    max_frames: Annotated[int, Opt("--max-frames", help="Frames on the contact sheet.")] = 16,
) -> None:
    """Write a sample's frames with mask overlay, athlete box and flag reasons as a video + contact sheet."""
    from hmtools.commands._checks import check_writable
    from hmtools.errors import InputError
    from pipelines.preview import write_preview

    if max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {max_frames}")
    check_writable(out, "--out")
    video, sheet = write_preview(store, root, sample, out, sheet_frames=max_frames)
    typer.echo(f"wrote {video} and {sheet}")
