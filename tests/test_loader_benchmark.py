"""benchmarks/loader_throughput.py runs end to end on a small synthetic dataset (real cache build,
PIL baseline, DataLoader in-process and with a worker) and prints every figure."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_loader_benchmark_prints_both_sides(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "benchmarks/loader_throughput.py", "--clips", "3", "--frames", "20", "--pairs", "4",
         "--batches", "3", "--workers", "0", "1", "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "public way" in r.stdout and "pairs/s" in r.stdout
    assert "0 workers" in r.stdout and "1 workers" in r.stdout
    assert list(tmp_path.iterdir()) == []  # the dataset and cache went with the temporary folder
