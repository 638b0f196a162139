"""Frame folders: list, read, size, and extract them from videos.

A frame folder holds one image per video frame, named by a frame number (``00489.jpg``,
``img_00001.jpg``, ``000123.jpg``). Listing sorts by that number, not by name, because names are
zero-padded to a minimum width only (FineDiving has 6-digit names next to 5-digit ones).

Extraction is resumable: a video is decoded into ``<out>.partial`` and the folder is renamed to
``<out>`` only once every frame is written, so an existing ``<out>`` means "done" and a leftover
``.partial`` folder (an interrupted run) is discarded and redone. OpenCV decodes the videos; no
ffmpeg binary is needed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hmtools.errors import DataFormatError, HMToolsError, InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""File suffixes (lower case) counted as frames; other files in a frame folder are ignored."""

JPEG_QUALITY = 95
"""JPEG quality of extracted frames (close to ffmpeg ``-qscale:v 2``, which the datasets used)."""

_LAST_NUMBER = re.compile(r"(\d+)\D*$")


def frame_number(name: str) -> int | None:
    """The frame number in a file name: the last run of digits of its stem (``img_00012.jpg`` -> 12)."""
    dot = name.rfind(".")
    m = _LAST_NUMBER.search(name[:dot] if dot > 0 else name)
    return None if m is None else int(m.group(1))


def _sort_key(name: str) -> tuple[int, int, str]:
    n = frame_number(name)
    return (0, n, name) if n is not None else (1, 0, name)


def scan_frame_files(folder: str | Path, check_empty: bool = True) -> tuple[list[str], list[str]]:
    """List a frame folder in one pass.

    Args:
        folder: The frame folder.
        check_empty: Stat every file to find zero-byte ones (one extra syscall per file).

    Returns:
        ``(names, empty)``: image file names sorted by frame number (names without a number last, by
        name; hidden files, whose name starts with a dot, left out), and the subset that are zero-byte
        files (unreadable as images).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError, PermissionError: ``folder`` is not a readable folder.
    """
    names: list[str] = []
    empty: list[str] = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.name.lower().endswith(IMAGE_SUFFIXES) or not entry.is_file():
                continue  # a hidden file (macOS' ._img_00001.jpg beside each frame copied to exFAT/SMB) is no frame
            names.append(entry.name)
            if check_empty and entry.stat().st_size == 0:
                empty.append(entry.name)
    names.sort(key=_sort_key)
    empty.sort(key=_sort_key)
    return names, empty


def list_frame_files(folder: str | Path) -> list[str]:
    """Image file names of a frame folder, sorted by frame number (numerically).

    Raises:
        InputError: the folder does not exist or cannot be listed.
    """
    try:
        return scan_frame_files(folder)[0]
    except FileNotFoundError:
        raise InputError(f"frame folder {folder} does not exist") from None
    except OSError as e:
        raise InputError(f"cannot list frame folder {folder}: {e.strerror or e}") from e


