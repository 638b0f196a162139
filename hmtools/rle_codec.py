"""COCO compressed-RLE strings in numpy: parse, validate and decode many masks at once.

pycocotools parses ``counts`` in C without any check, and encodes/decodes one mask per call.
The store reads whole samples (~100 frames) at a time, so :func:`decode_counts` does the per-run
work of all frames in a handful of numpy calls and validates every string (characters,
truncation, over-long runs, negative runs, total = H*W) before filling any pixel.
:func:`column_runs` finds the column-major runs of a C-ordered mask without a transposed copy;
pycocotools then only compresses them into the string (its per-pixel C loop in ``encode`` was
slower than finding the transitions with numpy).

Format reminder: runs alternate background/foreground, start with background (the first run may
be 0), and go column by column (an ``(H, W)`` mask is flattened as its transpose ``(W, H)``).
Each run from the fourth on (index >= 3) is stored as the difference to the run two before, in groups of 5
bits, low first, as characters ``48 + bits`` (``+ 0x20`` while more groups follow); the last
group's bit ``0x10`` is the sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from hmtools.errors import DataFormatError

MAX_CHARS_PER_RUN = 6
"""pycocotools' C parser shifts an ``int`` by 5 bits per character: more than 6 overflows it."""

_FILL_BYTES = 1 << 18  # decode ~256 KiB of pixels at a time so they stay in cache


def counts_bytes(counts: Any) -> bytes:
    """``counts`` (str or bytes) as ASCII bytes; :class:`DataFormatError` for anything else."""
    if isinstance(counts, bytes):
        return counts
    if isinstance(counts, str):
        try:
            return counts.encode("ascii")
        except UnicodeEncodeError as e:
            raise DataFormatError(f"RLE counts must be ASCII, found {counts[:40]!r}") from e
    raise DataFormatError(f"RLE counts must be a str, bytes or a list of ints, found {type(counts).__name__}")


def size_and_counts(rle: Any) -> tuple[int, int, Any]:
    """``(H, W, counts)`` of an RLE dict; :class:`DataFormatError` if it is not one."""
    try:
        size = rle["size"]
        height, width = (int(v) for v in size)
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: an infinite float
        raise DataFormatError(f"expected RLE {{'size': [H, W], 'counts': ...}}, found {rle!r:.80}") from e
    if height < 0 or width < 0 or any(isinstance(v, float) and not float(v).is_integer() for v in size):
        raise DataFormatError(f"RLE size must be two non-negative integers [H, W], found {size!r}")
    return height, width, counts


def parse_runs(raw: bytes, where: str) -> np.ndarray:
    """Run lengths of one compressed counts string; errors start with ``where``."""
    runs, _ = char_values(np.frombuffer(raw, dtype=np.uint8), where)
    # runs from the fourth on (index >= 3) are stored as differences to the run two before
    runs[1::2] = np.cumsum(runs[1::2])
    runs[2::2] = np.cumsum(runs[2::2])
    if runs.min() < 0:
        raise DataFormatError(f"{where}: a run has negative length; the string was edited or corrupted")
    return runs


