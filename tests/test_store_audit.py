"""Audit of the store's promises: damaged files, busy stores and killed writers give one clear line.

* a store whose pages or JSON columns were damaged is reported by ``hmtools validate`` (exit 1,
  one line per problem) and read by other commands as one ``hmtools: error:`` line, never a traceback;
* a write that waits past the busy timeout for another process's lock is one ``StoreBusyError`` line
  (exit 1) and writes nothing;
* a writer killed in the middle of a schema upgrade leaves the store at its old schema, whole.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from _store_fixtures import (
    blob_mask,
    child_env,
    counted_rows,
    make_samples,
    older_store,
    pragma,
    progress_rows,
    raw_connect,
    wait_for,
)

from hmtools.cli import main
from hmtools.errors import DataFormatError, HMToolsError
from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check, store_stats
from hmtools.store_open import StoreBusyError, StoreDamagedError
from hmtools.store_schema import SCHEMA_VERSION
from hmtools.store_types import MaskWrite

REPO_ROOT = str(Path(__file__).resolve().parents[1])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Three samples of 40 frames with masks and per-athlete tracks; closed (no -wal)."""
    path = tmp_path / "masks.db"
    tracks = [{"track": 0, "bbox": [0.0, 0.0, 4.0, 4.0], "counts": None}]
    with MaskStore(path) as store:
        store.add_samples(make_samples(3, 40))
        for i in range(3):
            writes = [MaskWrite(mask=blob_mask(t, i), tracks=tracks) for t in range(40)]
            store.write_sample_masks(f"clip{i}/0", writes, author="build")
    return path


def edit_raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """Change a mask version behind the store's back (its append-only trigger dropped for the edit)."""
    with closing(raw_connect(path)) as raw:
        raw.execute("DROP TRIGGER masks_no_update")
        raw.execute(sql, params)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("bbox", "not json", "stored box not json but the RLE's box is"),
        ("bbox", "5", "stored box 5 but the RLE's box is"),
        ("tracks", "not json", "stored tracks 'not json' are not a JSON list"),
        ("tracks", '[{"track": 0, "bbox": [0, 0, 1, 1], "counts": "zz"}]', "track 0: RLE counts b'zz'"),
        ("tracks", '[{"track": "a", "bbox": [0, 0, 1]}]', "needs an integer track id and a bbox"),
    ],
)
def test_validate_reports_a_damaged_json_column_in_one_line(
    store_path: Path, column: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_raw(store_path, f"UPDATE masks SET {column}=? WHERE mask_id=3", (value,))
    code, out, err = run_cli(["validate", str(store_path)], capsys)
    assert (code, err) == (1, "")
    assert out.splitlines() == [out.splitlines()[0]] and out.startswith("frame clip0/0/00002.jpg v1: ")
    assert expected in out


def test_reading_a_version_with_damaged_tracks_is_a_data_format_error(store_path: Path) -> None:
    edit_raw(store_path, "UPDATE masks SET tracks='{oops' WHERE mask_id=3")
    with MaskStore(store_path, read_only=True) as store:
        with pytest.raises(DataFormatError, match=r"frame clip0/0/00002.jpg v1: stored tracks '\{oops' is not"):
            store.current_masks("clip0/0")
        assert store.current_mask("clip0/0/00003.jpg").tracks is not None  # the other versions still read


def damage_masks_pages(path: Path) -> None:
    """Overwrite the root page of the ``masks`` table (an interior page here) with garbage."""
    with closing(raw_connect(path)) as raw:
        root = raw.execute("SELECT rootpage FROM sqlite_master WHERE name='masks'").fetchone()[0]
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)


