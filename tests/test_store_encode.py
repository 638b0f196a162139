"""Batch mask encoder (hmtools.rle_batch) against real pycocotools: counts byte-identical, area, box."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco

from benchmarks.store_throughput import sample_masks
from hmtools.masks import decode_rle, encode_rle, encode_rle_area_box, mask_to_box
from hmtools.rle_batch import COMPILED, compress_runs, encode_masks
from hmtools.rle_codec import column_runs
from hmtools.store_types import MaskWrite, prepare_mask, prepare_masks


def coco_reference(m: np.ndarray) -> tuple[str, int, tuple[float, float, float, float] | None]:
    """(counts, area, XYXY box or None) as pycocotools computes them from the Fortran-ordered mask."""
    rle = coco.encode(np.asfortranarray(m.astype(np.uint8)))
    area = int(coco.area(rle))
    box = None
    if area:
        x, y, w, h = coco.toBbox(rle).tolist()
        box = (x, y, x + w, y + h)
    return rle["counts"].decode("ascii"), area, box


def edge_masks(h: int, w: int) -> list[np.ndarray]:
    """Empty, full, single pixels in every corner and the middle, border lines, a column-wrapping run."""
    out = [np.zeros((h, w), bool), np.ones((h, w), bool)]
    for y, x in ((0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (h // 2, w // 2)):
        m = np.zeros((h, w), bool)
        m[y, x] = True
        out.append(m)
    m = np.zeros((h, w), bool)
    m[0, :] = m[-1, :] = True  # runs wrap from the bottom of one column to the top of the next
    out.append(m)
    m = np.zeros((h, w), bool)
    m[:, w // 2] = True  # a full-height column
    out.append(m)
    m = np.ones((h, w), bool)
    m[h // 2, w // 2] = False  # one background pixel in a full mask
    out.append(m)
    return out


BACKENDS = ["c", "numpy"]
"""Both encoders, in every test below that takes ``backend``."""


def test_the_compiled_encoder_is_built() -> None:
    """setup.py builds it where a C compiler is there; scripts/setup.sh makes sure one is."""
    assert COMPILED, "hmtools._rle is missing: reinstall (bash scripts/setup.sh) on a machine with a C compiler"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 4), (17, 31), (31, 17), (64, 65)])
def test_edge_masks_match_pycocotools(shape: tuple[int, int], backend: str) -> None:
    masks = edge_masks(*shape)
    assert encode_masks(masks, backend=backend) == [coco_reference(m) for m in masks]


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_masks_of_mixed_sizes_in_one_batch_match_pycocotools(backend: str) -> None:
    rng = np.random.default_rng(7)
    masks = []
    for p in (0.001, 0.05, 0.5, 0.95, 0.999):
        for shape in ((5, 9), (40, 33), (1, 50), (256, 455), (400, 401)):  # 400x401: wider than a chunk
            masks.append(rng.random(shape) < p)
    got = encode_masks(masks, backend=backend)
    assert got == [coco_reference(m) for m in masks]
    for m, (counts, area, box) in zip(masks, got, strict=True):
        np.testing.assert_array_equal(decode_rle({"size": list(m.shape), "counts": counts}), m)
        assert area == int(m.sum())
        assert box == mask_to_box(m)


@pytest.mark.parametrize("backend", BACKENDS)
def test_person_shaped_masks_of_the_benchmark_match_pycocotools(backend: str) -> None:
    masks = [*sample_masks(3, 40), *sample_masks(7, 40)]  # sample 7: two divers (synchro)
    assert encode_masks(masks, backend=backend) == [coco_reference(m) for m in masks]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_dtypes_and_memory_orders_give_the_same_counts(backend: str) -> None:
    m = np.random.default_rng(1).random((23, 37)) < 0.3
    wide = np.zeros((23, 74), bool)
    wide[:, ::2] = m
    variants = [m, np.asfortranarray(m), m.astype(np.uint8) * 255, m.astype(np.float32), wide[:, ::2]]
    got = encode_masks(variants, backend=backend)
    assert got == [coco_reference(m)] * len(variants)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_masks_and_an_empty_batch(backend: str) -> None:
    assert encode_masks([], backend=backend) == []
    assert encode_masks([np.zeros((0, 5), bool), np.zeros((4, 0), bool)], backend=backend) == [
        (encode_rle(np.zeros((0, 5), bool))["counts"], 0, None),
        (encode_rle(np.zeros((4, 0), bool))["counts"], 0, None),
    ]


def test_compiled_encoder_refuses_what_it_cannot_read_and_encodes_zero_size_masks() -> None:
    from hmtools import _rle

    with pytest.raises(ValueError, match="C-contiguous 2-D array of one byte per pixel"):
        _rle.encode_many([np.zeros((2, 3, 1), np.uint8)])
    with pytest.raises(ValueError, match="one byte per pixel"):
        _rle.encode_many([np.zeros((2, 3), np.int32)])
    with pytest.raises(ValueError, match="not C-contiguous"):
        _rle.encode_many([np.zeros((4, 6), np.uint8)[:, ::2]])
    assert _rle.encode_many([np.zeros((0, 5), np.uint8), np.zeros((3, 0), bool)]) == [("0", 0, None)] * 2
    assert encode_rle(np.zeros((0, 5), bool))["counts"] == "0"


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_2d_is_a_value_error(backend: str) -> None:
    with pytest.raises(ValueError, match="2-D"):
        encode_masks([np.zeros((2, 3), bool), np.zeros((2, 3, 1), bool)], backend=backend)
    with pytest.raises(ValueError, match="backend must be"):
        encode_masks([], backend="fortran")


def test_compress_runs_handles_long_runs_and_big_jumps() -> None:
    runs = [[5], [0, 5], [3, 1, 2], [1 << 20, 3, 1, (1 << 20) + 100, 7], [0, 1 << 29, 1]]
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in runs])
    bounds = np.cumsum([0, *map(len, runs)])
    expected = [coco.frPyObjects({"size": [sum(r), 1], "counts": r}, sum(r), 1)["counts"].decode() for r in runs]
    assert compress_runs(flat, bounds) == expected


def test_prepare_masks_equals_prepare_mask_one_by_one() -> None:
    masks = list(sample_masks(2, 12)) + [np.zeros((256, 455), bool)]
    writes = [MaskWrite(mask=m, score=0.5) for m in masks]
    writes.append(MaskWrite(rle=encode_rle(masks[0]), source="human"))
    prepared = prepare_masks(writes)
    assert prepared == [prepare_mask(w) for w in writes]
    assert prepared[-1][:5] == prepared[0][:5]  # the same mask given as RLE
    for p, m in zip(prepared, masks, strict=False):  # against the single-mask encoder (pycocotools strings)
        rle, area, box = encode_rle_area_box(m)
        assert (p.height, p.width, p.counts, p.area) == (256, 455, rle["counts"], area)
        assert p.bbox == (None if box is None else f"[{box[0]!r}, {box[1]!r}, {box[2]!r}, {box[3]!r}]")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 24).flatmap(
        lambda h: st.integers(1, 24).flatmap(
            lambda w: st.lists(arrays(np.bool_, (h, w)), min_size=1, max_size=6),
        )
    )
)
def test_property_batch_equals_pycocotools_and_column_runs(masks: list[np.ndarray]) -> None:
    got = encode_masks(masks, backend="numpy")
    assert got == [coco_reference(m) for m in masks]
    assert encode_masks(masks, backend="c") == got
    runs = [column_runs(m) for m in masks]
    flat = np.concatenate(runs)
    assert compress_runs(flat, np.cumsum([0, *map(len, runs)])) == [c for c, _, _ in got]
