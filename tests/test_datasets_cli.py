"""``hmtools inspect`` through the real CLI entry point: JSON shape and exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _datasets_fixtures import (
    hostile_pickle,
    make_aqa7,
    make_finediving,
    make_mtl_aqa,
    real_annotations_dir,
    run_cli,
    write_video,
)

Capsys = pytest.CaptureFixture[str]


def test_inspect_json_shape_and_exit_codes(tmp_path: Path, capsys: Capsys) -> None:
    make_finediving(tmp_path)
    code, out, _ = run_cli(["inspect", "--dataset", "finediving", "--root", str(tmp_path), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert {"dataset", "root", "samples", "splits", "frames_found", "problems", "notes"} <= set(report)
    assert report["dataset"] == "finediving" and report["samples"] == 5
    assert report["splits"] == {"train": 3, "test": 2}
    assert report["frames_found"] == 4 + 5 + 2 + 4 and report["expected_frames"] == 4 + 4 + 5 + 3 + 4
    assert all(set(p) == {"sample_id", "kind", "detail"} for p in report["problems"])
    assert report["problem_counts"]["missing_frames"] == 1
    code, _, _ = run_cli(["inspect", "--dataset", "finediving", "--root", str(tmp_path), "--strict"], capsys)
    assert code == 1


def test_inspect_clean_dataset_strict_exit_0_and_text(tmp_path: Path, capsys: Capsys) -> None:
    make_aqa7(
        tmp_path,
        extracted={
            sid: 103
            for sid in (
                "diving/001",
                "diving/003",
                "gym_vault/001",
                "ski_big_air/002",
                "snowboard_big_air/001",
                "sync_diving_3m/002",
                "sync_diving_10m/001",
                "diving/002",
                "gym_vault/002",
                "snowboard_big_air/002",
                "sync_diving_10m/002",
            )
        },
    )
    code, out, _ = run_cli(["inspect", "--dataset", "aqa7", "--root", str(tmp_path), "--strict"], capsys)
    assert code == 0, out
    assert "11 samples (test 4, train 7), 1133 frames found" in out
    assert "class gym_vault: 2 samples, score 14.2-16.87" in out and "note: score scale auto-detected" in out


def test_inspect_bad_input_exit_2(tmp_path: Path, capsys: Capsys) -> None:
    code, _, err = run_cli(["inspect", "--dataset", "ucf101", "--root", str(tmp_path)], capsys)
    assert code == 2 and "finediving, mtl-aqa, aqa7" in err
    code, _, err = run_cli(
        ["inspect", "--dataset", "finediving", "--root", str(tmp_path), "--score-scale", "100"], capsys
    )
    assert code == 2 and "aqa7 only" in err
    code, _, err = run_cli(["inspect", "--dataset", "aqa7", "--root", str(tmp_path / "nope")], capsys)
    assert code == 2 and "nope" in err
    code, _, err = run_cli(["inspect", "--dataset", "mtl-aqa", "--root", str(tmp_path)], capsys)
    assert code == 2 and str(tmp_path / "MTL-AQA_split_0_data") in err and "train_split_0.pkl" in err
    make_mtl_aqa(tmp_path)
    (tmp_path / "MTL-AQA_split_0_data" / "test_split_0.pkl").write_bytes(b"\x80\x04truncated")
    code, _, err = run_cli(["inspect", "--dataset", "mtl-aqa", "--root", str(tmp_path)], capsys)
    assert code == 2 and "test_split_0.pkl" in err and "not a readable pickle" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_inspect_hostile_pickle_exit_2_and_nothing_runs(tmp_path: Path, capsys: Capsys) -> None:
    make_mtl_aqa(tmp_path)
    target = tmp_path / "created_by_pickle.txt"
    hostile_pickle(tmp_path / "MTL-AQA_split_0_data" / "final_annotations_dict.pkl", target)
    code, _, err = run_cli(["inspect", "--dataset", "mtl-aqa", "--root", str(tmp_path), "--json"], capsys)
    assert code == 2
    assert "final_annotations_dict.pkl" in err and "refused to load global" in err and ".open" in err
    assert not target.exists()


@pytest.mark.parametrize(
    ("dataset", "folder", "samples", "train", "test"),
    [
        ("finediving", "finediving", 3000, 2251, 749),
        ("mtl-aqa", "mtl_aqa", 1412, 1059, 353),
        ("aqa7", "aqa7", 1106, 803, 303),
    ],
)
def test_inspect_real_annotations_without_frames(
    tmp_path: Path, capsys: Capsys, dataset: str, folder: str, samples: int, train: int, test: int
) -> None:
    real = real_annotations_dir()
    if real is None:
        pytest.skip("../shared/real_annotations not present beside the checkout")
    args = [
        "inspect",
        "--dataset",
        dataset,
        "--root",
        str(tmp_path),
        "--annotations",
        str(real / folder),
        "--json",
    ]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    report = json.loads(out)
    assert report["samples"] == samples and report["splits"] == {"train": train, "test": test}
    assert report["frames_found"] == 0 and report["problem_counts"]["missing_frames"] == samples
    if dataset == "aqa7":
        assert len(report["classes"]) == 6 and report["classes"]["gym_vault"]["score_max"] == 16.87
        assert any("x100" in n for n in report["notes"])
    code, _, _ = run_cli([*args, "--strict"], capsys)
    assert code == 1


def test_samples_round_trip_through_json(tmp_path: Path) -> None:
    from hmtools.datasets import load_dataset
    from hmtools.schema import Sample

    make_finediving(tmp_path / "fd")
    make_mtl_aqa(tmp_path / "mtl", ann="core")
    make_aqa7(tmp_path / "aqa7", videos={"diving/001": 2}, extracted={"diving/002": 3})
    for name, sub in (("finediving", "fd"), ("mtl-aqa", "mtl"), ("aqa7", "aqa7")):
        for s in load_dataset(name, tmp_path / sub).samples:
            data = json.loads(json.dumps(s.to_json()))
            assert Sample.from_json(data, s.frames) == s, s.sample_id


def test_extract_frames_into_a_file_or_from_a_folder_exit_2_and_leave_nothing(tmp_path: Path, capsys: Capsys) -> None:
    """--out that is a file, or lies under one, and a --video that is a folder: one line, exit 2, no traceback."""
    write_video(tmp_path / "v.avi", 3)
    (tmp_path / "notes.txt").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    video = ["extract-frames", "--video", str(tmp_path / "v.avi"), "--out"]
    for args, says in (
        ([*video, str(tmp_path / "notes.txt")], "is a file"),
        ([*video, str(tmp_path / "notes.txt" / "frames")], "cannot create frame folder"),
        (["extract-frames", "--video", str(tmp_path), "--out", str(tmp_path / "o")], "is a folder"),
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and says in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "notes.txt").read_text() == "x"