def read_frame(root: str | Path, key: str) -> np.ndarray:
    """Read one frame as stored: an EXIF orientation tag is ignored, as by PIL, :func:`frame_size`
    and the annotator, so a frame's mask and its size agree everywhere.

    Args:
        root: Dataset root the key is relative to.
        key: Frame key (path relative to ``root``, ``/`` separators).

    The file is decoded from memory (``cv2.imdecode``), which refuses a truncated JPEG; ``cv2.imread``
    returns one silently, its missing part grey, and a mask would be built on half a frame.

    Returns:
        ``(H, W, 3)`` uint8 RGB image (grayscale, CMYK, RGBA and 16-bit files are converted).

    Raises:
        DataFormatError: the file is missing, empty, truncated or not a decodable image.
    """
    import cv2

    path = Path(root) / key
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise DataFormatError(f"frame {path} does not exist; check --root or re-extract the frames") from None
    except OSError as e:  # a folder, no permission, an I/O error
        raise DataFormatError(f"cannot read frame {path} ({e.strerror or e}); check the file") from e
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None  # as stored
    except cv2.error as e:  # e.g. a corrupt header declaring more pixels than OpenCV accepts
        why = (str(e).strip().splitlines() or ["OpenCV error"])[-1]
        raise DataFormatError(f"cannot decode frame {path} ({why}); re-extract it") from None
    if img is None:
        raise DataFormatError(f"cannot decode frame {path} (empty, truncated or corrupt image); re-extract it")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frame_size(root: str | Path, key: str) -> tuple[int, int]:
    """Size of a frame from its file header only (no pixel decode).

    Returns:
        ``(H, W)`` in pixels.

    Raises:
        DataFormatError: the file is missing or not a recognisable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(root) / key
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataFormatError(f"frame {path} does not exist; check --root or re-extract the frames") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"cannot read the image header of {path}: {e}") from e
    return int(h), int(w)


def _check_pattern(pattern: str) -> None:
    try:
        a, b = pattern % 1, pattern % 2
    except (TypeError, ValueError):
        raise InputError(f"frame pattern {pattern!r} needs one integer field, e.g. '%05d.jpg'") from None
    if a == b or "/" in pattern or not a.lower().endswith(IMAGE_SUFFIXES):
        raise InputError(
            f"frame pattern {pattern!r} must be a file name with one integer field and an image suffix "
            f"({', '.join(IMAGE_SUFFIXES)}), e.g. '%05d.jpg'"
        )


def extract_video_frames(
    video: str | Path, out: str | Path, pattern: str = "%05d.jpg", start: int = 1, progress: bool = True
) -> int:
    """Decode every frame of a video into a frame folder (resumable, atomic per video).

    Args:
        video: Video file (anything OpenCV decodes: .avi, .mp4, ...).
        out: Frame folder to create. If it already exists and holds frames, the video counts as done
            and nothing is written.
        pattern: File name pattern with one integer field, e.g. ``"%05d.jpg"``, ``"img_%05d.jpg"``.
        start: Number of the first frame file (default 1, ffmpeg's numbering, which every dataset's files use).
        progress: Show a tqdm bar over frames.

    Returns:
        Number of frames written (0 when ``out`` was already complete).

    Raises:
        InputError: missing video or bad pattern.
        DataFormatError: OpenCV cannot open the video, decodes no frame from it, or decodes fewer frames
            than its .avi/.mp4/.mov header declares (nothing is left at ``out``).
        HMToolsError: a frame could not be written (disk full, permissions); nothing is left at ``out``.
    """
    video, out = Path(video), Path(out)
    _check_pattern(pattern)
    if start < 0:  # "%05d" % -1 is "-0001": a file whose number reads as 1
        raise InputError(f"--start must be >= 0 (the number of the first frame file), got {start}")
    if not video.is_file():
        raise InputError(f"video {video} {'is a folder' if video.is_dir() else 'does not exist'}; pass a video file")
    if out.exists() and not out.is_dir():
        raise InputError(f"frame folder {out} is a file; pass a folder (new or empty) for the frames")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only folder, or a file where a folder is needed
        raise InputError(f"cannot create frame folder {out}: {e.strerror or e}; pick a writable place") from e
    with _folder_lock(out.parent):  # a second run on the same folder would delete this one's .partial
        return _decode_video(video, out, pattern, start, progress)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder``: extractions into one folder take turns, so a second run
    waits and then finds the video done instead of deleting the first run's ``.partial`` folder.
    Where there is no ``flock`` (Windows), runs are not serialised: run one extraction per folder."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _decode_video(video: Path, out: Path, pattern: str, start: int, progress: bool) -> int:
    """:func:`extract_video_frames` once its arguments are checked, under the folder lock."""
    import cv2
    from tqdm import tqdm

    if out.is_dir() and any(out.iterdir()):
        log.info("%s already extracted, skipped", out)
        return 0
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DataFormatError(f"OpenCV cannot open video {video}; check the file (re-download it) or convert it")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run
    try:
        tmp.mkdir(parents=True)
    except OSError as e:  # a read-only folder, or a file where a folder is needed
        raise InputError(f"cannot create frame folder {out}: {e.strerror or e}; pick a writable place") from e
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = cap.get(cv2.CAP_PROP_FPS)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    n, repeated, first_ms, encoded = 0, 0, None, None
    try:
        with tqdm(total=total, desc=video.name, unit="frame", disable=not progress, leave=False) as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                # a constant frame rate as ffmpeg writes image sequences: a frame whose timestamp is more than
                # one interval on (an AVI drop frame, a variable-rate stream) comes after repeats of the last
                ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                first_ms = ms if first_ms is None else first_ms
                due = round((ms - first_ms) * fps / 1000.0) if fps > 0 else n
                while encoded is not None and n < due:
                    _write_frame(tmp / (pattern % (start + n)), encoded)
                    n, repeated = n + 1, repeated + 1
                    bar.update(1)
                ok, buf = cv2.imencode(".jpg", frame, params)
                if not ok:
                    raise HMToolsError(f"cannot encode frame {n + start} of {video}")
                encoded = buf.tobytes()
                _write_frame(tmp / (pattern % (start + n)), encoded)
                n += 1
                bar.update(1)
        if n == 0:
            raise DataFormatError(f"decoded no frame from video {video}; the file is empty or its codec unsupported")
        if repeated:
            log.warning("%s: %d frames repeated at gaps in its timestamps (as ffmpeg does)", video, repeated)
        if total is not None and n < total:
            _short_video(video, n, total)
        if out.is_dir():
            out.rmdir()  # empty folder: replace it
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        cap.release()
    return n


def _write_frame(target: Path, encoded: bytes) -> None:
    """Write one encoded frame; a failure (disk full, permissions) is an :class:`HMToolsError`."""
    try:
        target.write_bytes(encoded)
    except OSError as e:
        raise HMToolsError(f"cannot write frame {target} ({e.strerror or e}: disk full or no permission?)") from e


_COUNTED_CONTAINERS = (".avi", ".mp4", ".m4v", ".mov")
"""Containers that store the video stream's frame count (OpenCV estimates it from the duration for others)."""


