"""Mask store vs. one 8-bit JPEG per frame (how FineDiving-HM is released), on the same masks.

Writes ``--frames`` person-shaped masks at FineDiving size (H=256, W=455) into a fresh
:class:`~hmtools.store.MaskStore` (one ``write_sample_masks`` transaction per sample of
``--frames-per-sample`` frames) and as grayscale 0/255 JPEGs (``cv2.imwrite``, default quality
95) under ``--out``, then reads both back to ``(H, W)`` bool arrays (store:
:func:`~hmtools.store_admin.read_sample_masks`; JPEG: ``cv2.imread(..., IMREAD_GRAYSCALE) > 127``)
and checks them against the originals. Only the write and read calls are timed; drawing the
masks and checking them is not. Both sides run in this one process on a warm page cache and
neither calls fsync (the store runs WAL with ``synchronous=NORMAL``).

Run::

    PYTHONPATH=. python benchmarks/store_throughput.py --frames 100000 --out /tmp/hm_bench

Prints frames/s for writing and reading each way, their ratios, and bytes on disk (file sizes
and allocated blocks), with a PASS/FAIL line for the targets (store >= 3x faster both ways,
>= 5x smaller).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from hmtools.masks import mask_iou
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check, read_sample_masks
from hmtools.store_types import MaskWrite

H, W = 256, 455


def draw_diver(out: np.ndarray, t: float, rng_params: dict[str, float], x_off: float = 0.0) -> None:
    """Draw one diver silhouette (head, torso, arms, legs) at dive phase ``t`` in [0, 1] into ``out``.

    The diver leaves the board, somersaults while falling along a parabola, opens from a tuck into a
    straight line and enters the water at the bottom edge (partly out of frame at the end).
    """
    scale = rng_params["scale"]
    cx = rng_params["x0"] + x_off + rng_params["dx"] * t
    cy = rng_params["y0"] - 30 * scale * math.sin(math.pi * min(t * 1.4, 1.0)) + 150 * t * t
    angle = rng_params["spin"] * t * 2 * math.pi + rng_params["phase"]
    tuck = max(0.0, 1.0 - abs(t - 0.45) / 0.3)  # 0 = straight, 1 = tight tuck
    c, s = math.cos(angle), math.sin(angle)

    def pt(x: float, y: float) -> tuple[int, int]:
        x, y = x * scale, y * scale
        return (int(round(cx + c * x - s * y)), int(round(cy + s * x + c * y)))

    deg = math.degrees(angle)
    cv2.ellipse(out, pt(0, -34), (max(1, int(6 * scale)), max(1, int(7.5 * scale))), deg, 0, 360, 1, -1)
    cv2.ellipse(out, pt(0, -8), (max(1, int(8 * scale)), max(1, int(19 * scale))), deg, 0, 360, 1, -1)
    limb = max(1, int(5 * scale))
    knee_y, foot_y = 24 - 8 * tuck, 44 - 34 * tuck
    knee_x, foot_x = 10 * tuck, -4 * tuck
    for side in (-1, 1):
        hip, knee, foot = pt(3 * side, 10), pt(3 * side + knee_x, knee_y), pt(3 * side + foot_x, foot_y)
        cv2.line(out, hip, knee, 1, limb + 1)
        cv2.line(out, knee, foot, 1, limb)
        hand_y = -52 + 50 * tuck  # arms overhead when straight, round the shins in a tuck
        cv2.line(out, pt(7 * side, -24), pt(9 * side + 6 * tuck, hand_y), 1, limb)


def sample_masks(sample: int, n_frames: int) -> np.ndarray:
    """``(T, H, W)`` bool person-shaped masks of one synthetic dive (deterministic per ``sample``)."""
    rng = np.random.default_rng(sample)
    params = {
        "scale": float(rng.uniform(1.0, 1.7)),
        "x0": float(rng.uniform(120, 300)),
        "y0": float(rng.uniform(75, 100)),
        "dx": float(rng.uniform(-40, 40)),
        "spin": float(rng.uniform(1.0, 3.5)),
        "phase": float(rng.uniform(-0.3, 0.3)),
    }
    synchro = sample % 4 == 3  # synchronized diving: both divers are the judged athletes
    buf = np.zeros((n_frames, H, W), dtype=np.uint8)
    for t in range(n_frames):
        draw_diver(buf[t], t / max(1, n_frames - 1), params)
        if synchro:
            draw_diver(buf[t], t / max(1, n_frames - 1), params, x_off=70 * params["scale"])
    return buf.view(bool)


def dir_bytes(root: Path) -> tuple[int, int]:
    """``(sum of file sizes, sum of allocated blocks)`` in bytes under ``root``."""
    size = blocks = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            size, blocks = size + st.st_size, blocks + st.st_blocks * 512
    return size, blocks


@contextmanager
def _timed(wall: dict[str, float], cpu: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall-clock and process CPU seconds of the block to ``wall[key]`` and ``cpu[key]``."""
    w0, c0 = time.perf_counter(), time.process_time()
    yield
    wall[key] += time.perf_counter() - w0
    cpu[key] += time.process_time() - c0


