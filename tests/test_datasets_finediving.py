"""FineDiving adapter: both frame-root names, numeric frame order, planted problems, real pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from _datasets_fixtures import FD_SYNC, FD_V1, hostile_pickle, make_finediving, real_annotations_dir

from hmtools.datasets import load_dataset
from hmtools.errors import DataFormatError, InputError


def _kinds(index) -> set[tuple[str, str]]:
    return {(p.sample_id, p.kind) for p in index.problems}


def test_parent_root_finds_frame_folder_and_annotations(tmp_path: Path) -> None:
    make_finediving(tmp_path)
    idx = load_dataset("finediving", tmp_path)
    assert idx.root == tmp_path / "FINADiving_MTL_256s"
    assert idx.annotations == tmp_path / "Annotations"
    ids = [s.sample_id for s in idx.samples]
    assert ids == sorted(["01/1", "14/55", f"{FD_V1}/0", f"{FD_V1}/2", f"{FD_SYNC}/1"])
    by_id = {s.sample_id: s for s in idx.samples}
    s = by_id[f"{FD_V1}/2"]  # crosses 99999 -> 100000: numeric order, 6-digit names
    assert s.frames == tuple(f"{FD_V1}/2/{n}" for n in ("99998.jpg", "99999.jpg", "100000.jpg", "100001.jpg"))
    assert s.split == "test" and s.expected_frames == 4 and s.action == "105b"
    assert s.judge_scores == (6.0, 6.5, 7.0) and all(type(j) is float for j in s.judge_scores)
    assert s.extra["start_frame"] == 99998 and s.extra["sub_action_types"] == {
        "1": "step1",
        "13": "step13",
        "36": "step36",
    }
    one = by_id["01/1"]
    assert one.frame_labels == (4, 25, 25, 25, 36) and one.step_transitions == (0, 3)
    assert one.score == 88.0 + 1.0 and one.difficulty == 3.2 and len(one.judge_scores) == 7
    kinds = _kinds(idx)
    assert (f"{FD_V1}/0", "missing_frames") in kinds
    assert ("14/55", "frame_count_mismatch") in kinds
    assert (f"{FD_SYNC}/1", "annotation_anomaly") in kinds
    assert ("01/1", "score_mismatch") in kinds
    assert {k for k in kinds if k[0] == f"{FD_V1}/2"} == set()
    assert len(idx.problems) == 4


def test_release_layout_frame_root_named_finediving(tmp_path: Path) -> None:
    base = tmp_path / "Released_FineDiving_Dataset"
    make_finediving(base / "Dataset", frame_dir="FineDiving", ann_dir="../Annotations", skip_frames=())
    root = base / "Dataset" / "FineDiving"
    idx = load_dataset("finediving", root)
    assert idx.root == root and idx.annotations == root.parent.parent / "Annotations"
    assert sum(len(s.frames) for s in idx.samples) == 4 + 4 + 5 + 2 + 4
    assert not any(p.kind == "missing_frames" for p in idx.problems)


def test_frame_range_mismatch_and_fallback_to_aqa_pickle(tmp_path: Path) -> None:
    make_finediving(tmp_path, fine_file="aqa")
    folder = tmp_path / "FINADiving_MTL_256s" / FD_SYNC / "1"
    for f in sorted(folder.iterdir(), reverse=True):  # renumber 1-based, as a re-extraction would
        f.rename(folder / f"{int(f.stem) - 3094 + 10:05d}.jpg")
    idx = load_dataset("finediving", tmp_path)
    assert (f"{FD_SYNC}/1", "frame_range_mismatch") in _kinds(idx)
    s = next(s for s in idx.samples if s.sample_id == "01/1")
    assert s.frame_labels == (4, 25, 25, 25, 36)
    assert s.extra["sub_action_types"] == {"4": "?", "25": "?", "36": "Entry"}  # names from the table only


def test_fine_and_coarse_disagreement_reported(tmp_path: Path) -> None:
    make_finediving(tmp_path)
    path = tmp_path / "Annotations" / "FineDiving_fine-grained_annotation.pkl"
    fine = pickle.loads(path.read_bytes())
    fine[("14", 55)]["dive_score"] = 1.0
    path.write_bytes(pickle.dumps(fine))
    idx = load_dataset("finediving", tmp_path)
    p = next(p for p in idx.problems if p.sample_id == "14/55" and p.kind == "annotation_anomaly")
    assert "fine-grained file says 205b / 1.0" in p.detail


def test_no_fine_grained_file_is_a_note(tmp_path: Path) -> None:
    make_finediving(tmp_path, fine_file="none")
    idx = load_dataset("finediving", tmp_path)
    assert all(s.frame_labels is None and s.step_transitions is None for s in idx.samples)
    assert any("no fine-grained" in n for n in idx.notes)


def test_missing_annotations_names_every_place(tmp_path: Path) -> None:
    (tmp_path / "FineDiving").mkdir()
    with pytest.raises(InputError) as e:
        load_dataset("finediving", tmp_path / "FineDiving")
    msg = str(e.value)
    for p in (
        tmp_path / "FineDiving" / "Annotations",
        tmp_path / "Annotations",
        tmp_path.parent / "Annotations",
    ):
        assert str(p) in msg
    assert "FineDiving_coarse_annotation.pkl" in msg and "--annotations" in msg


def test_split_and_key_anomalies(tmp_path: Path) -> None:
    make_finediving(tmp_path)
    ann = tmp_path / "Annotations"
    train = pickle.loads((ann / "train_split.pkl").read_bytes())
    (ann / "train_split.pkl").write_bytes(pickle.dumps(train[1:] + [("ghost", 3)]))
    idx = load_dataset("finediving", tmp_path)
    kinds = _kinds(idx)
    assert ("ghost/3", "annotation_anomaly") in kinds
    dropped = f"{train[0][0]}/{train[0][1]}"
    assert (dropped, "annotation_anomaly") in kinds and dropped not in {s.sample_id for s in idx.samples}
    (ann / "test_split.pkl").write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(DataFormatError, match="test_split.pkl"):
        load_dataset("finediving", tmp_path)


def test_hostile_pickle_refused_without_side_effect(tmp_path: Path) -> None:
    make_finediving(tmp_path)
    target = tmp_path / "pwned.txt"
    hostile_pickle(tmp_path / "Annotations" / "FineDiving_coarse_annotation.pkl", target)
    with pytest.raises(DataFormatError, match=r"refused to load global '(io|builtins)\.open'"):
        load_dataset("finediving", tmp_path)
    assert not target.exists()


def test_real_pickles() -> None:
    real = real_annotations_dir()
    if real is None:
        pytest.skip("../shared/real_annotations not present beside the checkout")
    idx = load_dataset("finediving", real / "finediving", annotations=real / "finediving")
    assert len(idx.samples) == 3000
    assert sum(s.split == "train" for s in idx.samples) == 2251
    assert sum(s.split == "test" for s in idx.samples) == 749
    kinds = [p.kind for p in idx.problems]
    assert kinds.count("missing_frames") == 3000
    steps = [p for p in idx.problems if p.kind == "annotation_anomaly" and "steps_transit_frames" in p.detail]
    assert len(steps) == 7  # the 7 anomalous steps_transit_frames of datasets.md
    judges = {p.sample_id for p in idx.problems if p.kind == "annotation_anomaly" and "outside 0-10" in p.detail}
    assert judges == {"04/49", "FINAWorldChampionships2019_Women3m_final_r3/1"}  # typed 45.0 and 55.5
    assert kinds.count("score_mismatch") == 3000 - 2876
    assert kinds.count("frame_count_mismatch") == 0
    by_id = {s.sample_id: s for s in idx.samples}
    s = by_id["01/1"]
    assert s.step_transitions == (2, 34) and len(s.frame_labels) == 85 == s.expected_frames
    assert by_id["14/55"].expected_frames == 94 and by_id["14/55"].extra["start_frame"] == 94829
    assert sum(s.expected_frames for s in idx.samples) == 312256
    assert len({s.sample_id.rsplit("/", 1)[0] for s in idx.samples}) == 135


def test_a_sample_in_both_split_files_is_reported(tmp_path: Path) -> None:
    """A key in both train_split.pkl and test_split.pkl (an edited split) was put in train without a word:
    test data trained on, and the test figures quietly wrong."""
    from _datasets_fixtures import dump

    make_finediving(tmp_path)
    dump(tmp_path / "Annotations" / "test_split.pkl", [(FD_V1, 2), ("14", 55), ("01", 1)])  # ("01", 1) is train
    idx = load_dataset("finediving", tmp_path)
    both = [p for p in idx.problems if "both the train and the test" in p.detail]
    assert [(p.sample_id, p.kind) for p in both] == [("01/1", "annotation_anomaly")]
    assert next(s for s in idx.samples if s.sample_id == "01/1").split == "train"
