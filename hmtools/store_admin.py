"""Store operations beside reading and writing masks: build configurations, the audit trail,
per-sample locks for annotators, statistics, integrity checks and streaming iteration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hmtools.errors import LockedError
from hmtools.masks import rle_length
from hmtools.schema import SOURCES, STATUSES
from hmtools.store import MaskStore
from hmtools.store_types import MASK_COLUMNS, FrameRow, MaskRecord, row_to_record


def put_config(store: MaskStore, config_hash: str, body: dict[str, Any]) -> None:
    """Save a build-masks configuration under its hash (idempotent)."""
    with store.transaction() as c:
        c.execute(
            "INSERT OR IGNORE INTO configs VALUES (?,?,?)",
            (config_hash, json.dumps(body, sort_keys=True), time.time()),
        )


def get_config(store: MaskStore, config_hash: str) -> dict[str, Any] | None:
    """A saved build-masks configuration, or ``None``."""
    rows = store.query("SELECT body FROM configs WHERE hash=?", (config_hash,))
    return json.loads(rows[0][0]) if rows else None


def audit_log(store: MaskStore, sample_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Newest-first audit entries ``{"at", "author", "action", "sample_id", "detail"}``."""
    sql = "SELECT at, author, action, sample_id, detail FROM audit"
    params: list[Any] = []
    if sample_id is not None:
        sql, params = sql + " WHERE sample_id=?", [sample_id]
    rows = store.query(sql + " ORDER BY audit_id DESC LIMIT ?", [*params, limit])
    keys = ("at", "author", "action", "sample_id", "detail")
    return [dict(zip(keys, (*r[:4], json.loads(r[4] or "null")), strict=True)) for r in rows]


# -- locks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lock:
    """A lease on a sample: ``owner`` may edit it until ``expires_at`` (unix seconds)."""

    sample_id: str
    owner: str
    expires_at: float


def acquire_lock(store: MaskStore, sample_id: str, owner: str, ttl_s: float = 600.0) -> Lock:
    """Take (or renew) the lease on a sample for ``owner``.

    Raises:
        LockedError: another owner holds an unexpired lease.
    """
    now = time.time()
    with store.transaction() as c:
        row = c.execute("SELECT owner, expires_at FROM locks WHERE sample_id=?", (sample_id,)).fetchone()
        if row is not None and row[0] != owner and row[1] > now:
            raise LockedError(
                f"sample {sample_id} is being edited by {row[0]} for another {row[1] - now:.0f} s; "
                "pick another sample or wait"
            )
        c.execute("INSERT OR REPLACE INTO locks VALUES (?,?,?)", (sample_id, owner, now + ttl_s))
        store._audit(c, owner, "lock", sample_id, {"ttl_s": ttl_s})
    return Lock(sample_id, owner, now + ttl_s)


def release_lock(store: MaskStore, sample_id: str, owner: str) -> bool:
    """Release ``owner``'s lease on a sample; returns whether one was released."""
    with store.transaction() as c:
        cur = c.execute("DELETE FROM locks WHERE sample_id=? AND owner=?", (sample_id, owner))
        if cur.rowcount:
            store._audit(c, owner, "unlock", sample_id, {})
        return cur.rowcount > 0


def lock_holder(store: MaskStore, sample_id: str) -> Lock | None:
    """The unexpired lease on a sample, or ``None``."""
    rows = store.query("SELECT owner, expires_at FROM locks WHERE sample_id=?", (sample_id,))
    if not rows or rows[0][1] <= time.time():
        return None
    return Lock(sample_id, rows[0][0], rows[0][1])


