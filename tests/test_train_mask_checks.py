"""Masks that would silently train on the wrong supervision: a mask of another aspect ratio than its
frame (stretched by the cache), the frames passed as ``--masks``, coloured masks read as background,
and masks named by position whose names partly overlap the frames' (paired with the wrong frames).

Every mask file here is a real file written by OpenCV or PIL.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from _datasets_fixtures import run_cli
from _ufp_fixtures import VIDEO_DIR, make_dataset, one_torch_thread, write_finediving_annotations  # noqa: F401
from PIL import Image

from hmtools.errors import DataFormatError, InputError
from hmtools.exchange import import_masks
from hmtools.exchange.fineparser import read_mask_image
from hmtools.schema import Sample
from hmtools.store import MaskStore
from uni_fineparser.cache import build_cache
from uni_fineparser.mask_source import FolderMasks

H, W = 48, 64


def box(t: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """``(h, w)`` bool: an off-centre box (not symmetric under transposition or flips)."""
    m = np.zeros((h, w), bool)
    m[h // 8 + t : h // 2 + t, w // 10 : w // 2 + w // 8] = True
    return m


# -- 1. the cache refuses a mask of another aspect ratio than its frame ------------------------------


def one_clip(tmp_path: Path, n: int = 3) -> Sample:
    """``n`` 48x64 JPEG frames ``v/0/0010t.jpg`` under ``<tmp>/root``."""
    keys = [f"v/0/{100 + t:05d}.jpg" for t in range(n)]
    (tmp_path / "root" / "v" / "0").mkdir(parents=True)
    for key in keys:
        cv2.imwrite(str(tmp_path / "root" / key), np.full((H, W, 3), 90, np.uint8))
    return Sample(sample_id="v/0", dataset="finediving", frames=tuple(keys), split="train")


def write_masks(tmp_path: Path, s: Sample, shape: tuple[int, int], odd: int | None = None, odd_shape=None) -> None:
    """PNG masks of ``shape`` (frame ``odd`` of ``odd_shape``) under ``<tmp>/masks``."""
    for t, key in enumerate(s.frames):
        h, w = odd_shape if t == odd else shape
        path = tmp_path / "masks" / Path(key).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), box(t, h, w).astype(np.uint8) * 255)


def test_a_transposed_mask_is_one_clear_error_not_stretched(tmp_path: Path) -> None:
    s = one_clip(tmp_path)
    write_masks(tmp_path, s, (H, W), odd=1, odd_shape=(W, H))  # frame 1's mask stored 64x48
    with pytest.raises(DataFormatError) as e:
        build_cache([s], tmp_path / "root", FolderMasks(tmp_path / "masks"), tmp_path / "cache", (24, 32))
    msg = str(e.value)
    assert "\n" not in msg and "sample v/0" in msg and "v/0/00101.jpg" in msg
    assert "64x48" in msg and "48x64" in msg and "aspect ratio" in msg
    assert not any((tmp_path / "cache").iterdir())  # no half cache left behind


def test_a_mask_of_another_aspect_ratio_is_refused_even_when_the_frames_come_from_an_earlier_cache(
    tmp_path: Path,
) -> None:
    """Corrected masks reuse the frames of an earlier cache (no frame decoded); the frame size recorded
    with those frames still catches a mask of another shape, even with the frame files gone."""
    s = one_clip(tmp_path)
    write_masks(tmp_path, s, (H, W))
    build_cache([s], tmp_path / "root", FolderMasks(tmp_path / "masks"), tmp_path / "cache", (24, 32))
    shutil.rmtree(tmp_path / "masks")
    write_masks(tmp_path, s, (H, W), odd=2, odd_shape=(H, H))  # a square crop of frame 2
    shutil.rmtree(tmp_path / "root")
    with pytest.raises(DataFormatError, match=r"v/0/00102\.jpg is 48x48 \(HxW\) but the frame is 48x64"):
        build_cache([s], tmp_path / "root", FolderMasks(tmp_path / "masks"), tmp_path / "cache", (24, 32))


def test_a_half_size_mask_of_the_same_aspect_ratio_is_resized_nearest(tmp_path: Path) -> None:
    s = one_clip(tmp_path)
    write_masks(tmp_path, s, (H, W), odd=0, odd_shape=(H // 2, W // 2))  # a half-size export of frame 0
    cache = build_cache([s], tmp_path / "root", FolderMasks(tmp_path / "masks"), tmp_path / "cache", (24, 32))
    _, masks, valid = cache.get("v/0", np.arange(3))
    assert valid.all()
    want = cv2.resize(box(0, H // 2, W // 2).astype(np.uint8), (32, 24), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(masks[0], want.astype(bool))


# -- 2. `hmtools train --masks` naming the frames themselves -----------------------------------------


@pytest.fixture()
def fd_root(tmp_path: Path) -> Path:
    made, _ = make_dataset(tmp_path / "root", n_train=3, n_test=1, n_frames=4)
    write_finediving_annotations(tmp_path / "root", made)
    return tmp_path / "root"


@pytest.mark.parametrize("where", ["frame folder", "dataset root", "symlink to the frames"])
def test_train_refuses_the_frames_as_masks(fd_root: Path, tmp_path: Path, capsys, where: str) -> None:  # type: ignore[no-untyped-def]
    """Before, --masks <frame folder> trained on every RGB frame read as its own mask."""
    masks = {"frame folder": fd_root / VIDEO_DIR, "dataset root": fd_root, "symlink to the frames": tmp_path / "hm"}
    os.symlink(fd_root / VIDEO_DIR, tmp_path / "hm")
    args = ["train", "--dataset", "finediving", "--root", str(fd_root), "--masks", str(masks[where])]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu"], capsys)
    assert code == 2
    assert "every frame would be read as its own mask" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# -- 3. read_mask_image: coloured masks, JPEG noise, 0/1 and palette PNGs ------------------------------


def noisy_jpeg_cv2(path: Path, img: np.ndarray, quality: int = 60) -> None:
    """``img`` (grey or BGR uint8) plus Gaussian noise (sigma 12), saved as a JPEG by OpenCV."""
    noise = np.random.default_rng(0).normal(0, 12, img.shape)
    cv2.imwrite(str(path), np.clip(img + noise, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])


def coloured(m: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    img = np.zeros((*m.shape, 3), np.uint8)
    img[m] = bgr
    return img


@pytest.mark.parametrize("bgr", [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 255, 255)], ids=str)
def test_a_coloured_jpeg_mask_on_black_is_its_coloured_pixels(tmp_path: Path, bgr: tuple[int, int, int]) -> None:
    """Red (255, 0, 0) on black is grey 76: before, a red JPEG mask read as all background."""
    m = box()
    noisy_jpeg_cv2(tmp_path / "m.jpg", coloured(m, bgr))
    fg, rule = read_mask_image(tmp_path / "m.jpg")
    assert rule == "threshold" and fg.shape == (H, W) and fg.dtype == bool
    assert (fg != m).mean() < 0.02


def test_coloured_png_masks_by_pil_and_opencv(tmp_path: Path) -> None:
    m = box()
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[m] = (255, 0, 0)  # RGB red, as PIL writes it
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "red_pil.png")
    cv2.imwrite(str(tmp_path / "blue_cv2.png"), coloured(m, (255, 0, 0)))  # BGR blue
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[m] = (0, 200, 0, 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "green_rgba.png")
    for name in ("red_pil.png", "blue_cv2.png", "green_rgba.png"):
        fg, rule = read_mask_image(tmp_path / name)
        assert np.array_equal(fg, m) and rule == "threshold", name


def test_the_common_masks_read_as_before(tmp_path: Path) -> None:
    """0/255 grey JPEG with noise (OpenCV and PIL), white-on-black RGB JPEG, 0/1 PNG, palette PNG,
    and an all-black colour JPEG (no athlete)."""
    m = box()
    noisy_jpeg_cv2(tmp_path / "grey.jpg", m.astype(np.uint8) * 255, quality=40)
    Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(tmp_path / "grey_pil.jpg", quality=50)
    Image.fromarray(coloured(m, (255, 255, 255)), mode="RGB").save(tmp_path / "white_rgb.jpg", quality=50)
    for name in ("grey.jpg", "grey_pil.jpg", "white_rgb.jpg"):
        fg, rule = read_mask_image(tmp_path / name)
        assert rule == "threshold" and (fg != m).mean() < 0.02, name
    cv2.imwrite(str(tmp_path / "01.png"), m.astype(np.uint8))
    assert [np.array_equal(x, m) if i == 0 else x for i, x in enumerate(read_mask_image(tmp_path / "01.png"))] == [
        True,
        "nonzero",
    ]
    pal = Image.fromarray(m.astype(np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)
    pal.save(tmp_path / "pal.png")
    fg, rule = read_mask_image(tmp_path / "pal.png")
    assert np.array_equal(fg, m) and rule == "palette"
    noisy_jpeg_cv2(tmp_path / "black.jpg", np.zeros((H, W, 3), np.uint8))
    assert not read_mask_image(tmp_path / "black.jpg")[0].any()


# -- 4. masks named by position whose names partly overlap the frames' -------------------------------


def position_clip(tmp_path: Path, first_frame: int, first_mask: int, n: int = 10) -> tuple[Sample, list[np.ndarray]]:
    """Frames ``v1/3/<first_frame + i>.jpg`` (``(n + 3) x 32``) and masks ``hm/v1/3/<first_mask + i>.png``;
    mask ``i`` (the ``i``-th by name) has a band at row ``i``, so its row tells which mask a frame got."""
    frames = tuple(f"v1/3/{first_frame + i:05d}.jpg" for i in range(n))
    (tmp_path / "root" / "v1" / "3").mkdir(parents=True)
    (tmp_path / "hm" / "v1" / "3").mkdir(parents=True)
    want = []
    for i, key in enumerate(frames):
        cv2.imwrite(str(tmp_path / "root" / key), np.zeros((n + 3, 32, 3), np.uint8))
        m = np.zeros((n + 3, 32), np.uint8)
        m[i : i + 3] = 255
        cv2.imwrite(str(tmp_path / "hm" / "v1" / "3" / f"{first_mask + i:05d}.png"), m)
        want.append(m > 0)
    return Sample("v1/3", "finediving", frames, "train"), want


def first_rows(masks: list[np.ndarray | None]) -> list[int | None]:
    return [None if m is None else int(np.argmax(m.any(axis=1))) for m in masks]


@pytest.mark.parametrize(
    ("first_frame", "first_mask"), [(50, 0), (1, 0), (0, 1), (5, 1)], ids=["50-vs-0", "1-vs-0", "0-vs-1", "5-vs-1"]
)
def test_position_masks_partly_overlapping_frame_names_are_paired_by_position(
    tmp_path: Path, first_frame: int, first_mask: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Frames 00050..00059, masks 00000..00009: before, 00050..00059 took the masks 00050.. of their
    name (the 6th.. mask of the clip: wrong) and the rest had none. Both import and train pair them in order."""
    n = 60 if first_frame == 50 else 10
    s, want = position_clip(tmp_path, first_frame, first_mask, n)
    rows = list(range(n))
    with caplog.at_level(logging.WARNING):
        assert first_rows(FolderMasks(tmp_path / "hm").read(s)) == rows
        with MaskStore(tmp_path / "s.db") as st:
            report = import_masks(st, [s], "fineparser", tmp_path / "hm", root=tmp_path / "root", workers=1)
            assert first_rows([r and r.mask() for r in st.current_masks("v1/3")]) == rows
    assert report.imported == n and report.masks_without_frame.count == 0
    assert "named by position" in caplog.text


