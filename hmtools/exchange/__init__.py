"""Moving masks between the store and other tools: export, import, and export validation.

* :func:`export_store` writes COCO, YouTube-VIS, HDF5 or a FineParser mask folder (formats in
  ``docs/formats.md``), streaming one sample at a time, atomically, with a manifest.
* :func:`import_masks` attaches FineParser folders, COCO or YouTube-VIS files or HDF5 exports to
  a dataset's samples in one store transaction.
* :func:`validate_export` lists the problems of an export.
"""

from __future__ import annotations

from hmtools.exchange.common import Counts, Selection
from hmtools.exchange.export import EXPORTERS, ExportOptions, ExportResult, export_store
from hmtools.exchange.importer import FEEDERS, ImportReport, import_masks
from hmtools.exchange.validate_export import detect_format, validate_export

__all__ = [
    "EXPORTERS",
    "FEEDERS",
    "Counts",
    "ExportOptions",
    "ExportResult",
    "ImportReport",
    "Selection",
    "detect_format",
    "export_store",
    "import_masks",
    "validate_export",
]
