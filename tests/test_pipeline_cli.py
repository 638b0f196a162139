"""build-masks / preview commands, the config file, and the light-import rule of ``pipelines``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hmtools.cli import app
from hmtools.config import load_config
from hmtools.errors import ConfigError, InputError
from hmtools.store import MaskStore
from pipelines.build import BuildSummary, build_masks
from pipelines.config import BuildConfig, FramesConfig
from pipelines.run import Models
from pipelines.segment_names import SEGMENTER_NAMES
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter, write_aqa7_splits, write_clip
from tests._pipeline_worker import samples as worker_samples

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_yaml_round_trips_to_the_defaults() -> None:
    assert load_config(BuildConfig, REPO / "configs" / "build_masks.yaml") == BuildConfig()


def test_misspelled_key_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'jump_iou'"):
        load_config(BuildConfig, None, ["repair.jump_iuo=0.2"])


def test_cli_flags_become_config(monkeypatch, tmp_path) -> None:
    seen = {}

    def fake_run(dataset, root, annotations, store, cfg, **kw):
        seen.update(dataset=dataset, cfg=cfg, **kw)
        return BuildSummary(samples=1, built=1, frames=3, seconds=1.0, config_hash="abc")

    monkeypatch.setattr("pipelines.job.run_build_masks", fake_run)
    args = [
        "build-masks",
        "--dataset",
        "aqa7",
        "--root",
        str(tmp_path),
        "--store",
        str(tmp_path / "m.db"),
        "--detector",
        "lite",
        "--segmenter",
        "sam_vit_b",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--samples",
        "diving/001,diving/002",
        "--limit",
        "1",
        "--force",
        "--set",
        "repair.jump_iou=0.4",
        "--sam-checkpoint",
        "weights/sam: v1.pth",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.detect.model, cfg.segment.model, cfg.frames.batch_size, cfg.device) == ("lite", "sam_vit_b", 2, "cpu")
    assert cfg.repair.jump_iou == 0.4 and cfg.segment.checkpoint == "weights/sam: v1.pth"
    assert seen["sample_ids"] == ["diving/001,diving/002"] and seen["limit"] == 1 and seen["force"] is True
    assert "1 built" in res.output and "3.00 frames/s" in res.output


def test_unknown_segmenter_exits_2_with_the_names(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hmtools",
            "build-masks",
            "--dataset",
            "aqa7",
            "--root",
            str(tmp_path),
            "--store",
            str(tmp_path / "m.db"),
            "--segmenter",
            "sam_vit_x",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "sam_vit_b, sam_vit_l, sam_vit_h, lite" in out.stderr and not (tmp_path / "m.db").exists()


def test_segmenter_names_match_the_segment_module() -> None:
    pytest.importorskip("segment_anything")
    from pipelines.segment import SEGMENTERS

    assert SEGMENTER_NAMES == (*SEGMENTERS, "lite")


def test_import_pipelines_stays_light() -> None:
    code = "import sys, pipelines; print(','.join(m for m in ('torch','ultralytics','segment_anything','mediapipe') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_preview_writes_video_and_contact_sheet(tmp_path, ext) -> None:
    import cv2

    write_clip(tmp_path, "diving-out/001", n=6, corrupt=(2,))
    write_aqa7_splits(tmp_path, 1)
    samples = worker_samples(tmp_path, 1)
    cfg = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))
    with MaskStore(tmp_path / "m.db") as st:
        build_masks(samples, tmp_path, st, Models(BlobDetector(), ColourSegmenter()), cfg, progress=False)
    out = tmp_path / "prev" / f"p{ext}"
    res = runner.invoke(
        app,
        [
            "preview",
            "--store",
            str(tmp_path / "m.db"),
            "--root",
            str(tmp_path),
            "--sample",
            "diving/001",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 1000
    sheet = cv2.imread(str(tmp_path / "prev" / "p_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 4 * 320
    if ext == ".mp4":
        cap = cv2.VideoCapture(str(out))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        assert n == 6 and ok and frame.shape[:2] == (96, 160)
        assert (np.abs(frame.astype(int) - (60, 220, 60)[::-1]).sum(-1) < 150).any()  # green mask tint
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, "p_sheet.png"])


def test_preview_rejects_unknown_extension(tmp_path) -> None:
    MaskStore(tmp_path / "m.db").close()
    res = runner.invoke(
        app,
        [
            "preview",
            "--store",
            str(tmp_path / "m.db"),
            "--root",
            str(tmp_path),
            "--sample",
            "x",
            "--out",
            str(tmp_path / "a.avi"),
        ],
    )
    assert isinstance(res.exception, InputError) and ".mp4 or .gif" in str(res.exception)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``hmtools ARGS`` through :func:`hmtools.cli.main`; ``(exit code, stderr)``. A traceback fails the test."""
    from hmtools.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0), capsys.readouterr().err


