"""Imports: store -> format -> import -> store round trips, reports, and hostile inputs that must leave
the store untouched."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from _exchange_fixtures import H, W, current, fill_store, make_samples, write_frames

from hmtools.errors import DataFormatError, InputError
from hmtools.exchange import ExportOptions, export_store, import_masks
from hmtools.exchange.fineparser import decode_mask_files
from hmtools.masks import mask_iou, rle_area_box
from hmtools.store import MaskStore


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray | None]]:
    """A store with masks (one frame without, one empty) and the frame tree they belong to."""
    samples = make_samples()
    write_frames(tmp_path / "root", samples)
    path = tmp_path / "masks.db"
    with MaskStore(path) as st:
        fill_store(st, samples)
        masks = current(st)
    return path, tmp_path / "root", masks


def _snapshot(store_path: Path) -> tuple[list[str], list[tuple[object, ...]]]:
    with MaskStore(store_path) as st:
        return st.sample_ids(), st.query("SELECT frame_id, version, counts, source FROM masks ORDER BY mask_id")


@pytest.mark.parametrize(
    ("fmt", "name", "image_format", "exact"),
    [
        ("coco", "c.json", "jpg", True),
        ("ytvis", "y.json", "jpg", True),
        ("hdf5", "m.h5", "jpg", True),
        ("fineparser", "fp", "png", True),
        ("fineparser", "fp", "jpg", False),
    ],
)
def test_round_trip_gives_the_same_masks(
    setup, tmp_path: Path, fmt: str, name: str, image_format: str, exact: bool
) -> None:  # type: ignore[no-untyped-def]
    store_path, root, masks = setup
    export_store(store_path, fmt, tmp_path / name, options=ExportOptions(image_format=image_format))
    with MaskStore(tmp_path / "new.db") as st:
        report = import_masks(st, make_samples(), fmt, tmp_path / name, root=root)
        back = current(st)
        recs = [r for sid in st.sample_ids() for r in st.current_masks(sid) if r is not None]
    assert report.imported == 17 and report.empty == 1 and report.samples_added == 3
    assert report.frames_without_mask.count == 1 and report.masks_without_frame.count == 0
    assert back.keys() == masks.keys()
    for key, mask in masks.items():
        if mask is None:
            assert back[key] is None
        elif exact:
            assert np.array_equal(back[key], mask), key
        else:
            assert mask_iou(back[key], mask) >= 0.99, key
    assert {r.source for r in recs} == {"imported"}
    for r in recs:  # area and box the readers hand over (encoder-computed) agree with the stored RLE
        assert (r.area, r.bbox) == rle_area_box(r.rle), r.frame_key
    if fmt in ("coco", "ytvis", "hdf5"):  # provenance the format carries comes back
        assert {r.status for r in recs} == {"unreviewed", "accepted", "flagged"}


def test_import_into_a_store_that_already_has_the_samples_adds_versions(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_path, root, masks = setup
    export_store(store_path, "coco", tmp_path / "c.json")
    with MaskStore(store_path) as st:
        report = import_masks(st, make_samples(), "coco", tmp_path / "c.json", root=root)
        assert report.samples_added == 0
        assert [r.version for r in st.history("diving-out/002/img_00001.jpg")] == [1, 2]


def test_reports_unmatched_masks_and_extension_is_ignored(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_path, root, _ = setup
    out = tmp_path / "fp"
    export_store(store_path, "fineparser", out, options=ExportOptions(image_format="png"))
    cv2.imwrite(str(out / "diving-out/001/img_00099.png"), np.zeros((H, W), np.uint8))
    with MaskStore(tmp_path / "new.db") as st:
        report = import_masks(st, make_samples(), "fineparser", out, root=root)
    assert report.masks_without_frame.count == 1 and "img_00099.png" in report.masks_without_frame.examples[0]
    lines = report.lines()
    assert any(line.startswith("masks without a frame") for line in lines)
    assert any(line.startswith("frames without a mask: 1") for line in lines)
    with MaskStore(tmp_path / "strict.db") as st, pytest.raises(DataFormatError, match="--strict"):
        import_masks(st, make_samples(), "fineparser", out, root=root, strict=True)
    assert _snapshot(tmp_path / "strict.db") == ([], [])


def test_size_mismatch_fails_and_leaves_store_untouched(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_path, root, _ = setup
    out = tmp_path / "fp"
    export_store(store_path, "fineparser", out, options=ExportOptions(image_format="png"))
    cv2.imwrite(str(out / "diving-out/003/img_00006.png"), np.zeros((H // 2, W), np.uint8))
    before = _snapshot(store_path)
    with MaskStore(store_path) as st, pytest.raises(DataFormatError, match="differ in size.*img_00006"):
        import_masks(st, make_samples(), "fineparser", out, root=root)
    assert _snapshot(store_path) == before


@pytest.mark.parametrize("workers", [1, 3])
def test_unreadable_mask_file_fails_in_any_worker_and_leaves_store_untouched(
    setup, tmp_path: Path, workers: int
) -> None:  # type: ignore[no-untyped-def]
    """With several workers the files are decoded in forked processes: the error comes back intact."""
    store_path, root, _ = setup
    out = tmp_path / "fp"
    export_store(store_path, "fineparser", out, options=ExportOptions(image_format="png"))
    (out / "diving-out/003/img_00004.png").write_bytes(b"\x89PNG cut short")
    before = _snapshot(store_path)
    with MaskStore(store_path) as st, pytest.raises(DataFormatError, match="img_00004.png is not a readable image"):
        import_masks(st, make_samples(), "fineparser", out, root=root, workers=workers)
    assert _snapshot(store_path) == before


def test_forked_and_inline_decoding_import_the_same_masks(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_path, root, _ = setup
    export_store(store_path, "fineparser", tmp_path / "fp")
    got = []
    for workers in (1, 2):
        with MaskStore(tmp_path / f"w{workers}.db") as st:
            import_masks(st, make_samples(), "fineparser", tmp_path / "fp", root=root, workers=workers)
        got.append(_snapshot(tmp_path / f"w{workers}.db"))
    assert got[0] == got[1] and len(got[0][1]) == 17


def test_masks_of_another_dataset_fail_and_leave_store_untouched(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, root, _ = setup
    other = tmp_path / "other"
    (other / "01").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(other / "01" / f"{i:08d}.jpg"), np.zeros((H, W), np.uint8))
    new = tmp_path / "new.db"
    with MaskStore(new) as st, pytest.raises(DataFormatError, match="another dataset"):
        import_masks(st, make_samples(), "fineparser", other, root=root)
    assert _snapshot(new) == ([], [])  # not even the samples were registered


def test_truncated_and_hand_edited_coco_fail_cleanly(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_path, root, _ = setup
    good = tmp_path / "c.json"
    export_store(store_path, "coco", good)
    text = good.read_text()
    truncated = tmp_path / "trunc.json"
    truncated.write_text(text[: len(text) * 2 // 3])
    data = json.loads(text)
    data["annotations"][3]["segmentation"]["counts"] = data["annotations"][3]["segmentation"]["counts"][:-4]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    data = json.loads(text)
    data["annotations"][0]["segmentation"]["size"] = [H, W + 1]
    resized = tmp_path / "resized.json"
    resized.write_text(json.dumps(data))
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe not json")
    empty = tmp_path / "empty.json"  # what an export whose --status matched no frame holds
    empty.write_text(json.dumps({**json.loads(text), "images": [], "annotations": []}))
    cases = [
        (empty, "lists no images .'images' is missing or empty."),
        (truncated, "truncated|not valid JSON"),
        (edited, "do not cover"),
        (resized, "RLE is"),
        (garbage, "not UTF-8|JSON"),
    ]
    before = _snapshot(store_path)
    for path, message in cases:
        with MaskStore(store_path) as st, pytest.raises(DataFormatError, match=message):
            import_masks(st, make_samples(), "coco", path, root=root)
        assert _snapshot(store_path) == before, path.name


def test_hdf5_with_wrong_shapes_or_dtypes_fails_cleanly(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_path, root, _ = setup
    good = tmp_path / "m.h5"
    export_store(store_path, "hdf5", good)
    before = _snapshot(store_path)
    edits = {
        "dtype": lambda g: _replace(g, "masks", g["masks"][()].astype(np.float32)),
        "shape": lambda g: _replace(g, "present", np.ones(3, np.uint8)),
        "rows": lambda g: _replace(g, "masks", g["masks"][:, :2, :]),
    }
    for label, edit in edits.items():
        bad = tmp_path / f"{label}.h5"
        bad.write_bytes(good.read_bytes())
        with h5py.File(bad, "r+") as f:
            edit(f["samples"]["diving%2F002"])
        with MaskStore(store_path) as st, pytest.raises(DataFormatError, match="diving%2F002"):
            import_masks(st, make_samples(), "hdf5", bad, root=root)
        assert _snapshot(store_path) == before, label
    not_ours = tmp_path / "plain.h5"
    with h5py.File(not_ours, "w") as f:
        f["x"] = np.zeros(3)
    with MaskStore(store_path) as st, pytest.raises(DataFormatError, match="not an hmtools HDF5"):
        import_masks(st, make_samples(), "hdf5", not_ours, root=root)


def _replace(g: h5py.Group, name: str, data: np.ndarray) -> None:
    attrs = dict(g[name].attrs)
    del g[name]
    g[name] = data
    g[name].attrs.update(attrs)


def test_coco_from_another_tool_unions_annotations_and_reads_polygons(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, root, _ = setup
    key = "diving-out/002/img_00003.jpg"
    coco = {
        "images": [{"id": 7, "file_name": key, "width": W, "height": H}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": [[30, 20, 40, 20, 40, 30, 30, 30]]},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "other.json"
    path.write_text(json.dumps(coco))
    with MaskStore(tmp_path / "new.db") as st:
        report = import_masks(st, make_samples(), "coco", path, root=root)
        mask = st.current_mask(key).mask()
    assert report.imported == 1 and report.frames_without_mask.count == 17
    assert mask[5, 5] and mask[25, 35] and not mask[25, 20]


def test_bad_arguments_raise_input_errors(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, root, _ = setup
    with MaskStore(tmp_path / "new.db") as st:
        with pytest.raises(InputError, match="unknown import format"):
            import_masks(st, make_samples(), "voc", tmp_path, root=root)
        with pytest.raises(InputError, match="does not exist"):
            import_masks(st, make_samples(), "coco", tmp_path / "none.json", root=root)
        with pytest.raises(InputError, match="not a folder"):
            import_masks(st, make_samples(), "fineparser", tmp_path / "masks.db", root=root)


def test_mask_files_of_any_depth_and_channels_decode_like_pycocotools(tmp_path: Path) -> None:
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (H, W)).astype(np.uint8)
    grey[:, :3] = 0  # a leading background band, and one image with nothing at all
    files = {
        "grey.png": grey,
        "colour.png": np.dstack([grey, grey, grey]),
        "deep.png": grey.astype(np.uint16) * 257,  # 16-bit: OpenCV scales it to 8 bits
        "empty.png": np.zeros((H, W), np.uint8),
        "lossy.jpg": np.where(grey >= 128, 255, 0).astype(np.uint8),
    }
    for name, img in files.items():
        cv2.imwrite(str(tmp_path / name), img)
    decoded = decode_mask_files([tmp_path / name for name in files])
    for name, d in zip(files, decoded, strict=True):
        ref = cv2.imread(str(tmp_path / name), cv2.IMREAD_GRAYSCALE) >= 128
        want = coco_mask.encode(np.asfortranarray(ref.astype(np.uint8)))
        assert (d.height, d.width) == (H, W) and d.rle["size"] == [H, W], name
        assert d.rle["counts"] == want["counts"].decode("ascii"), name
        assert (d.area, d.box) == rle_area_box(d.rle), name
    assert decoded[3].area == 0 and decoded[3].box is None
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="not a readable image"):
        decode_mask_files([tmp_path / "grey.png", tmp_path / "bad.png"])


def test_masks_named_by_position_in_the_clip_are_paired_in_order(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A FineDiving-HM copy may name a clip's masks 00000.jpg, 00001.jpg, ... while its frames are
    00007386.jpg, ...: the FineParser loaders pair them by position, and so does the import, when
    the clip's mask folder holds exactly one mask per frame."""
    from hmtools.schema import Sample

    frames = tuple(f"v1/3/{n:08d}.jpg" for n in range(7386, 7390))
    short = tuple(f"v1/4/{n:08d}.jpg" for n in range(100, 103))  # 3 frames, 2 masks: not paired
    samples = [Sample("v1/3", "finediving", frames, "train"), Sample("v1/4", "finediving", short, "train")]
    for key in (*frames, *short):
        (tmp_path / "root" / key).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "root" / key), np.zeros((H, W, 3), np.uint8))
    want = []
    for i in range(len(frames)):
        m = np.zeros((H, W), np.uint8)
        m[2 + i : 10 + i, 3:9] = 255
        want.append(m > 127)
        (tmp_path / "hm" / "v1" / "3").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "hm" / "v1" / "3" / f"{i:05d}.png"), m)
    (tmp_path / "hm" / "v1" / "4").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(tmp_path / "hm" / "v1" / "4" / f"{i:05d}.png"), np.zeros((H, W), np.uint8))
    with MaskStore(tmp_path / "s.db") as st, caplog.at_level("WARNING"):
        report = import_masks(st, samples, "fineparser", tmp_path / "hm", root=tmp_path / "root")
        got = [r.mask() for r in st.current_masks("v1/3")]
        assert st.current_masks("v1/4") == [None] * 3
    assert report.imported == 4 and report.masks_without_frame.count == 2
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert "named by position" in caplog.text
