"""``hmtools validate``: check a mask store or an export and list its problems."""

from __future__ import annotations

from pathlib import Path

from hmtools.errors import InputError


def validate_path(path: Path, root: Path | None = None) -> list[str]:
    """Problems of a store or an export at ``path``, one human-readable line each (empty = sound).

    Raises:
        InputError: ``path`` does not exist or is of no known kind.
    """
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a mask store file or an export made by hmtools export")
    if path.is_file() and _is_sqlite(path):
        from hmtools.store import MaskStore
        from hmtools.store_admin import integrity_check

        with MaskStore(path, create=False) as store:
            return integrity_check(store)
    raise InputError(f"{path} is not a mask store; validating exports comes with hmtools export")


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"
