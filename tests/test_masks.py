"""COCO RLE codec (hmtools.masks, hmtools.rle_codec) against real pycocotools, property-based."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco

from hmtools.errors import DataFormatError
from hmtools.masks import (
    check_rle,
    decode_counts,
    decode_rle,
    decode_rles,
    encode_rle,
    encode_rle_area_box,
    mask_area,
    mask_iou,
    mask_to_box,
    rle_area,
    rle_area_box,
    rle_length,
    rle_runs,
    rle_to_box,
    xyxy_to_xywh,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def masks(draw: st.DrawFn, max_side: int = 40) -> np.ndarray:
    """Bool (H, W) masks: random pixels, or rectangles/empty/full (long runs), odd sizes included."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["pixels", "rect", "empty", "full"]))
    if kind == "pixels":
        return draw(arrays(np.bool_, (h, w)))
    m = np.zeros((h, w), dtype=bool)
    if kind == "full":
        m[:] = True
    elif kind == "rect":
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        m[y0 : draw(st.integers(y0 + 1, h)), x0 : draw(st.integers(x0 + 1, w))] = True
    return m


def coco_encode(m: np.ndarray) -> dict:
    return coco.encode(np.asfortranarray(m.astype(np.uint8)))


def coco_decode(rle: dict) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' __array__ predates numpy 2's copy= keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco.decode(rle).astype(bool)


@SETTINGS
@given(masks())
def test_round_trip_matches_pycocotools(m: np.ndarray) -> None:
    rle = encode_rle(m)
    assert rle["size"] == [m.shape[0], m.shape[1]]
    assert isinstance(rle["counts"], str)
    assert rle["counts"].encode() == coco_encode(m)["counts"]
    back = decode_rle(rle)
    assert back.dtype == np.bool_ and back.shape == m.shape and back.flags.c_contiguous
    np.testing.assert_array_equal(back, m)
    np.testing.assert_array_equal(back, coco_decode(coco_encode(m)))
    assert int(rle_runs(rle["counts"], *m.shape).sum()) == m.size == rle_length(rle["counts"])


@SETTINGS
@given(masks())
def test_memory_order_and_dtype_do_not_change_the_encoding(m: np.ndarray) -> None:
    rle = encode_rle(m)
    assert encode_rle(np.asfortranarray(m)) == rle
    assert encode_rle(m.astype(np.uint8) * 255) == rle  # 0/255 JPEG-style masks
    assert encode_rle(m.astype(np.float32)) == rle
    wide = np.zeros((m.shape[0], 2 * m.shape[1]), dtype=bool)
    wide[:, ::2] = m
    assert encode_rle(wide[:, ::2]) == rle  # a strided view (neither C- nor F-contiguous)


@SETTINGS
@given(masks())
def test_json_round_trip_of_counts_as_str(m: np.ndarray) -> None:
    text = json.dumps(encode_rle(m))
    loaded = json.loads(text)
    assert isinstance(loaded["counts"], str)
    np.testing.assert_array_equal(decode_rle(loaded), m)
    bytes_form = {"size": loaded["size"], "counts": loaded["counts"].encode("ascii")}
    np.testing.assert_array_equal(decode_rle(bytes_form), m)


@SETTINGS
@given(masks())
def test_area_and_box_agree_with_pycocotools(m: np.ndarray) -> None:
    rle = encode_rle(m)
    area = int(coco.area(coco_encode(m)))
    assert mask_area(m) == rle_area(rle) == area
    box = mask_to_box(m)
    assert rle_to_box(rle) == box == rle_area_box(rle)[1]
    assert encode_rle_area_box(m) == (rle, area, box)
    if area:
        x, y, w, h = coco.toBbox(coco_encode(m)).tolist()
        assert box == (x, y, x + w, y + h)
        assert xyxy_to_xywh(box) == [x, y, w, h]
    else:
        assert box is None


