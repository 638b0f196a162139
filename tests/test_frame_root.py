"""``--root`` may be the dataset root or its frame folder, for every command that reads frames."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _datasets_fixtures import run_cli, write_frames

from hmtools.frame_root import find_frame_root
from hmtools.store import MaskStore

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aqa7_sample"


def test_finds_the_frame_folder_one_or_two_levels_down(tmp_path: Path) -> None:
    keys = ["01/000001.jpg", "01/000002.jpg"]
    write_frames(tmp_path / "mtl" / "new" / "new_total_frames_256s" / "01", ["000001.jpg", "000002.jpg"])
    (tmp_path / "mtl" / "info").mkdir()
    assert find_frame_root(tmp_path / "mtl", keys) == tmp_path / "mtl" / "new" / "new_total_frames_256s"
    frames = tmp_path / "mtl" / "new" / "new_total_frames_256s"
    assert find_frame_root(frames, keys) == frames  # the frame folder itself
    write_frames(tmp_path / "fd" / "FINADiving_MTL_256s" / "01" / "1", ["00001.jpg"])
    assert find_frame_root(tmp_path / "fd", ["01/1/00001.jpg"]) == tmp_path / "fd" / "FINADiving_MTL_256s"


def test_a_root_without_the_frames_is_returned_as_given(tmp_path: Path) -> None:
    write_frames(tmp_path / "a" / "b" / "c" / "d" / "01", ["000001.jpg"])  # three levels below a/: too deep
    assert find_frame_root(tmp_path / "a", ["01/000001.jpg"]) == tmp_path / "a"
    assert find_frame_root(tmp_path / "nowhere", ["01/000001.jpg"]) == tmp_path / "nowhere"
    assert find_frame_root(tmp_path, []) == tmp_path


def test_a_store_probes_with_the_first_frames_of_its_samples(tmp_path: Path) -> None:
    from _exchange_fixtures import make_samples

    from hmtools.frame_root import store_frame_root

    samples = make_samples(n_samples=2, n_frames=2)
    for s in samples:
        key = s.frames[0]
        write_frames(tmp_path / "ds" / "Seven" / Path(key).parent, [Path(key).name])
    with MaskStore(tmp_path / "s.db") as st:
        st.add_samples(samples)
        assert store_frame_root(st, tmp_path / "ds") == tmp_path / "ds" / "Seven"
        assert store_frame_root(st, tmp_path / "ds" / "Seven") == tmp_path / "ds" / "Seven"


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the bundled sample is part of the repository")
def test_build_preview_and_validate_take_the_folder_above_the_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The AQA-7 zip unpacks to ``AQA-7/AQA-7/``: the adapter finds the data one level down, and
    the frame keys are relative to that folder. build-masks read the frames relative to --root and
    found none of them (exit 1)."""
    data = tmp_path / "download" / "AQA-7"
    shutil.copytree(SAMPLE / "Split_4", data / "Split_4")
    shutil.copytree(SAMPLE / "diving-out" / "001", data / "diving-out" / "001")
    root, store = tmp_path / "download", tmp_path / "s.db"
    code, _, err = run_cli(
        [
            "build-masks",
            *("--dataset", "aqa7", "--root", str(root), "--store", str(store)),
            *("--detector", "lite", "--segmenter", "lite", "--samples", "diving/001"),
        ],
        capsys,
    )
    assert code == 0, err
    with MaskStore(store, read_only=True) as st:
        (sample,) = st.sample_ids()
        frames = st.frames(sample)
        assert frames[0].key == "diving-out/001/img_00001.jpg" and all(f.height for f in frames)
    out = tmp_path / "prev.mp4"
    code, _, err = run_cli(
        ["preview", "--store", str(store), "--root", str(root), "--sample", "diving/001", "--out", str(out)], capsys
    )
    assert code == 0 and out.stat().st_size > 1000, err
    code, stdout, err = run_cli(["validate", str(store), "--root", str(root)], capsys)
    assert code == 0 and "no readable frame" not in stdout + err, stdout + err


def test_a_shallower_frame_folder_wins_as_in_the_adapters(tmp_path: Path) -> None:
    """FineDiving's adapter takes ``FINADiving_MTL_256s/`` before ``Dataset/FineDiving/``; the folder
    one level down was passed over for the one two levels down inside ``Dataset/`` (first in name order)."""
    keys = ["01/1/00001.jpg"]
    for frames in ("Dataset/FineDiving", "FINADiving_MTL_256s"):
        write_frames(tmp_path / frames / "01" / "1", ["00001.jpg"])
    assert find_frame_root(tmp_path, keys) == tmp_path / "FINADiving_MTL_256s"
    for frames in ("new/new_total_frames_256s", "whole_videos_frames"):  # MTL-AQA, same names in both
        write_frames(tmp_path / "mtl" / frames / "01", ["000001.jpg"])
    assert find_frame_root(tmp_path / "mtl", ["01/000001.jpg"]) == tmp_path / "mtl" / "whole_videos_frames"


def test_the_scan_is_bounded_on_both_levels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hmtools.frame_root.MAX_FOLDERS", 5)
    for i in range(8):
        (tmp_path / "many" / f"d{i}").mkdir(parents=True)
    write_frames(tmp_path / "many" / "z_frames" / "01", ["000001.jpg"])
    assert find_frame_root(tmp_path / "many", ["01/000001.jpg"]) == tmp_path / "many"  # the 9th folder: not looked at
    monkeypatch.setattr("hmtools.frame_root.MAX_FOLDERS", 9)
    assert find_frame_root(tmp_path / "many", ["01/000001.jpg"]) == tmp_path / "many" / "z_frames"
    write_frames(tmp_path / "deep" / "z" / "frames" / "01", ["000001.jpg"])
    for i in range(3):
        (tmp_path / "deep" / f"d{i}").mkdir()
    monkeypatch.setattr("hmtools.frame_root.MAX_FOLDERS", 4)  # d0, d1, d2, z: none left for z/frames
    assert find_frame_root(tmp_path / "deep", ["01/000001.jpg"]) == tmp_path / "deep"
    monkeypatch.setattr("hmtools.frame_root.MAX_FOLDERS", 5)
    assert find_frame_root(tmp_path / "deep", ["01/000001.jpg"]) == tmp_path / "deep" / "z" / "frames"


def test_keys_that_cannot_be_looked_up_are_not_there(tmp_path: Path) -> None:
    """A name too long for the file system raised OSError (ENAMETOOLONG) instead of not matching."""
    write_frames(tmp_path / "ds" / "frames" / "01", ["000001.jpg"])
    keys = ["x" * 300 + "/1.jpg", "nul\0/1.jpg", "01/000001.jpg"]
    assert find_frame_root(tmp_path / "ds", keys) == tmp_path / "ds" / "frames"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_folders_are_passed_over(tmp_path: Path) -> None:
    """A folder without search permission inside --root raised PermissionError from ``is_file``."""
    (tmp_path / "a_locked" / "01").mkdir(parents=True)
    write_frames(tmp_path / "b" / "frames" / "01", ["000001.jpg"])
    (tmp_path / "a_locked").chmod(0o000)
    try:
        assert find_frame_root(tmp_path, ["01/000001.jpg"]) == tmp_path / "b" / "frames"
        assert find_frame_root(tmp_path / "a_locked", ["01/000001.jpg"]) == tmp_path / "a_locked"
    finally:
        (tmp_path / "a_locked").chmod(0o755)
