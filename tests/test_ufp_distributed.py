"""Two-process torchrun (gloo, CPU) training end to end on the tiny preset."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ufp_fixtures import make_dataset, make_store, one_torch_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes_gloo(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=10, n_test=4, n_frames=16)
    make_store(tmp_path / "m.db", samples, masks)
    (tmp_path / "samples.pkl").write_bytes(pickle.dumps(samples))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(ROOT / "tests" / "_ufp_ddp_main.py"), str(tmp_path),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 4  # gathered over both ranks: every test query scored once
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # 8 training pairs (2 carved for validation), 2 ranks x batch 2 -> 2 steps per epoch
    assert ckpt["step"] == 2 and ckpt["epoch"] == 1
    assert "val_rho" in ckpt["history"][0]
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no half-written files


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a training process after its first checkpoint; the rerun continues from it."""
    import signal
    import time

    samples, masks = make_dataset(tmp_path / "root", n_train=10, n_test=2, n_frames=16)
    make_store(tmp_path / "m.db", samples, masks)
    (tmp_path / "samples.pkl").write_bytes(pickle.dumps(samples))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "tests" / "_ufp_ddp_main.py"), str(tmp_path), "train.epochs=40"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "out" / "last.pt"
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = torch.load(last, weights_only=True)
    assert 1 <= killed["epoch"] < 40, "the run must be killed mid-way"
    res = subprocess.run(
        [*cmd[:-1], "train.epochs=" + str(killed["epoch"] + 2)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {last} at epoch {killed['epoch']}" in res.stderr
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == killed["epoch"] + 2
    assert [h["epoch"] for h in final["history"]] == list(range(1, final["epoch"] + 1))
    assert final["history"][: killed["epoch"]] == killed["history"]
