"""``hmtools export`` lists samples in the annotator's natural order (``01/2`` before ``01/10``)
in every format when ``--samples`` is not given, and in the given order when it is."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from _exchange_fixtures import H, W, person_mask

from annotator_app.review_queue import natural_key as queue_key
from annotator_app.review_queue import queue_rows
from hmtools.cli import main
from hmtools.exchange import Selection, export_store
from hmtools.natural_order import natural_key, natural_sorted
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite

# FineDiving "<video>/<instance>" ids whose code point order (SQL ORDER BY) differs from natural order
IDS = ["01/1", "01/10", "01/2", "02/1", "FINA_r10/0", "FINA_r9/0", "fina_r9/1"]
NATURAL = ["01/1", "01/2", "01/10", "02/1", "FINA_r9/0", "fina_r9/1", "FINA_r10/0"]


def _store(path: Path) -> Path:
    samples = [
        Sample(sample_id=sid, dataset="finediving", frames=tuple(f"{sid}/{t:05d}.jpg" for t in range(2)), split="train")
        for sid in reversed(IDS)
    ]
    with MaskStore(path) as st:
        st.add_samples(samples)
        for k, s in enumerate(samples):
            writes = [MaskWrite(mask=person_mask(H, W, i, seed=k), frame_idx=i) for i in range(2)]
            st.write_sample_masks(s.sample_id, writes, author="test")
        assert st.sample_ids() == sorted(IDS)  # the store itself lists code point order
    return path


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0)


def _order(fmt: str, out: Path) -> list[str]:
    """Sample ids in the order the export lists them (what a reader iterating the file sees)."""
    if fmt == "coco":
        coco = json.loads(out.read_text())
        images = sorted(coco["images"], key=lambda im: im["id"])
        return list(dict.fromkeys(im["file_name"].rsplit("/", 1)[0] for im in images))
    if fmt == "ytvis":
        videos = sorted(json.loads(out.read_text())["videos"], key=lambda v: v["id"])
        return [v["file_names"][0].rsplit("/", 1)[0] for v in videos]
    with h5py.File(out, "r") as f:
        return [str(g.attrs["sample_id"]) for g in f["samples"].values()]


def test_natural_key_is_shared_with_the_review_queue(tmp_path: Path) -> None:
    assert queue_key is natural_key  # one order, importable from both places
    assert natural_sorted(IDS) == NATURAL == sorted(IDS, key=natural_key)
    with MaskStore(_store(tmp_path / "m.db"), read_only=True) as st:
        assert [r.sample_id for r in queue_rows(st)] == NATURAL


@pytest.mark.parametrize("fmt", ["coco", "ytvis", "hdf5"])
def test_export_without_samples_is_in_natural_order(tmp_path: Path, fmt: str) -> None:
    store = _store(tmp_path / "m.db")
    out = tmp_path / f"x.{fmt}"
    assert _run(["export", "--store", str(store), "--format", fmt, "--out", str(out)]) == 0
    assert _order(fmt, out) == NATURAL
    if fmt == "coco":  # ids 1.. in that order: 01/1 -> 1, 2; 01/2 -> 3, 4; 01/10 -> 5, 6
        ids = {im["file_name"]: im["id"] for im in json.loads(out.read_text())["images"]}
        assert (ids["01/1/00000.jpg"], ids["01/2/00000.jpg"], ids["01/10/00000.jpg"]) == (1, 3, 5)
    assert _run(["validate", str(out)]) == 0
    again = tmp_path / f"y.{fmt}"
    export_store(store, fmt, again)
    assert again.read_bytes() == out.read_bytes()  # deterministic


@pytest.mark.parametrize("fmt", ["coco", "ytvis", "hdf5"])
def test_export_with_samples_keeps_their_order(tmp_path: Path, fmt: str) -> None:
    store = _store(tmp_path / "m.db")
    out = tmp_path / f"x.{fmt}"
    chosen = ["01/10", "fina_r9/1", "01/1", "01/2"]
    result = export_store(store, fmt, out, Selection(tuple(chosen)))
    assert result.counts.samples == 4
    assert _order(fmt, out) == chosen
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["selection"]["samples"] == chosen


def test_fineparser_export_of_a_natural_order_store_validates(tmp_path: Path) -> None:
    store = _store(tmp_path / "m.db")
    out = tmp_path / "fp"
    export_store(store, "fineparser", out)
    assert {p.parent.relative_to(out).as_posix() for p in out.rglob("*.jpg")} == set(IDS)
    assert _run(["validate", str(out)]) == 0
