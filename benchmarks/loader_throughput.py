"""Training data throughput: our packed clip cache against decoding each pair's JPEGs, same clips.

Writes a synthetic FineDiving-shaped dataset (``--clips`` clips of ``--frames`` frames: 455x256 JPEG
frames and grayscale JPEG masks in FineDiving-HM's folder layout), then times, on the same clips,
producing training pairs for the paper preset (2 clips of 96 frames with masks, 112x112 crops):

- the public code's way, re-enacted: each pair opens its 2 x 96 frames and 2 x 96 masks with PIL,
  flips half the clips, resizes them to 200x112 (nearest, torchvideotransforms' default) and crops
  112x112 (its training transforms), then makes the normalised float clip its model takes;
- ours: ``uni_fineparser.data.PairDataset`` over the packed cache (``build_cache``, built once; its
  build time is printed), which yields uint8 crops (normalisation happens on the GPU).

Both are timed in one process (pairs/s per core), then ours through a ``DataLoader`` at batch 2 with
each ``--workers`` count, as ``hmtools train`` runs it (``train.workers``). The GPU side consumes 38.7-67.8
pairs/s at batch 2 and 102 at the largest batch on one H100 (docs/training.md); the loader keeps up
when its pairs/s exceed those.

    PYTHONPATH=. python benchmarks/loader_throughput.py --workers 0 2 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hmtools.schema import Sample
from uni_fineparser.cache import build_cache, import_cv2
from uni_fineparser.config import load_run_config
from uni_fineparser.data import ExemplarPool, PairDataset
from uni_fineparser.mask_source import open_mask_source
from uni_fineparser.transforms import sample_indices

GPU_PAIRS_PER_S = (67.8, 102.2)  # H100, paper preset: batch 2 (best run), largest batch (docs/training.md)
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def write_dataset(root: Path, clips: int, frames: int) -> list[Sample]:
    """``clips`` clips of ``frames`` smooth 455x256 JPEG frames (a person-sized box moving) and their
    grayscale masks under ``root/frames`` and ``root/masks``, in FineDiving's key layout."""
    cv2 = import_cv2()
    rng = np.random.default_rng(0)
    samples = []
    for c in range(clips):
        base = cv2.resize(rng.integers(0, 256, (16, 28, 3), dtype=np.uint8), (455, 256), interpolation=cv2.INTER_CUBIC)
        keys = []
        for f in range(frames):
            key = f"FINADiving_synthetic/{c}/{f:05d}.jpg"
            x = 100 + (f * 3) % 250
            img = base.copy()
            cv2.rectangle(img, (x, 60), (x + 40, 200), (200, 160, 140), -1)
            mask = np.zeros((256, 455), np.uint8)
            mask[60:201, x : x + 41] = 255
            for sub, arr in (("frames", img), ("masks", mask)):
                (root / sub / key).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / sub / key), arr)
            keys.append(key)
        samples.append(
            Sample(
                sample_id=f"FINADiving_synthetic/{c}", dataset="finediving", frames=tuple(keys), split="train",
                score=float(rng.uniform(20, 100)), difficulty=3.0, action="107b",
                step_transitions=(frames // 3, 2 * frames // 3),
            )
        )  # fmt: skip
    return samples


def public_view(
    frame_root: Path, mask_root: Path, sample: Sample, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip the public code's way (its ``load_video`` and training transforms, torchvideotransforms
    inlined): PIL open, paired horizontal flip with probability 0.5, resize to 200x112 (h x w) with
    torchvideotransforms' default nearest interpolation, random 112 crop with PIL, ``ClipToTensor`` (a
    float64 buffer, then float32 / 255) and ``Normalize`` on the video; returns the normalised video
    ``(3, 96, 112, 112)`` and its 0/1 mask ``(1, 96, 112, 112)``."""
    idx = sample_indices(len(sample.frames), 96, 0)
    keys = [sample.frames[int(j)] for j in idx]
    video = [Image.open(frame_root / k) for k in keys]
    masks = [Image.open(mask_root / k) for k in keys]
    if rng.random() < 0.5:
        video = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in video]
        masks = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in masks]
    video = [im.resize((112, 200), Image.NEAREST) for im in video]
    masks = [im.resize((112, 200), Image.NEAREST) for im in masks]
    y, x = int(rng.integers(0, 200 - 112 + 1)), 0  # the frame is 112 wide: only the height is cropped
    video = [im.crop((x, y, x + 112, y + 112)) for im in video]
    masks = [im.crop((x, y, x + 112, y + 112)) for im in masks]

    def clip_to_tensor(clip: list, channels: int) -> torch.Tensor:
        buf = np.zeros([channels, len(clip), 112, 112])  # float64, as ClipToTensor
        for i, im in enumerate(clip):
            a = np.asarray(im)
            buf[:, i] = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]
        return torch.from_numpy(buf).float().div(255)

    v = clip_to_tensor(video, 3).clone()
    v.sub_(torch.as_tensor(MEAN)[:, None, None, None]).div_(torch.as_tensor(STD)[:, None, None, None])
    return v, clip_to_tensor(masks, 1)


def time_public(root: Path, samples: list[Sample], pairs: int) -> float:
    """Pairs/s of the public way in this process."""
    rng = np.random.default_rng(1)
    public_view(root / "frames", root / "masks", samples[0], rng)  # first-call imports (PIL's JPEG plugin), as ours
    tic = time.perf_counter()
    for i in range(pairs):
        for s in (samples[i % len(samples)], samples[(i + 1) % len(samples)]):
            public_view(root / "frames", root / "masks", s, rng)
    return pairs / (time.perf_counter() - tic)


def time_ours(dataset: PairDataset, pairs: int) -> float:
    """Pairs/s of ``PairDataset`` items in this process."""
    dataset[0]  # opens the memory maps
    tic = time.perf_counter()
    for i in range(pairs):
        dataset[i % len(dataset)]
    return pairs / (time.perf_counter() - tic)


def time_loader(dataset: PairDataset, workers: int, batches: int, pin: bool) -> tuple[float, float]:
    """(pairs/s after the first batch, seconds to the first batch) through a DataLoader at batch 2."""
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=workers, pin_memory=pin, drop_last=True)
    tic = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - tic
    tic, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        n += 2
    return n / (time.perf_counter() - tic), first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=120, help="frames per clip (FineDiving clips: ~100-130)")
    ap.add_argument("--pairs", type=int, default=40, help="pairs timed in-process on each side")
    ap.add_argument("--batches", type=int, default=100, help="DataLoader batches timed")
    ap.add_argument(
        "--workers", type=int, nargs="+", default=[0, min(4, os.cpu_count() or 1)], help="DataLoader workers to time"
    )
    ap.add_argument("--workdir", type=Path, default=None, help="where the dataset and cache go (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        tic = time.perf_counter()
        samples = write_dataset(root, args.clips, args.frames)
        print(
            f"dataset: {args.clips} clips x {args.frames} frames (455x256 JPEG + mask) written in {time.perf_counter() - tic:.1f} s"
        )
        cfg = load_run_config("paper", overrides=[])
        tic = time.perf_counter()
        cache = build_cache(
            samples, root / "frames", open_mask_source(root / "masks"), root / "cache", cfg.train.resize
        )
        n = args.clips * args.frames
        print(
            f"cache build (once per dataset and mask version): {time.perf_counter() - tic:.1f} s, {n / (time.perf_counter() - tic):.0f} frames/s"
        )
        dataset = PairDataset(samples, ExemplarPool(samples, cfg.train.exemplar_by), cache, cfg.model, cfg.train, 0)
        public = time_public(root, samples, max(2, args.pairs // 4))
        ours = time_ours(dataset, args.pairs)
        print(f"one process, one core: public way {public:.2f} pairs/s, ours {ours:.1f} pairs/s: {ours / public:.0f}x")
        gpu = " / ".join(f"{g:g}" for g in GPU_PAIRS_PER_S)
        print(f"one H100 consumes {gpu} pairs/s (paper preset, batch 2 / largest batch)")
        for w in args.workers:
            rate, first = time_loader(dataset, w, args.batches, torch.cuda.is_available())
            print(
                f"ours through DataLoader, {w} workers, batch 2: {rate:.1f} pairs/s (first batch after {first:.2f} s)"
            )


if __name__ == "__main__":
    main()
