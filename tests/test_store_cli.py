"""``hmtools stats`` and ``hmtools validate`` on real store files: output, exit codes, error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _store_fixtures import blob_mask, child_env, make_samples, raw_connect

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
