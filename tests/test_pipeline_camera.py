"""The camera path: the background's shift between frames, people left out, and its use by the selection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hmtools.schema import Sample
from pipelines.camera import CameraPath
from pipelines.config import BuildConfig, FramesConfig, SelectConfig
from pipelines.run import Models, build_sample_masks, detect_pass
from tests._pipeline_fixtures import ATHLETE_RGB, BlobDetector, ColourSegmenter

H, W = 96, 160


def _scene(seed: int = 0, size: tuple[int, int] = (400, 300)) -> np.ndarray:
    """A textured, dark background (pool tiles and stands): blurred noise, values 20-110."""
    rng = np.random.default_rng(seed)
    noise = cv2.resize(rng.random((size[1] // 8, size[0] // 8)).astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    grey = (20 + 90 * np.clip(noise, 0, 1)).astype(np.uint8)
    return np.stack([grey // 2, grey, grey], -1)


def _ellipse(img: np.ndarray, box) -> None:
    x1, y1, x2, y2 = box
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = ATHLETE_RGB


def test_a_pan_over_a_textured_scene_is_measured() -> None:
    scene, cam = _scene(), CameraPath()
    for t in range(12):  # the camera tilts down 5 px a frame and pans right 2: the scene moves up and left
        cam.add(np.ascontiguousarray(scene[40 + 5 * t : 40 + 5 * t + H, 30 + 2 * t : 30 + 2 * t + W]))
    path = cam.path
    assert path.shape == (12, 2)
    np.testing.assert_allclose(path[-1], [-2 * 11, -5 * 11], atol=2.0)
    assert np.all(np.diff(path[:, 1]) < -3)


def test_a_moving_athlete_on_a_bare_background_is_not_taken_for_the_camera() -> None:
    """A sky or a wall gives phase correlation nothing but the athlete: blanked out, there is no motion."""
    for people in (True, False):
        cam = CameraPath()
        for t in range(10):
            img = np.full((H, W, 3), (30, 60, 110), np.uint8)
            box = (60 + 3 * t, 10 + 6 * t, 80 + 3 * t, 40 + 6 * t)
            _ellipse(img, box)
            cam.add(img, np.array([[*box, 0.9]]) if people else None)
        moved = np.abs(cam.path[-1]).max()
        assert (moved < 1.0) if people else (moved > 10), (people, cam.path[-1])  # without the boxes it locks on


def test_unreadable_frames_repeat_the_last_position() -> None:
    scene, cam = _scene(1), CameraPath()
    cam.add(np.ascontiguousarray(scene[0:H, 0:W]))
    cam.add(None)
    cam.add(np.ascontiguousarray(scene[8 : 8 + H, 0:W]))
    path = cam.path
    assert path.shape == (3, 2) and np.array_equal(path[0], path[1]) and path[2, 1] == pytest.approx(-8, abs=1.0)


def _following_shot(root, folder: str, n: int = 16) -> list[str]:
    """The camera tilts down with a diver (3 px a frame): the diver stays mid-frame while two tall judges
    standing on the platform slide up the image, further than the diver moves in it."""
    scene = _scene(2, (W + 40, H + 3 * n + 40))
    (root / folder).mkdir(parents=True)
    keys = []
    for t in range(n):
        img = np.ascontiguousarray(scene[3 * t : 3 * t + H, 20 : 20 + W])
        sway = 4 * np.sin(t / 2)
        bw, bh = 14 + 6 * abs(np.sin(t / 3)), 26 - 6 * abs(np.sin(t / 3))  # somersaults change the box shape
        _ellipse(img, (80 + sway - bw / 2, 30 - bh / 2, 80 + sway + bw / 2, 30 + bh / 2))
        for x in (10, 130):
            y = 50 - 3 * t
            img[y : y + 40, x : x + 16] = (150, 150, 150)
        key = f"{folder}/img_{t + 1:05d}.jpg"
        cv2.imwrite(str(root / key), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        keys.append(key)
    return keys


def test_a_followed_diver_is_chosen_over_judges_the_camera_sweeps_past(tmp_path) -> None:
    keys = _following_shot(tmp_path, "diving-out/001")
    sample = Sample(sample_id="diving/001", dataset="aqa7", frames=tuple(keys), split="train")
    models = Models(BlobDetector(), ColourSegmenter())
    frames = FramesConfig(batch_size=4, workers=1, prefetch=1)
    _, _, _, camera = detect_pass(sample, tmp_path, models, BuildConfig(frames=frames))
    assert camera[-1, 1] == pytest.approx(-3 * (len(keys) - 1), abs=3.0)  # the background moved up
    for compensated in (True, False):
        cfg = BuildConfig(frames=frames, select=SelectConfig(camera_motion=compensated))
        writes = build_sample_masks(sample, tmp_path, models, cfg)
        from hmtools.masks import decode_rle

        centres = [np.argwhere(decode_rle(w.rle)).mean(0) if decode_rle(w.rle).any() else None for w in writes]
        on_diver = sum(c is not None and abs(c[1] - 80) < 12 and abs(c[0] - 30) < 12 for c in centres)
        assert bool(on_diver >= len(keys) - 1) is compensated, (compensated, on_diver)
