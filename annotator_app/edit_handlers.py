"""Editing handlers: SAM clicks, brush/eraser, propagation preview, review status, undo/redo.

Same contract as :mod:`annotator_app.handlers`: ``(ctx, state, ...) -> (state, View)``, no gradio.
Every edit is saved as a new store version before the handler returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from annotator_app import session
from annotator_app.backend import Prompt
from annotator_app.handlers import Result, frame_loader, run_action
from annotator_app.propagate import persons_of, propagate_persons
from annotator_app.render import render_frame
from annotator_app.state import AppContext, Clicks, SessionState
from annotator_app.view import checked_frame, shown_frame
from hmtools.errors import DataFormatError, InputError
from hmtools.store_types import MaskRecord
from hmtools.tracks import add_person, track_masks

ADD_COLOR = "#00ff00"
ERASE_COLOR = "#ff0000"
"""Brush colours: strokes in the green-dominant colour add to the mask, red-dominant ones erase."""


def on_click(ctx: AppContext, state: SessionState, x: float, y: float) -> Result:
    """A click at pixel (x, y) of the main view (frame pixels times ``state.display_scale``): add a
    point (or a box corner) and re-run SAM on this frame with every prompt given here so far; the
    answer (in add mode: united with the mask the frame had before these clicks) is saved as a new
    ``human`` version."""
    x, y = float(int(x) // state.display_scale), float(int(y) // state.display_scale)

    def action() -> str:
        session.keep_lock(ctx, state)
        i = state.frame_idx
        if state.preview:
            raise InputError("save or discard the propagation preview first")
        fh, fw = checked_frame(ctx, state.keys[i]).shape[:2]
        if not (0 <= x < fw and 0 <= y < fh):
            raise InputError(f"the click at ({x:.0f}, {y:.0f}) lies outside the {fw}x{fh} frame; nothing was saved")
        if state.clicks is None or state.clicks.frame_idx != i or state.clicks.head != state.seen[i]:
            state.clicks = Clicks(i, base=state.seen[i], head=state.seen[i])
        c = state.clicks
        if state.mode == "box":
            if c.box_start is None:
                c.box_start = (float(x), float(y))
                return "Box: now click the opposite corner."
            (x0, y0), c.box_start = c.box_start, None
            c.box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
        else:
            c.points.append((float(x), float(y)))
            c.labels.append(1 if state.mode == "positive" else 0)
        prompt = Prompt(
            points=np.asarray(c.points, np.float32) if c.points else None,
            labels=np.asarray(c.labels, np.int32) if c.labels else None,
            box=None if c.box is None else np.asarray(c.box, np.float32),
            mask_input=c.logits,
        )
        key = state.keys[i]
        pred = ctx.backend.predict(key, frame_loader(ctx, key), prompt)
        mask, added, tracks = pred.mask, "", None
        if state.add and c.base:  # SAM segments the clicked person only; the mask from before the clicks is kept
            mask = pred.mask | _mask_at(ctx, key, c.base)
            added = f", {int(pred.mask.sum())} px from the clicks added to the earlier mask"
            tracks = _tracks_with(ctx, key, c.base, pred.mask)
        change = session.save_mask(ctx, state, i, mask, score=pred.score, tracks=tracks)
        ctx.masks.put((key, change.head), mask)
        c.logits, c.head = pred.logits, change.head
        return f"Saved version {change.head} ({int(mask.sum())} px{added}, SAM score {pred.score:.2f})."

    return run_action(ctx, state, action)


def _tracks_with(ctx: AppContext, key: str, version: int, person: np.ndarray) -> list[dict] | None:
    """Per-athlete tracks of frame ``key``'s mask at ``version`` with ``person`` (``(H, W)`` bool,
    an add-mode answer) added: a new athlete unless it mostly lies on the mask already there
    (:func:`hmtools.tracks.add_person`); ``None`` (the default split) when that gives none or the
    tracks cannot be read."""
    rec = next(r for r in ctx.store.history(key) if r.version == version)
    try:
        return add_person(rec.tracks, rec.rle, person) or None
    except DataFormatError:
        return None


def _mask_at(ctx: AppContext, key: str, version: int) -> np.ndarray:
    """Frame ``key``'s mask at ``version`` (``(H, W)`` bool), decoded once per version."""
    mask = ctx.masks.get((key, version))
    if mask is None:
        mask = next(r for r in ctx.store.history(key) if r.version == version).mask()
        ctx.masks.put((key, version), mask)
    return mask


