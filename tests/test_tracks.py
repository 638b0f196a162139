"""split_tracks, add_person, tracks_from_parts: per-athlete tracks of a human edit."""

from __future__ import annotations

import numpy as np
import pytest

from hmtools.masks import decode_rle, encode_rle
from hmtools.tracks import _nearest, add_person, split_tracks, tracks_from_parts

H, W = 40, 60


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


A = _rect(10, 30, 5, 15)  # diver A, left
B = _rect(10, 30, 40, 50)  # diver B, right


def _tracks(*masks: np.ndarray, counts: bool = True) -> list[dict]:
    out = []
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        box = [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)] if m.any() else [0, 0, 1, 1]
        out.append({"track": k, "bbox": box, "counts": encode_rle(m)["counts"] if counts else None})
    return out


def _masks(tracks: list[dict]) -> list[np.ndarray]:
    return [decode_rle({"size": [H, W], "counts": t["counts"]}) for t in tracks]


def test_an_unchanged_union_keeps_each_divers_mask() -> None:
    out = split_tracks(_tracks(A, B), encode_rle(A | B), A | B)
    assert [t["track"] for t in out] == [0, 1]
    a, b = _masks(out)
    assert np.array_equal(a, A) and np.array_equal(b, B)
    assert out[0]["bbox"] == [5.0, 10.0, 15.0, 30.0] and out[1]["bbox"] == [40.0, 10.0, 50.0, 30.0]


def test_a_brush_stroke_that_extends_diver_b_goes_to_b() -> None:
    stroke = _rect(20, 24, 50, 58)  # an arm painted to the right of B
    new = A | B | stroke
    a, b = _masks(split_tracks(_tracks(A, B), encode_rle(A | B), new))
    assert np.array_equal(a, A)
    assert np.array_equal(b, B | stroke)


def test_an_erased_diver_a_leaves_an_empty_track_with_its_old_box() -> None:
    prev = _tracks(A, B)
    out = split_tracks(prev, encode_rle(A | B), B.copy())
    a, b = _masks(out)
    assert not a.any() and np.array_equal(b, B)
    assert out[0]["bbox"] == prev[0]["bbox"]  # kept: where the athlete was last seen
    assert out[0]["counts"] is not None  # an empty full-frame RLE, skipped by the exports


def test_new_pixels_between_the_divers_go_to_the_nearest() -> None:
    bridge = _rect(18, 22, 15, 40)  # joins A (ends at x=14) and B (starts at x=40)
    new = A | B | bridge
    a, b = _masks(split_tracks(_tracks(A, B), encode_rle(A | B), new))
    assert np.array_equal(a | b, new) and not (a & b).any()
    # x=27 is 13 px from both A (last column 14) and B (first column 40): ties go to the earlier track
    assert np.flatnonzero(a[20])[-1] == 27 and np.flatnonzero(b[20])[0] == 28
    assert np.array_equal(a & ~bridge, A) and np.array_equal(b & ~bridge, B)


def test_a_track_with_an_empty_mask_attracts_by_its_box() -> None:
    prev = _tracks(A, B)
    prev[1] = {"track": 1, "bbox": [40.0, 10.0, 50.0, 30.0], "counts": encode_rle(np.zeros((H, W), bool))["counts"]}
    blob = _rect(15, 20, 52, 56)  # near B's box, far from A
    a, b = _masks(split_tracks(prev, encode_rle(A), A | blob))
    assert np.array_equal(a, A) and np.array_equal(b, blob)
    assert split_tracks(prev, encode_rle(A), A | blob)[1]["bbox"] == [52.0, 15.0, 56.0, 20.0]


def test_tracks_without_counts_among_several_read_the_union_inside_their_boxes() -> None:
    prev = _tracks(A, B, counts=False)
    stroke = _rect(20, 24, 50, 58)
    a, b = _masks(split_tracks(prev, encode_rle(A | B), A | B | stroke))
    assert np.array_equal(a, A) and np.array_equal(b, B | stroke)


def test_shared_pixels_stay_in_both_tracks() -> None:
    a0, b0 = _rect(10, 30, 5, 25), _rect(10, 30, 20, 40)  # overlap x 20..24
    a, b = _masks(split_tracks(_tracks(a0, b0), encode_rle(a0 | b0), a0 | b0))
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


def test_one_track_keeps_its_id_and_is_the_whole_union() -> None:
    lone = [{"track": 1, "bbox": [40.0, 10.0, 50.0, 30.0], "counts": encode_rle(B)["counts"]}]
    out = split_tracks(lone, encode_rle(B), A | B)
    assert out == [{"track": 1, "bbox": [5.0, 10.0, 50.0, 30.0], "counts": None}]
    assert split_tracks([], encode_rle(B), A) == []


def test_a_mask_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        split_tracks(_tracks(A, B), encode_rle(A | B), np.zeros((H + 1, W), bool))


def test_new_pixels_go_to_the_exactly_nearest_track_ties_to_the_earlier() -> None:
    """Against brute force on scattered references: exact squared distances, so ties (e.g. 37 px² from
    two tracks, seen from crops of different sizes) go to the earlier track, as the docstring says."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(5, 80, 2))
        refs = [rng.random((h, w)) < rng.choice([0.0, 0.01, 0.05]) for _ in range(rng.integers(2, 4))]
        free = (rng.random((h, w)) < 0.1) & ~np.logical_or.reduce(refs)
        if not free.any():
            continue
        fy, fx = np.nonzero(free)
        d2 = np.full((len(refs), len(fy)), np.inf)
        for k, r in enumerate(refs):
            ry, rx = np.nonzero(r)
            if len(ry):
                d2[k] = ((fy[:, None] - ry) ** 2 + (fx[:, None] - rx) ** 2).min(axis=1)
        assert np.array_equal(_nearest(refs, free), np.argmin(d2, axis=0))


def test_an_added_person_apart_from_the_mask_is_a_new_athlete() -> None:
    lone = [{"track": 0, "bbox": [5.0, 10.0, 15.0, 30.0], "counts": None}]  # build-masks: one athlete
    out = add_person(lone, encode_rle(A), B)
    assert [t["track"] for t in out] == [0, 1]
    a, b = _masks(out)
    assert np.array_equal(a, A) and np.array_equal(b, B)
    assert out[1]["bbox"] == [40.0, 10.0, 50.0, 30.0]
    three = add_person(out, encode_rle(A | B), _rect(0, 5, 20, 30))  # a third person: the next free id
    assert [t["track"] for t in three] == [0, 1, 2]
    assert [t["track"] for t in add_person(None, encode_rle(A), B)] == [0, 1]  # no tracks: the mask was athlete 0


def test_an_added_part_mostly_on_the_mask_widens_that_athlete() -> None:
    limb = _rect(12, 20, 8, 18)  # 70 % on diver A, the rest beside it
    out = add_person(_tracks(A, B), encode_rle(A | B), limb)
    a, b = _masks(out)
    assert np.array_equal(a, A | limb) and np.array_equal(b, B)
    assert add_person(None, encode_rle(A), limb) == []  # no tracks, no athletes to tell apart
    empty = np.zeros((H, W), bool)
    assert add_person(None, encode_rle(empty), B) == []  # a first person on an empty frame: no athletes yet


def test_tracks_from_parts_keep_the_given_ids() -> None:
    out = tracks_from_parts([(3, A), (7, B)])
    assert [t["track"] for t in out] == [3, 7]
    assert [np.array_equal(m, x) for m, x in zip(_masks(out), (A, B), strict=True)] == [True, True]
