"""``build-masks --merge``: what it prints, and the cases a merge of per-rank stores meets.

Parts are built in-process with the fake models; the CLI test runs the real ``hmtools`` entry point.
"""

from __future__ import annotations

import pytest

from hmtools.errors import InputError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_admin import integrity_check
from hmtools.store_types import MaskWrite
from pipelines.build import build_masks
from pipelines.config import BuildConfig, FramesConfig
from pipelines.distributed import Rank
from pipelines.merge import MergeSummary, find_rank_stores, merge_stores, rank_store_path
from pipelines.run import Models
from tests._datasets_fixtures import run_cli
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter, write_aqa7_splits, write_clip
from tests._pipeline_worker import samples as worker_samples

CFG = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))
MODELS = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})


def _dataset(root, n: int, frames: int = 4) -> list[Sample]:
    for i in range(1, n + 1):
        write_clip(root, f"diving-out/{i:03d}", n=frames)
    write_aqa7_splits(root, n)
    return worker_samples(root, n)


def _rank_stores(tmp_path, samples: list[Sample], world: int = 2):
    db = tmp_path / "m.db"
    for r in range(world):
        with MaskStore(rank_store_path(db, Rank(r, world, r))) as part:
            build_masks(samples[r::world], tmp_path, part, MODELS, CFG, progress=False)
    return db, find_rank_stores(db)


def _rebuild(store: MaskStore, sid: str, chash: str, at: float) -> None:
    """A later build of ``sid`` in ``store`` with other masks (inverted), built at ``at`` (s since epoch)."""
    writes = [MaskWrite(mask=~rec.mask(), frame_idx=i) for i, rec in enumerate(store.current_masks(sid))]
    store.write_sample_masks(sid, writes, author="build-masks", build_config=chash)
    with store.transaction() as c:
        c.execute("UPDATE samples SET built_at=? WHERE sample_id=?", (at, sid))


def _n_versions(store: MaskStore) -> int:
    return store.query("SELECT COUNT(*) FROM masks")[0][0]


