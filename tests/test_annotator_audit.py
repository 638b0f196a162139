"""Annotator edge cases found in an audit: clicks outside the frame, frame files gone or of another
size, undo under a pending preview, undo kept across reopening a sample, empty number fields, a
read-only store, and the documented keyboard shortcuts against what the page binds."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from annotator_app import edit_handlers as eh
from annotator_app import handlers as h
from annotator_app.render import render_frame
from annotator_app.shortcuts import SHORTCUTS, key_map, shortcuts_head, shortcuts_markdown
from annotator_app.state import SessionState
from hmtools.errors import InputError
from hmtools.store_types import MaskWrite


def _open(ctx, user="alice", sample="diving/001", idx=0):
    return h.on_open(ctx, h.set_user(ctx, SessionState(), user), sample, idx)


def _version(ctx, key):
    return ctx.store.current_mask(key).version


def test_a_click_outside_the_frame_is_refused_and_saves_nothing(ctx):
    """It used to save SAM's (empty) answer over the athlete's mask, then every view of the frame
    crashed while drawing the click."""
    state, _ = _open(ctx)
    key = state.keys[0]
    area = ctx.store.current_mask(key).area
    for x, y in ((1000, 1000), (-5, 10), (128, 5)):
        state, view = eh.on_click(ctx, state, x, y)
        assert "lies outside the 128x96 frame; nothing was saved" in view.message
        assert view.image is not None
    assert _version(ctx, key) == 1 and ctx.store.current_mask(key).area == area
    state, view = h.on_toggle_mode(ctx, state)  # the page goes on
    assert view.image is not None and "Click mode: negative" in view.message


def test_drawing_clicks_that_lie_outside_the_picture_does_not_fail():
    img = render_frame(np.zeros((20, 30, 3), np.uint8), None, points=[(500.0, 500.0), (-40.0, 3.0)], labels=[1, 0])
    assert img.shape == (20, 30, 3) and not img.any()


def test_a_frame_file_of_another_size_is_shown_resized_and_pixel_edits_are_refused(ctx, ds):
    key = ds.samples[0].frames[4]
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(ds.root / key)  # re-extracted at half size
    state, view = _open(ctx, idx=4)
    assert view.image.shape == (96, 128, 3) and "Frame size mismatch" in view.message, view.message
    assert view.filmstrip is not None and view.n_frames == 8
    state, view = eh.on_click(ctx, state, 40, 30)
    assert "is 64x48 but the store's masks of it are 128x96" in view.message
    assert _version(ctx, key) == 1
    state, value = eh.brush_value(ctx, state)  # the brush still paints at the masks' size
    assert value["background"].shape == (96, 128, 3)
    state, view = eh.on_status(ctx, state, "accepted", "frame")  # reviewing needs no pixels
    assert ctx.store.current_mask(key).status == "accepted"
    state, _ = h.on_goto(ctx, state, 2)
    state, view = eh.on_propagate(ctx, state, 1, 4)  # the chain stops before the odd frame
    assert sorted(state.preview) == [3] and "stopped at " + key in view.message, view.message


def test_a_frame_file_deleted_while_the_app_runs_leaves_the_page_usable(ctx, ds):
    key = ds.samples[0].frames[5]
    (ds.root / key).unlink()
    state, _ = _open(ctx, idx=3)
    state, view = h.on_goto(ctx, state, 5)
    assert "cannot read frame" in view.message and "grey stand-in" in view.message
    assert view.image.shape == (96, 128, 3) and view.filmstrip is not None and view.strip is not None
    assert view.n_frames == 8 and view.frame_idx == 5  # the slider and the filmstrip still navigate
    state, view = eh.on_click(ctx, state, 40, 30)
    assert "cannot read frame" in view.message and _version(ctx, key) == 1
    state, _ = h.on_goto(ctx, state, 3)
    state, view = eh.on_propagate(ctx, state, 1, 4)  # frame 5 is reached but gone: frames 4 kept
    assert sorted(state.preview) == [4] and f"stopped at {key}" in view.message, view.message


def test_undo_is_refused_while_a_preview_covers_its_frames(ctx):
    """Undoing under the preview changed a previewed frame, so the preview's save was refused and
    the whole preview dropped."""
    state, _ = _open(ctx, idx=3)
    state, _ = eh.on_click(ctx, state, 40, 30)
    state, _ = h.on_goto(ctx, state, 1)
    state, _ = eh.on_propagate(ctx, state, 1, 3)
    assert sorted(state.preview) == [2, 3, 4]
    state, view = eh.on_undo(ctx, state)
    assert "save or discard the propagation preview first" in view.message
    assert _version(ctx, state.keys[3]) == 2 and len(state.undo) == 1  # nothing written, the step kept
    state, view = eh.on_save_preview(ctx, state)
    assert "Saved 3 propagated frames" in view.message
    state, view = eh.on_undo(ctx, state)  # no preview now: the saved propagation is undone
    assert view.message.startswith("Undone: 3 frame(s)"), view.message


def test_undo_history_is_kept_when_the_sample_is_opened_again(ctx):
    state, _ = _open(ctx)
    key = state.keys[0]
    state, _ = eh.on_click(ctx, state, 40, 30)
    state, _ = h.on_release(ctx, state)
    state, view = h.on_open(ctx, state, "diving/001")
    assert "undo 1" in view.info
    state, view = eh.on_undo(ctx, state)
    assert "Undone: 1 frame(s)" in view.message and ctx.store.current_mask(key).source == "auto"
    state, _ = h.on_open(ctx, state, "diving/002")  # another sample has its own (empty) history
    state, view = eh.on_undo(ctx, state)
    assert "Nothing to undo" in view.message
    state, _ = h.on_open(ctx, state, "diving/001")
    state, view = eh.on_redo(ctx, state)
    assert "Redone: 1 frame(s)" in view.message and ctx.store.current_mask(key).source == "human"
    assert [r.version for r in ctx.store.history(key)] == [1, 2, 3, 4]


def test_a_kept_undo_step_that_someone_changed_meanwhile_is_refused(ctx):
    state, _ = _open(ctx)
    key = state.keys[0]
    state, _ = eh.on_click(ctx, state, 40, 30)
    state, _ = h.on_release(ctx, state)
    bob, _ = _open(ctx, user="bob")
    bob, _ = eh.on_click(ctx, bob, 80, 60)
    bob, _ = h.on_release(ctx, bob)
    state, _ = h.on_open(ctx, state, "diving/001")
    state, view = eh.on_undo(ctx, state)
    assert "Refused, not saved" in view.message and "dropped from the undo list" in view.message
    rec = ctx.store.current_mask(key)
    assert (rec.version, rec.author) == (3, "bob")  # bob's edit is not overwritten


def test_empty_range_or_propagation_count_is_a_message(ctx):
    state, _ = _open(ctx)
    state, view = eh.on_status(ctx, state, "accepted", "range", None, 3)
    assert "type the range's first and last frame" in view.message
    state, view = eh.on_propagate(ctx, state, 1, None)
    assert "type how many frames to propagate" in view.message
    assert not state.preview and {ctx.store.current_mask(k).version for k in state.keys} == {1}


def test_a_read_only_store_is_refused_before_the_server_starts(ds, monkeypatch):
    """On a store file it cannot write, the app started, listed the queue, and every Open failed
    with "OperationalError: attempt to write a readonly database"."""
    import annotator_app.server as server

    real = server.os.access
    store = ds.store_path.resolve()
    monkeypatch.setattr(server.os, "access", lambda p, mode: False if p == store else real(p, mode))

    def started(*args, **kwargs):
        raise RuntimeError("the server went on to start")

    monkeypatch.setattr("annotator_app.backend.build_backend", started)
    with pytest.raises(InputError, match="is read-only here"):
        server.serve(ds.store_path, ds.root, segmenter="fake")


def test_documented_shortcuts_are_the_bound_ones():
    doc = (REPO / "docs" / "annotator.md").read_text()
    assert shortcuts_markdown() in doc  # the docs' table is the app's table
    head = shortcuts_head()
    bound = re.search(r"const KEYS = (\{.*?\});", head).group(1)
    import json

    assert json.loads(bound) == key_map()
    app = (REPO / "annotator_app" / "app.py").read_text()
    for _, _, target in SHORTCUTS:
        assert f'elem_id="{target}"' in app, target
    # keys stay usable after the mouse used a checkbox, radio button or slider; not in text fields
    assert '"TEXTAREA"' in head and "TEXT.has" in head and "toLowerCase()" in head


def test_every_edit_is_a_new_version_and_nothing_is_lost(ctx):
    """Click, brush, propagate+save, accept, undo, redo: one new version each, every one in the history."""
    state, _ = _open(ctx, idx=1)
    key = state.keys[1]
    state, _ = eh.on_click(ctx, state, 40, 30)
    state, value = eh.brush_value(ctx, state)
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[0:5, 0:5] = (0, 255, 0, 255)
    state, _ = eh.on_brush_apply(ctx, state, {**value, "layers": [layer]})
    state, _ = eh.on_status(ctx, state, "accepted", "frame")
    state, _ = eh.on_undo(ctx, state)
    state, _ = eh.on_redo(ctx, state)
    hist = ctx.store.history(key)
    assert [r.version for r in hist] == [1, 2, 3, 4, 5, 6]
    assert [r.source for r in hist] == ["auto", "human", "human", "human", "human", "human"]
    assert [r.status for r in hist][-3:] == ["accepted", "unreviewed", "accepted"]
    assert all(r.author == "alice" for r in hist[1:])
    ctx.store.put_mask(key, MaskWrite.copy_of(hist[-1]), author="build-masks", expected_version=6)
    state, view = eh.on_click(ctx, state, 10, 10)  # a re-run wrote version 7 meanwhile: refused
    assert "Refused, not saved" in view.message and _version(ctx, key) == 7


def test_leaving_a_sample_in_one_tab_keeps_the_lease_another_tab_works_under(ctx):
    """Tab 1 moving on (or Release) gave up the lease while tab 2 of the same annotator still had
    the sample open: bob could take it and tab 2's next edit was refused."""
    from hmtools.store_admin import lock_holder

    tab1, _ = _open(ctx)
    tab2, _ = _open(ctx)
    ctx.note_session("s1", tab1)
    ctx.note_session("s2", tab2)
    tab1, _ = h.on_open(ctx, tab1, "diving/002")  # tab 1 moves on
    ctx.note_session("s1", tab1)
    assert lock_holder(ctx.store, "diving/001").owner == "alice"
    bob, view = _open(ctx, user="bob")
    assert bob.sample_id is None and "being edited by alice" in view.message
    tab2, view = eh.on_click(ctx, tab2, 40, 30)
    assert "Saved version 2" in view.message
    tab1, _ = h.on_open(ctx, tab1, "diving/001")
    ctx.note_session("s1", tab1)
    tab1, view = h.on_release(ctx, tab1)
    assert "its lease stays while another tab of yours has it open" in view.message
    assert lock_holder(ctx.store, "diving/001").owner == "alice"
    ctx.note_session("s1", tab1)
    tab2, view = h.on_release(ctx, tab2)  # the last tab: given back
    assert view.message == "Released." and lock_holder(ctx.store, "diving/001") is None


