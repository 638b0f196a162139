"""The two review workflows of build-masks' whole-sample flags, end to end through the handlers:
a synchronized dive where only one diver has a mask (add the partner, propagate, accept) and an
athlete small in frame (accept the choice, or re-segment the right person across the sample)."""

from __future__ import annotations

import numpy as np
from _annotator_fixtures import add_flagged_sample, person_mask

from annotator_app import edit_handlers as eh
from annotator_app import handlers as h
from annotator_app.backend import FakeBackend
from annotator_app.frames import FrameSource
from annotator_app.state import AppContext, SessionState
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite
from pipelines.select import SMALL_ATHLETE, SYNC_PARTNER_MISSING

H, W, N = 96, 128, 6


def _open(ctx, sample, idx=0):
    return h.on_open(ctx, h.set_user(ctx, SessionState(), "alice"), sample, idx)


def _row(ctx, sample, reason=""):
    return [r for r in h.queue_table(ctx, "all", "all", reason)[0] if r[0] == sample]


def diver_y(t: int) -> float:
    return H * (0.4 + 0.04 * t)


def test_sync_dive_with_one_diver_add_the_partner_propagate_and_accept(ctx, ds):
    pairs = [[person_mask(0.25 * W, diver_y(t), H, W), person_mask(0.7 * W, diver_y(t), H, W)] for t in range(N)]
    keys = add_flagged_sample(ds, "sync/001", pairs, 0, f"{SYNC_PARTNER_MISSING}; low segmenter score")
    # the queue finds the sample by its flag reason (case-insensitive part of it), and only it
    rows, summary = h.queue_table(ctx, "all", "all", "One athlete found")
    assert [r[0] for r in rows] == ["sync/001"] and rows[0][5] == N and "1 samples" in summary
    state, view = h.on_next_flagged(ctx, h.set_user(ctx, SessionState(), "alice"), "all", "one athlete found")
    assert (state.sample_id, state.frame_idx) == ("sync/001", 0)
    assert f"flag reason: **{SYNC_PARTNER_MISSING}; low segmenter score**" in view.info

    state, view = h.on_goto(ctx, state, 2)
    state, view = h.on_add(ctx, state, True)
    assert "(add to mask)" in view.info
    first = ctx.store.current_mask(keys[2]).mask()
    state, view = eh.on_click(ctx, state, 0.7 * W, diver_y(2))  # one positive click on the partner
    rec = ctx.store.current_mask(keys[2])
    m = rec.mask()
    assert (rec.version, rec.source, rec.status, rec.reason) == (2, "human", "unreviewed", None)
    assert (m & first).sum() == first.sum()  # the first diver's mask is kept whole
    assert m[int(diver_y(2)), int(0.7 * W)] and m.sum() > first.sum()  # and the partner added
    assert "added to the earlier mask" in view.message
    state, _ = h.on_mode(ctx, state, "negative")  # a negative click refines the partner, not diver 1
    state, _ = eh.on_click(ctx, state, 0.7 * W, diver_y(2) + 8)
    m2 = ctx.store.current_mask(keys[2]).mask()
    assert (m2 & first).sum() == first.sum() and not m2[int(diver_y(2)) + 8, int(0.7 * W)]
    state, _ = h.on_mode(ctx, state, "positive")

    for direction in (1, -1):  # propagate the union forward, then backward, saving each preview
        state, view = eh.on_propagate(ctx, state, direction, 10)
        assert "Preview of" in view.message
        state, view = eh.on_save_preview(ctx, state)
        state, _ = h.on_goto(ctx, state, 2)
    for t, key in enumerate(keys):
        rec = ctx.store.current_mask(key)
        assert rec.source == ("human" if t == 2 else "propagated") and rec.status == "unreviewed"
        x1, _, x2, _ = rec.bbox  # the union spans both divers on every frame
        assert x1 < 0.25 * W < 0.7 * W < x2
        lab = rec.mask()
        assert lab[:, : W // 2].any() and lab[:, W // 2 :].any()
        # two athletes, each with its own mask: the first diver is 0, the partner added by hand is 1
        (t0, t1) = sorted(rec.tracks, key=lambda tr: tr["track"])
        assert (t0["track"], t1["track"]) == (0, 1), rec.tracks
        assert t0["bbox"][2] < W // 2 < t1["bbox"][0]

    state, view = eh.on_status(ctx, state, "accepted", "sample")
    assert f"Marked {N} frames accepted" in view.message
    assert {(r.status, r.reason) for r in ctx.store.current_masks("sync/001")} == {("accepted", None)}
    assert _row(ctx, "sync/001", "one athlete found") == []  # the flag is gone: the filter drops it
    assert _row(ctx, "sync/001")[0][4:8] == [N, 0, 0, 0]
    assert "sync/001" in [r[0] for r in h.queue_table(ctx, "all", "done")[0]]


def small_people(t: int) -> list[np.ndarray]:
    """A small spectator standing still (top left) and a small skier crossing the frame."""
    return [person_mask(0.15 * W, 0.2 * H, H, W, 0.15), person_mask(W * (0.3 + 0.08 * t), 0.6 * H, H, W, 0.15)]


def test_small_athlete_right_choice_is_accepted_in_one_action(ctx, ds):
    keys = add_flagged_sample(ds, "ski/001", [small_people(t) for t in range(N)], 1, SMALL_ATHLETE)
    add_flagged_sample(ds, "ski/002", [small_people(t) for t in range(N)], 1, "low segmenter score")
    assert [r[0] for r in h.queue_table(ctx, "all", "has flagged", "small in frame")[0]] == ["ski/001"]
    state, view = _open(ctx, "ski/001")
    assert f"flag reason: **{SMALL_ATHLETE}**" in view.info
    state, view = eh.on_status(ctx, state, "accepted", "sample")
    recs = [ctx.store.current_mask(k) for k in keys]
    assert [(r.version, r.status, r.reason, r.source) for r in recs] == [(2, "accepted", None, "auto")] * N
    assert h.queue_table(ctx, "all", "all", "small in frame")[0] == []
    state, view = h.on_next_flagged(ctx, state, "all", "small in frame")
    assert "No flagged frame left" in view.message and state.sample_id == "ski/001"


def test_small_athlete_wrong_choice_is_resegmented_across_the_sample(ds):
    keys = add_flagged_sample(ds, "ski/001", [small_people(t) for t in range(N)], 0, SMALL_ATHLETE)
    store = MaskStore(ds.store_path, create=False)
    # a disk of ~9 px answers a click: as small as the athlete (SAM on a far skier)
    ctx = AppContext(store=store, frames=FrameSource(ds.root), backend=FakeBackend(radius=0.02), min_display_width=1)
    state, _ = _open(ctx, "ski/001", idx=2)
    wrong = store.current_mask(keys[2]).mask()
    sx, sy = W * (0.3 + 0.08 * 2), 0.6 * H
    state, view = eh.on_click(ctx, state, sx, sy)  # add mode is off: the click replaces the wrong person
    m = store.current_mask(keys[2]).mask()
    assert m[int(sy), int(sx)] and not (m & wrong).any() and 0 < m.sum() < 16
    for direction in (1, -1):
        state, view = eh.on_propagate(ctx, state, direction, N)  # a small mask propagates too
        assert "Preview of" in view.message, view.message
        state, _ = eh.on_save_preview(ctx, state)
        state, _ = h.on_goto(ctx, state, 2)
    recs = [store.current_mask(k) for k in keys]
    assert [r.source for r in recs] == ["propagated", "propagated", "human", "propagated", "propagated", "propagated"]
    assert all(r.area > 0 and r.reason is None and not (r.mask() & wrong).any() for r in recs)
    state, view = eh.on_status(ctx, state, "accepted", "sample")
    assert {r.status for r in store.current_masks("ski/001")} == {"accepted"}
    store.close()


def test_propagating_an_empty_mask_says_so(ctx, ds):
    keys = add_flagged_sample(ds, "ski/001", [small_people(t) for t in range(N)], 0, SMALL_ATHLETE)
    ctx.store.put_mask(keys[2], MaskWrite(mask=np.zeros((H, W), bool)), author="bob", expected_version=1)
    state, _ = _open(ctx, "ski/001", idx=2)
    state, view = eh.on_propagate(ctx, state, 1, 3)
    assert "Nothing propagated: the mask is empty." in view.message and not state.preview


def test_touching_divers_are_propagated_as_the_two_tracks_the_frame_stores(ctx, ds):
    """Two synchronized divers whose masks touch are one connected part; the frame's per-athlete
    tracks (build-masks wrote one RLE per diver) still tell them apart, so each is followed alone."""
    from hmtools.masks import encode_rle, mask_to_box

    def pair(t):
        y = H * (0.45 + 0.03 * t)
        return [person_mask(0.45 * W, y, H, W), person_mask(0.58 * W, y, H, W)]  # bodies overlap: one part

    keys = add_flagged_sample(ds, "sync/001", [pair(t) for t in range(N)], 0, "low score")
    a, b = pair(1)
    tracks = [
        {"track": k, "bbox": list(mask_to_box(m)), "counts": encode_rle(m)["counts"]} for k, m in enumerate((a, b))
    ]
    ctx.store.put_mask(keys[1], MaskWrite(mask=a | b, tracks=tracks), author="build-masks", expected_version=1)
    state, _ = _open(ctx, "sync/001", idx=1)
    calls = ctx.backend.predict_calls
    state, view = eh.on_propagate(ctx, state, 1, 2)
    assert ctx.backend.predict_calls - calls == 4, view.message  # two persons on each of two frames
    state, _ = _open(ctx, "sync/001", idx=3)  # its saved mask has no tracks: one connected part, one chain
    calls = ctx.backend.predict_calls
    eh.on_propagate(ctx, state, 1, 2)
    assert ctx.backend.predict_calls - calls == 2


def test_the_reason_filter_folds_case_beyond_ascii(ctx, ds):
    """An annotator's own reason in German: SQLite's lower() would leave "Ü" and "ß" as they are."""
    people = [[person_mask(0.3 * W, diver_y(t), H, W)] for t in range(2)]
    add_flagged_sample(ds, "de/001", people, 0, "ÜBERLAPPUNG mit dem Kampfrichter, STRASSE")
    for typed in ("überlappung", "Überlappung", "straße", "KAMPFRICHTER"):
        assert [r[0] for r in h.queue_table(ctx, "all", "all", typed)[0]] == ["de/001"], typed
        state, _ = h.on_next_flagged(ctx, h.set_user(ctx, SessionState(), "alice"), "all", typed)
        assert (state.sample_id, state.frame_idx) == ("de/001", 0), typed
    assert h.queue_table(ctx, "all", "all", "überlappungen")[0] == []
