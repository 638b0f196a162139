"""Edges between the import and the store: masks of no pixels in an import, compare-and-set
versions that are not whole numbers, and a savepoint whose transaction SQLite already rolled back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _exchange_fixtures import W, make_samples

from hmtools.errors import DataFormatError, InputError
from hmtools.exchange import import_masks
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite

BAD = ("diving-out/002/img_00003.jpg", "diving-out/003/img_00001.jpg")
GOOD = "diving-out/002/img_00004.jpg"


def _snapshot(path: Path) -> tuple[list[str], list[tuple[object, ...]]]:
    with MaskStore(path) as st:
        return st.sample_ids(), st.query("SELECT frame_id, version, counts FROM masks ORDER BY mask_id")


def _coco(tmp_path: Path, annotated: bool) -> Path:
    """Two frames of 0 rows (with a 0x64 RLE, or with no annotation: an empty mask) and a good one."""
    images = [{"id": i, "file_name": k, "width": W, "height": 0} for i, k in enumerate(BAD)]
    images.append({"id": 9, "file_name": GOOD, "width": W, "height": 48})
    anns: list[dict[str, Any]] = [
        {"id": 9, "image_id": 9, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]}
    ]
    if annotated:
        anns += [
            {"id": i + 1, "image_id": i, "category_id": 1, "segmentation": {"size": [0, W], "counts": [0]}}
            for i in range(len(BAD))
        ]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "p"}]}))
    return path


@pytest.mark.parametrize("case", ["coco-rle", "coco-no-annotation"])
def test_a_mask_of_no_pixels_for_a_frame_of_unknown_size_is_a_reported_size_mismatch(tmp_path: Path, case: str) -> None:
    """No --root and no recorded size: a 0xW / Hx0 mask is counted like any size mismatch (frame key,
    file), every mask is still read, and the import then fails as a whole, leaving the store as it was."""
    path = _coco(tmp_path, annotated=case == "coco-rle")  # (YouTube-VIS readers refuse such a video already)
    store = tmp_path / "s.db"
    with MaskStore(store) as st:
        st.add_samples(make_samples())
    before = _snapshot(store)
    with MaskStore(store) as st, pytest.raises(DataFormatError) as err:
        import_masks(st, make_samples(), "coco", path)
    text = str(err.value)
    assert text.startswith(f"2 masks in {path} differ in size from their frames"), text
    assert BAD[0] in text and "no pixels" in text and "nothing imported" in text
    assert _snapshot(store) == before


def _store_with_mask(tmp_path: Path) -> tuple[MaskStore, str]:
    st = MaskStore(tmp_path / "s.db")
    st.add_samples(make_samples())
    key = make_samples()[0].frames[0]
    st.put_mask(key, MaskWrite(mask=np.zeros((4, 4), bool), source="auto"), author="a", expected_version=0)
    return st, key


@pytest.mark.parametrize("version", [True, 1.0, -1, "1", None])
def test_put_mask_refuses_an_expected_version_that_is_not_a_whole_number(tmp_path: Path, version: object) -> None:
    st, key = _store_with_mask(tmp_path)  # head is version 1: True == 1.0 == 1 would pass compare-and-set
    write = MaskWrite(mask=np.ones((4, 4), bool), source="human")
    with (
        st,
        pytest.raises(InputError, match=r"expected version must be a whole number >= 0.*nothing was written") as err,
    ):
        st.put_mask(key, write, author="b", expected_version=version)  # type: ignore[arg-type]
    assert "\n" not in str(err.value) and repr(version) in str(err.value)
    with MaskStore(tmp_path / "s.db") as st2:
        assert [r.version for r in st2.history(key)] == [1]


def test_put_mask_still_takes_numpy_integers(tmp_path: Path) -> None:
    st, key = _store_with_mask(tmp_path)
    with st:
        write = MaskWrite(mask=np.ones((4, 4), bool), source="human")
        assert st.put_mask(key, write, author="b", expected_version=np.int64(1)) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [True, 1.5, -1])
def test_set_status_refuses_a_version_that_is_not_a_whole_number(tmp_path: Path, version: object) -> None:
    st, key = _store_with_mask(tmp_path)
    with st, pytest.raises(InputError, match="expected version must be a whole number"):
        st.set_status({key: version}, "accepted", author="b")  # type: ignore[dict-item]
    with MaskStore(tmp_path / "s.db") as st2:
        assert [r.version for r in st2.history(key)] == [1]


def test_a_full_disk_in_a_savepoint_raises_the_full_disk_not_a_lost_savepoint(tmp_path: Path) -> None:
    """SQLite rolls the whole transaction back itself on SQLITE_FULL: the savepoint is gone, and
    undoing it must not replace the disk-full error (here a page limit makes the disk full)."""
    st, key = _store_with_mask(tmp_path)
    with st:
        pages = st.query("PRAGMA page_count")[0][0]
        st.query(f"PRAGMA max_page_count={pages + 2}")
        with pytest.raises(sqlite3.OperationalError, match="full") as err:
            with st.transaction():
                st.audit("a", "note", None, {"text": "x" * 200_000})  # a nested transaction: a savepoint
        assert "savepoint" not in str(err.value)
        assert not st._conn.in_transaction  # noqa: SLF001
        st.query(f"PRAGMA max_page_count={pages + 1000}")
        st.audit("a", "note", None, {"text": "fits"})  # the store is usable afterwards
        assert [r.version for r in st.history(key)] == [1]


def test_a_savepoint_under_a_transaction_rolled_back_by_sqlite_keeps_the_original_error(tmp_path: Path) -> None:
    """An I/O error: SQLite rolled back (simulated by a plain ROLLBACK) and the body raised."""
    st, _ = _store_with_mask(tmp_path)

    class DiskGone(Exception):
        pass

    with st:
        with pytest.raises(DiskGone) as err, st.transaction(), st.transaction() as c:
            c.execute("ROLLBACK")
            raise DiskGone("disk I/O error")
        assert str(err.value) == "disk I/O error"
        with st.transaction():  # nested and plain transactions work afterwards
            st.audit("a", "after", None, {})
        assert st.query("SELECT count(*) FROM audit WHERE action='after'") == [(1,)]
