"""Read-only opens (stats, validate, export, preview, train --masks): never change the store file,
read an older schema through an upgraded private copy, work on read-only files and folders."""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from _store_fixtures import (
    counted_rows,
    file_state,
    files_beside,
    make_samples,
    names,
    older_store,
    progress_rows,
    reviewed_store,
)
from PIL import Image

from hmtools.errors import DataFormatError, InputError
from hmtools.exchange import ExportOptions
from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check
from hmtools.store_schema import SCHEMA_VERSION


def read_like_the_read_only_commands(path: Path, work: Path) -> dict[str, object]:
    """What stats, validate, export, preview and train --masks make of the store at ``path`` (as library calls)."""
    from hmtools.exchange import export_store
    from hmtools.store_admin import store_stats
    from hmtools.validate import validate_path
    from pipelines.preview import write_preview
    from uni_fineparser.mask_source import open_mask_source

    work.mkdir(exist_ok=True)
    with MaskStore(path, read_only=True) as store:
        stats = store_stats(store)
        progress = progress_rows(store)
        samples = [store.get_sample(s) for s in store.sample_ids()]
    source = open_mask_source(path)
    masks = {s.sample_id: source.read(s) for s in samples}
    source.store.close()
    frames = work / "frames"
    for s in samples:
        for t, key in enumerate(s.frames):
            (frames / key).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((24, 32, 3), 40 * t, np.uint8)).save(frames / key)
    preview = write_preview(path, frames, "clip1/0", work / "prev.gif")
    return {
        "stats": stats,
        "progress": progress,
        "validate": validate_path(path),
        "export": export_store(path, "coco", work / "masks.json", options=ExportOptions(overwrite=True)).counts,
        "preview": all(p.is_file() for p in preview),
        "masks": {k: [None if m is None else m.tobytes() for m in v] for k, v in masks.items()},
    }


@pytest.fixture
def expected(tmp_path: Path) -> dict[str, object]:
    """What the read-only commands make of a current store holding the same data."""
    path = tmp_path / "ref" / "current.db"
    reviewed_store(path).close()
    return read_like_the_read_only_commands(path, tmp_path / "ref")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_only_commands_read_an_older_store_without_changing_it(
    tmp_path: Path, version: int, expected: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    path = older_store(tmp_path / "old" / "masks.db", version)
    before = file_state(path)
    assert before[1] == version
    caplog.clear()
    got = read_like_the_read_only_commands(path, tmp_path / "work")
    assert got == expected and got["validate"] == [] and got["stats"]["frames_with_mask"] == 15
    assert file_state(path) == before  # same bytes, same schema: the older hmtools still opens it
    assert files_beside(path) == {"masks.db"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 5  # one per opening: stats, the training source, preview, validate, export
    assert f"store schema {version}" in warnings[0] and "upgrade it in place" in warnings[0]


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = older_store(tmp_path / "masks.db", 2)
    before = file_state(path)
    with MaskStore(path, read_only=True) as store:
        with pytest.raises(InputError, match="opened read-only"):
            store.set_status({"clip1/0/00003.jpg": 1}, "accepted", author="r")
        with pytest.raises(InputError, match="opened read-only"):
            store.add_samples(make_samples(1, 2, prefix="new"))
        assert store.current_mask("clip1/0/00003.jpg").status == "flagged"
    assert file_state(path) == before


def test_read_only_open_of_a_current_store_sees_writers_and_leaves_no_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "masks.db"
    reviewed_store(path).close()
    before = file_state(path)
    with MaskStore(path, read_only=True) as store:
        assert store.current_mask("clip1/0/00003.jpg").version == 1
    assert file_state(path) == before and files_beside(path) == {"masks.db"}
    assert not caplog.records  # nothing to say about a current store
    with MaskStore(path, read_only=True) as reader:  # WAL as before: a writer goes on beside a reader
        with MaskStore(path) as writer:
            writer.set_status({"clip1/0/00003.jpg": 1}, "accepted", author="r")
        assert reader.current_mask("clip1/0/00003.jpg").version == 2
    assert files_beside(path) == {"masks.db"}


def test_read_only_open_creates_nothing_where_there_is_no_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no mask store"):
        MaskStore(tmp_path / "sub" / "missing.db", read_only=True)
    with pytest.raises(InputError, match="no mask store"):
        MaskStore(tmp_path / "missing.db", read_only=True)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        MaskStore(empty, read_only=True)
    foreign = tmp_path / "other.db"
    with closing(sqlite3.connect(foreign)) as c:
        c.execute("CREATE TABLE photos (id INTEGER)")
    before = file_state(foreign)
    with pytest.raises(DataFormatError, match="another program"):
        MaskStore(foreign, read_only=True)
    assert file_state(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "other.db"]
    assert empty.read_bytes() == b""


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
@pytest.mark.parametrize("version", [2, SCHEMA_VERSION])
def test_read_only_commands_work_on_a_read_only_file_and_folder(
    tmp_path: Path, version: int, expected: dict[str, object]
) -> None:
    path = tmp_path / "released" / "masks.db"
    if version == SCHEMA_VERSION:
        reviewed_store(path).close()
    else:
        older_store(path, version)
    folder = path.parent
    before = file_state(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        assert read_like_the_read_only_commands(path, tmp_path / "work") == expected
        with pytest.raises(InputError, match="cannot open mask store"):  # a writer cannot, and says so
            MaskStore(path).set_status({"clip1/0/00003.jpg": 1}, "accepted", author="r")
        assert file_state(path) == before and files_beside(path) == {"masks.db"}
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_a_writer_still_upgrades_an_older_store_in_place(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = older_store(tmp_path / "masks.db", 1)
    MaskStore(path, read_only=True).close()
    assert file_state(path)[1] == 1 and len(caplog.records) == 1
    with MaskStore(path, create=False) as store:  # e.g. annotate or build-masks: upgraded in place, in one transaction
        assert progress_rows(store) == counted_rows(store) and integrity_check(store) == []
    assert file_state(path)[1] == SCHEMA_VERSION and "review_progress" in names(path, "table")
    assert "masks_by_frame" not in names(path, "index")
    caplog.clear()
    before = file_state(path)
    MaskStore(path, read_only=True).close()
    assert not caplog.records and file_state(path) == before
