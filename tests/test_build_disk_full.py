"""build-masks when the store's disk fills up, or its file system turns read-only or fails, mid-run.

Every later sample would fail the same way, so the run must stop at the first such error with one
line (not one "unexpected error (please report it)" traceback per sample), exit 1, keep the samples
built before, roll back the failing one, and resume when rerun.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

import pytest

from hmtools.cli import main
from hmtools.store import MaskStore
from hmtools.validate import validate_path
from pipelines.build import unwritable_kind

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "aqa7_sample"
FIRST, SECOND, THIRD = "diving/001", "diving/002", "gym_vault/001"


def _args(store: Path) -> list[str]:
    return [
        "build-masks",
        "--dataset",
        "aqa7",
        "--root",
        str(SAMPLE),
        "--store",
        str(store),
        "--detector",
        "lite",
        "--segmenter",
        "lite",
        "--samples",
        f"{FIRST},{SECOND},{THIRD}",
    ]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0), capsys.readouterr().err


def _fail_on_second_write(monkeypatch: pytest.MonkeyPatch, error: BaseException | None) -> list[str]:
    """Make the store's write of the second built sample fail with ``error`` after a partial write
    (``None``: a real SQLITE_FULL, the store file capped at its current size)."""
    real = MaskStore.write_sample_masks
    calls: list[str] = []

    def write(self, sample_id, writes, **kw):  # type: ignore[no-untyped-def]
        calls.append(sample_id)
        if len(calls) < 2:
            return real(self, sample_id, writes, **kw)
        if error is None:  # a real SQLITE_FULL: the store file may not grow any more
            pages = self.query("PRAGMA page_count")[0][0]
            self._conn.execute(f"PRAGMA max_page_count={pages}")
            return real(self, sample_id, writes, **kw)
        with self.transaction():  # the sample's masks go in (a savepoint), then the disk gives out
            real(self, sample_id, writes[: len(writes) // 2], **kw)
            raise error

    monkeypatch.setattr(MaskStore, "write_sample_masks", write)
    return calls


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (None, "the disk of mask store"),
        (sqlite3.OperationalError("database or disk is full"), "the disk of mask store"),
        (OSError(errno.ENOSPC, "No space left on device"), "the disk of mask store"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "became read-only"),
        (OSError(errno.EROFS, "Read-only file system"), "became read-only"),
        (sqlite3.OperationalError("disk I/O error"), "reports I/O errors"),
    ],
    ids=["real-sqlite-full", "sqlite-full", "enospc", "sqlite-readonly", "erofs", "sqlite-ioerr"],
)
def test_an_unwritable_store_stops_the_run_at_once_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    error: BaseException | None,
    says: str,
) -> None:
    """Was: each sample failed with "unexpected error (please report it)" and a traceback, three in a row
    ended the run with the raw error; now the first one stops it, exit 1, one line, nothing half-written."""
    store = tmp_path / "m.db"
    calls = _fail_on_second_write(monkeypatch, error)
    with caplog.at_level(logging.INFO):
        code, err = _cli(_args(store), capsys)
    assert calls == [FIRST, SECOND]  # stopped at the first failing write: the third sample was not tried
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("hmtools:")]
    assert len(lines) == 1 and lines[0].startswith("hmtools: error: build-masks stopped at sample diving/002"), err
    line = lines[0]
    assert says in line and str(store) in line
    assert "what this run built so far (1 samples) is saved" in line
    assert "rerun the same command" in line
    assert "Traceback" not in err and "please report" not in caplog.text
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    with MaskStore(store, read_only=True) as st:
        assert st.build_config(FIRST) is not None
        assert all(m is not None for m in st.current_masks(FIRST))
        assert st.build_config(SECOND) is None  # the partial write was rolled back
        assert all(m is None for m in st.current_masks(SECOND))
    assert validate_path(store) == []


def test_a_rerun_after_a_full_disk_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rerun that the message asks for skips the sample built before and builds the rest."""
    store = tmp_path / "m.db"
    with monkeypatch.context() as m:
        _fail_on_second_write(m, sqlite3.OperationalError("database or disk is full"))
        code, err = _cli(_args(store), capsys)
    assert code == 1 and "stopped at sample diving/002" in err and "the disk of mask store" in err
    with MaskStore(store, read_only=True) as st:  # stopped there: the third sample was not built either
        assert [st.build_config(s) is not None for s in (FIRST, SECOND, THIRD)] == [True, False, False]
    with pytest.raises(SystemExit) as e:
        main(_args(store))
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert "3 samples: 2 built, 1 already done" in out
    with MaskStore(store, read_only=True) as st:
        assert all(st.build_config(s) is not None for s in (FIRST, SECOND, THIRD))
    assert validate_path(store) == []


def test_a_real_sqlite_full_error_and_a_wrapped_one_are_recognised(tmp_path: Path) -> None:
    """SQLITE_FULL as SQLite raises it (result code, Python 3.11+), and inside an hmtools error."""
    conn = sqlite3.connect(tmp_path / "small.db")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count=3")  # a tiny "disk": the next big insert is SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    conn.close()
    assert unwritable_kind(full.value) == ("full", full.value)
    try:
        try:
            raise full.value
        except sqlite3.OperationalError as e:
            raise RuntimeError("write failed") from e
    except RuntimeError as wrapped:
        assert unwritable_kind(wrapped) == ("full", full.value)
    assert unwritable_kind(sqlite3.OperationalError("no such table: x")) is None
    assert unwritable_kind(OSError(errno.EIO, "Input/output error")) is None  # a bad frame file: per sample


def _busy_for(monkeypatch: pytest.MonkeyPatch, tries: int) -> list[str]:
    """The store's write refuses ``tries`` times with StoreBusyError (another process held it past the
    busy timeout), then writes."""
    from hmtools.store_open import StoreBusyError

    real = MaskStore.write_sample_masks
    calls: list[str] = []

    def write(self, sample_id, writes, **kw):  # type: ignore[no-untyped-def]
        calls.append(sample_id)
        if len(calls) <= tries:
            raise StoreBusyError(f"mask store {self.path} is busy: another process held it for more than 60 s")
        return real(self, sample_id, writes, **kw)

    monkeypatch.setattr(MaskStore, "write_sample_masks", write)
    return calls


def test_a_store_busy_for_a_while_keeps_the_built_sample(tmp_path: Path, monkeypatch, capsys) -> None:
    """A write refused as busy (a large import holding the store) is tried again: the sample's inference
    is not thrown away and nothing fails."""
    from typer.testing import CliRunner

    from hmtools.cli import app

    calls = _busy_for(monkeypatch, 3)
    res = CliRunner().invoke(app, _args(tmp_path / "b.db"))
    assert res.exit_code == 0, res.output
    assert calls == [FIRST] * 4 + [SECOND, THIRD]
    with MaskStore(tmp_path / "b.db", read_only=True) as st:
        for sid in (FIRST, SECOND, THIRD):
            recs = st.current_masks(sid)
            assert recs and all(r is not None for r in recs), sid


def test_a_store_busy_through_every_retry_stops_the_run(tmp_path: Path, monkeypatch, capsys) -> None:
    from pipelines.build import BUSY_RETRIES

    calls = _busy_for(monkeypatch, 1000)
    code, err = _cli(_args(tmp_path / "b.db"), capsys)
    assert code == 1 and calls == [FIRST] * (BUSY_RETRIES + 1)  # the later samples are not tried
    line = err.strip().splitlines()[-1]
    assert "build-masks stopped at sample diving/001" in line and "is busy" in line and "a rerun resumes" in line
