"""Propagate a corrected mask to neighbouring frames by re-prompting SAM frame by frame.

The start mask is split into persons (:func:`split_persons`: both divers of a synchronised dive are
two persons, a detached hand stays with its diver) and each person is followed by its own chain, as
build-masks segments each athlete with its own box: from person p's mask on frame t, frame t±1 is
prompted with that mask's box (padded) and one positive point at the deepest interior pixel of each
of its large connected parts, then t±2 from that answer, and so on. The persons' answers are united
per frame. One box around two divers would span the gap between them, and SAM then fills the gap or
drops a diver. The result is a preview: the caller shows it and saves it only when the annotator
says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from annotator_app.backend import Prompt, SegmentBackend
from hmtools.errors import InputError


def prompt_from_mask(mask: np.ndarray, pad: float = 0.08, max_parts: int = 2) -> Prompt:
    """A SAM prompt that re-finds the object of ``mask`` (``(H, W)`` bool, not empty) on a
    neighbouring frame: its XYXY box padded by ``pad`` of its size, clipped to the frame, and one
    positive point per connected part (the ``max_parts`` largest parts over 5 % of the largest)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    px, py = pad * (x2 - x1), pad * (y2 - y1)
    box = np.array([max(0, x1 - px), max(0, y1 - py), min(w, x2 + px), min(h, y2 + py)], np.float32)
    parts, n = ndimage.label(mask)
    sizes = np.bincount(parts.ravel())[1:]
    order = np.argsort(sizes)[::-1][:max_parts]
    points = [deepest_point(parts == p + 1) for p in order if sizes[p] >= 0.05 * sizes[order[0]]]
    return Prompt(
        points=np.asarray(points, np.float32), labels=np.ones(len(points), np.int32), box=box, mask_input=None
    )


