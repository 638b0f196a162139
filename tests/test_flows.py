"""Flows between packages: a store written by one command read by the next, and bad input at the seams.

Each test walks one seam through the real CLI (:func:`hmtools.cli.main`): exit code 2 and one clear
line for bad input, nothing half-written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _datasets_fixtures import make_aqa7, run_cli
from _exchange_fixtures import fill_store, make_samples

from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_eval_of_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with MaskStore(tmp_path / "s.db") as st:  # a store given where a checkpoint belongs
        st.add_samples(make_samples(1, 2))
    code, _, err = run_cli(["eval", "--checkpoint", str(tmp_path / "s.db")], capsys)
    assert code == 2
    line = _one_line(err)
    assert "s.db" in line and "hmtools train" in line
    assert "weights_only` set to `False`" not in line  # no advice to unpickle untrusted files


def test_preview_with_a_wrong_root_fails_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, make_samples(1, 3))
    out = tmp_path / "p" / "prev.mp4"
    for root in (tmp_path / "nowhere", tmp_path):  # not a folder; a folder without the sample's frames
        code, _, err = run_cli(
            [
                "preview",
                "--store",
                str(tmp_path / "s.db"),
                "--root",
                str(root),
                "--sample",
                "diving/001",
                "--out",
                str(out),
            ],
            capsys,
        )
        assert code == 2
        assert "--root" in _one_line(err)
        assert not out.exists() and not out.with_name("prev_sheet.png").exists()


@pytest.fixture
def aqa7_root(tmp_path: Path) -> Path:
    return make_aqa7(
        tmp_path / "aqa7", extracted={"diving/001": 3, "diving/002": 3, "diving/003": 3, "gym_vault/001": 3}
    )


@pytest.mark.parametrize(("fmt", "masks"), [("ytvis", "x.json"), ("coco", "folder"), ("hdf5", "x.json")])
def test_failed_import_leaves_no_new_store(
    aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, masks: str
):
    (tmp_path / "folder").mkdir()
    (tmp_path / "x.json").write_text("{}")
    store = tmp_path / "new.db"
    args = ["import", "--dataset", "aqa7", "--root", str(aqa7_root), "--store", str(store)]
    code, _, err = run_cli([*args, "--format", fmt, "--masks", str(tmp_path / masks)], capsys)
    assert code == 2
    _one_line(err)
    assert not any(p.name.startswith("new.db") for p in tmp_path.iterdir())


def _finediving_store(path: Path) -> None:
    other = [
        replace(s, sample_id=f"FINA_r1/{k}", frames=tuple(f"FINA_r1/{k}/{i:05d}.jpg" for i in range(3)))
        for k, s in enumerate(make_samples(2, 3, dataset="finediving"))
    ]
    with MaskStore(path) as st:
        fill_store(st, other)


def test_build_masks_into_a_store_of_another_dataset_is_refused(
    aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    _finediving_store(tmp_path / "fd.db")
    args = ["build-masks", "--dataset", "aqa7", "--root", str(aqa7_root), "--store", str(tmp_path / "fd.db")]
    code, _, err = run_cli([*args, "--detector", "lite", "--segmenter", "lite", "--limit", "1"], capsys)
    assert code == 2
    line = _one_line(err)
    assert "finediving" in line and "aqa7" in line
    with MaskStore(tmp_path / "fd.db", create=False) as st:
        assert st.sample_ids() == ["FINA_r1/0", "FINA_r1/1"]


def test_import_into_a_store_of_another_dataset_is_refused(
    aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    _finediving_store(tmp_path / "fd.db")
    src = tmp_path / "src.db"  # a real aqa7 export to import
    with MaskStore(src) as st:
        from hmtools.datasets import load_dataset

        samples = load_dataset("aqa7", aqa7_root).samples
        st.add_samples(samples)
        for s in samples:
            st.write_sample_masks(
                s.sample_id,
                [MaskWrite(mask=np.ones((12, 16), bool), frame_idx=i) for i in range(len(s.frames))],
                author="t",
            )
    code, _, err = run_cli(
        ["export", "--store", str(src), "--format", "coco", "--out", str(tmp_path / "c.json")], capsys
    )
    assert code == 0, err
    args = ["import", "--dataset", "aqa7", "--root", str(aqa7_root), "--store", str(tmp_path / "fd.db")]
    code, _, err = run_cli([*args, "--format", "coco", "--masks", str(tmp_path / "c.json")], capsys)
    assert code == 2
    line = _one_line(err)
    assert "finediving" in line and "aqa7" in line
    with MaskStore(tmp_path / "fd.db", create=False) as st:
        assert st.sample_ids() == ["FINA_r1/0", "FINA_r1/1"]


def test_validate_with_a_root_that_is_not_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, make_samples(1, 2))
    code, _, err = run_cli(["validate", str(tmp_path / "s.db"), "--root", str(tmp_path / "nowhere")], capsys)
    assert code == 2
    assert "--root" in _one_line(err)


def test_aqa7_train_names_every_class_short_of_samples_before_training(
    aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # diving has train samples 001 and 003 (enough), gym_vault only 001: nothing may be trained.
    with MaskStore(tmp_path / "s.db") as st:
        from hmtools.datasets import load_dataset

        st.add_samples(load_dataset("aqa7", aqa7_root).samples)
    out = tmp_path / "run"
    args = ["train", "--dataset", "aqa7", "--root", str(aqa7_root), "--masks", str(tmp_path / "s.db")]
    code, _, err = run_cli([*args, "--preset", "tiny", "--out", str(out)], capsys)
    assert code == 2
    line = _one_line(err)
    assert "gym_vault" in line and "at least 2" in line
    assert not (out / "diving").exists()


def test_validate_store_with_root_compares_frame_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from _exchange_fixtures import write_frames

    samples = make_samples(1, 3)
    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, samples, holes=False)
    write_frames(tmp_path / "root", samples)
    code, out, _ = run_cli(["validate", str(tmp_path / "s.db"), "--root", str(tmp_path / "root")], capsys)
    assert code == 0, out
    write_frames(tmp_path / "root", samples, h=20, w=30)  # frames re-extracted at another size
    code, out, _ = run_cli(["validate", str(tmp_path / "s.db"), "--root", str(tmp_path / "root")], capsys)
    assert code == 1
    assert "diving-out/001/img_00001.jpg: store says 48x64, frame under --root is 20x30" in out


def test_annotate_with_a_bad_store_does_not_claim_to_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "export").mkdir()  # an export folder given as --store
    for store in (tmp_path / "none.db", tmp_path / "export"):
        code, out, err = run_cli(
            ["annotate", "--store", str(store), "--root", str(tmp_path), "--segmenter", "fake"], capsys
        )
        assert code == 2
        line = _one_line(err)
        assert "no mask store" in line or "is a folder" in line
        assert "serving" not in out


def test_eval_of_a_run_folder_names_the_checkpoints_in_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for cls in ("diving", "gym_vault"):  # an AQA-7 run: one model per class
        (tmp_path / "run" / cls).mkdir(parents=True)
        (tmp_path / "run" / cls / "best.pt").write_bytes(b"")
    code, _, err = run_cli(["eval", "--checkpoint", str(tmp_path / "run")], capsys)
    assert code == 2
    line = _one_line(err)
    assert "is a folder" in line and str(tmp_path / "run" / "diving" / "best.pt") in line


def test_build_masks_keeps_imported_masks(aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Masks imported from elsewhere (e.g. a released human-annotated set) are not replaced by auto masks."""
    from hmtools.datasets import load_dataset

    src = tmp_path / "src.db"
    samples = [s for s in load_dataset("aqa7", aqa7_root).samples if s.sample_id == "diving/001"]
    with MaskStore(src) as st:
        st.add_samples(samples)
        st.write_sample_masks(
            "diving/001", [MaskWrite(mask=np.ones((12, 16), bool), frame_idx=i) for i in range(3)], author="t"
        )
    assert (
        run_cli(["export", "--store", str(src), "--format", "coco", "--out", str(tmp_path / "c.json")], capsys)[0] == 0
    )
    store = tmp_path / "s.db"
    args = ["import", "--dataset", "aqa7", "--root", str(aqa7_root), "--store", str(store), "--format", "coco"]
    assert run_cli([*args, "--masks", str(tmp_path / "c.json")], capsys)[0] == 0
    args = [
        "build-masks",
        "--dataset",
        "aqa7",
        "--root",
        str(aqa7_root),
        "--store",
        str(store),
        "--samples",
        "diving/001",
    ]
    code, out, err = run_cli([*args, "--detector", "lite", "--segmenter", "lite"], capsys)
    assert code == 0, err
    assert "1 skipped" in out and "imported" in out
    with MaskStore(store, create=False) as st:
        assert {m.source for m in st.current_masks("diving/001")} == {"imported"}


