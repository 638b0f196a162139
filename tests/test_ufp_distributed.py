"""Subprocess runs of ``hmtools train``: 2-process torchrun (gloo, CPU) against one process with the same
effective batch, and a SIGKILLed run that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _ufp_fixtures import make_dataset, make_store, one_torch_thread, write_finediving_annotations  # noqa: F401

from hmtools.datasets import load_dataset
from uni_fineparser.config import load_run_config
from uni_fineparser.run import train_from_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _finediving(tmp_path: Path, n_train: int, n_test: int) -> list[str]:
    """FineDiving layout + pickles + store; returns the common ``hmtools train`` arguments."""
    made, masks = make_dataset(tmp_path / "root", n_train=n_train, n_test=n_test, n_frames=16)
    write_finediving_annotations(tmp_path / "root", made)
    store = make_store(tmp_path / "m.db", load_dataset("finediving", tmp_path / "root").samples, masks)
    return ["train", "--dataset", "finediving", "--root", str(tmp_path / "root"), "--masks", str(store),
            "--out", str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu"]  # fmt: skip


def test_torchrun_two_processes_gloo(tmp_path):
    args = _finediving(tmp_path, n_train=10, n_test=4)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hmtools", *args, "--set", "train.epochs=1", "--set", "train.val_fraction=0.25"]  # fmt: skip
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 4  # gathered over both ranks: every test query scored once
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # 8 training pairs (2 carved for validation), 2 ranks x batch 2 -> 2 steps per epoch
    assert ckpt["step"] == 2 and ckpt["epoch"] == 1
    assert "val_rho" in ckpt["history"][0]
    assert res.stderr.count("RANDOMLY INITIALISED") == 1  # rank 0 alone logs
    assert res.stdout.count('"rho"') == 1, res.stdout  # and prints the test metrics once
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no half-written files
    # one process with the same effective batch (2 micro-batches of 2 pairs per step) trains and scores the same:
    # DistributedSampler gives rank r the pairs r, r+2, ..., so both step over the same 4 pairs
    cfg = load_run_config("tiny", overrides=["train.epochs=1", "train.val_fraction=0.25", "train.accumulate=2"])
    one = train_from_dataset(cfg, "finediving", tmp_path / "root", tmp_path / "m.db", tmp_path / "one", device="cpu")
    for key in ("rho", "rl2", "l2", "aiou_0.5", "aiou_0.75", "mask_iou", "n", "fallbacks"):
        assert one["test"][key] == pytest.approx(metrics["test"][key], rel=1e-4, abs=1e-6, nan_ok=True), key
    single = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    assert single["step"] == ckpt["step"] and single["splits"] == ckpt["splits"]
    for k, v in single["model"].items():
        torch.testing.assert_close(ckpt["model"][k], v, rtol=0, atol=1e-4, msg=k)
    assert [h["loss"] for h in single["history"]] == pytest.approx([h["loss"] for h in ckpt["history"]], rel=1e-5)


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a training process after its first checkpoint; the rerun continues from it."""
    args = [
        sys.executable,
        "-m",
        "hmtools",
        *_finediving(tmp_path, n_train=10, n_test=2),
        "--set",
        "train.eval_every=1",
    ]
    proc = subprocess.Popen(
        [*args, "--set", "train.epochs=40"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "out" / "last.pt"
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = torch.load(last, weights_only=True)
    assert 1 <= killed["epoch"] < 40, "the run must be killed mid-way"
    more = f"train.epochs={killed['epoch'] + 2}"
    res = subprocess.run([*args, "--set", more], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {last} at epoch {killed['epoch']}" in res.stderr
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == killed["epoch"] + 2
    assert [h["epoch"] for h in final["history"]] == list(range(1, final["epoch"] + 1))
    assert json.dumps(final["history"][: killed["epoch"]]) == json.dumps(killed["history"])  # NaN-safe
