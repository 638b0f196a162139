"""Seeded fuzz of the mask codec against real pycocotools: encoders, decoders, validation, hostile input.

Every encoder (``encode_rle``, ``encode_rle_area_box``, ``encode_masks`` with the compiled and the
NumPy backend) must write pycocotools' counts byte for byte; every decoder must read pycocotools'
strings (canonical or not) into the same pixels; a malformed string must raise
:class:`DataFormatError`, never decode to a wrong mask or crash the interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as coco

from hmtools.errors import DataFormatError
from hmtools.masks import (
    check_rle,
    decode_counts,
    decode_rle,
    decode_rles,
    encode_rle,
    encode_rle_area_box,
    mask_to_box,
    rle_area_box,
    rle_length,
    rle_runs,
)
from hmtools.rle_batch import COMPILED, encode_masks
from hmtools.rle_codec import column_runs

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(1, 1), (1, 2), (2, 1), (1, 37), (37, 1), (1, 1000), (1000, 1), (3, 5), (8, 8), (17, 31), (63, 65)]
SHAPES += [(455, 256), (256, 455), (720, 1280), (1, 70000), (70000, 1)]
RUN_LENGTHS = [1, 2, 15, 16, 17, 31, 32, 33, 511, 512, 513, 16383, 16384, 65535, 65536, 70000, 1 << 20]
"""Run lengths at the 5-bit group boundaries, past 16 bits, and far apart (large negative deltas)."""


def coco_reference(m: np.ndarray) -> tuple[str, int, tuple[float, float, float, float] | None]:
    rle = coco.encode(np.asfortranarray(m.astype(np.uint8)))
    area = int(coco.area(rle))
    box = None
    if area:
        x, y, w, h = coco.toBbox(rle).tolist()  # XYWH -> our XYXY
        box = (x, y, x + w, y + h)
    return rle["counts"].decode("ascii"), area, box


def coco_decode(counts: str | bytes, h: int, w: int) -> np.ndarray:
    raw = counts.encode("ascii") if isinstance(counts, str) else counts
    with warnings.catch_warnings():  # pycocotools' __array__ predates numpy 2's copy= keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco.decode({"size": [h, w], "counts": raw}).astype(bool)


def stripes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Column-major runs drawn from RUN_LENGTHS: long runs, many 5-bit groups, negative deltas."""
    lengths = rng.choice(RUN_LENGTHS, size=h * w + 1)
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), h * w)) + 1]  # just enough runs
    flat = np.repeat(np.arange(lengths.size) % 2 == 1, lengths)[: h * w]
    flat = np.pad(flat, (0, h * w - flat.size))
    return flat.reshape(w, h).T.copy()


def fuzz_mask(h: int, w: int, kind: int, rng: np.random.Generator) -> np.ndarray:
    if kind == 0:
        return rng.random((h, w)) < rng.random()
    if kind == 1:
        return np.zeros((h, w), bool)
    if kind == 2:
        return np.ones((h, w), bool)
    if kind in (3, 4):  # one pixel set (3) or cleared (4), often in a corner
        m = np.full((h, w), kind == 4)
        y, x = rng.choice([0, h - 1, int(rng.integers(h))]), rng.choice([0, w - 1, int(rng.integers(w))])
        m[y, x] = kind == 3
        return m
    if kind == 5:  # checkerboard: a run per pixel
        return (np.add.outer(np.arange(h), np.arange(w)) + int(rng.integers(2))) % 2 == 1
    if kind == 6:
        return stripes(h, w, rng)
    if kind == 7:
        return rng.random((h, w)) < 1e-4
    m = np.zeros((h, w), bool)  # overlapping rectangles
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(h)), int(rng.integers(w))
        m[y0 : int(rng.integers(y0 + 1, h + 1)), x0 : int(rng.integers(x0 + 1, w + 1))] ^= True
    return m


def test_fuzzed_masks_encode_like_pycocotools_and_decode_back() -> None:
    rng = np.random.default_rng(2024)
    for shape in SHAPES + [(int(rng.integers(1, 60)), int(rng.integers(1, 60))) for _ in range(15)]:
        big = shape[0] * shape[1] > 100_000
        masks = [fuzz_mask(*shape, kind, rng) for kind in (range(9) if not big else (0, 3, 5, 6, 8))]
        masks += [fuzz_mask(*shape, int(rng.integers(9)), rng) for _ in range(0 if big else 6)]
        want = [coco_reference(m) for m in masks]
        assert encode_masks(masks, backend="numpy") == want, shape
        if COMPILED:
            assert encode_masks(masks, backend="c") == want, shape
        for m, (counts, area, box) in zip(masks, want, strict=True):
            rle, area1, box1 = encode_rle_area_box(m)
            assert rle == encode_rle(m) == {"size": list(shape), "counts": counts}
            assert (area1, box1) == (area, box) == (int(m.sum()), mask_to_box(m))
            assert rle_area_box(rle) == (area, box)
            assert rle_runs(counts, *shape).tolist() == column_runs(m).tolist()
            got = decode_rle(rle)
            assert got.dtype == np.bool_ and got.flags.c_contiguous
            np.testing.assert_array_equal(got, m)
            np.testing.assert_array_equal(coco_decode(counts, *shape), m)
        stack = decode_counts([c if i % 2 else c.encode() for i, (c, _, _) in enumerate(want)], *shape)
        np.testing.assert_array_equal(stack, np.stack(masks))


