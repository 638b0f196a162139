"""Frame folders: list, read, size, and extract them from videos.

A frame folder holds one image per video frame, named by a frame number (``00489.jpg``,
``img_00001.jpg``, ``000123.jpg``). Listing sorts by that number, not by name, because names are
zero-padded to a minimum width only (FineDiving has 6-digit names next to 5-digit ones).

Extraction is resumable: a video is decoded into ``<out>.partial`` and the folder is renamed to
``<out>`` only once every frame is written, so an existing ``<out>`` means "done", and a rerun after an
interrupted run (Ctrl-C, a kill) resumes the ``.partial`` folder of the same video, pattern and start (any
other is discarded). OpenCV decodes the videos; no ffmpeg binary is needed.
"""

from __future__ import annotations

import json
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
        out: Frame folder to create. One that exists and holds frames counts as done (nothing written).
        pattern: File name pattern with one integer field, e.g. ``"%05d.jpg"``, ``"img_%05d.jpg"``; its suffix
            picks the format (JPEG quality :data:`JPEG_QUALITY`, or lossless ``.png`` / ``.bmp``).
        start: Number of the first frame file (default 1, ffmpeg's numbering, which every dataset's files use).
        progress: Show a tqdm bar over frames.

    Returns:
        Frames in the new folder, those kept from an interrupted run (Ctrl-C, a kill) included, which are only
            decoded again; 0 when ``out`` was already complete.

    Raises:
        InputError: missing video, bad pattern, or ``out`` cannot be created (read-only, a file in the way).
        DataFormatError: OpenCV cannot open the video or decodes fewer frames than its header declares, or
            none (nothing is left at ``out``); or ``out`` holds other files but no frames.
        HMToolsError: a frame could not be written (disk full, permissions); nothing is left.
    """
    video, out = Path(video), (Path(out).resolve() if Path(out).is_symlink() else Path(out))  # a link: its target
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
    """Hold an exclusive ``flock`` on ``folder``: extractions into one folder take turns, so a second run waits and
    then finds the video done instead of deleting the first run's ``.partial`` (no ``flock`` on Windows)."""
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

    cap = cv2.VideoCapture(str(video))
    total = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))) or None  # 0 or -1 (or not opened): unknown
    if out.is_dir() and _already_done(video, out, total if video.suffix.lower() in _COUNTED_CONTAINERS else None):
        return 0
    if not cap.isOpened():
        raise DataFormatError(f"OpenCV cannot open video {video}; check the file (re-download it) or convert it")
    tmp = out.with_name(out.name + ".partial")
    try:
        keep = _open_partial(video, tmp, pattern, start)
    except OSError as e:  # a read-only folder, or a file where a folder is needed
        raise InputError(f"cannot create frame folder {out}: {e.strerror or e}; pick a writable place") from e
    fps = cap.get(cv2.CAP_PROP_FPS)
    ext = os.path.splitext(pattern % 0)[1].lower()  # the pattern's format: JPEG bytes in a .png are no PNG
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    n, repeated, first_ms, last, encoded = 0, 0, None, None, None
    try:
        with tqdm(total=total, desc=video.name, unit="frame", disable=not progress, leave=False) as bar:
            while cap.grab():  # frames kept from an interrupted run are only decoded, for their timestamps
                # a constant frame rate as ffmpeg writes image sequences: a frame whose timestamp is more than
                # one interval on (an AVI drop frame, a variable-rate stream) comes after repeats of the last
                ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                first_ms = ms if first_ms is None else first_ms
                due = round((ms - first_ms) * fps / 1000.0) if fps > 0 else n
                while last is not None and n < due:
                    if n >= keep:
                        encoded = encoded or (tmp / (pattern % (start + last))).read_bytes()
                        _write_frame(tmp / (pattern % (start + n)), encoded)
                    n, repeated = n + 1, repeated + 1
                    bar.update(1)
                encoded = None
                if n >= keep:
                    ok, frame = cap.retrieve()
                    ok, buf = cv2.imencode(ext, frame, params) if ok else (False, None)
                    if not ok:
                        raise DataFormatError(f"cannot convert frame {n + start} of video {video}; re-encode it")
                    encoded = buf.tobytes()
                    _write_frame(tmp / (pattern % (start + n)), encoded)
                last, n = n, n + 1
                bar.update(1)
        if n == 0:
            raise DataFormatError(f"decoded no frame from video {video}; the file is empty or its codec unsupported")
        if repeated:
            log.warning("%s: %d frames repeated at gaps in its timestamps (as ffmpeg does)", video, repeated)
        if total is not None and n < total:  # OpenCV stops at a truncated or corrupt frame (drop frames are filled)
            msg = f"decoded {n} of the {total} frames video {video} declares (a truncated or corrupt file), so "
            msg += "the frames would not match the dataset's; re-download it or re-encode it"
            if video.suffix.lower() in _COUNTED_CONTAINERS:  # other containers estimate it from the duration
                raise DataFormatError(msg)
            log.warning("%s (count estimated from the duration; frames kept)", msg)
        (tmp / _STAMP).unlink()
        if out.is_dir():
            out.rmdir()  # empty folder: replace it
        os.replace(tmp, out)
    except KeyboardInterrupt:  # Ctrl-C: the frames written so far stay in .partial for the rerun to resume
        log.warning("interrupted: %s keeps %d frames of %s; rerun the same command to resume", tmp, n, video)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        cap.release()
    return n


_STAMP = ".hmtools-extract"  # in a .partial folder: the extraction it holds (video file, size, mtime, pattern, start)