def test_a_store_with_damaged_pages_is_one_line_per_problem_never_a_traceback(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage_masks_pages(store_path)
    code, out, err = run_cli(["validate", str(store_path)], capsys)
    assert (code, err) == (1, "")
    assert out and all(line.startswith("sqlite: ") for line in out.splitlines())
    assert "malformed" in out or "corrupt" in out or "invalid page" in out
    code, out, err = run_cli(["stats", "--store", str(store_path)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"hmtools: error: mask store {store_path} is damaged (SQLite: ") and err.count("\n") == 1
    assert f"hmtools validate {store_path}" in err


def test_a_truncated_store_is_called_damaged_not_another_programs_file(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = store_path.read_bytes()
    store_path.write_bytes(data[: len(data) // 2])  # a copy cut short (a full disk, a killed cp)
    code, out, err = run_cli(["validate", str(store_path)], capsys)
    assert (code, err) == (1, "")
    assert out == "sqlite: database disk image is malformed (the store cannot be opened; restore it from a backup)\n"
    code, out, err = run_cli(["stats", "--store", str(store_path)], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"hmtools: error: mask store {store_path} is damaged (SQLite: database disk image")
    with pytest.raises(StoreDamagedError):
        MaskStore(store_path)
    assert store_path.read_bytes() == data[: len(data) // 2]


def test_validate_of_an_empty_file_says_it_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "masks.db"
    empty.write_bytes(b"")
    code, out, err = run_cli(["validate", str(empty)], capsys)
    assert (code, out) == (2, "")
    assert (
        err == f"hmtools: error: {empty} is an empty file, not a mask store or an export; pass the file hmtools wrote\n"
    )


def test_a_write_that_waits_past_the_busy_timeout_is_one_line_and_writes_nothing(store_path: Path) -> None:
    with MaskStore(store_path, busy_timeout_s=0.2) as store, closing(raw_connect(store_path)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
        with pytest.raises(StoreBusyError) as info:
            store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(9))], author="late")
        message = str(info.value)
        assert isinstance(info.value, HMToolsError) and info.value.exit_code == 1 and "\n" not in message
        assert message.startswith(f"mask store {store_path} is busy: another process") and "0.2 s" in message
        assert "nothing was written" in message
        with pytest.raises(StoreBusyError):
            store.put_mask("clip0/0/00000.jpg", MaskWrite(mask=blob_mask(9)), author="late", expected_version=1)
        assert store.query("SELECT COUNT(*) FROM masks")[0][0] == 120  # reads go on beside the writer
        other.execute("ROLLBACK")
        assert store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(9))], author="late") == 1
        assert integrity_check(store) == []


def test_import_into_a_store_another_process_is_writing_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: ``hmtools import`` whose store stays locked past the busy timeout."""
    from _exchange_fixtures import fill_store, write_frames
    from _exchange_fixtures import make_samples as aqa_samples

    from hmtools.datasets.index import DatasetIndex

    root = tmp_path / "root"
    write_frames(root, aqa_samples())
    monkeypatch.setattr(
        "hmtools.datasets.load_dataset",
        lambda name, root_dir, annotations=None, **options: DatasetIndex(
            name, Path(root_dir), Path(root_dir), aqa_samples()
        ),
    )
    with MaskStore(tmp_path / "a.db") as source:
        fill_store(source, aqa_samples())
    assert (
        run_cli(
            ["export", "--store", str(tmp_path / "a.db"), "--format", "coco", "--out", str(tmp_path / "c.json")], capsys
        )[0]
        == 0
    )
    target = tmp_path / "b.db"
    MaskStore(target).close()
    monkeypatch.setitem(MaskStore.__init__.__kwdefaults__, "busy_timeout_s", 0.2)
    args = ["import", "--dataset", "aqa7", "--root", str(root), "--store", str(target), "--format", "coco"]
    with closing(raw_connect(target)) as other:
        other.execute("BEGIN IMMEDIATE")  # build-masks (say) is in the middle of a write
        code, out, err = run_cli([*args, "--masks", str(tmp_path / "c.json")], capsys)
        other.execute("ROLLBACK")
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith(f"hmtools: error: mask store {target} is busy: another process")
    with MaskStore(target, read_only=True) as store:
        assert store_stats(store)["samples"] == 0  # nothing of the import was written


def test_an_upgrade_that_waits_past_the_busy_timeout_says_busy_not_a_permission_hint(tmp_path: Path) -> None:
    path = older_store(tmp_path / "old.db", 2)
    with closing(raw_connect(path)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusyError, match="is busy: another process") as info:
            MaskStore(path, busy_timeout_s=0.2)
        assert "writable" not in str(info.value)
        other.execute("ROLLBACK")
    assert pragma(path, "user_version") == 2


def test_stats_equal_a_recount_from_every_frames_history(tmp_path: Path) -> None:
    with MaskStore(tmp_path / "masks.db") as store:
        store.add_samples(make_samples(3, 6))
        store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t), score=0.5) for t in range(6)], author="b")
        store.write_sample_masks("clip1/0", [MaskWrite(mask=blob_mask(t), frame_idx=t) for t in (1, 4)], author="b")
        store.set_status({"clip0/0/00001.jpg": 1, "clip0/0/00002.jpg": 1}, "flagged", author="r", reason="blur; cut")
        store.set_status({"clip0/0/00002.jpg": 2}, "flagged", author="r", reason="blur")
        store.set_status({"clip1/0/00004.jpg": 1}, "accepted", author="r")
        store.put_mask(
            "clip0/0/00003.jpg", MaskWrite(mask=blob_mask(7), source="human"), author="r", expected_version=1
        )
        stats = store_stats(store)
        heads = [h[-1] for s in store.sample_ids() for f in store.frames(s) if (h := store.history(f.key))]
        assert all(len(store.history(f.key)) == f.head_version for s in store.sample_ids() for f in store.frames(s))
        assert stats["frames"] == 18 and stats["frames_with_mask"] == len(heads) == 8
        assert stats["by_source"] == {"auto": 7, "propagated": 0, "human": 1, "imported": 0}
        assert stats["by_status"] == {
            st: sum(r.status == st for r in heads) for st in ("unreviewed", "flagged", "accepted", "rejected")
        }
        assert stats["flag_reasons"] == {"blur": 2, "cut": 1}
        assert progress_rows(store) == counted_rows(store)


def write_once_when(reader: MaskStore, writer: MaskStore, fragment: str) -> list[bool]:
    """Make ``writer`` commit masks of clip2/0 (another process at work) just as ``reader`` starts
    the statement that contains ``fragment``; returns a list that gets ``True`` once it did."""
    done: list[bool] = []

    def trace(sql: str) -> None:
        if fragment in sql and not done:
            done.append(True)
            writer.write_sample_masks("clip2/0", [MaskWrite(mask=blob_mask(t)) for t in range(40)], author="late")

    reader._conn.set_trace_callback(trace)
    return done


def test_stats_of_a_store_in_use_come_from_one_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "masks.db"
    with MaskStore(path) as writer:
        writer.add_samples(make_samples(3, 40))
        writer.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t)) for t in range(40)], author="b")
        with MaskStore(path, read_only=True) as reader:
            done = write_once_when(reader, writer, "GROUP BY m.status")
            stats = store_stats(reader)
            assert done == [True]
            assert sum(stats["by_source"].values()) == sum(stats["by_status"].values()) == stats["frames_with_mask"]
            assert stats["frames_with_mask"] == 40  # the state when the report began
            assert store_stats(reader)["frames_with_mask"] == 80  # the next report sees the write


def test_validate_of_a_store_in_use_reports_no_problem_that_is_not_there(tmp_path: Path) -> None:
    path = tmp_path / "masks.db"
    with MaskStore(path) as writer:
        writer.add_samples(make_samples(3, 40))
        writer.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t)) for t in range(40)], author="b")
        with MaskStore(path, read_only=True) as reader:
            done = write_once_when(reader, writer, "FROM review_progress")
            assert integrity_check(reader) == []
            assert done == [True]
            assert integrity_check(reader) == []


MIGRATION_KILLED = """
import sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[3]]
import hmtools.store_schema as schema
from hmtools.store import MaskStore
marker, split = Path(sys.argv[2]), schema._statements
def parked(script):
    out = split(script)
    if "review_progress" in script:  # schema 3: park after its table is filled, before the triggers
        out.insert(2, "SELECT 1")
    return out
