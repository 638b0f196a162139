"""build-masks on real-world frame folders: odd first frames, truncated files, empty folders, logs."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.masks import decode_rle
from hmtools.store import MaskStore
from pipelines.config import BuildConfig, FramesConfig
from pipelines.job import pick_samples, run_build_masks
from pipelines.run import Models, build_sample_masks
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter, write_aqa7_splits, write_clip
from tests._pipeline_worker import samples as worker_samples

CFG = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))


def _models() -> Models:
    return Models(BlobDetector(), ColourSegmenter(), {"fake": "1"})


def test_an_odd_sized_first_frame_does_not_put_the_whole_clip_out(tmp_path: Path) -> None:
    """The clip's size was the first readable frame's: one odd first frame (a title card, a frame
    re-extracted at another resolution) flagged every other frame "size differs" with an empty mask."""
    write_clip(tmp_path, "diving-out/001", n=8)
    write_aqa7_splits(tmp_path, 1)
    sample = worker_samples(tmp_path, 1)[0]
    first = tmp_path / sample.frames[0]
    cv2.imwrite(str(first), cv2.resize(cv2.imread(str(first)), (80, 48)))
    writes = build_sample_masks(sample, tmp_path, _models(), CFG)
    assert writes[0].status == "flagged" and writes[0].reason == "unreadable frame: size differs from the clip"
    assert decode_rle(writes[0].rle).shape == (48, 80)
    rest = writes[1:]
    assert all(w.status == "unreviewed" for w in rest), [w.reason for w in rest]
    assert all(decode_rle(w.rle).shape == (96, 160) and decode_rle(w.rle).sum() > 50 for w in rest)


def test_a_truncated_jpeg_mid_clip_is_flagged_and_carried(tmp_path: Path) -> None:
    """A JPEG cut short decoded silently (its lower part grey) and its mask was stored unflagged."""
    write_clip(tmp_path, "diving-out/001", n=8)
    write_aqa7_splits(tmp_path, 1)
    sample = worker_samples(tmp_path, 1)[0]
    bad = tmp_path / sample.frames[4]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    writes = build_sample_masks(sample, tmp_path, _models(), CFG)
    assert writes[4].status == "flagged" and writes[4].reason == "unreadable frame: cannot decode"
    assert writes[4].score is None
    assert np.array_equal(decode_rle(writes[4].rle), decode_rle(writes[3].rle))
    assert [w.status for i, w in enumerate(writes) if i != 4] == ["unreviewed"] * 7


def test_unreadable_frames_are_one_warning_per_sample(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each bad frame was logged once per pass: a sample of corrupt files printed 2 lines per frame."""
    write_clip(tmp_path, "diving-out/001", n=12, corrupt=(2, 5, 6, 9))
    write_aqa7_splits(tmp_path, 1)
    sample = worker_samples(tmp_path, 1)[0]
    with caplog.at_level(logging.WARNING):
        writes = build_sample_masks(sample, tmp_path, _models(), CFG)
    assert sum(w.status == "flagged" for w in writes) == 4
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [
        "sample diving/001: 4 of 12 frames unreadable (4 cannot decode: diving-out/001/img_00003.jpg, "
        "diving-out/001/img_00006.jpg, diving-out/001/img_00007.jpg, ...)"
    ]


def test_a_sample_of_unreadable_frames_fails_in_one_line_and_writes_nothing(tmp_path: Path, caplog) -> None:
    """Every frame corrupt: 103 warning lines (two per frame) came before the failure."""
    from pipelines.build import build_masks

    write_clip(tmp_path, "diving-out/001", n=6, corrupt=range(6))
    write_aqa7_splits(tmp_path, 1)
    sample = worker_samples(tmp_path, 1)[0]
    (tmp_path / sample.frames[5]).unlink()
    with MaskStore(tmp_path / "m.db") as st, caplog.at_level(logging.WARNING):
        summary = build_masks([sample], tmp_path, st, _models(), CFG, progress=False)
        assert st.build_config("diving/001") is None
        assert all(f.head_version == 0 for f in st.frames("diving/001"))
    assert summary.failed == {
        "diving/001": "none of its 6 frames could be read (5 cannot decode, 1 missing file: "
        "diving-out/001/img_00001.jpg, diving-out/001/img_00002.jpg, diving-out/001/img_00003.jpg, ...)"
    }
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1  # the failure, logged once