def run(n_total: int, per_sample: int, out: Path) -> dict[str, float]:
    """Write and read ``n_total`` masks both ways under ``out``; returns the measured figures."""
    if out.exists():
        shutil.rmtree(out)
    (out / "jpeg").mkdir(parents=True)
    counts = [per_sample] * (n_total // per_sample) + ([n_total % per_sample] if n_total % per_sample else [])
    samples = [
        Sample(f"bench{i:05d}/0", "finediving", tuple(f"bench{i:05d}/0/{t:05d}.jpg" for t in range(n)), "train")
        for i, n in enumerate(counts)
    ]
    wall = dict.fromkeys(("store_write", "jpeg_write", "store_read", "jpeg_read"), 0.0)
    cpu = dict(wall)
    jpeg_ious: list[float] = []
    store_exact = 0
    with MaskStore(out / "masks.db") as store:
        store.add_samples(samples)
        for i, s in enumerate(samples):
            masks = sample_masks(i, len(s.frames))
            writes = [MaskWrite(mask=m, source="auto", score=0.9) for m in masks]
            with _timed(wall, cpu, "store_write"):
                store.write_sample_masks(s.sample_id, writes, author="bench")
            with _timed(wall, cpu, "jpeg_write"):
                (out / "jpeg" / s.sample_id).mkdir(parents=True)
                for key, m in zip(s.frames, masks, strict=True):
                    cv2.imwrite(str(out / "jpeg" / key), m.view(np.uint8) * np.uint8(255))
        for i, s in enumerate(samples):
            with _timed(wall, cpu, "store_read"):
                back, present = read_sample_masks(store, s.sample_id)
            with _timed(wall, cpu, "jpeg_read"):
                jpeg = [cv2.imread(str(out / "jpeg" / key), cv2.IMREAD_GRAYSCALE) > 127 for key in s.frames]
            truth = sample_masks(i, len(s.frames))
            store_exact += int(present.all()) * sum(bool((b == m).all()) for b, m in zip(back, truth, strict=True))
            jpeg_ious += [mask_iou(j, m) for j, m in zip(jpeg, truth, strict=True)]
        problems = integrity_check(store)
    store_size = sum(os.stat(p).st_size for p in out.glob("masks.db*"))
    store_alloc = sum(os.stat(p).st_blocks * 512 for p in out.glob("masks.db*"))
    jpeg_size, jpeg_alloc = dir_bytes(out / "jpeg")
    return {
        "frames": n_total,
        **{f"{k}_fps": n_total / v for k, v in wall.items()},
        **{f"{k}_fps_cpu": n_total / v for k, v in cpu.items()},
        "store_bytes": store_size,
        "store_bytes_allocated": store_alloc,
        "jpeg_bytes": jpeg_size,
        "jpeg_bytes_allocated": jpeg_alloc,
        "store_exact_frames": store_exact,
        "store_integrity_problems": len(problems),
        "jpeg_iou_mean": float(np.mean(jpeg_ious)),
        "jpeg_iou_min": float(np.min(jpeg_ious)),
    }


def main() -> None:
    """Parse options, run the comparison, print the figures (and write ``results.json`` in ``--out``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000, help="masks to write and read each way")
    ap.add_argument("--frames-per-sample", type=int, default=104, help="frames per sample (FineDiving mean: 104)")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hmtools_store_bench",
        help="scratch folder, emptied first (needs ~1 GiB for 100k frames)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the written store and JPEGs")
    args = ap.parse_args()
    r = run(args.frames, args.frames_per_sample, args.out)
    ratios = {
        "write_speedup": r["store_write_fps"] / r["jpeg_write_fps"],
        "read_speedup": r["store_read_fps"] / r["jpeg_read_fps"],
        "write_speedup_cpu": r["store_write_fps_cpu"] / r["jpeg_write_fps_cpu"],
        "read_speedup_cpu": r["store_read_fps_cpu"] / r["jpeg_read_fps_cpu"],
        "size_ratio": r["jpeg_bytes"] / r["store_bytes"],
        "size_ratio_allocated": r["jpeg_bytes_allocated"] / r["store_bytes_allocated"],
    }
    n = r["frames"]
    print(f"{n} masks of {H}x{W} (HxW), {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(
        f"{'':13}{'write fr/s':>11}{'(cpu)':>8}{'read fr/s':>11}{'(cpu)':>8}{'bytes':>13}{'allocated':>13}{'B/fr':>6}"
    )
    for name, key in (("store (RLE)", "store"), ("JPEG files", "jpeg")):
        print(
            f"{name:13}{r[key + '_write_fps']:11.0f}{r[key + '_write_fps_cpu']:8.0f}{r[key + '_read_fps']:11.0f}"
            f"{r[key + '_read_fps_cpu']:8.0f}{r[key + '_bytes']:13d}{r[key + '_bytes_allocated']:13d}"
            f"{r[key + '_bytes'] / n:6.0f}"
        )
    print(
        f"store/JPEG: write {ratios['write_speedup']:.1f}x faster (cpu {ratios['write_speedup_cpu']:.1f}x), "
        f"read {ratios['read_speedup']:.1f}x faster (cpu {ratios['read_speedup_cpu']:.1f}x), "
        f"{ratios['size_ratio']:.1f}x smaller ({ratios['size_ratio_allocated']:.1f}x allocated)"
    )
    print(
        f"read-back: store exact on {r['store_exact_frames']}/{n} frames, integrity problems "
        f"{r['store_integrity_problems']}; JPEG IoU mean {r['jpeg_iou_mean']:.4f} min {r['jpeg_iou_min']:.4f}"
    )
    ok = ratios["write_speedup"] >= 3 and ratios["read_speedup"] >= 3 and ratios["size_ratio"] >= 5
    ok = ok and r["store_exact_frames"] == n and r["store_integrity_problems"] == 0
    print("targets (>=3x write, >=3x read, >=5x smaller, exact): " + ("PASS" if ok else "FAIL"))
    (args.out / "results.json").write_text(json.dumps(r | ratios, indent=2))
    if not args.keep:
        shutil.rmtree(args.out / "jpeg")
        for p in args.out.glob("masks.db*"):
            p.unlink()


if __name__ == "__main__":
    main()
