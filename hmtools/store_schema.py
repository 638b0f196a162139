"""SQLite schema of the mask store and its migrations.

The schema version lives in ``PRAGMA user_version`` and the file is tagged with
``PRAGMA application_id`` = :data:`APPLICATION_ID`. Each entry of :data:`MIGRATIONS` moves a
store from version ``i`` to ``i + 1``; opening a store for writing applies the missing ones in
one transaction (:func:`migrate`), while a read-only open upgrades a private copy instead
(:mod:`hmtools.store_open`). A store newer than this code is refused (upgrade hmtools), and so is
an SQLite file that belongs to another program.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hmtools.errors import DataFormatError, InputError

SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE samples (
    sample_id    TEXT PRIMARY KEY,
    dataset      TEXT NOT NULL,
    split        TEXT NOT NULL,
    info         TEXT NOT NULL,              -- Sample.to_json() without frames
    n_frames     INTEGER NOT NULL,
    build_config TEXT,                       -- hash of the build-masks configuration that filled it
    built_at     REAL
);
CREATE TABLE frames (
    frame_id     INTEGER PRIMARY KEY,
    sample_id    TEXT NOT NULL REFERENCES samples(sample_id),
    idx          INTEGER NOT NULL,           -- 0-based position in the sample
    key          TEXT NOT NULL UNIQUE,       -- path relative to the dataset root
    height       INTEGER,                    -- NULL until known
    width        INTEGER,
    head_version INTEGER NOT NULL DEFAULT 0, -- 0 = no mask yet
    UNIQUE (sample_id, idx)
);
CREATE TABLE masks (
    mask_id    INTEGER PRIMARY KEY,
    frame_id   INTEGER NOT NULL REFERENCES frames(frame_id),
    version    INTEGER NOT NULL,             -- 1, 2, ... per frame, never reused
    height     INTEGER NOT NULL,
    width      INTEGER NOT NULL,
    counts     TEXT NOT NULL,                -- COCO compressed RLE counts (column-major)
    area       INTEGER NOT NULL,
    bbox       TEXT,                         -- JSON [x1, y1, x2, y2] or NULL when empty
    tracks     TEXT,                         -- JSON list of per-athlete {"track", "bbox", "counts"} or NULL
    source     TEXT NOT NULL CHECK (source IN ('auto', 'propagated', 'human', 'imported')),
    score      REAL,
    status     TEXT NOT NULL CHECK (status IN ('unreviewed', 'flagged', 'accepted', 'rejected')),
    reason     TEXT,                         -- why flagged (reasons joined by a semicolon and a space), or NULL
    author     TEXT NOT NULL,
    created_at REAL NOT NULL,                -- unix seconds
    UNIQUE (frame_id, version)
);
CREATE TABLE configs (
    hash    TEXT PRIMARY KEY,
    body    TEXT NOT NULL,                   -- JSON of the build-masks configuration
    created REAL NOT NULL
);
CREATE TABLE locks (
    sample_id  TEXT PRIMARY KEY REFERENCES samples(sample_id),
    owner      TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE audit (
    audit_id  INTEGER PRIMARY KEY,
    at        REAL NOT NULL,
    author    TEXT NOT NULL,
    action    TEXT NOT NULL,
    sample_id TEXT,
    detail    TEXT                           -- JSON
);
CREATE INDEX masks_by_frame ON masks (frame_id, version);
CREATE INDEX frames_by_sample ON frames (sample_id, idx);
CREATE INDEX audit_by_sample ON audit (sample_id, at);
"""

SCHEMA_V2 = """
-- The UNIQUE constraints of masks and frames already index these columns; the copies only cost writes.
DROP INDEX IF EXISTS masks_by_frame;
DROP INDEX IF EXISTS frames_by_sample;
-- History is append-only: mask versions and audit entries are never changed or deleted,
-- and a frame's head version only moves forward.
CREATE TRIGGER masks_no_update BEFORE UPDATE ON masks
BEGIN SELECT RAISE(ABORT, 'mask versions are append-only; write a new version instead'); END;
CREATE TRIGGER masks_no_delete BEFORE DELETE ON masks
BEGIN SELECT RAISE(ABORT, 'mask history is never deleted'); END;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is never deleted'); END;
CREATE TRIGGER frames_head_forward BEFORE UPDATE OF head_version ON frames
WHEN NEW.head_version < OLD.head_version
BEGIN SELECT RAISE(ABORT, 'a frame head version only moves forward'); END;
"""

