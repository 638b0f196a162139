"""The store side of an import: match masks to frames, check sizes, batch the writes.

:class:`MaskSink` is fed ``(frame key, RLE, provenance)`` by a format reader, in any order.
It resolves the frame (file extension ignored), checks the mask size against the frame's (a mask
of 0 rows or columns is a size mismatch too, even where the frame's size is unknown), buffers
writes and flushes them per sample through :meth:`MaskStore.write_sample_masks` (inside the
caller's single import transaction), and keeps the counts the report needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmtools.errors import DataFormatError
from hmtools.masks import RLE
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskRecord, MaskWrite

FLUSH_EVERY = 2048
"""Buffered masks that trigger a flush to the store."""
_EXAMPLES = 3


def key_stem(key: str) -> str:
    """A frame or mask key without its file extension (``a/b/img_00001.jpg`` -> ``a/b/img_00001``)."""
    dot = key.rfind(".")
    if dot <= key.rfind("/") + 1:  # no extension (a leading dot names a hidden file)
        return key
    return key[:dot]


@dataclass
class _Frame:
    sample_id: str
    idx: int
    key: str
    state: int = 0  # 0 no mask yet, 1 buffered, 2 written


@dataclass
class Tally:
    """A count with the first few examples."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        """Count one more; keep it as an example if there are few yet."""
        self.count += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(example)


class MaskSink:
    """Collects imported masks for the frames of ``samples`` and writes them to ``store``."""

    def __init__(self, store: MaskStore, samples: list[Sample], root: Path | None, author: str) -> None:
        """Index the samples' frames by key stem.

        Raises:
            DataFormatError: two frames of the dataset differ only by extension.
        """
        self.store, self.root, self.author = store, root, author
        self.frames: dict[str, _Frame] = {}
        for s in samples:
            for i, key in enumerate(s.frames):
                stem = key_stem(key)
                if stem in self.frames:
                    raise DataFormatError(f"frames {self.frames[stem].key} and {key} differ only by extension")
                self.frames[stem] = _Frame(s.sample_id, i, key)
        self._pending: dict[str, dict[int, tuple[_Frame, MaskWrite]]] = {}
        self._n_pending = 0
        self._sizes: dict[str, list[tuple[int, int] | None]] = {}
        self.imported = 0
        self.empty = 0
        self.unchanged = 0
        """Masks not written because the frame's newest mask is already this import (a re-import)."""
        self._had_masks: dict[str, bool] = {}
        self.unmatched = Tally()
        self.size_mismatch = Tally()
        self.missing_frame_files = Tally()
        self.on_put: Callable[[int], object] | None = None
        """Called with 1 for every mask taken (a progress bar's ``update``)."""

    def lookup(self, key: str) -> _Frame | None:
        """The dataset frame a mask key names (extension ignored), or ``None``."""
        return self.frames.get(key_stem(key))

    def frame_size(self, frame: _Frame) -> tuple[int, int] | None:
        """The frame's ``(H, W)``: as the store records it, else from the header of the sample's first
        frame under the root (a sample is one video: its frames share one size), else ``None``."""
        sizes = self._sizes.get(frame.sample_id)
        if sizes is None:
            if len(self._sizes) >= 8:  # a few samples are read ahead of the one being written
                del self._sizes[next(iter(self._sizes))]
            rows = self.store.frames(frame.sample_id)
            self._had_masks.setdefault(frame.sample_id, any(r.head_version for r in rows))
            sizes = [None if r.height is None or r.width is None else (r.height, r.width) for r in rows]
            if any(size is None for size in sizes) and self.root is not None:
                first = self._read_frame_size(self.root / rows[0].key, rows[0].key)
                sizes = [size or first for size in sizes]
            self._sizes[frame.sample_id] = sizes
        return sizes[frame.idx]

    def put(
        self,
        key: str,
        rle: RLE,
        provenance: dict[str, Any],
        area_box: tuple[int, tuple[float, float, float, float] | None] | None = None,
        tracks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Take one mask for the frame named ``key``; a second mask for a frame is unioned with the first
        (the union keeps no ``tracks``: which athlete is which is unknown across the two).

        Args:
            key: Frame key as the mask file or record names it (extension ignored).
            rle: Compressed RLE with ``str`` counts.
            provenance: Optional ``score`` and ``status``.
            area_box: ``(area, XYXY box)`` of ``rle`` when the reader made ``rle`` itself and knows
                both (the store then skips re-parsing it); else they are computed.
            tracks: Per-athlete parts ``[{"track", "bbox", "counts"}]`` of ``rle`` (see
                :class:`hmtools.store_types.MaskRecord`), or ``None``.
        """
        if self.on_put is not None:
            self.on_put(1)
        frame = self.lookup(key)
        if frame is None:
            self.unmatched.add(key)
            return
        size = self.frame_size(frame)
        mask_size = (int(rle["size"][0]), int(rle["size"][1]))
        if size is not None and size != mask_size:
            self.size_mismatch.add(f"{frame.key}: mask {mask_size[0]}x{mask_size[1]}, frame {size[0]}x{size[1]}")
            return
        if min(mask_size) < 1:  # frame size unknown (no --root): a mask of no pixels fits no frame either
            self.size_mismatch.add(f"{frame.key}: mask {mask_size[0]}x{mask_size[1]} has no pixels")
            return
        write = MaskWrite(
            rle=rle,
            source="imported",
            score=provenance.get("score"),
            status=provenance.get("status", "unreviewed"),
            tracks=tracks,
            frame_idx=frame.idx,
            area_box=area_box,
        )
        if frame.state == 1:
            old = self._pending[frame.sample_id][frame.idx][1]
            write = _union(write, old.rle)
        elif frame.state == 2:  # already flushed: union with it as a further version (rare: unsorted COCO)
            current = self.store.current_mask(frame.key)
            write = _union(write, None if current is None else current.rle)
        else:
            self.imported += 1
            self.empty += area_box[0] == 0 if area_box is not None else _is_empty(rle)
        self._pending.setdefault(frame.sample_id, {})[frame.idx] = (frame, write)
        self._n_pending += frame.state != 1
        frame.state = 1
        if self._n_pending >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write every buffered mask, one :meth:`MaskStore.write_sample_masks` call per sample."""
        for sample_id, entries in self._pending.items():
            writes = [w for _, w in entries.values()]
            if self._had_masks.get(sample_id, True):
                writes = self._changed(sample_id, writes)
            if writes:
                self.store.write_sample_masks(sample_id, writes, author=self.author)
            for frame, _ in entries.values():
                frame.state = 2
        self._pending.clear()
        self._n_pending = 0

    def _changed(self, sample_id: str, writes: list[MaskWrite]) -> list[MaskWrite]:
        """``writes`` less those identical to their frame's newest mask when that is already an import
        (same pixels, status, score and tracks): importing a file twice adds no versions."""
        current = self.store.current_masks(sample_id)
        out = []
        for w in writes:
            rec = current[w.frame_idx] if w.frame_idx is not None else None
            if rec is not None and w.rle is not None and _same(rec, w):
                self.unchanged += 1
            else:
                out.append(w)
        return out

    def frames_without_mask(self) -> Tally:
        """Frames of the dataset that got no mask."""
        out = Tally()
        for frame in self.frames.values():
            if frame.state == 0:
                out.add(frame.key)
        return out

    def _read_frame_size(self, path: Path, key: str) -> tuple[int, int] | None:
        size = read_image_size(path)
        if size is None:
            self.missing_frame_files.add(key)
        return size


def read_image_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` from an image file's header (no pixel decode), or ``None`` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError):
        return None
    return int(height), int(width)


def _same(rec: MaskRecord, w: MaskWrite) -> bool:
    import json

    if rec.source != "imported" or w.rle is None:
        return False
    if [int(v) for v in rec.rle["size"]] != [int(v) for v in w.rle["size"]] or rec.rle["counts"] != w.rle["counts"]:
        return False
    score = None if w.score is None else float(w.score)
    if (rec.status, rec.score) != (w.status, score):
        return False

    def text(tracks: object) -> str | None:
        return None if tracks is None else json.dumps(tracks, sort_keys=True, default=lambda v: v.tolist())

    return text(rec.tracks) == text(w.tracks)


def _is_empty(rle: RLE) -> bool:
    from hmtools.masks import rle_area

    return rle_area(rle) == 0


def _union(write: MaskWrite, other: RLE | None) -> MaskWrite:
    from dataclasses import replace

    from pycocotools import mask as coco_mask

    if other is None or write.rle is None:
        return write
    parts = [{"size": list(r["size"]), "counts": r["counts"].encode("ascii")} for r in (write.rle, other)]
    merged = coco_mask.merge(parts, intersect=False)
    rle: RLE = {"size": [int(v) for v in merged["size"]], "counts": merged["counts"].decode("ascii")}
    return replace(write, rle=rle, area_box=None, tracks=None)