def _open_partial(video: Path, tmp: Path, pattern: str, start: int) -> int:
    """Reuse ``tmp`` left by an interrupted run of the same extraction (else start it afresh) and return how many
    frames to keep: the non-empty files in order from the first, less the last (a kill may have cut it short)."""
    st = video.stat()
    stamp = json.dumps([str(video.resolve()), st.st_size, st.st_mtime_ns, pattern, start, JPEG_QUALITY])
    if (tmp / _STAMP).is_file() and (tmp / _STAMP).read_text() == stamp:
        with os.scandir(tmp) as it:
            names = {e.name for e in it if e.stat().st_size > 0}
        keep = 0
        while pattern % (start + keep) in names:
            keep += 1
        return max(0, keep - 1)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / _STAMP).write_text(stamp)
    return 0


def _already_done(video: Path, out: Path, declared: int | None) -> bool:
    """Whether an existing frame folder counts as extracted: it holds frames (a warning when fewer than the
    video declares, or zero-byte ones: another tool's interrupted run, which hmtools does not redo).
    Raises DataFormatError when it holds files but no frame (an existing folder cannot be swapped in atomically)."""
    names, empty = scan_frame_files(out)
    if not names:
        others = sorted(p.name for p in out.iterdir())
        if not others:
            return False  # an empty folder: replaced by the extracted one
        raise DataFormatError(
            f"frame folder {out} holds no frames but other files ({', '.join(others[:3])}); "
            "remove them (or the folder) and rerun, or pass an empty or new folder"
        )
    if empty or len(names) < (declared or 0):
        found = f"{len(names)} frames ({len(empty)} empty files) of the {declared or '?'} video {video} declares"
        log.warning(f"{out} holds {found}: another tool's interrupted run? Kept; delete it and rerun to redo it")
    return True


def _write_frame(target: Path, encoded: bytes) -> None:
    """Write one encoded frame; a failure (disk full, permissions) is an :class:`HMToolsError`."""
    try:
        target.write_bytes(encoded)
    except OSError as e:
        raise HMToolsError(f"cannot write frame {target} ({e.strerror or e}: disk full or no permission?)") from e


_COUNTED_CONTAINERS = (".avi", ".mp4", ".m4v", ".mov")  # store the frame count (others: estimated from the duration)


def _dataset_videos(name: str, root: Path) -> tuple[list[tuple[Path, Path]], str, int]:
    """(video, out folder) pairs, frame pattern and first number for a dataset's video layout."""
    key = name.replace("_", "-").lower()
    if key == "aqa7":
        if not (root / "Actions").is_dir() and (root / "AQA-7" / "Actions").is_dir():
            root = root / "AQA-7"  # the zip's doubled AQA-7/AQA-7/, as inspect and build-masks follow it
        actions = root / "Actions"
        videos = sorted(actions.glob("[!.]*/[!.]*.avi")) if actions.is_dir() else []  # not macOS' ._001.avi
        if not videos:
            raise InputError(f"no videos found at {actions}/<class>/<NNN>.avi; pass the AQA-7 root as --root")
        return [(v, root / f"{v.parent.name}-out" / v.stem) for v in videos], "img_%05d.jpg", 1
    if key == "mtl-aqa":
        src = root / "whole_videos"
        videos = sorted(src.glob("[!.]*.mp4")) if src.is_dir() else []
        if not videos:
            raise InputError(f"no videos found at {src}/<NN>.mp4; pass the MTL-AQA root as --root")
        return [(v, root / "whole_videos_frames" / v.stem) for v in videos], "%06d.jpg", 1
    if key == "finediving":
        raise InputError("FineDiving ships trimmed frame folders (no videos); use --video FILE --out DIR for one video")
    raise InputError(f"unknown dataset {name!r}; valid names: finediving, mtl-aqa, aqa7")


def extract_dataset_frames(name: str, root: str | Path, progress: bool = True) -> int:
    """Extract every sample video of a dataset into its frame layout (resumable).

    Layouts written: AQA-7 ``Actions/<class>/<NNN>.avi`` -> ``<class>-out/<NNN>/img_%05d.jpg`` (1-based,
    the CoRe layout); MTL-AQA ``whole_videos/<NN>.mp4`` -> ``whole_videos_frames/<NN>/%06d.jpg``
    (1-based, the official ``frame_extractor.sh`` layout). Videos whose folder exists are skipped.
    A video that cannot be extracted (truncated, undecodable, its folder holding other files) does not stop
    the run: the others are extracted, then the failures are raised together. A frame folder that cannot be
    created (a read-only root) or written (disk full) stops it.

    Returns:
        Number of frames extracted in this run (as :func:`extract_video_frames` counts them).

    Raises:
        InputError: unknown dataset, missing root, no videos in the expected place, or a read-only root.
        DataFormatError: some videos could not be extracted (all of them listed in the log).
        HMToolsError: a frame could not be written (disk full, permissions): the run stops there.
    """
    from tqdm import tqdm

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root {root} is not a folder")
    jobs, pattern, start = _dataset_videos(name, root)
    written, failed = 0, []
    for video, out in tqdm(jobs, desc=f"extract {name}", unit="video", disable=not progress):
        try:
            written += extract_video_frames(video, out, pattern=pattern, start=start, progress=progress)
        except DataFormatError as e:  # this video only (truncated, undecodable, ...): the others go on
            log.warning("%s", e)
            failed.append(str(e))
    if failed:
        raise DataFormatError(
            f"{len(failed)} of {len(jobs)} videos not extracted (each logged above; {written} frames written for "
            f"the others, which a rerun skips), the first: {failed[0]}"
        )
    return written
