"""Segmentation backends for the annotator: a Protocol, the SAM adapter with an embedding cache
and background prefetch, and a fake for tests and demos.

The app never imports ``segment_anything``; :class:`SamBackend` wraps a
``pipelines.segment.SamSegmenter`` (imported lazily by :func:`build_backend`). A click only runs
SAM's prompt encoder and mask decoder: the image embedding of the frame is computed once, kept in
an LRU cache bounded in MB, and computed ahead of time for the frames around the one on screen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

FrameLoader = Callable[[], np.ndarray]
"""Returns one frame as ``(H, W, 3)`` uint8 RGB when called (frames are decoded lazily)."""


@dataclass(frozen=True)
class Prompt:
    """What the annotator gave SAM on one frame.

    Attributes:
        points: ``(N, 2)`` float32 click positions (X, Y) in frame pixels, or ``None``.
        labels: ``(N,)`` int32, 1 = positive (athlete), 0 = negative (background), or ``None``.
        box: ``(4,)`` float32 XYXY box in frame pixels, or ``None``.
        mask_input: ``(4E, 4E)`` float32 low-res logits of an earlier prediction on the same
            frame (SAM's iterative refinement; 256x256 for the published models), or ``None``.
    """

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask_input: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """One SAM answer: ``mask`` ``(H, W)`` bool, ``score`` SAM's IoU estimate, ``logits``
    ``(4E, 4E)`` float32 low-res logits (256x256 for published SAMs; feed back as
    :attr:`Prompt.mask_input`)."""

    mask: np.ndarray
    score: float
    logits: np.ndarray


class SegmentBackend(Protocol):
    """What the annotator needs from a segmenter. Frames are named by their frame key."""

    def embed(self, key: str, load: FrameLoader) -> None:
        """Make sure the embedding of frame ``key`` is computed (blocking)."""

    def prefetch(self, items: Sequence[tuple[str, FrameLoader]]) -> None:
        """Start computing embeddings of these frames in the background; returns at once."""

    def predict(self, key: str, load: FrameLoader, prompt: Prompt) -> Prediction:
        """Segment frame ``key`` from a prompt (embeds it first if it is not cached)."""

    def close(self) -> None:
        """Stop background work."""


class EmbeddingCache:
    """Thread-safe LRU map ``key -> value`` bounded by the sum of ``nbytes(value)``."""

    def __init__(self, max_mb: float, nbytes: Callable[[Any], int]):
        self.max_bytes = int(max_mb * 2**20)
        self._nbytes = nbytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        """The cached value (now most recently used), or ``None``."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, key: str, value: Any) -> None:
        """Insert ``value`` and evict least recently used entries until the bound holds."""
        size = self._nbytes(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.total_bytes -= old[1]
            self._items[key] = (value, size)
            self.total_bytes += size
            while self.total_bytes > self.max_bytes and len(self._items) > 1:
                _, (_, evicted) = self._items.popitem(last=False)
                self.total_bytes -= evicted


class SamBackend:
    """:class:`SegmentBackend` over a ``pipelines.segment.SamSegmenter``.

    Embeddings (``ImageEmbedding``, 4 MB each at fp32) live in an :class:`EmbeddingCache` of
    ``cache_mb``; :meth:`prefetch` computes missing ones on a worker thread. A request for a frame
    whose embedding is being computed waits for that computation instead of starting another.
    """

    def __init__(self, segmenter: Any, *, cache_mb: float = 1024.0, prefetch_workers: int = 1):
        self.segmenter = segmenter
        self.cache = EmbeddingCache(cache_mb, lambda e: int(e.nbytes))
        self._pool = ThreadPoolExecutor(max_workers=prefetch_workers, thread_name_prefix="sam-prefetch")
        self._inflight: dict[str, Future[Any]] = {}
        self._lock = threading.RLock()
        self.embed_calls = 0

    def _compute(self, key: str, load: FrameLoader) -> Any:
        emb = self.segmenter.embed([load()])[0]
        self.embed_calls += 1
        self.cache.put(key, emb)
        return emb

    def _embedding(self, key: str, load: FrameLoader) -> Any:
        emb = self.cache.get(key)
        if emb is not None:
            return emb
        with self._lock:
            fut = self._inflight.get(key)
        if fut is not None and not fut.cancelled():
            try:
                return fut.result()
            except CancelledError:
                pass
        return self._compute(key, load)

    def embed(self, key: str, load: FrameLoader) -> None:
        """See :meth:`SegmentBackend.embed`."""
        self._embedding(key, load)

    def prefetch(self, items: Sequence[tuple[str, FrameLoader]]) -> None:
        """See :meth:`SegmentBackend.prefetch`; frames already cached or queued are skipped, and
        queued frames not in ``items`` are dropped (scrubbing must not leave a backlog of frames the
        annotator has moved away from ahead of the one on screen)."""
        wanted = {key for key, _ in items}
        with self._lock:
            for key, fut in list(self._inflight.items()):
                if key not in wanted and fut.cancel():
                    self._inflight.pop(key, None)  # (the done callback may have removed it already)
            for key, load in items:
                if key in self.cache or key in self._inflight:
                    continue
                fut = self._pool.submit(self._compute, key, load)
                self._inflight[key] = fut
                fut.add_done_callback(lambda _f, k=key: self._done(k))

    def _done(self, key: str) -> None:
        with self._lock:
            fut = self._inflight.pop(key, None)
        if fut is not None and not fut.cancelled() and fut.exception() is not None:
            log.warning("prefetch of %s failed: %s", key, fut.exception())

    def predict(self, key: str, load: FrameLoader, prompt: Prompt) -> Prediction:
        """See :meth:`SegmentBackend.predict`."""
        emb = self._embedding(key, load)
        mask, score, logits = self.segmenter.predict(
            emb, box=prompt.box, points=prompt.points, labels=prompt.labels, mask_input=prompt.mask_input
        )
        return Prediction(np.asarray(mask, dtype=bool), float(score), np.asarray(logits, dtype=np.float32))

    def close(self) -> None:
        """Cancel queued prefetches and stop the worker."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class FakeBackend:
    """A model-free backend for tests and demos (``--segmenter fake``).

    The mask is the union of disks of ``radius`` pixels around positive points (or, with no
    positive point, the box), clipped to the box when one is given, minus disks around negative
    points. ``embed_delay_s`` simulates the encoder's cost so caching can be observed.
    """

    def __init__(self, radius: float = 0.12, embed_delay_s: float = 0.0):
        self.radius = radius
        self.embed_delay_s = embed_delay_s
        self.embedded: set[str] = set()
        self.embed_calls = 0
        self.predict_calls = 0
        self.prefetched: list[str] = []
        self._lock = threading.Lock()

    def embed(self, key: str, load: FrameLoader) -> None:
        """Record the frame as embedded (sleeping ``embed_delay_s`` the first time)."""
        with self._lock:
            if key in self.embedded:
                return
        load()
        time.sleep(self.embed_delay_s)
        with self._lock:
            self.embedded.add(key)
            self.embed_calls += 1

    def prefetch(self, items: Sequence[tuple[str, FrameLoader]]) -> None:
        """Only record the keys asked for (in :attr:`prefetched`); the fake needs no embedding."""
        self.prefetched.extend(key for key, _ in items)

    def predict(self, key: str, load: FrameLoader, prompt: Prompt) -> Prediction:
        """See the class docstring."""
        self.embed(key, load)
        self.predict_calls += 1
        h, w = load().shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        r = self.radius * min(h, w)
        pts = np.zeros((0, 2)) if prompt.points is None else np.asarray(prompt.points, dtype=float)
        labels = np.ones(len(pts), int) if prompt.labels is None else np.asarray(prompt.labels)
        mask = np.zeros((h, w), bool)
        for (x, y), lab in zip(pts, labels, strict=True):
            if lab == 1:
                mask |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        if prompt.box is not None:
            x1, y1, x2, y2 = np.asarray(prompt.box, dtype=float)
            inside = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
            mask = inside if not mask.any() else mask & inside
        for (x, y), lab in zip(pts, labels, strict=True):
            if lab == 0:
                mask &= (xx - x) ** 2 + (yy - y) ** 2 > r * r
        logits = np.where(_resize_nearest(mask, 256, 256), 8.0, -8.0).astype(np.float32)
        return Prediction(mask, 0.9 if mask.any() else 0.0, logits)

    def close(self) -> None:
        """Nothing to stop."""


def _resize_nearest(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * mask.shape[0] // h).clip(0, mask.shape[0] - 1)
    xs = (np.arange(w) * mask.shape[1] // w).clip(0, mask.shape[1] - 1)
    return mask[ys][:, xs]


def build_backend(
    name: str, checkpoint: Path | None = None, device: str = "cpu", cache_mb: float = 1024.0
) -> SegmentBackend:
    """Build the annotator's backend: ``"fake"`` (no model, for demos and tests) or a SAM
    segmenter name understood by ``pipelines.segment.build_segmenter`` (e.g. ``"sam_vit_b"``);
    ``device="auto"`` picks CUDA when available."""
    if name == "fake":
        return FakeBackend()
    from pipelines.segment import build_segmenter

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SamBackend(build_segmenter(name, checkpoint, device), cache_mb=cache_mb)
