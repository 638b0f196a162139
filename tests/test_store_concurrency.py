"""The store under real concurrent processes: two writers at once, and a writer killed mid-transaction."""

from __future__ import annotations

import json
import multiprocessing as mp
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from _store_fixtures import (
    KILLED_WRITER,
    blob_mask,
    child_env,
    counted_rows,
    make_samples,
    progress_rows,
    wait_for,
    writer_process,
)

from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check, read_sample_masks
from hmtools.store_types import MaskWrite

TESTS_DIR = str(Path(__file__).resolve().parent)
REPO_ROOT = str(Path(__file__).resolve().parents[1])


def test_two_writer_processes_lose_no_write(tmp_path: Path) -> None:
    path = tmp_path / "masks.db"  # created by whichever child gets there first
    samples = make_samples(6, 5)
    shared = [f"clip{i}/0/{t:05d}.jpg" for i in (0, 1) for t in (0, 1)]  # frames both writers edit
    n_cas = 30
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    outs = [tmp_path / f"w{w}.json" for w in (0, 1)]
    procs = [
        ctx.Process(target=writer_process, args=(str(path), w, samples, shared, n_cas, go, str(outs[w])))
        for w in (0, 1)
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [json.loads(o.read_text()) for o in outs]

    with MaskStore(path, create=False) as store:
        assert integrity_check(store) == []
        # every sample written by its own writer, whole
        for i, s in enumerate(samples):
            stack, present = read_sample_masks(store, s.sample_id)
            assert present.all()
            masks_only = [t for t in range(5) if s.frames[t] not in shared]
            for t in masks_only:
                assert (stack[t] == blob_mask(t, i % 2)).all()
        # every successful compare-and-set is in the history, versions contiguous, none lost
        successes = [(key, version, w, i) for w, r in enumerate(results) for key, version, i in r["done"]]
        assert len(successes) == 2 * n_cas
        per_frame = Counter(key for key, *_ in successes)
        for key in shared:
            history = store.history(key)
            writer_versions = [r for r in history if r.source == "human"]
            assert [r.version for r in history] == list(range(1, len(history) + 1))
            assert len(writer_versions) == per_frame[key]
        for key, version, w, i in successes:
            rec = store.history(key)[version - 1]
            assert rec.author == f"w{w}" and rec.score == (w * 1000 + i) / 10000
            assert (rec.mask() == blob_mask(i, w)).all()
        assert len({(key, version) for key, version, *_ in successes}) == len(successes)  # no version twice


def test_writer_killed_mid_transaction_leaves_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "masks.db"
    n_frames = 400
    with MaskStore(path) as store:
        store.add_samples(make_samples(2, n_frames))
        store.write_sample_masks("clip1/0", [MaskWrite(mask=blob_mask(t)) for t in range(n_frames)], author="ok")
    marker = tmp_path / "parked"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), "clip0/0", str(marker), REPO_ROOT, TESTS_DIR, "300"],
        env=child_env(),
    )
    try:
        wait_for(marker)  # the child is inside the transaction, 300 of 400 rows inserted
        wal = Path(str(path) + "-wal")
        assert wal.exists() and wal.stat().st_size > 8 * 4096  # uncommitted pages really reached the disk
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    with MaskStore(path, create=False) as store:
        assert integrity_check(store) == []
        assert (
            progress_rows(store)
            == counted_rows(store)
            == {("clip0/0", "none"): n_frames, ("clip1/0", "unreviewed"): n_frames}
        )
        assert store.query("SELECT COUNT(*) FROM frames WHERE sample_id='clip0/0' AND head_version<>0") == [(0,)]
        assert store.current_masks("clip0/0") == [None] * n_frames  # none of the sample's masks
        assert store.query(
            "SELECT COUNT(*) FROM masks m JOIN frames f USING (frame_id) WHERE f.sample_id='clip0/0'"
        ) == [(0,)]
        stack, present = read_sample_masks(store, "clip1/0")  # the committed sample is intact
        assert present.all() and all((stack[t] == blob_mask(t)).all() for t in range(n_frames))
        assert ("doomed",) not in store.query("SELECT author FROM audit")
        # the store takes the same write again
        n = store.write_sample_masks(
            "clip0/0", [MaskWrite(mask=blob_mask(t, 7)) for t in range(n_frames)], author="retry"
        )
        assert n == n_frames and [r.version for r in store.current_masks("clip0/0")] == [1] * n_frames
        np.testing.assert_array_equal(store.current_mask("clip0/0/00123.jpg").mask(), blob_mask(123, 7))