@SETTINGS
@given(st.lists(masks(max_side=12), min_size=1, max_size=6), st.integers(1, 12), st.integers(1, 12))
def test_decode_many_equals_decode_one(batch: list[np.ndarray], h: int, w: int) -> None:
    same = [np.resize(m, (h, w)) for m in batch]
    rles = [encode_rle(m) for m in same]
    out = decode_rles(rles)
    assert out.shape == (len(same), h, w) and out.flags.c_contiguous
    for got, want in zip(out, same, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(decode_counts([r["counts"].encode() for r in rles], h, w), out)


@SETTINGS
@given(masks(), st.data())
def test_truncated_counts_raise(m: np.ndarray, data: st.DataObject) -> None:
    counts = encode_rle(m)["counts"]
    cut = data.draw(st.integers(0, len(counts) - 1))
    with pytest.raises(DataFormatError):
        decode_rle({"size": list(m.shape), "counts": counts[:cut]})


def test_large_frame_round_trip_and_odd_sizes() -> None:
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 97), (97, 1), (255, 457), (1080, 1920)]:
        m = np.zeros((h, w), dtype=bool)
        m[h // 4 : 3 * h // 4 + 1, w // 3 : w // 2 + 1] = True
        m ^= rng.random((h, w)) < 0.001
        np.testing.assert_array_equal(decode_rle(encode_rle(m)), m)


def test_zero_sized_masks() -> None:
    for shape in [(0, 5), (5, 0), (0, 0)]:
        m = np.zeros(shape, dtype=bool)
        rle = encode_rle(m)
        assert rle["size"] == list(shape)
        assert decode_rle(rle).shape == shape
        assert mask_to_box(m) is None


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ("", "empty"),
        ("3~2", "outside"),  # a character no encoder writes
        ("3 2", "outside"),
        ("3é2", "ASCII"),
        ("52h", "cut off"),  # continuation bit on the last character
        ("5@9", "negative"),  # sign bit makes a run negative
        ("10", "cover"),  # valid syntax, wrong total
        ("0" + "oooooooo" + "0", "more than 6"),
    ],
)
def test_hand_edited_counts_raise(counts: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        decode_rle({"size": [4, 5], "counts": counts})
    with pytest.raises(DataFormatError):
        decode_rles([encode_rle(np.ones((4, 5), bool)), {"size": [4, 5], "counts": counts}])


def test_edit_inside_a_real_mask_string_raises() -> None:
    m = np.zeros((24, 32), dtype=bool)
    m[5:15, 8:20] = True
    counts = encode_rle(m)["counts"]
    edited = counts[:3] + chr(ord(counts[3]) + 1) + counts[4:]
    with pytest.raises(DataFormatError, match="cover"):
        decode_rle({"size": [24, 32], "counts": edited})
    with pytest.raises(DataFormatError, match="cover"):
        decode_rle({"size": [24, 33], "counts": counts})  # wrong size
    # A transposed size covers the same H*W: the codec cannot tell (the store checks frame sizes).
    assert decode_rle({"size": [32, 24], "counts": counts}).shape == (32, 24)


@pytest.mark.parametrize(
    "rle",
    [{"counts": "3"}, {"size": [4], "counts": "3"}, {"size": [4, -5], "counts": "3"}, {"size": [4, 5]}, "x"],
)
def test_not_an_rle_raises(rle: object) -> None:
    with pytest.raises(DataFormatError):
        decode_rle(rle)  # type: ignore[arg-type]


def test_uncompressed_counts_list() -> None:
    m = np.zeros((3, 4), dtype=bool)
    m[1:, 1:3] = True
    runs = rle_runs(encode_rle(m)["counts"], 3, 4).tolist()
    np.testing.assert_array_equal(decode_rle({"size": [3, 4], "counts": runs}), m)
    with pytest.raises(DataFormatError, match="sum"):
        decode_rle({"size": [3, 4], "counts": runs[:-1]})
    with pytest.raises(DataFormatError, match="non-negative"):
        decode_rle({"size": [3, 4], "counts": [13, -1]})


def test_check_rle_normalises_and_rejects() -> None:
    m = np.eye(5, dtype=bool)
    rle = encode_rle(m)
    assert check_rle({"size": (5.0, 5), "counts": rle["counts"].encode()}) == rle
    with pytest.raises(DataFormatError, match="uncompressed"):
        check_rle({"size": [5, 5], "counts": [25]})
    with pytest.raises(DataFormatError):
        check_rle({"size": [5, 6], "counts": rle["counts"]})


def test_mask_iou() -> None:
    a = np.zeros((4, 4), dtype=bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_iou(a.astype(np.uint8) * 255, b.astype(np.uint8)) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="differ"):
        mask_iou(a, b[:3])


def test_decode_into_out_checks_shape() -> None:
    rles = [encode_rle(np.ones((2, 3), bool))]
    out = np.zeros((1, 2, 3), dtype=bool)
    assert decode_rles(rles, out=out) is out and out.all()
    with pytest.raises(ValueError, match="out must be"):
        decode_rles(rles, out=np.zeros((1, 3, 2), dtype=bool))
    with pytest.raises(DataFormatError, match="differ in size"):
        decode_rles([rles[0], encode_rle(np.ones((3, 2), bool))])


def test_decode_counts_fills_column_bands_across_chunks_like_pycocotools() -> None:
    """Bands touching either edge, one column, full and empty masks, several ~256 KiB chunks."""
    h, w = 300, 401
    rng = np.random.default_rng(5)
    batch = []
    for i in range(24):
        m = np.zeros((h, w), dtype=bool)
        kind = i % 6
        if kind == 0:
            m[:, :] = True
        elif kind == 1:
            m[rng.integers(0, h), 0] = True  # one pixel in the first column
        elif kind == 2:
            m[h - 1, w - 1] = True  # the very last pixel
        elif kind == 3:
            a = int(rng.integers(0, w - 1))
            m[:, a : a + 1] = rng.random((h, 1)) > 0.5  # one ragged column
        elif kind == 4:
            a, b = sorted(int(v) for v in rng.integers(0, w, 2))
            m[:, a : b + 1] = rng.random((h, b + 1 - a)) > 0.7
        batch.append(m)  # kind 5: empty
    counts = [coco.encode(np.asfortranarray(m.astype(np.uint8)))["counts"] for m in batch]
    out = np.ones((len(batch), h, w), dtype=bool)  # a reused buffer: stale pixels must be cleared
    decode_counts(counts, h, w, out=out)
    np.testing.assert_array_equal(out, np.stack(batch))
    np.testing.assert_array_equal(decode_counts(counts, h, w), np.stack(batch))
