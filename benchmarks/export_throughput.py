"""Export/import throughput and memory of hmtools.exchange on a synthetic 455x256 mask store.

What it measures, all in one run on the same files:

1. Each export format (coco, ytvis, hdf5, fineparser) of a store of ``--frames`` masks, each in
   its own subprocess: frames/s, output bytes, peak RSS. The same at ``--small`` frames, to
   show whether peak memory grows with the number of frames.
2. ``import --format fineparser`` of the exported JPEG masks into a fresh store (frame sizes
   read from frame headers under a root of symlinks to one 455x256 frame), against a bare
   single-thread ``cv2.imread`` loop over the same mask files: the ratio import / bare.
3. The ``fineparser`` export again with its output (and a bare write loop) on a memory file
   system (``--memory-scratch``, default ``/dev/shm``): the code's own rate, apart from the
   disk's file-creation cost, which on a shared VM disk can be the whole bound.
4. The HDF5 layout choice: bit-packed vs unpacked uint8, both gzip-4 with one chunk per frame.

Usage: ``PYTHONPATH=. python benchmarks/export_throughput.py --frames 100000 --small 20000``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

H, W = 256, 455
FRAMES_PER_SAMPLE = 100
DISTINCT = 400
FORMATS = ("coco", "ytvis", "hdf5", "fineparser")


def person_mask(t: int, seed: int) -> np.ndarray:
    """A diver-like silhouette (~5 % of the frame) that moves and turns with ``t``: (H, W) bool."""
    m = np.zeros((H, W), np.uint8)
    rng = np.random.default_rng(seed * 1000 + t)
    cx = int(W * (0.2 + 0.6 * ((t * 0.01 + seed * 0.37) % 1.0)))
    cy = int(H * (0.3 + 0.4 * abs(np.sin(t * 0.05 + seed))))
    angle = (t * 7 + seed * 31) % 180
    cv2.ellipse(m, (cx, cy), (18, 55), angle, 0, 360, 1, -1)
    head = (int(cx + 62 * np.cos(np.radians(angle + 90))), int(cy + 62 * np.sin(np.radians(angle + 90))))
    cv2.circle(m, head, 13, 1, -1)
    for k in (-1, 1):
        end = (
            int(cx + k * 45 * np.cos(np.radians(angle))) + int(rng.integers(-4, 5)),
            int(cy + k * 45 * np.sin(np.radians(angle))),
        )
        cv2.line(m, (cx, cy), end, 1, 8)
    edge = cv2.dilate(m, np.ones((3, 3), np.uint8)) - m
    m |= edge & (rng.random((H, W)) > 0.7).astype(np.uint8)  # ragged SAM-like boundary
    return m.astype(bool)


def build_store(path: Path, n_frames: int) -> list:
    """A store of ``n_frames`` masks in samples of 100 frames (AQA-7 layout keys); returns the samples."""
    from hmtools.masks import encode_rle
    from hmtools.schema import Sample
    from hmtools.store import MaskStore
    from hmtools.store_types import MaskWrite

    rles = [encode_rle(person_mask(t, seed=t // 50)) for t in range(DISTINCT)]
    samples = []
    for k in range(n_frames // FRAMES_PER_SAMPLE):
        frames = tuple(f"diving-out/{k:05d}/img_{i:05d}.jpg" for i in range(1, FRAMES_PER_SAMPLE + 1))
        samples.append(Sample(f"diving/{k:05d}", "aqa7", frames, "train", score=60.0, action_class="diving"))
    with MaskStore(path) as st:
        st.add_samples(samples)
        for k, s in enumerate(samples):
            writes = [
                MaskWrite(rle=rles[(k * 37 + i) % DISTINCT], score=0.9, status="accepted" if i % 5 else "unreviewed")
                for i in range(len(s.frames))
            ]
            st.write_sample_masks(s.sample_id, writes, author="bench")
    return samples


def peak_rss_mb() -> float:
    """This process's own peak resident memory (``VmHWM``; ``ru_maxrss`` would include the parent's
    RSS at fork time on Linux, which grows with the store the driver built)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_export(store: str, fmt: str, out: str) -> None:
    """Run in a subprocess: one export; print seconds and peak RSS as JSON."""
    from hmtools.exchange import export_store

    rss_before = peak_rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    result = export_store(Path(store), fmt, Path(out))
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": cpu,
                "masks": result.counts.masks,
                "rss_imports_mb": rss_before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def run_export(store: Path, fmt: str, out: Path) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [sys.executable, __file__, "--child-export", str(store), fmt, str(out)]
    res = json.loads(
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    )
    res["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size
    res["fps"] = res["masks"] / res["seconds"]
    return res


def _timed(fn: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads, and of child processes it waited
    for, e.g. the import's decoding workers) of ``fn()``."""

    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    w, c = time.perf_counter(), cpu()
    fn()  # type: ignore[operator]
    return time.perf_counter() - w, cpu() - c


def bench_import(work: Path, samples: list, masks_dir: Path) -> dict:
    """Our fineparser import vs a bare single-thread cv2.imread loop over the same files.

    The bare loop runs before and after the import (the machine is shared: load changes), and
    CPU time is reported beside wall time.
    """
    from hmtools.exchange import import_masks
    from hmtools.store import MaskStore

    root = work / "frames"
    frame = work / "frame.jpg"
    cv2.imwrite(str(frame), np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    for s in samples:
        (root / s.frames[0]).parent.mkdir(parents=True, exist_ok=True)
        for key in s.frames:
            os.symlink(frame, root / key)
    files = sorted(str(p) for p in masks_dir.rglob("*.jpg"))
    for f in files:  # warm the page cache for both contenders
        Path(f).read_bytes()

    def bare() -> None:
        for f in files:
            cv2.imread(f, cv2.IMREAD_GRAYSCALE)

    def ours() -> None:
        with MaskStore(work / "imported.db") as st:
            # workers forked directly, as the hmtools import command does (this process ran no OpenCV pool work)
            report = import_masks(st, samples, "fineparser", masks_dir, root=root, fork_workers=True)
        assert report.imported == len(files), report.lines()

    b1, ours_t, b2 = _timed(bare), _timed(ours), _timed(bare)
    bare_wall, bare_cpu = (b1[0] + b2[0]) / 2, (b1[1] + b2[1]) / 2
    return {
        "files": len(files),
        "bare_s": (b1[0], b2[0]),
        "bare_cpu_s": bare_cpu,
        "import_s": ours_t[0],
        "import_cpu_s": ours_t[1],
        "ratio": ours_t[0] / bare_wall,
        "cpu_ratio": ours_t[1] / bare_cpu,
    }


def bare_writes(target: Path, n: int) -> float:
    """Files/s of a bare loop writing ``n`` 5.6 kB files in the export's tree layout (file-system cost)."""
    data = cv2.imencode(".jpg", person_mask(0, 0).astype(np.uint8) * 255)[1].tobytes()
    t = time.perf_counter()
    for k in range(n // FRAMES_PER_SAMPLE):
        folder = target / "diving-out" / f"{k:05d}"
        folder.mkdir(parents=True)
        for i in range(1, FRAMES_PER_SAMPLE + 1):
            fd = os.open(folder / f"img_{i:05d}.jpg", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
    seconds = time.perf_counter() - t
    shutil.rmtree(target)
    return n / seconds


def fs_type(path: Path) -> str:
    """The file-system type ``df -T`` names for ``path`` (ext4, tmpfs, ...)."""
    return subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]


def bench_hdf5_layouts(n: int) -> list[dict]:
    """Bit-packed (ours) vs unpacked uint8 at gzip 1 and 4, chunk = one frame; write and read ``n`` masks."""
    import h5py

    masks = np.stack([person_mask(t, seed=t // 50) for t in range(min(n, DISTINCT))])
    reps = max(1, n // len(masks))
    out = []
    with tempfile.TemporaryDirectory() as d:
        for name, packed, level in (
            ("bit-packed, gzip 1", True, 1),
            ("bit-packed, gzip 4", True, 4),
            ("uint8, gzip 1", False, 1),
            ("uint8, gzip 4", False, 4),
        ):
            data = np.packbits(masks, axis=1) if packed else masks.astype(np.uint8)
            path = Path(d) / "x.h5"
            t = time.perf_counter()
            with h5py.File(path, "w") as f:
                for r in range(reps):
                    f.create_dataset(
                        f"s{r}",
                        data=data,
                        chunks=(1, *data.shape[1:]),
                        compression="gzip",
                        compression_opts=level,
                        track_times=False,
                    )
            write = time.perf_counter() - t
            t = time.perf_counter()
            with h5py.File(path, "r") as f:
                for r in range(reps):
                    block = f[f"s{r}"][()]
                    if packed:  # hmtools.exchange.hdf5.unpack
                        np.unpackbits(block.swapaxes(-1, -2), axis=-1, count=H).swapaxes(-1, -2).view(bool)
                    else:
                        block.view(bool)
            read = time.perf_counter() - t
            frames = reps * len(masks)
            out.append(
                {
                    "layout": name,
                    "bytes_per_frame": path.stat().st_size / frames,
                    "write_fps": frames / write,
                    "read_fps": frames / read,
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000, help="masks in the big store")
    ap.add_argument("--small", type=int, default=20_000, help="masks in the small store (memory comparison)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder, removed)")
    ap.add_argument(
        "--memory-scratch",
        type=Path,
        default=Path("/dev/shm"),
        help="memory-backed folder for the second fineparser run (skipped when it does not exist)",
    )
    ap.add_argument("--child-export", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_export:
        child_export(*args.child_export)
        return
    work = Path(tempfile.mkdtemp(prefix="hm-bench-", dir=args.workdir))
    try:
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (shared with "
            f"other jobs); frames {W}x{H}; scratch {work} ({fs_type(work)})"
        )
        results = {}
        for n in sorted({args.small, args.frames}):
            t = time.perf_counter()
            samples = build_store(work / f"s{n}.db", n)
            print(f"\nstore of {n} masks built in {time.perf_counter() - t:.1f} s")
            print(
                f"{'format':11s} {'frames/s':>9s} {'/CPU-s':>9s} {'MB':>8s} {'B/frame':>8s} {'peak RSS MB':>11s} "
                f"{'RSS after imports':>17s}"
            )
            for fmt in FORMATS:
                out = (
                    work / f"{fmt}-{n}"
                    if fmt == "fineparser"
                    else work / f"{fmt}-{n}.{'h5' if fmt == 'hdf5' else 'json'}"
                )
                bare_before = bare_writes(work / "bare", n) if fmt == "fineparser" else None
                r = run_export(work / f"s{n}.db", fmt, out)
                results[(fmt, n)] = r
                print(
                    f"{fmt:11s} {r['fps']:9.0f} {r['masks'] / r['cpu_s']:9.0f} {r['bytes'] / 1e6:8.1f} "
                    f"{r['bytes'] / n:8.0f} {r['peak_rss_mb']:11.1f} {r['rss_imports_mb']:17.1f}"
                )
                if bare_before is not None:
                    bare_after = bare_writes(work / "bare", n)
                    print(
                        f"{'':11s} bare write loop, same files and tree: {bare_before:.0f} files/s before, "
                        f"{bare_after:.0f} after (the file system's own cost)"
                    )
                if fmt != "fineparser" or n != args.frames:
                    shutil.rmtree(out) if out.is_dir() else out.unlink()
        memory = args.memory_scratch
        if memory is not None and memory.is_dir():
            out = Path(tempfile.mkdtemp(prefix="hm-bench-", dir=memory))
            try:
                bare = bare_writes(out / "bare", args.frames)
                r = run_export(work / f"s{args.frames}.db", "fineparser", out / "fp")
                print(
                    f"\nfineparser to {memory} ({fs_type(out)}): {r['fps']:.0f} frames/s, {r['masks'] / r['cpu_s']:.0f} "
                    f"/CPU-s; bare write loop there: {bare:.0f} files/s"
                )
            finally:
                shutil.rmtree(out, ignore_errors=True)
        print("\npeak RSS growth from", args.small, "to", args.frames, "frames:")
        for fmt in FORMATS:
            a, b = results[(fmt, args.small)]["peak_rss_mb"], results[(fmt, args.frames)]["peak_rss_mb"]
            print(f"  {fmt:11s} {a:7.1f} MB -> {b:7.1f} MB ({b - a:+.1f} MB)")
        r = bench_import(work, samples, work / f"fineparser-{args.frames}")
        print(
            f"\nimport --format fineparser of {r['files']} JPEG masks: {r['import_s']:.1f} s wall "
            f"({r['files'] / r['import_s']:.0f} masks/s), {r['import_cpu_s']:.1f} s CPU\n"
            f"bare cv2.imread loop: {r['bare_s'][0]:.1f} s before, {r['bare_s'][1]:.1f} s after, "
            f"{r['bare_cpu_s']:.1f} s CPU\n"
            f"ratio import / bare: {r['ratio']:.2f}x wall, {r['cpu_ratio']:.2f}x CPU"
        )
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        print("\nHDF5 layout (one chunk per frame):")
        for row in bench_hdf5_layouts(min(args.frames, 20_000)):
            print(
                f"  {row['layout']:20s} {row['bytes_per_frame']:7.0f} B/frame  write {row['write_fps']:7.0f} fr/s  read {row['read_fps']:7.0f} fr/s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
