"""YouTube-VIS (2019/2021) video instance segmentation JSON export.

Layout written (top-level keys sorted):

* ``videos``: one per sample: ``id`` (1-based), ``width``, ``height``, ``length``,
  ``file_names`` (frame keys of the frames that have a selected mask, in order), plus extras
  ``sample_id``, ``frame_indices`` (0-based position of each listed frame in the sample),
  ``n_frames`` (frames in the sample) and per listed frame ``sources``, ``scores``,
  ``statuses``, ``versions`` (provenance of the frame's mask).
* ``annotations``: one per athlete track per video: ``id``, ``video_id``, ``category_id`` 1,
  ``iscrowd`` 0, ``height``, ``width``, ``track``, and ``segmentations`` / ``bboxes``
  ``[x, y, w, h]`` / ``areas``, each a list of ``length`` entries aligned with ``file_names``,
  ``null`` where the athlete is absent.
* ``categories``: ``[{"id": 1, "name": "person", "supercategory": "person"}]``; ``info``,
  ``licenses`` fixed; ``samples``: per-sample metadata as in the COCO export.

Tracks: the store keeps a per-frame union mask of the judged athletes and, optionally,
per-athlete ``tracks`` ``[{"track", "bbox", "counts"}]``. A track with ``counts`` is exported
with its own RLE; a lone track without is the whole union (the box is only the detector's prompt);
one of several without is the part of the union inside its box. A frame without tracks
counts as track 0 = the union mask, so a store without tracks gives one track per video.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hmtools.exchange.common import CATEGORY, SampleMasks, sample_meta, track_rles
from hmtools.exchange.jsonio import SpooledArray, write_object
from hmtools.masks import rle_area, rle_to_box, xyxy_to_xywh


def write_ytvis(samples: Iterable[SampleMasks], out: Path, info: dict[str, Any]) -> None:
    """Write a YouTube-VIS JSON file from a stream of samples, holding one sample at a time."""
    videos, annotations, metas = (SpooledArray(out.parent) for _ in range(3))
    for sm in samples:
        metas.append(sample_meta(sm.sample, len(sm.frames)))
        listed = [(f, r) for f, r in zip(sm.frames, sm.records, strict=True) if r is not None]
        video_id = videos.count + 1
        videos.append(
            {
                "id": video_id,
                "width": sm.width,
                "height": sm.height,
                "length": len(listed),
                "file_names": [f.key for f, _ in listed],
                "sample_id": sm.sample.sample_id,
                "frame_indices": [f.idx for f, _ in listed],
                "n_frames": len(sm.frames),
                "sources": [r.source for _, r in listed],
                "scores": [r.score for _, r in listed],
                "statuses": [r.status for _, r in listed],
                "versions": [r.version for _, r in listed],
            }
        )
        per_frame = [track_rles(r) for _, r in listed]
        for track in sorted({t for parts in per_frame for t in parts}):
            segs: list[Any] = []
            boxes: list[Any] = []
            areas: list[Any] = []
            for parts in per_frame:
                rle = parts.get(track)
                box = None if rle is None else rle_to_box(rle)
                segs.append(None if rle is None else rle)
                boxes.append(None if box is None else xyxy_to_xywh(box))
                areas.append(None if rle is None else float(rle_area(rle)))
            annotations.append(
                {
                    "id": annotations.count + 1,
                    "video_id": video_id,
                    "category_id": CATEGORY["id"],
                    "iscrowd": 0,
                    "height": sm.height,
                    "width": sm.width,
                    "track": track,
                    "segmentations": segs,
                    "bboxes": boxes,
                    "areas": areas,
                }
            )
    with out.open("w", encoding="utf-8") as f:
        write_object(
            f,
            {
                "info": info,
                "licenses": [],
                "categories": [CATEGORY],
                "videos": videos,
                "annotations": annotations,
                "samples": metas,
            },
        )
