"""The ``annotate`` command: serve the browser annotator over a mask store."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer


def annotate(
    store: Annotated[Path, typer.Option("--store", help="Mask store file (SQLite) to correct.")],
    root: Annotated[
        Path,
        typer.Option("--root", help="Dataset root, or the frame folder inside it, that the store's frames come from."),
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind. Anything but loopback requires --auth or --auth-file.")
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", help="Port (default: first free from 7860).")] = None,
    auth: Annotated[
        list[str] | None, typer.Option("--auth", help="USER:PASS of an annotator; repeat for several.")
    ] = None,
    auth_file: Annotated[Path | None, typer.Option("--auth-file", help="File of USER:PASS lines.")] = None,
    segmenter: Annotated[
        str,
        typer.Option(
            "--segmenter",
            help="SAM model of pipelines.segment (e.g. sam_vit_h, sam_vit_b), or 'fake' (no model: a disk "
            "around the clicks; for demos and tests only).",
        ),
    ] = "sam_vit_h",
    sam_checkpoint: Annotated[Path | None, typer.Option("--sam-checkpoint", help="SAM checkpoint file.")] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device for SAM: auto, cuda, cuda:1, cpu.")] = "auto",
    cache_mb: Annotated[float, typer.Option("--cache-mb", min=0.0, help="Image-embedding cache size in MB.")] = 2048.0,
    lock_ttl: Annotated[
        float, typer.Option("--lock-ttl", min=1.0, help="Seconds a sample stays locked after activity (>= 1).")
    ] = 300.0,
    user: Annotated[str | None, typer.Option("--user", help="Author name without --auth (default: OS user).")] = None,
) -> None:
    """Correct masks in a browser: SAM clicks, brush, propagation, review; every edit is saved at once."""
    from annotator_app.server import check_bind, parse_auth, serve
    from hmtools.errors import InputError

    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"--port must be 1-65535, got {port}; leave it out to take the first free port from 7860")
    try:
        credentials = parse_auth(auth or [], auth_file)
    except UnicodeDecodeError as e:
        raise InputError(
            f"--auth-file {auth_file} is not UTF-8 text ({e.reason}); pass a file of USER:PASS lines"
        ) from e
    check_bind(host, credentials)
    serve(
        store,
        root,
        host=host,
        port=port,
        auth=credentials,
        segmenter=segmenter,
        checkpoint=sam_checkpoint,
        device=device,
        cache_mb=cache_mb,
        lock_ttl_s=lock_ttl,
        user=user or getpass.getuser(),
        announce=lambda url: typer.echo(f"hmtools annotate: serving {store} on {url} (Ctrl+C to stop)"),
    )
