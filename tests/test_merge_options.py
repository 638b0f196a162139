"""``build-masks --merge`` options: ``--dataset`` is checked against the stores, build-only options are
refused, ``--root`` is not read, and a merge runs in one process (not under torchrun).

Rank stores are built in-process with the fake models; every merge goes through the real ``hmtools`` CLI.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hmtools.errors import InputError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from pipelines.config import BuildConfig
from pipelines.distributed import Rank
from pipelines.job import run_build_masks
from pipelines.merge import find_rank_stores, rank_store_path
from tests._datasets_fixtures import run_cli
from tests.test_merge_summary import _dataset, _rank_stores


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the aqa7 rank stores ``m.db.rank{0,1}-of-2`` of 3 samples (no ``m.db`` yet)."""
    root = tmp_path_factory.mktemp("ranks")
    _rank_stores(root, _dataset(root, 3))
    return root


@pytest.fixture
def db(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the rank stores; returns the (absent) main store path beside them."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    for part in find_rank_stores(built / "m.db"):
        shutil.copy(part, tmp_path / part.name)
    return tmp_path / "m.db"


def _merge(db: Path, capsys: pytest.CaptureFixture[str], *extra: str, dataset: str = "aqa7", root: str = ""):
    args = ["build-masks", "--dataset", dataset, "--root", root or str(db.parent), "--store", str(db), "--merge"]
    return run_cli([*args, *extra], capsys)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_dataset_other_than_the_rank_stores_is_refused(db, capsys) -> None:
    """The audit's reproduction: --dataset finediving --root /nonexistent over aqa7 rank stores merged, exit 0."""
    code, out, err = _merge(db, capsys, dataset="finediving", root="/nonexistent")
    assert code == 2, out
    line = _one_error_line(err)
    assert "--dataset finediving does not match the rank stores" in line and "holds aqa7 samples" in line
    assert "pass --dataset aqa7" in line
    assert not db.exists()  # nothing created, nothing copied


def test_a_dataset_other_than_the_stores_is_refused_when_the_rank_stores_are_empty(db, capsys) -> None:
    """Rank stores that registered nothing: --dataset is checked against what --store already holds."""
    assert _merge(db, capsys)[0] == 0  # m.db now holds the 3 aqa7 samples
    empty = db.parent / "e.db"
    MaskStore(rank_store_path(empty, Rank(0, 1, 0))).close()
    shutil.copy(db, empty)
    code, out, err = _merge(empty, capsys, dataset="mtl-aqa")
    assert code == 2, out
    line = _one_error_line(err)
    assert "--dataset mtl-aqa does not match --store: e.db holds aqa7 samples" in line


def test_empty_rank_stores_merge_into_a_store_of_the_dataset(db, capsys) -> None:
    """Rank stores that registered no sample (every rank died first) copy nothing, and say so."""
    assert _merge(db, capsys)[0] == 0
    empty = db.parent / "e.db"
    MaskStore(rank_store_path(empty, Rank(0, 1, 0))).close()
    shutil.copy(db, empty)
    code, out, err = _merge(empty, capsys)
    assert code == 0, err
    assert "0 built samples in them" in out and "0 samples copied" in out


def test_an_unknown_dataset_is_refused(db, capsys) -> None:
    code, _, err = _merge(db, capsys, dataset="finegym")
    assert code == 2 and "unknown dataset 'finegym'; valid names: finediving, mtl-aqa, aqa7" in _one_error_line(err)
    assert not db.exists()


def test_the_dataset_name_is_matched_as_for_a_build(db, capsys) -> None:
    code, out, err = _merge(db, capsys, dataset="AQA7")
    assert code == 0, err
    assert "3 samples copied" in out


@pytest.mark.parametrize(
    "extra",
    [
        ["--samples", "nope", "--force"],
        ["--limit", "0"],
        ["--split", "test"],
        ["--keep-built"],
        ["--annotations", "/nonexistent"],
        ["--detector", "lite", "--segmenter", "lite"],
        ["--sam-checkpoint", "sam.pth"],
        ["--device", "cpu"],
        ["--batch-size", "4"],
        ["--config", "configs/build_masks.yaml"],
        ["--set", "device=cpu"],
    ],
)
def test_options_that_only_steer_a_build_are_refused(db, capsys, extra: list[str]) -> None:
    code, out, err = _merge(db, capsys, *extra)
    assert code == 2, out
    line = _one_error_line(err)
    named = [a for a in extra if a.startswith("--")]
    assert f"{', '.join(named)} only steer" in line and "--merge copies the per-rank stores" in line
    assert not db.exists()


def test_the_root_is_not_read_and_rank_stores_and_overwrite_human_are_accepted(db, capsys) -> None:
    """A merge may run on a machine without the dataset: --root is required by the CLI but not read."""
    code, out, err = _merge(db, capsys, "--rank-stores", "--overwrite-human", root="/nonexistent")
    assert code == 0, err
    assert "3 samples copied (12 frames" in out


def test_a_merge_under_torchrun_is_refused(db, capsys, monkeypatch) -> None:
    """Every torchrun rank would merge into the same store at once."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code, out, err = _merge(db, capsys)
    assert code == 2, out
    assert "--merge runs in one process, not under torchrun" in _one_error_line(err)
    assert not db.exists()


def test_run_build_masks_refuses_build_options_with_merge(db) -> None:
    with pytest.raises(InputError, match=r"--limit, --split only steer a build"):
        run_build_masks("aqa7", db.parent, None, db, BuildConfig(), limit=0, split="test", merge=True)
    assert not db.exists()


def test_rank_stores_of_two_datasets_are_still_named_by_the_merge(db, capsys) -> None:
    """--dataset matching one of them does not hide that the rank stores mix datasets."""
    with MaskStore(find_rank_stores(db)[1]) as p1:
        p1.add_samples([Sample("01/1", "mtl-aqa", ("01/000001.jpg",), split="train")])
    code, _, err = _merge(db, capsys)
    assert code == 2 and "the rank stores hold samples of several datasets (aqa7, mtl-aqa)" in _one_error_line(err)
