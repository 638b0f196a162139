"""MTL-AQA adapter: whole-video windows (1-based files), CoRe/MUSDL variants and layouts, real pickles."""

from __future__ import annotations

from pathlib import Path

import pytest
from _datasets_fixtures import make_mtl_aqa, real_annotations_dir

from hmtools.datasets import load_dataset
from hmtools.errors import InputError


def _kinds(index) -> set[tuple[str, str]]:
    return {(p.sample_id, p.kind) for p in index.problems}


def test_official_layout_windows(tmp_path: Path) -> None:
    make_mtl_aqa(tmp_path)
    idx = load_dataset("mtl_aqa", tmp_path)
    assert idx.root == tmp_path and idx.annotations == tmp_path / "MTL-AQA_split_0_data"
    by_id = {s.sample_id: s for s in idx.samples}
    assert sorted(by_id) == ["01/1", "01/2", "02/5", "03/7"]
    short = by_id["01/1"]  # 51-frame dive: the loaders' 103-frame window 48..150, with the +-3 shift's margins
    assert short.frames[0] == "01/000045.jpg" and short.frames[-1] == "01/000153.jpg" and len(short.frames) == 109
    assert short.extra["first_file"] == 45 and short.extra["start_frame"] == 100 and short.expected_frames == 109
    assert short.extra["window"] == [3, 105] and short.frames[3] == "01/000048.jpg"
    assert short.split == "train" and short.score == 88.0 and short.judge_scores == () and short.action is None
    long = by_id["01/2"]  # longer than 103: extended back to start_frame
    assert long.frames[0] == "01/000197.jpg" and long.frames[-1] == "01/000423.jpg" and len(long.frames) == 227
    assert long.extra["window"] == [3, 223]
    clamped = by_id["02/5"]  # window would start before file 1; the video ends at file 59, before end_frame 60
    assert clamped.extra["first_file"] == 1 and clamped.frames[0] == "02/000001.jpg" and len(clamped.frames) == 59
    assert clamped.extra["last_file"] == 60 and clamped.expected_frames == 60 and clamped.extra["window"] == [0, 58]
    assert _kinds(idx) == {("02/5", "frame_count_mismatch"), ("03/7", "missing_frames")}


def test_zero_based_video_folder_follows_the_loaders_list_index(tmp_path: Path) -> None:
    make_mtl_aqa(tmp_path)
    folder = tmp_path / "01"
    for f in sorted(folder.iterdir()):  # renumber 1..450 -> 0..449
        f.rename(folder / f"{int(f.stem) - 1:06d}.jpg")
    idx = load_dataset("mtl-aqa", tmp_path)
    s = next(s for s in idx.samples if s.sample_id == "01/1")
    assert s.frames[0] == "01/000044.jpg" and s.frames[-1] == "01/000152.jpg" and len(s.frames) == 109
    assert s.frames[s.extra["window"][0]] == "01/000047.jpg" and s.frames[s.extra["window"][1]] == "01/000149.jpg"
    assert any("01/ numbered from 0" in n for n in idx.notes)
    assert not any(p.sample_id.startswith("01/") for p in idx.problems)


def test_core_layout_and_annotations(tmp_path: Path) -> None:
    make_mtl_aqa(tmp_path, layout="core", ann="core", ann_dir="info")
    idx = load_dataset("mtl-aqa", tmp_path)
    assert idx.root == tmp_path / "new" / "new_total_frames_256s"
    s = next(s for s in idx.samples if s.sample_id == "01/1")
    assert s.frames[-1] == "01/00000153.jpg" and s.action == "407c" and len(s.judge_scores) == 7
    assert ("02/5", "score_mismatch") in _kinds(idx)
    assert ("01/1", "score_mismatch") not in _kinds(idx)
    # the CoRe frame folder given directly as root: annotations found in ../../info
    idx2 = load_dataset("mtl-aqa", tmp_path / "new" / "new_total_frames_256s")
    assert idx2.annotations == tmp_path / "info" and len(idx2.samples) == 4


def test_musdl_per_clip_layout(tmp_path: Path) -> None:
    make_mtl_aqa(tmp_path, layout="musdl", ann="musdl", ann_dir="data/info")
    idx = load_dataset("mtl-aqa", tmp_path)
    assert idx.root == tmp_path / "frames" and any("MUSDL" in n for n in idx.notes)
    by_id = {s.sample_id: s for s in idx.samples}
    assert len(by_id["01/1"].frames) == 109 and by_id["01/1"].frames[0] == "01_01/00000.jpg"
    assert by_id["01/1"].expected_frames is None and len(by_id["01/1"].judge_scores) == 7
    kinds = _kinds(idx)
    assert ("01/2", "frame_count_mismatch") in kinds and ("02/5", "missing_frames") in kinds