def brush_value(ctx: AppContext, state: SessionState) -> tuple[SessionState, dict[str, Any] | None]:
    """The brush editor's value for the frame on screen: the frame with its mask tinted as the
    background, and no strokes yet (strokes kept from a refused save are dropped). Remembers which
    frame version the strokes will apply to."""
    state.brush_kept_strokes = None
    return _brush_picture(ctx, state)


def _brush_picture(ctx: AppContext, state: SessionState) -> tuple[SessionState, dict[str, Any] | None]:
    """:func:`brush_value` drawing ``state.brush_kept_strokes`` (when they are of this frame) on the
    background: red and green as they were painted."""
    if state.sample_id is None:
        return state, None
    i = state.frame_idx
    rec = ctx.store.current_mask(state.keys[i])
    mask = None if rec is None else rec.mask()
    try:
        frame, _ = shown_frame(ctx, state.keys[i], rec)
    except InputError:  # no picture and no known size: nothing to paint on
        state.brush_for = None
        return state, None
    background = render_frame(frame, mask, opacity=0.35)
    kept = state.brush_kept_strokes
    if kept is not None and kept[0] == state.keys[i]:
        for layer in kept[1]:
            painted = layer[..., 3] > 0
            green = layer[..., 1].astype(np.int16) > layer[..., 0].astype(np.int16)
            background[painted & green] = (0, 255, 0)
            background[painted & ~green] = (255, 0, 0)
    else:
        state.brush_kept_strokes = None
    state.brush_for = (state.keys[i], 0 if rec is None else rec.version)
    return state, {"background": background, "layers": [], "composite": None}


def brush_after_save(ctx: AppContext, state: SessionState) -> tuple[SessionState, dict[str, Any] | None] | None:
    """The brush editor's value after a save attempt, or ``None`` to leave the editor as it is
    (:func:`brush_kept`). After a save: the new version, no strokes. When the save was refused
    because the frame changed meanwhile (another tab, a build-masks re-run), the new version with
    the refused strokes drawn on it: the next save applies them (and any new strokes) to it."""
    if brush_kept(ctx, state):
        return None
    return _brush_picture(ctx, state)


def brush_kept(ctx: AppContext, state: SessionState) -> bool:
    """Whether the brush strokes should stay in the editor after a save attempt: the save was refused
    for a reason that does not outdate them (a pending preview, the lease, an I/O error), so they can
    be saved again. After a save, or when the frame changed (stale strokes), the editor reloads."""
    if state.sample_id is None or state.brush_for is None:
        return False
    rec = ctx.store.current_mask(state.keys[state.frame_idx])
    return state.brush_for == (state.keys[state.frame_idx], 0 if rec is None else rec.version)


def mask_from_editor(value: dict[str, Any] | None, mask: np.ndarray) -> np.ndarray:
    """Apply brush strokes to ``mask`` (``(H, W)`` bool): painted pixels (alpha > 0 on any layer)
    whose green exceeds their red are added, the others (red strokes) erased.

    Raises:
        InputError: a layer does not match the frame size.
    """
    out = mask.copy()
    layers = [] if value is None else [np.asarray(v) for v in value.get("layers") or [] if v is not None]
    for layer in layers:
        if layer.shape[:2] != mask.shape or layer.ndim != 3 or layer.shape[2] != 4:
            raise InputError(
                f"brush layer is {layer.shape[1]}x{layer.shape[0]} RGBA?, the frame is {mask.shape[1]}x{mask.shape[0]}"
            )
        painted = layer[..., 3] > 0
        green = layer[..., 1].astype(np.int16) > layer[..., 0].astype(np.int16)
        out[painted & green] = True
        out[painted & ~green] = False
    return out


