"""MaskStore writes and reads on a real SQLite file: versions, compare-and-set, atomicity, history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from _store_fixtures import H, W, blob_mask, make_samples, raw_connect

from hmtools.errors import InputError, StaleVersionError
from hmtools.masks import encode_rle
from hmtools.store import MaskStore
from hmtools.store_admin import audit_log, read_sample_masks
from hmtools.store_types import MaskWrite


@pytest.fixture
def store(tmp_path: Path) -> MaskStore:
    s = MaskStore(tmp_path / "masks.db")
    s.add_samples(make_samples(2, 6))
    yield s
    s.close()


def n_masks(store: MaskStore) -> int:
    return store.query("SELECT COUNT(*) FROM masks")[0][0]


def test_write_sample_and_read_back(store: MaskStore) -> None:
    masks = [blob_mask(t) for t in range(6)]
    n = store.write_sample_masks(
        "clip0/0", [MaskWrite(mask=m, score=0.8) for m in masks], author="build", build_config="abc123"
    )
    assert n == 6 and store.build_config("clip0/0") == "abc123"
    recs = store.current_masks("clip0/0")
    assert [r.version for r in recs] == [1] * 6
    for rec, m in zip(recs, masks, strict=True):
        np.testing.assert_array_equal(rec.mask(), m)
        assert (rec.source, rec.status, rec.author, rec.score) == ("auto", "unreviewed", "build", 0.8)
        assert rec.area == int(m.sum()) and rec.bbox is not None
    stack, present = read_sample_masks(store, "clip0/0")
    assert stack.shape == (6, H, W) and present.all()
    np.testing.assert_array_equal(stack, np.stack(masks))
    assert [(f.height, f.width) for f in store.frames("clip0/0")] == [(H, W)] * 6
    assert store.current_masks("clip1/0") == [None] * 6
    assert audit_log(store, "clip0/0")[0]["action"] == "write_sample_masks"
    registered = [a for a in audit_log(store) if a["action"] == "add_samples"]
    assert store.add_samples(make_samples(2, 6)) == 0  # a rerun registers nothing and logs nothing
    assert [a for a in audit_log(store) if a["action"] == "add_samples"] == registered


def test_partial_and_repeated_frame_writes(store: MaskStore) -> None:
    writes = [MaskWrite(mask=blob_mask(1), frame_idx=2), MaskWrite(mask=blob_mask(2), frame_idx=2)]
    assert store.write_sample_masks("clip0/0", writes, author="a") == 2
    assert [r.version for r in store.history("clip0/0/00002.jpg")] == [1, 2]
    np.testing.assert_array_equal(store.current_mask("clip0/0/00002.jpg").mask(), blob_mask(2))
    stack, present = read_sample_masks(store, "clip0/0")
    assert present.tolist() == [False, False, True, False, False, False]
    assert not stack[0].any() and (stack[2] == blob_mask(2)).all()


def test_put_mask_compare_and_set(store: MaskStore) -> None:
    key = "clip0/0/00000.jpg"
    assert store.put_mask(key, MaskWrite(mask=blob_mask(0)), author="ann", expected_version=0) == 1
    assert store.put_mask(key, MaskWrite(mask=blob_mask(1), source="human"), author="bob", expected_version=1) == 2
    before = (n_masks(store), len(audit_log(store)))
    with pytest.raises(StaleVersionError, match="at version 2 \\(by bob\\), not 1"):
        store.put_mask(key, MaskWrite(mask=blob_mask(5), source="human"), author="ann", expected_version=1)
    assert (n_masks(store), len(audit_log(store))) == before  # refused, not silently applied
    np.testing.assert_array_equal(store.current_mask(key).mask(), blob_mask(1))


def test_write_sample_masks_cas(store: MaskStore) -> None:
    writes = [MaskWrite(mask=blob_mask(t)) for t in range(6)]
    store.write_sample_masks("clip0/0", writes, author="build")
    store.put_mask("clip0/0/00003.jpg", MaskWrite(mask=blob_mask(9), source="human"), author="ann", expected_version=1)
    before = n_masks(store)
    with pytest.raises(StaleVersionError, match="frame 3 is at version 2, not 1"):
        store.write_sample_masks("clip0/0", writes, author="build", expected_versions=dict.fromkeys(range(6), 1))
    assert n_masks(store) == before
    heads = {i: r.version for i, r in enumerate(store.current_masks("clip0/0"))}
    assert store.write_sample_masks("clip0/0", writes, author="build", expected_versions=heads) == 6


def test_sample_write_is_all_or_nothing(store: MaskStore) -> None:
    good = [MaskWrite(mask=blob_mask(t)) for t in range(5)]
    bad_cases = [
        good + [MaskWrite(mask=np.ones((H + 1, W), bool))],  # not the frame size
        good + [MaskWrite(mask=blob_mask(0), frame_idx=6)],  # no such frame
        good + [MaskWrite(mask=blob_mask(0), source="magic")],  # unknown source
        good + [MaskWrite(mask=blob_mask(0), score=float("nan"))],  # score not a number
        good + [MaskWrite(rle={"size": [H, W], "counts": "0"})],  # counts that do not cover H*W
    ]
    store.set_frame_sizes({f"clip0/0/{t:05d}.jpg": (H, W) for t in range(6)})
    for writes in bad_cases:
        with pytest.raises(Exception) as info:
            store.write_sample_masks("clip0/0", writes, author="build")
        assert isinstance(info.value, InputError), info.value
        assert n_masks(store) == 0
    with pytest.raises(InputError, match="no sample"):
        store.write_sample_masks("nope", good, author="build")


def test_tracks_with_numpy_values_are_stored_as_json(store: MaskStore) -> None:
    tracks = [{"track": np.int64(2), "bbox": np.array([1.0, 2.0, 9.0, 12.0], np.float32), "counts": None}]
    store.put_mask("clip0/0/00004.jpg", MaskWrite(mask=blob_mask(4), tracks=tracks), author="b", expected_version=0)
    assert store.current_mask("clip0/0/00004.jpg").tracks == [
        {"track": 2, "bbox": [1.0, 2.0, 9.0, 12.0], "counts": None}
    ]


def test_rle_writes_and_size_checks(store: MaskStore) -> None:
    rle = encode_rle(blob_mask(3))
    store.write_sample_masks("clip1/0", [MaskWrite(rle=rle, source="imported", frame_idx=0)], author="import")
    rec = store.current_mask("clip1/0/00000.jpg")
    assert rec.rle == rle and rec.source == "imported" and rec.area == int(blob_mask(3).sum())
    with pytest.raises(InputError, match="resolution"):
        store.put_mask("clip1/0/00000.jpg", MaskWrite(mask=np.zeros((W, H), bool)), author="x", expected_version=1)
    with pytest.raises(InputError, match="no frame"):
        store.put_mask("missing.jpg", MaskWrite(mask=blob_mask(0)), author="x", expected_version=0)
    with pytest.raises(InputError, match="cannot become"):
        store.set_frame_sizes({"clip1/0/00000.jpg": (H * 2, W)})
    with pytest.raises(InputError, match="no frame"):
        store.set_frame_sizes({"nope.jpg": (H, W)})


def test_set_status_all_or_nothing(store: MaskStore) -> None:
    store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(t)) for t in range(6)], author="build")
    keys = [f"clip0/0/{t:05d}.jpg" for t in range(3)]
    out = store.set_status(dict.fromkeys(keys, 1), "flagged", author="rev", reason="leg cut off")
    assert out == dict.fromkeys(keys, 2)
    rec = store.current_mask(keys[0])
    assert (rec.status, rec.reason, rec.version, rec.source) == ("flagged", "leg cut off", 2, "auto")
    np.testing.assert_array_equal(rec.mask(), blob_mask(0))  # the new version keeps the mask
    before = n_masks(store)
    with pytest.raises(StaleVersionError):
        store.set_status({keys[0]: 2, keys[1]: 1}, "accepted", author="rev")  # keys[1] is at 2 now
    with pytest.raises(InputError, match="no mask"):
        store.set_status({"clip1/0/00000.jpg": 0}, "accepted", author="rev")
    with pytest.raises(InputError, match="review status"):
        store.set_status({keys[0]: 2}, "great", author="rev")
    assert n_masks(store) == before


def test_history_is_never_deleted(store: MaskStore, tmp_path: Path) -> None:
    key = "clip0/0/00001.jpg"
    for v in range(4):
        store.put_mask(key, MaskWrite(mask=blob_mask(v), source="human"), author=f"u{v}", expected_version=v)
    store.set_status({key: 4}, "accepted", author="rev")
    history = store.history(key)
    assert [r.version for r in history] == [1, 2, 3, 4, 5]
    assert [r.author for r in history] == ["u0", "u1", "u2", "u3", "rev"]
    for v, rec in enumerate(history[:4]):
        np.testing.assert_array_equal(rec.mask(), blob_mask(v))
    raw = raw_connect(tmp_path / "masks.db")
    for sql in (
        "DELETE FROM masks",
        "UPDATE masks SET counts='0'",
        "DELETE FROM audit",
        "UPDATE audit SET author='x'",
        "UPDATE frames SET head_version=1",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute(sql)
    raw.close()
    assert [r.version for r in store.history(key)] == [1, 2, 3, 4, 5]


def test_add_samples_updates_and_refuses(store: MaskStore) -> None:
    samples = make_samples(2, 6)
    assert store.add_samples(samples) == 0  # already there: updated in place
    longer = make_samples(1, 8, prefix="clip")  # clip0/0 with 8 frames, no masks yet: allowed
    store.add_samples(longer)
    assert len(store.get_sample("clip0/0").frames) == 8
    store.write_sample_masks("clip0/0", [MaskWrite(mask=blob_mask(0))], author="b")
    with pytest.raises(InputError, match="new --store"):
        store.add_samples(samples[:1])
    thief = make_samples(1, 2, prefix="clip")[0]
    thief = type(thief)(sample_id="other", dataset="finediving", frames=thief.frames, split="test")
    with pytest.raises(InputError, match="another sample"):
        store.add_samples([thief])
    assert store.sample_ids() == ["clip0/0", "clip1/0"]
    with pytest.raises(InputError, match="no sample"):
        store.get_sample("other")


def test_nested_transactions_are_savepoints_of_one_outer_transaction(store: MaskStore) -> None:
    key = "clip0/0/00000.jpg"
    with pytest.raises(StaleVersionError), store.transaction():
        store.put_mask(key, MaskWrite(mask=blob_mask(0)), author="a", expected_version=0)
        store.put_mask(key, MaskWrite(mask=blob_mask(1)), author="a", expected_version=0)  # stale: refused
    assert n_masks(store) == 0  # the failing inner write rolled the whole outer transaction back
    with store.transaction():
        store.put_mask(key, MaskWrite(mask=blob_mask(0)), author="a", expected_version=0)
        with pytest.raises(StaleVersionError):
            store.put_mask(key, MaskWrite(mask=blob_mask(1)), author="a", expected_version=0)
        store.put_mask(key, MaskWrite(mask=blob_mask(2)), author="a", expected_version=1)
    assert [r.version for r in store.history(key)] == [1, 2]  # the inner failure undid only itself


def test_streaming_connection_has_no_memory_map_and_a_small_page_cache(store: MaskStore) -> None:
    """Exports read the store once: their memory must not grow with its size (no mmap, 2 MiB cache)."""
    assert store.query("PRAGMA mmap_size")[0][0] > 0  # the default connection maps the file
    with MaskStore(store.path, create=False, streaming=True) as streaming:
        assert streaming.query("PRAGMA mmap_size") == [(0,)]
        assert streaming.query("PRAGMA cache_size") == [(-2048,)]
        assert streaming.sample_ids() == store.sample_ids()  # an ordinary reader otherwise
