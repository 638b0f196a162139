"""``import --format ytvis``: hmtools' own export round trips with its tracks, files of other tools
(uncompressed RLE, polygons, no ``track``, interleaved videos), and malformed files that must leave
the store untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _exchange_fixtures import H, W, current, fill_store, make_samples, write_frames
from pycocotools import mask as coco_mask

from hmtools.errors import DataFormatError
from hmtools.exchange import export_store, import_masks
from hmtools.masks import encode_rle, rle_area_box
from hmtools.store import MaskStore


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_frames(tmp_path / "root", make_samples())
    return tmp_path / "root"


@pytest.fixture()
def tracked(tmp_path: Path) -> Path:
    """A store whose masks are two athletes each, with per-athlete ``tracks``."""
    path = tmp_path / "tracked.db"
    with MaskStore(path) as st:
        fill_store(st, make_samples(), tracks=True)
    return path


def _snapshot(store_path: Path) -> tuple[list[str], list[tuple[object, ...]]]:
    with MaskStore(store_path) as st:
        return st.sample_ids(), st.query("SELECT frame_id, version, counts, tracks FROM masks ORDER BY mask_id")


def test_export_import_export_gives_the_same_masks_and_tracks(tracked: Path, root: Path, tmp_path: Path) -> None:
    export_store(tracked, "ytvis", tmp_path / "a.json")
    with MaskStore(tmp_path / "new.db") as st:
        report = import_masks(st, make_samples(), "ytvis", tmp_path / "a.json", root=root)
        recs = {r.frame_key: r for sid in st.sample_ids() for r in st.current_masks(sid) if r is not None}
        back = current(st)
    with MaskStore(tracked) as st:
        masks = current(st)
    assert report.imported == 17 and report.empty == 1 and report.frames_without_mask.count == 1
    assert all((back[k] is None) == (m is None) and (m is None or np.array_equal(back[k], m)) for k, m in masks.items())
    two = [r for r in recs.values() if r.tracks is not None and len(r.tracks) == 2]
    assert len(two) >= 10 and all(t["counts"] is not None for r in two for t in r.tracks)
    for r in two:  # each athlete's own RLE, box from it, and the union is theirs
        parts = [coco_mask.decode({"size": [H, W], "counts": t["counts"].encode()}).astype(bool) for t in r.tracks]
        assert [t["track"] for t in r.tracks] == [1, 2]
        assert np.array_equal(parts[0] | parts[1], r.mask()), r.frame_key
        assert [tuple(t["bbox"]) for t in r.tracks] == [rle_area_box(encode_rle(p))[1] for p in parts]
    lone = [r for r in recs.values() if r.tracks is not None and len(r.tracks) == 1]
    assert lone and all(t["counts"] is None and t["track"] in (1, 2) for r in lone for t in r.tracks)  # one athlete
    assert {r.status for r in recs.values()} == {"unreviewed", "accepted", "flagged"}
    export_store(tmp_path / "new.db", "ytvis", tmp_path / "b.json")
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["annotations"] == b["annotations"] and len(a["annotations"]) == 6
    for va, vb in zip(a["videos"], b["videos"], strict=True):
        assert {k: v for k, v in va.items() if k not in ("sources", "versions")} == {
            k: v for k, v in vb.items() if k not in ("sources", "versions")
        }


def _uncompressed(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE (``counts`` a list of run lengths, column-major) of an ``(H, W)`` mask."""
    flat = mask.flatten(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()  # runs start with background
    assert sum(counts) == flat.size
    return {"size": [H, W], "counts": counts}


def test_file_of_another_tool_unions_tracks_polygons_and_interleaved_videos(root: Path, tmp_path: Path) -> None:
    a = np.zeros((H, W), bool)
    a[5:20, 3:12] = True
    a[30:35, 40:45] = True
    poly = [[30, 20, 40, 20, 40, 30, 30, 30]]  # (x, y) pixels
    b = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(poly, H, W))).astype(bool)
    c = np.zeros((H, W), bool)
    c[10:40, 20:30] = True
    names = [f"diving-out/002/img_{i:05d}.png" for i in (1, 2, 3, 4)]  # extension differs from the frames'
    ytvis = {
        "annotations": [  # video 5's two objects come around video 9's
            {
                "id": 1,
                "video_id": 5,
                "category_id": 1,
                "segmentations": [_uncompressed(a), _uncompressed(a), None, None],
            },
            {"id": 2, "video_id": 9, "category_id": 3, "segmentations": [None, encode_rle(c)]},
            {"id": 3, "video_id": 5, "category_id": 2, "segmentations": [None, poly, poly, None]},
        ],
        "videos": [
            {"id": 5, "width": W, "height": H, "length": 4, "file_names": names},
            {
                "id": 9,
                "width": W,
                "height": H,
                "length": 2,
                "file_names": ["diving-out/003/img_00001.jpg", "diving-out/003/img_00002.jpg"],
            },
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "diver"}, {"id": 3, "name": "x"}],
    }
    path = tmp_path / "other.json"
    path.write_text(json.dumps(ytvis))
    with MaskStore(tmp_path / "new.db") as st:
        report = import_masks(st, make_samples(), "ytvis", path, root=root)
        recs = [st.current_mask(k.replace(".png", ".jpg")) for k in names]
        v9 = [st.current_mask(f"diving-out/003/img_0000{i}.jpg") for i in (1, 2)]
    assert report.imported == 6 and report.empty == 2 and report.masks_without_frame.count == 0
    assert [np.array_equal(r.mask(), m) for r, m in zip(recs, [a, a | b, b, a & False], strict=True)] == [True] * 4
    assert recs[0].tracks is None  # the first object alone: track 0, the union
    assert [
        (t["track"], np.array_equal(coco_mask.decode({"size": [H, W], "counts": t["counts"].encode()}), m))
        for t, m in zip(recs[1].tracks, (a, b), strict=True)
    ] == [(0, True), (1, True)]
    assert recs[2].tracks == [{"track": 1, "bbox": [30.0, 20.0, 40.0, 30.0], "counts": None}]  # alone: the union
    assert recs[3].area == 0 and recs[3].tracks is None and {r.status for r in recs} == {"unreviewed"}
    assert v9[0].area == 0 and np.array_equal(v9[1].mask(), c) and v9[1].tracks is None


