"""Camera motion of a clip from its frames: the background's shift between consecutive frames.

Broadcasts follow a 10 m diver down: the diver stays near the middle of the image while the
platform, the judges and the stands slide away. The selection rule's motion cue
(:func:`pipelines.select.motion_extent`) measures each track in scene coordinates (image
position minus the background's cumulative shift), so a followed diver still moves and a
bystander swept past by the camera does not.

The shift between two frames is measured as global-motion compensation in multi-object
trackers does it (sparse optical flow): corners of the background (``goodFeaturesToTrack`` on
small grey copies, every detected person blanked out with a margin) are followed into the next
frame (pyramidal Lucas-Kanade), and the median displacement is the shift when most of them
agree with it. Too few corners (a textureless sky or wall) or no agreement (a camera cut, a
dissolve, spray) count as no motion, so the cue falls back to image coordinates rather than
to anyone's own motion.
"""

from __future__ import annotations

import numpy as np

SMALL_WIDTH = 160
"""Width of the grey copy the shift is measured on, in pixels (the height keeps the aspect)."""
PEOPLE_MARGIN = 0.25
"""Person boxes are left out of the measurement with this margin on each side (of their size)."""
MIN_POINTS = 8
"""Fewer background corners followed than this: no motion is measured."""
MIN_AGREEMENT = 0.5
"""Share of the followed corners that must lie within :data:`AGREE_PX` of the median shift."""
AGREE_PX = 1.0
"""Tolerance of that agreement, in pixels of the small copy."""


class CameraPath:
    """Accumulates the background's shift over a clip's frames, fed in frame order.

    ``add(image, people)`` takes an ``(H, W, 3)`` uint8 RGB frame, or ``None`` for an unreadable one
    (it repeats the last position), and the frame's person boxes ``(N, >=4)`` XYXY pixels, which are
    left out of the measurement. :attr:`path` is then ``(T, 2)`` float32: the background's
    cumulative ``(dx, dy)`` shift in the original frame's pixels since the first frame
    (scene position = image position - path).
    """

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._prev_people = np.ones((0, 4))
        self._scale = 1.0
        self._pos = np.zeros(2, np.float64)
        self._steps: list[np.ndarray] = []

    def add(self, image: np.ndarray | None, people: np.ndarray | None = None) -> None:
        """Take the next frame of the clip and its person boxes (``None``: none)."""
        if image is None:
            self._steps.append(self._pos.copy())
            return
        small = self._small(image)
        boxes = np.zeros((0, 4)) if people is None else np.asarray(people, np.float64)[:, :4] / self._scale
        if self._prev is not None and self._prev.shape == small.shape:
            self._pos += self._shift(self._prev, small, np.concatenate([self._prev_people, boxes])) * self._scale
        self._prev, self._prev_people = small, boxes
        self._steps.append(self._pos.copy())

    @property
    def path(self) -> np.ndarray:
        """``(T, 2)`` float32 cumulative background shift ``(dx, dy)`` in pixels, one row per frame added."""
        return np.array(self._steps, np.float32).reshape(-1, 2)

    def _small(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        width = min(SMALL_WIDTH, w)
        height = max(1, round(h * width / w))
        self._scale = w / width
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)

    def _shift(self, prev: np.ndarray, cur: np.ndarray, people: np.ndarray) -> np.ndarray:
        """``(dx, dy)`` of the background from ``prev`` to ``cur`` (small grey uint8), in small pixels."""
        import cv2

        h, w = cur.shape
        mask = np.full((h, w), 255, np.uint8)
        for x1, y1, x2, y2 in people:
            mx, my = PEOPLE_MARGIN * (x2 - x1), PEOPLE_MARGIN * (y2 - y1)
            xa, xb = int(max(0, np.floor(x1 - mx))), int(min(w, np.ceil(x2 + mx)))
            ya, yb = int(max(0, np.floor(y1 - my))), int(min(h, np.ceil(y2 + my)))
            mask[ya:yb, xa:xb] = 0
        pts = cv2.goodFeaturesToTrack(prev, maxCorners=100, qualityLevel=0.01, minDistance=3, mask=mask)
        if pts is None or len(pts) < MIN_POINTS:
            return np.zeros(2)
        nxt, found, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(11, 11), maxLevel=2)
        ok = found.ravel() == 1
        if ok.sum() < MIN_POINTS:
            return np.zeros(2)
        moves = (nxt - pts).reshape(-1, 2)[ok]
        shift = np.median(moves, axis=0)
        agree = np.mean(np.abs(moves - shift).max(axis=1) <= AGREE_PX)
        return shift if agree >= MIN_AGREEMENT else np.zeros(2)