# -- reports -----------------------------------------------------------------------------
def store_stats(store: MaskStore) -> dict[str, Any]:
    """Counts over the newest mask of every frame.

    Returns:
        ``{"samples", "frames", "frames_with_mask", "by_source": {source: n}, "by_status": {status: n},
        "flag_reasons": {reason: n}, "samples_built": n}`` (every source and status listed, zeros included).
    """
    head = "FROM frames f JOIN masks m ON m.frame_id=f.frame_id AND m.version=f.head_version"
    by_source = dict.fromkeys(SOURCES, 0) | dict(store.query(f"SELECT m.source, COUNT(*) {head} GROUP BY m.source"))
    by_status = dict.fromkeys(STATUSES, 0) | dict(store.query(f"SELECT m.status, COUNT(*) {head} GROUP BY m.status"))
    reasons: dict[str, int] = {}
    for (reason,) in store.query(f"SELECT m.reason {head} WHERE m.status='flagged' AND m.reason IS NOT NULL"):
        for part in reason.split("; "):
            reasons[part] = reasons.get(part, 0) + 1
    return {
        "samples": store.query("SELECT COUNT(*) FROM samples")[0][0],
        "frames": store.query("SELECT COUNT(*) FROM frames")[0][0],
        "frames_with_mask": store.query("SELECT COUNT(*) FROM frames WHERE head_version>0")[0][0],
        "by_source": by_source,
        "by_status": by_status,
        "flag_reasons": dict(sorted(reasons.items())),
        "samples_built": store.query("SELECT COUNT(*) FROM samples WHERE build_config IS NOT NULL")[0][0],
    }


def integrity_check(store: MaskStore) -> list[str]:
    """Check a store; one human-readable line per problem (empty when sound).

    Checks SQLite's own ``integrity_check``, that every frame's ``head_version`` exists and is its
    newest version, that versions are contiguous, that sample frame counts match, and that every
    RLE covers exactly ``height * width`` pixels of its frame.
    """
    problems = [f"sqlite: {r[0]}" for r in store.query("PRAGMA integrity_check") if r[0] != "ok"]
    rows = store.query(
        "SELECT f.key, f.head_version, MAX(m.version), COUNT(m.mask_id) FROM frames f "
        "LEFT JOIN masks m ON m.frame_id=f.frame_id GROUP BY f.frame_id"
    )
    for key, head, newest, n in rows:
        if (newest or 0) != head:
            problems.append(f"frame {key}: head version {head} but newest stored version is {newest or 0}")
        if n != (newest or 0):
            problems.append(f"frame {key}: {n} versions stored for versions 1..{newest or 0}")
    for sample_id, n_frames, counted in store.query(
        "SELECT s.sample_id, s.n_frames, COUNT(f.frame_id) FROM samples s "
        "LEFT JOIN frames f ON f.sample_id=s.sample_id GROUP BY s.sample_id"
    ):
        if n_frames != counted:
            problems.append(f"sample {sample_id}: expects {n_frames} frames, {counted} registered")
    for key, version, h, w, fh, fw, counts in store.query(
        "SELECT f.key, m.version, m.height, m.width, f.height, f.width, m.counts FROM masks m "
        "JOIN frames f ON f.frame_id=m.frame_id"
    ):
        if (fh, fw) != (h, w):
            problems.append(f"frame {key} v{version}: mask is {h}x{w} but the frame is {fh}x{fw}")
        elif rle_length(counts.encode("ascii")) != h * w:
            problems.append(f"frame {key} v{version}: RLE does not cover {h}x{w} pixels")
    return problems


def iter_current(
    store: MaskStore,
    sample_ids: list[str] | None = None,
    statuses: tuple[str, ...] | None = None,
) -> Iterator[tuple[str, FrameRow, MaskRecord | None]]:
    """Stream ``(sample_id, frame, newest mask or None)`` in sample then frame order.

    Reads one sample at a time, so memory stays flat in the number of frames. With ``statuses``,
    masks whose status is not listed are yielded as ``None``.
    """
    for sample_id in store.sample_ids() if sample_ids is None else sample_ids:
        frame_rows = store.frames(sample_id)
        rows = store.query(
            f"SELECT f.frame_id, {MASK_COLUMNS} FROM frames f JOIN masks m ON m.frame_id=f.frame_id "
            "AND m.version=f.head_version WHERE f.sample_id=?",
            (sample_id,),
        )
        by_frame = {r[0]: row_to_record(r[1:]) for r in rows}
        for frame in frame_rows:
            rec = by_frame.get(frame.frame_id)
            if rec is not None and statuses is not None and rec.status not in statuses:
                rec = None
            yield sample_id, frame, rec


@contextmanager
def snapshot(store: MaskStore) -> Iterator[None]:
    """A read transaction: every query inside sees the store as it was at the first read.

    Writers in other processes go on (WAL mode) and are not seen until the snapshot ends; other
    threads using the same :class:`MaskStore` wait. Inside a transaction it does nothing.
    """
    with store._lock:
        if store._conn.in_transaction:
            yield
            return
        store._conn.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            store._conn.execute("COMMIT")
