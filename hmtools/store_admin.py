"""Store operations beside reading and writing masks: build configurations, the audit trail,
per-sample locks for annotators, statistics, integrity checks and streaming iteration.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmtools.errors import DataFormatError, InputError, LockedError
from hmtools.masks import decode_counts, rle_runs, rle_to_box
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

    Args:
        store: The store.
        sample_id: A registered sample.
        owner: Who takes the lease (a user name).
        ttl_s: Lease length in seconds from now; renewing restarts it.

    Raises:
        LockedError: another owner holds an unexpired lease.
        InputError: unknown sample, or ``ttl_s`` not positive.
    """
    if not ttl_s > 0:
        raise InputError(f"lock ttl_s must be a positive number of seconds; got {ttl_s!r}")
    now = time.time()
    with store.transaction() as c:
        if c.execute("SELECT 1 FROM samples WHERE sample_id=?", (sample_id,)).fetchone() is None:
            raise InputError(f"no sample {sample_id!r} in {store.path}; cannot lock it")
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
    """Counts over the newest mask of every frame, all read from one snapshot of the store.

    A writer at work meanwhile (build-masks, the annotator) is not seen halfway, so the figures
    agree with each other: ``by_source`` and ``by_status`` each sum to ``frames_with_mask``.

    Returns:
        ``{"samples", "frames", "frames_with_mask", "by_source": {source: n}, "by_status": {status: n},
        "flag_reasons": {reason: n}, "samples_built": n}`` (every source and status listed, zeros included).
    """
    head = "FROM frames f JOIN masks m ON m.frame_id=f.frame_id AND m.version=f.head_version"
    with snapshot(store):
        by_source = dict(store.query(f"SELECT m.source, COUNT(*) {head} GROUP BY m.source"))
        by_status = dict(store.query(f"SELECT m.status, COUNT(*) {head} GROUP BY m.status"))
        flagged = store.query(f"SELECT m.reason {head} WHERE m.status='flagged' AND m.reason IS NOT NULL")
        counts = store.query(
            "SELECT (SELECT COUNT(*) FROM samples), (SELECT COUNT(*) FROM frames), "
            "(SELECT COUNT(*) FROM frames WHERE head_version>0), "
            "(SELECT COUNT(*) FROM samples WHERE build_config IS NOT NULL)"
        )[0]
    reasons: dict[str, int] = {}
    for (reason,) in flagged:
        for part in reason.split("; "):
            reasons[part] = reasons.get(part, 0) + 1
    return {
        "samples": counts[0],
        "frames": counts[1],
        "frames_with_mask": counts[2],
        "by_source": dict.fromkeys(SOURCES, 0) | by_source,
        "by_status": dict.fromkeys(STATUSES, 0) | by_status,
        "flag_reasons": dict(sorted(reasons.items())),
        "samples_built": counts[3],
    }


def integrity_check(store: MaskStore, chunk: int = 20000) -> list[str]:
    """Check a store; one human-readable line per problem (empty when sound).

    Checks SQLite's own ``integrity_check`` and ``foreign_key_check``, that every frame's
    ``head_version`` exists and is its newest version, that versions are contiguous, that sample
    frame counts match, that ``review_progress`` agrees with the frames' newest statuses, and that
    every stored version's RLE is well formed, covers exactly its frame's ``height * width`` pixels
    and agrees with its stored area and box, and that its tracks are readable. Masks are read in
    chunks of ``chunk`` rows, so memory stays flat. A file too damaged for the later checks to
    run gets one last line that says so.
    """
    problems: list[str] = []
    try:
        problems += [f"sqlite: {r[0]}" for r in store.query("PRAGMA integrity_check") if r[0] != "ok"]
        with snapshot(store):  # the counts compared below must come from one state of a store in use
            _check_tables(store, problems)
        _check_masks(store, problems, chunk)
    except DataFormatError as e:  # a damaged page: SQLite stops reading (store.query's one line)
        problems.append(f"sqlite: {e.__cause__ or e} (the checks stopped there; restore the store from a backup)")
    return problems


