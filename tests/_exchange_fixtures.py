"""Synthetic stores and frame trees for the exchange tests (export / import / validate)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite

H, W = 48, 64


def person_mask(h: int, w: int, t: int, seed: int = 0) -> np.ndarray:
    """A moving diver-like silhouette (body ellipse, head, arms): ``(h, w)`` bool."""
    m = np.zeros((h, w), np.uint8)
    cx = int(w * (0.25 + 0.5 * ((t * 0.07 + seed * 0.31) % 1.0)))
    cy = int(h * (0.35 + 0.3 * abs(np.sin(t * 0.4 + seed))))
    s = h / 48
    angle = (t * 23 + seed * 41) % 180
    cv2.ellipse(m, (cx, cy), (max(1, int(4 * s)), int(12 * s)), angle, 0, 360, 1, -1)
    cv2.circle(m, (cx + int(3 * s), cy - int(14 * s)), max(1, int(3 * s)), 1, -1)
    cv2.line(m, (cx, cy), (cx + int(9 * s), cy + int(4 * s)), 1, max(1, int(2 * s)))
    return m.astype(bool)


def make_samples(n_samples: int = 3, n_frames: int = 6, dataset: str = "aqa7") -> list[Sample]:
    """AQA-7-style samples ``diving/00k`` with frames ``diving-out/00k/img_%05d.jpg``."""
    return [
        Sample(
            sample_id=f"diving/{k:03d}",
            dataset=dataset,
            frames=tuple(f"diving-out/{k:03d}/img_{i:05d}.jpg" for i in range(1, n_frames + 1)),
            split="train" if k % 2 else "test",
            score=50.0 + k,
            action_class="diving",
        )
        for k in range(1, n_samples + 1)
    ]


def write_frames(root: Path, samples: list[Sample], h: int = H, w: int = W) -> None:
    """Write a small RGB JPEG for every frame key under ``root``."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for s in samples:
        for key in s.frames:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / key), img)


def fill_store(store: MaskStore, samples: list[Sample], *, tracks: bool = False, holes: bool = True) -> None:
    """Register samples and write masks with mixed provenance.

    With ``holes``, the first sample's second frame gets no mask and its third an empty mask. With
    ``tracks``, every mask is two athletes (two silhouettes) with per-athlete ``tracks``.
    """
    store.add_samples(samples)
    statuses = ("unreviewed", "accepted", "flagged", "accepted")
    for k, s in enumerate(samples):
        writes = []
        for i in range(len(s.frames)):
            if holes and k == 0 and i == 1:
                continue
            mask = person_mask(H, W, i, seed=k)
            parts = None
            if holes and k == 0 and i == 2:
                mask = np.zeros((H, W), bool)
            elif tracks:
                other = np.roll(person_mask(H, W, i, seed=k + 7), W // 2, axis=1)
                other[:, : W // 2] = False
                mask = (mask & (np.arange(W) < W // 2)) | other
                from hmtools.masks import encode_rle

                parts = [
                    {"track": 1, "bbox": [0, 0, W // 2, H], "counts": None},
                    {"track": 2, "bbox": [W // 2, 0, W, H], "counts": encode_rle(other)["counts"]},
                ]
            writes.append(
                MaskWrite(
                    mask=mask,
                    source="auto" if i % 2 else "human",
                    score=0.5 + 0.05 * i if i % 3 else None,
                    status=statuses[i % 4],
                    frame_idx=i,
                    tracks=parts,
                )
            )
        store.write_sample_masks(s.sample_id, writes, author="test")


def current(store: MaskStore) -> dict[str, np.ndarray | None]:
    """``{frame key: newest mask or None}`` over the whole store."""
    out: dict[str, np.ndarray | None] = {}
    for sid in store.sample_ids():
        for frame, rec in zip(store.frames(sid), store.current_masks(sid), strict=True):
            out[frame.key] = None if rec is None else rec.mask()
    return out