def test_shifted_mask_names_are_refused_not_half_paired(tmp_path: Path) -> None:
    """Frames 00050..00059, masks 00045..00054: named by frame of another extraction, or by an offset
    position? Before, 00050..00054 took masks of their name and the rest had none; now one error line."""
    s, _ = position_clip(tmp_path, 50, 45)
    with pytest.raises(DataFormatError, match=r"sample v1/3: 5 of its 10 frames .* numbered from 45"):
        FolderMasks(tmp_path / "hm").read(s)
    with MaskStore(tmp_path / "s.db") as st:
        with pytest.raises(DataFormatError, match="numbered from 45"):
            import_masks(st, [s], "fineparser", tmp_path / "hm", root=tmp_path / "root", workers=1)
        assert st.sample_ids() == []  # the store as before


def test_a_partly_annotated_clip_keeps_its_masks_by_name(tmp_path: Path) -> None:
    """Masks for some frames, named by frame (more or fewer than the frames): no position guess."""
    s, _ = position_clip(tmp_path, 50, 50)
    for i in (0, 1, 7):
        (tmp_path / "hm" / "v1" / "3" / f"{50 + i:05d}.png").unlink()
    assert first_rows(FolderMasks(tmp_path / "hm").read(s)) == [None, None, 2, 3, 4, 5, 6, None, 8, 9]