@pytest.mark.parametrize("image_format", ["png", "jpg"])
def test_train_reads_a_fineparser_export_in_either_image_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], image_format: str
):
    from uni_fineparser.mask_source import open_mask_source

    samples = make_samples(2, 3)
    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, samples, holes=False)
        want = {s.sample_id: [m.rle for m in st.current_masks(s.sample_id)] for s in samples}
    args = ["export", "--store", str(tmp_path / "s.db"), "--format", "fineparser", "--out", str(tmp_path / "fp")]
    assert run_cli([*args, "--image-format", image_format], capsys)[0] == 0
    source = open_mask_source(tmp_path / "fp")
    from hmtools.masks import decode_rle

    for s in samples:
        assert source.available(s) == [True] * len(s.frames)
        got = source.read(s)
        for mask, rle in zip(got, want[s.sample_id], strict=True):
            exact = decode_rle(rle)
            assert mask is not None and mask.shape == exact.shape
            assert (mask != exact).mean() < 0.02  # lossless for png; jpg edges may move a pixel


def test_train_reads_an_hdf5_export_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from hmtools.masks import decode_rle
    from uni_fineparser.mask_source import Hdf5Masks, open_mask_source

    samples = make_samples(2, 3)
    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, samples, holes=False)
        want = {s.sample_id: [m.rle for m in st.current_masks(s.sample_id)] for s in samples}
    args = ["export", "--store", str(tmp_path / "s.db"), "--format", "hdf5", "--out", str(tmp_path / "m.h5")]
    assert run_cli(args, capsys)[0] == 0
    source = open_mask_source(tmp_path / "m.h5")
    assert isinstance(source, Hdf5Masks)
    for s in samples:
        assert source.available(s) == [True] * len(s.frames)
        for mask, rle in zip(source.read(s), want[s.sample_id], strict=True):
            assert mask is not None and np.array_equal(mask, decode_rle(rle))  # bit-packed: lossless


