"""Locks, statistics, audit trail and integrity checks of the store (hmtools.store_admin)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _store_fixtures import blob_mask, make_samples, raw_connect

from hmtools.errors import InputError, LockedError
from hmtools.masks import encode_rle
from hmtools.store import MaskStore
from hmtools.store_admin import (
    acquire_lock,
    audit_log,
    get_config,
    integrity_check,
    iter_current,
    lock_holder,
    put_config,
    release_lock,
    store_stats,
)
from hmtools.store_types import MaskWrite


@pytest.fixture
def store(tmp_path: Path) -> MaskStore:
    s = MaskStore(tmp_path / "masks.db")
    s.add_samples(make_samples(3, 4))
    s.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t), score=0.9) for t in range(4)], author="build")
    yield s
    s.close()


def test_lock_acquire_renew_release(store: MaskStore) -> None:
    lock = acquire_lock(store, "clip0/0", "ann", ttl_s=60)
    assert lock.owner == "ann" and lock_holder(store, "clip0/0") == lock
    with pytest.raises(LockedError, match="being edited by ann"):
        acquire_lock(store, "clip0/0", "bob")
    renewed = acquire_lock(store, "clip0/0", "ann", ttl_s=120)  # the owner renews
    assert renewed.expires_at > lock.expires_at
    assert release_lock(store, "clip0/0", "bob") is False  # not bob's to release
    assert lock_holder(store, "clip0/0").owner == "ann"
    assert release_lock(store, "clip0/0", "ann") is True
    assert lock_holder(store, "clip0/0") is None
    assert acquire_lock(store, "clip0/0", "bob").owner == "bob"
    actions = [e["action"] for e in audit_log(store, "clip0/0")]
    assert actions[:5] == ["lock", "unlock", "lock", "lock", "write_sample_masks"]


def test_lock_expiry(store: MaskStore) -> None:
    acquire_lock(store, "clip1/0", "ann", ttl_s=0.2)
    with pytest.raises(LockedError):
        acquire_lock(store, "clip1/0", "bob")
    time.sleep(0.3)
    assert lock_holder(store, "clip1/0") is None
    assert acquire_lock(store, "clip1/0", "bob").owner == "bob"  # an expired lease is taken over


def test_lock_bad_input(store: MaskStore) -> None:
    with pytest.raises(InputError, match="no sample"):
        acquire_lock(store, "nope", "ann")
    with pytest.raises(InputError, match="positive"):
        acquire_lock(store, "clip0/0", "ann", ttl_s=0)


def test_stats(store: MaskStore) -> None:
    store.set_status({"clip0/0/00000.jpg": 1}, "flagged", author="rev", reason="leg cut off; blur")
    store.set_status({"clip0/0/00001.jpg": 1}, "flagged", author="rev", reason="blur")
    key = "clip1/0/00000.jpg"
    store.put_mask(key, MaskWrite(mask=blob_mask(1), source="human", status="accepted"), author="a", expected_version=0)
    stats = store_stats(store)
    assert stats["samples"] == 3 and stats["frames"] == 12 and stats["frames_with_mask"] == 5
    assert stats["by_source"] == {"auto": 4, "propagated": 0, "human": 1, "imported": 0}
    assert stats["by_status"] == {"unreviewed": 2, "flagged": 2, "accepted": 1, "rejected": 0}
    assert stats["flag_reasons"] == {"blur": 2, "leg cut off": 1}


def test_configs_and_audit(store: MaskStore) -> None:
    put_config(store, "h1", {"detector": "yolo11n"})
    put_config(store, "h1", {"detector": "other"})  # idempotent: the first body stays
    assert get_config(store, "h1") == {"detector": "yolo11n"} and get_config(store, "h2") is None
    store.audit("ann", "open", "clip2/0", {"frame": 3})
    entry = audit_log(store, limit=1)[0]
    assert (entry["author"], entry["action"], entry["sample_id"], entry["detail"]) == (
        "ann",
        "open",
        "clip2/0",
        {"frame": 3},
    )


def test_iter_current_streams_in_order(store: MaskStore) -> None:
    rows = list(iter_current(store, statuses=("unreviewed",)))
    assert [(s, f.idx) for s, f, _ in rows] == [(f"clip{i}/0", t) for i in range(3) for t in range(4)]
    assert sum(rec is not None for _, _, rec in rows) == 4


def test_integrity_check_is_clean_then_finds_corruption(store: MaskStore, tmp_path: Path) -> None:
    assert integrity_check(store) == []
    raw = raw_connect(tmp_path / "masks.db")
    frame_id = raw.execute("SELECT frame_id FROM frames WHERE key='clip2/0/00000.jpg'").fetchone()[0]
    good = encode_rle(blob_mask(0))
    insert = (
        "INSERT INTO masks (frame_id, version, height, width, counts, area, bbox, source, status, author, created_at) "
        "VALUES (?,?,?,?,?,?,?,'auto','unreviewed','raw',0)"
    )
    raw.execute(insert, (frame_id, 1, 24, 32, good["counts"][:-1] + "1", 10, None))  # counts disagree with size
    raw.execute("UPDATE frames SET head_version=1, height=24, width=32 WHERE frame_id=?", (frame_id,))
    frame_id = raw.execute("SELECT frame_id FROM frames WHERE key='clip2/0/00001.jpg'").fetchone()[0]
    raw.execute(insert, (frame_id, 1, 24, 32, good["counts"], 1, None))  # wrong area and box
    raw.execute("UPDATE frames SET head_version=3, height=24, width=32 WHERE frame_id=?", (frame_id,))  # no v2, v3
    raw.close()
    problems = integrity_check(store, chunk=2)  # small chunks: the paging code runs too
    text = "\n".join(problems)
    assert "clip2/0/00000.jpg v1: RLE counts" in text and "runs cover" in text
    assert "clip2/0/00001.jpg v1: stored area 1" in text
    assert "clip2/0/00001.jpg: head version 3 but newest stored version is 1" in text
    assert len(problems) == 3


def test_review_status_changes_are_in_the_samples_audit_trail(store: MaskStore) -> None:
    store.set_status({"clip0/0/00000.jpg": 1, "clip0/0/00001.jpg": 1}, "accepted", author="rev")
    entry = audit_log(store, "clip0/0", limit=1)[0]
    assert (entry["author"], entry["action"], entry["detail"]["status"]) == ("rev", "set_status", "accepted")
