"""Store queries at FineDiving scale: what one annotator interaction, ``stats``, ``validate`` and an
export's streaming read cost when the store holds a whole dataset.

Builds (unless ``--reuse`` and it exists) a synthetic store of ``--samples`` FineDiving-like samples
(default 3000, ~104 frames each: 312,256 frames at 3000) of 455x256 rectangle masks, written with
``MaskStore.write_sample_masks`` (one call per sample; ~5% of frames built ``flagged``), then reviews it
with ``MaskStore.set_status`` the way annotators would: ~20% of frames get a second version (accepted or
rejected), ~3% a third and fourth one, so a frame holds 1-4 versions. A few samples are leased by other
annotators. Then it times, on that store, the store calls each annotator interaction makes (through
``annotator_app.session`` / ``review_queue``, with no rendering), and the reports.

Run::

    PYTHONPATH=. python benchmarks/store_scale.py                  # full scale (a few minutes to build)
    PYTHONPATH=. python benchmarks/store_scale.py --samples 50 --out /tmp/scale/small.db

Prints the machine, the store's size and one line per query: median and max ms over ``--repeat`` runs
(reports once). ``--explain`` also prints ``EXPLAIN QUERY PLAN`` of every SQL statement an interaction
ran and marks full scans of ``frames`` or ``masks``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from annotator_app import review_queue, session
from annotator_app.backend import FakeBackend
from annotator_app.frames import FrameSource
from annotator_app.state import AppContext, SessionState
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_admin import (
    acquire_lock,
    integrity_check,
    iter_current,
    lock_holder,
    read_sample_masks,
    store_stats,
)
from hmtools.store_types import MaskWrite

H, W = 256, 455
FINEDIVING_SAMPLES, FINEDIVING_FRAMES = 3000, 312_256
REASONS = ("low score", "area jump", "no detection; low score")


def frame_counts(n_samples: int) -> list[int]:
    """Frames per sample: 104 or 105, summing to FineDiving's frames-per-sample ratio (312,256 at 3000)."""
    total = round(n_samples * FINEDIVING_FRAMES / FINEDIVING_SAMPLES)
    extra = total - 104 * n_samples
    return [104 + (i < extra) for i in range(n_samples)]


def rect_masks(n: int, rng: random.Random) -> np.ndarray:
    """``(n, H, W)`` bool: one rectangle "diver" per frame, moving down the frame."""
    out = np.zeros((n, H, W), dtype=bool)
    x0, w, h = rng.randrange(100, 300), rng.randrange(30, 60), rng.randrange(60, 100)
    for t in range(n):
        y0 = min(H - h, 10 + t)
        out[t, y0 : y0 + h, x0 : x0 + w] = True
    return out


