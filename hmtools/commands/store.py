"""Store commands: ``stats`` and ``validate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

StoreOpt = Annotated[Path, typer.Option("--store", help="Mask store file (SQLite).")]


def stats(
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Coverage, review progress and flag reasons of a mask store."""
    from hmtools.store import MaskStore
    from hmtools.store_admin import store_stats

    with MaskStore(store, read_only=True) as st:
        report = store_stats(st)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    typer.echo(f"samples {report['samples']}  frames {report['frames']}  with mask {report['frames_with_mask']}")
    typer.echo("by source: " + ", ".join(f"{k} {v}" for k, v in report["by_source"].items()))
    typer.echo("by status: " + ", ".join(f"{k} {v}" for k, v in report["by_status"].items()))
    for reason, n in report["flag_reasons"].items():
        typer.echo(f"flagged: {reason}: {n}")


def validate(
    path: Annotated[Path, typer.Argument(help="A mask store file or an export (file or folder).")],
    root: Annotated[
        Path | None, typer.Option("--root", help="Dataset root (or its frame folder), to check frame sizes.")
    ] = None,
) -> None:
    """Check a store or an export; one line per problem, exit 1 when there is any."""
    from hmtools.validate import validate_path

    problems = validate_path(path, root=root)
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{path}: ok")
