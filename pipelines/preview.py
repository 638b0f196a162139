"""``hmtools preview``: a sample's frames with its current masks, boxes and flag reasons, for a quick look.

The output kind follows ``--out``: ``.mp4`` (OpenCV ``mp4v``) or ``.gif`` (Pillow). A PNG
contact sheet of evenly spaced frames is written beside it (:func:`sheet_path`: ``<out stem>_sheet.png``,
or ``<out name>_sheet.png`` when that one belongs to another preview, e.g. ``p.mp4`` beside ``p.gif``).
Frames are streamed to the MP4; a GIF keeps at most ``GIF_MAX_FRAMES`` evenly spaced 480 px frames.
Every frame is drawn at the first frame's size (a GIF garbles frames of different sizes); an MP4 of
odd width or height is padded by one black column / row (``mp4v`` needs even sizes: OpenCV would
otherwise crop it). Both files are written under unique temporary names beside ``--out`` and
renamed into place, so two previews to the same ``--out`` never write into each other's file.
"""

from __future__ import annotations

import difflib
import json
import os
import struct
import uuid
import zlib
from pathlib import Path

import cv2
import numpy as np

from hmtools.errors import HMToolsError, InputError
from hmtools.frame_root import find_frame_root, holds_frames
from hmtools.frames import IMAGE_SUFFIXES
from hmtools.store import MaskStore
from hmtools.store_admin import iter_current
from hmtools.store_types import MaskRecord
from pipelines.frames_in import read_frame

GIF_MAX_FRAMES = 300
SHEET_KEY = b"hmtools-preview"
"""PNG ``tEXt`` keyword of a contact sheet; its text is the JSON string of the preview's file name."""
GREEN, RED, YELLOW = (60, 220, 60), (230, 40, 40), (250, 210, 40)


