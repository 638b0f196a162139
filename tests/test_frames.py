"""hmtools.frames: numeric listing, reading, header sizes and resumable extraction (real OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from _datasets_fixtures import make_aqa7, rewrite_avi, run_cli, write_frames, write_video

from hmtools.datasets import load_dataset
from hmtools.errors import DataFormatError, InputError
from hmtools.frames import (
    extract_dataset_frames,
    extract_video_frames,
    frame_size,
    list_frame_files,
    read_frame,
)


def test_list_frame_files_sorts_numerically(tmp_path: Path) -> None:
    names = ["99998.jpg", "100001.jpg", "99999.jpg", "100000.jpg"]
    write_frames(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub.jpg").mkdir()  # a folder with an image suffix is not a frame
    assert list_frame_files(tmp_path) == ["99998.jpg", "99999.jpg", "100000.jpg", "100001.jpg"]
    write_frames(tmp_path / "b", ["img_00010.jpg", "img_00002.jpg", "img_00001.jpg"])
    assert list_frame_files(tmp_path / "b") == ["img_00001.jpg", "img_00002.jpg", "img_00010.jpg"]
    with pytest.raises(InputError, match="does not exist"):
        list_frame_files(tmp_path / "nope")


def test_hidden_files_are_not_frames(tmp_path: Path) -> None:
    """Frames copied from a Mac to exFAT/SMB get an AppleDouble ``._img_00001.jpg`` beside each: they were
    listed as frames (each number twice, every second frame undecodable and flagged)."""
    write_frames(tmp_path, ["img_00001.jpg", "img_00002.jpg"])
    (tmp_path / "._img_00001.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".DS_Store.png").write_bytes(b"x")
    assert list_frame_files(tmp_path) == ["img_00001.jpg", "img_00002.jpg"]
    make_aqa7(tmp_path / "aqa7", extracted={"diving/001": 3})
    (tmp_path / "aqa7" / "diving-out" / "001" / "._img_00002.jpg").write_bytes(b"\x00\x05\x16\x07")
    idx = load_dataset("aqa7", tmp_path / "aqa7")
    assert next(s for s in idx.samples if s.sample_id == "diving/001").frames == tuple(
        f"diving-out/001/img_{i:05d}.jpg" for i in (1, 2, 3)
    )
    assert not [p for p in idx.problems if p.sample_id == "diving/001" and p.kind != "frame_count_mismatch"]


def test_read_frame_rgb_and_errors(tmp_path: Path) -> None:
    bgr = np.zeros((6, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "a.png"), bgr)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((6, 8), 77, np.uint8))
    rgb = read_frame(tmp_path, "a.png")
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 200).all() and (rgb[..., 0] == 0).all()
    assert read_frame(tmp_path, "g.png").shape == (6, 8, 3)
    assert frame_size(tmp_path, "a.png") == (6, 8)
    (tmp_path / "bad.jpg").write_bytes(b"")
    with pytest.raises(DataFormatError, match="cannot decode"):
        read_frame(tmp_path, "bad.jpg")
    with pytest.raises(DataFormatError, match="does not exist"):
        read_frame(tmp_path, "missing.jpg")
    with pytest.raises(DataFormatError, match="header"):
        frame_size(tmp_path, "bad.jpg")


def test_truncated_jpeg_is_refused_and_odd_colour_models_are_read(tmp_path: Path) -> None:
    """A JPEG cut short (an interrupted copy or extraction) was decoded by ``cv2.imread`` with its
    missing part grey and no error: build-masks segmented half a frame and stored it unflagged.
    Grayscale, CMYK, RGBA and 16-bit frames must still read as ``(H, W, 3)`` uint8 RGB."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (48, 64, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    assert read_frame(tmp_path, "full.jpg").shape == (48, 64, 3)
    for name, cut in (("half.jpg", len(data) // 2), ("no_eoi.jpg", len(data) - 2)):
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(DataFormatError, match="truncated"):
            read_frame(tmp_path, name)
    Image.fromarray(pixels).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:-20])
    with pytest.raises(DataFormatError, match="cannot decode"):
        read_frame(tmp_path, "cut.png")
    Image.fromarray(pixels).convert("L").save(tmp_path / "grey.jpg")
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(pixels).convert("RGBA").save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "deep.png"), pixels[..., ::-1].astype(np.uint16) * 257)
    for name in ("grey.jpg", "cmyk.jpg", "rgba.png", "deep.png"):
        img = read_frame(tmp_path, name)
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8, name
    assert np.abs(read_frame(tmp_path, "cmyk.jpg").astype(int) - pixels).mean() < 20  # colours, not inverted
    assert np.array_equal(read_frame(tmp_path, "deep.png"), pixels)
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(DataFormatError, match="dir.jpg"):
        read_frame(tmp_path, "dir.jpg")


