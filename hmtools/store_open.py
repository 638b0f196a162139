"""Connecting to a store file: for writing (create, upgrade in place) or for reading only.

A writer's connection switches the file to WAL mode and applies any missing migrations in place
(:func:`hmtools.store_schema.migrate`). A read-only connection never writes the file, works on
read-only files and folders, and leaves no ``-wal``/``-shm`` files behind that were not there
before; a store of an older schema is upgraded in a private temporary copy instead (a warning
says so), because an in-place upgrade would lock out the older hmtools that other machines use.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from hmtools.errors import DataFormatError, InputError
from hmtools.store_schema import SCHEMA_VERSION, check_store, migrate

log = logging.getLogger(__name__)


def connect(path: Path, *, create: bool, read_only: bool, busy_timeout_s: float, streaming: bool) -> sqlite3.Connection:
    """An autocommit connection to the store at ``path``, at schema :data:`SCHEMA_VERSION`.

    ``path`` must already be a non-empty file when ``read_only`` or not ``create`` (the caller
    checks, so that nothing is created). ``streaming`` turns off the memory map and keeps a
    2 MiB page cache (one pass over a whole store) instead of 256 MiB mapped and 32 MiB cached.

    Raises:
        InputError: SQLite cannot open or lock the file, or the store's schema is newer than
            this hmtools (or, without ``create``, the file is an empty database).
        DataFormatError: the file is not an hmtools mask store (not SQLite, or another program's).
    """
    try:
        conn = sqlite3.connect(
            _read_only_uri(path) if read_only else str(path),
            uri=read_only,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as e:
        raise InputError(f"cannot open mask store {path}: {e}") from e
    try:
        if read_only:
            conn = _read_current_schema(conn, path)
        else:
            check_store(conn, path, create=create)  # before any write; fails on non-SQLite
            _set_wal(conn, busy_timeout_s)
            conn.execute("PRAGMA synchronous=NORMAL")
        # mmap reads pages without a syscall each; negative cache_size = KiB of page cache
        conn.execute(f"PRAGMA mmap_size={0 if streaming else 256 << 20}")
        conn.execute(f"PRAGMA cache_size={-2048 if streaming else -32768}")
        conn.execute("PRAGMA foreign_keys=ON")
        # SQLite's lower() folds ASCII only: the review queue's reason filter folds with Python's rules
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        if not read_only:
            migrate(conn, path, create=create)
    except sqlite3.OperationalError as e:  # permissions, a read-only folder, a lock held too long
        conn.close()
        hint = (
            "it could not be read where it is; copy the store file (with its -wal and -shm files) to a writable folder"
            if read_only
            else "its folder must be writable (WAL keeps -wal/-shm files there)"
        )
        raise InputError(f"cannot open mask store {path}: {e}; {hint}") from e
    except sqlite3.DatabaseError as e:
        conn.close()
        raise DataFormatError(f"{path} is not an hmtools mask store (SQLite said: {e})") from e
    except BaseException:
        conn.close()
        raise
    return conn


def _read_only_uri(path: Path) -> str:
    """The SQLite URI that reads ``path`` without writing it or leaving files beside it.

    * A ``-wal`` file is there (a writer is at work, or one crashed): ``mode=ro``, which also
      reads the writer's committed transactions; the ``-wal``/``-shm`` files already exist.
    * The file or its folder is not writable (a released store on read-only media): also
      ``immutable=1``. SQLite cannot read a WAL-mode file there otherwise (it would have to create
      the ``-wal``/``-shm`` files), and no writer can work on it from here either.
    * Otherwise: a read-write connection made read-only by ``PRAGMA query_only``
      (:func:`_read_current_schema`). Unlike ``mode=ro``, which would leave its ``-wal``/``-shm``
      behind, SQLite removes the ones it made when the connection closes, as with any reader, and
      writers of other processes go on beside it.
    """
    real = path.resolve()  # SQLite follows a symlinked store file: its -wal/-shm are beside the target
    uri = real.as_uri()
    if Path(f"{real}-wal").exists():
        return uri + "?mode=ro"
    if not (os.access(real, os.W_OK) and os.access(real.parent, os.W_OK)):
        return uri + "?mode=ro&immutable=1"
    return uri + "?mode=rw"


def _read_current_schema(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """``conn`` made read-only, or for an older store, an upgraded private copy of it.

    The copy is an SQLite temporary database (the backup API copies the file page by page into
    it): it spills to a file in the temporary folder that SQLite deletes when it is closed, so
    memory stays flat whatever the store's size. It holds the store as it was when opened.
    """
    conn.execute("PRAGMA query_only=ON")
    version = check_store(conn, path, create=False)
    if version == SCHEMA_VERSION:
        return conn
    copy = sqlite3.connect("", isolation_level=None, check_same_thread=False)  # "": private, deleted on close
    try:
        started = time.monotonic()
        conn.backup(copy)
        conn.close()
        migrate(copy, path, create=False)
    except sqlite3.OperationalError as e:
        copy.close()
        if "disk is full" not in str(e):  # SQLITE_FULL (sqlite_errorcode needs Python 3.11)
            raise
        raise InputError(  # the temporary folder is full: not the store's folder, as connect() would say
            f"cannot read mask store {path} (store schema {version}, older than this hmtools' {SCHEMA_VERSION}) "
            f"through an upgraded temporary copy: {e}; the copy needs about {max(1, path.stat().st_size >> 20)} MiB free "
            "in SQLite's temporary folder ($SQLITE_TMPDIR, else $TMPDIR, else /var/tmp): set SQLITE_TMPDIR to a "
            "folder with room"
        ) from e
    except BaseException:
        copy.close()
        raise
    log.warning(
        "%s was written by an older hmtools (store schema %d, this one uses %d): reading an upgraded "
        "temporary copy (%.1f s) and leaving the file as it is; hmtools commands that write to it "
        "(build-masks, annotate, import) upgrade it in place, after which older hmtools cannot open it",
        path,
        version,
        SCHEMA_VERSION,
        time.monotonic() - started,
    )
    return copy


def _set_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL, retrying while another process holds the lock that the switch needs.

    SQLite does not call its busy handler for this switch, so two processes opening a new store at
    the same moment could otherwise fail with "database is locked".
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _casefold(text: str | None) -> str | None:
    """SQL ``casefold(text)``: Unicode case folding (``"Ü"`` -> ``"ü"``, ``"ß"`` -> ``"ss"``); NULL stays NULL."""
    return text.casefold() if isinstance(text, str) else text
