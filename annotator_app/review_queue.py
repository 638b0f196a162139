"""The review queue: per-sample progress from the store, filters, and "next flagged frame".

Both list samples in natural order (:func:`natural_key`): ``01/2`` before ``01/10``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hmtools.errors import InputError
from hmtools.natural_order import natural_key  # shared with hmtools export; importable from here too
from hmtools.store import MaskStore

QUEUE_FILTERS = ("all", "has flagged", "has unreviewed", "has rejected", "done", "no frames")
"""Status filters of the queue; ``done`` = a sample with frames, every one accepted or rejected;
``no frames`` = samples registered without frames (e.g. AQA-7 videos whose frames were not extracted),
which are never ``done`` (nothing was reviewed) nor ``has unreviewed`` (nothing can be)."""

QUEUE_COLUMNS = ("sample", "locked by", "split", "frames", "acc", "flag", "rej", "todo", "none", "dataset")
"""Queue table headers: lease holder; frames accepted, flagged, rejected, unreviewed, without a mask."""


@dataclass(frozen=True)
class QueueRow:
    """Review progress of one sample (counts of frames by the status of their newest mask)."""

    sample_id: str
    dataset: str
    split: str
    frames: int
    accepted: int
    flagged: int
    rejected: int
    unreviewed: int
    no_mask: int
    locked_by: str

    def as_list(self) -> list[str | int]:
        """The row in :data:`QUEUE_COLUMNS` order."""
        return [
            self.sample_id,
            self.locked_by,
            self.split,
            self.frames,
            self.accepted,
            self.flagged,
            self.rejected,
            self.unreviewed,
            self.no_mask,
            self.dataset,
        ]


def _keep(row: QueueRow, status: str) -> bool:
    """Whether ``row`` passes the status filter ``status`` (one of :data:`QUEUE_FILTERS`)."""
    match status:
        case "has flagged":
            return row.flagged > 0
        case "has unreviewed":
            return row.unreviewed + row.no_mask > 0
        case "has rejected":
            return row.rejected > 0
        case "done":
            return row.frames > 0 and row.accepted + row.rejected == row.frames
        case "no frames":
            return row.frames == 0
        case _:
            return True


FLAGGED_WITH = (
    "FROM masks m JOIN frames f ON f.frame_id=m.frame_id AND f.head_version=m.version "
    "WHERE m.status='flagged' AND instr(casefold(m.reason), ?)>0 "
)
"""SQL: the newest masks that are flagged with a reason containing the (case-folded) parameter, from
the store's index of flagged versions (schema 4), not from every frame's newest mask."""


def queue_rows(
    store: MaskStore, split: str | None = None, status: str | None = "all", reason: str = ""
) -> list[QueueRow]:
    """Samples with their progress, in natural order (:func:`natural_key`), filtered by split (``None`` = any), by one
    of :data:`QUEUE_FILTERS` and, when ``reason`` is not blank, to those with a flagged frame whose
    flag reason contains it (case-insensitive; e.g. ``"small in frame"``). One grouped query over
    the store. ``status`` ``""`` or ``None`` (a cleared filter) means ``all``.

    Raises:
        InputError: ``status`` is not one of :data:`QUEUE_FILTERS`.
    """
    status = status or "all"
    if status not in QUEUE_FILTERS:
        raise InputError(f"unknown queue filter {status!r}; use one of: {', '.join(QUEUE_FILTERS)}")
    sql = (  # review_progress: per-sample counts the store's triggers keep (not a join over every frame)
        "SELECT s.sample_id, s.dataset, s.split, COALESCE(SUM(p.n),0), "
        "COALESCE(SUM(CASE WHEN p.status='accepted' THEN p.n END),0), "
        "COALESCE(SUM(CASE WHEN p.status='flagged' THEN p.n END),0), "
        "COALESCE(SUM(CASE WHEN p.status='rejected' THEN p.n END),0), "
        "COALESCE(SUM(CASE WHEN p.status='unreviewed' THEN p.n END),0), "
        "COALESCE(SUM(CASE WHEN p.status='none' THEN p.n END),0), l.owner "
        "FROM samples s LEFT JOIN review_progress p ON p.sample_id=s.sample_id "
        "LEFT JOIN locks l ON l.sample_id=s.sample_id AND l.expires_at>? "
    )
    params: list[object] = [time.time()]
    where = []
    if split:
        where, params = ["s.split=? "], [*params, split]
    if reason.strip():
        where, params = (
            [*where, f"s.sample_id IN (SELECT f.sample_id {FLAGGED_WITH}) "],
            [*params, reason.strip().casefold()],
        )
    if where:
        sql += "WHERE " + "AND ".join(where)
    rows = store.query(sql + "GROUP BY s.sample_id", params)
    out = [QueueRow(*r[:9], locked_by=r[9] or "") for r in rows]
    return sorted((r for r in out if _keep(r, status)), key=lambda r: natural_key(r.sample_id))


def next_flagged(
    store: MaskStore, after: tuple[str, int] | None, user: str, split: str | None = None, reason: str = ""
) -> tuple[str, int] | None:
    """The first flagged frame after ``(sample_id, frame_idx)`` in the queue's sample order
    (:func:`natural_key`) then frame order, wrapping around, skipping samples another user holds
    and, when ``reason`` is not blank, frames whose flag reason does not contain it
    (case-insensitive); ``None`` when there is none.

    One query lists the samples with such a frame (from ``review_progress``, or the index of
    flagged versions for ``reason``); they are ordered here, then one indexed query per sample tried
    (one, unless the store changes meanwhile) finds its first flagged frame."""
    needle = reason.strip().casefold()
    if needle:  # the samples with a frame flagged with that reason, from the index of flagged versions
        sql, col = (
            "SELECT DISTINCT f.sample_id FROM masks m JOIN frames f ON f.frame_id=m.frame_id AND "
            "f.head_version=m.version ",
            "f.sample_id",
        )
        where = "AND m.status='flagged' AND instr(casefold(m.reason), ?)>0"
    else:  # the samples whose review_progress counts flagged frames
        sql, col = "SELECT p.sample_id FROM review_progress p ", "p.sample_id"
        where = "AND p.status='flagged' AND p.n>0"
    params: list[object] = []
    if split:
        sql, params = sql + f"JOIN samples s ON s.sample_id={col} AND s.split=? ", [split]
    sql += f"LEFT JOIN locks l ON l.sample_id={col} AND l.expires_at>? AND l.owner<>? WHERE l.owner IS NULL {where}"
    params += [time.time(), user, *([needle] if needle else [])]
    keys = [natural_key(r[0]) for r in store.query(sql, params)]
    if after is None:
        tries = sorted(keys)
    else:
        here = natural_key(after[0])
        tries = [here] if here in keys else []  # the frames after after[1] of the current sample first
        tries += sorted(k for k in keys if k > here)
        tries += sorted(k for k in keys if k <= here)  # wrapped around: the current sample's earlier frames too
    first = (
        "SELECT f.idx FROM frames f JOIN masks m ON m.frame_id=f.frame_id AND m.version=f.head_version "
        "WHERE f.sample_id=? AND f.idx>? AND m.status='flagged' "
        + ("AND instr(casefold(m.reason), ?)>0 " if needle else "")
        + "ORDER BY f.idx LIMIT 1"
    )
    for n, (_, sample_id) in enumerate(tries):
        idx = after[1] if after is not None and n == 0 and sample_id == after[0] else -1
        rows = store.query(first, [sample_id, idx, needle] if needle else [sample_id, idx])
        if rows:
            return sample_id, int(rows[0][0])
    return None
