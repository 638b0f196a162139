"""``hmtools preview`` on awkward samples and outputs: masks on some frames only, a missing frame, frames
re-extracted at another size, unknown ids, bad ``--out`` values, and failed writes (nothing half-written)."""

from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest
from _datasets_fixtures import run_cli
from PIL import Image

from hmtools.errors import HMToolsError, InputError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite
from pipelines.preview import GREEN, overlay, write_preview

H, W = 48, 64


def _dataset(root: Path, n: int = 6, masked: tuple[int, ...] = (0, 2, 4)) -> tuple[Path, list[str]]:
    """Frames ``clip/00001.jpg``.. (grey 100), a store with sample ``diving/001`` and ``diving/002``, and a
    square mask on the ``masked`` frames of ``diving/001``."""
    keys = []
    for i in range(n):
        key = f"clip/{i + 1:05d}.jpg"
        (root / "clip").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / key), np.full((H, W, 3), 100, np.uint8))
        keys.append(key)
    store = root / "m.db"
    with MaskStore(store) as st:
        st.add_samples([Sample(sample_id="diving/001", dataset="aqa7", frames=tuple(keys), split="train")])
        st.add_samples([Sample(sample_id="diving/002", dataset="aqa7", frames=("other/00001.jpg",), split="test")])
        mask = np.zeros((H, W), bool)
        mask[10:40, 20:50] = True
        st.write_sample_masks("diving/001", [MaskWrite(mask=mask, frame_idx=i) for i in masked], author="t")
    return store, keys


def _greenish(img_rgb: np.ndarray) -> np.ndarray:
    """Pixels tinted by the mask overlay: 0.5 * grey 100 + 0.5 * GREEN, within JPEG/MP4 error."""
    tint = 0.5 * 100 + 0.5 * np.array(GREEN)
    return np.abs(img_rgb.astype(int) - tint).sum(-1) < 60


def _mp4_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[..., ::-1])
    cap.release()
    return frames


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_masks_on_some_frames_and_a_missing_frame(tmp_path: Path, ext: str) -> None:
    store, keys = _dataset(tmp_path)
    (tmp_path / keys[5]).unlink()
    out = tmp_path / "new" / "deeper" / f"p{ext}"  # a folder that does not exist yet
    video, sheet = write_preview(store, tmp_path, "diving/001", out)
    assert video == out and sheet == out.with_name("p_sheet.png")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["p_sheet.png", f"p{ext}"])  # no .partial left
    if ext == ".mp4":
        frames = _mp4_frames(out)
    else:
        with Image.open(out) as im:
            assert im.n_frames == 6
            frames = []
            for i in range(im.n_frames):
                im.seek(i)
                frames.append(cv2.resize(np.asarray(im.convert("RGB")), (W, H), interpolation=cv2.INTER_AREA))
        cap = cv2.VideoCapture(str(out))  # OpenCV opens the GIF too
        assert cap.isOpened() and cap.read()[0]
        cap.release()
    assert len(frames) == 6
    tinted = [_greenish(f)[12:38, 22:48].mean() > 0.8 for f in frames]
    assert tinted == [True, False, True, False, True, False]
    sheet_img = cv2.imread(str(sheet))
    assert sheet_img is not None and sheet_img.shape[1] == 4 * 320


def test_masks_of_another_size_are_scaled_onto_the_frame(tmp_path: Path) -> None:
    """Frames re-extracted at twice the size after the masks were built: the overlay was dropped without a
    word, so the preview looked like "no mask found" on every frame."""
    store, keys = _dataset(tmp_path)
    for key in keys:
        assert cv2.imwrite(str(tmp_path / key), np.full((2 * H, 2 * W, 3), 100, np.uint8))
    with MaskStore(store, read_only=True) as st:
        rec = st.current_mask(keys[0])
    pic = overlay(np.full((2 * H, 2 * W, 3), 100, np.uint8), rec, "label")
    assert _greenish(pic)[24:76, 44:96].mean() > 0.95 and not _greenish(pic)[84:, :30].any()
    out, _ = write_preview(store, tmp_path, "diving/001", tmp_path / "p.mp4")
    frames = _mp4_frames(out)
    assert frames[0].shape[:2] == (2 * H, 2 * W) and _greenish(frames[0])[26:74, 46:94].mean() > 0.8