def test_empty_and_missing_frame_folders_fail_naming_the_folder(tmp_path: Path, monkeypatch) -> None:
    """Every sample without frames failed with "videos not extracted? run hmtools extract-frames", also
    when its frame folder was empty or missing and there is no video to extract. Nothing is written for
    them; the others are built."""
    write_clip(tmp_path, "diving-out/001", n=4)
    (tmp_path / "diving-out" / "002").mkdir(parents=True)
    write_aqa7_splits(tmp_path, 3)
    monkeypatch.setattr("pipelines.job.check_names", lambda cfg: None)
    monkeypatch.setattr("pipelines.job.load_models", lambda cfg, device: _models())
    summary = run_build_masks("aqa7", tmp_path, None, tmp_path / "m.db", CFG, progress=False)
    assert summary.built == 1 and sorted(summary.failed) == ["diving/002", "diving/003"]
    assert (
        summary.failed["diving/002"]
        == "no frames: frame folder diving-out/002/ holds no image files; see hmtools inspect"
    )
    assert "neither diving-out/003/ nor Actions/diving/003.avi found" in summary.failed["diving/003"]
    assert "extract-frames" not in " ".join(summary.failed.values())
    with MaskStore(tmp_path / "m.db") as st:
        assert st.build_config("diving/002") is None and st.build_config("diving/003") is None
    (tmp_path / "Actions" / "diving").mkdir(parents=True)
    (tmp_path / "Actions" / "diving" / "003.avi").write_bytes(b"")
    again = run_build_masks("aqa7", tmp_path, None, tmp_path / "m.db", CFG, progress=False, sample_ids=["diving/003"])
    assert "run hmtools extract-frames --dataset aqa7" in again.failed["diving/003"]


def test_sample_ids_with_spaces_after_commas(tmp_path: Path) -> None:
    """``--samples "diving/001, diving/002"`` (as people type lists) said ' diving/002' is not in the dataset."""
    for i in (1, 2, 3):
        write_clip(tmp_path, f"diving-out/{i:03d}", n=2)
    write_aqa7_splits(tmp_path, 3)
    samples = worker_samples(tmp_path, 3)
    got = pick_samples(samples, ["diving/003, diving/001", " diving/002 "], None)
    assert [s.sample_id for s in got] == ["diving/003", "diving/001", "diving/002"]
    with pytest.raises(InputError, match="names no sample id"):  # --samples "$IDS" with IDS unset built nothing
        pick_samples(samples, ["", " , "], None)


def test_split_picks_the_samples_of_one_split(tmp_path: Path) -> None:
    """``--split test`` builds the test split first (the masks evaluation reads, reviewed before the rest)."""
    for i in (1, 2, 3):
        write_clip(tmp_path, f"diving-out/{i:03d}", n=2)
    write_aqa7_splits(tmp_path, 3)  # diving/003 is the test sample
    samples = worker_samples(tmp_path, 3)
    assert [s.sample_id for s in pick_samples(samples, None, None, "test")] == ["diving/003"]
    assert [s.sample_id for s in pick_samples(samples, None, 1, "train")] == ["diving/001"]
    assert [s.sample_id for s in pick_samples(samples, ["diving/001,diving/003"], None, "test")] == ["diving/003"]
    with pytest.raises(InputError, match=r"--split 'val': the dataset's splits are test, train"):
        pick_samples(samples, None, None, "val")
    args = ["build-masks", "--dataset", "aqa7", "--root", str(tmp_path), "--store", str(tmp_path / "m.db")]
    with pytest.raises(SystemExit) as e:
        main([*args, "--detector", "lite", "--segmenter", "lite", "--split", "test"])
    assert e.value.code in (0, None)
    with MaskStore(tmp_path / "m.db") as st:
        assert st.build_config("diving/003") is not None and st.build_config("diving/001") is None


def _walk(t: np.ndarray, cx: np.ndarray, cy: np.ndarray, w: float = 80, h: float = 180) -> np.ndarray:
    return np.stack([cx - w / 2, cy - h / 2 + 0 * t, cx + w / 2, cy + h / 2 + 0 * t], 1).astype(np.float32)


