"""Annotator handlers as plain functions: a real SQLite store, real JPEG frames, a fake backend."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

from annotator_app import edit_handlers as eh
from annotator_app import handlers as h
from annotator_app.backend import FakeBackend
from annotator_app.frames import FrameSource
from annotator_app.render import THUMB_WIDTH
from annotator_app.state import AppContext, SessionState
from hmtools.store import MaskStore
from hmtools.store_admin import lock_holder
from hmtools.store_types import MaskWrite


def _open(ctx, user="alice", sample="diving/001", idx=0):
    state = h.set_user(ctx, SessionState(), user)
    state, view = h.on_open(ctx, state, sample, idx)
    return state, view


def test_open_shows_frame_info_flag_reason_and_locks(ctx):
    state, view = _open(ctx, idx=3)
    assert view.image.shape == (96, 128, 3) and view.n_frames == 8 and view.frame_idx == 3
    assert "flag reason: **low score**" in view.info and "status **flagged**" in view.info
    assert lock_holder(ctx.store, "diving/001").owner == "alice"
    assert view.strip.shape[1] == 800 and view.filmstrip.shape[1] == 8 * (THUMB_WIDTH + 8)
    bob, bview = _open(ctx, user="bob")
    assert bob.sample_id is None and "being edited by alice" in bview.message
    state, _ = h.on_release(ctx, state)
    assert lock_holder(ctx.store, "diving/001") is None
    bob, bview = _open(ctx, user="bob")
    assert bob.sample_id == "diving/001"


def test_positive_then_negative_click_saves_human_versions(ctx, ds):
    state, _ = _open(ctx, idx=3)
    key = state.keys[3]
    assert ctx.store.current_mask(key).version == 1
    state, view = eh.on_click(ctx, state, 40.0, 30.0)
    rec = ctx.store.current_mask(key)
    assert (rec.version, rec.source, rec.author, rec.status) == (2, "human", "alice", "unreviewed")
    m = rec.mask()
    assert m[30, 40] and not m[90, 120] and "Saved version 2" in view.message
    state, _ = h.on_toggle_mode(ctx, state)
    assert state.mode == "negative"
    state, _ = eh.on_click(ctx, state, 40.0, 30.0)
    rec = ctx.store.current_mask(key)
    assert rec.version == 3 and not rec.mask()[30, 40]
    assert ctx.backend.predict_calls == 2


def test_small_frames_are_enlarged_and_clicks_mapped_back(ctx):
    ctx.min_display_width = 640
    state, view = _open(ctx)
    assert state.display_scale == 5 and view.image.shape == (480, 640, 3)
    state, _ = h.on_mode(ctx, state, "box")
    state, _ = eh.on_click(ctx, state, 5 * 10 + 2, 5 * 10 + 4)  # pixel (10, 10) of the frame
    state, _ = eh.on_click(ctx, state, 5 * 50, 5 * 40 + 4)
    assert state.clicks.box == (10.0, 10.0, 50.0, 40.0)


def test_box_mode_needs_two_corners(ctx):
    state, _ = _open(ctx)
    state, _ = h.on_mode(ctx, state, "box")
    state, view = eh.on_click(ctx, state, 10, 10)
    assert "opposite corner" in view.message and ctx.store.current_mask(state.keys[0]).version == 1
    state, view = eh.on_click(ctx, state, 50, 40)
    m = ctx.store.current_mask(state.keys[0]).mask()
    assert m[20, 20] and not m[60, 60] and m.sum() == 41 * 31


def test_brush_adds_green_and_erases_red_strokes(ctx, ds):
    state, _ = _open(ctx)
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[0:10, 0:10] = (0, 255, 0, 150)  # green stroke: add
    state, view = eh.on_brush_apply(ctx, state, {"background": None, "layers": [layer], "composite": None})
    assert "Load frame into brush" in view.message  # strokes need a loaded frame
    state, value = eh.brush_value(ctx, state)
    assert value["background"].shape == (96, 128, 3) and value["layers"] == []
    state, view = eh.on_brush_apply(ctx, state, value)
    assert "No pixel changed" in view.message and ctx.store.current_mask(state.keys[0]).version == 1
    layer[30:40, :] = (255, 0, 0, 150)  # red stroke: erase
    state, view = eh.on_brush_apply(ctx, state, {"background": None, "layers": [layer], "composite": None})
    rec = ctx.store.current_mask(state.keys[0])
    assert (rec.version, rec.source, rec.author) == (2, "human", "alice")
    m = rec.mask()
    truth = ds.truth[state.keys[0]]
    assert m[0:10, 0:10].all() and not m[30:40].any()
    assert np.array_equal(m[50:], truth[50:])  # untouched pixels keep the old mask
    state, view = eh.on_brush_apply(ctx, state, {"background": None, "layers": [layer], "composite": None})
    assert "older version" in view.message  # the editor must be reloaded after a save
    with pytest.raises(Exception, match="the frame is 128x96"):
        eh.mask_from_editor({"layers": [np.zeros((5, 5, 4), np.uint8)]}, np.zeros((96, 128), bool))


def test_undo_redo_write_new_versions_and_keep_history(ctx, ds):
    state, _ = _open(ctx, idx=3)
    key = state.keys[3]
    original = ctx.store.current_mask(key)
    state, _ = eh.on_click(ctx, state, 40, 30)
    clicked = ctx.store.current_mask(key).mask()
    state, _ = eh.on_status(ctx, state, "accepted", "frame")
    assert ctx.store.current_mask(key).status == "accepted"
    state, view = eh.on_undo(ctx, state)  # undo accept
    rec = ctx.store.current_mask(key)
    assert rec.version == 4 and rec.status == "unreviewed" and np.array_equal(rec.mask(), clicked)
    state, view = eh.on_undo(ctx, state)  # undo the click: back to the flagged auto mask
    rec = ctx.store.current_mask(key)
    assert rec.version == 5 and np.array_equal(rec.mask(), original.mask())
    assert (rec.status, rec.reason, rec.source, rec.author) == ("flagged", "low score", "auto", "alice")
    state, view = eh.on_undo(ctx, state)
    assert "Nothing to undo" in view.message
    state, view = eh.on_redo(ctx, state)
    rec = ctx.store.current_mask(key)
    assert rec.version == 6 and np.array_equal(rec.mask(), clicked) and rec.source == "human"
    assert [r.version for r in ctx.store.history(key)] == [1, 2, 3, 4, 5, 6]


def test_stale_save_is_refused_and_view_reloads(ctx, ds):
    state, _ = _open(ctx, idx=2)
    key = state.keys[2]
    # someone else (same user in another tab, or a re-run) writes version 2 after we saw version 1
    ctx.store.put_mask(
        key, MaskWrite(mask=np.zeros((96, 128), bool), source="human"), author="other", expected_version=1
    )
    state, view = eh.on_click(ctx, state, 40, 30)
    assert "Refused, not saved" in view.message and "version 2 (by other)" in view.message
    assert ctx.store.current_mask(key).version == 2 and state.seen[2] == 2
    state, view = eh.on_click(ctx, state, 40, 30)  # after seeing the new version the edit goes through
    assert ctx.store.current_mask(key).version == 3


def test_accept_range_and_sample_and_reject(ctx):
    state, _ = _open(ctx)
    state, view = eh.on_status(ctx, state, "accepted", "range", 2, 4)
    assert [ctx.store.current_mask(k).status for k in state.keys[:5]] == [
        "unreviewed",
        "accepted",
        "accepted",
        "accepted",
        "unreviewed",
    ]
    state, view = eh.on_status(ctx, state, "rejected", "sample")
    assert {ctx.store.current_mask(k).status for k in state.keys} == {"rejected"}
    state, view = eh.on_status(ctx, state, "accepted", "range", 0, 9)
    assert "within 1..8" in view.message
    state, _ = eh.on_undo(ctx, state)
    assert ctx.store.current_mask(state.keys[1]).status == "accepted"


def test_propagation_preview_is_not_saved_until_save(ctx, ds):
    state, _ = _open(ctx, idx=1)
    state, view = eh.on_propagate(ctx, state, 1, 3)
    assert sorted(state.preview) == [2, 3, 4] and view.has_preview and "PREVIEW" not in view.info
    assert all(ctx.store.current_mask(state.keys[j]).version == 1 for j in (2, 3, 4))
    state, view = h.on_goto(ctx, state, 3)
    assert "PREVIEW (not saved)" in view.info
    state, view = eh.on_click(ctx, state, 5, 5)
    assert "save or discard" in view.message
    state, view = eh.on_save_preview(ctx, state)
    recs = [ctx.store.current_mask(state.keys[j]) for j in (2, 3, 4)]
    assert [(r.version, r.source, r.author) for r in recs] == [(2, "propagated", "alice")] * 3
    # each frame was prompted from the previous answer: non-empty, inside the start mask's padded box
    start_box = ctx.store.current_mask(state.keys[1]).bbox
    assert all(r.area > 0 and r.score == pytest.approx(0.9) for r in recs)
    assert recs[0].bbox[0] >= start_box[0] - 3 and recs[0].bbox[2] <= start_box[2] + 3
    state, _ = eh.on_undo(ctx, state)
    assert all(ctx.store.current_mask(state.keys[j]).version == 3 for j in (2, 3, 4))
    state, _ = eh.on_propagate(ctx, state, -1, 5)
    assert state.frame_idx == 2 and sorted(state.preview) == [0, 1]  # undo showed frame 2
    state, view = eh.on_discard_preview(ctx, state)
    assert not state.preview and ctx.store.current_mask(state.keys[0]).version == 1


def test_queue_progress_filters_and_next_flagged(ctx):
    rows, summary = h.queue_table(ctx, "all", "all")
    assert rows == [
        ["diving/001", "", "train", 8, 0, 1, 0, 7, 0, "aqa7"],
        ["diving/002", "", "test", 8, 0, 1, 0, 7, 0, "aqa7"],
    ]
    assert "16 frames: 0 accepted · 2 flagged" in summary
    assert [r[0] for r in h.queue_table(ctx, "test", "all")[0]] == ["diving/002"]
    state, view = h.on_next_flagged(ctx, h.set_user(ctx, SessionState(), "alice"))
    assert (state.sample_id, state.frame_idx) == ("diving/001", 3)
    assert h.queue_table(ctx, "all", "all")[0][0][1] == "alice"
    state, _ = eh.on_status(ctx, state, "accepted", "frame")
    assert h.queue_table(ctx, "all", "has flagged")[0][0][0] == "diving/002"
    state, view = h.on_next_flagged(ctx, state)
    assert (state.sample_id, state.frame_idx) == ("diving/002", 3)
    assert lock_holder(ctx.store, "diving/001") is None  # moving on released the old sample
    bob = h.set_user(ctx, SessionState(), "bob")
    bob, view = h.on_next_flagged(ctx, bob)
    assert bob.sample_id is None and "No flagged frame" in view.message  # alice holds the only one


def test_lease_expiry_is_detected(ds):
    store = MaskStore(ds.store_path, create=False)
    ctx = AppContext(store=store, frames=FrameSource(ds.root), backend=FakeBackend(), lock_ttl_s=0.2)
    state, _ = _open(ctx)
    time.sleep(0.3)
    bob, _ = _open(ctx, user="bob")
    assert bob.sample_id == "diving/001"
    state, view = eh.on_click(ctx, state, 40, 30)
    assert "expired and bob has it now" in view.message
    assert store.current_mask(state.keys[0]).version == 1


def test_restart_loses_nothing(ds):
    store = MaskStore(ds.store_path, create=False)
    ctx = AppContext(store=store, frames=FrameSource(ds.root), backend=FakeBackend())
    state, _ = _open(ctx)
    state, _ = eh.on_click(ctx, state, 40, 30)
    saved = store.current_mask(state.keys[0])
    store.close()  # the "server" goes away without any shutdown step
    store2 = MaskStore(ds.store_path, create=False)
    ctx2 = AppContext(store=store2, frames=FrameSource(ds.root), backend=FakeBackend())
    state2, view = _open(ctx2)  # same user re-opens: own lease is still valid
    assert state2.seen[0] == saved.version == 2 and "source **human**" in view.info
    store2.close()


def test_navigation_prefetches_neighbours_and_filmstrip_click(ctx):
    state, _ = _open(ctx, idx=4)
    # current frame first, then up to 4 ahead and 2 behind
    assert ctx.backend.prefetched[-6:] == [state.keys[j] for j in (4, 5, 6, 7, 3, 2)]
    state, view = h.on_filmstrip_click(ctx, state, 2 * (THUMB_WIDTH + 8) + 5)
    assert view.frame_idx == 2
    state, view = h.on_strip_click(ctx, state, 799)
    assert view.frame_idx == 7
    state, view = h.on_step(ctx, state, 5)
    assert view.frame_idx == 7


def test_missing_frame_is_a_message_not_a_crash(ctx, ds):
    (ds.root / ds.samples[0].frames[5]).unlink()
    state, _ = _open(ctx)
    state, view = h.on_goto(ctx, state, 5)
    assert "cannot read frame" in view.message
    state, view = h.on_goto(ctx, state, 4)  # its neighbour shows, with a grey thumbnail for it
    assert view.image is not None and view.frame_idx == 4 and view.message == ""


def test_handlers_do_not_import_gradio():
    code = "import sys, annotator_app.handlers, annotator_app.edit_handlers; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_click_and_propagate_with_a_real_tiny_sam(ds):
    from annotator_app.backend import SamBackend
    from pipelines.segment_tiny import build_tiny_sam_segmenter

    backend = SamBackend(build_tiny_sam_segmenter(seed=0), cache_mb=64)
    store = MaskStore(ds.store_path, create=False)
    ctx = AppContext(store=store, frames=FrameSource(ds.root), backend=backend, min_display_width=1)
    state, _ = _open(ctx, idx=2)
    state, view = eh.on_click(ctx, state, 40, 30)
    state, view = eh.on_click(ctx, state, 60, 50)  # second click reuses the embedding and the logits
    rec = store.current_mask(state.keys[2])
    assert rec.version == 3 and rec.source == "human" and rec.rle["size"] == [96, 128]
    assert state.clicks.logits.shape == (64, 64)
    state, view = eh.on_propagate(ctx, state, 1, 2)
    assert "Preview of" in view.message or "Not done" in view.message
    assert store.current_mask(state.keys[3]).version == 1  # nothing saved by a preview
    backend.close()
    store.close()


def test_sample_without_masks(ctx, ds):
    from hmtools.schema import Sample

    keys = ds.samples[0].frames  # reuse the pictures under new keys
    new = tuple(k.replace("diving-out/001", "diving-out/009") for k in keys)
    for a, b in zip(keys, new, strict=True):
        (ds.root / b).parent.mkdir(parents=True, exist_ok=True)
        (ds.root / b).write_bytes((ds.root / a).read_bytes())
    ctx.store.add_samples([Sample("diving/009", "aqa7", new, "train")])
    assert h.queue_table(ctx, "all", "has unreviewed")[0][-1][:9] == ["diving/009", "", "train", 8, 0, 0, 0, 0, 8]
    state, view = _open(ctx, sample="diving/009")
    assert "no mask yet" in view.info
    state, view = eh.on_status(ctx, state, "accepted", "sample")
    assert "Marked 0 frames accepted (8 without a mask skipped)" in view.message
    state, view = eh.on_click(ctx, state, 40, 30)
    assert ctx.store.current_mask(new[0]).version == 1
    state, view = eh.on_undo(ctx, state)  # the frame had no mask: undo writes an empty one
    rec = ctx.store.current_mask(new[0])
    assert rec.version == 2 and rec.area == 0


def test_frame_source_refuses_keys_outside_the_root(ds, tmp_path):
    frames = FrameSource(ds.root)
    with pytest.raises(Exception, match="outside the dataset root"):
        frames.path("../masks.db")
    with pytest.raises(Exception, match="outside the dataset root"):
        frames.path("/etc/passwd")
    key = ds.samples[0].frames[0]
    assert frames.load(key).shape == (96, 128, 3) and frames.thumbnail(key, 64).shape == (48, 64, 3)


def test_closing_the_last_tab_frees_the_sample(ctx):
    tab1, _ = _open(ctx)
    tab2, _ = _open(ctx)
    bob, _ = _open(ctx, user="bob", sample="diving/002")
    for session, state in (("s1", tab1), ("s2", tab2), ("s3", bob)):
        ctx.note_session(session, state)
    assert ctx.close_session("s1") is None  # alice's other tab still has it
    assert ctx.close_session("s2") == ("alice", "diving/001")
    assert ctx.close_session("s9") is None  # unknown session


def test_edit_after_the_lease_went_to_someone_else_is_refused(ctx):
    tab1, _ = _open(ctx)
    tab2, _ = _open(ctx)  # the same annotator in a second tab shares the lease
    tab1, _ = h.on_release(ctx, tab1)
    bob, _ = _open(ctx, user="bob")
    assert bob.sample_id == "diving/001"
    tab2, view = eh.on_click(ctx, tab2, 40, 30)
    assert "bob has it now; nothing was saved" in view.message
    assert ctx.store.current_mask(tab2.keys[0]).version == 1


def test_a_backend_failure_keeps_the_page_alive(ctx):
    class Broken(FakeBackend):
        def predict(self, key, load, prompt):
            raise RuntimeError("CUDA out of memory")

    ctx.backend = Broken()
    state, _ = _open(ctx)
    state, view = eh.on_click(ctx, state, 40, 30)
    assert "RuntimeError: CUDA out of memory" in view.message and view.image is not None
    assert ctx.store.current_mask(state.keys[0]).version == 1
