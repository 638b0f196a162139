"""GPU paths (opt-in, ``-m gpu``; skipped without CUDA): batched bf16 SAM encoder and fp16 YOLO on a real device."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from pipelines.segment_tiny import build_tiny_sam, build_tiny_sam_segmenter  # noqa: E402
from pipelines.segment_types import Prompt  # noqa: E402


@pytest.mark.gpu
def test_bf16_sdpa_batched_encoder_matches_fp32_on_cuda() -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (360, 640, 3), dtype=np.uint8) for i in range(6)]
    fast = build_tiny_sam_segmenter(seed=1, device="cuda", batch_size=4, dtype="bf16", sdpa=True)
    ref = build_tiny_sam_segmenter(seed=1, device="cuda", batch_size=1, dtype="fp32", sdpa=False)
    assert next(fast.model.image_encoder.parameters()).dtype == torch.bfloat16
    a, b = fast.embed(frames), ref.embed(frames)
    for x, y in zip(a, b, strict=True):
        assert x.features.device.type == "cuda" and x.features.dtype == torch.float32
        assert ((x.features - y.features).norm() / y.features.norm()) < 0.05
    box = Prompt(box=np.array([100.0, 50, 400, 300]))
    pa = fast.predict_batch(a, [box] * 6)
    pb = ref.predict_batch(b, [box] * 6)
    ious = [(m & n).sum() / max((m | n).sum(), 1) for (m, _, _), (n, _, _) in zip(pa, pb, strict=True)]
    assert np.mean(ious) > 0.9


@pytest.mark.gpu
def test_yolo_fp16_on_cuda() -> None:
    pytest.importorskip("ultralytics")
    from pipelines.detect import build_detector, detect_people

    det = build_detector("yolov8n.yaml", "cuda", conf=0.0, imgsz=320)
    assert det.half
    out = detect_people(det, [np.zeros((240, 320, 3), np.uint8)] * 3)
    assert len(out) == 3 and all(d.shape[1] == 5 for d in out)


def test_tiny_sam_is_deterministic_per_seed() -> None:
    a, b = build_tiny_sam(5), build_tiny_sam(5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