def test_an_unknown_sample_names_the_nearest_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = _dataset(tmp_path)
    args = ["preview", "--store", str(store), "--root", str(tmp_path), "--out", str(tmp_path / "p.gif"), "--sample"]
    code, _, err = run_cli([*args, "diving/01"], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "nearest: diving/001" in err
    code, _, err = run_cli([*args, "zzzz"], capsys)
    assert code == 2 and "it holds 2 samples, e.g. diving/001, diving/002" in err
    MaskStore(tmp_path / "empty.db").close()
    with pytest.raises(InputError, match="it holds no samples"):
        write_preview(tmp_path / "empty.db", tmp_path, "diving/001", tmp_path / "p.gif")
    assert not (tmp_path / "p.gif").exists()


@pytest.mark.parametrize("bad", ["p.avi", "p.png", "p", "dir.mp4"])
def test_bad_out_values_are_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    """``--out`` naming an existing folder (``dir.mp4/``) said "free some space" after decoding every frame."""
    store, _ = _dataset(tmp_path)
    (tmp_path / "dir.mp4").mkdir()
    args = ["preview", "--store", str(store), "--root", str(tmp_path), "--sample", "diving/001"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / bad)], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "Traceback" not in err
    assert ".mp4 or .gif" in err
    assert not list(tmp_path.glob("*_sheet.png")) and not list(tmp_path.glob(".*partial*"))


def test_an_mp4_writer_that_cannot_open_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OpenCV build without FFmpeg returns a closed VideoWriter that drops every frame: the preview
    failed with "0 of 6 frames (disk full?)", sending the user to free disk space."""

    class Closed:
        def __init__(self, *args: object) -> None:
            pass

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return False

        def write(self, frame: np.ndarray) -> None:
            pass

        def release(self) -> None:
            pass

    store, _ = _dataset(tmp_path)
    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    args = ["preview", "--store", str(store), "--root", str(tmp_path), "--sample", "diving/001"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "o" / "p.mp4")], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "cannot write MP4" in err and ".gif" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_a_full_disk_leaves_the_previous_preview_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ext: str
) -> None:
    store, _ = _dataset(tmp_path)
    out = tmp_path / "prev" / f"p{ext}"
    write_preview(store, tmp_path, "diving/001", out)
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    if ext == ".mp4":
        real = cv2.VideoWriter

        class DropsFrames:  # OpenCV's writer on a full disk: no error, frames just go missing
            def __init__(self, *args: object) -> None:
                self.w, self.n = real(*args), 0

            def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
                return self.w.isOpened()

            def write(self, frame: np.ndarray) -> None:
                self.n += 1
                if self.n <= 2:
                    self.w.write(frame)

            def release(self) -> None:
                self.w.release()

        monkeypatch.setattr(cv2, "VideoWriter", DropsFrames)
    else:

        def full(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
            Path(str(fp)).write_bytes(b"GIF89a")  # a few bytes, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(HMToolsError, match="cannot write preview"):
        write_preview(store, tmp_path, "diving/001", out)
    args = ["preview", "--store", str(store), "--root", str(tmp_path), "--sample", "diving/001", "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and err.count("hmtools: error:") == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # old files intact, nothing added


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_frames_of_different_sizes_and_a_placeholder_each_show_their_own_picture(tmp_path: Path, ext: str) -> None:
    """A GIF took frames of other sizes as they came: PIL cropped a taller one and pasted a shorter one over
    the frame before, and the frame after that came out as the earlier picture. A missing frame's 240x320
    placeholder beside 96x160 frames (another aspect) was such a frame."""
    sizes = [(48, 64), (96, 64), (30, 90), None, (48, 64)]  # None: a missing file, no recorded size
    keys = []
    (tmp_path / "clip").mkdir()
    for i, hw in enumerate(sizes):
        keys.append(f"clip/{i + 1:05d}.jpg")
        if hw is not None:
            assert cv2.imwrite(str(tmp_path / keys[-1]), np.full((*hw, 3), 50 * i, np.uint8))
    with MaskStore(tmp_path / "m.db") as st:
        st.add_samples([Sample(sample_id="s", dataset="aqa7", frames=tuple(keys), split="train")])
    out, _ = write_preview(tmp_path / "m.db", tmp_path, "s", tmp_path / f"p{ext}")
    if ext == ".mp4":
        frames = _mp4_frames(out)
    else:
        with Image.open(out) as im:
            frames = []
            for i in range(im.n_frames):
                im.seek(i)
                frames.append(np.asarray(im.convert("RGB")))
    assert len(frames) == 5 and len({f.shape for f in frames}) == 1
    h, w = frames[0].shape[:2]
    centre = [int(np.median(f[h // 2 :, w // 4 : 3 * w // 4])) for f in frames]  # below the label text
    assert centre == pytest.approx([0, 50, 100, 40, 200], abs=6)  # 40: the grey placeholder
