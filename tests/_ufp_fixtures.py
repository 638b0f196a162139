"""Synthetic FineDiving-layout data for the Uni-FineParser tests.

Each clip shows a bright square "athlete" on a dark, noisy background. It moves down the frame
through three steps (take-off: still at the top, flight: falling, entry: at the bottom); its
side grows and its colour turns from red to green with the score, so the score is visible and
learnable. The masks are the square.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite

VIDEO_DIR = "FINADiving_MTL_256s"


def clip_arrays(n: int, score01: float, rng: np.random.Generator, hw: tuple[int, int] = (48, 64)):
    """Frames ``(n, H, W, 3)`` uint8, masks ``(n, H, W)`` bool and per-frame step labels for one clip."""
    h, w = hw
    side = int(round(6 + 14 * score01))
    t1, t2 = int(n * 0.3), int(n * 0.7)
    labels = np.array([2] * t1 + [15] * (t2 - t1) + [36] * (n - t2))
    frames = (rng.integers(0, 40, size=(n, h, w, 3))).astype(np.uint8)
    masks = np.zeros((n, h, w), bool)
    x0 = (w - side) // 2 + int(rng.integers(-4, 5))
    color = (int(230 - 170 * score01), int(60 + 170 * score01), 60)  # red (low) to green (high)
    for i in range(n):
        frac = 0.0 if i < t1 else (1.0 if i >= t2 else (i - t1) / max(1, t2 - t1))
        y0 = int(2 + frac * (h - side - 4))
        masks[i, y0 : y0 + side, x0 : x0 + side] = True
        frames[i][masks[i]] = color
    return frames, masks, labels


def make_dataset(
    root: Path, n_train: int = 24, n_test: int = 8, n_frames: int = 20, seed: int = 0
) -> tuple[list[Sample], dict[str, np.ndarray]]:
    """Write JPEG frames in FineDiving's layout; returns samples and ``{sample_id: masks (n, H, W)}``."""
    rng = np.random.default_rng(seed)
    samples, masks = [], {}
    for i in range(n_train + n_test):
        video, idx = f"synth_{i // 4:02d}", i % 4
        start = 100 + 7 * i
        u = float(rng.random())
        frames, m, labels = clip_arrays(n_frames, u, rng)
        keys = []
        for j in range(n_frames):
            key = f"{VIDEO_DIR}/{video}/{idx}/{start + j:05d}.jpg"
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), frames[j][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            keys.append(key)
        sid = f"{video}/{idx}"
        trans = tuple(int(t) for t in np.flatnonzero(labels[1:] != labels[:-1]))
        samples.append(
            Sample(
                sample_id=sid,
                dataset="finediving",
                frames=tuple(keys),
                split="train" if i < n_train else "test",
                score=round(20 + 80 * u, 1),
                difficulty=2.0 + (i % 2),
                action=("101a", "201b")[i % 2],
                step_transitions=trans,
                frame_labels=tuple(int(x) for x in labels),
                expected_frames=n_frames,
            )
        )
        masks[sid] = m
    return samples, masks


def make_store(path: Path, samples: list[Sample], masks: dict[str, np.ndarray], skip: int = 0) -> Path:
    """A mask store holding every sample's masks (the first ``skip`` frames of the first sample left out)."""
    with MaskStore(path) as store:
        store.add_samples(samples)
        for k, s in enumerate(samples):
            start = skip if k == 0 else 0
            writes = [
                MaskWrite(mask=masks[s.sample_id][j], frame_idx=j, source="human") for j in range(start, len(s.frames))
            ]
            store.write_sample_masks(s.sample_id, writes, author="test")
    return path


def write_finediving_annotations(root: Path, samples: list[Sample]) -> Path:
    """The six FineDiving pickles (types as in the real files) for ``samples``; returns ``<root>/Annotations``."""
    import pickle

    ann = root / "Annotations"
    ann.mkdir(parents=True, exist_ok=True)
    coarse, fine, aqa, train, test = {}, {}, {}, [], []
    for s in samples:
        video, idx = s.sample_id.rsplit("/", 1)
        key = (video, int(idx))
        start = int(Path(s.frames[0]).stem)
        labels = np.array(s.frame_labels, dtype=np.int64)
        trans = np.array(s.step_transitions, dtype=np.int64)
        coarse[key] = {
            "action_type": s.action,
            "start_frame": start,
            "end_frame": start + len(s.frames) - 1,
            "dive_score": s.score,
            "difficulty": s.difficulty,
            "judge_scores": [7.0, 7.5, 7.0, 6.5, 7.0],
        }
        types = {np.int64(v): {2: "Back", 15: "2.5 Soms.Pike", 36: "Entry"}[int(v)] for v in set(labels.tolist())}
        fine[key] = {
            "action_type": s.action,
            "dive_score": s.score,
            "difficulty": s.difficulty,
            "steps_transit_frames": trans,
            "frames_labels": labels,
            "sub-action_types": types,
        }
        aqa[key] = [s.action, s.score, s.difficulty, trans, labels]
        (train if s.split == "train" else test).append(key)
    table = {2: "Back", 15: "2.5 Soms.Pike", 36: "Entry", 38: "Background"}
    for name, obj in (
        ("FineDiving_coarse_annotation.pkl", coarse),
        ("FineDiving_fine-grained_annotation.pkl", fine),
        ("fine-grained_annotation_aqa.pkl", aqa),
        ("Sub_action_Types_Table.pkl", table),
        ("train_split.pkl", train),
        ("test_split.pkl", test),
    ):
        (ann / name).write_bytes(pickle.dumps(obj))
    return ann


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on the shared 2-core VM two threads spin against
    other processes (measured 20-50x slower under load). Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
