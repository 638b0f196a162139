"""A ``--root`` that points inside a dataset (one class, video or frame folder, the annotation folder)
or just above it: one error line that names the folder to pass instead (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hmtools.datasets import load_dataset
from hmtools.errors import InputError
from tests._datasets_fixtures import FD_V1, make_aqa7, make_finediving, make_mtl_aqa, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aqa7_sample"


def _fix_of(err: str) -> Path:
    """The folder an error tells to pass (``pass --root DIR (...)``)."""
    return Path(err.split("pass --root ", 1)[1].split(" (", 1)[0].split(",", 1)[0])


@pytest.mark.parametrize(
    ("sub", "looks_like"),
    [
        ("diving-out", "one class folder of AQA-7 (diving-out/"),
        ("diving-out/001", "one sample's frame folder of AQA-7 (diving-out/001/)"),
        ("Split_4", "the Split_4/ annotation folder of AQA-7"),
    ],
)
def test_aqa7_root_inside_the_dataset(tmp_path, capsys, sub, looks_like) -> None:
    root = tmp_path / "Seven"
    shutil.copytree(EXAMPLE, root)
    code, out, err = run_cli(["inspect", "--dataset", "aqa7", "--root", str(root / sub)], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert looks_like in err and "Split_4/" in err
    assert _fix_of(err) == root
    assert len(load_dataset("aqa7", _fix_of(err)).samples) == 4  # the folder named is the right one


def test_aqa7_class_folder_with_annotations_given_is_refused_too(tmp_path) -> None:
    """With --annotations the split files are found, and every sample would be silently missing."""
    root = make_aqa7(tmp_path / "Seven", extracted={"diving/001": 3})
    with pytest.raises(InputError, match="looks like one class folder of AQA-7") as e:
        load_dataset("aqa7", root / "diving-out", root / "Split_4")
    assert f"pass --root {root} (its parent)" in str(e.value)


def test_build_masks_on_a_class_folder_names_the_dataset_root(tmp_path, capsys) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "ds")
    store = tmp_path / "m.db"
    args = ["build-masks", "--dataset", "aqa7", "--root", str(tmp_path / "ds" / "gym_vault-out"), "--store", str(store)]
    code, _, err = run_cli([*args, "--detector", "lite", "--segmenter", "lite"], capsys)
    assert code == 2 and "one class folder of AQA-7 (gym_vault-out/" in err
    assert _fix_of(err) == tmp_path / "ds" and not store.exists()


def test_aqa7_folder_above_the_dataset_and_raw_video_folders(tmp_path) -> None:
    root = make_aqa7(tmp_path / "data" / "Seven", extracted={"diving/001": 3}, videos={"diving/002": 2})
    with pytest.raises(InputError, match=r"holds AQA-7 in Seven/.*\(inside it\)"):
        load_dataset("aqa7", tmp_path / "data")
    with pytest.raises(InputError, match=r"the raw-video folder Actions/ .*\(its parent\)"):
        load_dataset("aqa7", root / "Actions")
    with pytest.raises(InputError, match=r"one class's video folder of AQA-7 \(Actions/diving/\).*\(two levels up\)"):
        load_dataset("aqa7", root / "Actions" / "diving")


def test_aqa7_roots_that_are_right_still_load(tmp_path) -> None:
    """The zip's doubled AQA-7/AQA-7/ is followed, and a root with only the split files still loads."""
    make_aqa7(tmp_path / "zip" / "AQA-7", extracted={"diving/001": 3})
    assert load_dataset("aqa7", tmp_path / "zip").root == tmp_path / "zip" / "AQA-7"
    only_splits = make_aqa7(tmp_path / "splits")
    assert len(load_dataset("aqa7", only_splits).samples) == 11


@pytest.mark.parametrize(
    ("sub", "looks_like", "fix"),
    [
        ("FINADiving_MTL_256s/01", "one video folder of FineDiving (01/", "FINADiving_MTL_256s"),
        (
            "FINADiving_MTL_256s/01/1",
            "one dive's frame folder of FineDiving (<video>/<idx>/ = 01/1/)",
            "FINADiving_MTL_256s",
        ),
        (f"FINADiving_MTL_256s/{FD_V1}", f"one video folder of FineDiving ({FD_V1}/", "FINADiving_MTL_256s"),
        ("Annotations", "the Annotations/ folder of FineDiving", "."),
    ],
)
def test_finediving_root_inside_the_dataset(tmp_path, capsys, sub, looks_like, fix) -> None:
    make_finediving(tmp_path)
    code, _, err = run_cli(["inspect", "--dataset", "finediving", "--root", str(tmp_path / sub)], capsys)
    assert code == 2 and looks_like in err and "Annotations/" in err
    assert _fix_of(err) == (tmp_path / fix).resolve()
    assert len(load_dataset("finediving", _fix_of(err)).samples) == 5


def test_finediving_video_folder_with_annotations_given_is_refused(tmp_path) -> None:
    make_finediving(tmp_path)
    with pytest.raises(InputError, match="one video folder of FineDiving"):
        load_dataset("finediving", tmp_path / "FINADiving_MTL_256s" / "14", tmp_path / "Annotations")


@pytest.mark.parametrize(
    ("layout", "sub", "looks_like", "fix"),
    [
        (
            "core",
            "new/new_total_frames_256s/01",
            "one video's frame folder of MTL-AQA (01/)",
            "new/new_total_frames_256s",
        ),
        ("musdl", "frames/01_01", "one MUSDL clip folder of MTL-AQA (01_01/)", "frames"),
        ("core", "MTL-AQA_split_0_data", "the annotation folder of MTL-AQA", "."),
    ],
)
def test_mtl_aqa_root_inside_the_dataset(tmp_path, capsys, layout, sub, looks_like, fix) -> None:
    make_mtl_aqa(tmp_path, layout=layout)
    code, _, err = run_cli(["inspect", "--dataset", "mtl-aqa", "--root", str(tmp_path / sub)], capsys)
    assert code == 2 and looks_like in err and "train_split_0.pkl" in err
    assert _fix_of(err) == (tmp_path / fix).resolve()
    assert any(s.frames for s in load_dataset("mtl-aqa", _fix_of(err)).samples)


def test_mtl_aqa_frame_folder_finds_the_annotation_folder_beside_it(tmp_path) -> None:
    """docs: --root may be the frame folder; the official layout keeps MTL-AQA_split_0_data/ beside
    whole_videos_frames/ (and MUSDL's frames/ beside the annotation folder)."""
    make_mtl_aqa(tmp_path / "x", layout="official")
    (tmp_path / "ds").mkdir()
    shutil.move(tmp_path / "x" / "MTL-AQA_split_0_data", tmp_path / "ds")
    shutil.move(tmp_path / "x", tmp_path / "ds" / "whole_videos_frames")
    idx = load_dataset("mtl-aqa", tmp_path / "ds" / "whole_videos_frames")
    assert idx.annotations == tmp_path / "ds" / "MTL-AQA_split_0_data"
    assert (
        sum(len(s.frames) for s in idx.samples)
        == sum(len(s.frames) for s in load_dataset("mtl-aqa", tmp_path / "ds").samples)
        > 0
    )
