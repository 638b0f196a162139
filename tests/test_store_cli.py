"""``hmtools stats`` and ``hmtools validate`` on real store files: output, exit codes, error lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _store_fixtures import blob_mask, child_env, make_samples, raw_connect
from PIL import Image

from hmtools.cli import main
from hmtools.masks import encode_rle
from hmtools.store import MaskStore
from hmtools.store_schema import SCHEMA_VERSION
from hmtools.store_types import MaskWrite


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "masks.db"
    with MaskStore(path) as store:
        store.add_samples(make_samples(2, 3))
        store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t)) for t in range(3)], author="build")
        store.set_status({"clip0/0/00000.jpg": 1}, "flagged", author="rev", reason="blur")
    return path


def test_stats_json_shape(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["stats", "--store", str(store_path), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert {"samples", "frames", "frames_with_mask", "by_source", "by_status"} <= set(report)
    assert (report["samples"], report["frames"], report["frames_with_mask"]) == (2, 6, 3)
    assert report["by_source"] == {"auto": 3, "propagated": 0, "human": 0, "imported": 0}
    assert report["by_status"] == {"unreviewed": 2, "flagged": 1, "accepted": 0, "rejected": 0}
    assert all(isinstance(v, int) for v in [*report["by_source"].values(), *report["by_status"].values()])


def test_stats_text(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["stats", "--store", str(store_path)], capsys)
    assert code == 0
    assert "samples 2  frames 6  with mask 3" in out and "flagged: blur: 1" in out


def test_validate_clean_store(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["validate", str(store_path)], capsys)
    assert code == 0 and out.strip() == f"{store_path}: ok"


def test_validate_reports_a_corrupted_mask(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = raw_connect(store_path)
    frame_id = raw.execute("SELECT frame_id FROM frames WHERE key='clip1/0/00002.jpg'").fetchone()[0]
    counts = encode_rle(blob_mask(0))["counts"]  # a 24x32 mask ...
    raw.execute(
        "INSERT INTO masks (frame_id, version, height, width, counts, area, source, status, author, created_at) "
        "VALUES (?, 1, 24, 31, ?, 5, 'human', 'accepted', 'hand', 0)",  # ... claimed to be 24x31
        (frame_id, counts),
    )
    raw.execute("UPDATE frames SET head_version=1, height=24, width=31 WHERE frame_id=?", (frame_id,))
    raw.close()
    code, out, _ = run_cli(["validate", str(store_path)], capsys)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("frame clip1/0/00002.jpg v1: RLE counts")
    assert "runs cover 768 pixels but H*W = 744" in lines[0]


@pytest.mark.parametrize("command", [["stats", "--store"], ["validate"]])
def test_not_sqlite_gives_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    junk = tmp_path / "masks.db"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    code, out, err = run_cli([*command, str(junk)], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("hmtools: error: ")
    assert "not" in err and str(junk) in err


def test_missing_and_newer_stores_give_exit_2(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["stats", "--store", str(tmp_path / "nope.db")], capsys)
    assert code == 2 and "no mask store" in err
    with raw_connect(store_path) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    code, _, err = run_cli(["validate", str(store_path)], capsys)
    assert code == 2 and "upgrade hmtools" in err and len(err.strip().splitlines()) == 1


def test_real_cli_process(store_path: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "hmtools", "stats", "--store", str(store_path), "--json"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["frames_with_mask"] == 3
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all, just text\n" * 50)
    bad = subprocess.run(
        [sys.executable, "-m", "hmtools", "stats", "--store", str(junk)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "is not an hmtools mask store" in bad.stderr


def test_read_only_commands_leave_an_older_store_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from _store_fixtures import file_state, files_beside, older_store

    path = older_store(tmp_path / "store" / "masks.db", 2)
    before = file_state(path)
    root = tmp_path / "frames"
    for t in range(5):
        (root / "clip1/0").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24, 32, 3), 40 * t, np.uint8)).save(root / f"clip1/0/{t:05d}.jpg")
    p = str(path)
    outputs = {
        "stats": ["stats", "--store", p, "--json"],
        "validate": ["validate", p],
        "export": ["export", "--store", p, "--format", "coco", "--out", str(tmp_path / "m.json")],
        "preview": [
            "preview",
            "--store",
            p,
            "--root",
            str(root),
            "--sample",
            "clip1/0",
            "--out",
            str(tmp_path / "p.gif"),
        ],
    }
    for name, argv in outputs.items():
        caplog.clear()
        code, out, err = run_cli(argv, capsys)
        assert code == 0, err
        assert file_state(path) == before and files_beside(path) == {"masks.db"}, name
        notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(notes) == 1 and "store schema 2" in notes[0] and "upgrade it in place" in notes[0], name
        outputs[name] = out
    real = subprocess.run(  # outside pytest's log capture the note is one line on stderr
        [sys.executable, "-m", "hmtools", "stats", "--store", p],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert real.returncode == 0 and real.stdout.startswith("samples 4  frames 20  with mask 15")
    assert len(real.stderr.strip().splitlines()) == 1 and "written by an older hmtools" in real.stderr
    assert file_state(path) == before and files_beside(path) == {"masks.db"}
    report = json.loads(outputs["stats"])
    assert (report["samples"], report["frames"], report["frames_with_mask"]) == (4, 20, 15)
    assert report["by_status"] == {"unreviewed": 12, "flagged": 1, "accepted": 1, "rejected": 1}
    assert report["by_source"] == {"auto": 14, "propagated": 0, "human": 1, "imported": 0}
    assert outputs["validate"].strip() == f"{path}: ok"
    assert "15 masks" in outputs["export"] and len(json.loads((tmp_path / "m.json").read_text())["annotations"]) == 15
    assert (tmp_path / "p.gif").is_file() and (tmp_path / "p_sheet.png").is_file()


def test_read_only_commands_create_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "store" / "missing.db")
    (tmp_path / "store").mkdir()
    for argv in (
        ["stats", "--store", missing],
        ["validate", missing],
        ["export", "--store", missing, "--format", "hdf5", "--out", str(tmp_path / "m.h5")],
        ["preview", "--store", missing, "--root", str(tmp_path), "--sample", "a/1", "--out", str(tmp_path / "p.gif")],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("hmtools: error: ")
        assert "missing.db" in err
        assert list((tmp_path / "store").iterdir()) == []


def test_a_symlinked_store_is_read_with_the_wal_beside_its_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite follows a symlinked store file to the -wal beside its target; the -wal was looked for
    beside the link, so a crashed writer's -wal was checkpointed into the file and deleted (or, for a
    read-only file, ignored under ``immutable=1``: its commits went unseen)."""
    import shutil
    from contextlib import closing

    from _store_fixtures import file_state, files_beside, reviewed_store

    reviewed_store(tmp_path / "w" / "masks.db").close()
    crashed = tmp_path / "crashed" / "masks.db"
    crashed.parent.mkdir()
    with closing(raw_connect(tmp_path / "w" / "masks.db")) as writer:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE samples SET split='test' WHERE sample_id='clip0/0'")
        for suffix in ("", "-wal", "-shm"):  # what a writer killed now leaves: its commit only in the -wal
            shutil.copy(f"{writer.execute('PRAGMA database_list').fetchone()[2]}{suffix}", f"{crashed}{suffix}")
    link = tmp_path / "link" / "masks.db"
    link.parent.mkdir()
    link.symlink_to(crashed)
    before, wal = file_state(crashed), Path(f"{crashed}-wal").read_bytes()
    code, out, err = run_cli(["stats", "--store", str(link), "--json"], capsys)
    assert code == 0 and json.loads(out)["samples"] == 4, err
    assert file_state(crashed) == before and Path(f"{crashed}-wal").read_bytes() == wal
    assert files_beside(crashed) == {"masks.db", "masks.db-wal", "masks.db-shm"} and files_beside(link) == {"masks.db"}
    if os.geteuid() != 0:  # a read-only target was opened immutable=1, which ignores the -wal
        crashed.chmod(0o444)
    with MaskStore(link, read_only=True) as store:  # the commit in the -wal is read
        assert store.query("SELECT split FROM samples WHERE sample_id='clip0/0'") == [("test",)]
    assert file_state(crashed) == before and Path(f"{crashed}-wal").read_bytes() == wal


def test_no_room_for_the_upgraded_copy_says_where_it_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older store is read through a copy in SQLite's temporary folder; when that is full the
    error told the user to copy the store to a writable folder, which does not help."""
    import sqlite3

    from _store_fixtures import older_store

    path = older_store(tmp_path / "masks.db", 2)
    connect = sqlite3.connect

    def small_temp(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(database, *args, **kwargs)
        if database == "":  # the private temporary copy: room for 5 pages only
            conn.execute("PRAGMA max_page_count=5")
        return conn

    monkeypatch.setattr(sqlite3, "connect", small_temp)
    code, out, err = run_cli(["stats", "--store", str(path)], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "database or disk is full" in err and "SQLITE_TMPDIR" in err and "writable folder" not in err
