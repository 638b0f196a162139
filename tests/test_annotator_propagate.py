"""Propagation follows each person of the start mask with its own chain (as build-masks prompts
each athlete with its own box), with the fake backend and a stub SAM segmenter."""

from __future__ import annotations

import numpy as np
from _annotator_fixtures import painted, person_mask
from scipy import ndimage

from annotator_app.backend import FakeBackend, Prediction, Prompt, SamBackend
from annotator_app.propagate import prompt_from_mask, propagate, split_persons

H, W, T = 96, 128, 5
LEFT, RIGHT = 0.25 * W, 0.7 * W


def divers(t: int) -> list[np.ndarray]:
    """Two synchronised divers side by side, sinking together."""
    y = H * (0.4 + 0.04 * t)
    return [person_mask(LEFT, y, H, W), person_mask(RIGHT, y, H, W)]


def clip(n: int = T):
    keys = [f"sync/img_{t:05d}.jpg" for t in range(n)]
    loaders = [lambda t=t: painted(divers(t), H, W) for t in range(n)]
    return keys, loaders


class RecordingFake(FakeBackend):
    """The fake backend, keeping every prompt it was given as ``(key, prompt)``."""

    def __init__(self, **kw):
        super().__init__(radius=0.1, **kw)
        self.prompts: list[tuple[str, Prompt]] = []

    def predict(self, key, load, prompt):
        self.prompts.append((key, prompt))
        return super().predict(key, load, prompt)


class OneObjectFake(RecordingFake):
    """Answers each prompt with one object, as SAM does with one box around two far-apart divers:
    every row of the fake's answer is filled between its leftmost and rightmost pixel."""

    def predict(self, key, load, prompt):
        pred = super().predict(key, load, prompt)
        m = pred.mask
        filled = np.maximum.accumulate(m, axis=1) & np.maximum.accumulate(m[:, ::-1], axis=1)[:, ::-1]
        return Prediction(filled, pred.score, pred.logits)


