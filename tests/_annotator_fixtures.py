"""A tiny dataset + mask store for the annotator tests: synthetic "diver" clips written as JPEGs
under a root, registered with MaskStore.add_samples and given auto masks (some flagged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite


@dataclass(frozen=True)
class TinyDataset:
    root: Path
    store_path: Path
    samples: tuple[Sample, ...]
    truth: dict[str, np.ndarray]  # frame key -> true athlete mask (H, W) bool


def person_mask(cx: float, cy: float, h: int, w: int, scale: float = 1.0) -> np.ndarray:
    """A diver-like shape (body ellipse + head disk) with its body centred at (cx, cy) pixels,
    ``scale`` times the default size (a fifth of the frame height tall); ``(H, W)`` bool."""
    yy, xx = np.mgrid[0:h, 0:w]
    body = ((xx - cx) / (0.07 * w * scale)) ** 2 + ((yy - cy) / (0.2 * h * scale)) ** 2 <= 1
    head = (xx - cx) ** 2 + (yy - (cy - 0.26 * h * scale)) ** 2 <= (0.06 * min(h, w) * scale) ** 2
    return body | head


def athlete_mask(t: int, h: int, w: int) -> np.ndarray:
    """The athlete of :func:`make_dataset`'s clips: moves right and down with ``t``."""
    return person_mask(w * (0.3 + 0.05 * t), h * (0.35 + 0.03 * t), h, w)


def painted(people: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """A pool-blue gradient with ``people`` (``(H, W)`` bool masks) in skin tone, ``(H, W, 3)`` uint8."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 2] = np.linspace(120, 220, h, dtype=np.uint8)[:, None]
    img[..., 1] = np.linspace(60, 140, w, dtype=np.uint8)[None, :]
    img[..., 0] = 30
    for m in people:
        img[m] = (225, 170, 130)
    return img


def frame_image(t: int, h: int, w: int) -> np.ndarray:
    """Frame ``t`` of :func:`make_dataset`'s clips, ``(H, W, 3)`` uint8."""
    return painted([athlete_mask(t, h, w)], h, w)


def add_flagged_sample(
    ds: TinyDataset, sample_id: str, people: list[list[np.ndarray]], chosen: int, reason: str, dataset: str = "aqa7"
) -> list[str]:
    """Add a sample as build-masks leaves a whole-sample flag: frame ``t`` shows the persons
    ``people[t]`` (``(H, W)`` bool each); every frame's auto mask is person ``chosen`` only, flagged
    with ``reason``. Returns the frame keys."""
    h, w = people[0][0].shape
    keys = []
    for t, persons in enumerate(people):
        key = f"{sample_id}/img_{t + 1:05d}.jpg"
        (ds.root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(painted(persons, h, w)).save(ds.root / key, quality=95)
        keys.append(key)
    writes = [MaskWrite(mask=p[chosen], score=0.9, status="flagged", reason=reason) for p in people]
    with MaskStore(ds.store_path) as store:
        store.add_samples([Sample(sample_id, dataset, tuple(keys), "train", score=70.0)])
        store.set_frame_sizes({k: (h, w) for k in keys})
        store.write_sample_masks(sample_id, writes, author="build-masks")
    return keys


def make_dataset(
    tmp: Path, n_samples: int = 2, n_frames: int = 8, size: tuple[int, int] = (96, 128), flagged: tuple[int, ...] = (3,)
) -> TinyDataset:
    """Write the clips, register the samples, and write auto masks: the true mask on most frames,
    a shifted (wrong) mask flagged ``"low score"`` on the ``flagged`` frames."""
    h, w = size
    root, store_path = tmp / "root", tmp / "masks.db"
    samples, truth = [], {}
    for s in range(n_samples):
        sid = f"diving/{s + 1:03d}"
        keys = []
        for t in range(n_frames):
            key = f"diving-out/{s + 1:03d}/img_{t + 1:05d}.jpg"
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame_image(t, h, w)).save(root / key, quality=95)
            keys.append(key)
            truth[key] = athlete_mask(t, h, w)
        samples.append(Sample(sid, "aqa7", tuple(keys), "train" if s % 2 == 0 else "test", score=80.0 + s))
    with MaskStore(store_path) as store:
        store.add_samples(samples)
        store.set_frame_sizes({k: (h, w) for k in truth})
        for sample in samples:
            writes = []
            for t, key in enumerate(sample.frames):
                if t in flagged:
                    writes.append(
                        MaskWrite(
                            mask=np.roll(truth[key], w // 4, axis=1), score=0.3, status="flagged", reason="low score"
                        )
                    )
                else:
                    writes.append(MaskWrite(mask=truth[key], score=0.95))
            store.write_sample_masks(sample.sample_id, writes, author="build-masks")
    return TinyDataset(root, store_path, tuple(samples), truth)
