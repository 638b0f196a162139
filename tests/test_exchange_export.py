"""Exports: COCO loads in pycocotools and self-evaluates to AP 1, YouTube-VIS schema, HDF5 with plain
h5py, FineParser folder mirrors the frame tree, determinism, atomicity, selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from _exchange_fixtures import H, W, current, fill_store, make_samples

from hmtools.errors import InputError
from hmtools.exchange import ExportOptions, Selection, export_store
from hmtools.masks import decode_rle, mask_iou
from hmtools.store import MaskStore


@pytest.fixture()
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "masks.db"
    with MaskStore(path) as st:
        fill_store(st, make_samples())
    return path


def test_coco_loads_in_pycocotools_and_self_eval_gives_ap_1(store_path: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "masks.json"
    result = export_store(store_path, "coco", out)
    gt = COCO(str(out))
    assert len(gt.imgs) == 17  # 18 frames, one without a mask
    assert len(gt.anns) == 16  # one mask is empty: its image has no annotation
    ann = gt.anns[1]
    assert {"source", "score", "status", "version"} <= set(ann)
    assert ann["iscrowd"] == 0 and gt.cats[ann["category_id"]]["name"] == "person"
    img = gt.imgs[ann["image_id"]]
    assert img["file_name"] == "diving-out/001/img_00001.jpg" and (img["height"], img["width"]) == (H, W)
    with MaskStore(store_path, create=False) as st:
        masks = current(st)
    for a in gt.anns.values():
        assert np.array_equal(gt.annToMask(a).astype(bool), masks[gt.imgs[a["image_id"]]["file_name"]])
    dets = [{**a, "score": 1.0} for a in json.loads(out.read_text())["annotations"]]
    ev = COCOeval(gt, gt.loadRes(dets), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    assert result.counts.masks == 17 and result.counts.frames_without_mask == 1


def test_ytvis_matches_schema_with_null_where_absent(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "vis.json"
    export_store(store_path, "ytvis", out)
    data = json.loads(out.read_text())
    assert {"videos", "annotations", "categories", "info", "licenses"} <= set(data)
    assert len(data["videos"]) == 3 and len(data["annotations"]) == 3  # one track per video (no tracks)
    v = data["videos"][0]
    for key, kind in (("id", int), ("width", int), ("height", int), ("length", int), ("file_names", list)):
        assert isinstance(v[key], kind)
    assert v["length"] == len(v["file_names"]) == 5
    a = data["annotations"][0]
    assert a["video_id"] == v["id"] and a["iscrowd"] == 0 and a["category_id"] == 1
    assert len(a["segmentations"]) == len(a["bboxes"]) == len(a["areas"]) == v["length"]
    # frame index 2 of sample 1 holds an empty mask: the athlete is absent there -> null
    empty_at = v["file_names"].index("diving-out/001/img_00003.jpg")
    assert a["segmentations"][empty_at] is None and a["bboxes"][empty_at] is None
    seg = a["segmentations"][0]
    assert seg["size"] == [H, W] and isinstance(seg["counts"], str)
    x, y, w, h = a["bboxes"][0]
    assert w > 0 and h > 0 and a["areas"][0] == float(decode_rle(seg).sum())


def test_ytvis_exports_one_annotation_per_athlete_track(tmp_path: Path) -> None:
    path = tmp_path / "tracks.db"
    with MaskStore(path) as st:
        fill_store(st, make_samples(n_samples=1), tracks=True, holes=False)
        union = current(st)
    export_store(path, "ytvis", tmp_path / "vis.json")
    data = json.loads((tmp_path / "vis.json").read_text())
    tracks = [a for a in data["annotations"] if a["video_id"] == 1]
    assert sorted(a["track"] for a in tracks) == [1, 2]
    for i, key in enumerate(data["videos"][0]["file_names"]):
        parts = [decode_rle(a["segmentations"][i]) for a in tracks if a["segmentations"][i] is not None]
        assert np.array_equal(np.logical_or.reduce(parts), union[key])
        left = next(a for a in tracks if a["track"] == 1)["segmentations"][i]
        assert left is None or not decode_rle(left)[:, W // 2 :].any()


def test_ytvis_lone_track_is_the_whole_mask_not_cut_to_its_prompt_box(tmp_path: Path) -> None:
    """build-masks stores one athlete as ``[{"track": 0, "bbox": prompt box, "counts": None}]``; the
    segmenter's mask reaches past that box (a hand, a foot), and those pixels belong to the athlete."""
    from hmtools.store_types import MaskWrite

    samples = make_samples(n_samples=1, n_frames=2)
    mask = np.zeros((H, W), bool)
    mask[4:20, 6:18] = True
    path = tmp_path / "one.db"
    with MaskStore(path) as st:
        st.add_samples(samples)
        box = {"track": 0, "bbox": [6.0, 4.0, 12.0, 20.0], "counts": None}  # the mask is wider than the box
        st.write_sample_masks(
            samples[0].sample_id,
            [MaskWrite(mask=mask, source="auto", frame_idx=i, tracks=[box]) for i in range(2)],
            author="test",
        )
    export_store(path, "ytvis", tmp_path / "vis.json")
    (ann,) = json.loads((tmp_path / "vis.json").read_text())["annotations"]
    assert ann["track"] == 0
    for seg in ann["segmentations"]:
        assert np.array_equal(decode_rle(seg), mask)


