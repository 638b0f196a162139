"""Store operations of one annotator session: open a sample under a lease, save masks and review
statuses as new versions (compare-and-set on the version the user saw), undo and redo.

Nothing here keeps work only in memory: every edit is a new store version before the function
returns, so a server restart loses nothing. Undo writes an older version's content again as a new
version (its ``tracks`` included); history is never deleted. A new mask on a frame whose version
had per-athlete ``tracks`` is split among them (:func:`hmtools.tracks.split_tracks`).
"""

from __future__ import annotations

import time

import numpy as np

from annotator_app.state import AppContext, Change, SessionState
from hmtools.errors import DataFormatError, InputError, LockedError, StaleVersionError
from hmtools.store_admin import acquire_lock, lock_holder, release_lock
from hmtools.store_types import MaskRecord, MaskWrite
from hmtools.tracks import split_tracks, tracks_from_parts


def open_sample(ctx: AppContext, state: SessionState, sample_id: str, frame_idx: int = 0) -> None:
    """Take the lease on ``sample_id`` and make it the session's sample, releasing the previous
    sample's lease. Undo history is kept per sample for the session's life: leaving a sample puts
    its undo/redo lists aside and opening it again brings them back (a step changed elsewhere
    meanwhile is refused when replayed, as always).

    Raises:
        InputError: no such sample, or an unsaved propagation preview is pending (it would be
            dropped). LockedError: another annotator holds it.
    """
    _keep_preview(state)
    sample = ctx.store.get_sample(sample_id)
    if not sample.frames:
        raise InputError(f"sample {sample_id} has no frames")
    lock = acquire_lock(ctx.store, sample_id, state.user, ctx.lock_ttl_s)
    if state.sample_id not in (None, sample_id) and not ctx.open_elsewhere(state.user, state.sample_id):
        release_lock(ctx.store, state.sample_id, state.user)
    if state.sample_id != sample_id:
        _put_history_aside(state)
        state.undo, state.redo = state.histories.pop(sample_id, ([], []))
    state.sample_id, state.keys = sample_id, list(sample.frames)
    state.frame_idx = max(0, min(frame_idx, len(state.keys) - 1))
    state.clear_preview()
    state.clicks = None
    state.lock_until = lock.expires_at
    refresh(ctx, state)


def _put_history_aside(state: SessionState) -> None:
    """Keep the open sample's undo/redo lists in ``state.histories`` for when it is opened again."""
    if state.sample_id is not None and (state.undo or state.redo):
        state.histories[state.sample_id] = (state.undo, state.redo)
    state.undo, state.redo = [], []


def _keep_preview(state: SessionState) -> None:
    """Refuse to leave the sample while an unsaved preview is pending: leaving would drop it silently."""
    if state.preview:
        raise InputError(
            f"an unsaved propagation preview of {len(state.preview)} frames is pending: save or discard it first"
        )


def release(ctx: AppContext, state: SessionState) -> bool:
    """Give the lease back and close the sample; returns whether a lease was released (not while
    another tab of the same user has the sample open: that tab keeps working under it).

    Raises:
        InputError: an unsaved propagation preview is pending (it would be dropped).
    """
    if state.sample_id is None:
        return False
    _keep_preview(state)
    released = not ctx.open_elsewhere(state.user, state.sample_id) and release_lock(
        ctx.store, state.sample_id, state.user
    )
    _put_history_aside(state)
    state.sample_id, state.keys, state.seen, state.statuses = None, [], [], []
    state.clear_preview()
    state.clicks = None
    state.lock_until = 0.0
    return released


def refresh(ctx: AppContext, state: SessionState) -> None:
    """Re-read the head version and status of every frame: what the user now sees."""
    if state.sample_id is None:
        return
    recs = ctx.store.current_masks(state.sample_id)
    state.seen = [0 if r is None else r.version for r in recs]
    state.statuses = ["none" if r is None else r.status for r in recs]