def test_a_corrupt_header_declaring_a_huge_image_is_a_decode_error(tmp_path: Path) -> None:
    """OpenCV raises ``cv2.error`` (not ``None``) for a header over its pixel limit: from a decoding thread
    of build-masks that ended the whole run with a traceback instead of flagging the frame."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "img_00001.png").write_bytes(png)
    with pytest.raises(DataFormatError, match="cannot decode frame .*img_00001.png"):
        read_frame(tmp_path, "img_00001.png")


def test_exif_rotated_frame_reads_as_stored_everywhere(tmp_path: Path) -> None:
    """A JPEG tagged "rotate 90" is read as stored by every reader, so its mask, its recorded size and
    the annotator's view agree (OpenCV would otherwise turn it to W x H)."""
    from PIL import Image

    from annotator_app.frames import FrameSource
    from hmtools.schema import Sample
    from uni_fineparser.cache import _read_sample

    pixels = np.zeros((40, 64, 3), np.uint8)
    pixels[:10, :, 0] = 255  # a red band along the top of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (tmp_path / "v").mkdir()
    Image.fromarray(pixels).save(tmp_path / "v" / "00001.jpg", quality=95, exif=exif)
    img = read_frame(tmp_path, "v/00001.jpg")
    assert img.shape == (40, 64, 3) and frame_size(tmp_path, "v/00001.jpg") == (40, 64)
    assert img[:10, :, 0].mean() > 200 and img[20:, :, 0].mean() < 50
    assert FrameSource(tmp_path).load("v/00001.jpg").shape == (40, 64, 3)

    class NoMasks:
        def read(self, sample):
            return [None] * len(sample.frames)

    sample = Sample(sample_id="v", dataset="aqa7", frames=("v/00001.jpg",), split="train", video="v")
    clip = _read_sample(sample, tmp_path, NoMasks(), (40, 64))[0][0]  # the trainer's cache
    assert clip[:10, :, 0].mean() > 200 and clip[20:, :, 0].mean() < 50


