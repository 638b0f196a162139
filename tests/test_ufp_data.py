"""Sampling, paired augmentation, step targets, exemplars, mask sources and the packed cache."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from _ufp_fixtures import make_dataset, make_store, one_torch_thread  # noqa: F401

from hmtools.errors import DataFormatError, InputError
from hmtools.schema import Sample
from uni_fineparser.cache import build_cache
from uni_fineparser.config import load_run_config
from uni_fineparser.data import ExemplarPool, PairDataset, carve_validation, frame_steps, group_of, load_view
from uni_fineparser.mask_source import FolderMasks, StoreMasks, open_mask_source
from uni_fineparser.transforms import crop_box, paired_flip, sample_indices


def paired_view(
    frames: np.ndarray, masks: np.ndarray, size: int, rng: np.random.Generator | None, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The reference the training path is checked against: crop (random or centre) whole frames
    ``(T, h, w, 3)`` and masks ``(T, h, w)``, then maybe flip both (``load_view`` folds the crop into
    the cache read instead)."""
    y, x = crop_box(frames.shape[1], frames.shape[2], size, rng)
    return paired_flip(frames[:, y : y + size, x : x + size], masks[:, y : y + size, x : x + size], rng, flip)


def test_sample_indices_linspace_floor_and_shift():
    assert sample_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert sample_indices(10, 4, shift=-3).tolist() == [0, 2, 4, 6]
    idx = sample_indices(5, 8)
    assert len(idx) == 8 and idx.min() == 0 and idx.max() == 4 and (np.diff(idx) >= 0).all()


def test_margins_beyond_the_loaders_window_are_reached_only_by_the_shift():
    """MTL-AQA: 3 + 103 + 3 frames; the clip spans the window [3, 105], CoRe's +-3 shift moves its end."""
    from hmtools.schema import Sample
    from uni_fineparser.data import clip_window

    assert sample_indices(109, 103, 0, (3, 105)).tolist() == list(range(3, 106))
    assert sample_indices(109, 103, 3, (3, 105))[[0, -1]].tolist() == [3, 108]
    assert sample_indices(109, 103, -3, (3, 105))[[0, -1]].tolist() == [3, 102]
    assert sample_indices(109, 103, 9, (3, 105))[-1] == 108  # clamped to the frames there are
    s = Sample(sample_id="01/1", dataset="mtl-aqa", frames=(), split="train", extra={"window": [3, 105]})
    assert clip_window(s, 109) == (3, 105) and clip_window(s, 50) is None
    assert clip_window(Sample(sample_id="x", dataset="finediving", frames=(), split="train"), 109) is None


def test_paired_view_same_crop_and_flip_for_frames_and_masks():
    rng = np.random.default_rng(3)
    masks = rng.random((4, 20, 24)) > 0.5
    frames = np.repeat((masks * 255).astype(np.uint8)[..., None], 3, axis=-1)
    for seed in range(10):
        f, m = paired_view(frames, masks, 16, np.random.default_rng(seed), flip=True)
        assert f.shape == (4, 16, 16, 3) and m.shape == (4, 16, 16)
        assert np.array_equal(f[..., 0] == 255, m)
    f, m = paired_view(frames, masks, 16, None, flip=True)
    assert np.array_equal(m, masks[:, 2:18, 4:20])


def test_frame_steps_from_labels_and_transitions():
    s = Sample(
        sample_id="v/0",
        dataset="finediving",
        frames=tuple(f"{i}.jpg" for i in range(10)),
        split="train",
        frame_labels=(2, 2, 2, 5, 5, 7, 7, 36, 36, 36),
    )
    idx = np.arange(10)
    # 4 distinct labels -> 3 steps: middle sub-actions merge into flight
    assert frame_steps(s, idx, 3).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert frame_steps(s, idx, 4).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert frame_steps(s, idx, 5).tolist() == [-1] * 10
    t = replace(s, frame_labels=None, step_transitions=(2, 6))
    assert frame_steps(t, idx, 3).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert frame_steps(replace(s, frame_labels=None), idx, 3).tolist() == [-1] * 10
    # in the sampled index space
    assert frame_steps(s, np.array([0, 4, 8]), 3).tolist() == [0, 1, 2]


