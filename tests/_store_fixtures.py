"""Shared helpers of the store and mask tests: synthetic samples, masks and child-process bodies.

Child-process functions live here (not in the test modules) so ``multiprocessing`` "spawn"
children can import them by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import numpy as np

from hmtools.errors import StaleVersionError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite

H, W = 24, 32


def make_samples(n_samples: int, n_frames: int, prefix: str = "clip") -> list[Sample]:
    """``n_samples`` FineDiving-like samples of ``n_frames`` frame keys each."""
    return [
        Sample(
            sample_id=f"{prefix}{i}/0",
            dataset="finediving",
            frames=tuple(f"{prefix}{i}/0/{t:05d}.jpg" for t in range(n_frames)),
            split="train",
            score=50.0 + i,
        )
        for i in range(n_samples)
    ]


def named_sample(sample_id: str, n: int, split: str = "train", dataset: str = "finediving") -> Sample:
    """A sample ``sample_id`` of ``n`` frame keys ``<sample_id>/00000.jpg``... (no score)."""
    return Sample(
        sample_id=sample_id,
        dataset=dataset,
        frames=tuple(f"{sample_id}/{t:05d}.jpg" for t in range(n)),
        split=split,
    )


def blob_mask(t: int, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """``(h, w)`` bool "athlete": an ellipse body plus a bar limb, moving with ``t``."""
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = (3 + 2 * t + seed) % w, (h // 3 + t) % h
    body = ((xx - cx) / 3.5) ** 2 + ((yy - cy) / 6.0) ** 2 <= 1.0
    limb = (np.abs(xx - cx - 3) <= 1) & (yy >= cy) & (yy < cy + 8)
    return body | limb


def writer_process(path: str, writer: int, samples: list[Sample], shared: list[str], n_cas: int, go, out: str) -> None:
    """One of two concurrent writers: create/open the store, write its own samples, then CAS-edit shared frames.

    Records every successful compare-and-set as ``[frame_key, version]`` in JSON at ``out``.
    """
    go.wait(30)
    store = MaskStore(path)
    store.add_samples(samples, author=f"w{writer}")  # both writers register all samples
    mine = [s for i, s in enumerate(samples) if i % 2 == writer]
    for s in mine:
        writes = [MaskWrite(mask=blob_mask(t, writer), score=0.5) for t in range(len(s.frames))]
        store.write_sample_masks(s.sample_id, writes, author=f"w{writer}")
    done, stale = [], 0
    for i in range(n_cas):
        key = shared[i % len(shared)]
        while True:
            rec = store.current_mask(key)
            version = 0 if rec is None else rec.version
            try:
                new = store.put_mask(
                    key,
                    MaskWrite(mask=blob_mask(i, writer), source="human", score=(writer * 1000 + i) / 10000),
                    author=f"w{writer}",
                    expected_version=version,
                )
            except StaleVersionError:  # the other writer got in between: reload and retry
                stale += 1
                continue
            done.append([key, new, i])
            break
    store.close()
    Path(out).write_text(json.dumps({"done": done, "stale": stale}))


KILLED_WRITER = """
import sys, time, sqlite3
from pathlib import Path
sys.path[:0] = [sys.argv[4], sys.argv[5]]
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite
from _store_fixtures import blob_mask
store = MaskStore(sys.argv[1])
store._conn.execute("PRAGMA cache_size=1")  # spill uncommitted pages into the WAL mid-transaction
marker, seen = Path(sys.argv[3]), [0]
def trace(sql):
    if sql.lstrip().startswith("INSERT INTO masks"):
        seen[0] += 1
        if seen[0] == int(sys.argv[6]):
            marker.write_text("mid-transaction")
            time.sleep(120)
store._conn.set_trace_callback(trace)
n = len(store.frames(sys.argv[2]))
store.write_sample_masks(sys.argv[2], [MaskWrite(mask=blob_mask(t, 7)) for t in range(n)], author="doomed")
"""
"""Child script: starts a big ``write_sample_masks`` and parks inside the transaction (argv: store,
sample, marker file, repo root, tests dir, insert number at which to park)."""


def child_env() -> dict[str, str]:
    """Environment for Python children (offline, repo importable)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return env


