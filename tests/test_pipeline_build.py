"""build-masks orchestration: resume, --force, human edits, kill -9 and resume, torchrun ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hmtools.store import MaskStore
from hmtools.store_admin import get_config, integrity_check
from hmtools.store_types import MaskWrite
from pipelines.build import build_masks, has_human_work
from pipelines.config import BuildConfig, FramesConfig
from pipelines.run import Models
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter, write_aqa7_splits, write_clip
from tests._pipeline_worker import samples as worker_samples

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))


def _dataset(root, n: int, frames: int = 8):
    for i in range(1, n + 1):
        write_clip(root, f"diving-out/{i:03d}", n=frames)
    write_aqa7_splits(root, n)
    return worker_samples(root, n)


def _versions(store: MaskStore) -> list[tuple[str, int, int]]:
    return store.query(
        "SELECT f.key, COUNT(m.mask_id), SUM(m.source='auto') FROM frames f LEFT JOIN masks m ON m.frame_id=f.frame_id GROUP BY f.frame_id"
    )


def test_rerun_skips_force_redoes_and_human_edits_are_kept(tmp_path) -> None:
    samples = _dataset(tmp_path, 2)
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    with MaskStore(tmp_path / "m.db") as store:
        s1 = build_masks(samples, tmp_path, store, models, CFG, progress=False)
        assert (s1.built, s1.skipped_done, s1.frames) == (2, 0, 16)
        assert get_config(store, s1.config_hash)["weights"] == {"fake": "1"}
        s2 = build_masks(samples, tmp_path, store, models, CFG, progress=False)
        assert (s2.built, s2.skipped_done) == (0, 2) and s2.config_hash == s1.config_hash
        assert all(n == 1 for _, n, _ in _versions(store))
        # a different threshold is a different configuration: rebuilt without --force
        cfg2 = BuildConfig(device="cpu", frames=CFG.frames, flags=type(CFG.flags)(min_score=0.5))
        assert build_masks(samples, tmp_path, store, models, cfg2, progress=False).built == 2
        # an annotator edits one frame of sample 1: --force rebuilds only sample 2
        key = samples[0].frames[3]
        head = store.current_mask(key)
        store.put_mask(key, MaskWrite(rle=head.rle, source="human"), author="ann", expected_version=head.version)
        assert has_human_work(store, samples[0].sample_id)
        s3 = build_masks(samples, tmp_path, store, models, cfg2, force=True, progress=False)
        assert s3.built == 1 and s3.skipped_human == [samples[0].sample_id]
        assert store.current_mask(key).source == "human"
        s4 = build_masks(samples, tmp_path, store, models, cfg2, force=True, overwrite_human=True, progress=False)
        assert s4.built == 2 and store.current_mask(key).source == "auto"
        assert integrity_check(store) == []


def test_keep_built_builds_only_samples_never_built(tmp_path, capsys) -> None:
    """After an upgrade (another configuration hash), --keep-built finishes a run without rebuilding
    what is done; --force with it is refused."""
    from hmtools.cli import main

    samples = _dataset(tmp_path, 3)
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    with MaskStore(tmp_path / "m.db") as store:
        build_masks(samples[:2], tmp_path, store, models, CFG, progress=False)
        newer = BuildConfig(device="cpu", frames=CFG.frames, flags=type(CFG.flags)(min_score=0.5))
        s = build_masks(samples, tmp_path, store, models, newer, keep_built=True, progress=False)
        assert (s.built, s.skipped_done) == (1, 2)
        assert all(n == 1 for _, n, _ in _versions(store))  # nothing rebuilt
        assert store.build_config(samples[2].sample_id) == s.config_hash != store.build_config(samples[0].sample_id)
    with pytest.raises(SystemExit) as e:
        main(["build-masks", "--dataset", "aqa7", "--root", str(tmp_path), "--store", str(tmp_path / "m.db"),
              "--detector", "lite", "--segmenter", "lite", "--force", "--keep-built"])  # fmt: skip
    assert e.value.code == 2 and "--keep-built" in capsys.readouterr().err


def test_kill_minus_nine_then_resume(tmp_path) -> None:
    n = 6
    _dataset(tmp_path, n, frames=6)
    db = tmp_path / "m.db"
    cmd = [sys.executable, os.path.join(REPO, "tests", "_pipeline_worker.py"), str(tmp_path), str(db), str(n)]
    proc = subprocess.Popen([*cmd, "0.15"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    built = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with MaskStore(db) as st:
                    built = st.query("SELECT COUNT(*) FROM samples WHERE build_config IS NOT NULL")[0][0]
            except Exception:  # noqa: BLE001 - the store may be mid-creation
                built = 0
            if built >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"worker ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with MaskStore(db) as st:
        partial = st.query("SELECT COUNT(*) FROM samples WHERE build_config IS NOT NULL")[0][0]
        assert 2 <= partial < n
        # a killed sample is all or nothing
        for (sid,) in st.query("SELECT sample_id FROM samples"):
            heads = [f.head_version for f in st.frames(sid)]
            assert heads == [0] * len(heads) or heads == [1] * len(heads)
    out = subprocess.run([*cmd, "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"built={n - partial} done={partial}" in out.stdout
    with MaskStore(db) as st:
        rows = _versions(st)
        assert len(rows) == 6 * n and all(total == 1 and auto == 1 for _, total, auto in rows)
        assert integrity_check(st) == []


def test_torchrun_two_ranks_split_the_samples(tmp_path) -> None:
    _dataset(tmp_path, 5, frames=4)
    db = tmp_path / "m.db"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        os.path.join(REPO, "tests", "_pipeline_worker.py"),
        str(tmp_path),
        str(db),
        "5",
        "0",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "built=5 done=0 frames=20 samples=5" in out.stdout
    with MaskStore(db) as st:
        authors = st.query("SELECT sample_id FROM audit WHERE action='write_sample_masks'")
        assert sorted(a[0] for a in authors) == [f"diving/{i:03d}" for i in range(1, 6)]
        assert all(total == 1 for _, total, _ in _versions(st))


@pytest.mark.slow
def test_torchrun_rank_stores_then_merge(tmp_path) -> None:
    from pipelines.merge import find_rank_stores, merge_stores

    _dataset(tmp_path, 3, frames=4)
    db = tmp_path / "m.db"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        os.path.join(REPO, "tests", "_pipeline_worker.py"),
        str(tmp_path),
        str(db),
        "3",
        "0",
        "rank-stores",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    parts = find_rank_stores(db)
    assert [p.name for p in parts] == ["m.db.rank0-of-2", "m.db.rank1-of-2"] and not db.exists()
    with MaskStore(db) as st:
        first = merge_stores(st, parts)
        assert (first.built, first.frames) == (3, 12)
        again = merge_stores(st, parts)  # idempotent
        assert (again.built, again.skipped_done) == (0, 3)
        assert all(total == 1 for _, total, _ in _versions(st)) and len(_versions(st)) == 12
        with MaskStore(parts[0]) as p0:
            key = p0.frames(p0.sample_ids()[0])[1].key
            assert st.current_mask(key).rle == p0.current_mask(key).rle
        assert integrity_check(st) == []


def test_merge_rank_stores_in_process(tmp_path, monkeypatch) -> None:
    from pipelines.distributed import Rank
    from pipelines.merge import find_rank_stores, merge_stores, rank_store_path

    samples = _dataset(tmp_path, 3, frames=4)
    db = tmp_path / "m.db"
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    for r in range(2):
        with MaskStore(rank_store_path(db, Rank(r, 2, r))) as part:
            build_masks(samples[r::2], tmp_path, part, models, CFG, progress=False)
    parts = find_rank_stores(db)
    assert [p.name for p in parts] == ["m.db.rank0-of-2", "m.db.rank1-of-2"]
    with MaskStore(db) as st:
        key = samples[1].frames[2]
        assert (merge_stores(st, parts).built, len(_versions(st))) == (3, 12)
        assert (merge_stores(st, parts).skipped_done, len(_versions(st))) == (3, 12)
        head = st.current_mask(key)
        edited = ~head.mask()
        st.put_mask(key, MaskWrite(mask=edited, source="human"), author="ann", expected_version=head.version)
        with MaskStore(parts[1]) as p1:  # the rank store is rebuilt with other masks meanwhile
            build_masks(samples[1::2], tmp_path, p1, models, CFG, force=True, progress=False)
        again = merge_stores(st, parts)
        assert again.skipped_human == [samples[1].sample_id], again
        assert st.current_mask(key).source == "human"
        assert integrity_check(st) == []


def test_sample_without_frames_fails_with_a_hint(tmp_path) -> None:
    from hmtools.schema import Sample

    empty = Sample(sample_id="diving/009", dataset="aqa7", frames=(), split="train", video="Actions/diving/009.avi")
    with MaskStore(tmp_path / "m.db") as store:
        s = build_masks([empty], tmp_path, store, Models(BlobDetector(), ColourSegmenter()), CFG, progress=False)
    assert s.built == 0 and "extract-frames" in s.failed["diving/009"]
    assert any("failed diving/009" in line for line in s.lines())


def test_a_sample_an_annotator_holds_is_not_rebuilt(tmp_path) -> None:
    from hmtools.store_admin import acquire_lock, release_lock

    samples = _dataset(tmp_path, 2, frames=4)
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    with MaskStore(tmp_path / "m.db") as store:
        store.add_samples(samples)
        acquire_lock(store, samples[1].sample_id, "alice", ttl_s=600)
        s = build_masks(samples, tmp_path, store, models, CFG, progress=False)
        assert s.built == 1 and s.skipped_human == [samples[1].sample_id]
        assert all(f.head_version == 0 for f in store.frames(samples[1].sample_id))
        release_lock(store, samples[1].sample_id, "alice")
        assert build_masks(samples, tmp_path, store, models, CFG, progress=False).built == 1


@pytest.mark.parametrize("kind", ["saved preview", "undo to the automatic mask"])
def test_annotator_work_of_any_kind_keeps_the_sample(tmp_path, kind) -> None:
    samples = _dataset(tmp_path, 1, frames=4)
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    with MaskStore(tmp_path / "m.db") as store:
        build_masks(samples, tmp_path, store, models, CFG, progress=False)
        key = samples[0].frames[1]
        head = store.current_mask(key)
        write = MaskWrite(rle=head.rle, source="propagated") if kind == "saved preview" else MaskWrite.copy_of(head)
        store.put_mask(key, write, author="ann", expected_version=head.version)
        assert has_human_work(store, samples[0].sample_id)
        s = build_masks(samples, tmp_path, store, models, CFG, force=True, progress=False)
        assert s.skipped_human == [samples[0].sample_id]
        assert store.current_mask(key).author == "ann"


def test_an_edit_saved_after_the_last_check_is_kept(tmp_path, monkeypatch) -> None:
    """An annotator saves a frame between build-masks' last human-work check and its write."""
    import pipelines.build as build

    samples = _dataset(tmp_path, 1, frames=4)
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    with MaskStore(tmp_path / "m.db") as store:
        build_masks(samples, tmp_path, store, models, CFG, progress=False)
        key = samples[0].frames[2]
        checks = []

        def check_then_edit(st, sid):
            checks.append(sid)
            if len(checks) == 2:  # the check right before the write; the edit lands just after it
                head = st.current_mask(key)
                st.put_mask(
                    key, MaskWrite(mask=~head.mask(), source="human"), author="ann", expected_version=head.version
                )
            return None

        monkeypatch.setattr(build, "human_block", check_then_edit)
        s = build_masks(samples, tmp_path, store, models, CFG, force=True, progress=False)
        assert s.built == 0 and s.skipped_human == [samples[0].sample_id] and not s.failed
        assert store.current_mask(key).source == "human"
        assert all(n == 1 for k, n, _ in _versions(store) if k != key)  # nothing else was written