def test_batches_of_mixed_sizes_equal_one_by_one() -> None:
    rng = np.random.default_rng(7)
    masks = [fuzz_mask(int(rng.integers(1, 40)), int(rng.integers(1, 40)), i % 9, rng) for i in range(120)]
    masks += [np.zeros((0, 4), bool), np.zeros((3, 0), bool), np.asfortranarray(masks[0]), masks[1][::-1]]
    masks += [masks[2].astype(np.uint8) * 255, masks[3].astype(np.float32)]
    want = [coco_reference(m != 0) for m in masks]
    for backend in ("numpy", "c") if COMPILED else ("numpy",):
        assert encode_masks(masks, backend=backend) == want
        assert [encode_masks([m], backend=backend)[0] for m in masks] == want


def test_strided_views_and_dtypes_whose_naive_uint8_cast_wraps_encode_the_nonzero_pixels() -> None:
    """Views of either stride sign, transposes, and values that a plain ``astype(uint8)`` would lose
    (256 -> 0, 0.5 -> 0, NaN) or keep (-1) all encode ``mask != 0``, on every encoder."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        base = rng.random((2 * h + 1, 3 * w + 1)) < rng.random()
        m = base[:h, :w]
        variants = [
            base[::2, ::3][:h, :w],
            base[::-2, ::-3][:h, :w],
            base[:w, :h].T,
            np.asfortranarray(m),
            m.astype(np.int16) * 256,
            m.astype(np.float32) * 0.5,
            np.where(m, np.nan, 0.0),
            m.astype(np.int8) * -1,
        ]
        for v in variants:
            want = coco_reference(v != 0)
            assert encode_rle(v)["counts"] == want[0]
            assert encode_masks([v], backend="numpy")[0] == want
            if COMPILED:
                assert encode_masks([v], backend="c")[0] == want
            np.testing.assert_array_equal(decode_rle(encode_rle(v)), v != 0)


def test_non_canonical_strings_with_empty_runs_decode_like_pycocotools() -> None:
    """pycocotools compresses any run list, zero-length runs included; batches and singles agree."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        strings, refs = [], []
        for _ in range(int(rng.integers(1, 6))):
            cuts = np.sort(rng.integers(0, h * w + 1, int(rng.integers(0, 12))))
            zeros, ends = [0] * int(rng.integers(3)), [h * w] * int(rng.integers(3))  # empty runs at either end
            runs = np.diff(np.array([0, *zeros, *cuts.tolist(), *ends, h * w])).tolist()
            s = coco.frPyObjects({"size": [h, w], "counts": runs}, h, w)["counts"]
            strings.append(s)
            refs.append(coco_decode(s, h, w))
            np.testing.assert_array_equal(decode_rle({"size": [h, w], "counts": runs}), refs[-1])
            area, box = rle_area_box({"size": [h, w], "counts": s})
            assert (area, box) == (int(refs[-1].sum()), mask_to_box(refs[-1]))
        np.testing.assert_array_equal(decode_counts(strings, h, w), np.stack(refs))
        np.testing.assert_array_equal(decode_rles([{"size": [h, w], "counts": s} for s in strings]), np.stack(refs))


def mutate(s: str, rng: np.random.Generator) -> str:
    chars = list(s)
    kind = int(rng.integers(6))
    at = int(rng.integers(len(chars) + 1))
    if kind == 0 and chars:
        chars[min(at, len(chars) - 1)] = chr(int(rng.integers(48, 112)))
    elif kind == 1:
        chars.insert(at, chr(int(rng.integers(48, 112))))
    elif kind == 2 and chars:
        del chars[min(at, len(chars) - 1)]
    elif kind == 3:
        chars = chars[:at]
    elif kind == 4:
        chars.insert(at, chr(int(rng.integers(0, 128))))
    elif chars:
        i = min(at, len(chars) - 1)
        chars[i] = chr(ord(chars[i]) ^ (1 << int(rng.integers(7))))
    return "".join(chars)


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except DataFormatError:
        return "error", None


