"""``hmtools validate``: check a mask store or an export and list its problems."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hmtools.errors import InputError

if TYPE_CHECKING:
    from hmtools.store import MaskStore


def validate_path(path: Path, root: Path | None = None) -> list[str]:
    """Problems of a store or an export at ``path``, one human-readable line each (empty = sound).

    A store gets :func:`hmtools.store_admin.integrity_check` (one ``sqlite: ...`` line when it is too
    damaged to open; with ``root``, every frame whose size the store knows is also compared with the
    image under ``root``); an export (COCO or YouTube-VIS JSON, HDF5 file, FineParser folder) gets :func:`hmtools.exchange.validate_export`, which with
    ``root`` also compares every frame's size.

    Raises:
        InputError: ``path`` does not exist, is empty or is of no known kind; ``root`` is not a folder.
    """
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a mask store file or an export made by hmtools export")
    if root is not None and not root.is_dir():
        raise InputError(f"--root {root} is not a folder; pass the dataset root the frame keys are relative to")
    if path.is_file() and path.stat().st_size == 0:  # a copy or an export that never got written
        raise InputError(f"{path} is an empty file, not a mask store or an export; pass the file hmtools wrote")
    if path.is_file() and _is_sqlite(path):
        from hmtools.store import MaskStore
        from hmtools.store_admin import integrity_check
        from hmtools.store_open import StoreDamagedError

        try:
            store = MaskStore(path, read_only=True)
        except StoreDamagedError as e:  # a store by its header that SQLite cannot open: its one problem
            return [f"sqlite: {e.__cause__ or e} (the store cannot be opened; restore it from a backup)"]
        with store:
            return integrity_check(store) + ([] if root is None else _store_frame_sizes(store, root))
    from hmtools.exchange.validate_export import validate_export

    return validate_export(path, root=root)


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _store_frame_sizes(store: MaskStore, root: Path) -> list[str]:
    """One line per frame of the store whose image under ``root`` is missing or of another size.
    ``root`` may also be a folder that holds the frame folder (:func:`~hmtools.frame_root.store_frame_root`)."""
    from hmtools.exchange.sink import read_image_size
    from hmtools.frame_root import store_frame_root

    root = store_frame_root(store, root)
    problems = []
    for sample_id in store.sample_ids():
        for frame in store.frames(sample_id):
            if frame.height is None:
                continue
            size = read_image_size(root / frame.key)
            if size is None:
                problems.append(f"{frame.key}: no readable frame under --root {root}")
            elif size != (frame.height, frame.width):
                problems.append(
                    f"{frame.key}: store says {frame.height}x{frame.width}, frame under --root is {size[0]}x{size[1]}"
                )
    return problems