def test_merge_refuses_a_rank_store_of_another_dataset(tmp_path) -> None:
    from hmtools.errors import InputError
    from hmtools.schema import Sample
    from pipelines.distributed import Rank
    from pipelines.merge import merge_stores, rank_store_path

    samples = _dataset(tmp_path, 2, frames=4)
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    db = tmp_path / "m.db"
    part = rank_store_path(db, Rank(0, 1, 0))
    with MaskStore(part) as p:
        build_masks(samples, tmp_path, p, models, CFG, progress=False)
    with MaskStore(db) as st:
        other = Sample(sample_id="01_01", dataset="mtl-aqa", frames=("x/0001.jpg",), split="train", video="x")
        st.add_samples([other])
        with pytest.raises(InputError, match="holds mtl-aqa samples"):
            merge_stores(st, [part])
        assert st.sample_ids() == ["01_01"]


def test_rank_stores_of_another_process_count_stop_a_rank_store_run(tmp_path, monkeypatch) -> None:
    """A rerun with another GPU count would not see the earlier rank stores' samples (it rebuilds them)."""
    from hmtools.errors import InputError
    from pipelines.distributed import Rank
    from pipelines.job import run_sharded
    from pipelines.merge import rank_store_path

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    samples = _dataset(tmp_path, 2, frames=4)
    db = tmp_path / "m.db"
    models = Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})
    MaskStore(rank_store_path(db, Rank(0, 4, 0))).close()
    with pytest.raises(InputError, match=r"another number of processes \(m.db.rank0-of-4\)"):
        run_sharded(samples, tmp_path, db, CFG, lambda cfg, dev: models, progress=False, rank_stores=True)
    assert not rank_store_path(db, Rank(0, 1, 0)).exists()
    rank_store_path(db, Rank(0, 4, 0)).unlink()
    s = run_sharded(samples, tmp_path, db, CFG, lambda cfg, dev: models, progress=False, rank_stores=True)
    assert s.built == 2 and rank_store_path(db, Rank(0, 1, 0)).is_file()
