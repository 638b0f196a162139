"""The SAM adapter's embedding cache and prefetch, with a stub segmenter and with a real tiny SAM."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from annotator_app.backend import EmbeddingCache, FakeBackend, Prompt, SamBackend
from annotator_app.propagate import prompt_from_mask


@dataclass
class _Emb:
    key: int
    nbytes: int = 4 * 2**20


class _StubSegmenter:
    """Same interface as pipelines.segment.SamSegmenter; embed is slow and counted."""

    def __init__(self, delay: float = 0.05):
        self.delay, self.embeds, self.lock = delay, [], threading.Lock()

    def embed(self, images):
        time.sleep(self.delay)
        with self.lock:
            self.embeds.append(int(images[0][0, 0, 0]))
        return [_Emb(int(images[0][0, 0, 0]))]

    def predict(self, emb, *, box=None, points=None, labels=None, mask_input=None):
        mask = np.zeros((8, 8), bool)
        mask[: emb.key % 8] = True
        return mask, 0.5, np.zeros((256, 256), np.float32)


def _loader(i):
    return lambda: np.full((8, 8, 3), i, np.uint8)


def test_lru_cache_is_bounded_in_mb():
    cache = EmbeddingCache(10, lambda e: e.nbytes)
    for i in range(4):
        cache.put(f"k{i}", _Emb(i))
    assert len(cache) == 2 and cache.total_bytes == 8 * 2**20
    assert cache.get("k0") is None and cache.get("k2") is not None
    cache.put("k4", _Emb(4))  # k2 was used last, so k3 goes
    assert "k2" in cache and "k3" not in cache


def test_click_on_cached_frame_runs_only_the_decoder():
    seg = _StubSegmenter()
    backend = SamBackend(seg, cache_mb=64)
    backend.predict("a", _loader(3), Prompt(points=np.zeros((1, 2)), labels=np.ones(1)))
    backend.predict("a", _loader(3), Prompt(points=np.zeros((1, 2)), labels=np.ones(1)))
    assert seg.embeds == [3] and backend.cache.hits == 1
    backend.close()


def test_prefetch_runs_in_background_and_is_not_repeated():
    seg = _StubSegmenter(delay=0.1)
    backend = SamBackend(seg, cache_mb=64)
    t0 = time.perf_counter()
    backend.prefetch([(f"f{i}", _loader(i)) for i in range(3)])
    assert time.perf_counter() - t0 < 0.05  # returns at once
    pred = backend.predict("f0", _loader(0), Prompt())  # waits for the in-flight embedding
    backend.prefetch([(f"f{i}", _loader(i)) for i in range(3)])  # queued or cached: skipped
    deadline = time.time() + 5
    while len(backend.cache) < 3 and time.time() < deadline:
        time.sleep(0.02)
    assert sorted(seg.embeds) == [0, 1, 2] and pred.mask.shape == (8, 8)
    backend.close()


def test_moving_on_drops_queued_prefetches():
    seg = _StubSegmenter(delay=0.2)
    backend = SamBackend(seg, cache_mb=64)
    backend.prefetch([(f"a{i}", _loader(i)) for i in range(5)])  # a0 starts, a1..a4 wait
    time.sleep(0.05)
    backend.prefetch([("b", _loader(9))])  # the annotator jumped elsewhere
    pred = backend.predict("b", _loader(9), Prompt())
    time.sleep(0.3)
    assert seg.embeds == [0, 9] and pred.mask[:1].all()
    backend.close()


def test_fake_backend_disks_and_negative_points():
    fake = FakeBackend(radius=0.1)
    frame = np.zeros((100, 100, 3), np.uint8)
    p = fake.predict("k", lambda: frame, Prompt(points=np.array([[50, 50], [55, 50]]), labels=np.array([1, 0])))
    assert p.mask[50, 42] and not p.mask[50, 55] and p.logits.shape == (256, 256)


def test_prompt_from_mask_gives_box_and_one_point_per_part():
    m = np.zeros((60, 100), bool)
    m[10:30, 10:20] = True
    m[20:50, 60:80] = True
    p = prompt_from_mask(m)
    assert p.points.shape == (2, 2) and list(p.labels) == [1, 1]
    assert all(m[int(y), int(x)] for x, y in p.points)
    assert p.box[0] < 10 and p.box[2] > 80


def test_real_tiny_sam_through_the_adapter():
    from pipelines.segment_tiny import build_tiny_sam_segmenter

    backend = SamBackend(build_tiny_sam_segmenter(seed=0), cache_mb=64)
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    prompt = Prompt(points=np.array([[30.0, 20.0]], np.float32), labels=np.array([1], np.int32))
    a = backend.predict("f", lambda: frame, prompt)
    b = backend.predict("f", lambda: frame, Prompt(prompt.points, prompt.labels, mask_input=a.logits))
    assert a.mask.shape == (48, 64) and a.mask.dtype == bool and a.logits.shape == (64, 64)  # tiny SAM: 4E = 64
    assert backend.embed_calls == 1 and b.mask.shape == (48, 64)
    backend.close()
