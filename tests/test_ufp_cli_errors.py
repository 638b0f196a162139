"""``hmtools train`` / ``eval`` / ``explain`` on bad input through the real entry point: one line,
exit 2, and no run folder or output left behind (no trained model needed)."""

from __future__ import annotations

import pytest
from _ufp_fixtures import make_dataset


def _cli_err(args: list[str], capsys) -> tuple[int, str]:
    """Run ``hmtools ARGS`` through the real entry point; ``(exit code, last stderr line)``; no traceback."""
    from hmtools.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip(), err
    return int(e.value.code or 0), err.strip().splitlines()[-1]


def test_cli_train_bad_input_exits_2_and_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    import uni_fineparser.run as run

    samples, _ = make_dataset(tmp_path / "root", n_train=8, n_test=4, n_frames=16)
    monkeypatch.setattr(run, "load_samples", lambda data: (samples, tmp_path / "root"))
    (tmp_path / "empty_masks").mkdir()
    (tmp_path / "cfg.yaml").write_bytes(b"\xa6\xff\x00" * 8)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "given").mkdir()
    (tmp_path / "root" / "notes").mkdir()
    (tmp_path / "root" / "notes" / "a.txt").write_text("x")
    base = ["train", "--dataset", "finediving", "--root", str(tmp_path / "root"), "--preset", "tiny", "--device", "cpu"]
    base += ["--masks", str(tmp_path / "empty_masks")]
    before = sorted(p.name for p in tmp_path.iterdir())
    for extra, says in (
        (["--set", "train.lr=[1,"], "not valid YAML"),
        (["--set", "train.epochs=0"], "train.epochs must be >= 1"),
        (["--set", "train.lr=-1"], "train.lr must be > 0"),
        (["--config", str(tmp_path / "cfg.yaml")], "not UTF-8 text"),
        (["--out", str(tmp_path / "notes.txt" / "run")], "is a file, not a folder"),
        (["--out", str(tmp_path / "notes.txt")], "is a file; pass a folder"),
        (["--out", str(tmp_path / "root")], "holds files but is not a train run"),  # the dataset root
        (["--out", str(tmp_path / "root" / "notes")], "holds files but is not a train run"),
        (["--out", str(tmp_path / "given")], "have no mask"),  # an empty --out given stays, empty
        ([], "have no mask"),  # found after --out/run/sub was made: removed again
    ):
        out = [] if "--out" in extra else ["--out", str(tmp_path / "runs" / "sub")]
        code, line = _cli_err([*base, *out, *extra], capsys)
        assert code == 2 and line.startswith("hmtools: error:") and says in line, line
        assert sorted(p.name for p in tmp_path.iterdir()) == before and not any((tmp_path / "given").iterdir())
    assert [p.name for p in (tmp_path / "root" / "notes").iterdir()] == ["a.txt"]


def test_cli_eval_and_explain_bad_options_exit_2_before_loading(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    ck = str(tmp_path / "best.pt")  # never read: the options are checked first
    code, line = _cli_err(["eval", "--checkpoint", ck, "--voters", "0"], capsys)
    assert code == 2 and "--voters must be >= 1" in line
    explain = ["explain", "--checkpoint", ck, "--sample", "a/0", "--out"]
    code, line = _cli_err([*explain, str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in line
    code, line = _cli_err([*explain, str(tmp_path / "x.png"), "--mp4", str(tmp_path / "notes.txt" / "a.mp4")], capsys)
    assert code == 2 and "--mp4" in line and "is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
