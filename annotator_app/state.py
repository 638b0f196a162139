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
        base: Version of the frame's mask when these clicks began (0 = none): in add mode the
            clicks' answer is saved united with that mask.
        head: Version this series last saved (``base`` before its first save). A frame found at
            another version was changed outside the series (another tab, a review): clicks start afresh.
    """

    frame_idx: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    box_start: tuple[float, float] | None = None
    logits: np.ndarray | None = None
    base: int = 0
    head: int = 0


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
    """Everything one browser session knows; no pixels except the unsaved propagation preview and
    brush strokes whose save was refused.

    Attributes:
        user: Logged-in user (the author of every version this session writes).
        sample_id: Open sample, or ``None``.
        keys: Its frame keys in order.
        seen: Per frame, the mask version the user last saw (0 = none): the expected version of
            the next write (compare-and-set).
        statuses: Per frame, the review status seen (``"none"`` without a mask).
        frame_idx: Frame on screen.
        mode: One of :data:`MODES`.
        add: Clicks add a person to the frame's mask (their answer united with the mask the frame
            had before the clicks) instead of replacing it.
        opacity: Mask overlay opacity in [0, 1].
        onion: Show the previous/next frames' outlines.
        clicks: Prompts on the frame on screen.
        undo: Groups of changes, newest last; one group per user action.
        redo: Groups undone, newest last.
        histories: ``{sample_id: (undo, redo)}`` of the samples this session has left (released or
            moved on from), given back when it opens them again.
        preview: Unsaved propagated masks ``{frame_idx: (H, W) bool}``.
        preview_scores: SAM scores of the preview masks.
        preview_base: Per preview frame, the version seen when it was previewed: its save expects it.
        preview_tracks: Per preview frame propagated from per-athlete tracks, each athlete's mask
            ``[(track id, (H, W) bool)]``: its save keeps the athletes' identities.
        lock_until: Unix time the held lease on the sample expires (0 = none held).
        display_scale: Integer factor the main view is enlarged by (small frames); clicks on the
            view are divided by it.
        brush_for: ``(frame key, version)`` loaded into the brush editor; strokes apply only to it.
        brush_kept_strokes: ``(frame key, [(H, W, 4) uint8 RGBA layers])``: strokes whose save was
            refused because the frame changed meanwhile, drawn on the reloaded picture and applied by
            the next save (or dropped by *Load frame into brush*), or ``None``.
    """

    user: str = ""
    sample_id: str | None = None
    keys: list[str] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    frame_idx: int = 0
    mode: str = "positive"
    add: bool = False
    opacity: float = 0.45
    onion: bool = True
    clicks: Clicks | None = None
    undo: list[list[Change]] = field(default_factory=list)
    redo: list[list[Change]] = field(default_factory=list)
    histories: dict[str, tuple[list[list[Change]], list[list[Change]]]] = field(default_factory=dict)
    preview: dict[int, np.ndarray] = field(default_factory=dict)
    preview_scores: dict[int, float] = field(default_factory=dict)
    preview_base: dict[int, int] = field(default_factory=dict)
    preview_tracks: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict)
    lock_until: float = 0.0
    display_scale: int = 1
    brush_for: tuple[str, int] | None = None
    brush_kept_strokes: tuple[str, list[np.ndarray]] | None = None

    def clear_preview(self) -> None:
        """Drop the unsaved propagation preview (its masks, scores, athletes and the versions it was made from)."""
        self.preview, self.preview_scores, self.preview_base, self.preview_tracks = {}, {}, {}, {}


class ArrayCache:
    """Thread-safe LRU of arrays keyed by ``(frame key, version)``, bounded in MB (rendered
    thumbnails, decoded masks: a version never changes, so entries never go stale)."""

    def __init__(self, max_mb: float = 128.0):
        self.max_bytes = int(max_mb * 2**20)
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        """The cached array or ``None``."""
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def put(self, key: tuple[str, int], arr: np.ndarray) -> None:
        """Insert, evicting the least recently used beyond ``max_bytes``."""
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += arr.nbytes - (0 if old is None else old.nbytes)
            self._items[key] = arr
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, gone = self._items.popitem(last=False)
                self._bytes -= gone.nbytes


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
        thumbs: Rendered filmstrip thumbnails. masks: Decoded masks.
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
    thumbs: ArrayCache = field(default_factory=ArrayCache)
    masks: ArrayCache = field(default_factory=ArrayCache)
    _session_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _open_samples: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def session_lock(self, session: str) -> threading.Lock:
        """A lock per browser session: its events run one at a time, in the order they are taken
        (a fast "next frame, accept" must not accept the frame it is leaving)."""
        with self._locks_guard:
            return self._session_locks.setdefault(session, threading.Lock())

    def note_session(self, session: str, state: SessionState) -> None:
        """Remember which sample a browser session has open (for :meth:`close_session`)."""
        with self._locks_guard:
            self._open_samples[session] = (state.user, state.sample_id)

    def open_elsewhere(self, user: str, sample_id: str) -> bool:
        """Whether ``user`` has ``sample_id`` open in two or more browser sessions (the asking one and
        another): leaving it in one must not give up the lease the other works under."""
        with self._locks_guard:
            return sum(v == (user, sample_id) for v in self._open_samples.values()) > 1

    def close_session(self, session: str) -> tuple[str, str] | None:
        """Forget a closed browser session; returns ``(user, sample_id)`` whose lease should be
        released, or ``None`` (no sample open, or the same user still has it open in another tab).

        Waits for the session's running event, so the sample it opens is the one freed, and no
        entry of the closed session is left behind."""
        with self.session_lock(session), self._locks_guard:
            self._session_locks.pop(session, None)
            user, sample = self._open_samples.pop(session, ("", None))
            if sample is None or (user, sample) in self._open_samples.values():
                return None
            return user, sample
