"""Exports read by the consumers' own code: pycocotools (COCO, COCOeval), the YouTube-VIS API's loader and
evaluator logic (``youtubevos/cocoapi`` ``ytvos.py`` / ``ytvoseval.py``, not on PyPI: its logic is
reproduced below), the HDF5 reader printed in docs/formats.md, and the public FineParser mask loader
(``datasets/FineDiving_Pair.py``). Plus imports of masks as other tools write them, and re-imports."""

from __future__ import annotations

import copy
import glob
import json
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _exchange_fixtures import H, W, current, fill_store, make_samples, write_frames
from PIL import Image
from pycocotools import mask as mu

from hmtools.errors import DataFormatError
from hmtools.exchange import ExportOptions, Selection, export_store, import_masks
from hmtools.schema import Sample
from hmtools.store import MaskStore

DOCS = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def _store(tmp_path: Path, *, tracks: bool = False) -> tuple[Path, dict[str, np.ndarray | None]]:
    path = tmp_path / "masks.db"
    with MaskStore(path) as st:
        fill_store(st, make_samples(), tracks=tracks, holes=not tracks)
        return path, current(st)


def test_coco_spec_fields_and_pycocotools_results_round_trip(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path, masks = _store(tmp_path)
    out = tmp_path / "c.json"
    export_store(path, "coco", out)
    gt = COCO(str(out))
    data = json.loads(out.read_text())
    assert [c["id"] for c in data["categories"]] == [1] and data["categories"][0]["name"] == "person"
    for kind in ("images", "annotations"):
        ids = [x["id"] for x in data[kind]]
        assert len(ids) == len(set(ids)) and min(ids) >= 1  # COCOeval reads id 0 as "unmatched"
    assert len({img["file_name"] for img in data["images"]}) == len(data["images"])
    for ann in gt.loadAnns(gt.getAnnIds()):
        img = gt.imgs[ann["image_id"]]
        rle = gt.annToRLE(ann)
        assert ann["iscrowd"] == 0 and ann["category_id"] in gt.cats
        assert rle["size"] == [img["height"], img["width"]] == [H, W]
        assert np.array_equal(gt.annToMask(ann).astype(bool), masks[img["file_name"]])
        assert ann["area"] == int(mu.area(rle)) and ann["bbox"] == mu.toBbox(rle).tolist()  # [x, y, w, h]
    # the annotations as a results list: loadRes takes them unchanged; COCOeval needs a score on every
    # result, and masks without a model score (human, imported) carry null
    anns = json.loads(out.read_text())["annotations"]
    assert any(a["score"] is None for a in anns)
    gt.loadRes(copy.deepcopy(anns))
    results = [{**a, "score": 1.0 if a["score"] is None else a["score"]} for a in anns]
    for iou_type in ("segm", "bbox"):
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0) and ev.stats[8] == pytest.approx(1.0), iou_type


def test_coco_results_recipe_in_the_docs_matches_frames_by_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two exports number their images in frame order among exported frames: a store that lacks one
    frame's mask shifts every later id, and a results list taken by id would compare wrong frames."""
    path, _ = _store(tmp_path)
    export_store(path, "coco", tmp_path / "a.json")
    # without diving/001 the other frames get other image ids
    export_store(path, "coco", tmp_path / "b.json", Selection(("diving/002", "diving/003")))
    section = DOCS.read_text().split("COCO *results* list", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), "formats.md", "exec"), scope)  # noqa: S102  # our own documentation
    assert scope["ev"].stats[1] == pytest.approx(12 / 16, abs=0.02)  # AP50: diving/002-3 found, diving/001 missed


# --- YouTube-VIS: ytvos.py / ytvoseval.py logic -------------------------------------------------------


