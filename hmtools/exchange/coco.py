"""COCO instance-segmentation JSON: export and the reading side of import.

Layout written (top-level keys sorted; one array element per line):

* ``images``: one per exported frame: ``id`` (1-based), ``file_name`` (= frame key),
  ``width``, ``height``, plus ``sample_id`` and ``frame_index`` (0-based).
* ``annotations``: one per frame whose mask is not empty: ``id``, ``image_id``,
  ``category_id`` 1, ``segmentation`` (compressed RLE, ``counts`` a string), ``bbox``
  ``[x, y, w, h]``, ``area``, ``iscrowd`` 0, and the provenance ``source``, ``score``,
  ``status``, ``version``. A frame whose mask is empty (no athlete) is an image without
  annotations, the COCO way of saying "nothing here".
* ``categories``: ``[{"id": 1, "name": "person", "supercategory": "person"}]``.
* ``samples``: per sample ``sample_id``, ``dataset``, ``split``, ``score``, ``difficulty``,
  ``action``, ``action_class``, ``n_frames`` (extra; COCO readers ignore it).
* ``info``, ``licenses``: fixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hmtools.errors import DataFormatError
from hmtools.exchange.common import CATEGORY, SampleMasks, provenance, read_provenance, sample_meta, segmentation_rle
from hmtools.exchange.jsonio import SpooledArray, iter_array, write_object
from hmtools.masks import xyxy_to_xywh


def write_coco(samples: Iterable[SampleMasks], out: Path, info: dict[str, Any]) -> None:
    """Write a COCO JSON file from a stream of samples, holding one sample at a time.

    Args:
        samples: Samples with their selected masks (frames without a mask are left out).
        out: File to write.
        info: The ``info`` object (no timestamps, so output is deterministic).
    """
    images, annotations, metas = (SpooledArray(out.parent) for _ in range(3))
    for sm in samples:
        metas.append(sample_meta(sm.sample, len(sm.frames)))
        for frame, rec in zip(sm.frames, sm.records, strict=True):
            if rec is None:
                continue
            image_id = images.count + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": frame.key,
                    "width": sm.width,
                    "height": sm.height,
                    "sample_id": sm.sample.sample_id,
                    "frame_index": frame.idx,
                }
            )
            if rec.area == 0 or rec.bbox is None:
                continue
            ann = {
                "id": annotations.count + 1,
                "image_id": image_id,
                "category_id": CATEGORY["id"],
                "segmentation": {"size": list(rec.rle["size"]), "counts": rec.rle["counts"]},
                "bbox": xyxy_to_xywh(rec.bbox),
                "area": rec.area,
                "iscrowd": 0,
            }
            annotations.append(ann | provenance(rec))
    with out.open("w", encoding="utf-8") as f:
        write_object(
            f,
            {
                "info": info,
                "licenses": [],
                "categories": [CATEGORY],
                "images": images,
                "annotations": annotations,
                "samples": metas,
            },
        )


def read_coco_images(path: Path) -> dict[int, tuple[str, int, int]]:
    """``{image id: (file_name, height, width)}`` of a COCO file, streamed.

    Raises:
        DataFormatError: an image lacks ``id``/``file_name``/``width``/``height`` or repeats an id.
    """
    images: dict[int, tuple[str, int, int]] = {}
    for img in iter_array(path, "images"):
        try:
            image_id, name = int(img["id"]), img["file_name"]
            size = (int(img["height"]), int(img["width"]))
            if not isinstance(name, str) or not name:
                raise TypeError("file_name must be a non-empty string")
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(
                f"{path}: an image entry needs id, file_name, width and height; found {img!r:.120}"
            ) from e
        if image_id in images:
            raise DataFormatError(f"{path}: image id {image_id} appears twice; the COCO file is corrupt")
        images[image_id] = (name, *size)
    if not images:
        raise DataFormatError(
            f"{path} lists no images ('images' is missing or empty), so there is nothing to import; expected a "
            "COCO instance-segmentation file with images (an export whose --status or --samples matched no frame is empty)"
        )
    return images


def iter_coco_annotations(
    path: Path, images: dict[int, tuple[str, int, int]]
) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """Yield ``(image id, compressed RLE with bytes counts, provenance)`` per annotation, streamed.

    Polygons and uncompressed RLE are converted to compressed RLE. Provenance holds ``score`` and
    ``status`` where the annotation carries valid ones.

    Raises:
        DataFormatError: an annotation names an unknown image, its segmentation is malformed, or
            its RLE size disagrees with its image's size.
    """
    for ann in iter_array(path, "annotations"):
        if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
            raise DataFormatError(f"{path}: an annotation needs image_id and segmentation; found {ann!r:.120}")
        image_id = ann["image_id"]
        if image_id not in images:
            raise DataFormatError(f"{path}: annotation {ann.get('id')} names image {image_id!r}, not in 'images'")
        name, height, width = images[image_id]
        try:
            rle = segmentation_rle(ann["segmentation"], height, width, f"image {name}")
        except DataFormatError as e:
            raise DataFormatError(f"{path}: annotation {ann.get('id')} {e}") from e
        yield image_id, rle, read_provenance(ann.get("score"), ann.get("status"))
