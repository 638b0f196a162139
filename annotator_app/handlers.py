"""Event handlers of the annotator: plain typed functions ``(ctx, state, ...) -> (state, View)``.

They import no gradio, so tests call them directly with a fake backend. Domain errors (a stale
version, a lock held by someone else, a missing frame) never escape: they become the message shown,
and the view is re-read from the store so the user sees what is really saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from annotator_app import session
from annotator_app.render import THUMB_WIDTH
from annotator_app.review_queue import next_flagged, queue_rows
from annotator_app.state import MODES, AppContext, SessionState
from annotator_app.view import View, build_view, checked_frame
from hmtools.errors import HMToolsError, StaleVersionError

Result = tuple[SessionState, View]
log = logging.getLogger(__name__)


def run_action(ctx: AppContext, state: SessionState, action: Callable[[], str]) -> Result:
    """Run ``action`` (which returns the message to show), turn failures into the message, and
    build the view from what the store now holds."""
    try:
        message = action()
    except StaleVersionError as e:
        state.clicks = None
        message = f"**Refused, not saved:** {e}. The frame now shows the stored version."
    except HMToolsError as e:
        message = f"**Not done:** {e}"
    except Exception as e:  # a model or I/O failure: keep the page alive, show what the store holds
        log.exception("annotator action failed")
        message = f"**Error:** {type(e).__name__}: {e} (details in the server log). The view shows what is stored."
    try:
        return state, build_view(ctx, state, message)
    except HMToolsError as e:
        return state, View(message=f"{message}  \n**Cannot show the frame:** {e}")
    except Exception as e:  # a drawing failure must not break the page: the next action may show it again
        log.exception("annotator view failed")
        return state, View(message=f"{message}  \n**Cannot show the frame:** {type(e).__name__}: {e}")


def frame_loader(ctx: AppContext, key: str) -> Callable[[], np.ndarray]:
    """A callable that reads frame ``key`` (``(H, W, 3)`` uint8) when the backend needs it; it raises
    :class:`InputError` for a file that cannot be read or is not the size of the frame's masks
    (:func:`view.checked_frame`)."""
    return lambda: checked_frame(ctx, key)


def _arrive(ctx: AppContext, state: SessionState, idx: int) -> None:
    """Move to frame ``idx`` and start embedding it and its neighbours in the background."""
    n = len(state.keys)
    state.frame_idx = max(0, min(int(idx), n - 1))
    i = state.frame_idx
    near = [
        i,
        *range(i + 1, min(n, i + 1 + ctx.prefetch_ahead)),
        *range(i - 1, max(-1, i - 1 - ctx.prefetch_behind), -1),
    ]
    ctx.backend.prefetch([(state.keys[j], frame_loader(ctx, state.keys[j])) for j in near])


def set_user(ctx: AppContext, state: SessionState, username: str | None) -> SessionState:
    """Bind the session to the logged-in user (the default user without authentication)."""
    state.user = username or state.user or ctx.default_user
    return state


# -- queue and samples ---------------------------------------------------------------------
def queue_table(ctx: AppContext, split: str, status: str, reason: str = "") -> tuple[list[list[Any]], str]:
    """Rows for the queue table (:data:`QUEUE_COLUMNS`) and a one-line progress summary; ``reason``
    (when not blank) keeps the samples with a flagged frame whose flag reason contains it."""
    rows = queue_rows(ctx.store, None if split in ("", "all") else split, status, reason)
    total = {c: sum(getattr(r, c) for r in rows) for c in ("frames", "accepted", "flagged", "rejected", "unreviewed")}
    summary = (
        f"{len(rows)} samples · {total['frames']} frames: {total['accepted']} accepted · "
        f"{total['flagged']} flagged · {total['rejected']} rejected · {total['unreviewed']} unreviewed"
    )
    return [r.as_list() for r in rows], summary


def on_open(ctx: AppContext, state: SessionState, sample_id: str, frame_idx: int = 0) -> Result:
    """Open a sample (taking its lease) at ``frame_idx``."""

    def action() -> str:
        session.open_sample(ctx, state, sample_id.strip(), frame_idx)
        _arrive(ctx, state, state.frame_idx)
        return f"Opened {state.sample_id} ({len(state.keys)} frames); it is locked for others while you work."

    return run_action(ctx, state, action)


def on_next_flagged(ctx: AppContext, state: SessionState, split: str = "all", reason: str = "") -> Result:
    """Jump to the next flagged frame across the dataset (opening its sample); ``reason`` (when not
    blank) keeps the frames whose flag reason contains it."""

    def action() -> str:
        after = None if state.sample_id is None else (state.sample_id, state.frame_idx)
        found = next_flagged(ctx.store, after, state.user, None if split in ("", "all") else split, reason)
        if found is None:
            return "No flagged frame left" + (f' with reason "{reason.strip()}".' if reason.strip() else ".")
        if found[0] != state.sample_id:
            session.open_sample(ctx, state, found[0], found[1])
        _arrive(ctx, state, found[1])
        return f"Flagged frame {found[1] + 1} of {found[0]}."

    return run_action(ctx, state, action)


def on_release(ctx: AppContext, state: SessionState) -> Result:
    """Close the sample and give its lease back."""

    def action() -> str:
        sample = state.sample_id
        if sample is None:
            return "Nothing to release."
        shared = ctx.open_elsewhere(state.user, sample)
        session.release(ctx, state)
        return f"Closed {sample}; its lease stays while another tab of yours has it open." if shared else "Released."

    return run_action(ctx, state, action)


# -- navigation and display ---------------------------------------------------------------
def on_goto(ctx: AppContext, state: SessionState, idx: int) -> Result:
    """Show frame ``idx`` (0-based)."""

    def action() -> str:
        session.keep_lock(ctx, state)
        if int(idx) != state.frame_idx:
            state.clicks = None
        _arrive(ctx, state, idx)
        return ""

    return run_action(ctx, state, action)


def on_step(ctx: AppContext, state: SessionState, delta: int) -> Result:
    """Show the frame ``delta`` frames away."""
    return on_goto(ctx, state, state.frame_idx + delta)


def filmstrip_first(ctx: AppContext, state: SessionState) -> int:
    """Frame index of the filmstrip's first cell (as :func:`view.build_view` lays it out)."""
    r, n = ctx.filmstrip_radius, len(state.keys)
    return max(0, min(state.frame_idx - r, n - (2 * r + 1)))