def _short_video(video: Path, n: int, total: int) -> None:
    """Refuse a video that decoded to fewer frames than its container declares.

    OpenCV stops at a truncated or corrupt frame: the files after that point are missing, and a rerun must
    not take the folder for finished. (Gaps in the timestamps, such as AVI drop frames, are filled with
    repeats as ffmpeg does and do not count as missing.) A count only estimated from the duration is not
    trusted.
    """
    msg = (
        f"decoded {n} of the {total} frames video {video} declares (a truncated or corrupt file), so the "
        f"frames would not match the dataset's; re-download it or re-encode it"
    )
    if video.suffix.lower() in _COUNTED_CONTAINERS:
        raise DataFormatError(msg)
    log.warning("%s (count estimated from the duration; frames kept)", msg)


def _dataset_videos(name: str, root: Path) -> tuple[list[tuple[Path, Path]], str, int]:
    """(video, out folder) pairs, frame pattern and first number for a dataset's video layout."""
    key = name.replace("_", "-").lower()
    if key == "aqa7":
        if not (root / "Actions").is_dir() and (root / "AQA-7" / "Actions").is_dir():
            root = root / "AQA-7"  # the zip's doubled AQA-7/AQA-7/, as inspect and build-masks follow it
        actions = root / "Actions"
        videos = sorted(actions.glob("*/*.avi")) if actions.is_dir() else []
        if not videos:
            raise InputError(f"no videos found at {actions}/<class>/<NNN>.avi; pass the AQA-7 root as --root")
        return [(v, root / f"{v.parent.name}-out" / v.stem) for v in videos], "img_%05d.jpg", 1
    if key == "mtl-aqa":
        src = root / "whole_videos"
        videos = sorted(src.glob("*.mp4")) if src.is_dir() else []
        if not videos:
            raise InputError(f"no videos found at {src}/<NN>.mp4; pass the MTL-AQA root as --root")
        return [(v, root / "whole_videos_frames" / v.stem) for v in videos], "%06d.jpg", 1
    if key == "finediving":
        raise InputError(
            "FineDiving is distributed as trimmed frame folders (no per-sample videos); "
            "extract single videos with --video FILE --out DIR"
        )
    raise InputError(f"unknown dataset {name!r}; valid names: finediving, mtl-aqa, aqa7")


def extract_dataset_frames(name: str, root: str | Path, progress: bool = True) -> int:
    """Extract every sample video of a dataset into its frame layout (resumable).

    Layouts written: AQA-7 ``Actions/<class>/<NNN>.avi`` -> ``<class>-out/<NNN>/img_%05d.jpg`` (1-based,
    the CoRe layout); MTL-AQA ``whole_videos/<NN>.mp4`` -> ``whole_videos_frames/<NN>/%06d.jpg``
    (1-based, the official ``frame_extractor.sh`` layout). Videos whose folder exists are skipped.

    Returns:
        Number of frames written in this run.

    Raises:
        InputError: unknown dataset, missing root or no videos in the expected place.
    """
    from tqdm import tqdm

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root {root} is not a folder")
    jobs, pattern, start = _dataset_videos(name, root)
    written = 0
    for video, out in tqdm(jobs, desc=f"extract {name}", unit="video", disable=not progress):
        written += extract_video_frames(video, out, pattern=pattern, start=start, progress=progress)
    return written
