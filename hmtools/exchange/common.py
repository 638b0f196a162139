"""What every export reads: the selected samples, one at a time, with their newest masks.

Exports never hold more than one sample's masks: :func:`iter_sample_masks` streams
:func:`hmtools.store_admin.iter_current` and groups it by sample.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hmtools.errors import DataFormatError, InputError
from hmtools.masks import RLE
from hmtools.schema import SOURCES, STATUSES, Sample
from hmtools.store import MaskStore
from hmtools.store_admin import iter_current
from hmtools.store_types import FrameRow, MaskRecord

CATEGORY = {"id": 1, "name": "person", "supercategory": "person"}
"""The one category of every export: the judged athlete(s)."""


@dataclass(frozen=True)
class Selection:
    """Which masks an export takes from the store.

    Attributes:
        sample_ids: Samples to export in this order, or ``None`` for all (sorted by id).
        statuses: Review statuses to export, or ``None`` for all; a frame whose newest mask has
            another status is exported as having no mask.
    """

    sample_ids: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None


@dataclass
class SampleMasks:
    """One sample with the newest selected mask of each of its frames.

    Attributes:
        sample: The registered sample (frame keys in order).
        frames: Its frames, in order.
        records: Per frame, the newest selected mask or ``None``.
        height: Frame height in pixels (every frame of a sample has the same size).
        width: Frame width in pixels.
    """

    sample: Sample
    frames: list[FrameRow]
    records: list[MaskRecord | None]
    height: int
    width: int

    @property
    def n_masks(self) -> int:
        """Frames that have a selected mask."""
        return sum(r is not None for r in self.records)


@dataclass
class Counts:
    """What an export wrote, for the manifest."""

    samples: int = 0
    samples_without_masks: int = 0
    frames: int = 0
    masks: int = 0
    empty_masks: int = 0
    frames_without_mask: int = 0
    by_source: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def add(self, sm: SampleMasks) -> None:
        """Count one exported sample."""
        self.samples += 1
        self.frames += len(sm.frames)
        for rec in sm.records:
            if rec is None:
                self.frames_without_mask += 1
                continue
            self.masks += 1
            self.empty_masks += rec.area == 0
            self.by_source[rec.source] += 1
            self.by_status[rec.status] += 1

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(vars(self))


def resolve_selection(store: MaskStore, selection: Selection) -> list[str]:
    """The sample ids to export, checked against the store.

    Raises:
        InputError: a requested sample is not in the store, or a status is unknown.
    """
    for status in selection.statuses or ():
        if status not in STATUSES:
            raise InputError(f"--status must be among {', '.join(STATUSES)}; got {status!r}")
    known = store.sample_ids()
    if selection.sample_ids is None:
        return known
    missing = sorted(set(selection.sample_ids) - set(known))
    if missing:
        raise InputError(
            f"{len(missing)} requested samples are not in {store.path} (first: {missing[0]!r}); "
            "`hmtools stats --store` counts the samples"
        )
    return list(dict.fromkeys(selection.sample_ids))


def iter_sample_masks(
    store: MaskStore, sample_ids: list[str], statuses: tuple[str, ...] | None, counts: Counts
) -> Iterator[SampleMasks]:
    """Yield each selected sample that has at least one selected mask, one at a time.

    Samples without any selected mask are counted in ``counts.samples_without_masks`` and skipped.

    Raises:
        DataFormatError: a mask's size disagrees with its frame or with the sample's other frames.
    """
    stream = iter_current(store, sample_ids, statuses)
    for sample_id, rows in itertools.groupby(stream, key=lambda r: r[0]):
        frames, records = [], []
        for _, frame, rec in rows:
            frames.append(frame)
            records.append(rec)
        size = _sample_size(sample_id, frames, records)
        if size is None:
            counts.samples_without_masks += 1
            continue
        sm = SampleMasks(store.get_sample(sample_id), frames, records, *size)
        counts.add(sm)
        yield sm


def _sample_size(sample_id: str, frames: list[FrameRow], records: list[MaskRecord | None]) -> tuple[int, int] | None:
    size: tuple[int, int] | None = None
    for frame, rec in zip(frames, records, strict=True):
        if rec is None:
            continue
        mask_size = (int(rec.rle["size"][0]), int(rec.rle["size"][1]))
        if frame.height is not None and (frame.height, frame.width) != mask_size:
            raise DataFormatError(
                f"frame {frame.key}: mask is {mask_size[0]}x{mask_size[1]} but the frame is "
                f"{frame.height}x{frame.width}; `hmtools validate` the store and fix the mask"
            )
        if size is not None and mask_size != size:
            raise DataFormatError(
                f"sample {sample_id}: frame {frame.key} is {mask_size[0]}x{mask_size[1]}, earlier frames "
                f"{size[0]}x{size[1]}; a sample's frames must share one size"
            )
        size = mask_size
    return size


def sample_meta(sample: Sample, n_frames: int) -> dict[str, Any]:
    """Per-sample metadata every export carries (JSON-serialisable; ``None`` where unknown)."""
    return {
        "sample_id": sample.sample_id,
        "dataset": sample.dataset,
        "split": sample.split,
        "score": sample.score,
        "difficulty": sample.difficulty,
        "action": sample.action,
        "action_class": sample.action_class,
        "n_frames": n_frames,
    }


def provenance(rec: MaskRecord) -> dict[str, Any]:
    """The provenance fields exported beside a mask."""
    return {"source": rec.source, "score": rec.score, "status": rec.status, "version": rec.version}


def rle_from_fortran(mask: Any) -> RLE:
    """COCO compressed RLE of an ``(H, W)`` 0/1 ``uint8`` mask that is already Fortran-ordered.

    The fast path for readers that can produce column-major masks without a copy (e.g. by
    thresholding a transposed image): no conversion, straight into pycocotools.
    """
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(mask)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def track_rles(rec: MaskRecord) -> dict[int, RLE]:
    """Per-athlete masks of a frame as full-frame compressed RLE, ``{track id: rle}``.

    A track with ``counts`` holds its own full-frame RLE. A lone track without (build-masks found
    one athlete) is the whole union: its mask may reach past the detector's box, which is only the
    prompt. One of several tracks without ``counts`` is the part of the union inside its ``bbox``.
    With no tracks the union is track 0. Empty masks give ``{}``.
    """
    from pycocotools import mask as coco_mask

    if rec.area == 0:
        return {}
    if not rec.tracks:
        return {0: rec.rle}
    if len(rec.tracks) == 1 and rec.tracks[0].get("counts") is None:
        return {int(rec.tracks[0]["track"]): rec.rle}
    height, width = (int(v) for v in rec.rle["size"])
    union = {"size": [height, width], "counts": rec.rle["counts"].encode("ascii")}
    out: dict[int, RLE] = {}
    for part in rec.tracks:
        if part.get("counts") is not None:
            rle = {"size": [height, width], "counts": str(part["counts"]).encode("ascii")}
        else:
            x1, y1, x2, y2 = (float(v) for v in part["bbox"])
            xywh = np.array([[x1, y1, x2 - x1, y2 - y1]], dtype=np.float64)
            box = coco_mask.frPyObjects(xywh, height, width)[0]
            rle = coco_mask.merge([union, box], intersect=True)
        if coco_mask.area(rle) > 0:
            out[int(part["track"])] = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    return out


def segmentation_rle(seg: Any, height: int, width: int, what: str) -> dict[str, Any]:
    """Compressed RLE (``counts`` bytes, as pycocotools takes it) of a COCO-style segmentation.

    Args:
        seg: Compressed RLE (``counts`` a string), uncompressed RLE (``counts`` a list of ints) or
            polygons (a list of ``[x1, y1, x2, y2, ...]`` pixel lists, unioned; polygons of fewer than 3
            points enclose no pixel and are dropped, as detectron2 does: pycocotools would read a
            4-number one as a box).
        height: Height of the image it belongs to; polygons are rasterised at ``height`` x ``width``.
        width: Its width.
        what: The image, for messages (``image a/b.jpg``).

    Raises:
        DataFormatError: the segmentation is malformed, its size is not ``height`` x ``width``, or
            its counts do not cover that many pixels. The message names no file: callers prefix it.
    """
    from pycocotools import mask as coco_mask

    from hmtools.masks import rle_length

    try:
        if isinstance(seg, list):
            rle = _polygons_rle(seg, height, width)
        elif isinstance(seg.get("counts"), list):
            rle = coco_mask.frPyObjects(seg, *[int(v) for v in seg["size"]])
        else:
            counts = seg["counts"]
            raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
            rle = {"size": [int(v) for v in seg["size"]], "counts": raw}
        size = [int(v) for v in rle["size"]]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, UnicodeEncodeError) as e:
        raise DataFormatError(f"has a malformed segmentation ({e})") from e
    except Exception as e:  # pycocotools raises a plain Exception for inputs it does not support
        raise DataFormatError(f"has a malformed segmentation ({e}; polygons need 6 or more coordinates)") from e
    if size != [height, width]:
        raise DataFormatError(f"RLE is {size[0]}x{size[1]} but {what} is {height}x{width}")
    if rle_length(rle["counts"]) != height * width:
        raise DataFormatError(f"RLE counts do not cover {height}x{width} pixels; the file is corrupt or hand-edited")
    return {"size": size, "counts": rle["counts"]}


def _polygons_rle(polygons: list[Any], height: int, width: int) -> dict[str, Any]:
    """Union of COCO polygons as compressed RLE (``counts`` bytes); degenerate ones (< 6 numbers) dropped.

    Raises:
        ValueError: a polygon is not a list of numbers, or has an odd number of them.
    """
    from pycocotools import mask as coco_mask

    kept = []
    for poly in polygons:
        if not isinstance(poly, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in poly):
            raise ValueError(f"a polygon must be a list of numbers; got {poly!r:.60}")
        if len(poly) % 2:
            raise ValueError(f"a polygon has an odd number of coordinates ({len(poly)})")
        if len(poly) >= 6:
            kept.append([float(v) for v in poly])
    if not kept:
        return coco_mask.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
    return coco_mask.merge(coco_mask.frPyObjects(kept, height, width))


def read_provenance(score: Any, status: Any) -> dict[str, Any]:
    """The provenance an import keeps: ``score`` in [0, 1] and a known ``status``, where valid."""
    out: dict[str, Any] = {}
    if isinstance(score, int | float) and not isinstance(score, bool) and 0.0 <= score <= 1.0:
        out["score"] = float(score)
    if status in STATUSES:
        out["status"] = status
    return out
