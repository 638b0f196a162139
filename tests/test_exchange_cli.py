"""The ``export`` and ``import`` commands end to end through ``hmtools.cli.main``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _exchange_fixtures import current, fill_store, make_samples, write_frames

from hmtools.cli import main
from hmtools.datasets.index import DatasetIndex
from hmtools.store import MaskStore


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0)


@pytest.fixture()
def fake_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``load_dataset`` replaced by one that returns the fixture samples (the adapter is not under test)."""
    root = tmp_path / "root"
    write_frames(root, make_samples())

    def load(name: str, root_dir: Path, annotations: Path | None = None, **options: object) -> DatasetIndex:
        return DatasetIndex(name, Path(root_dir), Path(root_dir), make_samples())

    monkeypatch.setattr("hmtools.datasets.load_dataset", load)
    return root


def test_export_then_import_through_the_cli(
    fake_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MaskStore(tmp_path / "a.db") as st:
        fill_store(st, make_samples())
        masks = current(st)
    code = _run(
        [
            "export",
            "--store",
            str(tmp_path / "a.db"),
            "--format",
            "coco",
            "--out",
            str(tmp_path / "c.json"),
            "--status",
            "accepted,unreviewed,flagged",
            "--samples",
            "diving/001,diving/002",
            "--samples",
            "diving/003",
        ]
    )
    assert code == 0 and "17 masks (1 empty)" in capsys.readouterr().out
    code = _run(
        [
            "import",
            "--dataset",
            "aqa7",
            "--root",
            str(fake_dataset),
            "--store",
            str(tmp_path / "b.db"),
            "--format",
            "coco",
            "--masks",
            str(tmp_path / "c.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "imported 17 masks" in out and "frames without a mask: 1" in out
    with MaskStore(tmp_path / "b.db") as st:
        back = current(st)
    assert all((back[k] is None) == (m is None) and (m is None or (back[k] == m).all()) for k, m in masks.items())


def test_ytvis_export_then_import_through_the_cli_keeps_tracks(
    fake_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MaskStore(tmp_path / "a.db") as st:
        fill_store(st, make_samples(), tracks=True)
        masks = current(st)
    vis = str(tmp_path / "v.json")
    assert _run(["export", "--store", str(tmp_path / "a.db"), "--format", "ytvis", "--out", vis]) == 0
    args = ["import", "--dataset", "aqa7", "--root", str(fake_dataset), "--store", str(tmp_path / "b.db")]
    assert _run([*args, "--format", "ytvis", "--masks", vis]) == 0
    assert "imported 17 masks (1 empty)" in capsys.readouterr().out
    with MaskStore(tmp_path / "b.db") as st:
        back = current(st)
        two = [r for sid in st.sample_ids() for r in st.current_masks(sid) if r and r.tracks and len(r.tracks) == 2]
    assert all((back[k] is None) == (m is None) and (m is None or (back[k] == m).all()) for k, m in masks.items())
    assert len(two) >= 10
    (tmp_path / "bad.json").write_text(json.dumps({"videos": [{"id": 1, "file_names": []}]}))
    assert _run([*args[:-1], str(tmp_path / "c.db"), "--format", "ytvis", "--masks", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hmtools: error:") and "a video needs id, file_names, width and height" in err
    assert err.count("\n") == 1 and not (tmp_path / "c.db").exists()


def test_cli_bad_input_exits_2_with_one_line(
    fake_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MaskStore(tmp_path / "a.db") as st:
        fill_store(st, make_samples())
    assert _run(["export", "--store", str(tmp_path / "a.db"), "--format", "png", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert _run(["export", "--store", str(tmp_path / "none.db"), "--format", "coco", "--out", str(tmp_path / "x")]) == 2
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "diving-out/001/img_00001.jpg"}]}))
    code = _run(
        [
            "import",
            "--dataset",
            "aqa7",
            "--root",
            str(fake_dataset),
            "--store",
            str(tmp_path / "b.db"),
            "--format",
            "coco",
            "--masks",
            str(bad),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hmtools: error:") and "width" in err and err.count("\n") == 1
    with MaskStore(tmp_path / "b.db") as st:
        assert st.sample_ids() == []


def _aqa7_tree(root: Path) -> list[str]:
    """A tiny AQA-7 extracted-frame tree: diving 001 (train) and 002 (test), 5 frames each (48x64)."""
    import cv2
    import numpy as np
    from scipy.io import savemat

    keys = []
    for nnn in (1, 2):
        folder = root / "diving-out" / f"{nnn:03d}"
        folder.mkdir(parents=True)
        for i in range(1, 6):
            cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), np.full((48, 64, 3), 40 * i, np.uint8))
            keys.append(f"diving-out/{nnn:03d}/img_{i:05d}.jpg")
    (root / "Split_4").mkdir()
    savemat(root / "Split_4/split_4_train_list.mat", {"consolidated_train_list": np.array([[1.0, 1.0, 80.0]])})
    savemat(root / "Split_4/split_4_test_list.mat", {"consolidated_test_list": np.array([[1.0, 2.0, 70.0]])})
    return keys


def test_import_with_the_real_aqa7_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    import numpy as np
    from _exchange_fixtures import person_mask

    root = tmp_path / "Seven"
    keys = _aqa7_tree(root)
    masks = tmp_path / "AQA-7-HM"
    for t, key in enumerate(keys[:-1]):  # the last frame gets no mask
        (masks / key).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str((masks / key).with_suffix(".png")), person_mask(48, 64, t).astype(np.uint8) * 255)
    cv2.imwrite(str(masks / "diving-out/002/img_00099.png"), np.zeros((48, 64), np.uint8))
    store = tmp_path / "s.db"
    args = ["--dataset", "aqa7", "--root", str(root), "--store", str(store), "--format", "fineparser"]
    assert _run(["import", *args, "--masks", str(masks)]) == 0
    out = capsys.readouterr().out
    assert "imported 9 masks" in out and "2 newly registered" in out
    assert "frames without a mask: 1 (first: diving-out/002/img_00005.jpg)" in out
    assert "masks without a frame (not imported): 1 (first: diving-out/002/img_00099.png)" in out
    with MaskStore(store) as st:
        assert st.sample_ids() == ["diving/001", "diving/002"]
        assert st.get_sample("diving/001").score == pytest.approx(80.0)
        rec = st.current_mask(keys[3])
        assert rec.source == "imported" and np.array_equal(rec.mask(), person_mask(48, 64, 3))
    assert _run(["export", "--store", str(store), "--format", "hdf5", "--out", str(tmp_path / "m.h5")]) == 0
    assert _run(["validate", str(tmp_path / "m.h5"), "--root", str(root)]) == 1  # diving/002 lacks one mask
    assert "1 of 5 frames have no mask" in capsys.readouterr().out
    # a mask folder of another dataset (MTL-AQA layout): one line, exit 2, store unchanged
    other = tmp_path / "MTL-HM" / "01"
    other.mkdir(parents=True)
    cv2.imwrite(str(other / "00000001.jpg"), np.zeros((48, 64), np.uint8))
    before = MaskStore(store).query("SELECT COUNT(*) FROM masks")
    assert _run(["import", *args, "--masks", str(tmp_path / "MTL-HM")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another dataset" in err
    assert MaskStore(store).query("SELECT COUNT(*) FROM masks") == before


def test_import_checks_mask_sizes_against_the_frame_folder_the_adapter_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--root above the frame folder (here the zip's doubled AQA-7/AQA-7/): frame sizes are still read."""
    import cv2
    import numpy as np

    outer = tmp_path / "download"
    keys = _aqa7_tree(outer / "AQA-7")  # frames are 48x64
    masks = tmp_path / "AQA-7-HM"
    for key in keys:
        (masks / key).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str((masks / key).with_suffix(".png")), np.zeros((48, 60), np.uint8))  # 4 columns short
    store = tmp_path / "s.db"
    args = ["--dataset", "aqa7", "--root", str(outer), "--store", str(store), "--format", "fineparser"]
    assert _run(["import", *args, "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert "differ in size from their frames" in err and "frame 48x64" in err
    assert not store.exists()


def _store_and_coco_export(tmp_path: Path) -> None:
    """``tmp_path/a.db`` with the sample masks, exported by the CLI to ``tmp_path/x.json``."""
    with MaskStore(tmp_path / "a.db") as st:
        fill_store(st, make_samples())
    assert (
        _run(["export", "--store", str(tmp_path / "a.db"), "--format", "coco", "--out", str(tmp_path / "x.json")]) == 0
    )


def test_export_and_import_into_a_place_under_a_file_exit_2_and_touch_nothing(
    fake_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out / --store under a file (the same check refuses a read-only folder): one line, exit 2, no traceback."""
    _store_and_coco_export(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    capsys.readouterr()
    for fmt in ("coco", "fineparser"):
        out = tmp_path / "notes.txt" / f"e_{fmt}"
        assert _run(["export", "--store", str(tmp_path / "a.db"), "--format", fmt, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is a file, not a folder" in err and err.count("\n") == 1, err
    args = ["import", "--dataset", "aqa7", "--root", str(fake_dataset), "--format", "coco", "--masks"]
    assert _run([*args, str(tmp_path / "x.json"), "--store", str(tmp_path / "notes.txt" / "b.db")]) == 2
    err = capsys.readouterr().err
    assert "--store" in err and "is a file, not a folder" in err and err.count("\n") == 1, err
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_export_and_import_into_a_read_only_folder_exit_2(
    fake_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_and_coco_export(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        capsys.readouterr()
        assert _run(["export", "--store", str(tmp_path / "a.db"), "--format", "hdf5", "--out", str(ro / "e.h5")]) == 2
        args = ["import", "--dataset", "aqa7", "--root", str(fake_dataset), "--format", "coco"]
        assert _run([*args, "--masks", str(tmp_path / "x.json"), "--store", str(ro / "b.db")]) == 2
        err = capsys.readouterr().err
        assert err.count("is not writable") == 2 and err.count("\n") == 2, err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_hdf5_export_stops_before_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HDF5 cannot close a file whose writes failed (h5py then crashed the interpreter after the error
    line): the writer stops while there is still room to close it, and the earlier export stays."""
    import shutil

    with MaskStore(tmp_path / "a.db") as st:
        fill_store(st, make_samples())
    out = tmp_path / "m.h5"
    args = ["export", "--store", str(tmp_path / "a.db"), "--format", "hdf5", "--out", str(out)]
    assert _run(args) == 0
    before = out.read_bytes()
    capsys.readouterr()
    real = shutil.disk_usage

    def nearly_full(path: object) -> object:
        usage = real(path)  # type: ignore[arg-type]
        return usage._replace(free=4096)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    assert _run([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device; nothing was written" in err[0], err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "m.h5" in p.name) == ["m.h5", "m.h5.manifest.json"]
