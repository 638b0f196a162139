"""The streaming JSON reader/writer behind COCO and YouTube-VIS, with a tiny buffer to hit every refill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hmtools.exchange as exchange
from hmtools.errors import DataFormatError
from hmtools.exchange import jsonio


def test_public_names_import() -> None:
    for name in exchange.__all__:
        assert getattr(exchange, name) is not None


def test_stream_round_trip_across_buffer_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonio, "_CHUNK", 7)
    images = jsonio.SpooledArray(tmp_path)
    for i in range(30):
        images.append({"id": i, "file_name": "é/" + "x" * i, "v": [1.5, None, True, 12345678901]})
    empty = jsonio.SpooledArray(tmp_path)
    path = tmp_path / "doc.json"
    with path.open("w", encoding="utf-8") as f:
        jsonio.write_object(f, {"images": images, "info": {"n": 123456789}, "empty": empty, "z": 7})
    assert json.loads(path.read_text()) == {
        "empty": [],
        "images": [{"id": i, "file_name": "é/" + "x" * i, "v": [1.5, None, True, 12345678901]} for i in range(30)],
        "info": {"n": 123456789},
        "z": 7,
    }
    assert [e["id"] for e in jsonio.iter_array(path, "images")] == list(range(30))
    assert list(jsonio.iter_array(path, "empty")) == [] and list(jsonio.iter_array(path, "missing")) == []
    assert jsonio.top_level_keys(path) == ["empty", "images", "info", "z"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": [{"id": 1}, {"id": 2', "truncated"),
        ('{"images": [{"id": 1} {"id": 2}]}', "expected ','"),
        ('["not", "an", "object"]', "expected '\\{'"),
        ('{"images": {"id": 1}}', "must be a JSON array"),
        ('{"images": [], "x": tru}', "not valid JSON"),
    ],
)
def test_malformed_json_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        list(jsonio.iter_array(path, "images"))