def test_an_athlete_who_passes_someone_keeps_their_own_track() -> None:
    """Tracks were matched to each person's last box: a vault run-up (30 px/frame) past a coach walking
    the other way at the same height swapped at the crossing, and the "athlete" followed the coach back
    for the rest of the clip. Matching to where each track is heading keeps both on their own path."""
    from pipelines.config import SelectConfig
    from pipelines.select import link_tracks, select_athletes

    t = np.arange(40, dtype=np.float32)
    runner, coach = _walk(t, 200 + 30 * t, 400 + 0 * t), _walk(t, 1000 - 10 * t, 400 + 0 * t)
    dets = [np.array([np.r_[runner[i], 0.8], np.r_[coach[i], 0.9]], np.float32) for i in range(40)]
    tracks = link_tracks(dets, SelectConfig())
    assert len(tracks) == 2
    for tr in tracks:
        truth = runner if np.allclose(tr.boxes[0], runner[0]) else coach
        assert np.allclose(tr.boxes, truth)
    sel = select_athletes(dets, (720, 1280), SelectConfig(camera_motion=False))
    assert np.allclose(sel.boxes[0], runner)


def test_crossing_synchronized_divers_keep_their_own_masks() -> None:
    """Two synchronized divers whose paths cross: each athlete's track (the per-athlete mask in
    ``tracks``) must stay on one diver, not bounce back at the crossing."""
    from pipelines.config import SelectConfig
    from pipelines.select import select_athletes

    t = np.arange(40, dtype=np.float32)
    a, b = _walk(t, 300 + 15 * t, 150 + 8 * t), _walk(t, 885 - 15 * t, 150 + 8 * t)  # cross between frames
    dets = [np.array([np.r_[a[i], 0.9], np.r_[b[i], 0.85]], np.float32) for i in range(40)]
    sel = select_athletes(dets, (720, 1280), SelectConfig(camera_motion=False), synchronized=True)
    assert sel.boxes.shape == (2, 40, 4) and not sel.review
    got = sorted(sel.boxes, key=lambda bx: float(bx[0, 0]))
    assert np.allclose(got[0], a) and np.allclose(got[1], b)


def test_the_summary_says_how_many_failures_it_does_not_list() -> None:
    """Only the first 10 failures were listed, with no word of the others (a run over a partly extracted
    dataset fails hundreds of samples)."""
    from pipelines.build import BuildSummary

    failed = {f"diving/{i:03d}": "no frames: ..." for i in range(1, 26)}
    lines = BuildSummary(samples=25, failed=failed, skipped_human=[f"x/{i}" for i in range(12)]).lines()
    assert sum(line.startswith("  failed ") for line in lines) == 10
    assert "  ... and 15 more failed (hmtools inspect lists frame problems)" in lines
    assert any(line.endswith("x/9 and 2 more") for line in lines)


def test_an_unexpected_error_fails_its_sample_and_a_systematic_one_stops_the_run(tmp_path: Path, monkeypatch) -> None:
    """A bug hit by one sample (here a RuntimeError) ended the whole run with a traceback; now that sample
    fails (nothing written, traceback logged) and the rest are built. Three in a row stop the run."""
    import pipelines.build as build_mod

    for i in (1, 2, 3, 4, 5):
        write_clip(tmp_path, f"diving-out/{i:03d}", n=2)
    write_aqa7_splits(tmp_path, 5)
    monkeypatch.setattr("pipelines.job.check_names", lambda cfg: None)
    monkeypatch.setattr("pipelines.job.load_models", lambda cfg, device: _models())
    real = build_mod.build_sample_masks
    bad = {"diving/002"}

    def flaky(s, *a, **k):  # type: ignore[no-untyped-def]
        if s.sample_id in bad:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(s, *a, **k)

    monkeypatch.setattr(build_mod, "build_sample_masks", flaky)
    summary = run_build_masks("aqa7", tmp_path, None, tmp_path / "m.db", CFG, progress=False)
    assert summary.built == 4 and list(summary.failed) == ["diving/002"]
    assert summary.failed["diving/002"].startswith("unexpected error RuntimeError: CUDA error")
    with MaskStore(tmp_path / "m.db") as st:
        assert st.current_masks("diving/002") == [None, None] and st.build_config("diving/003") is not None
    bad.update({"diving/001", "diving/003", "diving/004"})  # 001-004 fail in a row: a systematic error
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run_build_masks("aqa7", tmp_path, None, tmp_path / "n.db", CFG, progress=False)