def overlay(img: np.ndarray, rec: MaskRecord | None, label: str) -> np.ndarray:
    """Draw a mask record on an ``(H, W, 3)`` uint8 RGB frame (returns a new array).

    The mask is tinted green (red when flagged), each athlete box drawn in yellow, and the
    label plus the flag reasons written at the top left. A mask of another size than the frame
    (frames re-extracted at another resolution since) is scaled onto it and the mismatch written.
    """
    out = img.copy()
    lines = [label]
    if rec is not None:
        mask, (h, w) = rec.mask(), out.shape[:2]
        sx, sy = w / mask.shape[1], h / mask.shape[0]
        if mask.shape != (h, w):
            lines.append(f"mask {mask.shape[1]}x{mask.shape[0]} != frame {w}x{h}: frames re-extracted?")
            small = np.ascontiguousarray(mask, np.uint8)
            mask = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        colour = np.array(RED if rec.status == "flagged" else GREEN, np.float32)
        out[mask] = (0.5 * out[mask] + 0.5 * colour).astype(np.uint8)
        boxes = [p["bbox"] for p in rec.tracks or [] if p.get("bbox")] or ([rec.bbox] if rec.bbox else [])
        for x1, y1, x2, y2 in boxes:
            p1, p2 = (int(x1 * sx), int(y1 * sy)), (int(x2 * sx), int(y2 * sy))
            cv2.rectangle(out, p1, p2, YELLOW, max(1, out.shape[0] // 300))
        score = "-" if rec.score is None else f"{rec.score:.2f}"
        lines[0] += f"  v{rec.version} {rec.source} {rec.status} score {score}"
        lines += (rec.reason or "").split("; ") if rec.status == "flagged" else []
    else:
        lines[0] += "  no mask"
    scale = max(0.35, out.shape[0] / 900)
    for i, text in enumerate(t for t in lines if t):
        y = int((i + 1) * 26 * scale) + 4
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _sheet(thumbs: list[np.ndarray], cols: int = 4) -> np.ndarray:
    rows = -(-len(thumbs) // cols)
    h, w = thumbs[0].shape[:2]
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, t in enumerate(thumbs):
        r, c = divmod(i, cols)
        t = t[:h, :w]  # a placeholder for a missing frame may be taller than the first thumbnail
        sheet[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t
    return sheet


def write_preview(
    store_path: Path, root: Path, sample_id: str, out: Path, *, sheet_frames: int = 16, fps: float = 12.0
) -> tuple[Path, Path]:
    """Write the overlay video (or GIF) and its contact sheet.

    Returns:
        ``(video path, contact sheet path)``.

    Raises:
        InputError: unknown output extension, ``out`` is a folder, missing store or sample (the message
            names the store's nearest sample ids), --root holds none of the sample's frames, or this
            OpenCV cannot write MP4 (exit 2).
        HMToolsError: the files cannot be written (disk full); nothing is left at ``out``.
    """
    kind = out.suffix.lower()
    if kind not in (".mp4", ".gif"):
        raise InputError(f"--out must end in .mp4 or .gif, got {out.name!r}")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; pass a file name ending in .mp4 or .gif")
    with MaskStore(store_path, read_only=True) as store:
        _check_sample(store, sample_id)
        rows = list(iter_current(store, [sample_id]))
        if not rows:
            raise InputError(f"sample {sample_id} has no frames to preview")
        if not root.is_dir():
            raise InputError(
                f"--root {root} is not a folder; pass the dataset root the store's frame keys are relative to"
            )
        root = find_frame_root(root, (frame.key for _, frame, _ in rows))
        if not holds_frames(root, (frame.key for _, frame, _ in rows)):
            raise InputError(
                f"none of sample {sample_id}'s {len(rows)} frames is under --root {root} (e.g. {rows[0][1].key}); "
                "pass the dataset root the store's frame keys are relative to"
            )
        _check_not_a_frame_folder(store, root, out)
    pick = set(np.linspace(0, len(rows) - 1, min(sheet_frames, len(rows))).round().astype(int).tolist())
    gif_pick = set(np.linspace(0, len(rows) - 1, min(GIF_MAX_FRAMES, len(rows))).round().astype(int).tolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = sheet_path(out)
    unique = f"partial-{os.getpid()}-{uuid.uuid4().hex[:12]}"  # another preview to the same --out: other names
    tmp = out.with_name(f".{out.stem}.{unique}{kind}")
    sheet_tmp = sheet.with_name(f".{sheet.stem}.{unique}.png")
    writer, gif, thumbs, size = None, [], [], None
    try:
        for i, (_, frame, rec) in enumerate(rows):
            img, err = read_frame(root, frame.key)
            if img is None:  # a grey placeholder of the frame's recorded size, else of the frames before it
                w, h = (frame.width, frame.height) if frame.width and frame.height else (size or (320, 240))
                img = np.full((h, w, 3), 40, np.uint8)
            pic = overlay(img, rec, f"{frame.idx}: {frame.key}" + (f"  [{err}]" if err else ""))
            size = size or (pic.shape[1], pic.shape[0])
            if (pic.shape[1], pic.shape[0]) != size:  # one size for all: a GIF garbles frames of another size
                pic = cv2.resize(pic, size, interpolation=cv2.INTER_AREA)
            if kind == ".mp4":
                if writer is None:
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, _even(size))
                    if not writer.isOpened():  # closed: it drops every frame silently
                        raise InputError(f"this OpenCV cannot write MP4 (mp4v) video {out}; pass --out NAME.gif")
                writer.write(_pad_even(pic[..., ::-1]))
            elif i in gif_pick:
                gif.append(_thumb(pic, 480))
            if i in pick:
                thumbs.append(_thumb(pic, 320))
        if writer is not None:
            writer.release()
            _check_video(tmp, len(rows), out)  # OpenCV's writer drops frames silently on a full disk
        if kind == ".gif":
            from PIL import Image

            frames = [Image.fromarray(g) for g in gif]
            frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
        ok, png = cv2.imencode(".png", _sheet(thumbs)[..., ::-1])
        if not ok:
            raise HMToolsError(f"cannot encode the contact sheet {sheet}")
        sheet_tmp.write_bytes(_with_owner(png.tobytes(), out.name))
        os.replace(tmp, out)
        os.replace(sheet_tmp, sheet)
    except OSError as e:
        raise HMToolsError(
            f"cannot write preview {out}: {os.strerror(e.errno or 0)}; free some space or pick another --out"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
        sheet_tmp.unlink(missing_ok=True)
    return out, sheet


def sheet_path(out: Path) -> Path:
    """The contact sheet of preview ``out``: ``<stem>_sheet.png`` (``p.mp4`` -> ``p_sheet.png``) unless
    that file is the sheet of another preview (``p.gif``), then ``<name>_sheet.png`` (``p.mp4_sheet.png``).

    Each sheet records the preview it belongs to (PNG ``tEXt`` :data:`SHEET_KEY`); a sheet without that
    record (written before it existed) is taken as free, as it was.

    Raises:
        InputError: both names hold the sheets of other previews.
    """
    for candidate in (out.with_name(out.stem + "_sheet.png"), out.with_name(out.name + "_sheet.png")):
        owner = sheet_owner(candidate)
        if owner is None or owner == out.name:
            return candidate
    raise InputError(
        f"--out {out}: {candidate.name} and {out.stem}_sheet.png are the contact sheets of other previews; "
        "pick another --out name"
    )


def sheet_owner(path: Path) -> str | None:
    """File name of the preview whose contact sheet ``path`` is; ``None`` for a missing file or an image
    that does not record one."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    pos = 8 if head.startswith(b"\x89PNG\r\n\x1a\n") else len(head)
    while pos + 8 <= len(head):
        length, kind = struct.unpack(">I4s", head[pos : pos + 8])
        if kind == b"IDAT":
            break
        key, _, text = head[pos + 8 : pos + 8 + length].partition(b"\0")
        if kind == b"tEXt" and key == SHEET_KEY:
            try:
                owner = json.loads(text.decode("latin-1"))
            except ValueError:
                return None
            return owner if isinstance(owner, str) else None
        pos += 12 + length
    return None


def _with_owner(png: bytes, name: str) -> bytes:
    """``png`` with a ``tEXt`` chunk recording the preview file ``name`` (JSON, ASCII) after its IHDR."""
    data = SHEET_KEY + b"\0" + json.dumps(name).encode("ascii")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    ihdr_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def _even(size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` rounded up to even numbers (``mp4v`` encodes even sizes only)."""
    return size[0] + size[0] % 2, size[1] + size[1] % 2


def _pad_even(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame padded with a black bottom row / right column to even ``H`` and ``W``
    (a contiguous copy, as OpenCV's writer needs)."""
    h, w = img.shape[:2]
    return cv2.copyMakeBorder(np.ascontiguousarray(img), 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0)


def _check_sample(store: MaskStore, sample_id: str) -> None:
    """Raise unless the store holds ``sample_id``; the message names the nearest ids (a typo, ``diving/1``
    for ``diving/001``) or, with none near, a few of the store's ids.

    Raises:
        InputError: no such sample.
    """
    if store.query("SELECT 1 FROM samples WHERE sample_id=?", (sample_id,)):
        return
    ids = [r[0] for r in store.query("SELECT sample_id FROM samples ORDER BY sample_id")]
    near = difflib.get_close_matches(sample_id, ids, n=3, cutoff=0.5)
    hint = f"it holds {len(ids)} samples, e.g. {', '.join(ids[:3])}" if ids else "it holds no samples"
    hint = f"nearest: {', '.join(near)}" if near else hint
    raise InputError(f"no sample {sample_id!r} in {store.path}; {hint} (`hmtools stats --store` lists them)")


def _check_not_a_frame_folder(store: MaskStore, root: Path, out: Path) -> None:
    """Refuse an ``--out`` in a frame folder of the store: the contact sheet (a PNG) would be read as one
    more frame of that sample by every later scan of the dataset.

    Raises:
        InputError: an image beside ``out`` is a frame the store knows.
    """
    folder = out.parent.resolve()
    if not folder.is_dir() or not folder.is_relative_to(root.resolve()):
        return
    with os.scandir(folder) as it:
        images = [e.name for e in it if e.name.lower().endswith(IMAGE_SUFFIXES)][:3]
    keys = [(folder / name).relative_to(root.resolve()).as_posix() for name in images]
    if any(store.query("SELECT 1 FROM frames WHERE key=?", (key,)) for key in keys):
        raise InputError(
            f"--out {out} is in a frame folder of the dataset: its contact sheet would be read as a frame; "
            "pick a folder outside the dataset's frame folders"
        )


def _check_video(path: Path, frames: int, out: Path) -> None:
    """Raise unless OpenCV reads back a complete video of ``frames`` frames from ``path``."""
    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    if n != frames:
        raise HMToolsError(
            f"cannot write preview {out}: the video came out with {n} of {frames} frames (disk full?); "
            "free some space or pick another --out"
        )


def _thumb(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