def test_annotation_file_option_and_errors(tmp_path: Path) -> None:
    make_mtl_aqa(tmp_path, ann="core")
    make_mtl_aqa(tmp_path, ann="official")
    assert next(iter(load_dataset("mtl-aqa", tmp_path).samples)).action == "407c"  # richest by default
    off = load_dataset("mtl-aqa", tmp_path, annotation_file="final_annotations_dict.pkl")
    assert all(s.action is None for s in off.samples)
    with pytest.raises(InputError, match="annotation_file must be one of"):
        load_dataset("mtl-aqa", tmp_path, annotation_file="x.pkl")
    with pytest.raises(InputError) as e:
        load_dataset("mtl-aqa", tmp_path / "02")
    assert "MTL-AQA_split_0_data" in str(e.value) and "train_split_0.pkl" in str(e.value)


def test_real_pickles() -> None:
    real = real_annotations_dir()
    if real is None:
        pytest.skip("../shared/real_annotations not present beside the checkout")
    for name in (
        "final_annotations_dict.pkl",
        "final_annotations_dict_with_dive_number.pkl",
        "augmented_final_annotations_dict.pkl",
    ):
        idx = load_dataset("mtl-aqa", real / "mtl_aqa", annotations=real / "mtl_aqa", annotation_file=name)
        assert len(idx.samples) == 1412, name
        assert sum(s.split == "train" for s in idx.samples) == 1059
        assert sum(s.split == "test" for s in idx.samples) == 353
        s = next(s for s in idx.samples if s.sample_id == "01/1")
        assert (s.extra["start_frame"], s.extra["end_frame"], s.score) == (7377, 7462, 88.0)
        assert s.extra["first_file"] == 7462 - 102 - 3 and s.expected_frames == 103 + 6
    mism = {p.sample_id for p in idx.problems if p.kind == "score_mismatch"}
    assert len(mism) == 1412 - 1382
    assert ("04/49", "annotation_anomaly") in _kinds(idx)  # MUSDL's 45.0 typo


def test_whole_video_listings_are_not_all_held_at_once(tmp_path: Path) -> None:
    """The 15 real videos hold 2.36 M frames: keeping every video's listing (number -> name) for the whole
    load held ~300 MB. Samples come video by video, so one listing at a time is enough."""
    import tracemalloc

    from _datasets_fixtures import dump, write_frames

    n = 3000

    def peak(videos: int) -> int:
        root = tmp_path / f"v{videos}"
        keys = [(vid, 1) for vid in range(1, videos + 1)]
        entry = {"start_frame": n - 150, "end_frame": n - 10, "difficulty": 2.0, "final_score": 50.0}
        dump(root / "MTL-AQA_split_0_data" / "final_annotations_dict.pkl", dict.fromkeys(keys, entry))
        dump(root / "MTL-AQA_split_0_data" / "train_split_0.pkl", keys)
        dump(root / "MTL-AQA_split_0_data" / "test_split_0.pkl", [])
        for vid in range(1, videos + 1):
            write_frames(root / f"{vid:02d}", [f"{i:06d}.jpg" for i in range(1, n + 1)])
        tracemalloc.start()
        idx = load_dataset("mtl-aqa", root)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(idx.samples) == videos and not idx.problems
        return top

    one, four = peak(1), peak(4)
    assert four < 1.5 * one, (one, four)


def test_a_sample_in_both_split_files_is_reported(tmp_path: Path) -> None:
    """A (video, clip) in both split files was put in train without a word (test data trained on)."""
    from _datasets_fixtures import MTL_ENTRIES, dump

    make_mtl_aqa(tmp_path)
    folder = tmp_path / "MTL-AQA_split_0_data"
    dump(folder / "test_split_0.pkl", list(MTL_ENTRIES))  # every key, the train ones too
    idx = load_dataset("mtl-aqa", tmp_path)
    train = sorted(f"{v:02d}/{c}" for (v, c), e in MTL_ENTRIES.items() if e[2] == "train")
    both = sorted(p.sample_id for p in idx.problems if "both the train and the test" in p.detail)
    assert both == train and train
    assert all(s.split == "train" for s in idx.samples if s.sample_id in train)
