"""The Gradio page: layout and event wiring only. Logic lives in :mod:`annotator_app.handlers`
and :mod:`annotator_app.edit_handlers`; per-user data in ``gr.State(SessionState)``; the store,
frames and segmentation backend come in through the :class:`AppContext`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from annotator_app import edit_handlers as eh
from annotator_app import handlers as h
from annotator_app.components import brush_editor, view_outputs
from annotator_app.review_queue import QUEUE_COLUMNS, QUEUE_FILTERS
from annotator_app.shortcuts import shortcuts_markdown
from annotator_app.state import MODES, AppContext, SessionState
from hmtools.store_admin import release_lock


def build_app(ctx: AppContext) -> gr.Blocks:
    """Build the annotator page over ``ctx`` (its store, frames and backend are shared by all
    sessions; everything per user is in ``gr.State``)."""

    def _closed(request: gr.Request) -> None:  # the tab was closed: give its lease back
        held = ctx.close_session(request.session_hash or "")
        if held is not None:
            release_lock(ctx.store, held[1], held[0])

    with gr.Blocks(title="hmtools annotate") as demo:
        state = gr.State(SessionState())
        with gr.Row():
            with gr.Column(scale=1, min_width=420):
                gr.Markdown("### Queue")
                with gr.Row():
                    split = gr.Dropdown(["all", "train", "test"], value="all", label="Split")
                    status = gr.Dropdown(list(QUEUE_FILTERS), value="all", label="Samples")
                reason = gr.Textbox(
                    label="Flag reason contains (queue and Next flagged)",
                    elem_id="hm-reason",
                    placeholder="e.g. small in frame, one athlete found",
                )
                summary = gr.Markdown(elem_id="hm-summary")
                table = gr.Dataframe(headers=list(QUEUE_COLUMNS), interactive=False, elem_id="hm-queue", max_height=360)
                refresh = gr.Button("Refresh queue", size="sm")
                sample_id = gr.Textbox(
                    label="Sample id", elem_id="hm-sample-id", placeholder="click a row or type an id"
                )
                with gr.Row():
                    open_btn = gr.Button("Open", variant="primary", elem_id="hm-open")
                    release_btn = gr.Button("Release", elem_id="hm-release")
                next_flag = gr.Button("Next flagged frame (f)", elem_id="hm-next-flagged")
                with gr.Accordion("Keyboard shortcuts", open=True):
                    gr.Markdown(shortcuts_markdown())
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="hm-message")
                image = gr.Image(
                    type="numpy",
                    format="jpeg",
                    interactive=False,
                    label="Frame: click to prompt SAM",
                    elem_id="hm-frame",
                    buttons=["fullscreen"],
                    height=520,
                )
                info = gr.Markdown(elem_id="hm-info")
                with gr.Row():
                    prev_btn = gr.Button("◀ Prev (a)", elem_id="hm-prev", size="sm")
                    slider = gr.Slider(1, 2, value=1, step=1, label="Frame", elem_id="hm-slider", scale=4)
                    next_btn = gr.Button("Next (d) ▶", elem_id="hm-next", size="sm")
                film = gr.Image(
                    type="numpy", format="jpeg", interactive=False, show_label=False, elem_id="hm-filmstrip", buttons=[]
                )
                strip = gr.Image(
                    type="numpy",
                    format="png",
                    interactive=False,
                    show_label=False,
                    elem_id="hm-strip",
                    buttons=[],
                    height=30,
                )
                with gr.Row():
                    mode = gr.Radio(list(MODES), value="positive", label="Click mode", elem_id="hm-mode")
                    toggle = gr.Button("Toggle +/− (t)", elem_id="hm-toggle", size="sm")
                    add = gr.Checkbox(value=False, label="Add to mask (another person)", elem_id="hm-add")
                    clear = gr.Button("Clear clicks (c)", elem_id="hm-clear", size="sm")
                    opacity = gr.Slider(0, 1, value=0.45, step=0.05, label="Mask opacity", elem_id="hm-opacity")
                    onion = gr.Checkbox(value=True, label="Onion skin (prev blue / next yellow)", elem_id="hm-onion")
                with gr.Row():
                    accept = gr.Button("Accept frame (y)", variant="primary", elem_id="hm-accept")
                    reject = gr.Button("Reject frame (x)", variant="stop", elem_id="hm-reject")
                    undo = gr.Button("Undo (z)", elem_id="hm-undo")
                    redo = gr.Button("Redo (Z)", elem_id="hm-redo")
                    acc_all = gr.Button("Accept sample", elem_id="hm-accept-sample")
                    rej_all = gr.Button("Reject sample", elem_id="hm-reject-sample")
                with gr.Row(equal_height=True):
                    first = gr.Number(1, precision=0, label="Range from", elem_id="hm-range-from", min_width=80)
                    last = gr.Number(1, precision=0, label="to", elem_id="hm-range-to", min_width=80)
                    acc_range = gr.Button("Accept range", elem_id="hm-accept-range", min_width=90)
                    rej_range = gr.Button("Reject range", elem_id="hm-reject-range", min_width=90)
                    n_prop = gr.Number(
                        10, precision=0, minimum=1, label="Propagate N", elem_id="hm-prop-n", min_width=80
                    )
                    back = gr.Button("◀ Propagate", elem_id="hm-prop-back", min_width=90)
                    fwd = gr.Button("Propagate ▶", elem_id="hm-prop-fwd", min_width=90)
                    save_prev = gr.Button(
                        "Save preview", variant="primary", visible=False, elem_id="hm-prop-save", min_width=90
                    )
                    discard = gr.Button(
                        "Discard preview", variant="stop", visible=False, elem_id="hm-prop-discard", min_width=90
                    )
                with gr.Accordion("Brush / eraser (pixel edits)", open=False, elem_id="hm-brush-panel"):
                    editor = brush_editor()
                    with gr.Row():
                        load_brush = gr.Button("Load frame into brush", elem_id="hm-brush-load")
                        apply_brush = gr.Button("Save brush edit", variant="primary", elem_id="hm-brush-apply")

        outs = [state, image, info, message, slider, film, strip, save_prev, discard, mode]

        def load_queue(sp: str, st: str, why: str) -> tuple[list[list[Any]], str]:
            return h.queue_table(ctx, sp, st, why)

        def wire(
            event: Callable[..., Any],
            fn: Callable[..., Any],
            inputs: Sequence[Any] = (),
            select: bool = False,
            queue: bool = False,
        ) -> Any:
            if select:

                def run(request: gr.Request, evt: gr.SelectData, st: SessionState, *args: Any) -> tuple[Any, ...]:
                    with ctx.session_lock(request.session_hash or ""):
                        result = fn(ctx, h.set_user(ctx, st, request.username), evt, *args)
                        ctx.note_session(request.session_hash or "", result[0])
                        return view_outputs(result)
            else:

                def run(request: gr.Request, st: SessionState, *args: Any) -> tuple[Any, ...]:
                    with ctx.session_lock(request.session_hash or ""):
                        result = fn(ctx, h.set_user(ctx, st, request.username), *args)
                        ctx.note_session(request.session_hash or "", result[0])
                        return view_outputs(result)

            dep = event(run, [state, *inputs], outs, show_progress="minimal")
            if queue:  # the action changed review progress or locks: refresh the queue too
                dep.then(load_queue, [split, status, reason], [table, summary], show_progress="hidden")
            return dep

        for ev in (demo.load, refresh.click, split.change, status.change, reason.submit, reason.blur):
            ev(load_queue, [split, status, reason], [table, summary])

        def pick_row(evt: gr.SelectData) -> str:
            return str(evt.row_value[0])

        table.select(pick_row, None, sample_id)
        wire(table.select, lambda c, s, e: h.on_open(c, s, str(e.row_value[0])), select=True, queue=True)
        wire(open_btn.click, lambda c, s, sid: h.on_open(c, s, sid), [sample_id], queue=True)
        wire(sample_id.submit, lambda c, s, sid: h.on_open(c, s, sid), [sample_id], queue=True)
        wire(release_btn.click, h.on_release, queue=True)
        wire(next_flag.click, h.on_next_flagged, [split, reason], queue=True)
        wire(prev_btn.click, lambda c, s: h.on_step(c, s, -1))
        wire(next_btn.click, lambda c, s: h.on_step(c, s, 1))
        wire(slider.release, lambda c, s, v: h.on_goto(c, s, int(v) - 1), [slider])
        wire(image.select, lambda c, s, e: eh.on_click(c, s, e.index[0], e.index[1]), select=True)
        wire(film.select, lambda c, s, e: h.on_filmstrip_click(c, s, e.index[0]), select=True)
        wire(strip.select, lambda c, s, e: h.on_strip_click(c, s, e.index[0]), select=True)
        wire(mode.input, h.on_mode, [mode])
        wire(toggle.click, h.on_toggle_mode)
        wire(add.input, h.on_add, [add])
        wire(clear.click, h.on_clear_clicks)
        wire(opacity.release, h.on_display, [opacity, onion])
        wire(onion.input, h.on_display, [opacity, onion])
        wire(accept.click, lambda c, s: eh.on_status(c, s, "accepted", "frame"), queue=True)
        wire(reject.click, lambda c, s: eh.on_status(c, s, "rejected", "frame"), queue=True)
        wire(
            acc_range.click, lambda c, s, a, b: eh.on_status(c, s, "accepted", "range", a, b), [first, last], queue=True
        )
        wire(
            rej_range.click, lambda c, s, a, b: eh.on_status(c, s, "rejected", "range", a, b), [first, last], queue=True
        )
        wire(acc_all.click, lambda c, s: eh.on_status(c, s, "accepted", "sample"), queue=True)
        wire(rej_all.click, lambda c, s: eh.on_status(c, s, "rejected", "sample"), queue=True)
        wire(undo.click, eh.on_undo, queue=True)
        wire(redo.click, eh.on_redo, queue=True)
        wire(fwd.click, lambda c, s, n: eh.on_propagate(c, s, 1, n), [n_prop])
        wire(back.click, lambda c, s, n: eh.on_propagate(c, s, -1, n), [n_prop])
        wire(save_prev.click, eh.on_save_preview, queue=True)
        wire(discard.click, eh.on_discard_preview)
        saved = wire(apply_brush.click, eh.on_brush_apply, [editor])

        def after_brush(st: SessionState) -> tuple[Any, Any]:
            # fresh strokes layer after a save; the strokes kept when they can be saved again
            out = eh.brush_after_save(ctx, st)
            return (st, gr.skip()) if out is None else out

        saved.then(after_brush, [state], [state, editor])
        demo.unload(_closed)
        load_brush.click(lambda st: eh.brush_value(ctx, st), [state], [state, editor])
    return demo
