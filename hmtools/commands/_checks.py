"""Checks the commands run on their output paths before any work, so bad input fails fast (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

from hmtools.errors import InputError


def check_writable(path: Path, option: str) -> None:
    """Refuse an output path whose folder cannot be created or written.

    The nearest existing folder above ``path`` must be a writable folder: a file there (``--out
    notes.txt/run``) or a read-only folder would otherwise fail half-way with an OS traceback.

    Raises:
        InputError: a file sits where a folder is needed, or that folder is not writable.
    """
    parent = Path(path).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: {parent} is a file, not a folder; pick another {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"{option} {path}: folder {parent} is not writable (read-only or no permission); "
            f"pick another {option} or make the folder writable"
        )
