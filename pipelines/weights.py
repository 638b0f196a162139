"""Model weights on disk: checksums, a per-user cache, and verified one-time downloads.

Nothing here runs unless a caller asks for a named model whose weights are not on disk yet.
Downloads stream into ``<dest>.<pid>.partial`` beside the target, hash while writing, and are renamed
into place only when the sha256 matches, so an interrupted or corrupt download never leaves a
file that looks complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from hmtools.errors import HMToolsError, InputError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def cache_dir() -> Path:
    """The weights cache: ``$HMTOOLS_CACHE`` or ``~/.cache/hmtools`` (created on first download)."""
    env = os.environ.get("HMTOOLS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hmtools"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(url: str, dest: Path, sha256: str, *, timeout_s: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right sha256 is already there.

    Args:
        url: Where the file lives (http or https).
        dest: Final path; its folder is created.
        sha256: Expected lowercase hex digest.
        timeout_s: Socket timeout per read.

    Returns:
        ``dest``.

    Raises:
        HMToolsError: the download failed or its checksum differs (no file is left behind).
    """
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")  # per process: ranks may race
    digest = hashlib.sha256()
    log.warning("downloading %s -> %s (once; cached afterwards)", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(partial, "wb") as out:
            for block in iter(lambda: resp.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError) as e:
        partial.unlink(missing_ok=True)
        raise HMToolsError(f"could not download {url} ({e}); download it by hand and pass its path instead") from e
    got = digest.hexdigest()
    if got != sha256:
        partial.unlink(missing_ok=True)
        raise HMToolsError(f"{url} has sha256 {got}, expected {sha256}; nothing was saved, try again later")
    os.replace(partial, dest)
    return dest


def require_file(path: Path, what: str, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise one line naming what to pass.

    Raises:
        InputError: the file does not exist (exit 2).
    """
    if not path.is_file():
        raise InputError(f"{what} {path} not found; {hint}")
    return path
