"""Per-user session state (held in ``gr.State``) and the app-wide context handlers receive."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from annotator_app.backend import SegmentBackend
from annotator_app.frames import FrameSource
from hmtools.store import MaskStore

MODES = ("positive", "negative", "box")
"""Click modes: add a positive point, add a negative point, or draw a box with two clicks."""


@dataclass
class Clicks:
    """SAM prompts the annotator has given on one frame since arriving on it.

    Attributes:
        frame_idx: The frame they belong to.
        points: Click positions (X, Y) in frame pixels.
        labels: 1 = positive, 0 = negative, one per point.
        box: XYXY box prompt in frame pixels, or ``None``.
        box_start: First corner of a box being drawn, or ``None``.
        logits: ``(256, 256)`` low-res logits of the last prediction (fed back to SAM), or ``None``.
    """

    frame_idx: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    box_start: tuple[float, float] | None = None
    logits: np.ndarray | None = None


@dataclass(frozen=True)
class Change:
    """One stored version written by this session: frame ``key`` went to version ``head``; undoing
    it writes the content of version ``restore`` (0 = no mask: an empty mask) as a new version."""

    frame_idx: int
    key: str
    restore: int
    head: int


@dataclass
class SessionState:
    """Everything one browser session knows; no pixels except the unsaved propagation preview.

    Attributes:
        user: Logged-in user (the author of every version this session writes).
        sample_id: Open sample, or ``None``.
        keys: Its frame keys in order.
        seen: Per frame, the mask version the user last saw (0 = none): the expected version of
            the next write (compare-and-set).
        statuses: Per frame, the review status seen (``"none"`` without a mask).
        frame_idx: Frame on screen.
        mode: One of :data:`MODES`.
        opacity: Mask overlay opacity in [0, 1].
        onion: Show the previous/next frames' outlines.
        clicks: Prompts on the frame on screen.
        undo: Groups of changes, newest last; one group per user action.
        redo: Groups undone, newest last.
        preview: Unsaved propagated masks ``{frame_idx: (H, W) bool}``.
        preview_scores: SAM scores of the preview masks.
        lock_until: Unix time the held lease on the sample expires (0 = none held).
        display_scale: Integer factor the main view is enlarged by (small frames); clicks on the
            view are divided by it.
    """

    user: str = ""
    sample_id: str | None = None
    keys: list[str] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    frame_idx: int = 0
    mode: str = "positive"
    opacity: float = 0.45
    onion: bool = True
    clicks: Clicks | None = None
    undo: list[list[Change]] = field(default_factory=list)
    redo: list[list[Change]] = field(default_factory=list)
    preview: dict[int, np.ndarray] = field(default_factory=dict)
    preview_scores: dict[int, float] = field(default_factory=dict)
    lock_until: float = 0.0
    display_scale: int = 1


class ThumbCache:
    """Small thread-safe LRU of rendered filmstrip thumbnails keyed by ``(frame key, version)``."""

    def __init__(self, max_items: int = 4000):
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        """The cached thumbnail or ``None``."""
        with self._lock:
            img = self._items.get(key)
            if img is not None:
                self._items.move_to_end(key)
            return img

    def put(self, key: tuple[str, int], img: np.ndarray) -> None:
        """Insert, evicting the oldest beyond ``max_items``."""
        with self._lock:
            self._items[key] = img
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


@dataclass
class AppContext:
    """What every handler shares: the store, the frames, the backend and the settings.

    Attributes:
        store: The mask store (thread-safe).
        frames: Frame reader for the dataset root.
        backend: Segmentation backend.
        lock_ttl_s: Lease length on an opened sample; renewed on activity.
        prefetch_behind: Embeddings prefetched for this many frames before the current one.
        prefetch_ahead: ... and after it.
        filmstrip_radius: Thumbnails shown on each side of the current frame.
        default_user: Author name when the server runs without authentication.
        min_display_width: Frames narrower than this are shown enlarged by an integer factor.
    """

    store: MaskStore
    frames: FrameSource
    backend: SegmentBackend
    lock_ttl_s: float = 300.0
    prefetch_behind: int = 2
    prefetch_ahead: int = 4
    filmstrip_radius: int = 6
    default_user: str = "annotator"
    min_display_width: int = 640
    thumbs: ThumbCache = field(default_factory=ThumbCache)
