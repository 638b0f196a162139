"""The ordered pool maps behind export and import: order, bounded window, errors, platform fallback."""

from __future__ import annotations

import os
import sys

import pytest

from hmtools.exchange import parallel
from hmtools.exchange.parallel import batched, ordered_map, ordered_process_map


def _square_with_pid(x: int) -> tuple[int, int]:
    if x == 13:
        raise ValueError("thirteen")
    return x * x, os.getpid()


def test_batched_keeps_order_and_a_short_tail() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


@pytest.mark.parametrize("workers", [1, 3])
def test_thread_map_keeps_input_order_within_a_small_window(workers: int) -> None:
    assert list(ordered_map(lambda x: x + 1, range(50), workers, window=4)) == list(range(1, 51))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are used on Linux only")
def test_process_map_runs_in_other_processes_in_order_and_reraises() -> None:
    results = list(ordered_process_map(_square_with_pid, range(12), workers=2, window=3))
    assert [r for r, _ in results] == [x * x for x in range(12)]
    assert {pid for _, pid in results} - {os.getpid()}, "expected work done in forked workers"
    got = []
    with pytest.raises(ValueError, match="thirteen"):
        for r, _ in ordered_process_map(_square_with_pid, range(20), workers=2):
            got.append(r)
    assert got == [x * x for x in range(13)]  # everything before the failing item came back, in order


def test_process_map_falls_back_to_threads_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.sys, "platform", "darwin")
    results = list(ordered_process_map(_square_with_pid, range(8), workers=2))
    assert [r for r, _ in results] == [x * x for x in range(8)]
    assert {pid for _, pid in results} == {os.getpid()}  # threads of this process


def test_one_worker_runs_inline() -> None:
    assert [pid for _, pid in ordered_process_map(_square_with_pid, range(3), workers=1)] == [os.getpid()] * 3


HELD_LOCK_SCRIPT = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import _parallel_lock
from hmtools.exchange.parallel import ordered_process_map

def hold():
    with _parallel_lock.LOCK:  # a thread of the caller's holds a lock while the workers start
        time.sleep(30)

if __name__ == "__main__":
    threading.Thread(target=hold, daemon=True).start()
    time.sleep(0.2)
    print(sum(ordered_process_map(_parallel_lock.square_under_lock, range(8), workers=2)))
"""


def _run_script(tmp_path, script: str, module: str, module_source: str):
    """Run ``script`` (argv[1] = ``tmp_path``) in a fresh interpreter beside ``module``; a minute and a half at most."""
    import subprocess

    (tmp_path / f"{module}.py").write_text(module_source)
    (tmp_path / "run.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(), *sys.path])}
    return subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path)], capture_output=True, text=True, timeout=90, env=env
    )


def test_workers_never_inherit_a_lock_a_caller_thread_holds(tmp_path) -> None:
    """A worker forked straight from the caller copies every lock its threads hold (OpenCV's or torch's
    pools, a prefetch thread) and waits on them forever: workers come from a clean fork server."""
    out = _run_script(
        tmp_path,
        HELD_LOCK_SCRIPT,
        "_parallel_lock",
        "import threading\nLOCK = threading.Lock()\n\ndef square_under_lock(x):\n    with LOCK:\n        return x * x\n",
    )
    assert out.returncode == 0 and out.stdout.strip() == str(sum(x * x for x in range(8))), out.stderr[-2000:]


def _pid(_: int) -> int:
    return os.getpid()


def test_fork_requested_with_only_tqdms_monitor_forks_from_the_caller(tmp_path) -> None:
    """The import command asks for a direct fork (faster); a progress bar leaves tqdm's monitor
    thread running, which must not send the workers to a fork server, which would rerun an
    unguarded script in every worker (BrokenProcessPool)."""
    import subprocess

    from tqdm import tqdm

    script = tmp_path / "run.py"
    script.write_text(
        "import os\nfrom tqdm import tqdm\nfrom hmtools.exchange.parallel import ordered_process_map\n"
        "from test_exchange_parallel import _pid\n"
        "for _ in tqdm(range(3), disable=True):  # any bar leaves tqdm's monitor thread running\n"
        "    pass\n"
        "print('top level ran', flush=True)  # no __main__ guard: a fork server would run this again\n"
        "print(len(set(ordered_process_map(_pid, range(8), workers=2, fork=True)) - {os.getpid()}))\n"
    )
    here = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.getcwd(), *sys.path])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert out.stdout.count("top level ran") == 1 and int(lines[-1]) >= 1, out.stdout
    with tqdm(total=1, disable=True):  # here too: the monitor does not count as a lock holder
        assert not [t for t in parallel._threads_that_may_hold_locks() if type(t).__name__ == "TMonitor"]


OPENCV_POOL_SCRIPT = """
import sys
import cv2, numpy as np
sys.path.insert(0, sys.argv[1])
from hmtools.exchange.parallel import ordered_process_map
import _resize_task

if __name__ == "__main__":
    img = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), np.uint8)
    for _ in range(3):  # OpenCV's worker pool (native threads, invisible to threading) now runs
        cv2.GaussianBlur(cv2.resize(img, (2200, 2200)), (31, 31), 0)
    print(sum(ordered_process_map(_resize_task.work, range(8), workers=2)))
"""


def test_workers_never_fork_from_a_caller_whose_opencv_pool_ran(tmp_path) -> None:
    """After an OpenCV call used its pool, a worker forked straight from the caller hung in its first
    OpenCV call (the pool's state is copied without its threads): by default the workers start
    from the fork server."""
    out = _run_script(
        tmp_path,
        OPENCV_POOL_SCRIPT,
        "_resize_task",
        "import cv2, numpy as np\n\ndef work(i):\n"
        "    return int(cv2.resize(np.full((400, 400, 3), i, np.uint8), (600, 600)).sum() > 0)\n",
    )
    assert out.returncode == 0 and out.stdout.strip() == "7", out.stderr[-2000:]


def test_a_requested_fork_is_refused_once_the_opencv_pool_ran(tmp_path) -> None:
    """``fork=True`` (what the import command asks for) from a process whose OpenCV pool ran: the native
    threads give it away, so the workers come from the fork server instead of hanging (an in-process
    ``hmtools import`` after earlier OpenCV and torch work hung this way in a test run)."""
    out = _run_script(
        tmp_path,
        OPENCV_POOL_SCRIPT.replace("workers=2)", "workers=2, fork=True)"),
        "_resize_task",
        "import cv2, numpy as np\n\ndef work(i):\n"
        "    return int(cv2.resize(np.full((400, 400, 3), i, np.uint8), (600, 600)).sum() > 0)\n",
    )
    assert out.returncode == 0 and out.stdout.strip() == "7", out.stderr[-2000:]


def test_fork_is_judged_unsafe_with_torch_loaded() -> None:
    import torch  # noqa: F401  (its OpenMP pool cannot be seen from threading)

    assert parallel._fork_is_safe() is False
