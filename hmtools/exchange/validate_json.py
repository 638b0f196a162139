"""Checks of COCO and YouTube-VIS exports, streamed (the file is never loaded whole)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from hmtools.errors import DataFormatError
from hmtools.exchange.jsonio import iter_array, top_level_keys
from hmtools.masks import rle_area, rle_area_box, rle_length, xyxy_to_xywh

SizeOf = Callable[[Path], "tuple[int, int] | None"]
"""Reads ``(H, W)`` of an image file, ``None`` if unreadable."""

_IMAGE_FIELDS = ("id", "file_name", "width", "height")
_ANN_FIELDS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")
_VIDEO_FIELDS = ("id", "width", "height", "length", "file_names")
_TRACK_FIELDS = ("id", "video_id", "category_id", "iscrowd", "segmentations", "bboxes", "areas")


def rle_problem(rle: Any, height: int, width: int) -> str | None:
    """Why ``rle`` is not a compressed RLE of an ``height x width`` frame, or ``None`` if it is."""
    if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str) or "size" not in rle:
        return "segmentation is not a compressed RLE {'size', 'counts': str}"
    if list(rle["size"]) != [height, width]:
        return f"RLE size {rle['size']} but the frame is [{height}, {width}]"
    try:
        covered = rle_length(rle["counts"].encode("ascii"))
    except UnicodeEncodeError:
        return "RLE counts are not ASCII"
    if covered != height * width:
        return f"RLE counts cover {covered} pixels, the frame has {height * width}"
    return None


def _box_problem(rle: dict[str, Any], area: Any, bbox: Any) -> str | None:
    """Why ``area`` / ``bbox`` (COCO ``[x, y, w, h]``) disagree with a sound RLE, or ``None``."""
    true_area, box = rle_area_box(rle)
    if area != true_area:
        return f"area {area} but the RLE has {true_area}"
    want = [0.0, 0.0, 0.0, 0.0] if box is None else xyxy_to_xywh(box)
    if not isinstance(bbox, list) or len(bbox) != 4:
        return f"bbox {bbox} is not [x, y, w, h]"
    if any(abs(float(a) - b) > 0.5 for a, b in zip(bbox, want, strict=True)):
        return f"bbox {bbox} but the RLE's [x, y, w, h] box is {want}"
    return None


def _missing(entry: Any, fields: tuple[str, ...]) -> list[str]:
    if not isinstance(entry, dict):
        return list(fields)
    return [f for f in fields if f not in entry]


def _top_level(path: Path, required: tuple[str, ...], problems: list[str]) -> set[Any]:
    """Report missing top-level keys of a JSON export; returns the ids of its categories."""
    keys = top_level_keys(path)
    problems += [f"{path}: top-level {key!r} missing" for key in required if key not in keys]
    return {c.get("id") for c in iter_array(path, "categories") if isinstance(c, dict)}


def _annotation_refs(
    path: Path,
    ann: Any,
    fields: tuple[str, ...],
    parent: tuple[str, str, Container[Any]],
    categories: Container[Any],
    problems: list[str],
) -> str | None:
    """Shared checks of a COCO annotation / YouTube-VIS track: its fields, the image or video it
    names (``parent`` = (id field, top-level key, known ids)) and its category. Appends to
    ``problems``; returns the message prefix for further checks, or ``None`` when it is unusable."""
    if miss := _missing(ann, fields):
        problems.append(f"{path}: annotation {ann!r:.60} lacks {', '.join(miss)}")
        return None
    where = f"{path}: annotation {ann['id']}"
    id_field, top_key, known = parent
    if ann[id_field] not in known:
        problems.append(f"{where} names {top_key[:-1]} {ann[id_field]}, not in {top_key!r}")
        return None
    if ann["category_id"] not in categories:
        problems.append(f"{where} has category {ann['category_id']}, not in 'categories'")
    return where


def validate_coco(path: Path, root: Path | None, size_of: SizeOf) -> list[str]:
    """Problems of a COCO export (see :func:`hmtools.exchange.validate_export.validate_export`)."""
    problems: list[str] = []
    try:
        categories = _top_level(path, ("images", "annotations", "categories"), problems)
        images: dict[int, tuple[int, int]] = {}
        names: set[str] = set()
        per_sample: Counter[str] = Counter()
        for img in iter_array(path, "images"):
            if miss := _missing(img, _IMAGE_FIELDS):
                problems.append(f"{path}: image {img!r:.60} lacks {', '.join(miss)}")
                continue
            if img["id"] in images:
                problems.append(f"{path}: image id {img['id']} appears twice")
            if img["file_name"] in names:
                problems.append(f"{path}: frame {img['file_name']} is listed by two images (one image per frame)")
            names.add(img["file_name"])
            images[img["id"]] = (int(img["height"]), int(img["width"]))
            per_sample[str(img.get("sample_id"))] += 1
            if root is not None:
                problems += _frame_check(root, img["file_name"], images[img["id"]], size_of)
        n_per_image: Counter[int] = Counter()
        ann_ids: set[Any] = set()
        for ann in iter_array(path, "annotations"):
            where = _annotation_refs(path, ann, _ANN_FIELDS, ("image_id", "images", images), categories, problems)
            if where is None:
                continue
            if ann["id"] in ann_ids:
                problems.append(f"{where}: annotation id {ann['id']} appears twice")
            ann_ids.add(ann["id"])
            n_per_image[ann["image_id"]] += 1
            if why := rle_problem(ann["segmentation"], *images[ann["image_id"]]) or _box_problem(
                ann["segmentation"], ann["area"], ann["bbox"]
            ):
                problems.append(f"{where}: {why}")
        for image_id, n in sorted(n_per_image.items()):
            if n > 1:
                problems.append(f"{path}: image {image_id} has {n} masks, expected one per frame")
        problems += _sample_coverage(path, per_sample)
    except DataFormatError as e:
        problems.append(str(e))
    except (TypeError, ValueError, AttributeError) as e:
        problems.append(f"{path}: malformed entry ({e}); the file was hand-edited or is corrupt")
    return problems


def validate_ytvis(path: Path, root: Path | None, size_of: SizeOf) -> list[str]:
    """Problems of a YouTube-VIS export."""
    problems: list[str] = []
    try:
        categories = _top_level(path, ("videos", "annotations", "categories"), problems)
        videos: dict[int, tuple[int, int, int]] = {}
        per_sample: Counter[str] = Counter()
        for v in iter_array(path, "videos"):
            if miss := _missing(v, _VIDEO_FIELDS):
                problems.append(f"{path}: video {v!r:.60} lacks {', '.join(miss)}")
                continue
            if v["id"] in videos:
                problems.append(f"{path}: video id {v['id']} appears twice")
            if len(v["file_names"]) != v["length"]:
                problems.append(
                    f"{path}: video {v['id']} has length {v['length']} but {len(v['file_names'])} file_names"
                )
            if len(set(v["file_names"])) != len(v["file_names"]):
                problems.append(f"{path}: video {v['id']} lists a frame twice")
            videos[v["id"]] = (int(v["length"]), int(v["height"]), int(v["width"]))
            per_sample[str(v.get("sample_id"))] += len(v["file_names"])
            if root is not None:
                for name in v["file_names"]:
                    problems += _frame_check(root, name, (int(v["height"]), int(v["width"])), size_of)
        for ann in iter_array(path, "annotations"):
            where = _annotation_refs(path, ann, _TRACK_FIELDS, ("video_id", "videos", videos), categories, problems)
            if where is None:
                continue
            length, height, width = videos[ann["video_id"]]
            for field in ("segmentations", "bboxes", "areas"):
                if len(ann[field]) != length:
                    problems.append(f"{where}: {len(ann[field])} {field} for a video of length {length}")
            # lists of another length were reported above; check the frames they share
            for i, (seg, box, area) in enumerate(zip(ann["segmentations"], ann["bboxes"], ann["areas"], strict=False)):
                if seg is None:
                    why = None if box is None and area is None else "null segmentation but a bbox or area"
                elif not (why := rle_problem(seg, height, width)):
                    empty = rle_area(seg) == 0
                    why = "empty RLE; write null where the athlete is absent" if empty else _box_problem(seg, area, box)
                if why:
                    problems.append(f"{where} frame {i}: {why}")
        problems += _sample_coverage(path, per_sample)
    except DataFormatError as e:
        problems.append(str(e))
    except (TypeError, ValueError, AttributeError) as e:
        problems.append(f"{path}: malformed entry ({e}); the file was hand-edited or is corrupt")
    return problems


def _sample_coverage(path: Path, per_sample: Counter[str]) -> list[str]:
    """Compare the frames listed per sample with the samples' frame counts (``samples`` array)."""
    problems = []
    for meta in iter_array(path, "samples"):
        if not isinstance(meta, dict) or "sample_id" not in meta or "n_frames" not in meta:
            problems.append(f"{path}: a 'samples' entry lacks sample_id or n_frames")
            continue
        listed = per_sample.get(str(meta["sample_id"]), 0)
        if listed != meta["n_frames"]:
            problems.append(f"{path}: sample {meta['sample_id']}: {listed} of {meta['n_frames']} frames have a mask")
    return problems


def _frame_check(root: Path, key: str, size: tuple[int, int], size_of: SizeOf) -> list[str]:
    frame_size = size_of(root / key)
    if frame_size is None:
        return [f"{root / key}: frame listed in the export is missing or unreadable under --root"]
    if frame_size != size:
        return [f"{key}: export says {size[0]}x{size[1]}, the frame is {frame_size[0]}x{frame_size[1]}"]
    return []
