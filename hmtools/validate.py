"""``hmtools validate``: check a mask store or an export and list its problems."""

from __future__ import annotations

from pathlib import Path

from hmtools.errors import InputError


def validate_path(path: Path, root: Path | None = None) -> list[str]:
    """Problems of a store or an export at ``path``, one human-readable line each (empty = sound).

    A store gets :func:`hmtools.store_admin.integrity_check`; an export (COCO or YouTube-VIS JSON,
    HDF5 file, FineParser folder) gets :func:`hmtools.exchange.validate_export`, which with
    ``root`` also compares every frame's size.

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
    from hmtools.exchange.validate_export import validate_export

    return validate_export(path, root=root)


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"
