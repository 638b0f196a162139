"""`train --masks <folder>`: mask files of every kind `hmtools import` reads, read by the same rule.

The files are real PNG/JPEG files written by OpenCV and PIL (0/255 grey, 0/1 grey, palette, RGB,
16-bit), plus the folder layouts users bring: upper-case extensions, masks named by position, missing
masks, two files for one frame, an unreadable file, odd and non-ASCII names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hmtools.errors import DataFormatError
from hmtools.exchange.fineparser import read_mask_image
from hmtools.schema import Sample
from uni_fineparser.mask_source import FolderMasks, open_mask_source

H, W = 24, 32


def athlete(t: int = 0) -> np.ndarray:
    """``(H, W)`` bool: a box that moves with ``t``."""
    m = np.zeros((H, W), bool)
    m[4 + t : 18 + t, 6 + 2 * t : 20 + 2 * t] = True
    return m


def grey_255(path: Path, m: np.ndarray) -> None:
    cv2.imwrite(str(path), m.astype(np.uint8) * 255)


def grey_01(path: Path, m: np.ndarray) -> None:
    cv2.imwrite(str(path), m.astype(np.uint8))


def palette(path: Path, m: np.ndarray) -> None:
    """DAVIS / SAM 2 style: index 1 is dark red (grey 38), index 0 black."""
    img = Image.fromarray(m.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)
    img.save(path)


def rgb_dark_red(path: Path, m: np.ndarray) -> None:
    img = np.zeros((*m.shape, 3), np.uint8)
    img[m] = (0, 0, 128)  # BGR
    cv2.imwrite(str(path), img)


def rgb_white(path: Path, m: np.ndarray) -> None:
    img = np.zeros((*m.shape, 3), np.uint8)
    img[m] = 255
    Image.fromarray(img, mode="RGB").save(path)


def grey_16bit(path: Path, m: np.ndarray) -> None:
    cv2.imwrite(str(path), m.astype(np.uint16) * 65535)


def sample(keys: list[str]) -> Sample:
    return Sample(sample_id="clip/0", dataset="finediving", frames=tuple(keys), split="train")


def write_clip(root: Path, writer: Callable[[Path, np.ndarray], None], ext: str, n: int = 3) -> Sample:
    """``n`` frames ``clip/0/0010t.jpg`` and their masks ``<root>/clip/0/0010t<ext>``."""
    (root / "clip" / "0").mkdir(parents=True, exist_ok=True)
    keys = [f"clip/0/{100 + t:05d}.jpg" for t in range(n)]
    for t, key in enumerate(keys):
        writer(root / Path(key).with_suffix(ext), athlete(t))
    return sample(keys)


@pytest.mark.parametrize(
    "writer", [grey_255, grey_01, palette, rgb_dark_red, rgb_white, grey_16bit], ids=lambda f: f.__name__
)
def test_a_png_folder_reads_as_the_import_reads_it(tmp_path: Path, writer: Callable[[Path, np.ndarray], None]) -> None:
    s = write_clip(tmp_path / "masks", writer, ".png")
    src = open_mask_source(tmp_path / "masks")
    assert isinstance(src, FolderMasks)
    assert src.available(s) == [True, True, True]
    got = src.read(s)
    for t, (key, mask) in enumerate(zip(s.frames, got, strict=True)):
        imported, _ = read_mask_image(tmp_path / "masks" / Path(key).with_suffix(".png"))
        assert mask is not None and mask.dtype == bool and mask.shape == (H, W)
        assert np.array_equal(mask, athlete(t)) and np.array_equal(mask, imported)


def test_a_0_255_jpeg_folder_is_thresholded_at_128(tmp_path: Path) -> None:
    s = write_clip(tmp_path / "masks", grey_255, ".jpg")
    got = open_mask_source(tmp_path / "masks").read(s)
    for t, mask in enumerate(got):
        assert mask is not None and (mask != athlete(t)).mean() < 0.02


def test_a_0_1_or_palette_folder_says_once_how_it_was_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = write_clip(tmp_path / "masks", grey_01, ".png")
    src = open_mask_source(tmp_path / "masks")
    with caplog.at_level(logging.WARNING, logger="uni_fineparser.mask_source"):
        src.read(s)
        src.read(s)
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1 and "foreground = nonzero pixels" in told[0]


def test_upper_case_extensions_are_found(tmp_path: Path) -> None:
    s = write_clip(tmp_path / "masks", grey_255, ".PNG")
    src = open_mask_source(tmp_path / "masks")
    assert src.available(s) == [True, True, True]
    assert all(np.array_equal(m, athlete(t)) for t, m in enumerate(src.read(s)))


def test_two_files_for_one_frame_are_refused(tmp_path: Path) -> None:
    """A png export into a folder that still holds an earlier jpg export: which one is the mask?"""
    s = write_clip(tmp_path / "masks", grey_255, ".jpg")
    grey_255(tmp_path / "masks" / "clip" / "0" / "00101.png", np.zeros((H, W), bool))
    src = open_mask_source(tmp_path / "masks")
    with pytest.raises(DataFormatError, match=r"clip/0/00101\.jpg and clip/0/00101\.png are both masks of one frame"):
        src.available(s)
    with pytest.raises(DataFormatError, match="both masks of one frame"):
        src.read(s)


def test_an_unreadable_mask_file_is_an_error_not_a_silently_missing_mask(tmp_path: Path) -> None:
    s = write_clip(tmp_path / "masks", grey_255, ".png")
    bad = tmp_path / "masks" / "clip" / "0" / "00101.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated copy
    src = open_mask_source(tmp_path / "masks")
    assert src.available(s) == [True, True, True]
    with pytest.raises(DataFormatError, match=r"00101\.png is not a readable image"):
        src.read(s)


def test_masks_named_by_position_are_paired_in_frame_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A FineDiving-HM copy naming masks 00000.jpg.. by position, frames 00100.jpg..: as the import pairs them."""
    folder = tmp_path / "masks" / "clip" / "0"
    folder.mkdir(parents=True)
    for t in range(3):
        grey_255(folder / f"{t:05d}.png", athlete(t))
    s = sample([f"clip/0/{100 + t:05d}.jpg" for t in range(3)])
    src = open_mask_source(tmp_path / "masks")
    with caplog.at_level(logging.WARNING, logger="uni_fineparser.mask_source"):
        assert src.available(s) == [True, True, True]
        assert all(np.array_equal(m, athlete(t)) for t, m in enumerate(src.read(s)))
    assert [r.getMessage().count("named by position") for r in caplog.records] == [1]  # said once
    # one mask fewer than frames: no pairing by position (nothing to guess), every frame has none
    (folder / "00002.png").unlink()
    assert src.available(s) == [False, False, False]


