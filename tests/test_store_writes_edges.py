"""Edges of the store's write path: stores this process cannot write, compare-and-set maps that
name frames the sample lacks, the time order of versions, audit rows, and sizes with no pixels.

The tests run as root in CI, and root ignores permission bits (``os.access`` says yes), so the
unwritable-store tests fake ``os.access`` where the store checks it; one more test drops root's
override (``setpriv`` without CAP_DAC_OVERRIDE, or a plain user) and chmods for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _store_fixtures import H, W, blob_mask, child_env, file_state, make_samples

import hmtools.store as store_module
import hmtools.store_open as store_open
from hmtools.errors import InputError, StaleVersionError
from hmtools.store import MaskStore
from hmtools.store_admin import audit_log
from hmtools.store_types import MaskWrite

S0 = "clip0/0"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MaskStore]:
    s = MaskStore(tmp_path / "masks.db")
    s.add_samples(make_samples(2, 6))
    s.write_sample_masks(S0, [MaskWrite(mask=blob_mask(t)) for t in range(6)], author="build")
    yield s
    s.close()


def counts(store: MaskStore) -> tuple[int, int]:
    """(mask versions, audit rows): both unchanged when a write is refused."""
    return store.query("SELECT COUNT(*) FROM masks")[0][0], store.query("SELECT COUNT(*) FROM audit")[0][0]


def closed_store(path: Path) -> Path:
    with MaskStore(path) as s:
        s.add_samples(make_samples(1, 3))
        s.write_sample_masks(S0, [MaskWrite(mask=blob_mask(t)) for t in range(3)], author="build")
    return path


def deny_write(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """``os.access(denied, W_OK)`` is false from now on (a chmod 444 file / 555 folder for a non-root user)."""
    real = os.access

    def access(p: str | os.PathLike[str], mode: int, **kw: object) -> bool:
        if Path(p).resolve() == denied.resolve() and mode & os.W_OK:
            return False
        return real(p, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store_open.os, "access", access)


# -- a store this process may read but not write ------------------------------------------------


def test_a_read_only_store_file_is_refused_when_opened_for_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite opened a 444 file read-only without a word: the writer failed at its first write with
    sqlite3's "attempt to write a readonly database", after the command had done its work."""
    path = closed_store(tmp_path / "masks.db")
    before = file_state(path)
    deny_write(monkeypatch, path)
    for create in (True, False):
        with pytest.raises(InputError) as info:
            MaskStore(path, create=create)
        msg = str(info.value)
        assert "cannot open mask store" in msg and "read-only" in msg and f"chmod u+w {path}" in msg, msg
        assert "writable folder" in msg and "\n" not in msg
    with MaskStore(path, read_only=True) as ro:  # stats, validate, export still read it
        assert ro.sample_ids() == [S0] and ro.current_mask("clip0/0/00002.jpg") is not None
    assert file_state(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["masks.db"]


def test_a_store_in_a_read_only_folder_is_refused_when_opened_for_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = closed_store(tmp_path / "shared" / "masks.db")
    link = tmp_path / "mine.db"  # a symlink: SQLite writes beside the target, so its folder is checked
    link.symlink_to(path)
    deny_write(monkeypatch, path.parent)
    for p in (path, link):
        with pytest.raises(InputError, match="folder .*shared is not writable.*-wal/-shm.*chmod u\\+w"):
            MaskStore(p, create=False)
    with pytest.raises(InputError, match="is not writable") as info:  # a new store there: no "readers" advice
        MaskStore(path.parent / "new.db")
    assert "only read" not in str(info.value) and not (path.parent / "new.db").exists()
    with MaskStore(link, read_only=True) as ro:
        assert ro.sample_ids() == [S0]


def test_a_read_only_wal_file_beside_the_store_is_refused_when_opened_for_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A -wal left by another user's writer (or copied read-only) let the store open, then every write failed."""
    path = closed_store(tmp_path / "masks.db")
    with MaskStore(path, create=False) as writer:  # an annotator of another user is at work: -wal exists
        writer.add_samples(make_samples(1, 3, prefix="more"))
        wal = Path(f"{path}-wal")
        assert wal.exists()
        deny_write(monkeypatch, wal)
        with pytest.raises(InputError, match="masks.db-wal beside it is read-only.*chmod u\\+w"):
            MaskStore(path, create=False)
        with MaskStore(path, read_only=True) as ro:
            assert ro.sample_ids() == [S0, "more0/0"]


def test_a_store_under_a_file_is_one_input_error(tmp_path: Path) -> None:
    """``mkdir`` of the store's folder raised a bare FileExistsError traceback."""
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="cannot create the folder of mask store .*notes.txt/run/masks.db"):
        MaskStore(tmp_path / "notes.txt" / "run" / "masks.db")


