"""The review queue: per-sample progress from the store, filters, and "next flagged frame"."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hmtools.errors import InputError
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
    """Samples with their progress, in sample order, filtered by split (``None`` = any), by one
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
    rows = store.query(sql + "GROUP BY s.sample_id ORDER BY s.sample_id", params)
    out = [QueueRow(*r[:9], locked_by=r[9] or "") for r in rows]
    return [r for r in out if _keep(r, status)]


def next_flagged(
    store: MaskStore, after: tuple[str, int] | None, user: str, split: str | None = None, reason: str = ""
) -> tuple[str, int] | None:
    """The first flagged frame after ``(sample_id, frame_idx)`` in sample then frame order,
    wrapping around, skipping samples another user holds and, when ``reason`` is not blank, frames
    whose flag reason does not contain it (case-insensitive); ``None`` when there is none."""
    held = "LEFT JOIN locks l ON l.sample_id=s.sample_id AND l.expires_at>? AND l.owner<>? "
    params: list[object] = [time.time(), user]
    if reason.strip():  # the frames flagged with that reason, from the index of flagged versions, then ordered
        sql = (
            "SELECT f.sample_id, f.idx FROM masks m JOIN frames f ON f.frame_id=m.frame_id AND "
            f"f.head_version=m.version JOIN samples s ON s.sample_id=f.sample_id {held}"
            "WHERE m.status='flagged' AND instr(casefold(m.reason), ?)>0 AND l.owner IS NULL "
        )
        params.append(reason.strip().casefold())
    else:
        # Samples in order, only those whose review_progress has flagged frames, then their frames in order:
        # CROSS JOIN fixes that loop order, so the first hit ends the query without reading the rest.
        sql = (
            "SELECT f.sample_id, f.idx FROM samples s CROSS JOIN review_progress p ON p.sample_id=s.sample_id "
            "AND p.status='flagged' AND p.n>0 CROSS JOIN frames f ON f.sample_id=s.sample_id "
            f"JOIN masks m ON m.frame_id=f.frame_id AND m.version=f.head_version {held}"
            "WHERE m.status='flagged' AND l.owner IS NULL "
        )
    if split:
        sql, params = sql + "AND s.split=? ", [*params, split]
    order = "ORDER BY s.sample_id, f.idx LIMIT 1"
    if after is not None:
        rows = store.query(
            sql + "AND s.sample_id>=? AND (s.sample_id>? OR f.idx>?) " + order, [*params, after[0], after[0], after[1]]
        )
        if rows:
            return rows[0][0], int(rows[0][1])
    rows = store.query(sql + order, params)
    return (rows[0][0], int(rows[0][1])) if rows else None