def _ytvos_load_res(gt: dict[str, Any], anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``YTVOS.loadRes`` on a list of results: recomputes areas and boxes, ids from 1, iscrowd 0."""
    video_ids = {v["id"] for v in gt["videos"]}
    assert {a["video_id"] for a in anns} <= video_ids, "Results do not correspond to current coco set"
    for i, ann in enumerate(anns):
        ann["areas"], ann["bboxes"] = [], []
        for seg in ann["segmentations"]:
            ann["areas"].append(mu.area(seg) if seg else None)
            ann["bboxes"].append(mu.toBbox(seg) if seg else None)
        ann["id"], ann["iscrowd"] = i + 1, 0
    return anns


def _iou_seq(d_seq: list[Any], g_seq: list[Any]) -> float:
    """``YTVOSeval.computeIoU``'s spatio-temporal IoU of two tracks."""
    inter = union = 0.0
    for d, g in zip(d_seq, g_seq, strict=True):
        if d and g:
            inter += mu.area(mu.merge([d, g], True))
            union += mu.area(mu.merge([d, g], False))
        elif g:
            union += mu.area(g)
        elif d:
            union += mu.area(d)
    return inter / union if union > 0 else 0.0


def _ytvis_ap(gt: dict[str, Any], dt: list[dict[str, Any]]) -> float:
    """AP@[.5:.95] the way ytvoseval matches and accumulates (per video and category, greedy by score)."""
    thresholds = np.linspace(0.5, 0.95, 10)
    aps = []
    for t in thresholds:
        matches: list[tuple[float, bool]] = []
        n_gt = 0
        for v in gt["videos"]:
            g = [a for a in gt["annotations"] if a["video_id"] == v["id"]]
            d = sorted((a for a in dt if a["video_id"] == v["id"]), key=lambda a: -a["score"])
            n_gt += len(g)
            used: set[int] = set()
            for da in d:
                ious = [
                    (-1.0 if j in used else _iou_seq(da["segmentations"], ga["segmentations"]))
                    for j, ga in enumerate(g)
                ]
                j = int(np.argmax(ious)) if ious else -1
                ok = j >= 0 and ious[j] >= t
                used |= {j} if ok else set()
                matches.append((da["score"], ok))
        matches.sort(key=lambda m: -m[0])
        tp = np.cumsum([m[1] for m in matches])
        recall, precision = tp / n_gt, tp / np.arange(1, len(tp) + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        aps.append(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))
    return float(np.mean(aps))


def _mask2former_records(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Mask2Former's ``load_ytvis_json``: per video, per listed frame, the objects present there."""
    records = []
    for vid in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == vid["id"]]
        frames = []
        for i in range(vid["length"]):
            objs = []
            for a in anns:
                boxes, segs = a.get("bboxes"), a.get("segmentations")
                if not (boxes and segs and boxes[i] and segs[i]):
                    continue
                objs.append({"bbox": boxes[i], "segmentation": segs[i], "category_id": a["category_id"]})
            frames.append(objs)
        records.append(
            {"file_names": vid["file_names"][: vid["length"]], "height": vid["height"], "annotations": frames}
        )
    return records


@pytest.mark.parametrize("tracks", [False, True])
def test_ytvis_reads_and_self_evaluates_with_the_youtube_vis_api_logic(tmp_path: Path, tracks: bool) -> None:
    path, masks = _store(tmp_path, tracks=tracks)
    out = tmp_path / "y.json"
    export_store(path, "ytvis", out)
    data = json.loads(out.read_text())
    for v in data["videos"]:
        assert isinstance(v["id"], int) and v["width"] == W and v["height"] == H
        assert v["length"] == len(v["file_names"]) and all(isinstance(k, str) for k in v["file_names"])
    ann_ids = [a["id"] for a in data["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
    for rec in _mask2former_records(data):
        for key, objs in zip(rec["file_names"], rec["annotations"], strict=True):
            union = np.zeros((H, W), bool)
            for obj in objs:
                union |= mu.decode(obj["segmentation"]).astype(bool)
                assert obj["bbox"] == mu.toBbox(obj["segmentation"]).tolist()
            assert np.array_equal(union, masks[key]), key  # the empty mask: no object on that frame
    for a in data["annotations"]:
        for seg, box, area in zip(a["segmentations"], a["bboxes"], a["areas"], strict=True):
            assert (seg is None) == (box is None) == (area is None)
            assert seg is None or area == float(mu.area(seg))
    assert len(data["annotations"]) == (6 if tracks else 3)
    dt = _ytvos_load_res(data, [{**copy.deepcopy(a), "score": 1.0} for a in data["annotations"]])
    assert _ytvis_ap(data, dt) == pytest.approx(1.0)
    shifted = copy.deepcopy(dt)  # a sanity check of the evaluator: masks moved by half a frame miss
    for a in shifted:
        a["segmentations"] = [
            None if s is None else mu.encode(np.asfortranarray(np.roll(mu.decode(s), W // 2, axis=1)))
            for s in a["segmentations"]
        ]
    assert _ytvis_ap(data, shifted) < 0.5


# --- HDF5: the reader printed in docs/formats.md, verbatim ---------------------------------------------


def test_hdf5_reader_in_the_docs_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, masks = _store(tmp_path)
    export_store(path, "hdf5", tmp_path / "masks.h5")
    section = DOCS.read_text().split("## `hdf5`", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    seen: dict[str, Any] = {}
    scope: dict[str, Any] = {"print": lambda *a: seen.setdefault(str(a[0]), a)}
    exec(compile(code.group(1), "formats.md", "exec"), scope)  # noqa: S102  # our own documentation
    assert sorted(seen) == ["diving/001", "diving/002", "diving/003"]
    assert seen["diving/003"][2] == (6, H, W) and seen["diving/001"][3] == 5  # one frame has no mask
    keys, got, present = scope["keys"], scope["masks"], scope["present"]  # the last sample read
    assert all(p and np.array_equal(m, masks[k]) for k, m, p in zip(keys, got, present, strict=True))


# --- FineParser: the public loader's mask reading ------------------------------------------------------


def _fineparser_load_masks(mask_root: str, data_root: str, video: tuple[str, int], length: int) -> np.ndarray:
    """``FineDiving_Pair_Dataset.load_video`` (mask half) + ``ClipToTensor(channel_nb=1)`` + ``round()``."""
    image_list = sorted(glob.glob(os.path.join(data_root, video[0], str(video[1]), "*.jpg")))
    mask_list = sorted(glob.glob(os.path.join(mask_root, video[0], str(video[1]), "*.jpg")))
    assert len(mask_list) == len(image_list)
    assert [os.path.basename(p) for p in mask_list] == [os.path.basename(p) for p in image_list]
    start, end = int(image_list[0].split("/")[-1][:-4]), int(image_list[-1].split("/")[-1][:-4])
    frame_idx = [int(f) - start for f in np.linspace(start, end, length).astype(int)]
    masks = [Image.open(mask_list[i]) for i in frame_idx]
    clip = np.zeros([1, length, masks[0].size[1], masks[0].size[0]])
    for i, img in enumerate(masks):
        assert img.mode == "L"
        clip[:, i] = np.expand_dims(np.array(img), 0)  # a 3-channel image would not fit here
    return np.round(clip / 255.0)[0]


def test_fineparser_folder_is_what_the_public_fineparser_loader_reads(tmp_path: Path) -> None:
    video = ("FINADivingWorldCup2021_Men3m_final_r1", 0)
    keys = tuple(f"{video[0]}/0/{n:05d}.jpg" for n in range(489, 501))
    sample = Sample(f"{video[0]}/0", "finediving", keys, "train")
    root = tmp_path / "FINADiving_MTL_256s"
    write_frames(root, [sample])
    with MaskStore(tmp_path / "s.db") as st:
        fill_store(st, [sample], holes=False)
        masks = current(st)
    export_store(tmp_path / "s.db", "fineparser", tmp_path / "FineDiving_HM")
    clip = _fineparser_load_masks(str(tmp_path / "FineDiving_HM"), str(root), video, 8)
    picked = [keys[int(f) - 489] for f in np.linspace(489, 500, 8).astype(int)]
    for got, key in zip(clip, picked, strict=True):
        assert got.shape == (H, W) and set(np.unique(got)) <= {0.0, 1.0}
        assert np.array_equal(got.astype(bool), masks[key]), key


# --- import: masks as other tools write them; re-import ------------------------------------------------


def test_palette_and_label_masks_import_as_foreground(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SAM 2, Cutie, XMem and DAVIS write palette PNGs (index 1 = dark red, grey 38); many tools write
    0/1 or athlete-id PNGs. Read as grey >= 128 they all became empty masks, silently."""
    samples = make_samples(n_samples=1, n_frames=5)
    write_frames(tmp_path / "root", samples)
    want = {}
    folder = tmp_path / "masks" / "diving-out" / "001"
    folder.mkdir(parents=True)
    for i, key in enumerate(samples[0].frames):
        m = np.zeros((H, W), np.uint8)
        m[5 + i : 20 + i, 10:30] = 1
        m[30:40, 40:50] = 2 if i == 2 else 0  # a second athlete with its own label
        want[key] = m > 0
        name = folder / Path(key).with_suffix(".png").name
        if i in (0, 2):
            img = Image.fromarray(m, "P")
            img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
            img.save(name)
        elif i == 1:
            cv2.imwrite(str(name), m)  # 0/1
        elif i == 3:
            cv2.imwrite(str(name), m.astype(np.uint16))  # 16-bit 0/1
        else:
            cv2.imwrite(str(name), m * 255)  # the usual 0/255
    with MaskStore(tmp_path / "s.db") as st, caplog.at_level("WARNING"):
        report = import_masks(st, samples, "fineparser", tmp_path / "masks", root=tmp_path / "root", workers=1)
        got = {r.frame_key: r.mask() for r in st.current_masks(samples[0].sample_id) if r is not None}
    assert report.imported == 5 and report.empty == 0
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert "2 masks" in caplog.text and "palette" in caplog.text and "nonzero" in caplog.text


def test_lossy_masks_keep_the_threshold(tmp_path: Path) -> None:
    """A JPEG's faint edge noise (values 1..7) never becomes foreground by the 0/1 rule."""
    from hmtools.exchange.fineparser import decode_mask_files

    m = np.zeros((H, W), np.uint8)
    m[10:12, 10:12] = 40  # faint: below 128 everywhere
    cv2.imwrite(str(tmp_path / "a.jpg"), m)
    (decoded,) = decode_mask_files([tmp_path / "a.jpg"])
    assert decoded.area == 0 and decoded.rule == "threshold"


def _versions(path: Path) -> list[tuple[Any, ...]]:
    with MaskStore(path) as st:
        return st.query("SELECT frame_id, version, counts, status, score, tracks FROM masks ORDER BY mask_id")


@pytest.mark.parametrize("fmt", ["coco", "ytvis", "hdf5", "fineparser"])
def test_reimporting_the_same_file_adds_no_versions(tmp_path: Path, fmt: str) -> None:
    path, masks = _store(tmp_path, tracks=fmt == "ytvis")
    write_frames(tmp_path / "root", make_samples())
    out = tmp_path / ("fp" if fmt == "fineparser" else f"x.{fmt}")
    export_store(path, fmt, out)
    new = tmp_path / "new.db"
    with MaskStore(new) as st:
        first = import_masks(st, make_samples(), fmt, out, root=tmp_path / "root", workers=1)
    once = _versions(new)
    with MaskStore(new) as st:
        again = import_masks(st, make_samples(), fmt, out, root=tmp_path / "root", workers=1)
    assert _versions(new) == once and len(once) == first.imported
    assert again.unchanged == again.imported == first.imported and first.unchanged == 0
    assert "unchanged" in again.lines()[0]
    key = "diving-out/002/img_00003.jpg"
    with MaskStore(new) as st:  # an annotator's edit is replaced by a further import, as before
        from hmtools.store_types import MaskWrite

        rec = st.current_mask(key)
        st.put_mask(key, MaskWrite(mask=~rec.mask(), source="human"), author="ann", expected_version=rec.version)
        third = import_masks(st, make_samples(), fmt, out, root=tmp_path / "root", workers=1)
        assert [r.source for r in st.history(key)] == ["imported", "human", "imported"]
    assert third.unchanged == first.imported - 1


def test_coco_image_without_a_file_name_string_is_refused(tmp_path: Path) -> None:
    path, _ = _store(tmp_path)
    out = tmp_path / "c.json"
    export_store(path, "coco", out)
    data = json.loads(out.read_text())
    data["images"][2]["file_name"] = None
    out.write_text(json.dumps(data))
    with MaskStore(tmp_path / "new.db") as st, pytest.raises(DataFormatError, match="file_name"):
        import_masks(st, make_samples(), "coco", out)


def test_png_fineparser_export_reimports_exactly(tmp_path: Path) -> None:
    path, masks = _store(tmp_path)
    export_store(path, "fineparser", tmp_path / "fp", options=ExportOptions(image_format="png"))
    with MaskStore(tmp_path / "new.db") as st:
        import_masks(st, make_samples(), "fineparser", tmp_path / "fp", workers=1)
        back = current(st)
    assert all((m is None and back[k] is None) or np.array_equal(m, back[k]) for k, m in masks.items())


def test_degenerate_coco_polygons_are_dropped_not_read_as_boxes(tmp_path: Path) -> None:
    """A 2-point polygon (CVAT writes them) encloses no pixel; pycocotools' ``frPyObjects`` reads a first
    polygon of 4 numbers as an ``[x, y, w, h]`` box, and the import failed or filled a rectangle."""
    key = "diving-out/001/img_00001.jpg"
    square = [0, 0, 10, 0, 10, 10, 0, 10]
    coco = {
        "images": [{"id": 1, "file_name": key, "width": W, "height": H}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[20, 20, 30, 30], square]},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[40, 5, 44, 9]]},
        ],
    }
    path = tmp_path / "cvat.json"
    path.write_text(json.dumps(coco))
    with MaskStore(tmp_path / "s.db") as st:
        import_masks(st, make_samples(), "coco", path)
        mask = st.current_mask(key).mask()
    assert mask.sum() == 100 and mask[5, 5] and not mask[25, 25] and not mask[7, 42]
    coco["annotations"][0]["segmentation"] = [[0, 0, 10, 0, 10, 10, 0]]
    path.write_text(json.dumps(coco))
    with MaskStore(tmp_path / "t.db") as st, pytest.raises(DataFormatError, match="odd number of coordinates"):
        import_masks(st, make_samples(), "coco", path)