def keep_lock(ctx: AppContext, state: SessionState) -> None:
    """Check that this user still holds the sample's lease (one read), and renew it when more than a
    quarter of it has passed or it is gone (activity keeps it alive).

    Raises:
        InputError: no sample is open. LockedError: someone else holds the sample now.
    """
    if state.sample_id is None:
        raise InputError("open a sample first")
    holder = lock_holder(ctx.store, state.sample_id)
    if holder is not None and holder.owner != state.user:
        raise LockedError(f"your lease on {state.sample_id} expired and {holder.owner} has it now; nothing was saved")
    if holder is None or holder.expires_at - time.time() < 0.75 * ctx.lock_ttl_s:
        state.lock_until = acquire_lock(ctx.store, state.sample_id, state.user, ctx.lock_ttl_s).expires_at


def save_mask(
    ctx: AppContext,
    state: SessionState,
    idx: int,
    mask: np.ndarray,
    *,
    source: str = "human",
    score: float | None = None,
    tracks: list[dict] | None = None,
) -> Change:
    """Write ``mask`` (``(H, W)`` bool) as a new version of frame ``idx`` (status unreviewed),
    expecting the version the user saw, and record it for undo as its own group. ``tracks`` are
    its per-athlete tracks; by default those of the version the user saw, split along the new
    mask (see :func:`_tracks`).

    Raises:
        StaleVersionError: the frame changed since the user saw it (nothing written).
    """
    if tracks is None:
        tracks = _tracks(ctx.store.current_mask(state.keys[idx]), state.seen[idx], mask)
    change = _put(ctx, state, idx, MaskWrite(mask=mask, source=source, score=score, tracks=tracks))
    state.undo.append([change])
    state.redo.clear()
    return change


def save_masks(
    ctx: AppContext,
    state: SessionState,
    masks: dict[int, np.ndarray],
    scores: dict[int, float],
    source: str,
    expected: dict[int, int] | None = None,
    parts: dict[int, list[tuple[int, np.ndarray]]] | None = None,
) -> list[Change]:
    """Write several frames' masks as one undo group, in one transaction: if any frame is no longer
    at its expected version (default: the version the user saw), nothing is written. A frame in
    ``parts`` (each athlete's mask by track id, from a propagation) gets those tracks; the others'
    tracks are split along the new mask as in :func:`save_mask`."""
    base = {i: state.seen[i] if expected is None else expected[i] for i in masks}
    _check_fresh(ctx, state, list(masks), base)
    order = sorted(masks)
    heads = ctx.store.current_masks(state.sample_id or "")
    writes = [
        MaskWrite(
            mask=masks[i],
            source=source,
            score=scores.get(i),
            tracks=tracks_from_parts(parts[i]) if parts and i in parts else _tracks(heads[i], base[i], masks[i]),
            frame_idx=i,
        )
        for i in order
    ]
    ctx.store.write_sample_masks(state.sample_id or "", writes, author=state.user, expected_versions=base)
    changes = [Change(i, state.keys[i], base[i], base[i] + 1) for i in order]  # compare-and-set: one step up
    for c in changes:
        state.seen[c.frame_idx], state.statuses[c.frame_idx] = c.head, "unreviewed"
    if changes:
        state.undo.append(changes)
        state.redo.clear()
    return changes


def set_status(ctx: AppContext, state: SessionState, idxs: list[int], status: str) -> tuple[list[Change], int]:
    """Give frames ``idxs`` a review status (one new version each, one undo group). Frames without
    a mask are skipped.

    Returns:
        The changes written and the number of frames skipped for having no mask.

    Raises:
        StaleVersionError: any frame changed since the user saw it (nothing written).
    """
    todo = [i for i in idxs if state.seen[i] > 0]
    if not todo:
        return [], len(idxs)
    new = ctx.store.set_status({state.keys[i]: state.seen[i] for i in todo}, status, author=state.user)
    changes = [Change(i, state.keys[i], state.seen[i], new[state.keys[i]]) for i in todo]
    for c in changes:
        state.seen[c.frame_idx], state.statuses[c.frame_idx] = c.head, status
    state.undo.append(changes)
    state.redo.clear()
    return changes, len(idxs) - len(todo)


def undo(ctx: AppContext, state: SessionState) -> list[Change]:
    """Undo the newest group: write each frame's earlier content again as a new version.

    Raises:
        StaleVersionError: a frame of the group changed elsewhere since (the group is dropped).
        InputError: an unsaved propagation preview covers a frame of the group (nothing written).
    """
    return _replay(ctx, state, state.undo, state.redo)


