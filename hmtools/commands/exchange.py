"""Exchange commands: ``export`` and ``import``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from hmtools.commands.dataset import AnnotationsOpt, DatasetOpt, RootOpt, ScaleOpt

StoreOpt = Annotated[Path, typer.Option("--store", help="Mask store file (SQLite).")]


def export(
    store: StoreOpt,
    fmt: Annotated[str, typer.Option("--format", help="coco, ytvis, hdf5 or fineparser.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (a folder for fineparser).")],
    samples: Annotated[
        list[str] | None, typer.Option("--samples", help="Sample ids to export (repeat or comma-separate).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only masks with these review statuses, e.g. accepted,flagged."),
    ] = None,
    image_format: Annotated[str, typer.Option("--image-format", help="fineparser: jpg or png.")] = "jpg",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Export the newest masks of a store, atomically, with a manifest (formats: docs/formats.md)."""
    from hmtools.commands._checks import check_writable
    from hmtools.exchange import ExportOptions, Selection, export_store

    check_writable(out, "--out")
    ids = None if samples is None else tuple(s for arg in samples for s in arg.split(",") if s)
    statuses = None if status is None else tuple(s.strip() for s in status.split(",") if s.strip())
    options = ExportOptions(image_format=image_format, overwrite=overwrite, progress=True)
    result = export_store(store, fmt, out, Selection(ids, statuses), options)
    c = result.counts
    typer.echo(
        f"wrote {result.out} ({fmt}): {c.samples} samples, {c.masks} masks ({c.empty_masks} empty), "
        f"{c.frames_without_mask} frames without a mask, {c.samples_without_masks} samples skipped (no mask)"
    )


def import_masks(
    dataset: DatasetOpt,
    root: RootOpt,
    store: StoreOpt,
    fmt: Annotated[str, typer.Option("--format", help="fineparser (mask folder), coco, ytvis or hdf5.")],
    masks: Annotated[Path, typer.Option("--masks", help="The mask folder or file to import.")],
    annotations: AnnotationsOpt = None,
    score_scale: ScaleOpt = "auto",
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Fail (import nothing) on frames without a mask or masks without a frame."),
    ] = False,
) -> None:
    """Register a dataset's samples and attach masks to them by frame key, in one transaction."""
    from hmtools.commands._checks import check_writable
    from hmtools.datasets import load_dataset
    from hmtools.exchange import import_masks as run_import
    from hmtools.store import MaskStore

    check_writable(store, "--store")
    options = {"score_scale": score_scale} if dataset.replace("_", "-").lower() == "aqa7" else {}
    index = load_dataset(dataset, root, annotations, **options)
    existed = store.exists()
    try:
        with MaskStore(store) as st:
            # frame keys are relative to the frame folder the adapter found (index.root), which may lie
            # inside --root (FineDiving's FINADiving_MTL_256s/, MTL-AQA's whole_videos_frames/, AQA-7/AQA-7/)
            report = run_import(
                st, index.samples, fmt, masks, root=index.root, strict=strict, progress=True, fork_workers=True
            )
    except BaseException:
        if not existed:  # a store this failed import created holds nothing: leave no file behind
            for leftover in (store, *(store.with_name(store.name + x) for x in ("-wal", "-shm", "-journal"))):
                with contextlib.suppress(OSError):  # a read-only folder: keep the original error
                    leftover.unlink(missing_ok=True)
        raise
    for line in report.lines():
        typer.echo(line)