def test_hdf5_reads_with_plain_h5py(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks.h5"
    export_store(store_path, "hdf5", out)
    with MaskStore(store_path, create=False) as st:
        masks = current(st)
    # the ten-line reader from docs/formats.md
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "hmtools-masks"
        for _name, g in f["samples"].items():
            keys = g["frame_keys"].asstr()[()]
            height = g["masks"].attrs["height"]
            frames = np.unpackbits(g["masks"][()], axis=1, count=height).astype(bool)  # (T, H, W)
            present = g["present"][()].astype(bool)
            assert frames.shape == (len(keys), H, W) and g["masks"].chunks == (1, math.ceil(H / 8), W)
            assert g["masks"].compression == "gzip" and g["masks"].dtype == np.uint8
            for key, m, p in zip(keys, frames, present, strict=True):
                assert (masks[key] is not None) == p
                assert np.array_equal(m, masks[key] if p else np.zeros((H, W), bool))
            assert g.attrs["sample_id"].startswith("diving/") and g.attrs["split"] in ("train", "test")
            assert json.loads(g.attrs["info"])["action_class"] == "diving"
            assert set(g["source"].asstr()[()]) <= {"", "auto", "human"}
            assert g["score"].dtype == np.float32 and g["version"].dtype == np.int32


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_fineparser_folder_mirrors_frame_tree(store_path: Path, tmp_path: Path, image_format: str) -> None:
    out = tmp_path / "FineDiving_HM"
    export_store(store_path, "fineparser", out, options=ExportOptions(image_format=image_format))
    with MaskStore(store_path, create=False) as st:
        masks = current(st)
    files = sorted(str(p.relative_to(out)) for p in out.rglob(f"*.{image_format}"))
    expected = sorted(k.replace(".jpg", f".{image_format}") for k, m in masks.items() if m is not None)
    assert files == expected
    for rel in files:
        img = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (H, W)  # 8-bit single channel
        mask = masks[rel.replace(f".{image_format}", ".jpg")]
        if image_format == "png":
            assert set(np.unique(img)) <= {0, 255} and np.array_equal(img == 255, mask)
        else:
            assert mask_iou(img >= 128, mask) >= 0.99
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(files)


FORMATS = (("coco", "c.json"), ("ytvis", "y.json"), ("hdf5", "m.h5"), ("fineparser", "fp"))


def _read_all(out: Path) -> dict[str, bytes]:
    if out.is_dir():
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return {"file": out.read_bytes(), "manifest": out.with_name(out.name + ".manifest.json").read_bytes()}


def test_exports_are_deterministic(store_path: Path, tmp_path: Path) -> None:
    import time

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for fmt, name in FORMATS:
        export_store(store_path, fmt, a / name)
    time.sleep(1.1)  # a timestamp anywhere in the content (HDF5 object times...) would now differ
    for fmt, name in FORMATS:
        export_store(store_path, fmt, b / name)
        assert _read_all(a / name) == _read_all(b / name), fmt
        manifest_file = a / name / "manifest.json" if fmt == "fineparser" else a / f"{name}.manifest.json"
        manifest = json.loads(manifest_file.read_text())
        assert manifest["format"] == fmt and manifest["counts"]["masks"] == 17 and manifest["tool_version"]


def test_status_and_sample_selection(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "acc.json"
    result = export_store(store_path, "coco", out, Selection(("diving/002",), ("accepted",)))
    data = json.loads(out.read_text())
    assert {img["sample_id"] for img in data["images"]} == {"diving/002"}
    assert all(a["status"] == "accepted" for a in data["annotations"]) and len(data["annotations"]) == 3
    assert result.counts.frames_without_mask == 3
    with pytest.raises(InputError, match="not in"):
        export_store(store_path, "coco", tmp_path / "x.json", Selection(("nope/1",)))
    with pytest.raises(InputError, match="--status"):
        export_store(store_path, "coco", tmp_path / "x.json", Selection(None, ("great",)))


def test_export_is_atomic_and_refuses_to_overwrite(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hmtools.exchange import export as export_mod

    out = tmp_path / "masks.h5"
    export_store(store_path, "hdf5", out)
    before = out.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        export_store(store_path, "hdf5", out)

    def broken(samples, tmp, info, opts):  # type: ignore[no-untyped-def]
        for _ in samples:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")

    monkeypatch.setitem(export_mod.EXPORTERS, "hdf5", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_store(store_path, "hdf5", out, options=ExportOptions(overwrite=True))
    assert out.read_bytes() == before  # the old export is intact
    assert not any(".partial-" in p.name for p in tmp_path.iterdir())


def test_frame_keys_that_climb_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    from hmtools.errors import DataFormatError
    from hmtools.schema import Sample
    from hmtools.store_types import MaskWrite

    path = tmp_path / "evil.db"
    with MaskStore(path) as st:
        st.add_samples([Sample("x/1", "aqa7", ("../../outside.jpg",), "train")])
        st.write_sample_masks("x/1", [MaskWrite(mask=np.ones((4, 4), bool))], author="t")
    with pytest.raises(DataFormatError, match="not a relative path"):
        export_store(path, "fineparser", tmp_path / "fp")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("evil.db")) == []
    assert not (tmp_path.parent / "outside.jpg").exists()


def test_export_reads_one_snapshot_while_annotators_write(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hmtools.exchange import export as export_mod
    from hmtools.store_types import MaskWrite

    seen: list[int] = []

    def spy(samples, tmp, info, opts):  # type: ignore[no-untyped-def]
        stream = iter(samples)
        next(stream)
        with MaskStore(store_path) as other:  # another connection writes mid-export (WAL lets it)
            other.write_sample_masks("diving/003", [MaskWrite(mask=np.zeros((H, W), bool))], author="annotator")
        seen.extend(r.version for r in list(stream)[-1].records)
        tmp.write_text("{}")

    monkeypatch.setitem(export_mod.EXPORTERS, "coco", spy)
    export_store(store_path, "coco", tmp_path / "c.json")
    assert seen and set(seen) == {1}  # the export did not see the annotator's version 2
    with MaskStore(store_path) as st:
        assert st.current_mask("diving-out/003/img_00001.jpg").version == 2


def test_manifest_records_counts_and_build_configuration(tmp_path: Path) -> None:
    from hmtools.store_admin import put_config
    from hmtools.store_types import MaskWrite

    path = tmp_path / "built.db"
    samples = make_samples(n_samples=2, n_frames=2)
    with MaskStore(path) as st:
        st.add_samples(samples)
        put_config(st, "abc123", {"detector": "yolo11n", "segmenter": "sam_vit_b"})
        for s in samples:
            writes = [MaskWrite(mask=np.ones((H, W), bool), score=0.8) for _ in s.frames]
            st.write_sample_masks(s.sample_id, writes, author="build", build_config="abc123")
    export_store(path, "hdf5", tmp_path / "m.h5")
    manifest = json.loads((tmp_path / "m.h5.manifest.json").read_text())
    assert manifest["store"]["build_configs"] == {"abc123": {"detector": "yolo11n", "segmenter": "sam_vit_b"}}
    assert manifest["counts"]["masks"] == 4 and manifest["counts"]["by_source"]["auto"] == 4
    import hashlib

    digest = hashlib.sha256((tmp_path / "m.h5").read_bytes()).hexdigest()
    assert manifest["files"] == {"m.h5": {"sha256": digest, "bytes": (tmp_path / "m.h5").stat().st_size}}


def test_fineparser_export_of_a_corrupt_stored_rle_fails_and_leaves_nothing(store_path: Path, tmp_path: Path) -> None:
    """A counts string edited behind the store's back: one clear error, no half-written folder."""
    from _store_fixtures import raw_connect

    from hmtools.errors import DataFormatError

    con = raw_connect(store_path)
    frame_id, head = con.execute("SELECT frame_id, head_version FROM frames WHERE head_version > 0 LIMIT 1").fetchone()
    row = con.execute(
        "SELECT height, width, area, source, status FROM masks WHERE frame_id=? AND version=?", (frame_id, head)
    ).fetchone()
    con.execute(
        "INSERT INTO masks (frame_id, version, height, width, counts, area, source, status, author, created_at) "
        "VALUES (?, ?, ?, ?, '0j0j', ?, ?, ?, 'vandal', 0)",
        (frame_id, head + 1, *row),
    )
    con.execute("UPDATE frames SET head_version=? WHERE frame_id=?", (head + 1, frame_id))
    con.close()
    with pytest.raises(DataFormatError, match="RLE counts"):
        export_store(store_path, "fineparser", tmp_path / "fp")
    assert not (tmp_path / "fp").exists()
    assert not any(".partial-" in p.name for p in tmp_path.iterdir())


def test_overwrite_interrupted_while_removing_the_old_folder_leaves_a_whole_export(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting a large old FineParser folder takes long; a crash or Ctrl-C then must not leave half
    of it under the final name."""
    import shutil

    from hmtools.exchange import manifest as manifest_mod
    from hmtools.validate import validate_path

    out = tmp_path / "fp"
    export_store(store_path, "fineparser", out, Selection(("diving/001",)))
    real_rmtree = shutil.rmtree

    def interrupted(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if ".partial-" not in str(path):  # the old export: delete part of it, then die
            for f in sorted(Path(path).rglob("*.jpg"))[:2]:
                f.unlink()
            raise KeyboardInterrupt
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(manifest_mod.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_store(store_path, "fineparser", out, options=ExportOptions(overwrite=True))
    monkeypatch.setattr(manifest_mod.shutil, "rmtree", real_rmtree)
    problems = validate_path(out)  # the new export, whole (all three samples); the store has one hole
    assert problems == [f"{out}: 1 frames of the exported samples have no mask file (manifest)"]
    assert json.loads((out / "manifest.json").read_text())["counts"]["samples"] == 3


@pytest.mark.parametrize("fmt", ["coco", "hdf5", "fineparser"])
@pytest.mark.parametrize("where", ["the store", "its folder", "a folder above"])
def test_overwrite_never_replaces_the_store_or_a_folder_holding_it(tmp_path: Path, fmt: str, where: str) -> None:
    store_path = tmp_path / "data" / "run" / "masks.db"
    with MaskStore(store_path) as st:
        fill_store(st, make_samples(n_samples=1))
    before = store_path.read_bytes()
    out = {"the store": store_path, "its folder": store_path.parent, "a folder above": tmp_path / "data"}[where]
    with pytest.raises(InputError, match="an export there would replace it"):
        export_store(store_path, fmt, out, options=ExportOptions(overwrite=True))
    assert store_path.read_bytes() == before


@pytest.mark.parametrize("fmt", ["coco", "fineparser"])
def test_overwrite_replaces_only_an_earlier_export(store_path: Path, tmp_path: Path, fmt: str) -> None:
    """--overwrite on a frame folder, a frame or a file whose sidecar name is taken deleted them."""
    frames = tmp_path / "dataset" / "diving-out" / "001"
    frames.mkdir(parents=True)
    (frames / "img_00001.jpg").write_bytes(b"jpeg")
    notes = tmp_path / "notes.txt"
    (tmp_path / "notes.txt.manifest.json").write_text("{}")  # not an hmtools manifest
    for out in (tmp_path / "dataset", frames, frames / "img_00001.jpg", notes):
        with pytest.raises(InputError, match="is not an hmtools export"):
            export_store(store_path, fmt, out, options=ExportOptions(overwrite=True))
    assert (frames / "img_00001.jpg").read_bytes() == b"jpeg" and not notes.exists()
    assert (tmp_path / "notes.txt.manifest.json").read_text() == "{}"
    out = tmp_path / "earlier"
    export_store(store_path, "coco", out)
    export_store(store_path, fmt, out, options=ExportOptions(overwrite=True))  # an export, of any format
    assert json.loads((out / "manifest.json" if fmt == "fineparser" else out).read_bytes())


def test_a_full_disk_is_one_error_line_and_leaves_the_earlier_export(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from hmtools.errors import HMToolsError
    from hmtools.exchange import export as export_mod

    out = tmp_path / "m.json"
    export_store(store_path, "coco", out)
    before = out.read_bytes()

    def full(samples, tmp, info, opts):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(export_mod.EXPORTERS, "coco", full)
    with pytest.raises(HMToolsError, match="No space left on device; nothing was written") as e:
        export_store(store_path, "coco", out, options=ExportOptions(overwrite=True))
    assert e.value.exit_code == 1 and out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m.")) == ["m.json", "m.json.manifest.json"]
