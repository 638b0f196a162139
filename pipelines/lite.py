"""The lite backend: person box and mask from the models that ship inside ``mediapipe==0.10.14``.

Runs offline on a CPU (about 20-100 ms per frame), with no weights to download: for laptops,
quick previews and a first run on a fresh machine. Quality trade-off against YOLO + SAM:

* the detector (BlazePose's person detector + landmarks) finds **at most one person per
  frame** (the most prominent), so the selection cues have little to choose from and a judge
  or a close-up spectator can take the detection; it misses small, far or upside-down people
  more often (divers mid-somersault);
* the mask comes from BlazePose's segmentation head run on a crop around the athlete box: a
  soft, lower-resolution person mask (edges less sharp than SAM's, hair and fingers lost), with
  selfie segmentation as the fallback when no pose is found in the crop (score halved).

``mediapipe`` is imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.segment_types import Prediction, Prompt


class LiteDetector:
    """One-person-per-frame detector from BlazePose landmarks.

    Args:
        pose: ``mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)``.
        min_visibility: Landmarks below this visibility do not shape the box.
    """

    def __init__(self, pose: Any, min_visibility: float = 0.3) -> None:
        self.pose, self.min_visibility = pose, min_visibility

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per frame an ``(N, 5)`` array ``[x1, y1, x2, y2, conf]``, N <= 1."""
        out = []
        for img in frames:
            h, w = img.shape[:2]
            res = self.pose.process(np.ascontiguousarray(img))
            if res.pose_landmarks is None:
                out.append(np.zeros((0, 5), np.float32))
                continue
            lm = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark], np.float32)
            vis = lm[lm[:, 2] >= self.min_visibility]
            pts = vis if len(vis) >= 4 else lm
            x1, y1 = pts[:, 0].min() * w, pts[:, 1].min() * h
            x2, y2 = pts[:, 0].max() * w, pts[:, 1].max() * h
            # landmarks sit inside the silhouette; the top one is an eye, so the head needs more room
            mx, my = 0.1 * (x2 - x1), 0.08 * (y2 - y1)
            box = np.clip([x1 - mx, y1 - 2.5 * my, x2 + mx, y2 + my], 0, [w, h, w, h])
            out.append(np.array([[*box, float(np.mean(lm[:, 2]))]], np.float32))
        return out


class LiteSegmenter:
    """Box-prompted person masks from BlazePose segmentation on a crop around the box.

    Args:
        pose: As for :class:`LiteDetector` (may be the same object).
        selfie: ``mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)`` (fallback).
        margin: Crop margin around the box, in box sizes.
    """

    def __init__(self, pose: Any, selfie: Any, margin: float = 0.25) -> None:
        self.pose, self.selfie, self.margin = pose, selfie, margin

    def embed(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The lite backend has no embedding: the frames are their own handles."""
        return list(images)

    def predict_batch(self, embs: list[np.ndarray], prompts: list[Prompt]) -> list[Prediction]:
        """``(mask (H, W) bool, score, None)`` per frame; points and mask prompts are ignored."""
        return [self._one(img, p) for img, p in zip(embs, prompts, strict=True)]

    def _one(self, img: np.ndarray, prompt: Prompt) -> Prediction:
        h, w = img.shape[:2]
        mask = np.zeros((h, w), bool)
        if prompt.box is None:
            return mask, 0.0, None
        x1, y1, x2, y2 = (float(v) for v in prompt.box)
        mx, my = self.margin * (x2 - x1), self.margin * (y2 - y1)
        cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
        cx2, cy2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
        if cx2 - cx1 < 8 or cy2 - cy1 < 8:
            return mask, 0.0, None
        crop = np.ascontiguousarray(img[cy1:cy2, cx1:cx2])
        res = self.pose.process(crop)
        prob, scale = (res.segmentation_mask, 1.0) if res.segmentation_mask is not None else (None, 0.5)
        if prob is None:
            prob = self.selfie.process(crop).segmentation_mask
        fg = prob > 0.5
        # keep what lies near the box (grown by 60% of the crop margin): the crop may hold neighbours
        bx1, by1 = int(max(0, x1 - 0.6 * mx)) - cx1, int(max(0, y1 - 0.6 * my)) - cy1
        bx2, by2 = int(min(w, x2 + 0.6 * mx)) - cx1, int(min(h, y2 + 0.6 * my)) - cy1
        keep = np.zeros_like(fg)
        keep[max(0, by1) : by2, max(0, bx1) : bx2] = True
        fg &= keep
        mask[cy1:cy2, cx1:cx2] = fg
        score = float(prob[fg].mean()) * scale if fg.any() else 0.0
        return mask, score, None


def build_lite() -> tuple[LiteDetector, LiteSegmenter]:
    """Load the mediapipe models that ship in the wheel (no download).

    Raises:
        InputError: mediapipe is missing or its models cannot be loaded.
    """
    from hmtools.errors import InputError

    try:
        import mediapipe as mp

        pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
        selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
    except (ImportError, AttributeError, RuntimeError) as e:
        raise InputError(
            f"the lite backend needs mediapipe==0.10.14 ({e}); "
            "pip install --no-deps mediapipe==0.10.14 absl-py attrs flatbuffers 'protobuf>=4.25.3,<5'"
        ) from e
    return LiteDetector(pose), LiteSegmenter(pose, selfie)