def redo(ctx: AppContext, state: SessionState) -> list[Change]:
    """Redo the newest undone group (again as new versions)."""
    return _replay(ctx, state, state.redo, state.undo)


def _replay(
    ctx: AppContext, state: SessionState, source: list[list[Change]], target: list[list[Change]]
) -> list[Change]:
    if not source:
        return []
    group = source[-1]
    if state.preview.keys() & {c.frame_idx for c in group}:  # the save of the preview would then be refused
        raise InputError("save or discard the propagation preview first: this step changes frames it covers")
    expected = {c.frame_idx: c.head for c in group}
    try:
        _check_fresh(ctx, state, list(expected), expected)
        writes = []
        for c in group:
            if c.restore:
                old = {r.version: r for r in ctx.store.history(c.key)}[c.restore]
                writes.append(MaskWrite.copy_of(old, c.frame_idx))
            else:
                h, w = _frame_size(ctx, c.key)
                writes.append(MaskWrite(mask=np.zeros((h, w), bool), source="human", frame_idx=c.frame_idx))
        try:  # one transaction: the whole group is replayed, or none of it
            ctx.store.write_sample_masks(state.sample_id or "", writes, author=state.user, expected_versions=expected)
        finally:
            refresh(ctx, state)
    except StaleVersionError as e:  # changed elsewhere since: this step can never be replayed, older ones can
        source.pop()
        name = "undo" if source is state.undo else "redo"
        raise StaleVersionError(f"{e}; this step is dropped from the {name} list, older steps remain") from None
    source.pop()
    done = [Change(c.frame_idx, c.key, c.head, c.head + 1) for c in reversed(group)]
    for c in group:  # the new head holds version ``c.restore``'s content: older entries that ended there now end here
        for stack in (source, target):
            stack[:] = [[_rebase(e, c.key, c.restore, c.head + 1) for e in g] for g in stack]
    target.append(done)
    return done


def _tracks(head: MaskRecord | None, version: int, mask: np.ndarray) -> list[dict] | None:
    """Per-athlete tracks of a human edit ``mask`` (``(H, W)`` bool) replacing ``version`` of a frame
    whose head is ``head``: the edit split along that version's tracks (:func:`split_tracks`), or
    ``None`` when it has none. A head at another version, or a mask of another size, is left to
    the store to refuse; tracks that cannot be read (an RLE of another size) give ``None``, so the
    edit still saves (as the union alone)."""
    if head is None or head.version != version or not head.tracks or list(mask.shape) != list(head.rle["size"]):
        return None
    try:
        return split_tracks(head.tracks, head.rle, mask)
    except DataFormatError:
        return None


def _rebase(e: Change, key: str, old_head: int, new_head: int) -> Change:
    return Change(e.frame_idx, e.key, e.restore, new_head) if e.key == key and e.head == old_head else e


def _put(ctx: AppContext, state: SessionState, idx: int, write: MaskWrite, expected: int | None = None) -> Change:
    key = state.keys[idx]
    before = state.seen[idx] if expected is None else expected
    head = ctx.store.put_mask(key, write, author=state.user, expected_version=before)
    state.seen[idx] = head
    state.statuses[idx] = write.status
    return Change(idx, key, before, head)


def _check_fresh(ctx: AppContext, state: SessionState, idxs: list[int], expected: dict[int, int] | None = None) -> None:
    heads = {f.idx: (f.head_version, f.key) for f in ctx.store.frames(state.sample_id or "")}
    for i in idxs:
        want = state.seen[i] if expected is None else expected[i]
        if heads[i][0] != want:
            raise StaleVersionError(
                f"frame {heads[i][1]} is at version {heads[i][0]}, not {want}: it was changed elsewhere; "
                "nothing was written"
            )


def _frame_size(ctx: AppContext, key: str) -> tuple[int, int]:
    rows = ctx.store.query("SELECT height, width FROM frames WHERE key=?", (key,))
    if rows and rows[0][0]:
        return int(rows[0][0]), int(rows[0][1])
    return ctx.frames.load(key).shape[:2]