def deepest_point(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` pixel of ``mask`` (``(H, W)`` bool, not empty) farthest from its background."""
    y, x = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(mask))), mask.shape)
    return float(x), float(y)


def split_persons(mask: np.ndarray, min_share: float = 0.3) -> list[np.ndarray]:
    """Split ``mask`` (``(H, W)`` bool) into the persons it shows, ordered left to right.

    A connected part (8-connected) of at least ``min_share`` of the largest part's area is a
    person; every smaller part (a detached hand or foot) joins the person nearest to it. Returns
    one ``(H, W)`` bool mask per person, together covering ``mask``; ``[]`` for an empty mask.
    """
    parts, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    sizes = np.bincount(parts.ravel())[1:]
    big = [p + 1 for p in range(n) if sizes[p] >= min_share * sizes.max()]
    if len(big) == 1:
        return [mask.copy()]
    owner = np.zeros(n + 1, np.int64)  # part label -> label of the person it belongs to
    owner[big] = big
    big_pixels = np.isin(parts, big)
    # for every pixel, the nearest pixel of a person, and that person's label
    dist, (iy, ix) = ndimage.distance_transform_edt(~big_pixels, return_indices=True)
    nearest = parts[iy, ix]
    for p in range(1, n + 1):
        if owner[p] == 0:
            sel = parts == p
            owner[p] = nearest[sel][int(np.argmin(dist[sel]))]
    persons = [np.isin(parts, np.flatnonzero(owner == b)) for b in big]
    return [persons[k] for k in left_to_right(persons)]


def _person_prompt(persons: Sequence[np.ndarray], centres: Sequence[tuple[float, float]], i: int) -> Prompt:
    """:func:`prompt_from_mask` of person ``i``, plus a negative point at every other person's
    deepest pixel (``centres``) that lies inside its box (two divers close together: neither chain
    may drift onto the other, as build-masks puts negatives on neighbours)."""
    prompt = prompt_from_mask(persons[i])
    x1, y1, x2, y2 = prompt.box
    negatives = [(x, y) for j, (x, y) in enumerate(centres) if j != i and x1 <= x < x2 and y1 <= y < y2]
    if not negatives:
        return prompt
    points = np.concatenate([prompt.points, np.asarray(negatives, np.float32)])
    labels = np.concatenate([prompt.labels, np.zeros(len(negatives), np.int32)])
    return Prompt(points=points, labels=labels, box=prompt.box, mask_input=None)


def left_to_right(masks: Sequence[np.ndarray]) -> list[int]:
    """Indices of ``masks`` (non-empty ``(H, W)`` bool) by the mean column of their pixels."""
    return sorted(range(len(masks)), key=lambda k: float(np.nonzero(masks[k])[1].mean()))


def persons_of(start_mask: np.ndarray, tracked: Sequence[np.ndarray]) -> tuple[list[int], list[np.ndarray]]:
    """The persons to follow from ``start_mask``: the non-empty masks of ``tracked`` (e.g. the
    frame's per-athlete tracks, which tell two divers apart even where they touch) ordered left to
    right when there are two or more, with their indices in ``tracked``; else :func:`split_persons`
    of ``start_mask`` and no indices."""
    given = [k for k, m in enumerate(tracked) if m.any()]
    if len(given) < 2:
        return [], split_persons(start_mask)
    order = [given[k] for k in left_to_right([tracked[k] for k in given])]
    return order, [tracked[k] for k in order]


def propagate(
    backend: SegmentBackend,
    keys: Sequence[str],
    loaders: Sequence[Callable[[], np.ndarray]],
    start_mask: np.ndarray,
    min_area: int = 16,
    persons: Sequence[np.ndarray] | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, float], str]:
    """Run the chain over ``keys`` (the frames in propagation order) starting from ``start_mask``:
    :func:`propagate_persons` of :func:`persons_of` ``start_mask`` and ``persons``, each frame's
    persons united.

    Returns:
        ``({position in keys: (H, W) bool mask}, {position: SAM score}, note)``.
    """
    _, chosen = persons_of(start_mask, persons or [])
    parts, scores, note = propagate_persons(backend, keys, loaders, chosen, min_area)
    return {pos: np.logical_or.reduce(p) for pos, p in parts.items()}, scores, note


def propagate_persons(
    backend: SegmentBackend,
    keys: Sequence[str],
    loaders: Sequence[Callable[[], np.ndarray]],
    persons: Sequence[np.ndarray],
    min_area: int = 16,
) -> tuple[dict[int, list[np.ndarray]], dict[int, float], str]:
    """Follow each of ``persons`` (non-empty ``(H, W)`` bool masks, counted in this order in the
    note, "from the left") over ``keys`` (the frames in propagation order).

    Each person is prompted on each frame from its own answer on the previous frame, with negative
    points on the other persons inside its box (all the prompts go to the frame's one cached
    embedding); a frame's score is the lowest of its persons' scores.

    Returns:
        ``({position in keys: [each person's (H, W) bool mask]}, {position: SAM score}, note)``;
        the chain stops early (``note`` says where, and which athlete when there are several) when
        a person is lost: its answer under ``min_area`` pixels, or under half that person's start
        area when that is smaller (a small athlete far away), or at a frame whose loader raises
        :class:`InputError` (its file gone or of another size). No persons: nothing, "the mask is empty".
    """
    parts: dict[int, list[np.ndarray]] = {}
    scores: dict[int, float] = {}
    if not persons:
        return parts, scores, "the mask is empty"
    backend.prefetch(list(zip(keys, loaders, strict=True)))
    lost_below = [min(min_area, (int(m.sum()) + 1) // 2) for m in persons]
    current = list(persons)
    for pos, (key, load) in enumerate(zip(keys, loaders, strict=True)):
        centres = [deepest_point(m) for m in current] if len(current) > 1 else []  # each computed once a frame
        try:
            preds = [backend.predict(key, load, _person_prompt(current, centres, i)) for i in range(len(current))]
        except InputError as e:  # a frame file gone or of another size: keep the frames before it
            return parts, scores, f"stopped at {key}: {e}"
        for i, (pred, below) in enumerate(zip(preds, lost_below, strict=True)):
            if int(pred.mask.sum()) < below:
                who = "the athlete" if len(persons) == 1 else f"athlete {i + 1} of {len(persons)} (from the left)"
                return parts, scores, f"stopped at {key}: {who} was lost"
        current = [pred.mask for pred in preds]
        parts[pos] = current
        scores[pos] = min(pred.score for pred in preds)
    return parts, scores, ""
