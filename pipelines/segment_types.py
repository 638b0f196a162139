"""Types shared by the segmenters (SAM and lite) and the run loop; no heavy imports here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class ImageEmbedding:
    """One frame's SAM image embedding.

    Attributes:
        features: ``(1, 256, E, E)`` float32 on the segmenter's device (E = 64 for the published SAMs).
        original_size: ``(H, W)`` of the frame.
        input_size: ``(h, w)`` after SAM's ResizeLongestSide.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Bytes held by ``features``."""
        return self.features.element_size() * self.features.numel()


@dataclass(frozen=True)
class Prompt:
    """Prompts for one frame, in original-frame pixels.

    Attributes:
        box: ``(4,)`` XYXY, or ``None``.
        points: ``(N, 2)`` ``(X, Y)``, or ``None``.
        labels: ``(N,)`` 1 = foreground, 0 = background.
        mask_input: ``(4E, 4E)`` low-resolution logits from an earlier prediction, or ``None``.
    """

    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    mask_input: np.ndarray | None = None


Prediction = tuple[np.ndarray, float, "np.ndarray | None"]
"""``(mask (H, W) bool, score, low-res logits or None)`` for one prompt."""


class Segmenter(Protocol):
    """What the run loop needs from a segmenter (``SamSegmenter``, ``LiteSegmenter``, test fakes).

    A segmenter may also have ``predict_batch_async(embs, prompts)``, returning a function that
    waits for and returns what ``predict_batch`` would; the run loop then queues the next batch
    before it collects this one (``SamSegmenter`` has it)."""

    def embed(self, images: list[np.ndarray]) -> list[Any]:
        """Per-frame handles (SAM embeddings, or the frames themselves)."""
        ...

    def predict_batch(self, embs: list[Any], prompts: list[Prompt]) -> list[Prediction]:
        """One prediction per (handle, prompt) pair."""
        ...
