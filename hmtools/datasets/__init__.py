"""Dataset adapters: a dataset root (+ annotation files) in, :class:`~hmtools.schema.Sample` list out.

Each adapter module exposes ``load(root, annotations=None, **options) -> DatasetIndex``. The
name -> loader map is the literal dict :data:`DATASETS`. Adapters read paths and labels, never pixels.
"""

from __future__ import annotations

from hmtools.datasets.index import DATASETS, DatasetIndex, load_dataset

__all__ = ["DATASETS", "DatasetIndex", "load_dataset"]
