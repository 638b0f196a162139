"""What the browser shows after each action, computed from the store and the session state."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from annotator_app.render import THUMB_WIDTH, filmstrip, render_frame, status_strip, thumbnail_with_mask
from annotator_app.state import AppContext, SessionState
from hmtools.errors import InputError
from hmtools.store_admin import lock_holder
from hmtools.store_types import MaskRecord


@dataclass
class View:
    """Everything the page displays for one session.

    Attributes:
        image: Main view ``(s*H, s*W, 3)`` uint8, the frame enlarged ``s = state.display_scale``
            times (1 for frames at least ``ctx.min_display_width`` wide), or ``None`` without a sample.
        filmstrip: Thumbnails around the current frame framed by status, or ``None``.
        filmstrip_first: Frame index of the filmstrip's first cell.
        strip: One column per frame coloured by status, or ``None``.
        frame_idx: Frame on screen. n_frames: frames in the sample.
        info: Markdown about the frame (version, source, status, flag reason, lock).
        message: Result of the last action (errors included), Markdown.
        has_preview: An unsaved propagation preview exists (show Save/Discard).
    """

    image: np.ndarray | None = None
    filmstrip: np.ndarray | None = None
    filmstrip_first: int = 0
    strip: np.ndarray | None = None
    frame_idx: int = 0
    n_frames: int = 0
    info: str = "Open a sample from the queue."
    message: str = ""
    has_preview: bool = False


def decoded(ctx: AppContext, rec: MaskRecord) -> np.ndarray:
    """The record's mask ``(H, W)`` bool, decoded once per version (cached in ``ctx.masks``)."""
    mask = ctx.masks.get((rec.frame_key, rec.version))
    if mask is None:
        mask = rec.mask()
        ctx.masks.put((rec.frame_key, rec.version), mask)
    return mask


def stored_size(ctx: AppContext, key: str, rec: MaskRecord | None = None) -> tuple[int, int] | None:
    """The size ``(H, W)`` in pixels the store gives frame ``key`` (its recorded frame size, else its
    mask's size ``rec``), or ``None`` when it knows none (no size recorded and no mask)."""
    rows = ctx.store.query("SELECT height, width FROM frames WHERE key=?", (key,))
    if rows and rows[0][0] and rows[0][1]:
        return int(rows[0][0]), int(rows[0][1])
    if rec is not None:
        return int(rec.rle["size"][0]), int(rec.rle["size"][1])
    return None


def checked_frame(ctx: AppContext, key: str) -> np.ndarray:
    """Frame ``key`` as ``(H, W, 3)`` uint8 for SAM, which must segment it at its masks' size.

    Raises:
        InputError: the file cannot be read, or it is not the size the store gives the frame (a
            re-extracted video, or --root pointing at another copy of the dataset).
    """
    frame = ctx.frames.load(key)
    size = stored_size(ctx, key)
    if size is not None and frame.shape[:2] != size:
        raise InputError(
            f"frame file {key} is {frame.shape[1]}x{frame.shape[0]} but the store's masks of it are "
            f"{size[1]}x{size[0]}; clicks and propagation need the frames the masks were made on (check --root)"
        )
    return frame


def shown_frame(ctx: AppContext, key: str, rec: MaskRecord | None) -> tuple[np.ndarray, str]:
    """The picture to draw frame ``key``'s masks on, ``(H, W, 3)`` uint8 at the size the store gives
    the frame, and a warning (Markdown, ``""`` when none): a frame file of another size is shown
    resized to it; an unreadable one as a grey stand-in, so its mask, the filmstrip and the status
    strip still show.

    Raises:
        InputError: the file cannot be read and the store knows no size for the frame.
    """
    size = stored_size(ctx, key, rec)
    try:
        frame = ctx.frames.load(key)
    except InputError as e:
        if size is None:
            raise
        return np.full((*size, 3), 60, np.uint8), f"**Cannot show the frame:** {e}; a grey stand-in is shown."
    if size is None or frame.shape[:2] == size:
        return frame, ""
    warning = (
        f"**Frame size mismatch:** the file is {frame.shape[1]}x{frame.shape[0]}, the store's masks of it are "
        f"{size[1]}x{size[0]}; shown resized; clicks and propagation are refused (check --root)."
    )
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA), warning


def _mask_of(ctx: AppContext, recs: list[MaskRecord | None], state: SessionState, i: int) -> np.ndarray | None:
    if i in state.preview:
        return state.preview[i]
    if 0 <= i < len(recs) and recs[i] is not None:
        return decoded(ctx, recs[i])
    return None


