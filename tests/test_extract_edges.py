"""``extract-frames`` on awkward videos and folders: real small .avi/.mp4 files made with OpenCV, cut, rewritten
or hand-built (odd sizes, grey frames, wrong frame counts), interrupted, concurrent and failing runs."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _datasets_fixtures import make_aqa7, rewrite_avi, run_cli, write_video

from hmtools import frames as frames_mod
from hmtools.errors import DataFormatError, HMToolsError, InputError
from hmtools.frames import extract_dataset_frames, extract_video_frames, list_frame_files, read_frame

REPO = Path(__file__).resolve().parents[1]


def _set_avi_size(out: bytearray, w: int, h: int) -> None:
    o = out.find(b"avih") + 8
    out[o + 32 : o + 40] = struct.pack("<II", w, h)
    o = out.find(b"strf") + 8
    out[o + 4 : o + 12] = struct.pack("<ii", w, h)


def _set_avi_count(out: bytearray, n: int) -> None:
    o = out.find(b"avih") + 8
    out[o + 16 : o + 20] = struct.pack("<I", n)  # dwTotalFrames
    o = out.find(b"strh") + 8
    out[o + 32 : o + 36] = struct.pack("<I", n)  # the stream's dwLength


def _nothing_left(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_pattern_suffix_picks_the_file_format(tmp_path: Path) -> None:
    """``--pattern %05d.png`` wrote JPEG bytes into .png files: lossy frames under a lossless name, which
    loaders that trust the suffix (and anyone expecting PNG) misread."""
    write_video(tmp_path / "v.avi", 3)
    assert extract_video_frames(tmp_path / "v.avi", tmp_path / "png", pattern="%05d.png", progress=False) == 3
    assert extract_video_frames(tmp_path / "v.avi", tmp_path / "bmp", pattern="f%03d.BMP", progress=False) == 3
    assert extract_video_frames(tmp_path / "v.avi", tmp_path / "jpg", pattern="%05d.jpeg", progress=False) == 3
    assert (tmp_path / "png" / "00001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "bmp" / "f001.BMP").read_bytes()[:2] == b"BM"
    assert (tmp_path / "jpg" / "00001.jpeg").read_bytes()[:3] == b"\xff\xd8\xff"
    png, jpg = read_frame(tmp_path / "png", "00003.png"), read_frame(tmp_path / "jpg", "00003.jpeg")
    assert png.shape == jpg.shape == (24, 32, 3) and abs(int(png.mean()) - 40) <= 4


def test_an_out_symlinked_to_an_empty_folder_gets_the_frames(tmp_path: Path) -> None:
    """``--out`` a symlink to an empty folder (frames kept on another disk): the frames go where it points.
    It failed with NotADirectoryError from rmdir on the link."""
    write_video(tmp_path / "v.avi", 3)
    (tmp_path / "disk2").mkdir()
    (tmp_path / "lk").symlink_to(tmp_path / "disk2", target_is_directory=True)
    assert extract_video_frames(tmp_path / "v.avi", tmp_path / "lk", progress=False) == 3
    assert (tmp_path / "lk").is_symlink() and list_frame_files(tmp_path / "disk2") == [
        "00001.jpg",
        "00002.jpg",
        "00003.jpg",
    ]


def test_a_folder_with_other_files_but_no_frames_is_not_taken_for_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` holding only a ``.DS_Store`` (a folder opened in Finder) or a notes file counted as
    "already extracted": "0 frames written", exit 0, and no frame ever written."""
    write_video(tmp_path / "v.avi", 4)
    out = tmp_path / "frames" / "001"
    out.mkdir(parents=True)
    (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with pytest.raises(DataFormatError, match=r"holds no frames but other files \(\.DS_Store\)"):
        extract_video_frames(tmp_path / "v.avi", out, progress=False)
    code, stdout, err = run_cli(["extract-frames", "--video", str(tmp_path / "v.avi"), "--out", str(out)], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "Traceback" not in err and "frames written" not in stdout
    assert sorted(p.name for p in out.iterdir()) == [".DS_Store"]  # the user's file is left alone
    (out / ".DS_Store").unlink()  # an empty folder is replaced by the extracted one
    assert extract_video_frames(tmp_path / "v.avi", out, progress=False) == 4
    assert list_frame_files(out) == [f"{i:05d}.jpg" for i in range(1, 5)]


def test_a_folder_partly_extracted_by_another_tool_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ffmpeg killed half-way writes straight into the folder: 3 of 10 frames and a zero-byte one. hmtools
    does not delete someone else's files, but it no longer skips them in silence."""
    write_video(tmp_path / "v.avi", 10)
    out = tmp_path / "frames"
    assert extract_video_frames(tmp_path / "v.avi", out, progress=False) == 10
    for f in list_frame_files(out)[3:]:
        (out / f).unlink()
    (out / "00004.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="hmtools.frames"):
        assert extract_video_frames(tmp_path / "v.avi", out, progress=False) == 0
    assert "holds 4 frames (1 empty files) of the 10" in caplog.text and "delete it and rerun" in caplog.text
    caplog.clear()
    complete = tmp_path / "complete"
    extract_video_frames(tmp_path / "v.avi", complete, progress=False)
    with caplog.at_level(logging.WARNING, logger="hmtools.frames"):
        assert extract_video_frames(tmp_path / "v.avi", complete, progress=False) == 0
    assert caplog.text == ""  # a complete folder is skipped quietly


def test_a_dataset_run_goes_on_past_a_bad_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One truncated .avi among AQA-7's 1,189 stopped the whole run, and every rerun stopped there again:
    the videos after it were never extracted."""
    make_aqa7(tmp_path, videos={"diving/001": 4, "diving/002": 10, "gym_vault/001": 3})
    bad = tmp_path / "Actions" / "diving" / "002.avi"
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(DataFormatError, match=r"1 of 3 videos not extracted .*7 frames written.*002\.avi"):
        extract_dataset_frames("aqa7", tmp_path, progress=False)
    assert len(list_frame_files(tmp_path / "diving-out" / "001")) == 4
    assert len(list_frame_files(tmp_path / "gym_vault-out" / "001")) == 3  # after the bad one
    assert _nothing_left(tmp_path / "diving-out" / "002")
    code, stdout, err = run_cli(["extract-frames", "--dataset", "aqa7", "--root", str(tmp_path)], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "0 frames written for the others" in err
    assert "Traceback" not in err
    bad.write_bytes(data)  # re-downloaded
    code, stdout, _ = run_cli(["extract-frames", "--dataset", "aqa7", "--root", str(tmp_path)], capsys)
    assert code == 0 and "10 frames written" in stdout


def test_dataset_and_video_options_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--dataset aqa7 --root R`` silently ignored ``--video``/``--out`` and ``--pattern``/``--start`` (the
    frames came out as ``img_%05d.jpg`` from 1 whatever was asked)."""
    make_aqa7(tmp_path, videos={"diving/001": 2})
    base = ["extract-frames", "--dataset", "aqa7", "--root", str(tmp_path)]
    code, _, err = run_cli([*base, "--video", "x.avi", "--out", "o"], capsys)
    assert code == 2 and "not both" in err and not (tmp_path / "diving-out").exists()
    for extra in (["--pattern", "%06d.png"], ["--start", "0"]):
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2 and "apply to --video only" in err and not (tmp_path / "diving-out").exists()


def test_odd_sized_and_grey_videos_keep_their_frames(tmp_path: Path) -> None:
    """Frames of 33x27 (odd, as AQA-7's 455-wide frames) and grey JPEG frames: the size is kept, grey comes
    out as 3-channel RGB."""
    write_video(tmp_path / "v.avi", 5, (26, 32))
    odd = tmp_path / "odd.avi"

    def odd_frame(i: int, _: bytes) -> bytes:
        return cv2.imencode(".jpg", np.full((27, 33, 3), i * 40, np.uint8))[1].tobytes()

    rewrite_avi(tmp_path / "v.avi", odd, odd_frame, lambda out: _set_avi_size(out, 33, 27))
    assert extract_video_frames(odd, tmp_path / "o", progress=False) == 5
    assert [read_frame(tmp_path / "o", f).shape for f in list_frame_files(tmp_path / "o")] == [(27, 33, 3)] * 5
    grey = tmp_path / "grey.avi"
    rewrite_avi(
        tmp_path / "v.avi", grey, lambda i, _: cv2.imencode(".jpg", np.full((26, 32), 30 * i, np.uint8))[1].tobytes()
    )
    assert extract_video_frames(grey, tmp_path / "g", progress=False) == 5
    img = read_frame(tmp_path / "g", "00005.jpg")
    assert img.shape == (26, 32, 3) and abs(int(img.mean()) - 120) <= 4
    writer = cv2.VideoWriter(str(tmp_path / "grey.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (32, 24), False)
    for i in range(4):
        writer.write(np.full((24, 32), 50 * i, np.uint8))
    writer.release()
    assert extract_video_frames(tmp_path / "grey.mp4", tmp_path / "gm", progress=False) == 4
    assert read_frame(tmp_path / "gm", "00004.jpg").shape == (24, 32, 3)


def test_a_header_frame_count_that_disagrees_with_the_stream(tmp_path: Path) -> None:
    """A header declaring more frames than the file holds is refused (a cut file looks the same); one
    declaring fewer gets every decodable frame."""
    write_video(tmp_path / "v.avi", 10)
    rewrite_avi(tmp_path / "v.avi", tmp_path / "more.avi", lambda i, d: d, lambda out: _set_avi_count(out, 25))
    rewrite_avi(tmp_path / "v.avi", tmp_path / "less.avi", lambda i, d: d, lambda out: _set_avi_count(out, 5))
    with pytest.raises(DataFormatError, match="decoded 10 of the 25 frames"):
        extract_video_frames(tmp_path / "more.avi", tmp_path / "m", progress=False)
    assert _nothing_left(tmp_path / "m")
    assert extract_video_frames(tmp_path / "less.avi", tmp_path / "l", progress=False) == 10


@pytest.mark.parametrize("kind", ["no frames .avi", "no frames .mp4", "text .mp4", "empty .avi", "cut .mp4"])
def test_zero_frame_non_video_and_cut_files_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    video = tmp_path / f"v{kind[-4:]}"
    if kind.startswith("no frames"):
        write_video(video, 0)
    elif kind.startswith("text"):
        video.write_text("<html>404 Not Found</html>")
    elif kind.startswith("empty"):
        video.write_bytes(b"")
    else:
        write_video(video, 12)
        video.write_bytes(video.read_bytes()[: video.stat().st_size * 7 // 10])  # the moov atom is at the end
    out = tmp_path / "frames" / "001"
    with pytest.raises(DataFormatError):
        extract_video_frames(video, out, progress=False)
    assert _nothing_left(out)
    code, _, err = run_cli(["extract-frames", "--video", str(video), "--out", str(out)], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "Traceback" not in err and _nothing_left(out)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, k: int) -> list[Path]:
    """Make the ``k``-th frame write leave half a file, then raise KeyboardInterrupt (Ctrl-C); returns the
    list of writes attempted (watched until the end of the test)."""
    real_write, calls = frames_mod._write_frame, []

    def write(target: Path, encoded: bytes) -> None:
        calls.append(target)
        if len(calls) == k:
            target.write_bytes(encoded[: len(encoded) // 2])
            raise KeyboardInterrupt
        real_write(target, encoded)

    monkeypatch.setattr(frames_mod, "_write_frame", write)
    return calls


@pytest.mark.parametrize("drop", [None, 3])
def test_an_interrupted_run_resumes_where_it_stopped_without_a_half_written_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: int | None
) -> None:
    """Ctrl-C in hour two of a three-hour MTL-AQA broadcast video (290,000 frames) deleted ``.partial``: the
    rerun started again from frame 1. Now the rerun only decodes the frames already written and writes the
    rest, rewriting the last one (it may be cut short). With ``drop``, that frame is an AVI drop frame, the
    repeat of the frame before it, which the rerun did not encode."""
    write_video(tmp_path / "src.avi", 8)
    video = tmp_path / "v.avi"
    rewrite_avi(tmp_path / "src.avi", video, lambda i, d: b"" if i == drop else d)
    assert extract_video_frames(video, tmp_path / "reference", progress=False) == 8
    out = tmp_path / "frames" / "001"
    _interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        extract_video_frames(video, out, progress=False)
    partial = out.with_name("001.partial")
    assert not out.exists() and len(list_frame_files(partial)) == 4  # the 4th is half a JPEG
    calls = _interrupt_at(monkeypatch, 0)
    assert extract_video_frames(video, out, progress=False) == 8
    assert [c.name for c in calls] == [f"{i:05d}.jpg" for i in range(4, 9)]  # from the last one kept on
    assert not partial.exists() and sorted(p.name for p in out.iterdir()) == [f"{i:05d}.jpg" for i in range(1, 9)]
    for name in list_frame_files(out):  # byte for byte the frames of an uninterrupted run
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name


def test_a_partial_folder_of_another_extraction_is_discarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the same video file (path, size, mtime), pattern and start resume; a re-downloaded video, another
    ``--pattern`` or ``--start``, or a folder from an older run with no stamp starts again."""
    write_video(tmp_path / "v.avi", 6)
    out = tmp_path / "frames" / "001"
    partial = out.with_name("001.partial")
    for change in ("video", "start", "no stamp"):
        _interrupt_at(monkeypatch, 4)
        with pytest.raises(KeyboardInterrupt):
            extract_video_frames(tmp_path / "v.avi", out, progress=False)
        start = 1
        if change == "video":
            st = (tmp_path / "v.avi").stat()
            os.utime(tmp_path / "v.avi", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        elif change == "start":
            start = 0
        else:
            (partial / frames_mod._STAMP).unlink()
        calls = _interrupt_at(monkeypatch, 0)
        assert extract_video_frames(tmp_path / "v.avi", out, start=start, progress=False) == 6
        assert len(calls) == 6 and not partial.exists(), change
        assert list_frame_files(out)[0] == f"{start:05d}.jpg" and len(list_frame_files(out)) == 6
        shutil.rmtree(out)


def test_a_full_disk_is_one_error_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_video(tmp_path / "v.avi", 6)
    out = tmp_path / "frames" / "001"
    real, written = Path.write_bytes, []

    def fill_up(self: Path, data: bytes) -> int:
        if self.suffix == ".jpg" and len(written) >= 2:
            real(self, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(self)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fill_up)
    with pytest.raises(HMToolsError, match="No space left on device: disk full"):
        extract_video_frames(tmp_path / "v.avi", out, progress=False)
    assert _nothing_left(out)
    code, _, err = run_cli(["extract-frames", "--video", str(tmp_path / "v.avi"), "--out", str(out)], capsys)
    assert code == 1 and err.count("hmtools: error:") == 1 and "Traceback" not in err and _nothing_left(out)


def test_a_read_only_output_folder_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Simulated (the tests may run as root, whom chmod does not stop): the frame folder's parent refuses
    writes. A stale ``.partial`` there could not be removed either, which was an OS traceback."""
    write_video(tmp_path / "v.avi", 3)
    out = tmp_path / "ro" / "001"
    out.parent.mkdir()
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == out.parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    def no_rmtree(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Path, "mkdir", read_only)
    args = ["extract-frames", "--video", str(tmp_path / "v.avi"), "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "Permission denied; pick a writable place" in err
    with pytest.raises(InputError) as info:  # not a DataFormatError: a dataset run stops here, not per video
        extract_video_frames(tmp_path / "v.avi", out, progress=False)
    assert not isinstance(info.value, DataFormatError)
    real_mkdir(out.with_name("001.partial"))
    monkeypatch.setattr(shutil, "rmtree", no_rmtree)
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "Traceback" not in err and not out.exists()


def test_two_processes_extracting_one_video_take_turns(tmp_path: Path) -> None:
    """Two real processes on one video: one writes every frame, the other finds it done; no duplicate, no
    mixed folder, no ``.partial`` left."""
    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(150):
        writer.write(np.full((48, 64, 3), i, np.uint8))
    writer.release()
    out = tmp_path / "frames" / "001"
    cmd = [sys.executable, "-m", "hmtools", "extract-frames", "--video", str(tmp_path / "v.avi"), "--out", str(out)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(r[0].strip() for r in results) == ["0 frames written", "150 frames written"]
    assert list_frame_files(out) == [f"{i:05d}.jpg" for i in range(1, 151)]
    assert sorted(p.name for p in out.parent.iterdir()) == ["001"]


def test_macos_appledouble_files_beside_the_videos_are_not_videos(tmp_path: Path) -> None:
    """A dataset copied through a macOS-formatted (exFAT) drive has ``._001.avi`` beside each ``001.avi``:
    4 KB of resource-fork metadata that OpenCV cannot open, which failed every (re)run of the dataset."""
    make_aqa7(tmp_path, videos={"diving/001": 3})
    (tmp_path / "Actions" / "diving" / "._001.avi").write_bytes(b"\0\5\26\7" + b"\0" * 4092)
    write_video(tmp_path / "mtl" / "whole_videos" / "01.mp4", 2)
    (tmp_path / "mtl" / "whole_videos" / "._01.mp4").write_bytes(b"\0\5\26\7" + b"\0" * 4092)
    assert extract_dataset_frames("aqa7", tmp_path, progress=False) == 3
    assert sorted(p.name for p in (tmp_path / "diving-out").iterdir()) == ["001"]
    assert extract_dataset_frames("mtl-aqa", tmp_path / "mtl", progress=False) == 2
    assert sorted(p.name for p in (tmp_path / "mtl" / "whole_videos_frames").iterdir()) == ["01"]


def test_a_read_only_dataset_root_stops_at_the_first_video_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only root fails every video alike: one line, not one warning per video (1,189 for AQA-7)."""
    make_aqa7(tmp_path, videos={"diving/001": 2, "diving/002": 2, "gym_vault/001": 2})
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self.is_relative_to(tmp_path) and (self.name.endswith("-out") or self.name.endswith(".partial")):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run_cli(["extract-frames", "--dataset", "aqa7", "--root", str(tmp_path)], capsys)
    assert code == 2 and err.count("hmtools: error:") == 1 and "cannot create frame folder" in err
    assert err.count("Permission denied") == 1  # no warning per video before it