def char_values(raw: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Signed values of the character groups of one or more complete counts strings.

    Args:
        raw: ``(C,)`` uint8 characters of the strings, concatenated.
        where: Prefix of error messages.

    Returns:
        ``(values, ends)``: ``(R,)`` int64 group values (before the running sums) and ``(R,)`` the
        index of each group's last character.
    """
    if raw.size == 0:
        raise DataFormatError(f"{where}: empty counts string (an empty mask still has one run)")
    chars = raw - np.uint8(48)  # uint8: bytes below '0' wrap around to >= 208
    if chars.max() > 63:
        raise DataFormatError(f"{where}: characters outside '0'..'o'; the string was edited or corrupted")
    more = chars >= 32  # bit 0x20: another character of this group follows
    if more[-1]:
        raise DataFormatError(f"{where}: the last run is cut off; the string was truncated")
    ends = np.flatnonzero(~more)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > MAX_CHARS_PER_RUN:
        raise DataFormatError(f"{where}: a run is encoded in more than {MAX_CHARS_PER_RUN} characters")
    shift = np.arange(raw.size, dtype=np.int32) - np.repeat(starts.astype(np.int32), lengths)
    low = (chars & np.uint8(0x1F)).astype(np.int32) << (5 * shift)  # <= 6 chars: fits 30 bits
    values = np.add.reduceat(low, starts).astype(np.int64)
    negative = (chars[ends] & np.uint8(0x10)) != 0
    values -= np.where(negative, np.int64(1) << (5 * lengths), 0)  # arithmetic, not a (slower) boolean index
    return values, ends


def decode_rles(rles: Sequence[dict[str, Any]], out: np.ndarray | None = None) -> np.ndarray:
    """Decode same-sized compressed RLEs into one ``(N, H, W)`` bool array (C-ordered).

    Args:
        rles: ``N`` dicts ``{"size": [H, W], "counts": str | bytes}`` of equal size.
        out: Optional ``(N, H, W)`` bool C-contiguous array to fill.

    Raises:
        DataFormatError: sizes differ, or a counts string is malformed or does not cover ``H * W``.
    """
    if not rles:
        return np.zeros((0, 0, 0), dtype=bool) if out is None else out
    sizes = [size_and_counts(r)[:2] for r in rles]
    if any(size != sizes[0] for size in sizes):
        raise DataFormatError(f"RLEs differ in size ({sorted(set(sizes))}); decode them one by one")
    return decode_counts([r["counts"] for r in rles], *sizes[0], out=out)


def decode_counts(counts: Sequence[str | bytes], height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Decode compressed counts strings that share one size into an ``(N, H, W)`` bool array.

    All strings are parsed together in a handful of numpy calls and validated like
    :func:`rle_runs`. Only each mask's band of columns from its first to its last foreground pixel
    is expanded (``np.repeat``, ~256 KiB of bands at a time) and transposed into place (OpenCV);
    the rest of the output is zeroed.

    Args:
        counts: ``N`` compressed counts strings (ASCII str or bytes).
        height: Mask height H.
        width: Mask width W.
        out: Optional ``(N, H, W)`` bool C-contiguous array to fill.

    Raises:
        DataFormatError: a counts string is malformed or does not cover ``height * width`` pixels.
    """
    n, npix = len(counts), height * width
    shape = (n, height, width)
    if out is not None and (out.shape != shape or out.dtype != np.bool_ or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous bool array of shape {shape}")
    if n == 0:
        return np.zeros(shape, dtype=bool) if out is None else out
    raws = [counts_bytes(c) for c in counts]
    lengths = np.fromiter(map(len, raws), dtype=np.int64, count=n)
    if lengths.min() == 0:
        raise DataFormatError("RLE counts: empty counts string (an empty mask still has one run)")
    raw = np.frombuffer(b"".join(raws), dtype=np.uint8)
    cut = raw[np.cumsum(lengths) - 1] >= 48 + 32  # a string's last character still says "more"
    if cut.any():
        bad = raws[int(np.flatnonzero(cut)[0])]
        raise DataFormatError(f"RLE counts {bad[:40]!r}: the last run is cut off; the string was truncated")
    deltas, ends = char_values(raw, "RLE counts")
    per_string = np.diff(np.searchsorted(ends, np.cumsum(lengths) - 1, side="right"), prepend=0)
    # Lay the runs out with every string padded to an even count, so that a run's parity within
    # its string is its global parity; the two interleaved running sums become strided cumsums.
    padded = per_string + (per_string & 1)
    start = np.concatenate(([0], np.cumsum(padded)[:-1]))
    shift = np.repeat(start - np.concatenate(([0], np.cumsum(per_string)[:-1])), per_string)
    runs = np.zeros(int(padded.sum()), dtype=np.int64)
    runs[np.arange(deltas.size) + shift] = deltas
    half, head = padded // 2, start // 2
    odd = runs[1::2]  # views: writing them writes runs
    cs = np.cumsum(odd)
    odd[:] = cs - np.repeat(cs[head] - odd[head], half)
    even = runs[0::2]
    first = even[head].copy()  # the first run of a string stands alone
    even[head] = 0
    cs = np.cumsum(even)
    even[:] = cs - np.repeat(cs[head], half)
    even[head] = first
    runs[start + padded - 1] *= (per_string & 1) == 0  # padding runs are empty
    if runs.min() < 0:
        bad = raws[int(np.searchsorted(start, np.argmin(runs), side="right") - 1)]
        raise DataFormatError(f"RLE counts {bad[:40]!r}: a run has negative length; the string was edited")
    totals = np.add.reduceat(runs, start)
    if (totals != npix).any():
        i = int(np.flatnonzero(totals != npix)[0])
        raise DataFormatError(f"RLE counts {raws[i][:40]!r}: runs cover {int(totals[i])} pixels but H*W = {npix}")
    # only now that the strings are known to cover H*W (a bogus size must not allocate terabytes)
    if out is None:
        out = np.zeros(shape, dtype=bool)  # calloc: fresh pages come zeroed
    else:
        out[...] = False
    if npix == 0:
        return out
    # Only the band of columns from a mask's first to its last foreground pixel is expanded and
    # transposed (a person covers a fraction of the frame); the rest of the frame is zeroed.
    # Trim each string's leading and trailing background runs to that band.
    trailing = np.where(per_string & 1 == 1, runs[start + per_string - 1], 0)  # last run is background
    empty = per_string == 1
    col_a = np.where(empty, 0, runs[start] // height)
    col_b = np.where(empty, 0, width - trailing // height)
    band_runs = runs.copy()
    band_runs[start] -= np.where(empty, runs[start], col_a * height)
    odd_end = np.flatnonzero((per_string & 1 == 1) & ~empty)
    band_runs[start[odd_end] + per_string[odd_end] - 1] -= (width - col_b[odd_end]) * height
    values = np.zeros(runs.size, dtype=np.uint8)
    values[1::2] = 1
    step = max(1, _FILL_BYTES // max(1, int((col_b - col_a).mean() * height)))  # ~256 KiB of bands at a time
    bounds = np.append(start, runs.size).tolist()
    col_a, col_b = col_a.tolist(), col_b.tolist()
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        cols = np.repeat(values[bounds[lo] : bounds[hi]], band_runs[bounds[lo] : bounds[hi]])
        at = 0
        for i in range(lo, hi):
            a, b = col_a[i], col_b[i]
            if b > a:  # (b - a, H) column-major band -> columns a..b of the (H, W) mask
                size = (b - a) * height
                cv2.transpose(cols[at : at + size].reshape(b - a, height), out[i][:, a:b].view(np.uint8))
                at += size
    return out


def column_runs(mask: np.ndarray) -> np.ndarray:
    """Column-major run lengths of an ``(H, W)`` mask (nonzero = foreground), as COCO counts them.

    For a C-ordered mask the transitions are found between vertically adjacent pixels and between
    the bottom of one column and the top of the next, then sorted into column-major order, so the
    mask is never copied into Fortran order.

    Returns:
        ``(R,)`` int64 runs alternating background/foreground, starting with background (0 when
        pixel (0, 0) is foreground), summing to ``H * W``.
    """
    binary = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
    height, width = binary.shape
    if height * width == 0:
        return np.zeros(1, dtype=np.int64)
    if binary.flags.f_contiguous:
        flat = binary.ravel(order="F")
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    else:
        binary = np.ascontiguousarray(binary)
        y, x = np.divmod(np.flatnonzero(binary[1:] != binary[:-1]), width)  # (y, x) differs from (y + 1, x)
        wrap = np.flatnonzero(binary[height - 1, :-1] != binary[0, 1:])  # bottom of x differs from top of x + 1
        change = np.sort(np.concatenate((x * height + y + 1, (wrap + 1) * height)))
    bounds = np.concatenate(([0, 0] if binary[0, 0] else [0], change, [height * width]))
    return np.diff(bounds)
