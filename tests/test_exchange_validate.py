"""``hmtools validate`` on exports: sound exports pass; tampering, bad RLE and gaps are reported."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from _exchange_fixtures import H, W, fill_store, make_samples, write_frames

from hmtools.cli import main
from hmtools.exchange import export_store
from hmtools.masks import encode_rle
from hmtools.store import MaskStore
from hmtools.validate import validate_path

FORMATS = (("coco", "c.json"), ("ytvis", "y.json"), ("hdf5", "m.h5"), ("fineparser", "fp"))


@pytest.fixture()
def complete(tmp_path: Path) -> tuple[Path, Path]:
    """A store where every frame has a mask, and its frame tree."""
    samples = make_samples()
    write_frames(tmp_path / "root", samples)
    with MaskStore(tmp_path / "masks.db") as st:
        fill_store(st, samples, holes=False)
    return tmp_path / "masks.db", tmp_path / "root"


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_sound_exports_validate_clean(complete, tmp_path: Path, fmt: str, name: str) -> None:  # type: ignore[no-untyped-def]
    store, root = complete
    export_store(store, fmt, tmp_path / name)
    assert validate_path(tmp_path / name) == []
    assert validate_path(tmp_path / name, root=root) == []


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_tampering_breaks_the_manifest_hash(complete, tmp_path: Path, fmt: str, name: str) -> None:  # type: ignore[no-untyped-def]
    store, _ = complete
    out = tmp_path / name
    export_store(store, fmt, out)
    target = out / "diving-out/002/img_00001.jpg" if fmt == "fineparser" else out
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01  # inside the JSON's closing / HDF5 metadata / JPEG tail
    target.write_bytes(bytes(data))
    problems = validate_path(out)
    assert any("sha256" in p for p in problems), problems


def test_coco_problems_are_listed_one_per_line(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, root = complete
    out = tmp_path / "c.json"
    export_store(store, "coco", out)
    data = json.loads(out.read_text())
    data["annotations"][0]["segmentation"]["size"] = [H + 1, W]
    data["annotations"][1]["segmentation"]["counts"] += "0"
    data["annotations"].append({**data["annotations"][2], "id": 999})
    del data["annotations"][4]["bbox"]
    data["images"] = data["images"][:-1]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 18]
    out.write_text(json.dumps(data))
    problems = validate_path(out)
    text = "\n".join(problems)
    assert "annotation 1: RLE size" in text
    assert "annotation 2: RLE counts cover" in text
    assert "has 2 masks" in text
    assert "lacks bbox" in text
    assert "diving/003: 5 of 6 frames have a mask" in text
    assert "sha256" in text


def test_frame_size_disagreement_with_root_is_reported(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, root = complete
    out = tmp_path / "fp"
    export_store(store, "fineparser", out)
    cv2.imwrite(str(root / "diving-out/001/img_00002.jpg"), np.zeros((H, W + 8, 3), np.uint8))
    (out / "diving-out/001/img_00004.jpg").unlink()
    problems = validate_path(out, root=root)
    assert any("img_00002.jpg: mask is 48x64, frame is 48x72" in p for p in problems), problems
    assert any("img_00004.jpg: frame has no mask" in p for p in problems)
    assert any("listed in SHA256SUMS but missing" in p for p in problems)


def test_cli_validate_exit_codes(complete, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    store, _ = complete
    out = tmp_path / "m.h5"
    export_store(store, "hdf5", out)
    with pytest.raises(SystemExit) as e:
        main(["validate", str(out)])
    assert e.value.code == 0 and "ok" in capsys.readouterr().out
    out.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(SystemExit) as e:
        main(["validate", str(out)])
    assert e.value.code == 1 and "sha256" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as e:
        main(["validate", str(tmp_path / "notes.txt")])
    assert e.value.code == 2 and "hmtools: error:" in capsys.readouterr().err


def test_dangling_references_are_listed_for_coco_and_ytvis(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, _ = complete
    for fmt, parent in (("coco", "image_id"), ("ytvis", "video_id")):
        out = tmp_path / f"{fmt}.json"
        export_store(store, fmt, out)
        data = json.loads(out.read_text())
        data["annotations"][0][parent] = 12345
        data["annotations"][1]["category_id"] = 7
        out.write_text(json.dumps(data))
        text = "\n".join(validate_path(out))
        kind = "image" if fmt == "coco" else "video"
        assert f"names {kind} 12345, not in '{kind}s'" in text, text
        assert "has category 7, not in 'categories'" in text, text


def _plant(out: Path, edit) -> list[str]:  # type: ignore[no-untyped-def]
    data = json.loads(out.read_text())
    edit(data)
    out.write_text(json.dumps(data))
    return [p for p in validate_path(out) if "sha256" not in p]


def test_coco_boxes_and_duplicate_ids_and_frames_are_reported(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, _ = complete
    out = tmp_path / "c.json"
    export_store(store, "coco", out)

    def edit(d):  # type: ignore[no-untyped-def]
        x, y, w, h = d["annotations"][0]["bbox"]
        d["annotations"][0]["bbox"] = [x, y, x + w, y + h]  # XYXY written where COCO wants XYWH
        d["annotations"][2]["id"] = d["annotations"][1]["id"]
        d["images"][4]["file_name"] = d["images"][3]["file_name"]  # two images, two masks, one frame

    text = "\n".join(_plant(out, edit))
    assert "annotation 1: bbox" in text and "[x, y, w, h] box is" in text
    assert "annotation id 2 appears twice" in text
    assert "is listed by two images" in text


def test_ytvis_areas_boxes_and_nulls_are_checked(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, _ = complete
    out = tmp_path / "y.json"
    export_store(store, "ytvis", out)

    def edit(d):  # type: ignore[no-untyped-def]
        a = d["annotations"][0]
        a["areas"][0] += 5
        x, y, w, h = a["bboxes"][1]
        a["bboxes"][1] = [x, y, x + w, y + h]
        a["segmentations"][2] = None  # bbox and area left behind
        a["segmentations"][3] = encode_rle(np.zeros((H, W), bool))  # absent athlete written as an empty RLE
        d["videos"][2]["id"] = d["videos"][1]["id"]

    text = "\n".join(_plant(out, edit))
    assert "annotation 1 frame 0: area" in text
    assert "annotation 1 frame 1: bbox" in text
    assert "annotation 1 frame 2: null segmentation but a bbox or area" in text
    assert "annotation 1 frame 3: empty RLE; write null" in text
    assert "video id 2 appears twice" in text


def test_fineparser_mask_written_0_1_instead_of_0_255_is_reported(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """FineParser's loader divides by 255 and rounds: a 0/1 mask reads as all background."""
    store, _ = complete
    out = tmp_path / "fp"
    export_store(store, "fineparser", out)
    target = out / "diving-out/001/img_00001.jpg"
    cv2.imwrite(str(target), (cv2.imread(str(target), cv2.IMREAD_GRAYSCALE) >= 128).astype(np.uint8))
    problems = [p for p in validate_path(out) if "sha256" not in p]
    assert len(problems) == 1 and "img_00001.jpg: pixel values 0-" in problems[0] and "0/255" in problems[0]