def _edit(good: Path, out: Path, change: Any) -> Path:
    data = json.loads(good.read_text())
    change(data)
    out.write_text(json.dumps(data))
    return out


def _seg(data: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in data["annotations"][0]["segmentations"] if s is not None)


def _set(obj: dict[str, Any], key: str, value: Any) -> None:
    obj[key] = value


def test_malformed_files_fail_with_one_message_and_leave_the_store_untouched(
    tracked: Path, root: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    export_store(tracked, "ytvis", good)
    text = good.read_text()
    (tmp_path / "trunc.json").write_text(text[: len(text) * 2 // 3])
    cases = {
        "trunc.json": "truncated|not valid JSON",
        _edit(
            good, tmp_path / "size.json", lambda d: _set(_seg(d), "size", [H, W + 1])
        ).name: "RLE is 48x65 but video 1 is 48x64",
        _edit(
            good, tmp_path / "short.json", lambda d: d["annotations"][1]["segmentations"].pop()
        ).name: "one entry per listed frame .5.; found 4",
        _edit(
            good, tmp_path / "video.json", lambda d: _set(d["annotations"][2], "video_id", 99)
        ).name: "annotation 3 names video 99, not in 'videos'",
        _edit(
            good, tmp_path / "cut.json", lambda d: _set(_seg(d), "counts", _seg(d)["counts"][:-3])
        ).name: "do not cover",
        _edit(
            good, tmp_path / "length.json", lambda d: _set(d["videos"][0], "length", 9)
        ).name: "has length 9 but 5 file_names",
        _edit(good, tmp_path / "track.json", lambda d: _set(d["annotations"][1], "track", 1)).name: "repeats track 1",
        _edit(
            good, tmp_path / "poly.json", lambda d: d["annotations"][0]["segmentations"].__setitem__(0, [["x"]])
        ).name: "malformed segmentation",
        _edit(good, tmp_path / "none.json", lambda d: _set(d, "videos", [])).name: "lists no videos",
    }
    before = _snapshot(tracked)
    for name, message in cases.items():
        with MaskStore(tracked) as st, pytest.raises(DataFormatError, match=message):
            import_masks(st, make_samples(), "ytvis", tmp_path / name, root=root)
        assert _snapshot(tracked) == before, name


def _one_video(path: Path, names: list[str], height: int) -> Path:
    mask = np.zeros((height, W), bool)
    mask[2:9, 4:9] = True
    seg = encode_rle(mask)
    video = {"id": 1, "width": W, "height": height, "length": len(names), "file_names": names}
    ann = {"id": 1, "video_id": 1, "category_id": 1, "segmentations": [seg] * len(names)}
    path.write_text(json.dumps({"videos": [video], "annotations": [ann]}))
    return path


def test_masks_of_another_size_or_dataset_fail_and_import_nothing(root: Path, tmp_path: Path) -> None:
    keys = ["diving-out/001/img_00001.jpg", "diving-out/001/img_00002.jpg"]
    resized = _one_video(tmp_path / "half.json", keys, H // 2)
    other = _one_video(tmp_path / "other.json", ["clip_07/00001.jpg", "clip_07/00002.jpg"], H)
    new = tmp_path / "new.db"
    for path, message in (
        (resized, "differ in size.*img_00001.jpg: mask 24x64, frame 48x64"),
        (other, "another dataset"),
    ):
        with MaskStore(new) as st, pytest.raises(DataFormatError, match=message):
            import_masks(st, make_samples(), "ytvis", path, root=root)
        assert _snapshot(new) == ([], [])
