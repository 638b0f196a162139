"""The clip cache after corrected masks: the frames come from the earlier cache, only masks are packed."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
from _ufp_fixtures import make_dataset, make_store, one_torch_thread  # noqa: F401

from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite
from uni_fineparser.cache import build_cache
from uni_fineparser.mask_source import open_mask_source


def test_corrected_masks_reuse_the_frames_and_pack_only_the_masks(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=4, n_test=0, n_frames=6)
    store = make_store(tmp_path / "m.db", samples, masks)
    first = build_cache(samples, tmp_path / "root", open_mask_source(store), tmp_path / "cache", (24, 32))
    frames_before, masks_before, _ = first.get(samples[1].sample_id, np.arange(6))
    # an annotator corrects sample 1's masks: the store's fingerprint changes, so does the cache key
    edited = np.zeros_like(masks[samples[1].sample_id])
    edited[:, :10, :20] = True
    with MaskStore(store) as st:
        writes = [MaskWrite(mask=m, frame_idx=j, source="human") for j, m in enumerate(edited)]
        st.write_sample_masks(samples[1].sample_id, writes, author="annotator")
    shutil.rmtree(tmp_path / "root")  # no frame can be decoded now: the frames must come from the first cache
    second = build_cache(samples, tmp_path / "root", open_mask_source(store), tmp_path / "cache", (24, 32))
    assert second.folder != first.folder
    assert (second.folder / "frames.npy").stat().st_ino == (first.folder / "frames.npy").stat().st_ino  # linked
    frames_after, masks_after, valid = second.get(samples[1].sample_id, np.arange(6))
    assert np.array_equal(frames_after, frames_before) and valid.all()
    expected = [cv2.resize(m.astype(np.uint8), (32, 24), interpolation=cv2.INTER_NEAREST).astype(bool) for m in edited]
    assert np.array_equal(masks_after, np.stack(expected)) and not np.array_equal(masks_after, masks_before)
    other_before = first.get(samples[0].sample_id, np.arange(6))[1]
    assert np.array_equal(second.get(samples[0].sample_id, np.arange(6))[1], other_before)


def test_a_damaged_earlier_cache_is_not_a_frame_source(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=3, n_test=0, n_frames=4)
    store = make_store(tmp_path / "m.db", samples, masks)
    first = build_cache(samples, tmp_path / "root", open_mask_source(store), tmp_path / "cache", (24, 32))
    with (first.folder / "frames.npy").open("r+b") as f:  # cut short: a copy that did not finish
        f.truncate(200)
    with MaskStore(store) as st:
        empty = np.zeros_like(masks[samples[0].sample_id][0])
        st.write_sample_masks(samples[0].sample_id, [MaskWrite(mask=empty, frame_idx=0, source="human")], author="a")
    second = build_cache(samples, tmp_path / "root", open_mask_source(store), tmp_path / "cache", (24, 32))
    assert (second.folder / "frames.npy").stat().st_ino != (first.folder / "frames.npy").stat().st_ino
    f, m, _ = second.get(samples[0].sample_id, np.arange(4))
    assert f.any() and not m[0].any() and m[1].any()  # frames decoded again from the JPEGs, the new mask packed
