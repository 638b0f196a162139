"""Output paths at the seams: a command must never overwrite or pollute what another one wrote.

Each test names the data that was lost or corrupted before its fix: a run's ``config.yaml``
rewritten by a refused resume, a preview's contact sheet read as a dataset frame, a preview
truncated on a full disk reported as written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _datasets_fixtures import run_cli
from _exchange_fixtures import fill_store, make_samples, write_frames

from hmtools.store import MaskStore


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _preview(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    store, root = tmp_path / "s.db", tmp_path / "root"
    if not store.exists():
        samples = make_samples(2, 4)
        write_frames(root, samples)
        with MaskStore(store) as st:
            fill_store(st, samples)
    args = ["--store", str(store), "--root", str(root), "--sample", "diving/001", "--out", str(out)]
    return run_cli(["preview", *args], capsys)


def test_preview_into_a_frame_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its contact sheet, a PNG, became one more frame of that sample (of any sample's folder)."""
    code, _, err = _preview(tmp_path, tmp_path / "previews" / "p.mp4", capsys)
    assert code == 0, err
    frames = tmp_path / "root" / "diving-out" / "002"
    before = sorted(p.name for p in frames.iterdir())
    code, _, err = _preview(tmp_path, frames / "p.gif", capsys)
    assert code == 2 and "frame folder" in _one_line(err)
    assert sorted(p.name for p in frames.iterdir()) == before
    code, _, err = _preview(tmp_path, tmp_path / "previews" / "q.mp4", capsys)  # a folder of previews is fine
    assert code == 0, err


def test_preview_on_a_full_disk_fails_and_keeps_the_earlier_preview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV's video writer drops frames silently when the disk is full: the earlier preview was
    replaced by a truncated file, the sheet lost, and the command said 'wrote'."""
    import cv2

    from pipelines import preview as preview_mod

    out = tmp_path / "p.mp4"
    assert _preview(tmp_path, out, capsys)[0] == 0
    before = out.read_bytes(), out.with_name("p_sheet.png").read_bytes()

    class FullDiskWriter:
        def __init__(self, path: str, *args: object) -> None:
            Path(path).write_bytes(b"\0" * 48)  # a header, then every frame write fails

        def isOpened(self) -> bool:  # noqa: N802  (OpenCV's name)
            return True

        def write(self, frame: object) -> None:
            pass

        def release(self) -> None:
            pass

    monkeypatch.setattr(preview_mod.cv2, "VideoWriter", FullDiskWriter)
    monkeypatch.setattr(preview_mod.cv2, "VideoWriter_fourcc", cv2.VideoWriter_fourcc)
    code, _, err = _preview(tmp_path, out, capsys)
    assert code == 1 and "disk full" in _one_line(err)
    assert (out.read_bytes(), out.with_name("p_sheet.png").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["p.mp4", "p_sheet.png", "s.db"]


def test_a_refused_resume_leaves_the_runs_config_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --out`` a folder of another run: the resume is refused (another model config), but only
    after ``config.yaml`` had been rewritten with the refused config (and the cache built)."""
    from _ufp_fixtures import make_dataset, make_store
    from typer.testing import CliRunner

    import uni_fineparser.run as run
    from hmtools.cli import app
    from hmtools.errors import ConfigError

    samples, masks = make_dataset(tmp_path / "root", n_train=6, n_test=2, n_frames=16)
    store = make_store(tmp_path / "m.db", samples, masks)
    monkeypatch.setattr(run, "load_samples", lambda data: (samples, tmp_path / "root"))
    args = ["train", "--dataset", "finediving", "--root", str(tmp_path / "root"), "--masks", str(store)]
    args += ["--out", str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu", "--set", "train.epochs=1"]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    for other in ("model.d_model=16", "train.val_fraction=0.5"):  # another model; another validation split
        res = runner.invoke(app, [*args, "--set", other])
        assert isinstance(res.exception, ConfigError) and "a new --out" in str(res.exception)
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (OSError(28, "No space left on device"), "free some space"),
        (__import__("sqlite3").OperationalError("database or disk is full"), "free some space"),
        (OSError(30, "Read-only file system"), "make the file and its folder writable"),
        (__import__("sqlite3").OperationalError("attempt to write a readonly database"), "writable"),
    ],
)
def test_a_full_disk_is_one_line_and_exit_1_from_any_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, error: Exception, fix: str
) -> None:
    """``hmtools import`` on a full disk ended in a traceback from SQLite's commit (the store was
    intact); any command's out-of-space error is now one line."""
    import hmtools.store_admin

    def full(*_a: object, **_k: object) -> None:
        raise error

    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, make_samples(1, 2))
    monkeypatch.setattr(hmtools.store_admin, "store_stats", full)
    code, _, err = run_cli(["stats", "--store", str(tmp_path / "s.db")], capsys)
    assert code == 1 and fix in _one_line(err)
    assert ("free some space" in _one_line(err)) == (fix == "free some space")  # a read-only file is not a full disk
    monkeypatch.setattr(hmtools.store_admin, "store_stats", lambda *_a, **_k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # any other error is not dressed up as a full disk
        run_cli(["stats", "--store", str(tmp_path / "s.db")], capsys)