def test_a_corrected_mask_file_in_a_mask_folder_changes_the_training_cache_key(tmp_path: Path):
    import os

    import cv2

    from uni_fineparser.mask_source import open_mask_source, source_key

    folder = tmp_path / "fp" / "diving-out" / "001"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"img_{i:05d}.png"), np.zeros((12, 16), np.uint8))
    before = source_key(open_mask_source(tmp_path / "fp"))
    target = folder / "img_00001.png"
    cv2.imwrite(str(target), np.full((12, 16), 255, np.uint8))  # a hand correction, in place
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert source_key(open_mask_source(tmp_path / "fp")) != before


@pytest.mark.parametrize("missing", ["root", "masks"])
def test_eval_after_the_data_moved_says_what_the_checkpoint_expects(
    aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
):
    import torch

    from hmtools.config import to_dict
    from uni_fineparser.checkpoint import FORMAT
    from uni_fineparser.config import load_run_config

    with MaskStore(tmp_path / "s.db") as st:
        st.add_samples(make_samples(1, 2))
    data = {"dataset": "aqa7", "root": str(aqa7_root), "annotations": None, "masks": str(tmp_path / "s.db")}
    data[missing] = str(tmp_path / "moved")
    cfg = to_dict(load_run_config("tiny"))
    torch.save({"format": FORMAT, "model": {}, "config": cfg, "data": data}, tmp_path / "best.pt")
    code, _, err = run_cli(["eval", "--checkpoint", str(tmp_path / "best.pt")], capsys)
    assert code == 2
    line = _one_line(err)
    assert str(tmp_path / "moved") in line and "checkpoint" in line
    assert "pass --root" not in line and "pass a mask store" not in line  # eval has no such options


@pytest.mark.parametrize(("flag", "name"), [("--out", "sheet.jpgx"), ("--mp4", "video.avi")])
def test_explain_checks_its_output_names_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, name: str
):
    args = ["explain", "--checkpoint", str(tmp_path / "best.pt"), "--sample", "diving/001"]
    args += ["--out", str(tmp_path / "sheet.png"), flag, str(tmp_path / name)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert flag in _one_line(err) and name in err


def test_train_out_that_is_a_file_is_refused_before_work(
    aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with MaskStore(tmp_path / "s.db") as st:
        st.add_samples(make_samples(1, 2))
    (tmp_path / "notes.txt").write_text("mine")
    args = ["train", "--dataset", "aqa7", "--root", str(aqa7_root), "--masks", str(tmp_path / "s.db")]
    code, _, err = run_cli([*args, "--preset", "tiny", "--out", str(tmp_path / "notes.txt")], capsys)
    assert code == 2
    assert "--out" in _one_line(err)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_given_as_store_is_named_as_such(aqa7_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    export = tmp_path / "export"
    export.mkdir()
    for args in (
        ["stats", "--store", str(export)],
        ["export", "--store", str(export), "--format", "coco", "--out", str(tmp_path / "c.json")],
        ["import", "--dataset", "aqa7", "--root", str(aqa7_root), "--store", str(export), "--format", "coco"]
        + ["--masks", str(tmp_path / "c.json")],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2, args
        assert "is a folder" in _one_line(err), args
    assert list(export.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build-masks", "--bogus"], "No such option: --bogus"),
        (["stats"], "Missing option '--store'"),
        (["build-masks", "--dataset", "aqa7", "--root", "r", "--store", "s", "--batch-size", "abc"], "--batch-size"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(args, capsys)
    assert code == 2
    line = _one_line(err)
    assert line.startswith("hmtools: error: ") and expected in line
    assert "╭" not in err and "Usage:" not in err  # not Click's framed box
    if args[0] != "nosuch":
        assert f"see 'hmtools {args[0]} --help'" in line


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([], capsys)
    assert code == 2
    assert "build-masks" in out and "annotate" in out