def build(path: Path, n_samples: int, seed: int = 0) -> dict[str, float]:
    """Write the synthetic store at ``path`` (replacing one there); returns counts and the build time."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    counts = frame_counts(n_samples)
    samples = [
        Sample(
            sample_id=f"FINADivingWorldCup2021_Men3m_final_r{i // 100}/{i % 100}",
            dataset="finediving",
            frames=tuple(f"FINADivingWorldCup2021_Men3m_final_r{i // 100}/{i % 100}/{t:05d}.jpg" for t in range(n)),
            split="test" if i % 4 == 3 else "train",
            score=50.0 + i % 40,
            difficulty=3.0,
            action="407c",
        )
        for i, n in enumerate(counts)
    ]
    with MaskStore(path) as store:
        store.add_samples(samples, author="build-masks")
        for s in samples:
            n = len(s.frames)
            flagged = {t for t in range(n) if rng.random() < 0.05}
            writes = [
                MaskWrite(
                    mask=m,
                    score=round(rng.uniform(0.5, 1.0), 3),
                    status="flagged" if t in flagged else "unreviewed",
                    reason=rng.choice(REASONS) if t in flagged else None,
                )
                for t, m in enumerate(rect_masks(n, rng))
            ]
            store.write_sample_masks(s.sample_id, writes, author="build-masks", build_config="cfg0")
            reviewed = [t for t in range(n) if t not in flagged and rng.random() < 0.21]
            accepted = {s.frames[t]: 1 for t in reviewed if rng.random() < 0.75}
            rejected = {s.frames[t]: 1 for t in reviewed if s.frames[t] not in accepted}
            if accepted:
                store.set_status(accepted, "accepted", author="ann1")
            if rejected:
                store.set_status(rejected, "rejected", author="ann1", reason="wrong athlete")
            again = {k: 2 for k in rejected if rng.random() < 0.6}  # ~3% of frames: reviewed twice more
            if again:
                store.set_status(again, "flagged", author="ann2", reason="second opinion")
                store.set_status(dict.fromkeys(again, 3), "accepted", author="ann1")
        for i in range(0, n_samples, max(3, n_samples // 30)):  # ~30 samples leased by others
            acquire_lock(store, samples[i].sample_id, f"other{i % 3}", ttl_s=86400)
        frames, masks = store.query("SELECT (SELECT COUNT(*) FROM frames), (SELECT COUNT(*) FROM masks)")[0]
    return {"samples": n_samples, "frames": frames, "masks": masks, "build_s": time.perf_counter() - t0}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and max wall time of ``fn`` in ms."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


class Bench:
    """Runs the interactions against one store, recording times and (with ``explain``) query plans."""

    def __init__(self, store: MaskStore, repeat: int, explain: bool, seed: int = 1):
        self.store, self.repeat, self.explain = store, repeat, explain
        self.rng = random.Random(seed)
        self.ids = store.sample_ids()
        locked = {r[0] for r in store.query("SELECT sample_id FROM locks")}
        self.free = [s for s in self.ids if s not in locked]
        self.rows: list[tuple[str, float, float]] = []
        self._tmp = tempfile.TemporaryDirectory()
        self.ctx = AppContext(store=store, frames=FrameSource(self._tmp.name), backend=FakeBackend())
        self.state = SessionState(user="bench")

    def run(self, name: str, fn: Callable[[], object], repeat: int | None = None) -> None:
        fn()  # warm: the first call of a query pays for reading its pages
        med, worst = timed(fn, repeat or self.repeat)
        self.rows.append((name, med, worst))
        print(f"  {name:<52} {med:9.2f} {worst:9.2f}", flush=True)
        if self.explain:
            self.plan(fn)

    def plan(self, fn: Callable[[], object]) -> None:
        """Print the query plan of each distinct statement ``fn`` runs; mark full scans."""
        seen: list[str] = []
        conn = self.store._conn
        conn.set_trace_callback(lambda sql: seen.append(sql))
        try:
            fn()
        finally:
            conn.set_trace_callback(None)
        distinct = {re.sub(r"'[^']*'|\b\d+(?:\.\d+)?\b", "?", sql): sql for sql in seen}  # one per statement
        for sql in distinct.values():
            if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE")):
                continue
            plan = [r[3] for r in self.store.query("EXPLAIN QUERY PLAN " + sql)]
            full = any(re.match(r"SCAN (f|m|frames|masks)\b", p) for p in plan)
            print(f"      {'FULL SCAN: ' if full else ''}{' '.join(sql.split())[:140]}")
            print(f"        plan: {' | '.join(plan)}")

    def some_sample(self) -> str:
        """A random sample no other annotator holds."""
        return self.free[self.rng.randrange(len(self.free))]

    def interactions(self) -> None:
        ctx, st, rng = self.ctx, self.state, self.rng
        print(f"  {'per interaction (annotator)':<52} {'median ms':>9} {'max ms':>9}")

        def open_sample() -> None:
            session.open_sample(ctx, st, self.some_sample())

        self.run("open a sample (lease + frames + heads)", open_sample)
        self.run("store.get_sample", lambda: self.store.get_sample(self.some_sample()))
        self.run("store.current_masks (the view, per action)", lambda: self.store.current_masks(st.sample_id or ""))

        def goto() -> None:
            session.keep_lock(ctx, st)
            st.frame_idx = rng.randrange(len(st.keys))
            self.store.current_masks(st.sample_id or "")

        self.run("go to a frame (lease check + view's heads)", goto)
        self.run("store.current_mask (brush load / check)", lambda: self.store.current_mask(st.keys[st.frame_idx]))
        mask = np.zeros((H, W), dtype=bool)
        mask[40:120, 200:240] = True

        def save_edit() -> None:
            session.keep_lock(ctx, st)
            session.save_mask(ctx, st, rng.randrange(len(st.keys)), mask, score=0.9)

        self.run("save a click/brush edit (put_mask)", save_edit)

        def accept(n: int) -> Callable[[], None]:
            def fn() -> None:
                session.keep_lock(ctx, st)
                first = rng.randrange(max(1, len(st.keys) - n + 1))
                session.set_status(ctx, st, list(range(first, first + n)), "accepted")

            return fn

        self.run("accept a frame (set_status)", accept(1))
        self.run("accept a range of 20 frames", accept(20))
        self.run("accept a whole sample (~104 frames)", accept(len(st.keys)))

        def save_propagation() -> None:
            first = rng.randrange(len(st.keys) - 10)
            session.save_masks(ctx, st, {i: mask for i in range(first, first + 10)}, {}, "propagated")

        self.run("save a propagation of 10 frames", save_propagation)

        def undo_redo() -> None:
            session.undo(ctx, st)
            session.redo(ctx, st)

        for _ in range(self.repeat + 1):  # enough undo steps for every run
            save_edit()
        self.run("undo + redo of one edit (history + write x2)", undo_redo)
        self.run("lock_holder (info line)", lambda: lock_holder(self.store, st.sample_id or ""))
        for filt in review_queue.QUEUE_FILTERS:
            self.run(f"queue refresh, filter {filt!r}", lambda f=filt: review_queue.queue_rows(self.store, None, f))
        self.run(
            "queue refresh, split 'test', 'has flagged'",
            lambda: review_queue.queue_rows(self.store, "test", "has flagged"),
        )
        self.run("next flagged (from nowhere)", lambda: review_queue.next_flagged(self.store, None, "bench"))

        def next_from_random() -> None:
            sid = self.some_sample()
            review_queue.next_flagged(self.store, (sid, rng.randrange(100)), "bench")

        self.run("next flagged (after a random frame)", next_from_random)
        self.run(
            "next flagged, split 'test'",
            lambda: review_queue.next_flagged(self.store, (self.ids[0], 0), "bench", "test"),
        )
        self.run(
            "next flagged (after the last frame: wraps)",
            lambda: review_queue.next_flagged(self.store, (self.ids[-1], 999), "bench"),
        )
        # none left: the common case once a split is reviewed; a split no sample has stands in for it
        self.run(
            "next flagged, none left (split with none)",
            lambda: review_queue.next_flagged(self.store, (self.ids[0], 0), "bench", "val"),
        )
        session.release(ctx, st)

    def reports(self, export_samples: int) -> None:
        print(f"  {'reports (run once)':<52} {'ms':>9}")
        self.run("hmtools stats (store_stats)", lambda: store_stats(self.store), repeat=1)
        ids = self.ids[:export_samples]

        def stream() -> None:
            for _ in iter_current(self.store, ids):
                pass

        self.run(f"export stream: iter_current over {len(ids)} samples", stream, repeat=1)
        self.run("export: read_sample_masks of one sample", lambda: read_sample_masks(self.store, self.some_sample()))
        self.run("hmtools validate STORE (integrity_check)", lambda: integrity_check(self.store), repeat=1)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=FINEDIVING_SAMPLES, help="samples to build (default 3000)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/scale/store.db"), help="store file to build")
    ap.add_argument("--reuse", action="store_true", help="reuse the store at --out if it exists")
    ap.add_argument("--repeat", type=int, default=15, help="runs per interaction (median and max)")
    ap.add_argument("--export-samples", type=int, default=None, help="samples streamed (default all)")
    ap.add_argument("--skip-reports", action="store_true", help="time only the interactions")
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN QUERY PLAN of every statement")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    if args.reuse and args.out.is_file():
        print(f"reusing {args.out}")
    else:
        info = build(args.out, args.samples)
        print(
            f"built {args.out}: {info['samples']} samples, {info['frames']} frames, {info['masks']} mask versions "
            f"in {info['build_s']:.0f} s"
        )
    with sqlite3.connect(args.out) as raw:
        before = raw.execute("PRAGMA user_version").fetchone()[0]
    t0 = time.perf_counter()
    with MaskStore(args.out, create=False) as store:
        after = store.query("PRAGMA user_version")[0][0]
        migrated = f", migrating schema {before} -> {after}" if before != after else ""
        print(f"opened in {(time.perf_counter() - t0) * 1000:.0f} ms{migrated}")
        frames, masks, samples = store.query(
            "SELECT (SELECT COUNT(*) FROM frames), (SELECT COUNT(*) FROM masks), (SELECT COUNT(*) FROM samples)"
        )[0]
        size = sum(os.path.getsize(f"{args.out}{s}") for s in ("", "-wal") if os.path.exists(f"{args.out}{s}"))
        print(f"store: {samples} samples, {frames} frames, {masks} mask versions, {size / 2**20:.0f} MiB")
        bench = Bench(store, args.repeat, args.explain)
        bench.interactions()
        if not args.skip_reports:
            bench.reports(args.export_samples or samples)


if __name__ == "__main__":
    main()