def _without_root_powers() -> list[str] | None:
    """Command prefix that runs a child without permission overrides, or ``None`` where none works."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    caps = "-dac_override,-dac_read_search,-fowner"
    prefix = ["setpriv", "--bounding-set", caps, "--inh-caps", caps]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


CHILD = """
import sys
from hmtools.errors import InputError
from hmtools.store import MaskStore
try:
    MaskStore(sys.argv[1], create=False)
    print("opened for writing")
except InputError as e:
    print("refused:", e)
with MaskStore(sys.argv[1], read_only=True) as ro:
    print("read", ro.sample_ids())
"""


def test_real_permissions_refuse_the_writer_at_open(tmp_path: Path) -> None:
    """Without the fake: a chmod 444 store opened by a process that may not write it (root without
    CAP_DAC_OVERRIDE here). Before the fix it printed "opened for writing"."""
    prefix = _without_root_powers()
    if prefix is None:
        pytest.skip("no way to run a child without root's permission override (setpriv)")
    path = closed_store(tmp_path / "masks.db")
    path.chmod(0o444)
    try:
        out = subprocess.run(
            [*prefix, sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=child_env()
        )
    finally:
        path.chmod(0o644)
    assert out.returncode == 0, out.stderr
    assert "refused: cannot open mask store" in out.stdout and "read-only here" in out.stdout, out.stdout
    assert f"read ['{S0}']" in out.stdout


# -- compare-and-set maps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "match"),
    [
        ({0: 1, 99: 5}, "does not have \\(99\\)"),  # out of range: was skipped and the write went through
        ({0: 1, -1: 0}, "does not have \\(-1\\)"),
        ({0: 1, "clip0/0/00003.jpg": 1}, "does not have \\('clip0/0/00003.jpg'\\)"),  # a key, as set_status takes
        ({True: 1}, "does not have \\(True\\)"),
        ({0: -1}, "whole numbers >= 0.*frame 0: -1"),
        ({0: "1"}, "whole numbers >= 0.*frame 0: '1'"),
    ],
)
def test_expected_versions_naming_frames_the_sample_lacks_are_refused(
    store: MaskStore, expected: dict[object, object], match: str
) -> None:
    before = counts(store)
    with pytest.raises(InputError, match=match):
        store.write_sample_masks(
            S0, [MaskWrite(mask=blob_mask(5), frame_idx=0)], author="a", expected_versions=expected
        )
    assert counts(store) == before


def test_expected_versions_of_frames_not_written_are_checked(store: MaskStore) -> None:
    """build-masks passes every frame's head: a frame edited meanwhile stops the whole write."""
    store.put_mask("clip0/0/00003.jpg", MaskWrite(mask=blob_mask(9), source="human"), author="ann", expected_version=1)
    before = counts(store)
    with pytest.raises(StaleVersionError, match="frame 3 is at version 2, not 1"):
        store.write_sample_masks(
            S0, [MaskWrite(mask=blob_mask(5), frame_idx=0)], author="b", expected_versions={0: 1, 3: 1}
        )
    assert counts(store) == before
    heads = {i: np.int64(2 if i == 3 else 1) for i in range(6)}  # numpy ints, as from an array of heads
    assert (
        store.write_sample_masks(S0, [MaskWrite(mask=blob_mask(5), frame_idx=0)], author="b", expected_versions=heads)
        == 1
    )
    assert [f.head_version for f in store.frames(S0)] == [2, 1, 1, 2, 1, 1]


# -- time order, audit rows -----------------------------------------------------------------------


