"""AQA-7 adapter: split files, score scale, both frame layouts, problems; and the real split files."""

from __future__ import annotations

from pathlib import Path

import pytest
from _datasets_fixtures import AQA7_TEST, AQA7_TRAIN, make_aqa7, real_annotations_dir, write_mat

from hmtools.datasets import load_dataset
from hmtools.datasets.aqa7 import SCORE_RANGES
from hmtools.errors import DataFormatError, InputError


def _kinds(index):
    return {(p.sample_id, p.kind) for p in index.problems}


def test_extracted_layout_original_scale(tmp_path: Path) -> None:
    make_aqa7(tmp_path, extracted={"diving/001": 103, "gym_vault/002": 5})
    idx = load_dataset("aqa7", tmp_path)
    assert len(idx.samples) == len(AQA7_TRAIN) + len(AQA7_TEST)
    assert [s.sample_id for s in idx.samples] == sorted(s.sample_id for s in idx.samples)
    d1 = next(s for s in idx.samples if s.sample_id == "diving/001")
    assert d1.split == "train" and d1.score == 80.5 and d1.action_class == "diving"
    assert d1.frames[0] == "diving-out/001/img_00001.jpg" and d1.frames[-1] == "diving-out/001/img_00103.jpg"
    assert len(d1.frames) == 103 and d1.video is None
    assert any("original scale" in n for n in idx.notes)
    kinds = _kinds(idx)
    assert ("gym_vault/002", "frame_count_mismatch") in kinds  # 5 < the 103 CoRe reads
    assert ("diving/002", "missing_frames") in kinds
    assert ("diving/001", "missing_frames") not in kinds
    assert next(s for s in idx.samples if s.sample_id == "gym_vault/002").split == "test"


def test_x100_scores_autodetected_and_consolidated_names(tmp_path: Path) -> None:
    make_aqa7(tmp_path, scale=100, names="consolidated")
    idx = load_dataset("aqa7", tmp_path)
    assert any("x100" in n for n in idx.notes)
    scores = {s.sample_id: s.score for s in idx.samples}
    assert scores["gym_vault/002"] == 16.87 and scores["diving/002"] == 102.6
    assert next(s for s in idx.samples if s.sample_id == "diving/002").extra["raw_score"] == pytest.approx(10260)


def test_explicit_scale_and_suspect_scale(tmp_path: Path) -> None:
    make_aqa7(tmp_path, scale=100)
    idx = load_dataset("aqa7", tmp_path, score_scale="100")
    assert {s.sample_id: s.score for s in idx.samples}["diving/001"] == 80.5
    assert not any(p.kind == "score_scale_suspect" for p in idx.problems)
    wrong = load_dataset("aqa7", tmp_path, score_scale="1")
    assert {s.sample_id: s.score for s in wrong.samples}["diving/001"] == 8050
    assert any(p.kind == "score_scale_suspect" for p in wrong.problems)
    with pytest.raises(InputError, match="auto, 1 or 100"):
        load_dataset("aqa7", tmp_path, score_scale="10")


def test_auto_scale_undecidable_raises(tmp_path: Path) -> None:
    for split in ("train", "test"):
        write_mat(
            tmp_path / "Split_4" / f"split_4_{split}_list.mat",
            f"consolidated_{split}_list",
            [(1, 1, 600.0), (2, 1, 14.0)],
        )
    with pytest.raises(InputError, match="--score-scale"):
        load_dataset("aqa7", tmp_path)


def test_video_layout_and_extracted_wins(tmp_path: Path) -> None:
    make_aqa7(tmp_path, videos={"diving/001": 3, "diving/003": 3}, extracted={"diving/003": 103})
    idx = load_dataset("aqa7", tmp_path)
    by_id = {s.sample_id: s for s in idx.samples}
    assert by_id["diving/001"].video == "Actions/diving/001.avi" and by_id["diving/001"].frames == ()
    problem = next(p for p in idx.problems if p.sample_id == "diving/001")
    assert problem.kind == "frames_not_extracted" and "hmtools extract-frames --dataset aqa7" in problem.detail
    assert by_id["diving/003"].video is None and len(by_id["diving/003"].frames) == 103