def test_cli_merge_prints_what_the_merge_did_not_a_build_speed(tmp_path, capsys) -> None:
    samples = _dataset(tmp_path, 3)
    db, _ = _rank_stores(tmp_path, samples)
    args = ["build-masks", "--dataset", "aqa7", "--root", str(tmp_path), "--store", str(db), "--merge"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "frames/s" not in out and " s (" not in out  # nothing was built: no time, no speed
    assert "merged 2 rank stores (m.db.rank0-of-2, m.db.rank1-of-2)" in out
    assert "3 samples copied (12 frames, one new mask version each" in out and "0 conflicts" in out
    code, out, _ = run_cli(args, capsys)  # again: nothing to copy
    assert code == 0 and "0 samples copied (0 frames" in out and "3 already in the store" in out


def test_a_sample_built_in_two_parts_is_taken_from_the_later_build(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    db = tmp_path / "m.db"
    old, new = rank_store_path(db, Rank(0, 2, 0)), rank_store_path(db, Rank(0, 1, 0))
    for path in (old, new):
        with MaskStore(path) as part:
            build_masks(samples, tmp_path, part, MODELS, CFG, progress=False)
    sid = samples[1].sample_id
    with MaskStore(new) as part:
        _rebuild(part, sid, "later", at=4e9)
        want = [r.rle for r in part.current_masks(sid)]
    with MaskStore(db) as st:
        s = merge_stores(st, find_rank_stores(db))
        assert (s.samples, s.built, s.frames) == (2, 2, 8)
        assert [c[0] for c in s.conflicts] == [sid] and "took the later build (m.db.rank0-of-1)" in s.conflicts[0][1]
        assert [r.rle for r in st.current_masks(sid)] == want and st.build_config(sid) == "later"
        assert any(line.startswith(f"  conflict {sid}: ") for line in s.lines())


def test_a_later_build_in_the_store_is_not_replaced_by_an_older_rank_store(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    db, parts = _rank_stores(tmp_path, samples)
    sid = samples[0].sample_id
    with MaskStore(db) as st:
        assert merge_stores(st, parts).built == 2
        _rebuild(st, sid, "rebuilt-in-store", at=4e9)  # e.g. build-masks --force into the store afterwards
        kept = [r.rle for r in st.current_masks(sid)]
        n = _n_versions(st)
        s = merge_stores(st, parts)
        assert (s.built, s.skipped_done, [c[0] for c in s.conflicts]) == (0, 1, [sid])
        assert "holds a later build (config rebuilt-in-store)" in s.conflicts[0][1]
        assert [r.rle for r in st.current_masks(sid)] == kept and _n_versions(st) == n


def test_a_rank_store_rebuilt_after_the_merge_is_copied_again(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    db, parts = _rank_stores(tmp_path, samples)
    sid = samples[0].sample_id
    with MaskStore(db) as st:
        merge_stores(st, parts)
        with MaskStore(parts[0]) as p0:
            _rebuild(p0, sid, "newer", at=4e9)
            want = [r.rle for r in p0.current_masks(sid)]
        s = merge_stores(st, parts)
        assert (s.built, s.skipped_done, s.conflicts) == (1, 1, [])
        assert [r.rle for r in st.current_masks(sid)] == want and st.build_config(sid) == "newer"


def test_merging_a_store_into_itself_is_refused(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    _, parts = _rank_stores(tmp_path, samples)
    with MaskStore(parts[0]) as st, pytest.raises(InputError, match="into itself"):
        merge_stores(st, parts)


def test_an_interrupted_merge_is_finished_by_running_it_again(tmp_path, monkeypatch) -> None:
    samples = _dataset(tmp_path, 3)
    db, parts = _rank_stores(tmp_path, samples)
    real = MaskStore.write_sample_masks
    calls = []

    def killed_at_the_second_sample(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    with MaskStore(db) as st:
        monkeypatch.setattr(MaskStore, "write_sample_masks", killed_at_the_second_sample)
        with pytest.raises(KeyboardInterrupt):
            merge_stores(st, parts)
        monkeypatch.setattr(MaskStore, "write_sample_masks", real)
        assert _n_versions(st) == 4  # one sample, whole; none half-written
        s = merge_stores(st, parts)
        assert (s.built, s.skipped_done, s.failed) == (2, 1, {})
        counts = st.query(
            "SELECT COUNT(m.mask_id) FROM frames f LEFT JOIN masks m USING (frame_id) GROUP BY f.frame_id"
        )
        assert [c[0] for c in counts] == [1] * 12 and integrity_check(st) == []


def test_a_sample_with_another_frame_list_fails_and_the_others_are_merged(tmp_path) -> None:
    """Stores built from another dataset root / frame layout: the sample's frames differ from the store's."""
    samples = _dataset(tmp_path, 2)
    db, parts = _rank_stores(tmp_path, samples)
    sid = samples[0].sample_id
    with MaskStore(db) as st:
        other = Sample(sid, "aqa7", tuple(f"Seven/{k}" for k in samples[0].frames), split="train")
        st.add_samples([other])
        st.write_sample_masks(sid, [MaskWrite(rle=r.rle) for r in _part_masks(parts[0], sid)], author="build-masks")
        s = merge_stores(st, parts)
        assert s.built == 1 and list(s.failed) == [sid]
        assert "built from other dataset roots or frame layouts" in s.failed[sid]
        assert st.get_sample(sid).frames == other.frames
        assert any(line.startswith(f"  failed {sid}: ") for line in s.lines())


def _part_masks(path, sid):
    with MaskStore(path, read_only=True) as p:
        return p.current_masks(sid)


def test_samples_a_rank_never_built_are_listed(tmp_path) -> None:
    samples = _dataset(tmp_path, 3)
    db = tmp_path / "m.db"
    with MaskStore(rank_store_path(db, Rank(0, 1, 0))) as part:
        part.add_samples(samples)  # the rank registered all three, then died after the first
        build_masks(samples[:1], tmp_path, part, MODELS, CFG, progress=False)
    with MaskStore(db) as st:
        s = merge_stores(st, find_rank_stores(db))
    assert s.built == 1 and s.unbuilt == [x.sample_id for x in samples[1:]]
    assert any("2 samples of the rank stores were never built there" in line for line in s.lines())


def test_rank_stores_of_two_datasets_are_refused_before_any_copy(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    db, parts = _rank_stores(tmp_path, samples)
    with MaskStore(parts[1]) as p1:
        p1.add_samples([Sample("01/1", "mtl-aqa", ("01/000001.jpg",), split="train")])
    with MaskStore(db) as st:
        with pytest.raises(InputError, match="several datasets"):
            merge_stores(st, parts)
        assert st.sample_ids() == []


def test_the_rank_stores_are_only_read(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    db, parts = _rank_stores(tmp_path, samples)
    before = [p.read_bytes() for p in parts]
    with MaskStore(db) as st:
        assert isinstance(merge_stores(st, parts), MergeSummary)
    assert [p.read_bytes() for p in parts] == before


def test_overwrite_human_replaces_edits_made_after_the_merge(tmp_path) -> None:
    """The store's sample was merged (so its build time is the later one), then edited by an annotator."""
    samples = _dataset(tmp_path, 1)
    db, parts = _rank_stores(tmp_path, samples, world=1)
    sid, key = samples[0].sample_id, samples[0].frames[1]
    with MaskStore(db) as st:
        merge_stores(st, parts)
        auto = st.current_mask(key)
        st.put_mask(key, MaskWrite(mask=~auto.mask(), source="human"), author="ann", expected_version=auto.version)
        assert merge_stores(st, parts).skipped_human == [sid]
        s = merge_stores(st, parts, overwrite_human=True)
        assert (s.built, s.conflicts) == (1, []) and st.current_mask(key).rle == auto.rle


def test_an_edit_saved_during_the_merge_is_kept(tmp_path, monkeypatch) -> None:
    """An annotator saves a frame between the merge's last human-work check and its write."""
    import pipelines.merge as merge

    samples = _dataset(tmp_path, 1)
    db, parts = _rank_stores(tmp_path, samples, world=1)
    sid, key = samples[0].sample_id, samples[0].frames[2]
    with MaskStore(db) as st:
        merge_stores(st, parts)
        with MaskStore(parts[0]) as p0:
            _rebuild(p0, sid, "newer", at=4e9)
        checks = []

        def check_then_edit(store, s):
            checks.append(s)
            if len(checks) == 2:  # the check right before the write; the edit lands just after it
                head = store.current_mask(key)
                store.put_mask(
                    key, MaskWrite(mask=~head.mask(), source="human"), author="ann", expected_version=head.version
                )
            return None

        monkeypatch.setattr(merge, "human_block", check_then_edit)
        s = merge_stores(st, parts)
        assert (s.built, s.skipped_human) == (0, [sid]) and st.current_mask(key).source == "human"
        assert st.build_config(sid) != "newer"
