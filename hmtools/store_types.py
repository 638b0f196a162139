"""Row types of the mask store (see :mod:`hmtools.store`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hmtools.errors import DataFormatError, InputError
from hmtools.masks import RLE, check_rle, decode_rle, rle_area_box
from hmtools.rle_batch import encode_masks
from hmtools.schema import SOURCES, STATUSES


@dataclass(frozen=True)
class FrameRow:
    """A frame registered in the store.

    Attributes:
        frame_id: Row id (stable within one store).
        sample_id: Owning sample.
        idx: 0-based position in the sample.
        key: Frame key (path relative to the dataset root).
        height: Frame height in pixels, or ``None`` until known.
        width: Frame width in pixels, or ``None`` until known.
        head_version: Newest mask version, 0 when the frame has no mask.
    """

    frame_id: int
    sample_id: str
    idx: int
    key: str
    height: int | None
    width: int | None
    head_version: int


@dataclass(frozen=True)
class MaskRecord:
    """One stored mask version with its provenance.

    Attributes:
        frame_key: Frame key the mask belongs to.
        version: 1-based version number of this frame's mask.
        rle: COCO compressed RLE ``{"size": [H, W], "counts": str}``.
        area: Foreground pixels.
        bbox: XYXY box of the foreground, ``None`` when empty.
        tracks: Per-athlete parts ``[{"track": int, "bbox": [x1, y1, x2, y2], "counts": str | None}]``
            or ``None``.
        source: One of :data:`hmtools.schema.SOURCES`.
        score: Model confidence in [0, 1], ``None`` where none exists.
        status: One of :data:`hmtools.schema.STATUSES`.
        reason: Why the frame is flagged (``"; "``-joined), or ``None``.
        author: Who wrote it (user name, or ``build-masks``/``import``).
        created_at: Unix time in seconds.
    """

    frame_key: str
    version: int
    rle: RLE
    area: int
    bbox: tuple[float, float, float, float] | None
    tracks: list[dict[str, Any]] | None
    source: str
    score: float | None
    status: str
    reason: str | None
    author: str
    created_at: float

    def mask(self) -> np.ndarray:
        """Decode to an ``(H, W)`` bool array."""
        return decode_rle(dict(self.rle))


@dataclass(frozen=True)
class MaskWrite:
    """A mask to write for one frame (used by bulk writers: build-masks and import).

    Give either ``mask`` (``(H, W)`` bool) or ``rle``. ``frame_idx`` is the 0-based position in the
    sample; when writing a whole sample in order it may be left ``None``. ``area_box`` is the
    ``(area, XYXY box or None)`` of ``rle`` when the writer got both from
    :func:`hmtools.rle_batch.encode_masks`: the store then trusts ``rle`` instead of parsing it again.
    """

    mask: np.ndarray | None = None
    rle: RLE | None = None
    source: str = "auto"
    score: float | None = None
    status: str = "unreviewed"
    reason: str | None = None
    tracks: list[dict[str, Any]] | None = None
    frame_idx: int | None = None
    area_box: tuple[int, tuple[float, float, float, float] | None] | None = None

    @classmethod
    def copy_of(cls, rec: MaskRecord, frame_idx: int | None = None) -> MaskWrite:
        """A new version carrying a stored mask and its provenance unchanged (restore, merge)."""
        return cls(
            rle=rec.rle,
            source=rec.source,
            score=rec.score,
            status=rec.status,
            reason=rec.reason,
            tracks=rec.tracks,
            frame_idx=frame_idx,
        )


MASK_COLUMNS = (
    "f.key, m.version, m.height, m.width, m.counts, m.area, m.bbox, m.tracks, m.source, m.score, "
    "m.status, m.reason, m.author, m.created_at"
)


def row_to_record(row: tuple[Any, ...]) -> MaskRecord:
    """Build a :class:`MaskRecord` from a row selected with :data:`MASK_COLUMNS`."""
    key, version, h, w, counts, area, bbox, tracks, source, score, status, reason, author, at = row
    return MaskRecord(
        frame_key=key,
        version=version,
        rle={"size": [h, w], "counts": counts},
        area=area,
        bbox=None if bbox is None else tuple(_stored_json(bbox, list, key, version, "bbox")),
        tracks=None if tracks is None else _stored_json(tracks, list, key, version, "tracks"),
        source=source,
        score=score,
        status=status,
        reason=reason,
        author=author,
        created_at=at,
    )


def _stored_json(text: str, kind: type, key: str, version: int, column: str) -> Any:
    """A JSON column of a stored mask version, parsed.

    Raises:
        DataFormatError: the text is not JSON of ``kind`` (the file was edited or damaged).
    """
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        value = e
    if not isinstance(value, kind):
        raise DataFormatError(
            f"frame {key} v{version}: stored {column} {str(text)[:60]!r} is not a JSON {kind.__name__}; "
            "the store was edited or damaged (`hmtools validate STORE` lists the problems)"
        )
    return value


class PreparedMask(NamedTuple):
    """A :class:`MaskWrite` encoded and checked, ready to insert (everything but frame, version, author, time)."""

    height: int
    width: int
    counts: str
    area: int
    bbox: str | None
    tracks: str | None
    source: str
    score: float | None
    status: str
    reason: str | None


def check_vocab(source: str, status: str) -> None:
    """Raise :class:`InputError` unless ``source`` and ``status`` are known words."""
    if source not in SOURCES:
        raise InputError(f"mask source must be one of {', '.join(SOURCES)}; got {source!r}")
    if status not in STATUSES:
        raise InputError(f"review status must be one of {', '.join(STATUSES)}; got {status!r}")


def prepare_mask(w: MaskWrite) -> PreparedMask:
    """Encode (or check) the mask of a write and compute its area and box.

    Raises:
        InputError: unknown source/status, a score that is NaN or infinite, a mask of no pixels
            (0 rows or columns), or a float mask with values other than 0 and 1 (threshold soft
            masks first; other dtypes count nonzero as foreground).
        DataFormatError: ``w.rle`` is malformed or its counts disagree with its size.
        ValueError: the write holds neither a mask nor an rle, or a mask that is not 2-D.
    """
    return prepare_masks([w])[0]


def prepare_masks(writes: Sequence[MaskWrite]) -> list[PreparedMask]:
    """:func:`prepare_mask` for many writes; the pixel masks among them are encoded in one batch.

    Every write is checked before any mask is encoded. Errors are those of :func:`prepare_mask`.
    """
    for w in writes:
        check_vocab(w.source, w.status)
        if w.score is not None and not math.isfinite(float(w.score)):
            raise InputError(f"mask score must be a finite number (nominally in [0, 1]) or None; got {w.score!r}")
        if w.rle is None and w.mask is None:
            raise ValueError("MaskWrite needs a mask or an rle")
        if w.rle is None:
            _check_binary(w.mask)  # type: ignore[arg-type]  # not None: checked above
    pixel = [w.mask for w in writes if w.rle is None]
    encoded = iter(encode_masks(pixel))  # type: ignore[arg-type]  # not None: checked above
    out = []
    for w in writes:
        if w.rle is None:
            counts, area, box = next(encoded)
            height, width = w.mask.shape  # type: ignore[union-attr]
        elif w.area_box is not None:  # encoded by encode_masks: already well-formed
            (height, width), counts = w.rle["size"], w.rle["counts"]
            area, box = w.area_box
        else:
            rle = check_rle(dict(w.rle))
            area, box = rle_area_box(rle)
            (height, width), counts = rle["size"], rle["counts"]
        if height < 1 or width < 1:
            raise InputError(
                f"a mask of {height}x{width} (HxW) pixels has no pixels; masks are stored at the frame's size"
            )
        out.append(
            PreparedMask(  # positional: height, width, counts, area, bbox, tracks, source, score, status, reason
                int(height),
                int(width),
                counts,
                area,
                None if box is None else "[%r, %r, %r, %r]" % box,  # noqa: UP031  # same text as f"{x!r}"
                None if w.tracks is None else json.dumps(w.tracks, sort_keys=True, default=_numpy_json),
                w.source,
                None if w.score is None else float(w.score),
                w.status,
                w.reason,
            )
        )
    return out


def _check_binary(mask: np.ndarray) -> None:
    """Refuse a float mask that is not 0/1: nonzero = foreground would make a soft map all foreground.

    Raises:
        InputError: a float or complex mask holds a value other than 0 and 1 (NaN included).
    """
    if mask.dtype.kind in "fc" and bool(((mask != 0) & (mask != 1)).any()):
        raise InputError(
            f"a {mask.dtype} mask must hold only 0 and 1; got other values (probabilities or logits?): "
            "threshold it first, e.g. mask > 0.5 or logits > 0"
        )


def _numpy_json(value: Any) -> Any:
    """JSON form of numpy scalars and arrays inside ``tracks`` (anything else is a TypeError)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"tracks must hold JSON values; got {type(value).__name__}")