def _check_tables(store: MaskStore, problems: list[str]) -> None:
    """Foreign keys, head versions, contiguous versions, frame counts and ``review_progress``."""
    problems += [
        f"sqlite: row {r[1]} of {r[0]} points at a missing {r[2]}" for r in store.query("PRAGMA foreign_key_check")
    ]
    rows = store.query(  # only the frames with a problem come back: memory stays flat at any size
        "SELECT f.key, f.head_version, COALESCE(MAX(m.version), 0) AS newest, COUNT(m.mask_id) AS n FROM frames f "
        "LEFT JOIN masks m ON m.frame_id=f.frame_id GROUP BY f.frame_id HAVING newest<>f.head_version OR n<>newest"
    )
    for key, head, newest, n in rows:
        if newest != head:
            problems.append(f"frame {key}: head version {head} but newest stored version is {newest}")
        if n != newest:
            problems.append(f"frame {key}: {n} versions stored for versions 1..{newest}")
    for sample_id, n_frames, counted in store.query(
        "SELECT s.sample_id, s.n_frames, COUNT(f.frame_id) FROM samples s "
        "LEFT JOIN frames f ON f.sample_id=s.sample_id GROUP BY s.sample_id"
    ):
        if n_frames != counted:
            problems.append(f"sample {sample_id}: expects {n_frames} frames, {counted} registered")
    counted_by_status = {
        (r[0], r[1]): r[2]
        for r in store.query(
            "SELECT f.sample_id, COALESCE(m.status, 'none'), COUNT(*) FROM frames f LEFT JOIN masks m "
            "ON m.frame_id=f.frame_id AND m.version=f.head_version GROUP BY 1, 2"
        )
    }
    kept = {(r[0], r[1]): r[2] for r in store.query("SELECT sample_id, status, n FROM review_progress WHERE n<>0")}
    for sample_id, status in sorted(counted_by_status.keys() | kept.keys()):
        n, k = counted_by_status.get((sample_id, status), 0), kept.get((sample_id, status), 0)
        if n != k:
            problems.append(f"sample {sample_id}: review_progress counts {k} frames {status}, the frames hold {n}")


def _check_masks(store: MaskStore, problems: list[str], chunk: int) -> None:
    """Every stored version's RLE, area, box and tracks, ``chunk`` rows at a time."""
    last = 0
    while True:
        batch = store.query(
            "SELECT m.mask_id, f.key, m.version, m.height, m.width, f.height, f.width, m.counts, m.area, m.bbox, "
            "m.tracks FROM masks m JOIN frames f ON f.frame_id=m.frame_id WHERE m.mask_id>? ORDER BY m.mask_id LIMIT ?",
            (last, chunk),
        )
        for row in batch:
            problem = _mask_problem(*row[1:])
            if problem:
                problems.append(problem)
        if len(batch) < chunk:
            return
        last = batch[-1][0]


def _mask_problem(
    key: str,
    version: int,
    h: int,
    w: int,
    fh: int | None,
    fw: int | None,
    counts: Any,
    area: int,
    bbox: str | None,
    tracks: str | None,
) -> str | None:
    where = f"frame {key} v{version}"
    if (fh, fw) != (h, w):
        return f"{where}: mask is {h}x{w} but the frame is {fh}x{fw}"
    try:
        runs = rle_runs(counts, h, w)
    except DataFormatError as e:
        return f"{where}: {e}"
    if int(runs[1::2].sum()) != area:
        return f"{where}: stored area {area} but the RLE has {int(runs[1::2].sum())} foreground pixels"
    box = rle_to_box({"size": [h, w], "counts": counts})
    try:
        stored = None if bbox is None else tuple(json.loads(bbox))
    except (TypeError, ValueError):
        stored = bbox  # not JSON, or not a list: never equal to a box
    if stored != box:
        return f"{where}: stored box {bbox} but the RLE's box is {box}"
    return None if tracks is None else _tracks_problem(where, tracks, h, w)


