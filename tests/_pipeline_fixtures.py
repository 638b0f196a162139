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


def static_box(
    t_count: int, box: tuple[float, float, float, float], rng: np.random.Generator, jitter: float = 2.0
) -> np.ndarray:
    return (np.array(box, np.float32)[None] + rng.normal(0, jitter, (t_count, 4))).astype(np.float32)


def scene(
    t_count: int = 40,
    *,
    judges: bool = False,
    crowd: bool = False,
    waiting: bool = False,
    sync: bool = False,
    drop_frames=(),
    seed: int = 0,
):
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


ATHLETE_RGB = (235, 190, 160)


class BlobDetector:
    """A fake person detector that reads pixels: every bright blob (athlete or grey box) is a person."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, frames):
        import cv2

        self.calls.append(len(frames))
        out = []
        for img in frames:
            fg = (img[..., 0] > 120).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(fg)
            boxes = [(x, y, x + w, y + h, 0.9) for x, y, w, h, area in stats[1:] if area >= 12]
            out.append(np.array(boxes, np.float32).reshape(-1, 5))
        return out


class ColourSegmenter:
    """A fake segmenter: the athlete-coloured pixels inside the prompt box (grown by 10%)."""

    def __init__(self) -> None:
        self.embedded = 0

    def embed(self, images):
        self.embedded += len(images)
        return list(images)

    def predict_batch(self, embs, prompts):
        out = []
        for img, p in zip(embs, prompts, strict=True):
            x1, y1, x2, y2 = p.box
            gx, gy = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
            keep = np.zeros(img.shape[:2], bool)
            keep[int(max(0, y1 - gy)) : int(y2 + gy) + 1, int(max(0, x1 - gx)) : int(x2 + gx) + 1] = True
            mask = keep & (np.abs(img.astype(int) - ATHLETE_RGB).sum(-1) < 60)
            out.append((mask, 0.95, np.zeros((16, 16), np.float32)))
        return out


def write_clip(root, folder: str, n: int = 12, h: int = 96, w: int = 160, corrupt=(), start: int = 1):
    """JPEG frames ``<root>/<folder>/img_%05d.jpg`` of a falling athlete and two static grey 'judges'.

    Returns:
        ``(frame keys, true athlete boxes (n, 4))``.
    """
    import cv2

    root.joinpath(folder).mkdir(parents=True, exist_ok=True)
    t = np.linspace(0, 1, n)
    cx, cy = 60 + 20 * t, 18 + 55 * t
    bw, bh = 14 + 8 * np.abs(np.sin(2 * np.pi * t)), 26 - 8 * np.abs(np.sin(2 * np.pi * t))
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    judges = [(2, 50, 16, 80), (w - 16, 52, w - 2, 82)]
    keys = []
    for i in range(n):
        key = f"{folder}/img_{i + start:05d}.jpg"
        keys.append(key)
        if i in corrupt:
            root.joinpath(key).write_bytes(b"not a jpeg at all")
            continue
        img = blob_frame(h, w, boxes[i], judges, seed=i)
        cv2.imwrite(str(root / key), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return keys, boxes


def write_aqa7_splits(root, n_samples: int, action_class: int = 1) -> None:
    """``<root>/Split_4/split_4_{train,test}_list.mat``: rows ``[class_idx, sample_idx, score]``; the last sample is test."""
    from scipy.io import savemat

    (root / "Split_4").mkdir(parents=True, exist_ok=True)
    rows = {
        "train": [[action_class, i, 60.0 + i] for i in range(1, n_samples)],
        "test": [[action_class, n_samples, 70.0]],
    }
    for split, data in rows.items():
        savemat(
            str(root / "Split_4" / f"split_4_{split}_list.mat"),
            {f"consolidated_{split}_list": np.array(data, float).reshape(-1, 3)},
        )