def test_missing_and_malformed_split_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Split_4") as e:
        load_dataset("aqa7", tmp_path)
    assert "consolidated_train_list.mat" in str(e.value)
    make_aqa7(tmp_path)
    (tmp_path / "Split_4" / "split_4_test_list.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataFormatError, match="split_4_test_list.mat"):
        load_dataset("aqa7", tmp_path)
    write_mat(tmp_path / "Split_4" / "split_4_test_list.mat", "consolidated_test_list", [(9, 1, 10.0)])
    with pytest.raises(DataFormatError, match="unknown class"):
        load_dataset("aqa7", tmp_path)


def test_duplicate_rows_reported(tmp_path: Path) -> None:
    make_aqa7(tmp_path)
    write_mat(tmp_path / "Split_4" / "split_4_test_list.mat", "consolidated_test_list", [(1, 1, 50.0)])
    idx = load_dataset("aqa7", tmp_path)
    assert ("diving/001", "annotation_anomaly") in _kinds(idx)
    assert next(s for s in idx.samples if s.sample_id == "diving/001").split == "train"


def test_real_split_files() -> None:
    real = real_annotations_dir()
    if real is None:
        pytest.skip("../shared/real_annotations not present beside the checkout")
    idx = load_dataset("aqa7", real / "aqa7", annotations=real / "aqa7")
    assert sum(s.split == "train" for s in idx.samples) == 803
    assert sum(s.split == "test" for s in idx.samples) == 303
    assert any("x100" in n for n in idx.notes)
    for cls, (lo, hi) in SCORE_RANGES.items():
        scores = [s.score for s in idx.samples if s.action_class == cls]
        assert min(scores) == pytest.approx(lo) and max(scores) == pytest.approx(hi), cls
    assert {s.action_class for s in idx.samples} == set(SCORE_RANGES)


def test_doubled_zip_folder_is_followed(tmp_path: Path) -> None:
    make_aqa7(tmp_path / "AQA-7", videos={"diving/001": 2})
    idx = load_dataset("aqa7", tmp_path)
    assert idx.root == tmp_path / "AQA-7"
    assert next(s for s in idx.samples if s.sample_id == "diving/001").video == "Actions/diving/001.avi"


def test_doubled_zip_folder_is_followed_with_annotations_elsewhere(tmp_path: Path) -> None:
    """With --annotations pointing at split files elsewhere (e.g. the consolidated copies), the zip's outer
    folder as --root found no frame of any sample: every sample was missing_frames."""
    make_aqa7(tmp_path / "zip" / "AQA-7", extracted={"diving/001": 3})
    make_aqa7(tmp_path / "splits")
    idx = load_dataset("aqa7", tmp_path / "zip", tmp_path / "splits" / "Split_4")
    assert idx.root == tmp_path / "zip" / "AQA-7"
    assert next(s for s in idx.samples if s.sample_id == "diving/001").frames[0] == "diving-out/001/img_00001.jpg"
    assert any("dataset found at" in n for n in idx.notes)
    plain = load_dataset("aqa7", tmp_path / "zip" / "AQA-7", tmp_path / "splits" / "Split_4")
    assert plain.root == tmp_path / "zip" / "AQA-7" and not any("dataset found at" in n for n in plain.notes)


def test_gaps_in_frame_numbers_are_reported(tmp_path: Path) -> None:
    """CoRe-style loaders open img_00001..img_00103 by name: a folder of 104 files with img_00050 missing, or
    one numbered from 0, passed inspect without a word and crashed those loaders (and misaligned masks)."""
    from _datasets_fixtures import write_frames

    make_aqa7(tmp_path, extracted={"gym_vault/002": 20})
    write_frames(tmp_path / "diving-out" / "001", [f"img_{i:05d}.jpg" for i in range(1, 106) if i != 50])
    write_frames(tmp_path / "diving-out" / "002", [f"img_{i:05d}.jpg" for i in range(0, 103)])
    write_frames(tmp_path / "diving-out" / "003", [f"img_{i:05d}.jpg" for i in range(1, 31) if i not in (7, 8)])
    idx = load_dataset("aqa7", tmp_path)
    gaps = {p.sample_id: p.detail for p in idx.problems if p.kind == "frame_range_mismatch"}
    assert set(gaps) == {"diving/001", "diving/002", "diving/003"}
    assert "lacks frame numbers 50 (1 of 1..103)" in gaps["diving/001"]
    assert "lacks frame numbers 103 (1 of 1..103)" in gaps["diving/002"]
    assert "lacks frame numbers 7, 8 (2 of 1..30)" in gaps["diving/003"]
    assert ("diving/001", "frame_count_mismatch") not in _kinds(idx)
    assert ("gym_vault/002", "frame_count_mismatch") in _kinds(idx)  # 1..20: short, but no gap


def test_two_files_for_one_frame_number_are_reported(tmp_path: Path) -> None:
    """Frames converted to PNG beside the JPEGs doubled the sample silently (206 'frames', each twice, all
    built and trained on); with 103 numbers present nothing else is reported."""
    from _datasets_fixtures import write_frames

    make_aqa7(tmp_path)
    names = [f"img_{i:05d}.{ext}" for i in range(1, 104) for ext in ("jpg", "png")]
    write_frames(tmp_path / "diving-out" / "001", names)
    write_frames(tmp_path / "diving-out" / "002", [f"img_{i:05d}.jpg" for i in range(1, 104)] + ["img_007.jpg"])
    idx = load_dataset("aqa7", tmp_path)
    dups = {p.sample_id: p.detail for p in idx.problems if p.kind == "duplicate_frames"}
    assert set(dups) == {"diving/001", "diving/002"}
    assert "for 103 frame numbers (e.g. img_00001.jpg, img_00001.png)" in dups["diving/001"]
    assert "for 1 frame numbers (e.g. img_00007.jpg, img_007.jpg)" in dups["diving/002"]
    assert {p.kind for p in idx.problems if p.sample_id == "diving/001"} == {"duplicate_frames"}
