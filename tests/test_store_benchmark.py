"""The store benchmark script runs end to end on a few frames (correctness only; no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "store_throughput.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("store_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_person_masks_are_person_shaped() -> None:
    bench = load_bench()
    masks = bench.sample_masks(3, 30)  # a synchronised clip: two divers
    assert masks.shape == (30, bench.H, bench.W) and masks.dtype == np.bool_
    areas = masks.sum(axis=(1, 2))
    assert (areas > 500).all() and (areas < 0.2 * bench.H * bench.W).all()
    assert len({m.tobytes() for m in masks}) == 30  # it moves every frame
    rows, cols = np.flatnonzero(masks[0].any(1)), np.flatnonzero(masks[0].any(0))
    box_fill = areas[0] / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    assert box_fill < 0.6  # not a rectangle


def test_benchmark_round_trip(tmp_path: Path) -> None:
    r = load_bench().run(250, 100, tmp_path / "bench")
    assert r["frames"] == 250 and r["store_exact_frames"] == 250 and r["store_integrity_problems"] == 0
    assert r["jpeg_iou_min"] > 0.95 and 0 < r["store_bytes"] < r["jpeg_bytes"]
    assert len(list((tmp_path / "bench" / "jpeg").rglob("*.jpg"))) == 250


def test_scale_benchmark_runs_on_a_small_store(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("store_scale", BENCH.parent / "store_scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    assert sum(scale.frame_counts(3000)) == 312_256
    info = scale.build(tmp_path / "scale.db", 4)
    assert info["frames"] == sum(scale.frame_counts(4)) and info["masks"] > info["frames"]
    from hmtools.store import MaskStore

    with MaskStore(tmp_path / "scale.db", create=False) as store:
        bench = scale.Bench(store, repeat=1, explain=True)
        bench.interactions()
        bench.reports(export_samples=2)
    names = [row[0] for row in bench.rows]
    assert "queue refresh, filter 'all'" in names and "hmtools validate STORE (integrity_check)" in names
    assert "FULL SCAN" not in capsys.readouterr().out.split("reports (run once)")[0]  # none per interaction
