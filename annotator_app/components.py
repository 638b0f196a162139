"""Gradio components with many settings, built here to keep the layout in app.py readable."""

from __future__ import annotations

import gradio as gr

from annotator_app.edit_handlers import ADD_COLOR, ERASE_COLOR


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