def test_a_folder_missing_some_masks_gives_none_for_those_frames_only(tmp_path: Path) -> None:
    s = write_clip(tmp_path / "masks", grey_255, ".png", n=4)
    (tmp_path / "masks" / "clip" / "0" / "00101.png").unlink()
    (tmp_path / "masks" / "clip" / "0" / "00103.png").unlink()
    src = open_mask_source(tmp_path / "masks")
    assert src.available(s) == [True, False, True, False]
    got = src.read(s)
    assert [m is None for m in got] == [False, True, False, True]
    assert np.array_equal(got[2], athlete(2))
    assert open_mask_source(tmp_path / "masks").available(sample(["other/0/00001.jpg"])) == [False]


def test_masks_of_another_size_than_the_frames_come_at_their_own_size(tmp_path: Path) -> None:
    """The cache resizes them (nearest) to the training size; the source does not guess a frame size."""
    folder = tmp_path / "masks" / "clip" / "0"
    folder.mkdir(parents=True)
    big = cv2.resize(athlete(0).astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST).astype(bool)
    grey_255(folder / "00100.png", big)
    got = open_mask_source(tmp_path / "masks").read(sample(["clip/0/00100.jpg"]))
    assert got[0] is not None and got[0].shape == (2 * H, 2 * W) and np.array_equal(got[0], big)