SCHEMA_V3 = """
-- Review progress per sample, kept by triggers: the annotator's queue and "next flagged frame" read
-- these few rows instead of joining every frame with its newest mask (250 ms -> 9 ms at 312k frames).
CREATE TABLE review_progress (
    sample_id TEXT NOT NULL REFERENCES samples(sample_id),
    status    TEXT NOT NULL,                 -- status of the newest mask, or 'none' (no mask yet)
    n         INTEGER NOT NULL,              -- frames of the sample in that status
    PRIMARY KEY (sample_id, status)
) WITHOUT ROWID;
INSERT INTO review_progress (sample_id, status, n)
SELECT f.sample_id, COALESCE(m.status, 'none'), COUNT(*) FROM frames f
LEFT JOIN masks m ON m.frame_id = f.frame_id AND m.version = f.head_version
GROUP BY f.sample_id, COALESCE(m.status, 'none');
CREATE TRIGGER progress_frame_insert AFTER INSERT ON frames
BEGIN
    INSERT INTO review_progress (sample_id, status, n) VALUES (NEW.sample_id,
        COALESCE((SELECT status FROM masks WHERE frame_id = NEW.frame_id AND version = NEW.head_version), 'none'), 1)
    ON CONFLICT (sample_id, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER progress_frame_delete AFTER DELETE ON frames
BEGIN
    UPDATE review_progress SET n = n - 1 WHERE sample_id = OLD.sample_id
        AND status = COALESCE((SELECT status FROM masks WHERE frame_id = OLD.frame_id AND version = OLD.head_version), 'none');
END;
CREATE TRIGGER progress_frame_update AFTER UPDATE OF head_version, sample_id ON frames
WHEN NEW.head_version IS NOT OLD.head_version OR NEW.sample_id IS NOT OLD.sample_id
BEGIN
    UPDATE review_progress SET n = n - 1 WHERE sample_id = OLD.sample_id
        AND status = COALESCE((SELECT status FROM masks WHERE frame_id = OLD.frame_id AND version = OLD.head_version), 'none');
    INSERT INTO review_progress (sample_id, status, n) VALUES (NEW.sample_id,
        COALESCE((SELECT status FROM masks WHERE frame_id = NEW.frame_id AND version = NEW.head_version), 'none'), 1)
    ON CONFLICT (sample_id, status) DO UPDATE SET n = n + 1;
END;
"""

SCHEMA_V4 = """
-- The flagged versions only (a few percent of all): the annotator's flag-reason filter reads these
-- instead of every frame's newest mask (265 -> 20-30 ms at 312k frames).
CREATE INDEX masks_flagged ON masks (frame_id, version) WHERE status = 'flagged';
"""

MIGRATIONS: tuple[str, ...] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4)
"""``MIGRATIONS[i]`` upgrades a store from schema version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)


APPLICATION_ID = 0x484D5453
"""``PRAGMA application_id`` of a mask store (ASCII ``HMTS``); 0 in stores made before it was set."""


def migrate(conn: sqlite3.Connection, path: Path, *, create: bool) -> int:
    """Bring the store on ``conn`` (autocommit mode) to :data:`SCHEMA_VERSION`.

    Safe when several processes open a new store at once: the version is read again after the
    write lock is taken, so only the first applies the migrations.

    Returns:
        The schema version the store had before.

    Raises:
        DataFormatError: the file is an SQLite database of another program.
        InputError: the store is newer than this hmtools, or (without ``create``) holds no store.
    """
    version = check_store(conn, path, create=create)
    if version == SCHEMA_VERSION:
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = check_store(conn, path, create=create)  # another process may have migrated meanwhile
        if version < SCHEMA_VERSION:
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            now = str(time.time())
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (now,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"schema_{SCHEMA_VERSION}_at", now))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version


def check_store(conn: sqlite3.Connection, path: Path, *, create: bool) -> int:
    """Read-only check that ``conn`` holds a mask store (or, with ``create``, an empty database).

    Run it before anything writes to the file, so another program's database is never touched.

    Returns:
        The store's schema version (0 for an empty database).

    Raises:
        DataFormatError: the file is an SQLite database of another program.
        InputError: the store is newer than this hmtools, or (without ``create``) holds no store.
    """
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    if app not in (0, APPLICATION_ID):
        raise DataFormatError(
            f"{path} is an SQLite database of another program (application_id {app:#x}), not a mask store"
        )
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{path} has store schema {version}, this hmtools reads up to {SCHEMA_VERSION}; upgrade hmtools"
        )
    if version == 0:
        if conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            raise DataFormatError(
                f"{path} is an SQLite database of another program, not an hmtools mask store; "
                "pass a store file made by hmtools (or a new path to create one)"
            )
        if not create:
            raise InputError(f"{path} is an empty database, not a mask store; pass a store made by hmtools")
    return version


def _statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (semicolons inside comments and triggers are safe)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf)
            buf = ""
    return out