def test_versions_are_stamped_when_the_write_lock_is_held(store: MaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time was taken before waiting for the lock: a write that waited behind another writer got
    an older created_at than the version before it."""
    clock = [1000.0]
    monkeypatch.setattr(store_module.time, "time", lambda: clock[0])
    real = store.transaction

    @contextmanager
    def granted_late() -> Iterator[object]:
        with real() as c:
            clock[0] = 2000.0  # another writer held the lock until now
            yield c

    monkeypatch.setattr(store, "transaction", granted_late)
    store.write_sample_masks(S0, [MaskWrite(mask=blob_mask(1), frame_idx=1)], author="late", build_config="cfg")
    rec = store.current_mask("clip0/0/00001.jpg")
    assert rec is not None and (rec.author, rec.created_at) == ("late", 2000.0)
    assert store.query("SELECT built_at FROM samples WHERE sample_id=?", (S0,)) == [(2000.0,)]


def test_writes_that_change_nothing_add_no_audit_row(store: MaskStore) -> None:
    before = counts(store)
    assert store.write_sample_masks(S0, [], author="ann") == 0
    assert store.set_status({}, "accepted", author="ann") == {}
    assert counts(store) == before
    store.write_sample_masks(S0, [], author="build", build_config="cfg")  # marks the sample built: logged
    assert audit_log(store, S0, limit=1)[0]["detail"] == {"masks": 0, "config": "cfg"}


def test_a_review_across_samples_is_in_each_samples_audit_trail(store: MaskStore) -> None:
    """One row with sample_id NULL left both samples' trails without the review."""
    store.write_sample_masks("clip1/0", [MaskWrite(mask=blob_mask(t)) for t in range(6)], author="build")
    keys = {"clip0/0/00000.jpg": 1, "clip0/0/00001.jpg": 1, "clip1/0/00004.jpg": 1}
    assert store.set_status(keys, "accepted", author="rev") == dict.fromkeys(keys, 2)
    for sample, n in ((S0, 2), ("clip1/0", 1)):
        entry = audit_log(store, sample, limit=1)[0]
        assert (entry["action"], entry["author"], entry["detail"]) == (
            "set_status",
            "rev",
            {"status": "accepted", "frames": n},
        )


# -- sizes and pixel values -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(0, W), (H, 0), (-3, W), (24.5, W), (True, W), ("24", W)])
def test_frame_sizes_must_be_whole_pixels(tmp_path: Path, size: tuple[object, object]) -> None:
    with MaskStore(tmp_path / "m.db") as s:
        s.add_samples(make_samples(1, 2))
        with pytest.raises(InputError, match="whole pixels >= 1"):
            s.set_frame_sizes({"clip0/0/00000.jpg": (H, W), "clip0/0/00001.jpg": size})  # type: ignore[dict-item]
        assert [(f.height, f.width) for f in s.frames(S0)] == [(None, None), (None, None)]  # all or nothing


@pytest.mark.parametrize(
    "write",
    [MaskWrite(mask=np.zeros((0, W), bool)), MaskWrite(rle={"size": [0, W], "counts": "0"})],
    ids=["array", "rle"],
)
def test_a_mask_without_pixels_is_refused(tmp_path: Path, write: MaskWrite) -> None:
    """A 0-row mask was stored and fixed the frame's size at 0xW: every real mask was refused after."""
    with MaskStore(tmp_path / "m.db") as s:
        s.add_samples(make_samples(1, 2))
        with pytest.raises(InputError, match="has no pixels"):
            s.write_sample_masks(S0, [MaskWrite(mask=blob_mask(0)), write], author="a")
        assert [(f.height, f.head_version) for f in s.frames(S0)] == [(None, 0), (None, 0)]


def test_soft_masks_must_be_thresholded(store: MaskStore) -> None:
    """Nonzero = foreground made a probability map (never exactly 0) a mask of the whole frame."""
    prob = np.full((H, W), 0.02) + 0.9 * blob_mask(2)
    nan = blob_mask(2).astype(np.float32)
    nan[0, 0] = np.nan
    before = counts(store)
    for soft in (prob, nan):
        with pytest.raises(InputError, match="only 0 and 1.*threshold it first"):
            store.write_sample_masks(S0, [MaskWrite(mask=soft, frame_idx=2)], author="a")
    assert counts(store) == before
    ok = [
        MaskWrite(mask=blob_mask(2).astype(np.float32), frame_idx=2),
        MaskWrite(mask=blob_mask(3) * np.uint8(255), frame_idx=3),
    ]
    store.write_sample_masks(S0, ok, author="a")  # 0/1 floats and 0/255 bytes are binary masks
    for t in (2, 3):
        np.testing.assert_array_equal(store.current_mask(f"clip0/0/0000{t}.jpg").mask(), blob_mask(t))


def test_a_full_disk_when_the_store_is_created_is_not_blamed_on_the_folder(tmp_path: Path, monkeypatch) -> None:
    """Creating (or upgrading) a store on a full disk said "its folder must be writable", exit 2: a
    wrong hint. Now: the disk is full, exit 1 (not bad input), and nothing half-made is read as a store."""
    import sqlite3

    from hmtools.errors import HMToolsError

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_open, "migrate", full)
    with pytest.raises(HMToolsError, match=r"the disk holding it is full .*free some space") as err:
        MaskStore(tmp_path / "new.db")
    assert err.value.exit_code == 1 and "must be writable" not in str(err.value)