def _tracks_problem(where: str, tracks: str, h: int, w: int) -> str | None:
    """What is wrong with a version's ``tracks`` JSON (see docs/data_format.md), or ``None``."""
    try:
        parts = json.loads(tracks)
    except ValueError:
        parts = None
    if not isinstance(parts, list) or not all(isinstance(t, dict) for t in parts):
        return f"{where}: stored tracks {tracks[:60]!r} are not a JSON list of {{track, bbox, counts}} objects"
    for t in parts:
        box = t.get("bbox")
        if not isinstance(t.get("track"), int) or not (
            isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
        ):
            return f"{where}: track {str(t)[:60]} needs an integer track id and a bbox [x1, y1, x2, y2]"
        if t.get("counts") is not None:
            try:
                rle_runs(t["counts"], h, w)
            except DataFormatError as e:
                return f"{where}: track {t['track']}: {e}"
    return None


def read_sample_masks(
    store: MaskStore, sample_id: str, statuses: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The newest mask of every frame of a sample as one array, read with a single query.

    Args:
        store: The store.
        sample_id: A registered sample whose frames all have the same size.
        statuses: When given, masks whose review status is not listed count as absent.

    Returns:
        ``(masks, present)``: ``(T, H, W)`` bool masks in frame order (all False where absent;
        ``(T, 0, 0)`` while no frame size is known) and ``(T,)`` bool, True where the frame has a
        (kept) mask.

    Raises:
        InputError: unknown sample, or frames of different sizes.
        DataFormatError: a stored RLE is corrupt.
    """
    rows = store.query(
        "SELECT f.height, f.width, m.height, m.width, CAST(m.counts AS BLOB), m.status FROM frames f LEFT JOIN masks m "
        "ON m.frame_id=f.frame_id AND m.version=f.head_version WHERE f.sample_id=? ORDER BY f.idx",
        (sample_id,),
    )
    if not rows:
        store.get_sample(sample_id)  # raises InputError for an unknown sample
        return np.zeros((0, 0, 0), dtype=bool), np.zeros(0, dtype=bool)
    sizes = {(r[0], r[1]) for r in rows if r[0] is not None}
    if len(sizes) > 1:
        raise InputError(
            f"frames of sample {sample_id} have sizes {sorted(sizes)}; read them one by one with current_masks"
        )
    height, width = next(iter(sizes)) if sizes else (0, 0)  # no size known: no frame has a mask
    present = np.array([r[4] is not None and (statuses is None or r[5] in statuses) for r in rows], dtype=bool)
    kept = [rows[t] for t in np.flatnonzero(present)]
    if any((r[2], r[3]) != (height, width) for r in kept):
        raise DataFormatError(f"sample {sample_id}: a stored mask is not {height}x{width} like its frame")
    counts = [r[4] for r in kept]
    if present.all():
        masks = decode_counts(counts, height, width)
    else:
        masks = np.zeros((len(rows), height, width), dtype=bool)
        masks[present] = decode_counts(counts, height, width)
    return masks, present


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
        except BaseException:
            with suppress(sqlite3.Error):  # a damaged file may refuse even this: keep the first error
                store._conn.execute("ROLLBACK")
            raise
        store._conn.execute("COMMIT")


def check_same_dataset(store: MaskStore, datasets: set[str]) -> None:
    """Refuse to add samples of ``datasets`` to a store that holds samples of another dataset.

    A store's frame keys are relative to one dataset root, so one store holds one dataset.

    Raises:
        InputError: the store holds samples of a dataset not in ``datasets`` (both named).
    """
    held = sorted({r[0] for r in store.query("SELECT DISTINCT dataset FROM samples")} - datasets)
    if held:
        raise InputError(
            f"store {store.path} holds {', '.join(held)} samples, not {', '.join(sorted(datasets))}; "
            "use a new --store (one dataset per store: frame keys are relative to one root)"
        )