def _one_line(code: int, err: str, says: str) -> None:
    assert code == 2 and says in err and err.count("\n") == 1 and err.startswith("hmtools: error:"), err


SAMPLE = REPO / "examples" / "aqa7_sample"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--set", "frames.batch_size=[1,"], "not valid YAML"),
        (["--config", "BINARY"], "is not UTF-8 text"),
        (["--store", "UNDER_FILE"], "is a file, not a folder"),
    ],
)
def test_build_masks_bad_override_config_or_store_place_exit_2(tmp_path, capsys, extra, says) -> None:
    (tmp_path / "cfg.yaml").write_bytes(b"\xa6\x00\xff" * 10)
    (tmp_path / "notes.txt").write_text("x")
    subs = {"BINARY": str(tmp_path / "cfg.yaml"), "UNDER_FILE": str(tmp_path / "notes.txt" / "m.db")}
    extra = [subs.get(a, a) for a in extra]
    args = ["build-masks", "--dataset", "aqa7", "--root", str(SAMPLE), "--store", str(tmp_path / "m.db")]
    _one_line(*_cli([*args, "--detector", "lite", "--segmenter", "lite", *extra], capsys), says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "notes.txt"]


@pytest.mark.parametrize("which", ["detector", "sam"])
def test_build_masks_weights_file_that_is_not_weights_exits_2(tmp_path, capsys, which) -> None:
    """A text file as --detector (any suffix) or --sam-checkpoint: one line, exit 2, no store left."""
    import importlib.util

    if importlib.util.find_spec("ultralytics" if which == "detector" else "segment_anything") is None:
        pytest.skip("needs ultralytics / segment_anything")  # not imported here: ultralytics patches PIL on import
    (tmp_path / "weights.txt").write_text("hello world\n")
    models = (
        ["--detector", str(tmp_path / "weights.txt"), "--segmenter", "lite"]
        if which == "detector"
        else ["--detector", "lite", "--segmenter", "sam_vit_b", "--sam-checkpoint", str(tmp_path / "weights.txt")]
    )
    args = ["build-masks", "--dataset", "aqa7", "--root", str(SAMPLE), "--store", str(tmp_path / "m.db")]
    code, err = _cli([*args, *models, "--samples", "diving/001", "--device", "cpu"], capsys)
    err = "".join(line + "\n" for line in err.splitlines() if line.startswith("hmtools"))  # ultralytics warns too
    _one_line(code, err, "cannot be loaded" if which == "detector" else "not a torch checkpoint file")
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(
    ("out", "max_frames", "says"), [("p.mp4", "0", "--max-frames"), ("n.txt/p.mp4", "4", "a file")]
)
def test_preview_bad_max_frames_or_out_place_exit_2_and_write_nothing(tmp_path, capsys, out, max_frames, says) -> None:
    MaskStore(tmp_path / "m.db").close()
    (tmp_path / "n.txt").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["preview", "--store", str(tmp_path / "m.db"), "--root", str(tmp_path), "--sample", "x"]
    _one_line(*_cli([*args, "--out", str(tmp_path / out), "--max-frames", max_frames], capsys), says)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
