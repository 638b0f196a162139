"""Synthetic scenes and clips for the pipeline tests (not a test module)."""

from __future__ import annotations

import numpy as np

H, W = 720, 1280


def athlete_boxes(t_count: int, x0: float = 300, drop: float = 480, seed: int = 0) -> np.ndarray:
    """A diver: leaves the platform, falls ``drop`` px, rotating (aspect changes). ``(T, 4)`` XYXY."""
    t = np.linspace(0, 1, t_count)
    cx = x0 + 60 * t
    cy = 120 + drop * t**2
    w = 70 + 60 * np.abs(np.sin(3 * np.pi * t))
    h = 170 - 80 * np.abs(np.sin(3 * np.pi * t))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def static_box(t_count: int, box: tuple[float, float, float, float], rng: np.random.Generator, jitter: float = 2.0) -> np.ndarray:
    return (np.array(box, np.float32)[None] + rng.normal(0, jitter, (t_count, 4))).astype(np.float32)


def scene(t_count: int = 40, *, judges: bool = False, crowd: bool = False, waiting: bool = False, sync: bool = False, drop_frames=(), seed: int = 0):
    """Per-frame detections ``[(N, 5)]`` and the true athlete boxes ``(K, T, 4)``."""
    rng = np.random.default_rng(seed)
    athletes = [athlete_boxes(t_count)]
    if sync:
        athletes.append(athlete_boxes(t_count, x0=520))
    others = []
    if judges:  # tall, static, at the frame edge, confident
        others += [static_box(t_count, (1150, 420, 1250, 700), rng), static_box(t_count, (20, 430, 120, 700), rng)]
    if crowd:
        for _ in range(25):
            x, y = rng.uniform(0, W - 20), rng.uniform(0, 200)
            others.append(static_box(t_count, (x, y, x + 14, y + 30), rng, jitter=3.0))
    if waiting:  # another diver standing still on the platform, same size as the athlete
        others.append(static_box(t_count, (700, 40, 770, 210), rng))
    dets = []
    for t in range(t_count):
        rows = [np.r_[a[t], 0.85] for a in athletes if t not in drop_frames]
        rows += [np.r_[o[t], 0.9] for o in others]
        arr = np.array(rows, np.float32).reshape(-1, 5)
        dets.append(arr[rng.permutation(len(arr))])
    return dets, np.stack(athletes)


def blob_frame(h: int, w: int, box: np.ndarray, distractors=(), seed: int = 0) -> np.ndarray:
    """An RGB frame: dark pool-blue background, a bright 'athlete' ellipse in ``box``, grey static boxes."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (20, 60, 110)
    img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
    for d in distractors:
        x1, y1, x2, y2 = (int(v) for v in d)
        img[y1:y2, x1:x2] = (150, 150, 150)
    x1, y1, x2, y2 = box
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 1), max((y2 - y1) / 2, 1)
    img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = (235, 190, 160)
    return img
