"""Person detection through the real ultralytics predict path, and the lite (mediapipe) backend on real photos."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmtools.errors import InputError
from pipelines.select import box_iou

_SPEC = importlib.util.find_spec("ultralytics")  # found, not imported: importing it patches PIL process-wide
if _SPEC is None:
    pytest.skip("ultralytics is not installed", allow_module_level=True)

from pipelines.detect import DETECTORS, build_detector, detect_people, person_classes  # noqa: E402

ASSETS = Path(_SPEC.submodule_search_locations[0]) / "assets"
WEIGHTS = Path(os.environ.get("HMTOOLS_TEST_WEIGHTS", Path(__file__).resolve().parents[1] / ".cache" / "test-weights"))
FALL_PT = WEIGHTS / "human_fall_best.pt"
# people in ultralytics' bus.jpg (810x1080), XYXY, checked by eye
BUS_PEOPLE = np.array([[50, 400, 245, 905], [220, 405, 345, 860], [670, 380, 810, 875]], np.float32)


def _rgb(name: str) -> np.ndarray:
    return cv2.imread(str(ASSETS / name))[..., ::-1].copy()


def test_random_yolo_runs_the_real_predict_path_batched() -> None:
    det = build_detector("yolov8n.yaml", "cpu", conf=0.0, imgsz=320, batch_size=2)
    assert det.person_classes == (0,)
    frames = [_rgb("bus.jpg"), _rgb("zidane.jpg"), _rgb("bus.jpg")]
    out = detect_people(det, frames)
    assert len(out) == 3
    for d, f in zip(out, frames, strict=True):
        assert d.dtype == np.float32 and d.ndim == 2 and d.shape[1] == 5
        if len(d):
            assert (d[:, 4][:-1] >= d[:, 4][1:]).all()  # by falling confidence
            assert (d[:, 0] >= 0).all() and (d[:, 2] <= f.shape[1] + 1).all()


def test_unknown_detector_lists_the_names() -> None:
    with pytest.raises(InputError, match="valid names: yolo11n, yolo11s"):
        build_detector("yolo99z", "cpu")
    with pytest.raises(InputError, match="pass --detector FILE"):
        build_detector("/nowhere/best.pt", "cpu")
    assert "yolo11m" in DETECTORS and DETECTORS["yolov8n"] == "yolov8n.pt"


def test_person_classes_rule() -> None:
    assert person_classes({0: "person", 1: "bicycle"}) == (0,)
    assert person_classes({i: str(i) for i in range(80)}) == (0,)
    assert person_classes({0: "Normal", 1: "Fall"}) == (0, 1)


@pytest.mark.skipif(
    not FALL_PT.is_file(),
    reason=f"real detector weights absent: run scripts/fetch_test_weights.sh (looked for {FALL_PT})",
)
def test_real_person_detector_finds_the_people_in_bus_and_zidane() -> None:
    det = build_detector(str(FALL_PT), "cpu", conf=0.25)
    assert det.person_classes == (0, 1)
    bus, zidane = detect_people(det, [_rgb("bus.jpg"), _rgb("zidane.jpg")])
    assert box_iou(BUS_PEOPLE, bus).max(axis=1).min() > 0.6  # every person found
    assert len(zidane) >= 2


def test_lite_backend_on_a_real_photo() -> None:
    pytest.importorskip("mediapipe")
    from pipelines.lite import build_lite
    from pipelines.segment_types import Prompt

    detector, segmenter = build_lite()
    (found,) = detector([_rgb("bus.jpg")])
    assert found.shape == (1, 5)
    assert box_iou(found, BUS_PEOPLE).max() > 0.5  # one of the people on the bus
    img = _rgb("zidane.jpg")
    box = np.array([750, 40, 1150, 720], np.float32)  # the man on the right
    ((mask, score, logits),) = segmenter.predict_batch(segmenter.embed([img]), [Prompt(box=box)])
    assert mask.shape == img.shape[:2] and mask.dtype == bool and logits is None
    inside = mask[40:720, 750:1150].mean()
    assert 0.25 < inside < 0.95 and score > 0.5
    assert not mask[:, :600].any()  # nothing on the other person's side


@pytest.mark.skipif(
    not FALL_PT.is_file(),
    reason=f"real detector weights absent: run scripts/fetch_test_weights.sh (looked for {FALL_PT})",
)
def test_real_detector_and_lite_masks_through_the_run_loop() -> None:
    pytest.importorskip("mediapipe")
    from functools import partial

    from hmtools.masks import decode_rle
    from hmtools.schema import Sample
    from pipelines.config import BuildConfig, FramesConfig
    from pipelines.lite import build_lite
    from pipelines.run import Models, build_sample_masks

    root = Path(__file__).resolve().parents[1] / "examples" / "aqa7_sample"
    keys = tuple(f"diving-out/001/img_{i:05d}.jpg" for i in range(1, 9))
    sample = Sample(sample_id="diving/001", dataset="aqa7", frames=keys, split="train", action_class="diving")
    det = build_detector(str(FALL_PT), "cpu", conf=0.25, batch_size=4)
    _, lite_seg = build_lite()
    cfg = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))
    writes = build_sample_masks(sample, root, Models(partial(detect_people, det), lite_seg), cfg)
    areas = [int(decode_rle(w.rle).sum()) for w in writes]
    assert len(writes) == 8 and sum(a > 0.05 * 176 * 144 for a in areas) >= 6  # the person, on most frames
    assert all(w.tracks is None or w.tracks[0]["bbox"][2] > w.tracks[0]["bbox"][0] for w in writes)


def test_loading_a_detector_leaves_pil_alone(tmp_path) -> None:
    from PIL import Image, UnidentifiedImageError

    before = Image.open
    build_detector("yolov8n.yaml", "cpu")
    assert Image.open is before
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "bad.jpg")


def test_named_detector_that_cannot_download_says_what_to_pass(monkeypatch) -> None:
    class Offline:
        def __init__(self, target: str) -> None:
            raise ConnectionError(f"Download failure for {target}. Environment may be offline.")

    monkeypatch.setattr("pipelines.detect._yolo_class", lambda: Offline)
    with pytest.raises(InputError, match=r"download yolo11x.pt elsewhere and pass --detector PATH"):
        build_detector("yolo11x", "cpu")
