"""Ordered, bounded pool maps for per-frame work.

:func:`ordered_map` uses threads: OpenCV's image codecs, file I/O and hashlib release the GIL,
so threads overlap decoding, encoding and disk access. :func:`ordered_process_map` uses worker
processes (forked from the caller, or from a clean fork server when the caller runs threads), for work that holds the GIL for a good part of its time (NumPy RLE encoding on
small arrays next to image decoding). In both, the window bounds how many results wait in memory.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Threads to use: the CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int = 256) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in input order, with at most ``window`` in flight.

    With ``workers <= 1`` it runs inline. An exception in ``fn`` is raised when its result is
    reached; pending work is cancelled.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hmtools-io") as pool:
        yield from _drain(pool, fn, items, window)


def ordered_process_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, window: int = 8, fork: bool = False
) -> Iterator[R]:
    """:func:`ordered_map` in ``workers`` processes on Linux (threads elsewhere: Windows has no
    ``fork``, and on macOS forking after system frameworks have started is unsafe).

    The workers start from a fork server (a fresh process with NumPy, OpenCV and ``fn``'s module
    preloaded; a calling script needs the usual ``if __name__ == "__main__":`` guard). A fork
    straight from the caller copies the state of every thread it runs, native ones included: the
    locks its Python threads hold, and OpenCV's worker pool once any OpenCV call has used it, after
    which a worker's first OpenCV call waits forever. ``fork=True`` is for a caller that knows it
    has done neither (the ``hmtools import`` command, 20-30% faster): it forks directly only when
    :func:`_fork_is_safe` finds no other Python thread but tqdm's monitor, no torch and no more native
    threads than NumPy and OpenCV start at import. OpenCV's own pool is switched off in every
    worker. ``fn`` must be a module-level
    function; items and results travel pickled, so give each task a batch of work and return
    compact results. An exception in ``fn`` is raised in the caller when its result is reached; a
    child that dies raises ``BrokenProcessPool``.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    if not sys.platform.startswith("linux"):
        yield from ordered_map(fn, items, workers, window)
        return
    # forked directly: 20-30% faster for an import (measured: benchmarks/export_throughput.py)
    if fork and _fork_is_safe():
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["numpy", "cv2", fn.__module__])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread_per_worker) as pool:
        yield from _drain(pool, fn, items, window)


def _fork_is_safe() -> bool:
    """Whether forking this process directly is safe: no Python thread but tqdm's monitor, torch not
    loaded (its OpenMP pool), and no more native threads than a fresh process with NumPy and OpenCV
    imported has (BLAS's pool: up to one per CPU; OpenCV: one). A started OpenCV pool (another thread
    per CPU) or any other library's threads fail the count, and the workers then come from the fork
    server: slower to start, never stuck on a lock copied from a thread (seen in a test process that
    had run torch and OpenCV work before an in-process ``hmtools import``)."""
    if _threads_that_may_hold_locks() or "torch" in sys.modules:
        return False
    try:
        native = len(os.listdir("/proc/self/task"))
    except OSError:
        return False
    return native <= threading.active_count() + default_workers()


def _threads_that_may_hold_locks() -> list[threading.Thread]:
    """The caller's other threads, but tqdm's monitor: it only ever takes tqdm's own lock, which the
    workers never use, and any progress bar (even a disabled one, in an export before an import)
    starts it and leaves it running for the life of the process."""
    monitor = sys.modules.get("tqdm._monitor")
    harmless = (monitor.TMonitor,) if monitor is not None else ()
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not isinstance(t, harmless)]


def _one_thread_per_worker() -> None:
    """In a worker process: OpenCV without its thread pool (the processes are the parallelism;
    N processes x N OpenCV threads would oversubscribe the CPUs, and a pool inherited through
    fork has no threads behind it)."""
    import cv2

    cv2.setNumThreads(1)


def _drain(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """Submit ``fn(item)`` with at most ``window`` in flight; yield results in order; cancel the rest on exit."""
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
