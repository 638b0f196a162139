"""``hmtools import``: attach masks from a FineParser folder, a COCO or YouTube-VIS file or an HDF5 export.

The CLI path is ``load_dataset(...)`` then :func:`import_masks` with its samples. The whole
import is one store transaction: on any error (a mask whose size differs from its frame, a
malformed file, a folder that matches none of the dataset's frames) nothing is written.
Frames without a mask and masks without a frame are reported, not silently dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmtools.errors import DataFormatError, InputError
from hmtools.exchange.parallel import batched, default_workers, ordered_process_map
from hmtools.exchange.sink import MaskSink, Tally
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_admin import check_same_dataset

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from hmtools.exchange.fineparser import DecodedMask

DECODE_BATCH = 64
"""Mask files per decoding task: one ``encode_masks`` call each (it costs ~0.2 ms per call), and
one round trip to a worker process."""


@dataclass(frozen=True)
class ImportReport:
    """What an import did.

    Attributes:
        samples: Samples of the dataset.
        samples_added: Samples newly registered in the store.
        imported: Frames that got a mask (new version, source ``imported``).
        empty: Of those, masks with no foreground.
        frames_without_mask: Dataset frames the masks did not cover.
        masks_without_frame: Masks that named no frame of the dataset.
        frames_unreadable: First frames of samples that could not be read under the root to learn the
            sample's frame size (the size is then taken from the masks, unchecked).
        unchanged: Of ``imported``, masks not written again because the frame's newest mask already
            is the same import (same pixels, status, score and tracks): re-importing adds no versions.
    """

    samples: int
    samples_added: int
    imported: int
    empty: int
    frames_without_mask: Tally
    masks_without_frame: Tally
    frames_unreadable: Tally
    unchanged: int = 0

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [
            f"imported {self.imported} masks ({self.empty} empty) for {self.samples} samples "
            f"({self.samples_added} newly registered)"
            + (
                f"; {self.unchanged} unchanged (already the newest version, not written again)"
                if self.unchanged
                else ""
            )
        ]
        for label, tally in (
            ("frames without a mask", self.frames_without_mask),
            ("masks without a frame (not imported)", self.masks_without_frame),
            (
                "samples whose first frame is unreadable under --root (sizes not checked)",
                self.frames_unreadable,
            ),
        ):
            if tally.count:
                out.append(f"{label}: {tally.count} (first: {', '.join(tally.examples)})")
        return out


def _feed_fineparser(sink: MaskSink, masks: Path, samples: list[Sample], workers: int, fork: bool = False) -> Tally:
    from hmtools.exchange.fineparser import masks_by_folder, pair_masks, scan_mask_folder

    if not masks.is_dir():
        raise InputError(f"--masks {masks} is not a folder; the fineparser format is a folder of mask images")
    found = scan_mask_folder(masks)

    base = str(masks)

    by_folder: dict[str, list[str]] | None = None
    by_position: list[str] = []

    def folders() -> dict[str, list[str]]:
        nonlocal by_folder
        by_folder = masks_by_folder(found) if by_folder is None else by_folder
        return by_folder

    def jobs() -> Iterator[tuple[str, str]]:
        for s in samples:  # by frame name, else by position in the clip (see pair_masks)
            pairs, positional = pair_masks(s.sample_id, s.frames, found, folders)
            by_position.extend([s.sample_id] if positional else [])
            for key, rel in pairs:
                yield key, os.path.join(base, rel)

    rules: dict[str, Tally] = {}
    for results in ordered_process_map(_decode_batch, batched(jobs(), DECODE_BATCH), workers, fork=fork):
        for key, decoded in results:
            if decoded.rule != "threshold":
                rules.setdefault(decoded.rule, Tally()).add(key)
            sink.put(key, decoded.rle, {}, area_box=(decoded.area, decoded.box))
    for rule, tally in rules.items():
        log.warning(
            "%d masks (e.g. %s) read as %s: foreground = %s",
            tally.count,
            tally.examples[0],
            "palette images" if rule == "palette" else "0/1 or label masks (no pixel reaches half range)",
            "palette index != 0" if rule == "palette" else "nonzero pixels",
        )
    if by_position:
        log.warning(
            "%d samples' masks are named by position, not by frame (e.g. %s): paired with the frames in order, "
            "as the FineParser loaders read them",
            len(by_position),
            by_position[0],
        )
    unmatched = Tally()
    for rel in found.values():
        unmatched.add(rel)
    return unmatched


def _decode_batch(batch: list[tuple[str, str]]) -> list[tuple[str, DecodedMask]]:
    """Read and encode a batch of ``(frame key, mask file)``; runs in a worker process."""
    from hmtools.exchange.fineparser import decode_mask_files

    return list(zip([key for key, _ in batch], decode_mask_files([path for _, path in batch]), strict=True))


def _feed_coco(sink: MaskSink, masks: Path, samples: list[Sample], workers: int) -> Tally:
    from hmtools.exchange.coco import iter_coco_annotations, read_coco_images

    if not masks.is_file():
        raise InputError(f"--masks {masks} is not a file; the coco format is one JSON file")
    images = read_coco_images(masks)
    annotated: set[int] = set()
    for image_id, rle, prov in iter_coco_annotations(masks, images):
        annotated.add(image_id)
        name, height, width = images[image_id]
        sink.put(name, {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}, prov)
    for image_id, (name, height, width) in images.items():
        if image_id not in annotated:  # an image without annotations: the frame has no athlete
            sink.put(name, _empty_rle(height, width), {}, area_box=(0, None))
    return Tally()


def _feed_ytvis(sink: MaskSink, masks: Path, samples: list[Sample], workers: int) -> Tally:
    from hmtools.exchange.ytvis_import import iter_ytvis_frames, read_ytvis_videos

    if not masks.is_file():
        raise InputError(f"--masks {masks} is not a file; the ytvis format is one JSON file")
    for frame in iter_ytvis_frames(masks, read_ytvis_videos(masks)):
        area_box = (0, None) if frame.empty else None
        sink.put(frame.key, frame.rle, frame.provenance, area_box=area_box, tracks=frame.tracks)
    return Tally()


def _feed_hdf5(sink: MaskSink, masks: Path, samples: list[Sample], workers: int) -> Tally:
    from hmtools.exchange.hdf5 import iter_hdf5

    if not masks.is_file():
        raise InputError(f"--masks {masks} is not a file; the hdf5 format is one .h5 file")
    for frame in iter_hdf5(masks):
        if frame.rle is not None:
            sink.put(frame.key, frame.rle, frame.provenance)
    return Tally()


def _empty_rle(height: int, width: int) -> dict[str, Any]:
    import numpy as np

    from hmtools.masks import encode_rle

    return dict(encode_rle(np.zeros((height, width), bool)))


FEEDERS: dict[str, Callable[[MaskSink, Path, list[Sample], int], Tally]] = {
    "fineparser": _feed_fineparser,
    "coco": _feed_coco,
    "ytvis": _feed_ytvis,
    "hdf5": _feed_hdf5,
}
"""Import format -> reader that feeds a :class:`MaskSink` and returns the masks it found no frame for."""


def import_masks(
    store: MaskStore,
    samples: list[Sample],
    fmt: str,
    masks: Path,
    *,
    root: Path | None = None,
    strict: bool = False,
    workers: int | None = None,
    author: str = "import",
    progress: bool = False,
    fork_workers: bool = False,
) -> ImportReport:
    """Register ``samples`` if needed and attach the masks found in ``masks`` by frame key, in one transaction.

    Args:
        store: An open mask store.
        samples: The dataset's samples (from :func:`hmtools.datasets.load_dataset`).
        fmt: ``fineparser`` (folder of mask images), ``coco`` or ``ytvis`` (JSON), or ``hdf5`` (hmtools layout).
        masks: The folder or file to read.
        root: Dataset root, to read frame sizes the store does not know yet (header only).
        strict: Also fail on frames without a mask and masks without a frame.
        workers: Decoding workers for image folders (forked processes on Linux, threads elsewhere; ``None`` = all CPUs).
        author: Recorded as the masks' author.
        progress: Show a progress bar (per mask) on a terminal.
        fork_workers: Fork the decoding workers straight from this process (faster) instead of
            from a fork server: only for a process that has run no threads and no OpenCV work
            yet, such as the ``hmtools import`` command (see :func:`ordered_process_map`).

    Raises:
        InputError: unknown format, ``masks`` is missing / of the wrong kind, or the store holds
            samples of another dataset.
        DataFormatError: malformed input, a mask whose size differs from its frame, no mask that
            matches any frame (masks of another dataset?), or (``strict``) any unmatched frame/mask.
    """
    from tqdm import tqdm

    if fmt not in FEEDERS:
        raise InputError(f"unknown import format {fmt!r}; valid formats: {', '.join(FEEDERS)}")
    if not masks.exists():
        raise InputError(f"--masks {masks} does not exist")
    check_same_dataset(store, {s.dataset for s in samples})
    with store.transaction():
        added = store.add_samples(samples, author=author)
        sink = MaskSink(store, samples, root, author)
        with tqdm(total=len(sink.frames), desc=f"import {fmt}", unit="mask", disable=None if progress else True) as bar:
            sink.on_put = bar.update
            n = workers or default_workers()
            if fmt == "fineparser":  # the one format decoded in worker processes
                unmatched = _feed_fineparser(sink, masks, samples, n, fork=fork_workers)
            else:
                unmatched = FEEDERS[fmt](sink, masks, samples, n)
            sink.flush()
        unmatched.count += sink.unmatched.count
        unmatched.examples = (unmatched.examples + sink.unmatched.examples)[:3]
        report = ImportReport(
            len(samples),
            added,
            sink.imported,
            sink.empty,
            sink.frames_without_mask(),
            unmatched,
            sink.missing_frame_files,
            sink.unchanged,
        )
        _check(report, sink, masks, strict)
    return report


def _check(report: ImportReport, sink: MaskSink, masks: Path, strict: bool) -> None:
    if sink.size_mismatch.count:
        raise DataFormatError(
            f"{sink.size_mismatch.count} masks in {masks} differ in size from their frames "
            f"(first: {sink.size_mismatch.examples[0]}); nothing imported. Resize them to the frames"
        )
    if report.imported == 0:
        first_mask = report.masks_without_frame.examples[:1] or ["none"]
        first_frame = next(iter(sink.frames.values())).key if sink.frames else "none"
        raise DataFormatError(
            f"none of the {report.masks_without_frame.count} masks in {masks} matches a frame of the "
            f"{report.samples} samples (first mask: {first_mask[0]}, first frame: {first_frame}); "
            "are the masks for another dataset or --root?"
        )
    if strict and (report.frames_without_mask.count or report.masks_without_frame.count):
        raise DataFormatError(
            f"--strict: {report.frames_without_mask.count} frames without a mask and "
            f"{report.masks_without_frame.count} masks without a frame; nothing imported"
        )
