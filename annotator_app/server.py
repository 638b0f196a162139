"""Start the annotator: check the bind address and credentials, open the store, build the backend,
launch Gradio. Checks run before gradio is imported, so a refused start fails fast (exit 2)."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path

from hmtools.errors import InputError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(pairs: list[str], auth_file: Path | None) -> list[tuple[str, str]]:
    """Credentials from ``USER:PASS`` strings and/or a file with one ``USER:PASS`` per line
    (blank lines and ``#`` comments ignored).

    Raises:
        InputError: a malformed pair or an unreadable file.
    """
    lines = list(pairs)
    if auth_file is not None:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read --auth-file {auth_file}: {e}") from e
        lines += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    out = []
    for item in lines:
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise InputError(f"credentials must look like USER:PASS (both non-empty); got {item.split(':')[0]!r}:...")
        out.append((user, password))
    return out


def check_bind(host: str, auth: list[tuple[str, str]]) -> None:
    """Refuse to serve beyond this machine without authentication.

    Raises:
        InputError: ``host`` is not a loopback address and no credentials were given.
    """
    if not is_loopback(host) and not auth:
        raise InputError(
            f"--host {host} exposes the annotator beyond this machine; add --auth USER:PASS or --auth-file FILE, "
            "or bind --host 127.0.0.1"
        )


def serve(
    store: Path,
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    auth: list[tuple[str, str]] | None = None,
    segmenter: str = "sam_vit_h",
    checkpoint: Path | None = None,
    device: str = "cpu",
    cache_mb: float = 1024.0,
    lock_ttl_s: float = 300.0,
    user: str = "annotator",
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the annotator until interrupted (blocking).

    ``announce`` gets the URL actually bound (the port may be the first free one from 7860), once
    the store, root and backend have opened and the server listens.

    Raises:
        InputError: refused bind (see :func:`check_bind`), missing store or root, a store this process
            cannot write (the store's own check on opening for writing).
    """
    auth = auth or []
    check_bind(host, auth)
    from annotator_app.backend import build_backend
    from annotator_app.frames import FrameSource
    from annotator_app.state import AppContext
    from hmtools.frame_root import store_frame_root
    from hmtools.store import MaskStore

    mask_store = MaskStore(store, create=False)
    if root.is_dir():  # the dataset root or its frame folder: the keys are relative to the latter
        root = store_frame_root(mask_store, root)
    frames = FrameSource(root)
    backend = build_backend(segmenter, checkpoint, device, cache_mb)
    ctx = AppContext(store=mask_store, frames=frames, backend=backend, lock_ttl_s=lock_ttl_s, default_user=user)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from annotator_app.app import build_app
    from annotator_app.shortcuts import CSS, shortcuts_head

    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=8)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            auth=auth or None,
            head=shortcuts_head(),
            css=CSS,
            show_error=True,
            quiet=True,
            auth_message="hmtools annotate: log in with your annotator account",
            prevent_thread_lock=True,
        )
        if announce is not None:
            announce(str(demo.local_url))
        demo.block_thread()
    finally:
        backend.close()
        mask_store.close()
