"""``hmtools export``: stream a mask store into COCO, YouTube-VIS, HDF5 or a FineParser folder.

Every export reads one consistent snapshot of the store, one sample at a time (in natural order,
``01/2`` before ``01/10``, unless samples are given), writes under a temporary name, adds its
manifest and is renamed into place when complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmtools.errors import InputError
from hmtools.exchange.common import Counts, SampleMasks, Selection, iter_sample_masks, resolve_selection
from hmtools.exchange.manifest import atomic_output, store_info, write_manifest
from hmtools.exchange.parallel import default_workers
from hmtools.natural_order import natural_sorted
from hmtools.store import MaskStore
from hmtools.store_admin import snapshot


@dataclass(frozen=True)
class ExportOptions:
    """Format options.

    Attributes:
        image_format: ``"jpg"`` or ``"png"`` for the FineParser folder.
        workers: Threads for per-frame image encoding (FineParser); ``None`` = all CPUs.
        overwrite: Replace an existing output.
        progress: Show a progress bar (per sample) on a terminal.
    """

    image_format: str = "jpg"
    workers: int | None = None
    overwrite: bool = False
    progress: bool = False


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_store` wrote."""

    out: Path
    format: str
    counts: Counts


def _coco(samples: Iterable[SampleMasks], out: Path, info: dict[str, Any], opts: ExportOptions) -> None:
    from hmtools.exchange.coco import write_coco

    write_coco(samples, out, info)


def _ytvis(samples: Iterable[SampleMasks], out: Path, info: dict[str, Any], opts: ExportOptions) -> None:
    from hmtools.exchange.ytvis import write_ytvis

    write_ytvis(samples, out, info)


def _hdf5(samples: Iterable[SampleMasks], out: Path, info: dict[str, Any], opts: ExportOptions) -> None:
    from hmtools.exchange.hdf5 import write_hdf5

    write_hdf5(samples, out, info)


def _fineparser(samples: Iterable[SampleMasks], out: Path, info: dict[str, Any], opts: ExportOptions) -> None:
    from hmtools.exchange.fineparser import write_fineparser

    write_fineparser(samples, out, "." + opts.image_format, opts.workers or default_workers())


EXPORTERS: dict[str, Callable[[Iterable[SampleMasks], Path, dict[str, Any], ExportOptions], None]] = {
    "coco": _coco,
    "ytvis": _ytvis,
    "hdf5": _hdf5,
    "fineparser": _fineparser,
}
"""Format name -> writer ``(samples, temporary output, info, options)``."""
FOLDER_FORMATS = ("fineparser",)


def _with_progress(stream: Iterable[SampleMasks], total: int, fmt: str, progress: bool) -> Iterator[SampleMasks]:
    """``stream`` with a tqdm bar (terminals only; samples without a selected mask are not counted)."""
    from tqdm import tqdm

    with tqdm(total=total, desc=f"export {fmt}", unit="sample", disable=None if progress else True) as bar:
        for sm in stream:
            yield sm
            bar.update(1)


def export_store(
    store_path: Path,
    fmt: str,
    out: Path,
    selection: Selection | None = None,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export the newest selected masks of a store.

    Args:
        store_path: An existing mask store.
        fmt: ``coco``, ``ytvis``, ``hdf5`` or ``fineparser``.
        out: Output file (folder for ``fineparser``); its manifest goes beside it (inside for folders).
        selection: Samples and review statuses to export (default: everything). Samples are
            written in the order of ``selection.sample_ids`` when given, else in natural order
            (:func:`hmtools.natural_order.natural_key`: ``01/2`` before ``01/10``), which fixes
            the COCO image ids, YouTube-VIS video ids and HDF5 group order.
        options: Format options (default: :class:`ExportOptions`).

    Raises:
        InputError: unknown format or option, missing store, ``out`` exists without overwrite, or
            ``out`` is the store itself or a folder holding it (an overwrite would delete the store).
        DataFormatError: the store holds a mask whose size disagrees with its frame.
    """
    from hmtools import __version__

    selection = selection or Selection()
    options = options or ExportOptions()
    if fmt not in EXPORTERS:
        raise InputError(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORTERS)}")
    if options.image_format not in ("jpg", "png"):
        raise InputError(f"--image-format must be jpg or png; got {options.image_format!r}")
    _check_out_spares_store(Path(out), Path(store_path))
    folder = fmt in FOLDER_FORMATS
    counts = Counts()
    info = {"description": "hmtools mask export", "format": fmt, "version": __version__}
    with MaskStore(store_path, read_only=True, streaming=True) as store, snapshot(store):
        sample_ids = resolve_selection(store, selection)
        if selection.sample_ids is None:  # the annotator's queue order, not SQL's code point order
            sample_ids = natural_sorted(sample_ids)
        with atomic_output(Path(out), folder=folder, overwrite=options.overwrite) as tmp:
            stream = iter_sample_masks(store, sample_ids, selection.statuses, counts)
            EXPORTERS[fmt](_with_progress(stream, len(sample_ids), fmt, options.progress), tmp, info, options)
            body = {
                "format": fmt,
                "counts": counts.to_json(),
                "store": store_info(store, sample_ids),
                "selection": {
                    "samples": None if selection.sample_ids is None else sample_ids,
                    "statuses": None if selection.statuses is None else list(selection.statuses),
                },
                "options": {"image_format": options.image_format} if folder else {},
            }
            write_manifest(tmp, body, folder=folder)
    return ExportResult(Path(out), fmt, counts)


def _check_out_spares_store(out: Path, store_path: Path) -> None:
    """Refuse an output path that is the store or a folder above it: writing there (and, with
    ``--overwrite``, setting the old output aside and deleting it) would destroy the store."""
    store, target = store_path.resolve(), out.resolve()
    if target == store or target in store.parents:
        raise InputError(
            f"--out {out} {'is the mask store' if target == store else 'holds the mask store ' + str(store_path)}; "
            "an export there would replace it: pass a new file or folder for --out"
        )
