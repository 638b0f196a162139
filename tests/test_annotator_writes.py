"""The annotator's write paths: atomic multi-frame saves, previews that must not
overwrite later edits, review status under a preview, brush strokes kept, leases freed on tab close."""

from __future__ import annotations

import threading

import numpy as np

from annotator_app import edit_handlers as eh
from annotator_app import handlers as h
from annotator_app.state import SessionState


def _open(ctx, user="alice", sample="diving/001", idx=0):
    return h.on_open(ctx, h.set_user(ctx, SessionState(), user), sample, idx)


def _fail_writes_to(ctx, key):
    """Make the store fail (as a full disk or a killed process would) when frame ``key`` is written."""
    frame_id = ctx.store.query("SELECT frame_id FROM frames WHERE key=?", (key,))[0][0]
    ctx.store.query(
        f"CREATE TEMP TRIGGER fail_write AFTER INSERT ON masks WHEN NEW.frame_id={frame_id} "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )


def _versions(ctx, keys):
    return [ctx.store.current_mask(k).version for k in keys]


def test_a_preview_save_that_fails_half_way_writes_nothing(ctx):
    state, _ = _open(ctx, idx=1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    _fail_writes_to(ctx, state.keys[4])
    state, view = eh.on_save_preview(ctx, state)
    assert "disk I/O error" in view.message
    assert _versions(ctx, state.keys[2:5]) == [1, 1, 1]  # one undo step, one transaction: all or nothing
    assert not state.undo


def test_an_undo_of_a_group_that_fails_half_way_writes_nothing(ctx):
    state, _ = _open(ctx, idx=1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    state, _ = eh.on_save_preview(ctx, state)
    _fail_writes_to(ctx, state.keys[3])
    state, view = eh.on_undo(ctx, state)
    assert "disk I/O error" in view.message
    assert _versions(ctx, state.keys[2:5]) == [2, 2, 2]
    ctx.store.query("DROP TRIGGER temp.fail_write")
    state, view = eh.on_undo(ctx, state)  # the whole group is still there to undo
    assert _versions(ctx, state.keys[2:5]) == [3, 3, 3]
    assert {ctx.store.current_mask(k).source for k in state.keys[2:5]} == {"auto"}


def test_an_undo_step_changed_elsewhere_is_dropped_and_older_steps_still_undo(ctx):
    """A step whose frames someone else changed since can never be undone; it must not block the rest."""
    from hmtools.store_types import MaskWrite

    state, _ = _open(ctx, idx=0)
    state, _ = eh.on_status(ctx, state, "accepted", "frame")  # the older step: frame 0 accepted
    state, _ = h.on_goto(ctx, state, 1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    state, _ = eh.on_save_preview(ctx, state)  # the newer step: frames 2-4
    head = ctx.store.current_mask(state.keys[3])
    ctx.store.put_mask(state.keys[3], MaskWrite.copy_of(head), author="bob", expected_version=head.version)
    before = _versions(ctx, state.keys[:5])
    state, view = eh.on_undo(ctx, state)
    assert "changed elsewhere" in view.message and "dropped from the undo list" in view.message
    assert _versions(ctx, state.keys[:5]) == before
    state, view = eh.on_undo(ctx, state)  # the older step is undone now
    assert ctx.store.current_mask(state.keys[0]).status != "accepted", view.message
    assert _versions(ctx, state.keys[1:5]) == before[1:]


def test_saving_a_preview_never_overwrites_an_edit_made_after_it(ctx):
    state, _ = _open(ctx, idx=1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    tab2, _ = _open(ctx, idx=3)  # the same annotator fixes frame 4 in a second tab
    tab2, _ = eh.on_click(ctx, tab2, 40, 30)
    assert ctx.store.current_mask(state.keys[3]).version == 2
    state, _ = h.on_goto(ctx, state, 3)  # back in the first tab, looking at the (magenta) preview
    state, view = eh.on_save_preview(ctx, state)
    assert "Refused, not saved" in view.message
    rec = ctx.store.current_mask(state.keys[3])
    assert (rec.version, rec.source) == (2, "human")  # the second tab's edit survives
    assert _versions(ctx, [state.keys[2], state.keys[4]]) == [1, 1]


def test_review_status_is_refused_on_frames_under_a_preview(ctx):
    state, _ = _open(ctx, idx=1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    state, _ = h.on_goto(ctx, state, 3)  # the screen shows the preview, not the stored mask
    state, view = eh.on_status(ctx, state, "accepted", "frame")
    assert "save or discard the propagation preview first" in view.message
    assert ctx.store.current_mask(state.keys[3]).status == "flagged"
    state, view = eh.on_status(ctx, state, "accepted", "range", 1, 2)  # frames outside the preview are fine
    assert [ctx.store.current_mask(k).status for k in state.keys[:2]] == ["accepted", "accepted"]


def test_leaving_a_sample_with_an_unsaved_preview_is_refused(ctx):
    """Opening another sample or releasing would drop the preview without a word."""
    state, _ = _open(ctx, idx=1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    assert len(state.preview) == 3
    for leave in (lambda st: h.on_open(ctx, st, "diving/002"), lambda st: h.on_release(ctx, st)):
        state, view = leave(state)
        assert "unsaved propagation preview of 3 frames" in view.message
        assert state.sample_id == "diving/001" and len(state.preview) == 3
    state, _ = eh.on_discard_preview(ctx, state)
    state, view = h.on_open(ctx, state, "diving/002")
    assert state.sample_id == "diving/002", view.message


def test_closing_a_tab_waits_for_its_running_event(ctx):
    state, _ = _open(ctx)
    ctx.note_session("s1", state)
    released = []
    with ctx.session_lock("s1"):  # an event of the tab is running (it opens another sample)...
        closer = threading.Thread(target=lambda: released.append(ctx.close_session("s1")))
        closer.start()  # ...when the tab is closed
        closer.join(0.2)
        state, _ = h.on_open(ctx, state, "diving/002")
        ctx.note_session("s1", state)
    closer.join(5)
    assert released == [("alice", "diving/002")]  # the sample the event opened is the one to free
    assert ("alice", "diving/002") not in ctx._open_samples.values()  # no entry left for the dead tab


def test_the_info_line_names_who_holds_the_lease(ctx):
    tab1, _ = _open(ctx)
    tab2, _ = _open(ctx)
    tab1, _ = h.on_release(ctx, tab1)
    bob, _ = _open(ctx, user="bob")
    tab2, view = eh.on_click(ctx, tab2, 40, 30)  # refused: bob has it now
    assert "locked by bob until" in view.info and "locked by you" not in view.info


def test_brush_strokes_refused_for_a_pending_preview_can_be_saved_later(ctx, tmp_path):
    state, _ = _open(ctx, idx=1)
    state, value = eh.brush_value(ctx, state)
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[0:10, 0:10] = (0, 255, 0, 255)
    value = {**value, "layers": [layer]}
    state, _ = eh.on_propagate(ctx, state, 1, 2)
    state, view = eh.on_brush_apply(ctx, state, value)
    assert "save or discard" in view.message
    assert eh.brush_kept(ctx, state)  # the editor keeps the strokes (the page does not reload it)
    state, _ = eh.on_discard_preview(ctx, state)
    state, view = eh.on_brush_apply(ctx, state, value)
    assert "Saved brush edit as version 2" in view.message
    assert ctx.store.current_mask(state.keys[1]).mask()[0:10, 0:10].all()
    assert not eh.brush_kept(ctx, state)  # saved: the editor reloads with the new version


def _two_divers(ctx, sample="diving/001", frames=(0, 1, 2)):
    """Give ``frames`` of ``sample`` a build-masks version with two athletes (synchronized diving):
    per-athlete ``tracks`` with their own RLE. Returns the two divers' ``(H, W)`` bool masks."""
    from _annotator_fixtures import person_mask

    from hmtools.masks import encode_rle
    from hmtools.store_types import MaskWrite

    a, b = person_mask(0.3 * 128, 48, 96, 128, 0.8), person_mask(0.7 * 128, 48, 96, 128, 0.8)
    tracks = [
        {"track": k, "bbox": [1.0, 1.0, 2.0, 2.0], "counts": encode_rle(m)["counts"]} for k, m in enumerate((a, b))
    ]
    writes = [MaskWrite(mask=a | b, score=0.9, tracks=tracks, frame_idx=i) for i in frames]
    ctx.store.write_sample_masks(sample, writes, author="build-masks")
    return a, b


def _ytvis_tracks(ctx, tmp_path, key):
    """``{track: (H, W) bool}`` of frame ``key`` in a YouTube-VIS export of the store."""
    import json

    from hmtools.exchange import export_store
    from hmtools.masks import decode_rle

    out = tmp_path / f"vis{len(list(tmp_path.glob('vis*.json')))}.json"
    export_store(ctx.store.path, "ytvis", out)
    data = json.loads(out.read_text())
    video = next(v for v in data["videos"] if key in v["file_names"])
    i = video["file_names"].index(key)
    anns = [a for a in data["annotations"] if a["video_id"] == video["id"]]
    return {a["track"]: decode_rle(a["segmentations"][i]) for a in anns if a["segmentations"][i] is not None}


def _check_tracks(ctx, tmp_path, key):
    """The export of ``key`` has both athletes' tracks, and they make up its stored mask."""
    parts = _ytvis_tracks(ctx, tmp_path, key)
    assert sorted(parts) == [0, 1]
    assert np.array_equal(parts[0] | parts[1], ctx.store.current_mask(key).mask())
    return parts


def test_a_brush_edit_of_a_two_diver_frame_keeps_both_tracks(ctx, tmp_path):
    a, b = _two_divers(ctx)
    state, _ = _open(ctx, idx=0)
    state, value = eh.brush_value(ctx, state)
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[44:50, 98:110] = (0, 255, 0, 255)  # diver B's arm, painted to the right of B
    layer[30:40, 25:52] = (255, 0, 0, 255)  # part of diver A erased
    state, view = eh.on_brush_apply(ctx, state, {**value, "layers": [layer]})
    assert "Saved brush edit" in view.message
    arm, erased = layer[..., 1] > 0, layer[..., 0] > 0
    parts = _check_tracks(ctx, tmp_path, state.keys[0])
    assert np.array_equal(parts[0], a & ~erased)
    assert np.array_equal(parts[1], (b | arm) & ~erased)


def test_clicks_propagation_and_undo_on_two_diver_frames_keep_both_tracks(ctx, tmp_path):
    a, b = _two_divers(ctx)
    state, _ = _open(ctx, idx=0)
    state, _ = h.on_add(ctx, state, True)
    state, view = eh.on_click(ctx, state, 38, 48)  # on diver A: the answer, mostly on A, widens A
    assert "Saved version" in view.message
    key = state.keys[0]
    parts = _check_tracks(ctx, tmp_path, key)
    assert np.array_equal(parts[1], b) and (parts[0] & ~a).any()
    state, _ = eh.on_propagate(ctx, state, 1, 2)
    state, view = eh.on_save_preview(ctx, state)
    assert "Saved 2 propagated frames" in view.message
    for k in state.keys[1:3]:
        _check_tracks(ctx, tmp_path, k)
    state, _ = eh.on_undo(ctx, state)  # back to the build-masks tracks
    state, _ = eh.on_undo(ctx, state)
    assert np.array_equal(_check_tracks(ctx, tmp_path, key)[0], a)
    state, _ = eh.on_redo(ctx, state)  # the click again
    assert (_check_tracks(ctx, tmp_path, key)[0] & ~a).any()


def test_an_add_click_after_another_tab_saved_adds_to_what_is_on_screen(ctx):
    """Add mode unites the clicks' answer with the mask from before the series; when another tab
    saved the frame in between (and this tab's view then showed it, e.g. after 't'), the series
    starts afresh instead of uniting with its old base and dropping the other tab's edit."""
    a, _ = _open(ctx)
    b, _ = _open(ctx)
    a, _ = h.on_add(ctx, a, True)
    a, _ = eh.on_click(ctx, a, 100, 10)
    b, _ = h.on_goto(ctx, b, 0)  # tab b sees version 2 and paints a block
    b, value = eh.brush_value(ctx, b)
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[80:95, 0:20] = (0, 255, 0, 255)
    b, view = eh.on_brush_apply(ctx, b, {**value, "layers": [layer]})
    assert "version 3" in view.message
    a, _ = h.on_toggle_mode(ctx, a)  # tab a's view now shows version 3
    a, _ = h.on_toggle_mode(ctx, a)
    a, view = eh.on_click(ctx, a, 110, 10)
    assert "Saved version 4" in view.message
    m = ctx.store.current_mask(a.keys[0]).mask()
    assert m[80:95, 0:20].all() and m[10, 110]


def test_edits_of_a_frame_whose_tracks_cannot_be_read_still_save_and_propagate(ctx):
    """A track RLE of another size than the frame (a malformed import) must not make the frame
    uneditable: the edit is saved as the union alone, and propagation splits the mask itself."""
    from hmtools.masks import encode_rle
    from hmtools.store_types import MaskWrite

    state, _ = _open(ctx, idx=1)
    key = state.keys[1]
    rec = ctx.store.current_mask(key)
    wrong = [
        {"track": k, "bbox": [0.0, 0.0, 5.0, 5.0], "counts": encode_rle(np.ones((10, 10), bool))["counts"]}
        for k in (0, 1)
    ]
    ctx.store.put_mask(key, MaskWrite(mask=rec.mask(), tracks=wrong), author="import", expected_version=rec.version)
    state, _ = h.on_goto(ctx, state, 1)
    state, view = eh.on_propagate(ctx, state, 1, 2)
    assert "Preview of 2" in view.message, view.message
    state, _ = eh.on_discard_preview(ctx, state)
    state, view = eh.on_click(ctx, state, 40, 40)
    assert "Saved version 3" in view.message, view.message
    assert ctx.store.current_mask(key).tracks is None