def test_extract_video_frames_naming_resume_and_atomicity(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    write_video(video, 5)
    out = tmp_path / "frames" / "001"
    assert extract_video_frames(video, out, pattern="img_%05d.jpg", start=1, progress=False) == 5
    assert list_frame_files(out) == [f"img_{i:05d}.jpg" for i in range(1, 6)]
    levels = [int(read_frame(out, f"img_{i:05d}.jpg").mean()) for i in range(1, 6)]
    assert levels == pytest.approx([0, 20, 40, 60, 80], abs=4)  # frame order kept
    assert extract_video_frames(video, out, pattern="img_%05d.jpg", start=1, progress=False) == 0  # done
    # a stale .partial folder from an interrupted run is discarded and redone
    out2 = tmp_path / "frames" / "002"
    write_frames(tmp_path / "frames" / "002.partial", ["00000.jpg", "junk.jpg"])
    assert extract_video_frames(video, out2, progress=False) == 5
    assert list_frame_files(out2)[0] == "00001.jpg" and not (tmp_path / "frames" / "002.partial").exists()
    # an undecodable video leaves nothing behind
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(DataFormatError):
        extract_video_frames(bad, tmp_path / "frames" / "003", progress=False)
    assert not (tmp_path / "frames" / "003").exists() and not (tmp_path / "frames" / "003.partial").exists()
    with pytest.raises(InputError, match="integer field"):
        extract_video_frames(video, tmp_path / "x", pattern="frame.jpg")


def test_extract_dataset_frames_aqa7_then_inspect(tmp_path: Path) -> None:
    make_aqa7(tmp_path, videos={"diving/001": 4, "gym_vault/002": 3})
    assert extract_dataset_frames("aqa7", tmp_path, progress=False) == 7
    assert list_frame_files(tmp_path / "diving-out" / "001") == [f"img_{i:05d}.jpg" for i in range(1, 5)]
    assert extract_dataset_frames("aqa7", tmp_path, progress=False) == 0  # resumable: all done
    idx = load_dataset("aqa7", tmp_path)
    d1 = next(s for s in idx.samples if s.sample_id == "diving/001")
    assert d1.video is None and d1.frames[-1] == "diving-out/001/img_00004.jpg"
    assert not any(p.kind == "frames_not_extracted" for p in idx.problems)
    with pytest.raises(InputError, match="trimmed frame folders"):
        extract_dataset_frames("finediving", tmp_path)
    zipped = tmp_path / "download"  # the zip unpacks to AQA-7/AQA-7/: its outer folder works too, as for inspect
    make_aqa7(zipped / "AQA-7", videos={"diving/001": 2})
    assert extract_dataset_frames("aqa7", zipped, progress=False) == 2
    assert list_frame_files(zipped / "AQA-7" / "diving-out" / "001") == ["img_00001.jpg", "img_00002.jpg"]
    with pytest.raises(InputError, match="valid names"):
        extract_dataset_frames("ucf101", tmp_path)


def test_extract_frames_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_video(tmp_path / "v.mp4", 3)
    code, out, _ = run_cli(["extract-frames", "--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and "3 frames written" in out
    # numbered from 1 like ffmpeg (every dataset's extraction): FineDiving's 00489.jpg is the video's 489th frame
    assert list_frame_files(tmp_path / "o") == ["00001.jpg", "00002.jpg", "00003.jpg"]
    run_cli(
        ["extract-frames", "--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "z"), "--start", "0"], capsys
    )
    assert list_frame_files(tmp_path / "z")[0] == "00000.jpg"
    args = ["extract-frames", "--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "neg"), "--start", "-1"]
    code, _, err = run_cli(args, capsys)  # wrote -0001.jpg, -0000.jpg, 00001.jpg: numbers 1, 0, 1
    assert code == 2 and "--start must be >= 0" in err and not (tmp_path / "neg").exists()
    code, _, err = run_cli(["extract-frames", "--dataset", "aqa7", "--root", str(tmp_path)], capsys)
    assert code == 2 and "Actions" in err
    code, _, err = run_cli(["extract-frames", "--root", str(tmp_path)], capsys)
    assert code == 2 and "--video" in err


def test_extract_dataset_frames_mtl_aqa_whole_videos(tmp_path: Path) -> None:
    write_video(tmp_path / "whole_videos" / "01.mp4", 4)
    assert extract_dataset_frames("mtl_aqa", tmp_path, progress=False) == 4
    assert list_frame_files(tmp_path / "whole_videos_frames" / "01") == [f"{i:06d}.jpg" for i in range(1, 5)]
    with pytest.raises(InputError, match="whole_videos"):
        extract_dataset_frames("mtl-aqa", tmp_path / "whole_videos")


def test_extract_refuses_a_video_that_decodes_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated .avi (a cut-off download) decodes to fewer frames than its header declares: OpenCV just
    stops. Renaming that into a "done" folder would skip it on every rerun and shift nothing back."""
    full = tmp_path / "full.avi"
    write_video(full, 10)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.9)])  # the header still says 10 frames
    out = tmp_path / "frames" / "001"
    with pytest.raises(DataFormatError, match=r"decoded \d of the 10 frames"):
        extract_video_frames(cut, out, progress=False)
    assert not out.exists() and not (tmp_path / "frames" / "001.partial").exists()
    code, _, err = run_cli(["extract-frames", "--video", str(cut), "--out", str(out)], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "truncated" in err and "Traceback" not in err
    assert not out.exists()  # so a rerun tries again instead of skipping a short folder


def _empty_avi_chunks(src: Path, dst: Path, drop: set[int]) -> None:
    """Copy an OpenCV MJPG .avi with the frames in ``drop`` stored as zero-size chunks: an AVI "drop frame",
    the way AVI marks variable frame timing (ffmpeg's default constant-rate output repeats a frame there)."""
    rewrite_avi(src, dst, lambda i, data: b"" if i in drop else data)


def test_drop_frames_are_repeated_as_ffmpeg_does_so_numbers_match(tmp_path: Path) -> None:
    """OpenCV returns only the 9 real frames of a 10-frame AVI with one drop frame; ffmpeg (a constant frame
    rate for image sequences) repeats the frame before the gap, so every later file keeps its number."""
    write_video(tmp_path / "v.avi", 10)
    _empty_avi_chunks(tmp_path / "v.avi", tmp_path / "copy.avi", set())
    assert extract_video_frames(tmp_path / "copy.avi", tmp_path / "ok", progress=False) == 10  # rewrite is sound
    _empty_avi_chunks(tmp_path / "v.avi", tmp_path / "vfr.avi", {3})
    assert extract_video_frames(tmp_path / "vfr.avi", tmp_path / "o", progress=False) == 10
    files = sorted((tmp_path / "o").iterdir())
    assert [f.name for f in files] == [f"{i:05d}.jpg" for i in range(1, 11)]
    assert files[3].read_bytes() == files[2].read_bytes()  # the drop frame repeats its predecessor
    for i in (4, 9):  # later frames are the video's own, at their own numbers
        assert np.array_equal(cv2.imread(str(files[i])), cv2.imread(str(tmp_path / "ok" / files[i].name)))


def test_a_second_extraction_into_the_same_folder_waits_instead_of_deleting_the_first_ones_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs on one frame folder: the second used to delete the first's ``.partial`` and write its own,
    and the first then renamed the mixed, incomplete folder into place as if done."""
    import threading

    from hmtools import frames as frames_mod

    video, out = tmp_path / "v.avi", tmp_path / "frames" / "001"
    write_video(video, 6)
    real_write, second, results = frames_mod._write_frame, [], {}

    def write_and_start_another_run(target: Path, encoded: bytes) -> None:
        real_write(target, encoded)
        if not second:  # after the first run's first frame, a second run on the same folder
            second.append(threading.Thread(target=lambda: results.update(b=extract_video_frames(video, out))))
            second[0].start()
            second[0].join(timeout=1.0)  # it must wait for the first run (before the fix it ran to the end)

    monkeypatch.setattr(frames_mod, "_write_frame", write_and_start_another_run)
    results["a"] = extract_video_frames(video, out, progress=False)
    second[0].join()
    assert (results["a"], results["b"]) == (6, 0)
    assert list_frame_files(out) == [f"{i:05d}.jpg" for i in range(1, 7)]
