"""Per-athlete ``tracks`` of an edited frame: split a new union mask among the previous version's tracks.

The store keeps one union mask per frame and, optionally, per-athlete ``tracks``
``[{"track": int, "bbox": [x1, y1, x2, y2], "counts": str | None}]`` (see ``docs/data_format.md``).
A human edit replaces the union; :func:`split_tracks` gives the new version tracks consistent with
the old ones, so a YouTube-VIS export keeps one identity per athlete across edited frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hmtools.masks import RLE, decode_rle, encode_rle, mask_to_box


def split_tracks(prev_tracks: list[dict[str, Any]], prev_union: RLE, new_mask: np.ndarray) -> list[dict[str, Any]]:
    """Tracks of a new union mask, split along the tracks of the version it replaces.

    With two or more previous tracks, each pixel of ``new_mask`` that was in track ``k``'s previous
    mask stays in track ``k`` (a pixel two tracks shared stays in both); every other pixel goes to
    the track whose reference is nearest (Euclidean distance transform; ties to the earlier track).
    A track's reference is its previous mask, or, when that is empty, the pixels of its ``bbox``;
    if no track has a reference, the first track takes them all. Each track gets its own full-frame
    ``counts`` (even when empty) and the tight box of its new pixels; a track left empty (its
    athlete erased) keeps its previous ``bbox``, so it stays in the list, is skipped by the exports
    (zero area) and still attracts pixels painted back near it later. The union of the returned
    tracks is ``new_mask``.

    With one previous track the whole new union is that track: it keeps its id, gets ``counts``
    ``None`` (a lone track is the union) and the box of the new pixels (its old box if empty).
    With none, the result is ``[]``.

    Args:
        prev_tracks: The previous version's ``tracks`` (``{"track", "bbox", "counts"}`` dicts;
            ``bbox`` XYXY float pixels, ``counts`` a compressed COCO RLE string of the frame's size
            or ``None``: a lone track is the whole union, one of several the union inside its box).
        prev_union: The previous version's union mask as COCO RLE ``{"size": [H, W], "counts": str}``;
            decoded only for a track of several without ``counts``.
        new_mask: ``(H, W)`` bool, the new union mask.

    Returns:
        New tracks in the order of ``prev_tracks``, other keys of each dict kept; ``bbox`` is
        ``[x1, y1, x2, y2]`` float pixels (whole-pixel bounds), ``counts`` a compressed RLE string.

    Raises:
        ValueError: ``new_mask`` is not 2-D or not the size of ``prev_union``.
    """
    size = tuple(int(v) for v in prev_union["size"])
    if new_mask.ndim != 2 or new_mask.shape != size:
        raise ValueError(f"new mask is {new_mask.shape}, the previous union {size}: the frame's size must not change")
    new = new_mask.astype(bool, copy=False)
    if len(prev_tracks) < 2:
        return [_with(t, new, counts=False) for t in prev_tracks]
    prev = _previous_masks(prev_tracks, prev_union, size)
    parts = [new & p for p in prev]
    free = new & ~np.logical_or.reduce(prev)
    if free.any():
        refs = [p if p.any() else _box_mask(t["bbox"], size) for t, p in zip(prev_tracks, prev, strict=True)]
        owner = _nearest(refs, free)
        for k, part in enumerate(parts):
            part[free] = owner == k
    return [_with(t, part, counts=True) for t, part in zip(prev_tracks, parts, strict=True)]


def add_person(
    prev_tracks: list[dict[str, Any]] | None, prev_union: RLE, person: np.ndarray, same_share: float = 0.5
) -> list[dict[str, Any]]:
    """Tracks of ``prev_union | person`` where ``person`` (``(H, W)`` bool) is what an annotator's
    clicks in add mode segmented.

    When at least ``same_share`` of ``person`` lies on the previous mask (or that mask is empty),
    the clicks refined an athlete already there: the new union is split as :func:`split_tracks`
    does (``[]`` without previous tracks). Otherwise the
    person is a new athlete (a synchronized partner the detector missed): the previous athletes
    keep their masks (a frame without tracks counts as athlete 0, the whole previous mask) and the
    person's new pixels become a track with the next free id. Every track gets its own ``counts``.
    """
    union = decode_rle(dict(prev_union))
    new_mask = union | person
    if not union.any() or (person & union).sum() >= same_share * person.sum():
        return split_tracks(prev_tracks, prev_union, new_mask) if prev_tracks else []
    tracks = prev_tracks or [{"track": 0, "bbox": list(mask_to_box(union) or (0.0, 0.0, 0.0, 0.0)), "counts": None}]
    kept = [_with(t, m, counts=True) for t, m in zip(tracks, track_masks(tracks, prev_union), strict=True)]
    added = {"track": max(int(t["track"]) for t in tracks) + 1, "bbox": [0.0, 0.0, 0.0, 0.0], "counts": None}
    return [*kept, _with(added, person & ~union, counts=True)]


def tracks_from_parts(parts: list[tuple[int, np.ndarray]]) -> list[dict[str, Any]]:
    """Tracks ``{"track", "bbox", "counts"}`` of per-athlete masks ``[(track id, (H, W) bool)]``
    (e.g. each athlete's answer in a propagation), every one with its own ``counts``."""
    return [_with({"track": int(k), "bbox": [0.0, 0.0, 0.0, 0.0]}, m, counts=True) for k, m in parts]


def _with(track: dict[str, Any], mask: np.ndarray, *, counts: bool) -> dict[str, Any]:
    """``track`` with the box of ``mask`` (its old box when empty) and, if ``counts``, its RLE."""
    box = mask_to_box(mask)
    out = dict(track, bbox=list(track["bbox"]) if box is None else list(box), counts=None)
    if counts:
        out["counts"] = encode_rle(mask)["counts"]
    return out


def track_masks(tracks: list[dict[str, Any]], union: RLE) -> list[np.ndarray]:
    """Each track's ``(H, W)`` bool mask, read as the exports read it: its own ``counts``; a lone
    track without is the whole ``union`` (COCO RLE of the frame); one of several without is the
    union inside its ``bbox``. ``[]`` for no tracks."""
    if len(tracks) == 1 and tracks[0].get("counts") is None:
        return [decode_rle(dict(union))]
    return _previous_masks(tracks, union, tuple(int(v) for v in union["size"]))


def _previous_masks(tracks: list[dict[str, Any]], union: RLE, size: tuple[int, ...]) -> list[np.ndarray]:
    """Each track's previous ``(H, W)`` bool mask, read as the exports read it."""
    out: list[np.ndarray] = []
    union_mask: np.ndarray | None = None
    for t in tracks:
        if t.get("counts") is not None:
            out.append(decode_rle({"size": list(size), "counts": t["counts"]}))
            continue
        if union_mask is None:
            union_mask = decode_rle(dict(union))
        out.append(union_mask & _box_mask(t["bbox"], size))
    return out


def _box_mask(bbox: Any, size: tuple[int, ...]) -> np.ndarray:
    """``(H, W)`` bool: the pixels a float XYXY box covers (clipped to the frame; may be empty)."""
    h, w = size
    x1, y1, x2, y2 = (float(v) for v in bbox)
    out = np.zeros((h, w), bool)
    r0, r1 = max(0, int(np.floor(y1))), min(h, int(np.ceil(y2)))
    c0, c1 = max(0, int(np.floor(x1))), min(w, int(np.ceil(x2)))
    out[r0:r1, c0:c1] = True
    return out


def _nearest(refs: list[np.ndarray], free: np.ndarray) -> np.ndarray:
    """For each ``True`` pixel of ``free`` (in ``np.nonzero`` order), the index of the nearest ``refs``
    mask (Euclidean; ties to the lower index; all 0 when every ref is empty)."""
    import cv2

    fy, fx = np.nonzero(free)
    dist = np.full((len(refs), len(fy)), np.inf)
    for k, ref in enumerate(refs):
        if ref.any():  # Euclidean (OpenCV: Felzenszwalb) on the crop holding this reference and every free pixel
            rows = np.flatnonzero((ref | free).any(axis=1))
            cols = np.flatnonzero((ref | free).any(axis=0))
            r0, c0 = rows[0], cols[0]
            outside = (~ref[r0 : rows[-1] + 1, c0 : cols[-1] + 1]).astype(np.uint8)
            d = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[fy - r0, fx - c0]
            dist[k] = np.rint(d.astype(np.float64) ** 2)  # its float32 error (< 1e-4 px at 1080p) must not break ties
    return np.argmin(dist, axis=0)