def test_mutated_counts_raise_or_decode_exactly_like_pycocotools() -> None:
    rng = np.random.default_rng(3)
    accepted = 0
    for _ in range(1500):
        h, w = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        m = rng.random((h, w)) < rng.random()
        s = mutate(encode_rle(m)["counts"], rng)
        if rng.random() < 0.3:
            s = mutate(s, rng)
        elif rng.random() < 0.4:  # pixels moved from one run to another: valid, often non-canonical
            runs = column_runs(m)
            i, j = rng.integers(runs.size, size=2)
            moved = int(rng.integers(runs[i] + 1))
            runs[i] -= moved
            runs[j] += moved
            s = coco.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)["counts"].decode()
        rle = {"size": [h, w], "counts": s}
        results = [
            outcome(decode_rle, rle),
            outcome(decode_counts, [s], h, w),
            outcome(decode_rles, [encode_rle(m), rle, encode_rle(~m)]),
            outcome(rle_runs, s, h, w),
            outcome(check_rle, rle),
        ]
        verdicts = {kind for kind, _ in results}
        assert len(verdicts) == 1, (s, h, w, [kind for kind, _ in results])
        assert (rle_length(s) == h * w) == (verdicts == {"ok"})
        if verdicts == {"ok"}:
            accepted += 1
            ref = coco_decode(s, h, w)  # safe: the string passed our checks
            for got in (results[0][1], results[1][1][0], results[2][1][1]):
                np.testing.assert_array_equal(got, ref)
            assert rle_area_box(rle) == (int(ref.sum()), mask_to_box(ref))
    assert accepted > 200  # some mutations keep a valid string (a different mask): still decoded right


def test_a_size_that_counts_do_not_cover_is_refused_before_allocating() -> None:
    """A bogus huge size with a short string is malformed input, not a terabyte allocation."""
    for size in ([10**6, 10**6], [10**7, 10**7], [2**40, 2**40]):
        for counts in ("0", "1", "52", "o" * 6 + "0"):
            with pytest.raises(DataFormatError):
                decode_rle({"size": size, "counts": counts})
            with pytest.raises(DataFormatError):
                decode_counts([counts], *size)
    out = np.ones((1, 2, 3), bool)
    with pytest.raises(DataFormatError):
        decode_counts(["5"], 2, 3, out=out)
    assert out.all()  # a refused string leaves the caller's buffer alone


def test_uncompressed_counts_whose_int64_sum_wraps_around_are_refused() -> None:
    with pytest.raises(DataFormatError, match="sum"):
        decode_rle({"size": [3, 4], "counts": [2**63 - 1, 2**63 - 1, 14]})  # wraps to 12 in int64


def test_hostile_json_sizes_and_ragged_counts_are_data_format_errors() -> None:
    """json.loads accepts Infinity; a ragged counts list is a ValueError inside numpy."""
    infinite = json.loads('{"size": [Infinity, 3], "counts": "0"}')
    for fn in (decode_rle, check_rle, rle_area_box):
        with pytest.raises(DataFormatError, match="expected RLE"):
            fn(infinite)
    with pytest.raises(DataFormatError, match="non-negative integers"):
        decode_rle({"size": [3, 4], "counts": [1, [2, 3]]})


HOSTILE = """
import numpy as np
from hmtools.errors import DataFormatError
from hmtools.masks import rle_area, rle_area_box, rle_to_box
cases = [
    ([0, 5], "01"),  # toBbox divides by H = 0
    ([2**32, 1], "01"),  # H as a 32-bit uint is 0
    ([100, 100], b"11111a\\x00" + b"1" * 200000),  # parser runs past the NUL: heap overflow
    ([100, 100], "1" * 5000 + "a"),  # last run cut off: parser reads past the end
    ([3, 3], ""),
]
for size, counts in cases:
    for fn in (rle_area, rle_area_box, rle_to_box):
        try:
            fn({"size": size, "counts": counts})
        except DataFormatError:
            continue
        raise SystemExit(f"{fn.__name__} accepted {size} {counts[:10]!r}")
assert rle_area_box({"size": [0, 5], "counts": "0"}) == (0, None)
print("refused")
"""


def test_hostile_counts_never_reach_pycocotools_c_code() -> None:
    """rle_area/rle_area_box/rle_to_box refuse what would crash pycocotools (run in a subprocess)."""
    proc = subprocess.run([sys.executable, "-c", HOSTILE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", (proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.skipif(not COMPILED, reason="hmtools._rle is not built")
def test_compiled_encoder_refuses_masks_wider_than_its_int32_columns(tmp_path: Path) -> None:
    """A column past 2**31 - 1 wrapped to a negative index and corrupted memory (segfault)."""
    from hmtools import _rle

    path = tmp_path / "wide.bin"
    width = (1 << 31) + 8
    with path.open("wb") as f:
        f.truncate(width)  # sparse: nothing is read when the width is refused up front
    wide = np.memmap(path, dtype=np.uint8, mode="r", shape=(1, width))
    with pytest.raises(ValueError, match="columns"):
        _rle.encode_many([wide])
    del wide


def test_without_the_compiled_module_everything_falls_back_to_numpy() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hmtools._rle"] = None  # as if setup.py had no C compiler
        import numpy as np
        from pycocotools import mask as coco
        from hmtools import rle_batch
        from hmtools.store_types import MaskWrite, prepare_masks
        assert not rle_batch.COMPILED
        m = np.random.default_rng(0).random((37, 23)) < 0.4
        want = coco.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        assert rle_batch.encode_masks([m])[0][0] == want
        assert prepare_masks([MaskWrite(mask=m)])[0].counts == want
        try:
            rle_batch.encode_masks([m], backend="c")
        except ValueError as e:
            assert "not built" in str(e)
        else:
            raise SystemExit("backend='c' without the module did not raise")
        print("numpy")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "numpy", proc.stderr