def _thumb(ctx: AppContext, key: str, rec: MaskRecord | None) -> np.ndarray:
    version = 0 if rec is None else rec.version
    img = ctx.thumbs.get((key, version))
    if img is None:
        try:
            thumb = ctx.frames.thumbnail(key, THUMB_WIDTH)
        except InputError:  # an unreadable neighbour must not hide the frame on screen
            return np.full((THUMB_WIDTH * 3 // 4, THUMB_WIDTH, 3), 60, np.uint8)
        img = thumbnail_with_mask(thumb, None if rec is None else decoded(ctx, rec))
        ctx.thumbs.put((key, version), img)
    return img


def _info(ctx: AppContext, state: SessionState, rec: MaskRecord | None) -> str:
    i, n = state.frame_idx, len(state.keys)
    lines = [f"**{state.sample_id}** · frame **{i + 1}/{n}** · `{state.keys[i]}`"]
    if i in state.preview:
        lines.append(
            f"**PREVIEW (not saved)**: propagated mask, SAM score {state.preview_scores.get(i, 0):.2f}; "
            f"{len(state.preview)} frames pending - Save or Discard"
        )
    if rec is None:
        lines.append("no mask yet")
    else:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.created_at))
        score = "" if rec.score is None else f" · score {rec.score:.2f}"
        lines.append(
            f"version {rec.version} · source **{rec.source}** · status **{rec.status}**{score} · "
            f"by {rec.author} at {when} · area {rec.area} px"
        )
        if rec.reason:
            lines.append(f"flag reason: **{rec.reason}**")
    holder = lock_holder(ctx.store, state.sample_id or "")
    lock = (
        f"locked by {'you' if holder.owner == state.user else holder.owner} until "
        f"{time.strftime('%H:%M:%S', time.localtime(holder.expires_at))}"
        if holder
        else "not locked"
    )
    lines.append(
        f"user {state.user} · {lock} · mode **{state.mode}**{' (add to mask)' if state.add else ''} · undo {len(state.undo)} · redo {len(state.redo)}"
    )
    return "  \n".join(lines)


def build_view(ctx: AppContext, state: SessionState, message: str = "") -> View:
    """Render the current frame, filmstrip, status strip and info for ``state``.

    Also records the head versions and statuses just read as what the user has seen.
    """
    if state.sample_id is None:
        return View(message=message)
    recs = ctx.store.current_masks(state.sample_id)
    state.seen = [0 if r is None else r.version for r in recs]
    state.statuses = ["none" if r is None else r.status for r in recs]
    i, n = state.frame_idx, len(state.keys)
    rec = recs[i]
    frame, warning = shown_frame(ctx, state.keys[i], rec)
    if warning and warning not in message:
        message = f"{message}  \n{warning}" if message else warning
    boxes = []
    if rec is not None:
        boxes = [t["bbox"] for t in rec.tracks or [] if t.get("bbox")] or ([rec.bbox] if rec.bbox else [])
    clicks = state.clicks if state.clicks is not None and state.clicks.frame_idx == i else None
    image = render_frame(
        frame,
        _mask_of(ctx, recs, state, i),
        opacity=state.opacity,
        preview=i in state.preview,
        prev_mask=_mask_of(ctx, recs, state, i - 1) if state.onion and i > 0 else None,
        next_mask=_mask_of(ctx, recs, state, i + 1) if state.onion and i + 1 < n else None,
        boxes=boxes,
        points=clicks.points if clicks else (),
        labels=clicks.labels if clicks else (),
        prompt_box=clicks.box if clicks else None,
    )
    state.display_scale = max(1, -(-ctx.min_display_width // frame.shape[1]))
    if state.display_scale > 1:
        image = image.repeat(state.display_scale, axis=0).repeat(state.display_scale, axis=1)
    r = ctx.filmstrip_radius
    first = max(0, min(i - r, n - (2 * r + 1)))
    window = range(first, min(n, first + 2 * r + 1))
    strip_statuses = ["preview" if j in state.preview else state.statuses[j] for j in window]
    thumbs = [_thumb(ctx, state.keys[j], recs[j]) for j in window]
    return View(
        image=image,
        filmstrip=filmstrip(thumbs, strip_statuses, i - first),
        filmstrip_first=first,
        strip=status_strip(state.statuses, i),
        frame_idx=i,
        n_frames=n,
        info=_info(ctx, state, rec),
        message=message,
        has_preview=bool(state.preview),
    )
