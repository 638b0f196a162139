"""The mask store: one SQLite file (WAL mode) that build-masks writes, the annotator edits and
export reads.

Every change to a frame's mask (a new mask, or a new review status) appends a *version*; the
frame's ``head_version`` points at the newest. Writes that name the version they were based on
are compare-and-set: if someone else wrote in between, :class:`StaleVersionError` is raised and
nothing is written. History is never deleted. Each public write is one transaction.

Typical use::

    with MaskStore("masks.db") as store:
        store.add_samples(samples)
        store.write_sample_masks("diving/001", [MaskWrite(mask=m, source="auto", score=0.9)], author="build")
        rec = store.current_mask("diving-out/001/img_00001.jpg")
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hmtools.errors import DataFormatError, InputError, StaleVersionError
from hmtools.masks import RLE, encode_rle, rle_area, rle_to_box
from hmtools.schema import SOURCES, STATUSES, Sample
from hmtools.store_schema import migrate
from hmtools.store_types import MASK_COLUMNS, FrameRow, MaskRecord, MaskWrite, row_to_record


def _check_vocab(source: str, status: str) -> None:
    if source not in SOURCES:
        raise InputError(f"mask source must be one of {', '.join(SOURCES)}; got {source!r}")
    if status not in STATUSES:
        raise InputError(f"review status must be one of {', '.join(STATUSES)}; got {status!r}")


class MaskStore:
    """A connection to one store file; safe to share between threads of one process.

    Several processes may open the same file: SQLite's WAL mode lets readers run beside one
    writer, and writers wait for each other (``busy_timeout``) instead of failing.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, busy_timeout_s: float = 60.0):
        """Open (and with ``create``, create or migrate) the store at ``path``.

        Raises:
            InputError: ``create`` is false and the file does not exist, or the file is not a store.
        """
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InputError(f"no mask store at {self.path}; pass --store FILE of an existing store")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            migrate(self._conn, self.path)
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise DataFormatError(f"{self.path} is not an hmtools mask store (SQLite said: {e})") from e

    # -- connection plumbing -------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (the file stays consistent whenever this is skipped)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all of it is applied, or none of it.

        Inside another ``transaction()`` of the same store it is a savepoint, so callers can group
        several public writes (e.g. a whole import) into one transaction.
        """
        with self._lock:
            nested = self._conn.in_transaction
            self._conn.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK TO nested" if nested else "ROLLBACK")
                if nested:
                    self._conn.execute("RELEASE nested")
                raise
            self._conn.execute("RELEASE nested" if nested else "COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only SQL query and return all rows (for hmtools' own report modules)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- samples and frames --------------------------------------------------------------
    def add_samples(self, samples: Iterable[Sample], author: str = "hmtools") -> int:
        """Register samples and their frames; already registered samples are updated in place.

        A registered sample's frame list may only change while none of its frames has a mask.

        Returns:
            Number of samples newly added.

        Raises:
            InputError: a frame key already belongs to another sample, or a sample with masks
                would change its frame list.
        """
        added = 0
        with self.transaction() as c:
            for s in samples:
                info = json.dumps(s.to_json(), sort_keys=True)
                old = c.execute("SELECT n_frames FROM samples WHERE sample_id=?", (s.sample_id,)).fetchone()
                if old is None:
                    c.execute(
                        "INSERT INTO samples (sample_id, dataset, split, info, n_frames) VALUES (?,?,?,?,?)",
                        (s.sample_id, s.dataset, s.split, info, len(s.frames)),
                    )
                    added += 1
                else:
                    c.execute(
                        "UPDATE samples SET dataset=?, split=?, info=?, n_frames=? WHERE sample_id=?",
                        (s.dataset, s.split, info, len(s.frames), s.sample_id),
                    )
                    keys = [
                        r[0] for r in c.execute("SELECT key FROM frames WHERE sample_id=? ORDER BY idx", (s.sample_id,))
                    ]
                    if keys == list(s.frames):
                        continue
                    masked = c.execute(
                        "SELECT COUNT(*) FROM frames WHERE sample_id=? AND head_version>0", (s.sample_id,)
                    ).fetchone()[0]
                    if masked:
                        raise InputError(
                            f"sample {s.sample_id} has masks for {len(keys)} frames but the dataset now lists "
                            f"{len(s.frames)}; use a new --store for a changed dataset"
                        )
                    c.execute("DELETE FROM frames WHERE sample_id=?", (s.sample_id,))
                try:
                    c.executemany(
                        "INSERT INTO frames (sample_id, idx, key) VALUES (?,?,?)",
                        [(s.sample_id, i, k) for i, k in enumerate(s.frames)],
                    )
                except sqlite3.IntegrityError as e:
                    raise InputError(
                        f"sample {s.sample_id}: a frame key is already registered to another sample ({e})"
                    ) from e
            self._audit(c, author, "add_samples", None, {"added": added})
        return added

    def sample_ids(self, dataset: str | None = None, split: str | None = None) -> list[str]:
        """Sample ids in sorted order, optionally filtered by dataset and split."""
        sql, params = "SELECT sample_id FROM samples WHERE 1=1", []
        if dataset is not None:
            sql, params = sql + " AND dataset=?", [*params, dataset]
        if split is not None:
            sql, params = sql + " AND split=?", [*params, split]
        return [r[0] for r in self.query(sql + " ORDER BY sample_id", params)]

    def get_sample(self, sample_id: str) -> Sample:
        """The registered :class:`Sample` (with its frame keys)."""
        rows = self.query("SELECT info FROM samples WHERE sample_id=?", (sample_id,))
        if not rows:
            raise InputError(f"no sample {sample_id!r} in {self.path}; `hmtools stats --store` lists the samples")
        keys = tuple(r[0] for r in self.query("SELECT key FROM frames WHERE sample_id=? ORDER BY idx", (sample_id,)))
        return Sample.from_json(json.loads(rows[0][0]), keys)

    def frames(self, sample_id: str) -> list[FrameRow]:
        """The sample's frames in order."""
        rows = self.query(
            "SELECT frame_id, sample_id, idx, key, height, width, head_version FROM frames WHERE sample_id=? ORDER BY idx",
            (sample_id,),
        )
        return [FrameRow(*r) for r in rows]

    def set_frame_sizes(self, sizes: dict[str, tuple[int, int]]) -> None:
        """Record frame sizes as ``{frame_key: (height, width)}``."""
        with self.transaction() as c:
            c.executemany("UPDATE frames SET height=?, width=? WHERE key=?", [(h, w, k) for k, (h, w) in sizes.items()])

    # -- masks ---------------------------------------------------------------------------
    def write_sample_masks(
        self,
        sample_id: str,
        writes: Sequence[MaskWrite],
        *,
        author: str,
        build_config: str | None = None,
    ) -> int:
        """Append one mask version for frames of a sample, all in one transaction.

        Writes without ``frame_idx`` are matched to frames in order. With ``build_config`` the
        sample is marked as built by that configuration (see :meth:`build_config`).

        Returns:
            Number of masks written.
        """
        frames = self.frames(sample_id)
        rows = []
        now = time.time()
        for i, w in enumerate(writes):
            idx = i if w.frame_idx is None else w.frame_idx
            if not 0 <= idx < len(frames):
                raise InputError(f"sample {sample_id} has {len(frames)} frames; got a mask for frame index {idx}")
            rows.append((frames[idx], w))
        with self.transaction() as c:
            for frame, w in rows:
                head = c.execute("SELECT head_version FROM frames WHERE frame_id=?", (frame.frame_id,)).fetchone()[0]
                self._insert_mask(c, frame.frame_id, head + 1, w, author, now)
            if build_config is not None:
                c.execute(
                    "UPDATE samples SET build_config=?, built_at=? WHERE sample_id=?",
                    (build_config, now, sample_id),
                )
            self._audit(c, author, "write_sample_masks", sample_id, {"masks": len(rows), "config": build_config})
        return len(rows)

    def put_mask(
        self,
        frame_key: str,
        write: MaskWrite,
        *,
        author: str,
        expected_version: int,
    ) -> int:
        """Append a new mask version for one frame if its head is still ``expected_version``.

        Returns:
            The new version number.

        Raises:
            StaleVersionError: the frame's mask changed since ``expected_version`` (nothing written).
        """
        with self.transaction() as c:
            frame_id, head = self._frame_head(c, frame_key)
            if head != expected_version:
                last = c.execute("SELECT author FROM masks WHERE frame_id=? AND version=?", (frame_id, head)).fetchone()
                raise StaleVersionError(
                    f"frame {frame_key} is at version {head} (by {last[0] if last else '?'}), not {expected_version}: "
                    "reload the frame and redo the edit"
                )
            self._insert_mask(c, frame_id, head + 1, write, author, time.time())
            sample = c.execute("SELECT sample_id FROM frames WHERE frame_id=?", (frame_id,)).fetchone()[0]
            self._audit(c, author, "put_mask", sample, {"key": frame_key, "version": head + 1, "source": write.source})
        return head + 1

    def set_status(
        self,
        expected: dict[str, int],
        status: str,
        *,
        author: str,
        reason: str | None = None,
    ) -> dict[str, int]:
        """Give frames a new review status, each as a new version that keeps its mask.

        Args:
            expected: ``{frame_key: version the caller saw}``; all are checked before any is written.
            status: New status.
            author: Who reviews.
            reason: Kept as the flag reason (for ``flagged``); otherwise cleared.

        Returns:
            ``{frame_key: new version}``.

        Raises:
            StaleVersionError: any frame changed since the caller saw it (nothing written).
            InputError: a frame has no mask to review.
        """
        _check_vocab("human", status)
        out: dict[str, int] = {}
        now = time.time()
        with self.transaction() as c:
            for key, version in expected.items():
                frame_id, head = self._frame_head(c, key)
                if head != version:
                    raise StaleVersionError(f"frame {key} is at version {head}, not {version}: reload and review again")
                if head == 0:
                    raise InputError(f"frame {key} has no mask to review yet")
            for key in expected:
                frame_id, head = self._frame_head(c, key)
                c.execute(
                    "INSERT INTO masks (frame_id, version, height, width, counts, area, bbox, tracks, source, score, "
                    "status, reason, author, created_at) SELECT frame_id, ?, height, width, counts, area, bbox, tracks, "
                    "source, score, ?, ?, ?, ? FROM masks WHERE frame_id=? AND version=?",
                    (head + 1, status, reason, author, now, frame_id, head),
                )
                c.execute("UPDATE frames SET head_version=? WHERE frame_id=?", (head + 1, frame_id))
                out[key] = head + 1
            self._audit(c, author, "set_status", None, {"status": status, "frames": len(out)})
        return out

    def current_mask(self, frame_key: str) -> MaskRecord | None:
        """The newest mask version of a frame, or ``None`` if it has none."""
        rows = self.query(
            f"SELECT {MASK_COLUMNS} FROM frames f JOIN masks m ON m.frame_id=f.frame_id AND m.version=f.head_version "
            "WHERE f.key=?",
            (frame_key,),
        )
        return row_to_record(rows[0]) if rows else None

    def current_masks(self, sample_id: str) -> list[MaskRecord | None]:
        """Newest mask of every frame of a sample, in frame order (``None`` where none)."""
        rows = self.query(
            f"SELECT {MASK_COLUMNS} FROM frames f LEFT JOIN masks m ON m.frame_id=f.frame_id "
            "AND m.version=f.head_version WHERE f.sample_id=? ORDER BY f.idx",
            (sample_id,),
        )
        return [None if r[1] is None else row_to_record(r) for r in rows]

    def history(self, frame_key: str) -> list[MaskRecord]:
        """Every version of a frame's mask, oldest first."""
        rows = self.query(
            f"SELECT {MASK_COLUMNS} FROM frames f JOIN masks m ON m.frame_id=f.frame_id WHERE f.key=? ORDER BY m.version",
            (frame_key,),
        )
        return [row_to_record(r) for r in rows]

    def build_config(self, sample_id: str) -> str | None:
        """Hash of the build-masks configuration that last filled the sample, or ``None``."""
        rows = self.query("SELECT build_config FROM samples WHERE sample_id=?", (sample_id,))
        return rows[0][0] if rows else None

    def audit(self, author: str, action: str, sample_id: str | None, detail: dict[str, Any]) -> None:
        """Append an audit entry in its own transaction."""
        with self.transaction() as c:
            self._audit(c, author, action, sample_id, detail)

    # -- internals -----------------------------------------------------------------------
    @staticmethod
    def _audit(c: sqlite3.Connection, author: str, action: str, sample_id: str | None, detail: dict[str, Any]) -> None:
        c.execute(
            "INSERT INTO audit (at, author, action, sample_id, detail) VALUES (?,?,?,?,?)",
            (time.time(), author, action, sample_id, json.dumps(detail, sort_keys=True)),
        )

    @staticmethod
    def _frame_head(c: sqlite3.Connection, frame_key: str) -> tuple[int, int]:
        row = c.execute("SELECT frame_id, head_version FROM frames WHERE key=?", (frame_key,)).fetchone()
        if row is None:
            raise InputError(f"no frame {frame_key!r} in the store")
        return int(row[0]), int(row[1])

    @staticmethod
    def _insert_mask(c: sqlite3.Connection, frame_id: int, version: int, w: MaskWrite, author: str, now: float) -> None:
        _check_vocab(w.source, w.status)
        if w.rle is not None:
            rle: RLE = {
                "size": [int(w.rle["size"][0]), int(w.rle["size"][1])],
                "counts": str(w.rle["counts"]),
            }
            area, box = rle_area(rle), rle_to_box(rle)
        elif w.mask is not None:
            rle = encode_rle(w.mask)
            area = int(np.count_nonzero(w.mask))
            box = rle_to_box(rle) if area else None
        else:
            raise ValueError("MaskWrite needs a mask or an rle")
        h, w_ = rle["size"]
        c.execute(
            "INSERT INTO masks (frame_id, version, height, width, counts, area, bbox, tracks, source, score, status, "
            "reason, author, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                frame_id,
                version,
                h,
                w_,
                rle["counts"],
                area,
                None if box is None else json.dumps(list(box)),
                None if w.tracks is None else json.dumps(w.tracks, sort_keys=True),
                w.source,
                w.score,
                w.status,
                w.reason,
                author,
                now,
            ),
        )
        c.execute(
            "UPDATE frames SET head_version=?, height=COALESCE(height, ?), width=COALESCE(width, ?) WHERE frame_id=?",
            (version, h, w_, frame_id),
        )