def test_exemplar_groups_and_documented_fallback(tmp_path):
    samples, _ = make_dataset(tmp_path, n_train=6, n_test=2, n_frames=4)
    train = [s for s in samples if s.split == "train"]
    assert group_of(train[0], "auto") == "action:101a"
    assert group_of(replace(train[0], dataset="aqa7", action_class="diving"), "auto") == "class:diving"
    pool = ExemplarPool(train, "auto")
    q = train[0]
    assert all(e.action == q.action and e.sample_id != q.sample_id for e in pool.candidates(q, allow_self=True))
    lonely = replace(q, sample_id="x/9", action="999z", difficulty=2.0)
    fallback = pool.candidates(lonely, allow_self=False)
    assert fallback and all(e.difficulty == 2.0 for e in fallback) and pool.fallbacks == 1
    only = ExemplarPool([q, replace(train[1], action="5154b")], "action")
    assert only.candidates(q, allow_self=True) == [q]  # sole member of its group: its own exemplar
    v1 = pool.voters(samples[-1], 10, seed=1)
    assert v1 == pool.voters(samples[-1], 10, seed=1) and len(v1) == 3


def test_carve_validation_is_seeded_and_disjoint(tmp_path):
    samples, _ = make_dataset(tmp_path, n_train=20, n_test=0, n_frames=2)
    a_train, a_val = carve_validation(samples, 0.25, seed=5)
    b_train, b_val = carve_validation(samples, 0.25, seed=5)
    assert [s.sample_id for s in a_val] == [s.sample_id for s in b_val] and len(a_val) == 5
    assert not {s.sample_id for s in a_train} & {s.sample_id for s in a_val}
    assert carve_validation(samples, 0.25, seed=6)[1] != a_val


def test_store_source_cache_and_pairs(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=4, n_test=0, n_frames=6)
    store = make_store(tmp_path / "m.db", samples, masks)
    src = open_mask_source(store)
    assert isinstance(src, StoreMasks)
    cache = build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 32))
    f, m, v = cache.get(samples[0].sample_id, np.arange(6))
    assert f.shape == (6, 24, 32, 3) and f.dtype == np.uint8 and m.dtype == bool and v.all()
    expected = cv2.resize(masks[samples[0].sample_id][2].astype(np.uint8), (32, 24), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(m[2], expected.astype(bool))  # nearest, never bilinear
    assert build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 32)).folder == cache.folder
    cfg = load_run_config("tiny", overrides=["model.frames=4", "model.token_stride=4", "model.size=16"])
    ds = PairDataset(samples, ExemplarPool(samples, "auto"), cache, cfg.model, cfg.train, seed=0)
    item = ds[0]
    assert item["q_video"].shape == (4, 16, 16, 3) and item["e_masks"].shape == (4, 16, 16)
    steps = item["q_steps"].tolist()
    assert steps[0] == 0 and steps[-1] == 2 and steps == sorted(steps)
    again = ds[0]
    assert all(np.array_equal(item[k].numpy(), again[k].numpy()) for k in item)


def test_crop_in_cache_read_equals_crop_after_whole_frames(tmp_path):
    """The training path gathers only the crop (masks cut across packed bytes) and draws the same
    random numbers as cropping whole frames with paired_view."""
    samples, masks = make_dataset(tmp_path / "root", n_train=2, n_test=0, n_frames=6)
    src = open_mask_source(make_store(tmp_path / "m.db", samples, masks))
    cache = build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 37))  # width not a byte multiple
    idx = np.array([0, 2, 2, 5, 9])  # clipped to the clip like any read
    whole_f, whole_m, _ = cache.get(samples[0].sample_id, idx)
    for y, x in [(0, 0), (3, 5), (8, 21), (8, 0), (0, 17)]:
        f, m, _ = cache.get(samples[0].sample_id, idx, (y, x, 16))
        assert f.flags.c_contiguous and f.shape == (5, 16, 16, 3) and m.dtype == bool
        assert np.array_equal(f, whole_f[:, y : y + 16, x : x + 16])
        assert np.array_equal(m, whole_m[:, y : y + 16, x : x + 16])
    for seed in range(12):
        view = load_view(cache, samples[1], 4, 16, 3, np.random.default_rng(seed), (-1, 0), flip=True)
        rng = np.random.default_rng(seed)
        shift = int(rng.integers(-1, 1))
        f, m, _ = cache.get(samples[1].sample_id, sample_indices(6, 4, shift))
        f, m = paired_view(f, m, 16, rng, flip=True)
        assert np.array_equal(view["video"].numpy(), f) and np.array_equal(view["masks"].numpy(), m)


