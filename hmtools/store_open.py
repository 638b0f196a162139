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

from hmtools.errors import DataFormatError, HMToolsError, InputError
from hmtools.store_schema import APPLICATION_ID, SCHEMA_VERSION, check_store, migrate

log = logging.getLogger(__name__)


class StoreBusyError(HMToolsError):
    """Another process held the store's write lock for longer than the busy timeout (exit 1).

    Nothing of the refused write is in the store; running the command again later is safe.
    """


class StoreDamagedError(DataFormatError):
    """An hmtools mask store that SQLite cannot read: damaged pages, a truncated or half-written copy (exit 2)."""


def damaged(path: Path, e: sqlite3.Error) -> StoreDamagedError:
    """The one-line error for a store file that SQLite finds damaged."""
    return StoreDamagedError(
        f"mask store {path} is damaged (SQLite: {e}); `hmtools validate {path}` lists the problems; "
        "restore the store from a backup"
    )


def has_store_header(path: Path) -> bool:
    """Whether ``path`` starts with an SQLite header tagged as a mask store (:data:`APPLICATION_ID`)."""
    try:
        with path.open("rb") as f:
            head = f.read(72)
    except OSError:
        return False
    return head[:16] == b"SQLite format 3\x00" and int.from_bytes(head[68:72], "big") == APPLICATION_ID


def sqlite_failure(e: sqlite3.Error, path: Path, busy_timeout_s: float, *, writing: bool) -> HMToolsError | None:
    """The one-line hmtools error for an SQLite error that is not a bug, or ``None`` for any other.

    * "database is locked" / "busy" (another process held the lock past ``busy_timeout_s``
      seconds) -> :class:`StoreBusyError`;
    * a damaged file ("database disk image is malformed", "file is not a database", raised as a
      plain ``sqlite3.DatabaseError``) -> :class:`StoreDamagedError` that points at ``hmtools validate``.

    Constraint violations (``IntegrityError``), a full disk and the like are left to the caller.
    """
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        what = "nothing was written; run it again" if writing else "run it again"
        return StoreBusyError(
            f"mask store {path} is busy: another process (build-masks, import, an annotator) held it for "
            f"more than {busy_timeout_s:g} s ({e}); {what} when that process is done"
        )
    if type(e) is sqlite3.DatabaseError:
        return damaged(path, e)
    return None


SQLITE_STOPS = {13: "full", 8: "read-only", 10: "io"}
"""SQLite primary result codes that mean the store takes no more writes: SQLITE_FULL, SQLITE_READONLY
(a file system remounted read-only), SQLITE_IOERR."""


def sqlite_unwritable(e: sqlite3.Error) -> str | None:
    """``"full"``, ``"read-only"`` or ``"io"`` when ``e`` means the store's disk takes no more writes,
    else ``None``. Read by result code where Python gives one (3.11+), else by SQLite's message (an
    error raised by hand, an older Python)."""
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return SQLITE_STOPS.get(code & 0xFF)
    text = str(e)
    for words, kind in (("disk is full", "full"), ("readonly database", "read-only"), ("disk I/O error", "io")):
        if words in text:
            return kind
    return None


def check_writable(path: Path) -> None:
    """Refuse, before any work, a store that this process could open but never write.

    SQLite opens a file it cannot write read-only without a word, so a writer would otherwise
    fail at its first write, deep inside a command (after a build's inference, say). A writer
    needs the file writable, its folder too (WAL keeps the ``-wal``/``-shm`` files beside the
    store), and those files where they already exist. A symlinked store is checked where it points (SQLite writes there). ``os.access``
    decides, so root passes whatever the mode bits, and a read-only file system fails.

    Raises:
        InputError: the store file, or its folder, is not writable by this process.
    """
    real = path.resolve()
    fix = "or copy the store (with its -wal and -shm files) to a writable folder and pass that"
    readers = "; commands that only read (stats, validate, export) work on it as it is" if real.exists() else ""
    if real.exists() and not os.access(real, os.W_OK):
        raise InputError(
            f"cannot open mask store {path} for writing: the file is read-only here; make it writable "
            f"(chmod u+w {path}; another user's store: ask its owner) {fix}{readers}"
        )
    for beside in (Path(f"{real}-wal"), Path(f"{real}-shm")):  # left by a writer of another user, or copied
        if beside.exists() and not os.access(beside, os.W_OK):
            raise InputError(
                f"cannot open mask store {path} for writing: {beside.name} beside it is read-only here (another "
                f"user's process made it?); make it writable (chmod u+w {beside}) {fix}{readers}"
            )
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot open mask store {path} for writing: its folder {real.parent} is not writable, and SQLite "
            f"keeps the store's -wal/-shm files there; make the folder writable (chmod u+w {real.parent}) "
            f"{fix}{readers}"
        )


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
        busy = sqlite_failure(e, path, busy_timeout_s, writing=not read_only)
        if busy is not None:
            raise busy from e
        if sqlite_unwritable(e) == "full":  # not bad input: the disk
            raise HMToolsError(
                f"cannot open mask store {path}: the disk holding it is full ({e}); free some space or move the "
                "store (with its -wal and -shm files) to a disk with room, then run the command again"
            ) from e
        hint = (
            "it could not be read where it is; copy the store file (with its -wal and -shm files) to a writable folder"
            if read_only
            else "its folder must be writable (WAL keeps -wal/-shm files there)"
        )
        raise InputError(f"cannot open mask store {path}: {e}; {hint}") from e
    except sqlite3.DatabaseError as e:
        conn.close()
        if has_store_header(path):  # a store by its header, yet unreadable: truncated or damaged
            raise damaged(path, e) from e
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
