"""Opening, creating and upgrading store files (schema versions in PRAGMA user_version)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from _store_fixtures import (
    blob_mask,
    counted_rows,
    make_samples,
    names,
    older_store,
    pragma,
    progress_rows,
    raw_connect,
    reviewed_store,
)

from hmtools.errors import DataFormatError, InputError
from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check
from hmtools.store_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from hmtools.store_types import MaskWrite

TABLES = {"meta", "samples", "frames", "masks", "configs", "locks", "audit"}


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


def test_version_2_store_gets_review_progress_from_its_data(tmp_path: Path) -> None:
    path = older_store(tmp_path / "v2.db", 2)  # what a store written by the previous hmtools holds
    assert "review_progress" not in names(path, "table")
    with MaskStore(path, create=False) as store:  # v2 -> v3 -> v4 on open
        assert pragma(path, "user_version") == SCHEMA_VERSION == 4
        assert "masks_flagged" in names(path, "index")
        assert {"progress_frame_insert", "progress_frame_delete", "progress_frame_update"} <= names(path, "trigger")
        assert progress_rows(store) == counted_rows(store)
        assert progress_rows(store)[("clip1/0", "flagged")] == 1 and progress_rows(store)[("clip3/0", "none")] == 5
        store.set_status({"clip1/0/00003.jpg": 1}, "accepted", author="r")  # the triggers keep it from here on
        assert progress_rows(store) == counted_rows(store) and ("clip1/0", "flagged") not in progress_rows(store)
        assert integrity_check(store) == []


def test_review_progress_follows_every_write_and_raw_sql(tmp_path: Path) -> None:
    path = tmp_path / "masks.db"
    with reviewed_store(path) as store:
        assert progress_rows(store) == counted_rows(store)
        store.add_samples(make_samples(4, 7)[3:])  # clip3/0 has no masks: re-registered with 7 frames instead of 5
        store.add_samples(make_samples(1, 2, prefix="new"))
        store.write_sample_masks("new0/0", [MaskWrite(mask=blob_mask(0), frame_idx=1)], author="b")
        store.set_status({"clip2/0/00004.jpg": 2}, "flagged", author="r", reason="again")
        assert progress_rows(store) == counted_rows(store)
        assert progress_rows(store)[("clip3/0", "none")] == 7 and progress_rows(store)[("new0/0", "none")] == 1
        with raw_connect(path) as raw:  # a writer behind hmtools' back is counted too
            frame_id = raw.execute("SELECT frame_id FROM frames WHERE key='clip3/0/00000.jpg'").fetchone()[0]
            raw.execute(
                "INSERT INTO masks (frame_id, version, height, width, counts, area, bbox, source, status, author, created_at) "
                "SELECT ?, 1, height, width, counts, area, bbox, 'human', 'accepted', 'raw', 0 FROM masks WHERE mask_id=1",
                (frame_id,),
            )
            raw.execute("UPDATE frames SET head_version=1, height=24, width=32 WHERE frame_id=?", (frame_id,))
        assert progress_rows(store) == counted_rows(store) and progress_rows(store)[("clip3/0", "none")] == 6
        assert integrity_check(store) == []
        with raw_connect(path) as raw:  # a count that no longer agrees is reported by validate
            raw.execute("UPDATE review_progress SET n=n+1 WHERE sample_id='clip0/0' AND status='accepted'")
        assert integrity_check(store) == ["sample clip0/0: review_progress counts 2 frames accepted, the frames hold 1"]


def test_queue_and_next_flagged_read_review_progress_with_the_same_answers(tmp_path: Path) -> None:
    from annotator_app.review_queue import next_flagged, queue_rows

    store = reviewed_store(tmp_path / "masks.db")
    store.set_status({"clip0/0/00004.jpg": 1, "clip2/0/00000.jpg": 1}, "flagged", author="r")
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    rows = queue_rows(store)
    assert [r.as_list()[:9] for r in rows] == [
        ["clip0/0", "", "train", 5, 1, 1, 0, 3, 0],  # 00001.jpg was edited after its accept: unreviewed again
        ["clip1/0", "", "train", 5, 0, 1, 0, 4, 0],
        ["clip2/0", "", "train", 5, 0, 1, 1, 3, 0],
        ["clip3/0", "", "train", 5, 0, 0, 0, 0, 5],
    ]
    assert [r.sample_id for r in queue_rows(store, status="has flagged")] == ["clip0/0", "clip1/0", "clip2/0"]
    order = [("clip0/0", 4), ("clip1/0", 3), ("clip2/0", 0)]
    assert next_flagged(store, None, "me") == order[0]
    for here, there in zip(order, [*order[1:], order[0]], strict=True):  # in order, then wrapping around
        assert next_flagged(store, here, "me") == there
    assert next_flagged(store, ("clip1/0", 2), "me") == ("clip1/0", 3)
    assert next_flagged(store, None, "me", split="test") is None
    # the flag-reason filter reads the index of flagged versions (schema 4), not every newest mask
    store.set_status({"clip2/0/00000.jpg": 2}, "flagged", author="r", reason="area jump")
    assert [r.sample_id for r in queue_rows(store, reason="AREA")] == ["clip2/0"]
    assert next_flagged(store, None, "me", reason="area jump") == ("clip2/0", 0)
    assert next_flagged(store, ("clip2/0", 0), "me", reason="area jump") == ("clip2/0", 0)  # wraps to itself
    assert queue_rows(store, reason="nothing like it") == [] and next_flagged(store, None, "me", reason="zz") is None
    store._conn.set_trace_callback(None)
    for sql in dict.fromkeys(s for s in seen if s.startswith("SELECT")):  # no pass over every frame or mask
        plan = " | ".join(r[3] for r in store.query("EXPLAIN QUERY PLAN " + sql))
        plan = plan.replace("SCAN m USING INDEX masks_flagged", "flagged versions")
        assert "SCAN f" not in plan and "SCAN m" not in plan, plan
    store.close()