def on_filmstrip_click(ctx: AppContext, state: SessionState, x: float) -> Result:
    """A click at ``x`` pixels in the filmstrip selects that cell's frame."""
    return on_goto(ctx, state, filmstrip_first(ctx, state) + int(x) // (THUMB_WIDTH + 8))


def on_strip_click(ctx: AppContext, state: SessionState, x: float, width: int = 800) -> Result:
    """A click at ``x`` pixels in the status strip selects that frame."""
    return on_goto(ctx, state, int(x) * len(state.keys) // width)


def on_display(ctx: AppContext, state: SessionState, opacity: float, onion: bool) -> Result:
    """Change the overlay opacity (0..1) and the onion skin."""
    state.opacity, state.onion = float(opacity), bool(onion)
    return run_action(ctx, state, lambda: "")


def on_mode(ctx: AppContext, state: SessionState, mode: str) -> Result:
    """Set the click mode (:data:`MODES`)."""
    state.mode = mode if mode in MODES else "positive"
    if state.clicks is not None:
        state.clicks.box_start = None
    return run_action(ctx, state, lambda: f"Click mode: {state.mode}.")


def on_add(ctx: AppContext, state: SessionState, add: bool) -> Result:
    """Choose whether clicks add a person to the frame's mask (their answer united with the mask
    the frame had before the clicks) or replace the mask."""
    state.add = bool(add)
    what = "add a person to the mask (the mask from before the clicks is kept)" if state.add else "replace the mask"
    return run_action(ctx, state, lambda: f"Clicks now {what}.")


def on_toggle_mode(ctx: AppContext, state: SessionState) -> Result:
    """Swap positive and negative clicks."""
    return on_mode(ctx, state, "negative" if state.mode == "positive" else "positive")


def on_clear_clicks(ctx: AppContext, state: SessionState) -> Result:
    """Forget the prompts on this frame (the saved mask stays)."""
    state.clicks = None
    return run_action(ctx, state, lambda: "Clicks cleared; the next click starts a fresh prompt.")