def wait_for(path: Path, timeout_s: float = 60.0) -> None:
    """Block until ``path`` exists (or fail after ``timeout_s``)."""
    end = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.02)


def raw_connect(path: Path) -> sqlite3.Connection:
    """A plain autocommit sqlite3 connection (to corrupt or inspect a store behind its back)."""
    return sqlite3.connect(str(path), isolation_level=None)


# -- stores of older schema versions (migrations and read-only opens) ---------------------------


def pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as c:
        return c.execute(f"PRAGMA {name}").fetchone()[0]


def names(path: Path, kind: str) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type=?", (kind,))}


def progress_rows(store: MaskStore) -> dict[tuple[str, str], int]:
    return {(s, st): n for s, st, n in store.query("SELECT sample_id, status, n FROM review_progress WHERE n<>0")}


def counted_rows(store: MaskStore) -> dict[tuple[str, str], int]:
    """The newest status of every frame counted per sample: what review_progress must always hold."""
    rows = store.query(
        "SELECT f.sample_id, COALESCE(m.status, 'none'), COUNT(*) FROM frames f LEFT JOIN masks m "
        "ON m.frame_id=f.frame_id AND m.version=f.head_version GROUP BY 1, 2"
    )
    return {(s, st): n for s, st, n in rows}


def reviewed_store(path: Path) -> MaskStore:
    """Four samples: masks with every status (one flagged), one sample without masks."""
    store = MaskStore(path)
    store.add_samples(make_samples(4, 5))
    for i in range(3):
        writes = [
            MaskWrite(mask=blob_mask(t), status="flagged" if (i, t) == (1, 3) else "unreviewed") for t in range(5)
        ]
        store.write_sample_masks(f"clip{i}/0", writes, author="b")
    store.set_status({"clip0/0/00000.jpg": 1, "clip0/0/00001.jpg": 1}, "accepted", author="r")
    store.set_status({"clip2/0/00004.jpg": 1}, "rejected", author="r")
    store.put_mask("clip0/0/00001.jpg", MaskWrite(mask=blob_mask(9), source="human"), author="r", expected_version=2)
    return store


def older_store(path: Path, version: int) -> Path:
    """:func:`reviewed_store` as the hmtools of schema ``version`` (1 to 3) left it: closed, no -wal/-shm."""
    reviewed_store(path).close()
    with closing(raw_connect(path)) as raw:
        raw.execute("DROP INDEX masks_flagged")
        raw.execute(f"PRAGMA user_version = {version}")
        if version < 3:
            _drop_schema_3(raw, version)
    assert files_beside(path) == {path.name}
    return path


def _drop_schema_3(raw: sqlite3.Connection, version: int) -> None:
    """Take away what schema 3 (and, below 2, schema 2) added."""
    for trigger in ("progress_frame_insert", "progress_frame_delete", "progress_frame_update"):
        raw.execute(f"DROP TRIGGER {trigger}")
    raw.execute("DROP TABLE review_progress")
    if version < 2:
        for trigger in ("masks_no_update", "masks_no_delete", "audit_no_update", "audit_no_delete"):
            raw.execute(f"DROP TRIGGER {trigger}")
        raw.execute("DROP TRIGGER frames_head_forward")
        raw.execute("CREATE INDEX masks_by_frame ON masks (frame_id, version)")
        raw.execute("CREATE INDEX frames_by_sample ON frames (sample_id, idx)")


def file_state(path: Path) -> tuple[str, int]:
    """SHA-256 of the file's bytes and the schema version in its header, read without SQLite."""
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), int.from_bytes(data[60:64], "big")


def files_beside(path: Path) -> set[str]:
    """The store file and whatever SQLite keeps beside it (-wal, -shm, -journal)."""
    return {p.name for p in path.parent.iterdir() if p.name.startswith(path.name)}
