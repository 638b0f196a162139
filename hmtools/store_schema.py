"""SQLite schema of the mask store and its migrations.

The schema version lives in ``PRAGMA user_version``. Each entry of :data:`MIGRATIONS` moves a
store from version ``i`` to ``i + 1``; opening a store applies the missing ones in one
transaction. A store newer than this code is refused (upgrade hmtools).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hmtools.errors import InputError

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

MIGRATIONS: tuple[str, ...] = (SCHEMA_V1,)
"""``MIGRATIONS[i]`` upgrades a store from schema version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (semicolons inside comments are safe)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf)
            buf = ""
    return out


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store behind ``conn`` (autocommit mode) to :data:`SCHEMA_VERSION` in one transaction.

    Raises:
        InputError: the store was written by a newer hmtools.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{path} has store schema {version}, this hmtools reads up to {SCHEMA_VERSION}; upgrade hmtools"
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # re-read under the write lock: another process may have migrated the file meanwhile
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (str(time.time()),))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
