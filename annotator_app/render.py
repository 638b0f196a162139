"""Pictures the annotator shows, drawn with numpy: the frame with its mask overlay, boxes, clicks
and the onion skin of the neighbouring frames' outlines; the filmstrip; the status strip.

Every function takes and returns ``(H, W, 3)`` uint8 RGB images; masks are ``(H, W)`` bool;
boxes are XYXY float pixels; points are (X, Y) pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

Color = tuple[int, int, int]
MASK_COLOR: Color = (40, 220, 90)
PREVIEW_COLOR: Color = (230, 60, 230)
PREV_COLOR: Color = (60, 170, 255)
NEXT_COLOR: Color = (255, 210, 40)
BOX_COLOR: Color = (255, 140, 0)
THUMB_WIDTH = 96


def status_color(status: str) -> Color:
    """Colour of a review status (``"none"`` = no mask yet) in the filmstrip and status strip."""
    match status:
        case "accepted":
            return (46, 160, 67)
        case "flagged":
            return (240, 150, 20)
        case "rejected":
            return (215, 40, 40)
        case "unreviewed":
            return (150, 150, 150)
        case "preview":
            return PREVIEW_COLOR
        case _:
            return (30, 30, 30)


def _crop(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """The mask's bounding box grown by ``pad`` pixels (clipped), or ``None`` when it is empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)),
    )