def test_missing_masks_fail_clearly_unless_allowed(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=3, n_test=0, n_frames=5)
    src = open_mask_source(make_store(tmp_path / "m.db", samples, masks, skip=2))
    with pytest.raises(DataFormatError, match=r"2 of 15 frames .*--allow-missing-masks"):
        build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 32))
    assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True
    cache = build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 32), allow_missing=True)
    _, _, valid = cache.get(samples[0].sample_id, np.arange(5))
    assert valid.tolist() == [False, False, True, True, True]


def test_a_mask_rejected_in_review_is_no_supervision(tmp_path):
    from hmtools.store import MaskStore

    samples, masks = make_dataset(tmp_path / "root", n_train=1, n_test=0, n_frames=4)
    path = make_store(tmp_path / "m.db", samples, masks)
    key = samples[0].frames[1]
    with MaskStore(path) as st:
        st.set_status({key: st.current_mask(key).version}, "rejected", author="ann")
    src = open_mask_source(path)
    assert src.available(samples[0]) == [True, False, True, True]
    assert [m is None for m in src.read(samples[0])] == [False, True, False, False]
    with pytest.raises(DataFormatError, match=r"1 of 4 frames .*rejected in review counts as none"):
        build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 32))


def test_folder_mask_source_threshold_128(tmp_path):
    samples, _ = make_dataset(tmp_path / "root", n_train=1, n_test=0, n_frames=2)
    s = samples[0]
    for i, key in enumerate(s.frames):
        img = np.zeros((48, 64), np.uint8)
        img[:, :32] = 200 if i == 0 else 100
        path = (tmp_path / "masks" / key).with_suffix(".jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
    src = open_mask_source(tmp_path / "masks")
    assert isinstance(src, FolderMasks)
    m = src.read(s)
    assert m[0][:, :30].all() and not m[0][:, 34:].any() and not m[1].any()
    assert src.available(replace(s, frames=(*s.frames, "FINADiving_MTL_256s/x/0/00001.jpg")))[-1] is False


def test_open_mask_source_rejects_bad_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_mask_source(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a mask store"):
        open_mask_source(tmp_path / "x.txt")


def test_missing_frame_file_is_a_clear_error(tmp_path):
    samples, masks = make_dataset(tmp_path / "root", n_train=2, n_test=0, n_frames=3)
    src = open_mask_source(make_store(tmp_path / "m.db", samples, masks))
    (tmp_path / "root" / samples[1].frames[1]).unlink()
    with pytest.raises(DataFormatError, match="missing or not an image"):
        build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (24, 32))
    assert not [p for p in (tmp_path / "cache").iterdir()]


def _write_hdf5_export(path, samples, masks, absent=()):
    """An export in the documented ``hmtools-masks`` v1 layout (docs/formats.md), written with h5py."""
    from urllib.parse import quote

    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = "hmtools-masks"
        f.attrs["format_version"] = 1
        root = f.create_group("samples")
        for s in samples:
            g = root.create_group(quote(s.sample_id, safe=""))
            m = masks[s.sample_id]
            present = np.array([0 if (s.sample_id, i) in absent else 1 for i in range(len(m))], np.uint8)
            packed = np.packbits(m * present[:, None, None].astype(bool), axis=1)
            d = g.create_dataset("masks", data=packed)
            d.attrs["height"] = m.shape[1]
            g.create_dataset("present", data=present)
            g.create_dataset("frame_keys", data=list(s.frames), dtype=h5py.string_dtype("utf-8"))


def test_hdf5_export_source(tmp_path):
    from uni_fineparser.mask_source import Hdf5Masks

    samples, masks = make_dataset(tmp_path / "root", n_train=2, n_test=0, n_frames=3)
    _write_hdf5_export(tmp_path / "m.h5", samples, masks, absent={(samples[1].sample_id, 2)})
    src = open_mask_source(tmp_path / "m.h5")
    assert isinstance(src, Hdf5Masks)
    got = src.read(samples[0])
    assert all(np.array_equal(g, m) for g, m in zip(got, masks[samples[0].sample_id], strict=True))
    assert src.available(samples[1]) == [True, True, False] and src.read(samples[1])[2] is None
    with pytest.raises(InputError, match="another version of the dataset"):
        src.available(replace(samples[0], frames=samples[0].frames[:2]))
    assert src.available(replace(samples[0], sample_id="nope/0")) == [False, False, False]
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(InputError, match="not an hmtools mask export"):
        open_mask_source(tmp_path / "other.h5")


def test_pairs_depend_on_epoch_not_on_worker_count(tmp_path):
    from torch.utils.data import DataLoader

    samples, masks = make_dataset(tmp_path / "root", n_train=6, n_test=0, n_frames=8)
    src = open_mask_source(make_store(tmp_path / "m.db", samples, masks))
    cache = build_cache(samples, tmp_path / "root", src, tmp_path / "cache", (40, 40))
    cfg = load_run_config("tiny")
    ds = PairDataset(samples, ExemplarPool(samples, "auto"), cache, cfg.model, cfg.train, seed=0)

    def epoch_videos(epoch: int, workers: int) -> list[np.ndarray]:
        ds.set_epoch(epoch)
        return [b["q_video"].numpy() for b in DataLoader(ds, batch_size=2, num_workers=workers)]

    e0, e1 = epoch_videos(0, 0), epoch_videos(1, 0)
    assert any(not np.array_equal(a, b) for a, b in zip(e0, e1, strict=True))  # new crops/flips each epoch
    for epoch, ref in ((0, e0), (1, e1)):
        assert all(np.array_equal(a, b) for a, b in zip(ref, epoch_videos(epoch, 2), strict=True))


def test_real_finediving_step_targets_and_voters_match_the_reference_code():
    """On the real FineDiving pickles: step boundaries at the 96 sampled indices reproduce the reference
    code's statistics (3.6 % of first transitions at >= 48, 3.3 % of last ones < 48; spec §1.4) and
    voting finds fewer than 10 same-dive-number exemplars for exactly 31 of 749 test queries (spec §2.3)."""
    from _datasets_fixtures import real_annotations_dir

    from hmtools.datasets import load_dataset

    real = real_annotations_dir()
    if real is None:
        pytest.skip("../shared/real_annotations not present beside the checkout")
    samples = load_dataset("finediving", real / "finediving", annotations=real / "finediving").samples
    b1, b2 = [], []
    for s in samples:
        steps = frame_steps(s, sample_indices(s.expected_frames, 96), 3)
        assert (steps >= 0).all(), s.sample_id
        b1.append(int((steps < 1).sum()))
        b2.append(int((steps < 2).sum()))
    assert round(100 * np.mean(np.array(b1) >= 48), 1) == 3.6
    assert round(100 * np.mean(np.array(b2) < 48), 1) == 3.3
    pool = ExemplarPool([s for s in samples if s.split == "train"], "auto")
    test = [s for s in samples if s.split == "test"]
    assert sum(len(pool.voters(q, 10, seed=0)) < 10 for q in test) == 31
    assert pool.fallbacks == 0  # every test dive number occurs in train


def test_a_pool_with_no_other_sample_is_one_clear_error():
    only = Sample("v/0", "mtl-aqa", ("f.jpg",), "train", score=50.0, difficulty=2.0, action="101a")
    with pytest.raises(InputError, match=r"no exemplar for v/0: .* holds 1 sample\(s\)"):
        ExemplarPool([only], "action").voters(only, 10, 0)