def on_brush_apply(ctx: AppContext, state: SessionState, value: dict[str, Any] | None) -> Result:
    """Save the brush strokes on the frame on screen as a new ``human`` version."""

    def action() -> str:
        session.keep_lock(ctx, state)
        if state.preview:
            raise InputError("save or discard the propagation preview first")
        i = state.frame_idx
        rec = ctx.store.current_mask(state.keys[i])
        head = 0 if rec is None else rec.version
        key = state.keys[i]
        kept = state.brush_kept_strokes[1] if state.brush_kept_strokes and state.brush_kept_strokes[0] == key else []
        layers = [*kept, *(np.asarray(v) for v in (value or {}).get("layers") or [] if v is not None)]
        if state.brush_for is not None and state.brush_for[0] == key and state.brush_for[1] != head:
            state.brush_kept_strokes = (key, layers)
            raise InputError(
                f"the frame changed since it was loaded into the brush (it is at version {head} now); nothing was "
                "saved: your strokes are drawn on the new version, check them and save again"
            )
        if state.brush_for != (key, head):
            raise InputError("the brush holds another frame or an older version; press 'Load frame into brush' first")
        old = np.zeros(shown_frame(ctx, key, rec)[0].shape[:2], bool) if rec is None else rec.mask()
        mask = mask_from_editor({"layers": layers}, old)
        if np.array_equal(old, mask):
            return "No pixel changed; nothing saved (load the frame into the brush, paint, then save)."
        change = session.save_mask(ctx, state, i, mask)
        state.clicks, state.brush_for, state.brush_kept_strokes = None, None, None
        return f"Saved brush edit as version {change.head} ({int(mask.sum())} px)."

    return run_action(ctx, state, action)


def on_propagate(ctx: AppContext, state: SessionState, direction: int, n: int | None) -> Result:
    """Preview re-prompting the ``n`` frames after (``direction`` = 1) or before (-1) this one from
    its saved mask. Nothing is saved until :func:`on_save_preview`."""

    def action() -> str:
        session.keep_lock(ctx, state)
        i = state.frame_idx
        rec = ctx.store.current_mask(state.keys[i])
        start = state.preview.get(i, None if rec is None else rec.mask())
        if start is None:
            raise InputError("this frame has no mask to propagate")
        if n is None or int(n) < 1:
            raise InputError("type how many frames to propagate (Propagate N, at least 1)")
        targets = [j for j in (i + direction * k for k in range(1, int(n) + 1)) if 0 <= j < len(state.keys)]
        if not targets:
            raise InputError("no frame in that direction")
        # per-athlete tracks tell touching divers apart, and their ids carry over to the saved frames
        athletes = _athletes(state, i, rec)
        order, persons = persons_of(start, [m for _, m in athletes])
        ids = [athletes[k][0] for k in order]
        keys = [state.keys[j] for j in targets]
        parts, scores, note = propagate_persons(ctx.backend, keys, [frame_loader(ctx, k) for k in keys], persons)
        if not parts:
            return f"Nothing propagated: {note}."
        for pos, p in parts.items():
            t = targets[pos]
            state.preview[t], state.preview_scores[t] = np.logical_or.reduce(p), scores[pos]
            state.preview_base.setdefault(t, state.seen[t])  # its save expects this
            if ids:
                state.preview_tracks[t] = list(zip(ids, p, strict=True))
            else:
                state.preview_tracks.pop(t, None)
        return (
            f"Preview of {len(parts)} propagated frames (magenta, not saved): check them, then Save or Discard. {note}"
        )

    return run_action(ctx, state, action)