def outline(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Boundary pixels of a mask, ``thickness`` pixels wide, ``(H, W)`` bool."""
    out = np.zeros_like(mask)
    box = _crop(mask, 1)
    if box is not None:
        out[box] = _outline(mask[box], thickness)
    return out


@functools.lru_cache(maxsize=8)
def _solid(h: int, w: int, color: Color) -> np.ndarray:
    """A read-only ``(h, w, 3)`` image of one colour (cached: filling one costs more than the blend)."""
    out = np.empty((h, w, 3), np.uint8)
    out[:] = color
    out.flags.writeable = False
    return out


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """``mask`` minus its erosion by ``thickness`` steps of the 4-neighbour cross; pixels outside
    the array count as foreground (a mask touching the frame edge has no outline there)."""
    inner = cv2.erode(mask.view(np.uint8), _CROSS, iterations=thickness, borderType=cv2.BORDER_REPLICATE)
    return mask & ~inner.view(bool)


def _blend(img: np.ndarray, where: np.ndarray, color: Color, alpha: float) -> None:
    """Tint the pixels of ``img`` (in place) where ``where`` holds: ``(1 - alpha) * img + alpha * color``."""
    box = _crop(where, 0) if alpha > 0 else None
    if box is None:
        return
    sub, w = img[box], np.ascontiguousarray(where[box]).view(np.uint8)
    solid = _solid(img.shape[0], img.shape[1], color)[: sub.shape[0], : sub.shape[1]]
    mixed = solid if alpha >= 1 else cv2.addWeighted(sub, 1.0 - alpha, solid, alpha, 0.0)
    out = cv2.copyTo(mixed, w, sub)  # writes into sub, a view of img
    if not np.shares_memory(out, sub):  # an OpenCV build that copied instead: write it back
        sub[...] = out


def _rect(img: np.ndarray, box: Sequence[float], color: Color, t: int = 2) -> None:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
    y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
    img[y1 : y1 + t, x1 : x2 + 1] = color
    img[max(y2 - t + 1, 0) : y2 + 1, x1 : x2 + 1] = color
    img[y1 : y2 + 1, x1 : x1 + t] = color
    img[y1 : y2 + 1, max(x2 - t + 1, 0) : x2 + 1] = color


def _dot(img: np.ndarray, x: float, y: float, r: int, color: Color) -> None:
    h, w = img.shape[:2]
    y0, y1, x0, x1 = max(0, int(y) - r - 1), min(h, int(y) + r + 2), max(0, int(x) - r - 1), min(w, int(x) + r + 2)
    if y0 >= y1 or x0 >= x1:  # wholly outside the image (a click recorded on a larger picture)
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    patch = img[y0:y1, x0:x1]
    patch[d2 <= (r + 1.5) ** 2] = (255, 255, 255)
    patch[d2 <= r * r] = color


def render_frame(
    frame: np.ndarray,
    mask: np.ndarray | None,
    *,
    opacity: float = 0.45,
    preview: bool = False,
    prev_mask: np.ndarray | None = None,
    next_mask: np.ndarray | None = None,
    boxes: Sequence[Sequence[float]] = (),
    points: Sequence[tuple[float, float]] = (),
    labels: Sequence[int] = (),
    prompt_box: Sequence[float] | None = None,
) -> np.ndarray:
    """The main view: mask tinted at ``opacity`` (magenta and framed when it is an unsaved
    ``preview``), the previous/next frames' mask outlines (blue/yellow onion skin), athlete boxes
    (orange), the prompt box (white) and clicks (green = positive, red = negative)."""
    img = frame.copy()
    t = max(1, min(img.shape[:2]) // 200)
    color = PREVIEW_COLOR if preview else MASK_COLOR
    if mask is not None:
        _blend(img, mask, color, opacity)
        _blend(img, outline(mask, t), color, 1.0)
    for other, c in ((prev_mask, PREV_COLOR), (next_mask, NEXT_COLOR)):
        if other is not None and other.shape == img.shape[:2]:
            _blend(img, outline(other, t), c, 0.9)
    for box in boxes:
        _rect(img, box, BOX_COLOR, t + 1)
    if prompt_box is not None:
        _rect(img, prompt_box, (255, 255, 255), t + 1)
    r = max(3, min(img.shape[:2]) // 80)
    for (x, y), lab in zip(points, labels, strict=True):
        _dot(img, x, y, r, (30, 200, 30) if lab == 1 else (220, 30, 30))
    if preview:
        _rect(img, (0, 0, img.shape[1] - 1, img.shape[0] - 1), PREVIEW_COLOR, 3 * t + 2)
    return img


def thumbnail_with_mask(thumb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """A thumbnail tinted with its (full-resolution) mask, sampled to the thumbnail's size."""
    img = thumb.copy()
    if mask is not None:
        h, w = img.shape[:2]
        ys = np.arange(h) * mask.shape[0] // h
        xs = np.arange(w) * mask.shape[1] // w
        _blend(img, mask[ys][:, xs], MASK_COLOR, 0.45)
    return img


def filmstrip(thumbs: Sequence[np.ndarray], statuses: Sequence[str], current: int | None) -> np.ndarray:
    """Thumbnails side by side, each framed in its status colour; ``current`` (a position in
    ``thumbs``) gets a white frame. Each cell is :data:`THUMB_WIDTH` + 8 pixels wide, so a click at
    x selects cell ``x // (THUMB_WIDTH + 8)``."""
    cell_w = THUMB_WIDTH + 8
    h = max(t.shape[0] for t in thumbs) + 8
    out = np.full((h, cell_w * len(thumbs), 3), 20, np.uint8)
    for i, (thumb, status) in enumerate(zip(thumbs, statuses, strict=True)):
        x0 = i * cell_w
        out[:, x0 + 1 : x0 + cell_w - 1] = (255, 255, 255) if i == current else status_color(status)
        th, tw = thumb.shape[:2]
        out[4 : 4 + th, x0 + 4 : x0 + 4 + tw] = thumb
    return out


def status_strip(statuses: Sequence[str], current: int, width: int = 800, height: int = 18) -> np.ndarray:
    """Every frame of a sample as one coloured column (status colours), the current one marked
    white; a click at x selects frame ``x * len(statuses) // width``."""
    n = max(1, len(statuses))
    cols = np.arange(width) * n // width
    palette = np.asarray([status_color(s) for s in statuses] or [status_color("none")], np.uint8)
    out = np.repeat(palette[cols][None], height, axis=0)
    out[: height // 3, cols == current] = (255, 255, 255)
    return out