@pytest.mark.parametrize(
    "key",
    ["Düsseldorf 2021 – Herren/0/00007.jpg", "clip.v2/0/img.00007.jpg", "top_level_00007.jpg", "clip/0/frame_7"],
)
def test_odd_and_non_ascii_frame_keys(tmp_path: Path, key: str) -> None:
    path = tmp_path / "masks" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    grey_01(path.parent / f"{stem}.png", athlete(0))
    src = open_mask_source(tmp_path / "masks")
    assert src.available(sample([key])) == [True]
    got = src.read(sample([key]))[0]
    assert got is not None and np.array_equal(got, athlete(0))


def write_hdf5(path: Path, s: Sample, present_len: int | None = None) -> None:
    """A minimal ``hmtools-masks`` v1 export of ``s`` (docs/formats.md), optionally with a damaged ``present``."""
    import h5py

    masks = np.stack([athlete(t) for t in range(len(s.frames))])
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "hmtools-masks", 1
        g = f.create_group("samples").create_group(s.sample_id.replace("/", "%2F"))
        g.create_dataset("masks", data=np.packbits(masks, axis=1)).attrs["height"] = H
        g.create_dataset("present", data=np.ones(present_len or len(s.frames), np.uint8))
        g.create_dataset("frame_keys", data=list(s.frames), dtype=h5py.string_dtype("utf-8"))


def test_a_truncated_or_damaged_hdf5_export_is_one_error_line(tmp_path: Path) -> None:
    s = sample([f"clip/0/{100 + t:05d}.jpg" for t in range(3)])
    write_hdf5(tmp_path / "m.h5", s)
    got = open_mask_source(tmp_path / "m.h5").read(s)
    assert all(np.array_equal(m, athlete(t)) for t, m in enumerate(got))
    data = (tmp_path / "m.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(DataFormatError, match=r"cut\.h5 is not a readable HDF5 file .*copy it again"):
        open_mask_source(tmp_path / "cut.h5")
    write_hdf5(tmp_path / "bad.h5", s, present_len=2)
    src = open_mask_source(tmp_path / "bad.h5")
    for read in (src.available, src.read):
        with pytest.raises(DataFormatError, match=r"sample clip/0 has masks \(3, 3, 32\), present \(2,\)"):
            read(s)


def test_train_packs_a_0_1_png_folder_as_the_athlete_not_as_background(tmp_path: Path) -> None:
    """Through the training cache (what `hmtools train --masks <folder>` builds): before, every 0/1 mask
    packed as all background and the mask-attention loss learnt 'nobody is there'."""
    from _ufp_fixtures import make_dataset

    from uni_fineparser.cache import build_cache

    samples, masks = make_dataset(tmp_path / "root", n_train=1, n_test=0, n_frames=3)
    s = samples[0]
    for key, m in zip(s.frames, masks[s.sample_id], strict=True):
        path = (tmp_path / "masks" / key).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        grey_01(path, m)
    h, w = masks[s.sample_id].shape[1:]
    cache = build_cache(samples, tmp_path / "root", open_mask_source(tmp_path / "masks"), tmp_path / "cache", (h, w))
    _, got, valid = cache.get(s.sample_id, np.arange(3))
    assert valid.all() and np.array_equal(got, masks[s.sample_id])
    bad = (tmp_path / "masks" / s.frames[1]).with_suffix(".png")
    bad.write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="is not a readable image"):  # before: valid False, silently
        build_cache(samples, tmp_path / "root", open_mask_source(tmp_path / "masks"), tmp_path / "cache", (h, w))
