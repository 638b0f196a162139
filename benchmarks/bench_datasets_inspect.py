"""Time ``load_dataset("finediving")`` (what ``hmtools inspect`` does) on a full-size frame tree.

Builds, in a temporary folder, the FineDiving frame layout for every annotated instance
(``<video>/<idx>/<frame:05d>.jpg``, 1-byte placeholder files: the adapter never reads pixels), using
the real annotation pickles when ``../shared/real_annotations/finediving`` exists (3000 instances,
312,256 files) or synthetic ones otherwise. Then times, in one process on the same tree:

* ours: ``load_dataset`` = restricted unpickling + one ``scandir`` per folder with a stat per file
  (zero-byte check) + numeric sort + count/range/step/judge checks;
* baseline: what the public loaders do per sample, ``sorted(glob(folder + "/*.jpg"))``, no checks.

Usage: ``PYTHONPATH=. python benchmarks/bench_datasets_inspect.py [--samples N]``.
"""

from __future__ import annotations

import argparse
import glob
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from hmtools.datasets import load_dataset

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real_annotations" / "finediving"
if not REAL.is_dir():
    REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real_annotations" / "finediving"


def _synthetic(ann: Path, n: int) -> dict:
    rng = np.random.default_rng(0)
    coarse, keys = {}, []
    for i in range(n):
        key = (f"video{i // 40:03d}", i % 40)
        start = int(rng.integers(1, 200_000))
        length = int(rng.integers(63, 274))
        coarse[key] = {
            "action_type": "107b",
            "start_frame": start,
            "end_frame": start + length - 1,
            "dive_score": 60.0,
            "difficulty": 2.0,
            "judge_scores": [10.0, 10.0, 10.0],
        }
        keys.append(key)
    ann.mkdir(parents=True)
    (ann / "FineDiving_coarse_annotation.pkl").write_bytes(pickle.dumps(coarse))
    (ann / "train_split.pkl").write_bytes(pickle.dumps(keys[: n * 3 // 4]))
    (ann / "test_split.pkl").write_bytes(pickle.dumps(keys[n * 3 // 4 :]))
    return coarse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=3000, help="instances to build (real: first N)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_fd_"))
    try:
        if REAL.is_dir():
            ann = REAL
            coarse = pickle.loads((REAL / "FineDiving_coarse_annotation.pkl").read_bytes())
            source = "real annotation pickles"
        else:
            ann = tmp / "Annotations"
            coarse = _synthetic(ann, args.samples)
            source = "synthetic annotations"
        root = tmp / "FINADiving_MTL_256s"
        t0 = time.perf_counter()
        n_files = 0
        for (video, idx), c in sorted(coarse.items())[: args.samples]:
            folder = root / video / str(idx)
            folder.mkdir(parents=True)
            for f in range(c["start_frame"], c["end_frame"] + 1):
                with open(folder / f"{f:05d}.jpg", "wb") as fh:
                    fh.write(b"x")
                n_files += 1
        build = time.perf_counter() - t0
        folders = sorted(str(p) for p in root.glob("*/*"))
        t0 = time.perf_counter()
        base_frames = sum(len(sorted(glob.glob(os.path.join(f, "*.jpg")))) for f in folders)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = load_dataset("finediving", tmp, annotations=ann)
        t_ours = time.perf_counter() - t0
        ours_frames = sum(len(s.frames) for s in index.samples)
        print(f"{source}: {len(folders)} folders, {n_files} frame files (built in {build:.1f} s)")
        print(f"baseline sorted(glob) per folder: {t_base:.2f} s for {base_frames} frames")
        print(
            f"ours load_dataset (+unpickle, stat, checks): {t_ours:.2f} s for {ours_frames} frames, "
            f"{len(index.problems)} problems"
        )
        print(f"ratio ours/baseline: {t_ours / t_base:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
