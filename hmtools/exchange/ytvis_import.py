"""The reading side of ``hmtools import --format ytvis``: a YouTube-VIS 2019/2021 JSON, streamed.

A YouTube-VIS file lists ``videos`` (``id``, ``width``, ``height``, ``length``, ``file_names``)
and ``annotations``, one per object track per video, whose ``segmentations`` hold one entry per
listed frame: compressed RLE (``counts`` a string), uncompressed RLE (``counts`` a list),
polygons, or ``null`` where the object is absent. A frame's stored mask is the union of every
annotation's mask there (all categories); an empty union imports as an empty mask (the frame is
listed, so it was annotated). Where two or more annotations are non-empty on a frame, the frame
also gets per-athlete ``tracks`` ``[{"track", "bbox", "counts"}]``: ``track`` is the annotation's
``track`` (hmtools' own export writes it) or else its 0-based position among its video's
annotations, ``bbox`` its XYXY box, ``counts`` its own compressed RLE.

Memory: the file is read twice, element by element (:func:`hmtools.exchange.jsonio.iter_arrays`),
never whole. Pass 1 keeps the videos (frame keys, size, the optional per-frame ``scores`` and
``statuses`` of an hmtools export) and, per video, the position of its last annotation; pass 2
keeps a video's compressed RLEs only until its last annotation has been read, then hands its
frames on. Files that list annotations grouped by video (YouTube-VIS, OVIS and hmtools exports
all do) so hold one video's annotations at a time; a file that interleaves videos holds the
videos whose annotations are still to come, at worst all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmtools.errors import DataFormatError
from hmtools.exchange.common import read_provenance, segmentation_rle
from hmtools.exchange.jsonio import iter_arrays
from hmtools.masks import RLE


@dataclass
class YtvisVideo:
    """One video of a YouTube-VIS file, as pass 1 reads it.

    Attributes:
        keys: ``file_names``: the frame key of each annotated frame, in order.
        height: Frame height in pixels.
        width: Frame width in pixels.
        scores: Per listed frame, the mask score (hmtools export extra), or ``None``.
        statuses: Per listed frame, the review status (hmtools export extra), or ``None``.
        last: Position in the file of the video's last annotation (``-1``: it has none).
    """

    keys: list[str]
    height: int
    width: int
    scores: list[Any] | None = None
    statuses: list[Any] | None = None
    last: int = -1


@dataclass
class _Open:
    """A video whose annotations are being read: per listed frame, ``(track, RLE with bytes counts)``."""

    parts: list[list[tuple[int, dict[str, Any]]]]
    tracks: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class YtvisFrame:
    """The mask a YouTube-VIS file gives one frame.

    Attributes:
        key: Frame key (``file_names`` entry).
        rle: Union of the annotations' masks, compressed RLE with ``str`` counts.
        provenance: ``score`` and ``status`` where the file carries valid ones.
        tracks: Per-athlete parts where two or more annotations are non-empty, else ``None``.
        empty: No annotation covers a pixel of the frame.
    """

    key: str
    rle: RLE
    provenance: dict[str, Any]
    tracks: list[dict[str, Any]] | None
    empty: bool


def read_ytvis_videos(path: Path) -> dict[int, YtvisVideo]:
    """Pass 1: ``{video id: video}``, with the position of each video's last annotation.

    Raises:
        DataFormatError: a video lacks ``id``/``file_names``/``width``/``height``, its ``length``
            differs from its number of ``file_names``, an id repeats, an annotation lacks
            ``video_id`` or names an unknown video, or the file lists no videos.
    """
    videos: dict[int, YtvisVideo] = {}
    last: dict[Any, int] = {}
    n_annotations = 0
    for name, element in iter_arrays(path, ("videos", "annotations")):
        if name == "annotations":
            if not isinstance(element, dict) or not _is_id(element.get("video_id")):
                raise DataFormatError(f"{path}: an annotation needs an integer video_id; found {element!r:.120}")
            last[element["video_id"]] = n_annotations
            n_annotations += 1
            continue
        video_id, video = _video(path, element)
        if video_id in videos:
            raise DataFormatError(f"{path}: video id {video_id} appears twice; the YouTube-VIS file is corrupt")
        videos[video_id] = video
    if not videos:
        raise DataFormatError(
            f"{path} lists no videos ('videos' is missing or empty), so there is nothing to import; expected a "
            "YouTube-VIS file with videos (an export whose --status or --samples matched no frame is empty)"
        )
    for video_id, position in last.items():
        if video_id not in videos:
            raise DataFormatError(f"{path}: annotation {position + 1} names video {video_id}, not in 'videos'")
        videos[video_id].last = position
    return videos


def iter_ytvis_frames(path: Path, videos: dict[int, YtvisVideo]) -> Iterator[YtvisFrame]:
    """Pass 2: yield the mask of every listed frame, one video at a time, as its annotations complete.

    Args:
        path: The YouTube-VIS JSON file.
        videos: Its videos, from :func:`read_ytvis_videos`.

    Raises:
        DataFormatError: an annotation lacks ``segmentations`` or has not one per listed frame,
            repeats a ``track`` of its video, or a segmentation is malformed, of another size than
            its video, or has counts that do not cover it.
    """
    reading: dict[int, _Open] = {}
    for position, (_, ann) in enumerate(iter_arrays(path, ("annotations",))):
        video_id = ann.get("video_id") if isinstance(ann, dict) else None
        video = videos.get(video_id) if _is_id(video_id) else None
        if video is None or video.last < position:  # the file changed since pass 1
            raise DataFormatError(f"{path} changed while it was being imported; import it again")
        state = reading.setdefault(video_id, _Open([[] for _ in video.keys]))
        _add_annotation(path, ann, video, state)
        if position == video.last:
            del reading[video_id]
            yield from _frames(video, state.parts)
    for video in videos.values():
        if video.last == -1:  # a video without annotations: its listed frames hold no object
            yield from _frames(video, [[] for _ in video.keys])


def _video(path: Path, v: Any) -> tuple[int, YtvisVideo]:
    try:
        video_id, keys = v["id"], v["file_names"]
        height, width = int(v["height"]), int(v["width"])
        ok = _is_id(video_id) and isinstance(keys, list) and all(isinstance(k, str) for k in keys)
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(f"{path}: a video needs id, file_names, width and height; found {v!r:.120}") from e
    if not ok or height <= 0 or width <= 0:
        raise DataFormatError(
            f"{path}: a video needs an integer id, a list of file_names and a positive width and height; "
            f"found {v!r:.120}"
        )
    if v.get("length", len(keys)) != len(keys):
        raise DataFormatError(
            f"{path}: video {video_id} has length {v['length']!r} but {len(keys)} file_names; the file is corrupt"
        )
    scores, statuses = (v.get(k) for k in ("scores", "statuses"))
    return video_id, YtvisVideo(
        keys,
        height,
        width,
        scores if isinstance(scores, list) and len(scores) == len(keys) else None,
        statuses if isinstance(statuses, list) and len(statuses) == len(keys) else None,
    )


def _add_annotation(path: Path, ann: dict[str, Any], video: YtvisVideo, state: _Open) -> None:
    """Add one annotation's non-null segmentations to its video's per-frame parts."""
    index = len(state.tracks)  # its position among the video's annotations
    where = f"{path}: annotation {ann.get('id', '#' + str(index + 1))} of video {ann['video_id']}"
    segs = ann.get("segmentations")
    if not isinstance(segs, list) or len(segs) != len(video.keys):
        found = f"{len(segs)} entries" if isinstance(segs, list) else repr(segs)[:40]
        raise DataFormatError(
            f"{where} needs segmentations with one entry per listed frame ({len(video.keys)}); found {found}"
        )
    track = ann.get("track", index)
    if not _is_id(track):
        raise DataFormatError(f"{where} has track {track!r}; expected an integer")
    if track in state.tracks:
        raise DataFormatError(f"{where} repeats track {track} of its video; each track is one annotation")
    state.tracks.add(track)
    for i, seg in enumerate(segs):
        if seg is None or seg == []:
            continue
        try:
            rle = segmentation_rle(seg, video.height, video.width, f"video {ann['video_id']}")
        except DataFormatError as e:
            raise DataFormatError(f"{where}, frame {video.keys[i]}: {e}") from e
        state.parts[i].append((track, rle))


def _frames(video: YtvisVideo, parts_per_frame: list[list[tuple[int, dict[str, Any]]]]) -> Iterator[YtvisFrame]:
    """The frames of a video whose annotations are all read, from their per-frame parts."""
    import numpy as np
    from pycocotools import mask as coco_mask

    empty: RLE | None = None
    for i, (key, parts) in enumerate(zip(video.keys, parts_per_frame, strict=True)):
        prov = read_provenance(
            None if video.scores is None else video.scores[i],
            None if video.statuses is None else video.statuses[i],
        )
        solid = [(track, rle, coco_mask.toBbox(rle).tolist()) for track, rle in parts if coco_mask.area(rle) > 0]
        if not solid:
            if empty is None:
                empty = _str_counts(coco_mask.encode(np.zeros((video.height, video.width), np.uint8, order="F")))
            yield YtvisFrame(key, empty, prov, None, True)
            continue
        union = solid[0][1] if len(solid) == 1 else coco_mask.merge([rle for _, rle, _ in solid])
        yield YtvisFrame(key, _str_counts(union), prov, _tracks(solid), False)


def _tracks(solid: list[tuple[int, dict[str, Any], list[float]]]) -> list[dict[str, Any]] | None:
    """Per-athlete ``tracks`` of a frame from its non-empty ``(track, RLE, xywh box)`` parts.

    Two or more parts: each with its own ``counts``. One part is the whole union: a lone track
    without ``counts`` (the store's convention), or no tracks for track 0 (an export reads a frame
    without tracks as track 0), so every track keeps its id through a re-export.
    """
    tracks = [
        {"track": track, "bbox": [x, y, x + w, y + h], "counts": rle["counts"].decode("ascii")}
        for track, rle, (x, y, w, h) in solid
    ]
    if len(tracks) == 1:
        tracks[0]["counts"] = None
        return None if tracks[0]["track"] == 0 else tracks
    return tracks


def _str_counts(rle: dict[str, Any]) -> RLE:
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