def trace(sql):
    if sql == "SELECT 1":
        marker.write_text("mid-upgrade")
        time.sleep(120)
import sqlite3
connect = sqlite3.connect
def traced(*args, **kwargs):
    conn = connect(*args, **kwargs)
    conn.set_trace_callback(trace)
    return conn
sqlite3.connect = traced
schema._statements = parked
MaskStore(sys.argv[1])
"""


def test_a_writer_killed_in_the_middle_of_an_upgrade_leaves_the_old_store_whole(tmp_path: Path) -> None:
    path = older_store(tmp_path / "old.db", 2)
    with MaskStore(path, read_only=True) as store:
        before = (store_stats(store), [store.history(f"clip{i}/0/{t:05d}.jpg") for i in range(4) for t in range(5)])
    marker = tmp_path / "parked"
    child = subprocess.Popen(
        [sys.executable, "-c", MIGRATION_KILLED, str(path), str(marker), REPO_ROOT], env=child_env()
    )
    try:
        wait_for(marker)  # review_progress created and filled, not committed
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert pragma(path, "user_version") == 2
    with closing(raw_connect(path)) as raw:
        assert raw.execute("SELECT name FROM sqlite_master WHERE name='review_progress'").fetchall() == []
    with MaskStore(path) as store:  # the next writer upgrades it, data kept
        assert pragma(path, "user_version") == SCHEMA_VERSION
        after = (store_stats(store), [store.history(f"clip{i}/0/{t:05d}.jpg") for i in range(4) for t in range(5)])
        assert after == before
        assert integrity_check(store) == []
        assert progress_rows(store) == counted_rows(store)
