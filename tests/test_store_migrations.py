"""Opening, creating and upgrading store files (schema versions in PRAGMA user_version)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from _store_fixtures import blob_mask, make_samples, raw_connect

from hmtools.errors import DataFormatError, InputError
from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check
from hmtools.store_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from hmtools.store_types import MaskWrite

TABLES = {"meta", "samples", "frames", "masks", "configs", "locks", "audit"}


def pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as c:
        return c.execute(f"PRAGMA {name}").fetchone()[0]


def names(path: Path, kind: str) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type=?", (kind,))}


def test_new_store_is_created_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "masks.db"
    MaskStore(path).close()
    assert pragma(path, "user_version") == SCHEMA_VERSION == len(MIGRATIONS)
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "journal_mode") == "wal"
    assert TABLES <= names(path, "table")
    assert {"masks_no_delete", "masks_no_update", "frames_head_forward"} <= names(path, "trigger")


def test_user_version_0_without_tables_gets_created(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    with sqlite3.connect(path) as c:  # a valid SQLite file: user_version 0, no tables
        c.execute("CREATE TABLE t (x)")
        c.execute("DROP TABLE t")
    assert pragma(path, "user_version") == 0 and path.stat().st_size > 0
    with MaskStore(path) as store:
        assert store.sample_ids() == []
    assert pragma(path, "user_version") == SCHEMA_VERSION and TABLES <= names(path, "table")
    zero = tmp_path / "zero.db"
    zero.write_bytes(b"")  # a 0-byte file is an empty database to SQLite: created with create=True
    MaskStore(zero).close()
    assert pragma(zero, "user_version") == SCHEMA_VERSION


def test_version_1_store_is_upgraded_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    c = raw_connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    c.close()
    assert "masks_by_frame" in names(path, "index")
    with MaskStore(path) as store:  # v1 -> v2 on open
        store.add_samples(make_samples(1, 3))
        store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t)) for t in range(3)], author="b")
    # simulate data written by a v1 build, then a reopen by this build: nothing lost, v2 in force
    with MaskStore(path, create=False) as store:
        np.testing.assert_array_equal(store.current_mask("clip0/0/00002.jpg").mask(), blob_mask(2))
        assert integrity_check(store) == []
        meta = dict(store.query("SELECT key, value FROM meta"))
        assert f"schema_{SCHEMA_VERSION}_at" in meta and "created" in meta
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert "masks_by_frame" not in names(path, "index")
    with raw_connect(path) as raw, pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        raw.execute("DELETE FROM masks")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    MaskStore(path).close()
    with raw_connect(path) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(InputError, match=f"schema {SCHEMA_VERSION + 1}.*upgrade hmtools"):
        MaskStore(path)


def test_other_programs_databases_are_refused_and_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE photos (id INTEGER)")
    before = foreign.read_bytes()
    with pytest.raises(DataFormatError, match="another program"):
        MaskStore(foreign)
    assert foreign.read_bytes() == before and names(foreign, "table") == {"photos"}
    tagged = tmp_path / "tagged.db"
    with sqlite3.connect(tagged) as c:
        c.execute("PRAGMA application_id = 1234")
    with pytest.raises(DataFormatError, match="application_id"):
        MaskStore(tagged)


def test_not_sqlite_and_missing_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("frame,mask\n" * 200)
    with pytest.raises(DataFormatError, match="not an hmtools mask store"):
        MaskStore(text)
    assert text.read_text() == "frame,mask\n" * 200
    with pytest.raises(InputError, match="no mask store"):
        MaskStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        MaskStore(empty, create=False)
    assert empty.read_bytes() == b""