def test_a_copy_of_the_frames_is_refused_and_coloured_masks_are_not(tmp_path: Path) -> None:
    """Not the same files, but a copy of the frames (a real diving frame from examples/) passed as --masks;
    a red JPEG mask of the same name passes."""
    from uni_fineparser.run import check_masks_are_not_frames

    frame = Path(__file__).resolve().parents[1] / "examples/aqa7_sample/diving-out/001/img_00001.jpg"
    s = Sample("diving/001", "aqa7", ("diving-out/001/img_00001.jpg",), "train")
    (tmp_path / "root" / "diving-out" / "001").mkdir(parents=True)
    shutil.copy(frame, tmp_path / "root" / s.frames[0])
    (tmp_path / "copy" / "diving-out" / "001").mkdir(parents=True)
    shutil.copy(frame, tmp_path / "copy" / s.frames[0])
    with pytest.raises(InputError, match="is a colour picture, not a mask"):
        check_masks_are_not_frames(tmp_path / "copy", tmp_path / "root", tmp_path / "root", [s])
    (tmp_path / "hm" / "diving-out" / "001").mkdir(parents=True)
    noisy_jpeg_cv2(tmp_path / "hm" / s.frames[0], coloured(box(), (0, 0, 255)))
    check_masks_are_not_frames(tmp_path / "hm", tmp_path / "root", tmp_path / "root", [s])
