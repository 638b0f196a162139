"""The mask store: one SQLite file (WAL mode) that build-masks writes, the annotator edits and
export reads.

Every change to a frame's mask (a new mask, or a new review status) appends a *version*; the
frame's ``head_version`` points at the newest. Writes that name the version they were based on
are compare-and-set: if someone else wrote in between, :class:`StaleVersionError` is raised and
nothing is written. History is never deleted. Each public write is one transaction. Commands that
only read open it with ``MaskStore(path, read_only=True)``, which never changes the file.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from numbers import Integral
from pathlib import Path
from typing import Any

from hmtools.errors import InputError
from hmtools.schema import Sample
from hmtools.store_open import check_writable, connect, sqlite_failure
from hmtools.store_types import (
    MASK_COLUMNS,
    FrameRow,
    MaskRecord,
    MaskWrite,
    check_vocab,
    prepare_mask,
    prepare_masks,
    row_to_record,
)
from hmtools.store_write import (
    check_version,
    insert_frame_mask,
    insert_sample_masks,
    insert_status_versions,
    register_sample,
)


class MaskStore:
    """A connection to one store file; safe to share between threads of one process.

    Several processes may open the same file: SQLite's WAL mode lets readers run beside one
    writer, and writers wait for each other (``busy_timeout``) instead of failing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        read_only: bool = False,
        busy_timeout_s: float = 60.0,
        streaming: bool = False,
    ):
        """Open (and with ``create``, create) the store at ``path``; an older schema is upgraded.

        ``read_only=True`` (implies ``create=False``) is for commands that only read: the file is
        never written, may sit in a read-only folder or on read-only media, and gets no
        ``-wal``/``-shm`` files beside it that outlive the store; a store of an older schema is read
        through an upgraded private copy and stays as it is (:mod:`hmtools.store_open`). Writes
        then raise :class:`InputError`.

        By default the connection memory-maps up to 256 MiB of the file and caches 32 MiB of
        pages, for repeated reads (the annotator, build-masks). ``streaming=True`` is for one pass
        over the whole store (exports): no memory map and a 2 MiB page cache, so the process's
        memory stays flat whatever the store's size.

        Raises:
            InputError: ``path`` is a folder, ``create`` is false and no store exists at ``path``, the store's schema
                is newer than this hmtools, or (unless ``read_only``) this process cannot write the file or its
                folder (:func:`hmtools.store_open.check_writable`).
            DataFormatError: the file is not an hmtools mask store (not SQLite, or another program's).
        """
        self.path = Path(path)
        self.read_only = read_only
        create = create and not read_only
        if self.path.is_dir():
            raise InputError(
                f"--store {self.path} is a folder (an export?), not a mask store file; "
                "pass the .db file that build-masks or import wrote, or a new file name"
            )
        if not create and not self.path.is_file():
            raise InputError(f"no mask store at {self.path}; pass --store FILE of an existing store")
        if not create and self.path.stat().st_size == 0:
            raise InputError(f"{self.path} is an empty file, not a mask store; pass a store made by hmtools")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # a read-only folder above, a file in the way
                raise InputError(f"cannot create the folder of mask store {self.path}: {e}; pick another path") from e
        if not read_only:
            check_writable(self.path)  # now, not at the first write deep inside a command
        self._lock = threading.RLock()
        self._busy_timeout_s = busy_timeout_s
        self._conn = connect(
            self.path, create=create, read_only=read_only, busy_timeout_s=busy_timeout_s, streaming=streaming
        )

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
        several public writes (e.g. a whole import) into one transaction. Writers of other processes
        wait for each other (up to ``busy_timeout_s``); readers never wait and see the last commit.

        Raises:
            InputError: the store was opened with ``read_only=True``.
        """
        if self.read_only:
            raise InputError(f"mask store {self.path} was opened read-only; open it with MaskStore(path) to write")
        with self._lock:
            nested = self._conn.in_transaction
            try:
                self._conn.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
            except sqlite3.Error as e:  # another writer kept the lock past busy_timeout_s, a damaged file
                self._raise_failure(e, writing=True)
                raise
            try:
                yield self._conn
                self._conn.execute("RELEASE nested" if nested else "COMMIT")
            except BaseException as e:
                try:  # SQLite itself rolls the whole transaction back on SQLITE_FULL / SQLITE_IOERR: nothing to undo
                    for sql in ("ROLLBACK TO nested", "RELEASE nested") if nested else ("ROLLBACK",):
                        if self._conn.in_transaction:
                            self._conn.execute(sql)
                except sqlite3.Error as undo:  # never hides ``e``, the error that matters
                    getattr(e, "add_note", lambda _: None)(f"(the rollback failed too: {undo})")
                if isinstance(e, sqlite3.Error):
                    self._raise_failure(e, writing=True)
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only SQL query and return all rows (for hmtools' own report modules)."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                self._raise_failure(e, writing=False)
                raise

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
        with self.transaction() as c:
            added = sum(register_sample(c, s) for s in samples)
            if added:  # a rerun registers nothing: no audit row for it
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

    def set_frame_sizes(self, sizes: Mapping[str, tuple[int, int]]) -> None:
        """Record frame sizes as ``{frame_key: (height, width)}`` in pixels.

        Raises:
            InputError: a key is not a registered frame, a size is not whole pixels >= 1, or a frame
                that has masks would change size.
        """
        with self.transaction() as c:
            for key, (h, w) in sizes.items():
                if not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in (h, w)):
                    raise InputError(
                        f"frame {key}: size must be whole pixels >= 1 as (height, width); got ({h!r}, {w!r})"
                    )
                row = c.execute("SELECT height, width, head_version FROM frames WHERE key=?", (key,)).fetchone()
                if row is None:
                    raise InputError(f"no frame {key!r} in {self.path}; register its sample first")
                if row[2] > 0 and (row[0], row[1]) != (int(h), int(w)):
                    raise InputError(f"frame {key} has masks of {row[0]}x{row[1]}; it cannot become {h}x{w}")
                c.execute("UPDATE frames SET height=?, width=? WHERE key=?", (int(h), int(w), key))

    # -- masks ---------------------------------------------------------------------------
    def write_sample_masks(
        self,
        sample_id: str,
        writes: Sequence[MaskWrite],
        *,
        author: str,
        build_config: str | None = None,
        expected_versions: Mapping[int, int] | None = None,
    ) -> int:
        """Append one mask version for frames of a sample, all in one transaction.

        Writes without ``frame_idx`` are matched to frames in order. Masks are encoded before the
        write lock is taken and inserted in bulk, so other writers wait only for the inserts.
        With ``build_config`` the sample is marked as built by that configuration (see
        :meth:`build_config`).

        Args:
            sample_id: A registered sample.
            writes: Masks at the frames' resolution, ``(H, W)`` bool, or RLE.
            author: Who writes (``build-masks``, ``import``, a user name).
            build_config: Hash of the configuration that produced the masks, or ``None``.
            expected_versions: ``{frame_idx: head version the masks were based on}``; when given,
                the write is compare-and-set on those frames (0 = "had no mask"). It may name frames
                that are not written (all are checked), but only frames of the sample.

        Returns:
            Number of masks written.

        Raises:
            InputError: unknown sample, a frame index out of range, a mask whose size is not its
                frame's, or ``expected_versions`` naming a frame the sample does not have (nothing
                written).
            StaleVersionError: a frame of ``expected_versions`` changed meanwhile (nothing written).
        """
        idx = [i if w.frame_idx is None else w.frame_idx for i, w in enumerate(writes)]
        prepared = list(zip(idx, prepare_masks(writes), strict=True))
        with self.transaction() as c:
            now = time.time()  # once the lock is held: a frame's versions stay in time order behind a waited-for writer
            n = insert_sample_masks(c, sample_id, prepared, author=author, now=now, expected_versions=expected_versions)
            if build_config is not None:
                c.execute(
                    "UPDATE samples SET build_config=?, built_at=? WHERE sample_id=?",
                    (build_config, now, sample_id),
                )
            if n or build_config is not None:  # writing nothing changes nothing: no audit row for it
                self._audit(c, author, "write_sample_masks", sample_id, {"masks": n, "config": build_config})
        return n

    def put_mask(
        self,
        frame_key: str,
        write: MaskWrite,
        *,
        author: str,
        expected_version: int,
    ) -> int:
        """Append a new mask version for one frame if its head is still ``expected_version``.

        ``write.frame_idx`` is ignored; the frame is ``frame_key``.

        Returns:
            The new version number.

        Raises:
            StaleVersionError: the frame's mask changed since ``expected_version`` (nothing written).
            InputError: unknown frame, a mask whose size is not the frame's, or ``expected_version`` not a
                whole number >= 0 (a bool is refused: ``True`` would match version 1).
        """
        check_version(f"frame {frame_key}", expected_version)
        p = prepare_mask(write)
        with self.transaction() as c:
            version, sample = insert_frame_mask(
                c, frame_key, p, author=author, now=time.time(), expected_version=expected_version
            )
            self._audit(c, author, "put_mask", sample, {"key": frame_key, "version": version, "source": write.source})
        return version

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
            reason: Stored as the new versions' reason (why flagged or rejected); ``None`` clears it.

        Returns:
            ``{frame_key: new version}``.

        Raises:
            StaleVersionError: any frame changed since the caller saw it (nothing written).
            InputError: a frame has no mask to review, or a version is not a whole number >= 0.

        One audit row per sample whose frames changed (none when ``expected`` is empty).
        """
        check_vocab("human", status)
        with self.transaction() as c:
            out, samples = insert_status_versions(c, expected, status, reason, author=author, now=time.time())
            for sample, n in sorted(samples.items()):  # one row per sample: each sample's audit trail has it
                self._audit(c, author, "set_status", sample, {"status": status, "frames": n})
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
    def _raise_failure(self, e: sqlite3.Error, *, writing: bool) -> None:
        """Raise ``e`` as a one-line hmtools error where it means a busy or damaged store; else return."""
        failure = sqlite_failure(e, self.path, self._busy_timeout_s, writing=writing)
        if failure is not None:
            raise failure from e

    @staticmethod
    def _audit(c: sqlite3.Connection, author: str, action: str, sample_id: str | None, detail: dict[str, Any]) -> None:
        c.execute(
            "INSERT INTO audit (at, author, action, sample_id, detail) VALUES (?,?,?,?,?)",
            (time.time(), author, action, sample_id, json.dumps(detail, sort_keys=True)),
        )