def _athletes(state: SessionState, i: int, rec: MaskRecord | None) -> list[tuple[int, np.ndarray]]:
    """Frame ``i``'s athletes ``[(track id, (H, W) bool)]``: a preview's propagated athletes, or the
    saved version's tracks; ``[]`` when it has none or they cannot be read (an RLE of another size)."""
    if i in state.preview:
        return state.preview_tracks.get(i, [])
    if rec is None or not rec.tracks:
        return []
    try:
        return [(int(t["track"]), m) for t, m in zip(rec.tracks, track_masks(rec.tracks, rec.rle), strict=True)]
    except DataFormatError:
        return []


def on_save_preview(ctx: AppContext, state: SessionState) -> Result:
    """Save every previewed frame as a new ``propagated`` version (one undo group)."""

    def action() -> str:
        session.keep_lock(ctx, state)
        if not state.preview:
            return "No preview to save."
        try:
            changes = session.save_masks(
                ctx, state, state.preview, state.preview_scores, "propagated", state.preview_base, state.preview_tracks
            )
        finally:
            state.clear_preview()
        return f"Saved {len(changes)} propagated frames."

    return run_action(ctx, state, action)


def on_discard_preview(ctx: AppContext, state: SessionState) -> Result:
    """Drop the unsaved preview."""
    n = len(state.preview)
    state.clear_preview()
    return run_action(ctx, state, lambda: f"Discarded the preview of {n} frames.")


def on_status(
    ctx: AppContext, state: SessionState, status: str, scope: str, first: int | None = 1, last: int | None = 1
) -> Result:
    """Accept or reject (``status``) the ``frame`` on screen, a ``range`` of frames (1-based,
    inclusive ``first..last``) or the whole ``sample``."""

    def action() -> str:
        session.keep_lock(ctx, state)
        n = len(state.keys)
        if scope == "frame":
            idxs = [state.frame_idx]
        elif scope == "range":
            if first is None or last is None:
                raise InputError("type the range's first and last frame (1-based)")
            lo, hi = sorted((int(first), int(last)))
            if lo < 1 or hi > n:
                raise InputError(f"frame range must lie within 1..{n}; got {lo}..{hi}")
            idxs = list(range(lo - 1, hi))
        else:
            idxs = list(range(n))
        if state.preview.keys() & set(idxs):  # the screen shows the preview there, not the stored mask
            raise InputError("save or discard the propagation preview first")
        changes, skipped = session.set_status(ctx, state, idxs, status)
        extra = f" ({skipped} without a mask skipped)" if skipped else ""
        return f"Marked {len(changes)} frame{'s' if len(changes) != 1 else ''} {status}{extra}."

    return run_action(ctx, state, action)


def on_undo(ctx: AppContext, state: SessionState) -> Result:
    """Undo the newest change of this session (written as new versions)."""
    return _history_step(ctx, state, session.undo, "Nothing to undo.", "Undone: {n} frame(s) restored")


def on_redo(ctx: AppContext, state: SessionState) -> Result:
    """Redo the newest undone change."""
    return _history_step(ctx, state, session.redo, "Nothing to redo.", "Redone: {n} frame(s)")


def _history_step(
    ctx: AppContext,
    state: SessionState,
    step: Callable[[AppContext, SessionState], list[Any]],
    nothing: str,
    done_text: str,
) -> Result:
    """Shared body of undo and redo: ``step`` rewrites older content as new versions."""

    def action() -> str:
        session.keep_lock(ctx, state)
        done = step(ctx, state)
        if not done:
            return nothing
        state.clicks = None
        state.frame_idx = done[-1].frame_idx
        return done_text.format(n=len(done)) + f" (now version {done[-1].head})."

    return run_action(ctx, state, action)
