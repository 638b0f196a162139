"""Gradio components with many settings, built here to keep the layout in app.py readable."""

from __future__ import annotations

from typing import Any

import gradio as gr

from annotator_app.edit_handlers import ADD_COLOR, ERASE_COLOR
from annotator_app.state import SessionState
from annotator_app.view import View


def brush_editor() -> gr.ImageEditor:
    """The pixel editor: the frame (mask tinted) as background, one stroke layer, a fixed palette
    of an "add" and an "erase" colour, and the eraser (which removes strokes)."""
    return gr.ImageEditor(
        type="numpy",
        image_mode="RGBA",
        sources=(),
        transforms=(),
        format="png",
        layers=gr.LayerOptions(allow_additional_layers=False, layers=["strokes"]),
        brush=gr.Brush(colors=[ADD_COLOR, ERASE_COLOR], default_color=ADD_COLOR, color_mode="fixed", default_size=6),
        eraser=gr.Eraser(default_size=10),
        elem_id="hm-editor",
        label="Green paint adds to the mask, red paint erases from it (the eraser tool removes strokes)",
    )


def view_outputs(result: tuple[SessionState, View]) -> tuple[Any, ...]:
    """A handler's ``(state, View)`` as the values of app.py's output components, in order:
    state, frame, info, message, slider, filmstrip, status strip, save/discard preview, click mode."""
    state, v = result
    n = max(v.n_frames, 1)
    return (
        state,
        v.image,
        v.info,
        v.message,
        gr.Slider(minimum=1, maximum=max(n, 2), value=v.frame_idx + 1, interactive=v.n_frames > 1),
        v.filmstrip,
        v.strip,
        gr.Button(visible=v.has_preview),
        gr.Button(visible=v.has_preview),
        gr.Radio(value=state.mode),
    )
