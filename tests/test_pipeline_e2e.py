"""End to end through the CLI on an AQA-7-layout dataset of real-person frames with the lite backend:
kill -9 mid-run, resume, a corrupt frame, stats and preview."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check

pytest.importorskip("mediapipe")
scipy_io = pytest.importorskip("scipy.io")

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "examples" / "aqa7_sample" / "diving-out" / "001"


def make_aqa7(root: Path, n_samples: int = 5, n_frames: int = 10, corrupt: tuple[int, int] = (2, 4)) -> None:
    """``<root>/diving-out/<NNN>/img_%05d.jpg`` (1-based) from real frames + ``Split_4`` .mat lists."""
    src = sorted(SOURCE.glob("img_*.jpg"))
    for i in range(1, n_samples + 1):
        folder = root / "diving-out" / f"{i:03d}"
        folder.mkdir(parents=True)
        for j in range(n_frames):
            dst = folder / f"img_{j + 1:05d}.jpg"
            if (i, j) == corrupt:
                dst.write_bytes(b"\xff\xd8 truncated")
            else:
                shutil.copy(src[(3 * i + j) % len(src)], dst)
    (root / "Split_4").mkdir()
    rows = {"train": [[1, i, 60.0 + i] for i in range(1, n_samples)], "test": [[1, n_samples, 70.0]]}
    for split, data in rows.items():
        scipy_io.savemat(
            str(root / "Split_4" / f"split_4_{split}_list.mat"), {f"consolidated_{split}_list": np.array(data, float)}
        )


def _cli(*args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "hmtools", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HMTOOLS_OFFLINE": "1"}


def _built(db: Path) -> int:
    try:
        with MaskStore(db) as st:
            return st.query("SELECT COUNT(*) FROM samples WHERE build_config IS NOT NULL")[0][0]
    except Exception:  # noqa: BLE001 - the store may not exist yet
        return 0


def test_cli_lite_build_kill_resume_stats_preview(tmp_path: Path) -> None:
    root, db = tmp_path / "aqa7", tmp_path / "m.db"
    make_aqa7(root)
    build = _cli(
        "build-masks",
        "--dataset",
        "aqa7",
        "--root",
        str(root),
        "--store",
        str(db),
        "--detector",
        "lite",
        "--segmenter",
        "lite",
        "--batch-size",
        "4",
    )
    proc = subprocess.Popen(build, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and _built(db) < 1:
        time.sleep(0.02)
    assert proc.poll() is None, f"finished before the kill: {proc.communicate()[1][-1500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _built(db)
    assert 1 <= partial < 5
    out = subprocess.run(build, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{5 - partial} built, {partial} already done" in out.stdout
    with MaskStore(db) as st:
        rows = st.query(
            "SELECT f.key, COUNT(m.mask_id), SUM(m.source='auto') FROM frames f JOIN masks m ON m.frame_id=f.frame_id GROUP BY f.frame_id"
        )
        assert len(rows) == 50 and all(n == 1 and a == 1 for _, n, a in rows)
        bad = st.current_mask("diving-out/002/img_00005.jpg")
        assert bad.status == "flagged" and bad.reason == "unreadable frame: cannot decode"
        masks = [st.current_mask(k) for k, _, _ in rows]
        assert sum(m.area > 0 for m in masks) >= 40  # the real person is found on most frames
        assert integrity_check(st) == []
    stats = subprocess.run(
        _cli("stats", "--store", str(db), "--json"), cwd=REPO, env=_env(), capture_output=True, text=True
    )
    report = json.loads(stats.stdout)
    assert report["frames_with_mask"] == 50 and report["samples_built"] == 5
    assert report["flag_reasons"]["unreadable frame: cannot decode"] == 1
    prev = subprocess.run(
        _cli(
            "preview",
            "--store",
            str(db),
            "--root",
            str(root),
            "--sample",
            "diving/002",
            "--out",
            str(tmp_path / "p.gif"),
        ),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert prev.returncode == 0, prev.stderr[-1500:]
    assert (tmp_path / "p.gif").stat().st_size > 0 and (tmp_path / "p_sheet.png").is_file()
