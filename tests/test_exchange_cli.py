"""The ``export`` and ``import`` commands end to end through ``hmtools.cli.main``."""

from __future__ import annotations

import json
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