class HiddenRightFake(RecordingFake):
    """On frame ``hidden_key`` only ``keep`` pixels right of the frame's middle are found (the
    right diver is hidden behind the board)."""

    def __init__(self, hidden_key: str, keep: int = 0):
        super().__init__()
        self.hidden_key, self.keep = hidden_key, keep

    def predict(self, key, load, prompt):
        pred = super().predict(key, load, prompt)
        if key != self.hidden_key:
            return pred
        right = pred.mask.copy()
        right[:, : W // 2] = False
        ys, xs = np.nonzero(right)
        mask = pred.mask.copy()
        mask[ys[self.keep :], xs[self.keep :]] = False
        return Prediction(mask, pred.score, pred.logits)


def test_split_persons_two_divers_and_a_detached_hand():
    left, right = divers(0)
    hand = np.zeros((H, W), bool)
    hand[30:33, 100:103] = True  # detached, near the right diver
    persons = split_persons(left | right | hand)
    assert len(persons) == 2
    assert np.array_equal(persons[0], left) and np.array_equal(persons[1], right | hand)
    assert split_persons(np.zeros((H, W), bool)) == []


def test_two_divers_propagate_as_two_people_with_nothing_in_the_gap():
    keys, loaders = clip()
    backend = OneObjectFake()
    start = np.logical_or.reduce(divers(0))
    masks, scores, note = propagate(backend, keys[1:], loaders[1:], start)
    assert note == "" and sorted(masks) == [0, 1, 2, 3] and all(s == 0.9 for s in scores.values())
    for pos, m in masks.items():
        _, n = ndimage.label(m)
        assert n == 2, f"frame {pos}: {n} blobs"
        assert not m[:, int(LEFT + 0.12 * W) : int(RIGHT - 0.12 * W)].any()  # the gap stays empty
        left, right = divers(pos + 1)
        assert (m & left).sum() > 100 and (m & right).sum() > 100  # both divers followed
    # one prompt per diver and frame, each with its own box and one point inside that diver
    assert [k for k, _ in backend.prompts] == [k for k in keys[1:] for _ in range(2)]
    for (_, p), centre in zip(backend.prompts, [LEFT, RIGHT] * 4, strict=True):
        assert p.box[0] < centre < p.box[2] and p.box[2] - p.box[0] < 0.3 * W
        assert len(p.points) == 1 and abs(p.points[0][0] - centre) < 0.1 * W
    # the frames were queued once and each embedded once, though prompted twice
    assert backend.prefetched == keys[1:] and backend.embed_calls == 4 and backend.predict_calls == 8


def test_a_lost_diver_stops_the_whole_chain_at_that_frame():
    keys, loaders = clip()
    backend = HiddenRightFake(hidden_key=keys[3])
    masks, _, note = propagate(backend, keys[1:], loaders[1:], np.logical_or.reduce(divers(0)))
    assert sorted(masks) == [0, 1]  # frames 1 and 2; frame 3 lost the right diver
    assert note == f"stopped at {keys[3]}: athlete 2 of 2 (from the left) was lost"
    assert all(ndimage.label(m)[1] == 2 for m in masks.values())


def test_a_small_diver_lost_uses_its_own_start_area():
    """The lost threshold is per person: min(min_area, half that person's start area)."""
    keys, loaders = clip(3)
    start = np.zeros((H, W), bool)
    start[40:46, 30:36] = True  # 36 px: lost under 16 px (min_area)
    start[40:44, 90:94] = True  # 16 px: lost under 8 px
    masks, _, note = propagate(HiddenRightFake(keys[2], keep=10), keys[1:], loaders[1:], start, min_area=16)
    assert sorted(masks) == [0, 1] and note == ""  # 10 px of the right one: small but not lost
    masks, _, note = propagate(HiddenRightFake(keys[2], keep=7), keys[1:], loaders[1:], start, min_area=16)
    assert sorted(masks) == [0] and note == f"stopped at {keys[2]}: athlete 2 of 2 (from the left) was lost"


def test_a_single_diver_with_a_detached_arm_stays_one_chain_with_the_same_prompt():
    keys, loaders = clip()
    body = person_mask(LEFT, 0.45 * H, H, W)
    arm = np.zeros((H, W), bool)
    arm[30:50, 50:55] = True  # 100 px, ~12 % of the body: a detached arm, not a second person
    start = body | arm
    assert len(split_persons(start)) == 1 and np.array_equal(split_persons(start)[0], start)
    backend = RecordingFake()
    masks, _, note = propagate(backend, keys[1:], loaders[1:], start)
    assert note == "" and len(masks) == 4 and backend.predict_calls == 4  # one prompt per frame
    first = backend.prompts[0][1]
    expected = prompt_from_mask(start)  # the prompt propagation always gave: box and a point per part
    assert np.array_equal(first.box, expected.box) and np.array_equal(first.points, expected.points)
    assert len(first.points) == 2 and first.box[2] > 55


def test_a_lost_single_athlete_keeps_its_note():
    keys, loaders = clip()
    backend = HiddenRightFake(hidden_key=keys[2])
    _, _, note = propagate(backend, keys[1:], loaders[1:], divers(0)[1])
    assert note == f"stopped at {keys[2]}: the athlete was lost"


class _BoxSegmenter:
    """Same interface as pipelines.segment.SamSegmenter: embeddings counted, the answer is the box."""

    def __init__(self):
        self.embeds = 0

    def embed(self, images):
        self.embeds += 1
        return [np.zeros(8, np.float32)]

    def predict(self, emb, *, box=None, points=None, labels=None, mask_input=None):
        m = np.zeros((H, W), bool)
        x1, y1, x2, y2 = np.round(box).astype(int)
        m[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] = True  # shrink by the padding so boxes do not grow
        return m, 0.8, np.zeros((256, 256), np.float32)


def test_two_prompts_per_frame_embed_each_frame_once_in_the_sam_adapter():
    keys, loaders = clip()
    seg = _BoxSegmenter()
    backend = SamBackend(seg, cache_mb=64)
    masks, scores, note = propagate(backend, keys[1:], loaders[1:], np.logical_or.reduce(divers(0)))
    backend.close()
    assert note == "" and len(masks) == 4 and seg.embeds == 4 and backend.embed_calls == 4
    assert all(ndimage.label(m)[1] == 2 for m in masks.values())


def test_a_person_never_drifts_onto_a_close_partner() -> None:
    """The left diver's arm reaches over the right diver, so the left box holds the right diver's
    centre. A negative point there keeps the left chain off the right diver (the fake's wide disks
    would otherwise cover both)."""
    h, w = 96, 128
    left = np.zeros((h, w), bool)
    left[20:80, 30:45] = True
    left[20:25, 45:90] = True  # the arm, above the partner
    right = np.zeros((h, w), bool)
    right[40:80, 60:80] = True
    start = left | right
    assert len(split_persons(start)) == 2
    fake = RecordingFake()
    fake.radius = 0.3  # an answer reaches well past its own diver
    keys = [f"close/img_{t:05d}.jpg" for t in range(3)]
    propagate(fake, keys, [lambda: painted([left, right], h, w)] * 3, start)
    first_left = fake.prompts[0][1]
    neg = first_left.points[first_left.labels == 0]
    assert len(neg) == 1 and 60 <= neg[0][0] < 80 and 40 <= neg[0][1] < 80, first_left
    first_right = fake.prompts[1][1]
    assert (first_right.labels == 1).all()  # the left diver's centre is outside the right box
    far = RecordingFake()  # divers far apart: no negatives, the prompts are as before
    keys, loaders = clip(2)
    propagate(far, keys, loaders, np.logical_or.reduce(divers(0)))
    assert all((p.labels == 1).all() for _, p in far.prompts)