def test_brush_strokes_refused_for_a_newer_version_stay_on_the_reloaded_frame(ctx):
    """A stale brush save reloaded the editor empty: the strokes were lost. Now the reloaded picture
    of the new version shows them, and the next save applies them to that version."""
    state, value = eh.brush_value(ctx, _open(ctx, idx=2)[0])
    key = state.keys[2]
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[0:8, 0:8] = (0, 255, 0, 255)
    newer = np.zeros((96, 128), bool)
    newer[80:90, 100:120] = True  # a build-masks re-run writes version 2 meanwhile
    ctx.store.put_mask(key, MaskWrite(mask=newer, source="auto"), author="build-masks", expected_version=1)
    state, view = eh.on_brush_apply(ctx, state, {**value, "layers": [layer]})
    assert "changed since it was loaded into the brush" in view.message and _version(ctx, key) == 2
    state, reloaded = eh.brush_after_save(ctx, state)
    assert reloaded["background"][4, 4].tolist() == [0, 255, 0] and reloaded["layers"] == []
    assert reloaded["background"][85, 110].tolist() != value["background"][85, 110].tolist()  # the new mask
    more = np.zeros((96, 128, 4), np.uint8)
    more[40:44, 60:64] = (0, 255, 0, 255)  # and one more stroke on the reloaded picture
    state, view = eh.on_brush_apply(ctx, state, {**reloaded, "layers": [more]})
    assert "Saved brush edit as version 3" in view.message, view.message
    m = ctx.store.current_mask(key).mask()
    assert m[0:8, 0:8].all() and m[40:44, 60:64].all() and m[80:90, 100:120].all()
    state, fresh = eh.brush_after_save(ctx, state)
    assert fresh["background"][4, 4].tolist() != [0, 255, 0] or m[4, 4]  # no strokes drawn any more
    assert state.brush_kept_strokes is None
