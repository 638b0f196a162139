"""``hmtools preview`` outputs beside each other: one contact sheet per preview (``p.mp4`` and
``p.gif`` no longer share ``p_sheet.png``), unique temporary files for previews to the same
``--out``, odd-size MP4s padded rather than cropped, and a symlinked folder as ``--out``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from _datasets_fixtures import run_cli
from PIL import Image

from hmtools.errors import InputError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite
from pipelines import preview as preview_mod
from pipelines.preview import GREEN, sheet_owner, sheet_path, write_preview


def _dataset(root: Path, h: int = 48, w: int = 64, n: int = 4) -> Path:
    """Frames ``clip/0000k.jpg`` (grey 100, ``h x w``) of sample ``diving/001``, masked up to the right edge."""
    (root / "clip").mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(n):
        keys.append(f"clip/{i + 1:05d}.jpg")
        assert cv2.imwrite(str(root / keys[-1]), np.full((h, w, 3), 100, np.uint8))
    with MaskStore(root / "m.db") as st:
        st.add_samples([Sample(sample_id="diving/001", dataset="aqa7", frames=tuple(keys), split="train")])
        mask = np.zeros((h, w), bool)
        mask[h // 2 :, w // 2 :] = True  # bottom right quarter, to the last row and column
        st.write_sample_masks("diving/001", [MaskWrite(mask=mask, frame_idx=i) for i in range(n)], author="t")
    return root / "m.db"


def _mp4_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1][..., ::-1])
    cap.release()
    return frames


def test_mp4_and_gif_of_one_name_keep_their_own_contact_sheets(tmp_path: Path) -> None:
    store = _dataset(tmp_path)
    out = tmp_path / "prev"
    video, mp4_sheet = write_preview(store, tmp_path, "diving/001", out / "p.mp4", sheet_frames=2)
    assert mp4_sheet == out / "p_sheet.png" and sheet_owner(mp4_sheet) == "p.mp4"  # the old name, when free
    mp4_bytes = mp4_sheet.read_bytes()
    _, gif_sheet = write_preview(store, tmp_path, "diving/001", out / "p.gif", sheet_frames=4)
    assert gif_sheet == out / "p.gif_sheet.png" and sheet_owner(gif_sheet) == "p.gif"
    assert mp4_sheet.read_bytes() == mp4_bytes  # the MP4's sheet (2 frames) is not replaced by the GIF's (4)
    assert not np.array_equal(cv2.imread(str(mp4_sheet)), cv2.imread(str(gif_sheet)))  # 2 vs 4 thumbnails
    # reruns find their own sheets again, and the recorded owner is a valid PNG text chunk
    assert write_preview(store, tmp_path, "diving/001", out / "p.mp4")[1] == mp4_sheet
    assert write_preview(store, tmp_path, "diving/001", out / "p.gif")[1] == gif_sheet
    with Image.open(gif_sheet) as im:
        im.load()
        assert im.text["hmtools-preview"] == '"p.gif"'
    assert sorted(p.name for p in out.iterdir()) == ["p.gif", "p.gif_sheet.png", "p.mp4", "p_sheet.png"]


def test_a_sheet_without_an_owner_is_reused_and_both_names_taken_is_one_error(tmp_path: Path) -> None:
    legacy = tmp_path / "p_sheet.png"
    legacy.write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())  # an older hmtools' sheet
    assert sheet_owner(legacy) is None and sheet_path(tmp_path / "p.gif") == legacy
    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    legacy.write_bytes(preview_mod._with_owner(png, "p.gif"))
    (tmp_path / "p.mp4_sheet.png").write_bytes(preview_mod._with_owner(png, "p.mp4.mp4"))
    with pytest.raises(InputError, match="contact sheets of other previews"):
        sheet_path(tmp_path / "p.mp4")


def test_two_previews_to_one_out_do_not_share_a_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second preview to the same ``--out`` runs to completion while the first is writing its video
    (another terminal): with one fixed temporary name it took the first one's file away."""
    store = _dataset(tmp_path, n=5)
    out = tmp_path / "p.mp4"
    real_read = preview_mod.read_frame
    calls = []

    def read_frame(root: Path, key: str) -> tuple[np.ndarray | None, str | None]:
        calls.append(key)
        if len(calls) == 3:  # the first preview has opened its video writer: run the second one now
            write_preview(store, tmp_path, "diving/001", out)
        return real_read(root, key)

    monkeypatch.setattr(preview_mod, "read_frame", read_frame)
    assert write_preview(store, tmp_path, "diving/001", out) == (out, tmp_path / "p_sheet.png")
    assert len(_mp4_frames(out)) == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m.db", "p.mp4", "p_sheet.png"]


@pytest.mark.parametrize(("h", "w"), [(49, 65), (48, 65), (49, 64)])
def test_odd_size_mp4_is_padded_not_cropped(tmp_path: Path, h: int, w: int) -> None:
    """AQA-7 frames are 455 wide: ``mp4v`` needs even sizes and OpenCV dropped the last column."""
    store = _dataset(tmp_path, h=h, w=w)
    out = tmp_path / "p.mp4"
    write_preview(store, tmp_path, "diving/001", out)
    frames = _mp4_frames(out)
    assert len(frames) == 4 and frames[0].shape == (h + h % 2, w + w % 2, 3)
    tint = 0.5 * 100 + 0.5 * np.array(GREEN)
    f = frames[0].astype(int)
    assert np.abs(f[h - 3, w - 3] - tint).sum() < 60  # the mask's last row / column is still in the video
    assert np.abs(f[h - 3, w // 4] - 100).sum() < 40  # unmasked grey stays grey
    if w % 2:
        assert f[h // 4 : h - 4, w].mean() < 60  # the padding column is black, not a copy of the frame


def test_out_symlinked_to_an_empty_folder_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "link.mp4").symlink_to(tmp_path / "empty")
    args = ["preview", "--store", str(store), "--root", str(tmp_path), "--sample", "diving/001"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "link.mp4")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a folder" in err
    assert (tmp_path / "link.mp4").is_symlink() and not any((tmp_path / "empty").iterdir())
