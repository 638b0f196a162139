"""The annotator's pictures: mask tint, outlines and the onion skin (numpy/OpenCV, no gradio)."""

from __future__ import annotations

import numpy as np

from annotator_app.render import MASK_COLOR, PREV_COLOR, outline, render_frame


def _frame(h: int = 60, w: int = 80) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_outline_of_a_rectangle_is_a_ring_of_the_given_thickness() -> None:
    mask = np.zeros((40, 50), bool)
    mask[10:30, 5:45] = True
    ring = outline(mask, 2)
    inner = np.zeros_like(mask)
    inner[12:28, 7:43] = True
    assert np.array_equal(ring, mask & ~inner)


def test_a_mask_touching_the_frame_edge_has_no_outline_along_it() -> None:
    mask = np.zeros((40, 50), bool)
    mask[:, :20] = True  # touches the top, bottom and left edges
    ring = outline(mask, 1)
    assert np.array_equal(np.flatnonzero(ring.any(0)), [19]) and ring[:, 19].all()


def test_mask_tint_mixes_the_colour_at_the_opacity_and_leaves_the_rest() -> None:
    frame = _frame()
    mask = np.zeros(frame.shape[:2], bool)
    mask[10:50, 20:60] = True
    img = render_frame(frame, mask, opacity=0.25)
    inside = np.zeros_like(mask)
    inside[14:46, 24:56] = True  # away from the outline
    expected = 0.75 * frame[inside].astype(float) + 0.25 * np.asarray(MASK_COLOR, float)
    assert np.abs(img[inside].astype(float) - expected).max() <= 1.0
    assert np.array_equal(img[~mask], frame[~mask])
    assert (img[outline(mask, 1)] == MASK_COLOR).all()  # the outline is drawn opaque
    assert np.array_equal(frame, _frame())  # the input is not drawn on


def test_onion_skin_draws_the_previous_frames_outline() -> None:
    frame = _frame()
    prev = np.zeros(frame.shape[:2], bool)
    prev[5:25, 5:25] = True
    img = render_frame(frame, None, prev_mask=prev)
    ring = outline(prev, 1)
    expected = 0.1 * frame[ring].astype(float) + 0.9 * np.asarray(PREV_COLOR, float)
    assert np.abs(img[ring].astype(float) - expected).max() <= 1.0
    assert np.array_equal(img[~outline(prev, 1)], frame[~outline(prev, 1)])
