"""Frames in: decode a sample's frames in background threads, a bounded number of batches ahead.

Memory holds at most ``(prefetch + 1) * batch_size`` decoded frames, whatever the clip length.
A frame that is missing or cannot be decoded comes back as ``None`` with the reason, so the
caller can flag it and go on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hmtools.errors import DataFormatError
from hmtools.frames import read_frame as read_rgb

log = logging.getLogger(__name__)


@dataclass
class FrameBatch:
    """Consecutive frames of one sample.

    Attributes:
        start: Index of the first frame in the sample.
        images: ``(H, W, 3)`` uint8 RGB per frame, ``None`` where unreadable.
        errors: Why a frame is ``None`` (else ``None``).
    """

    start: int
    images: list[np.ndarray | None]
    errors: list[str | None]

    @property
    def indices(self) -> range:
        """Sample frame indices covered by this batch."""
        return range(self.start, self.start + len(self.images))


def read_frame(root: Path, key: str) -> tuple[np.ndarray | None, str | None]:
    """Decode one frame with :func:`hmtools.frames.read_frame`, turning failure into a reason.

    Returns:
        ``(image (H, W, 3) uint8 RGB, None)``, or ``(None, reason)`` when missing or undecodable.
    """
    try:
        return read_rgb(root, key), None
    except DataFormatError as e:  # the caller reports a sample's unreadable frames in one line
        log.debug("sample frame %s: %s", key, e)
        missing = "does not exist" in str(e)
        return None, "unreadable frame: missing file" if missing else "unreadable frame: cannot decode"


def _read_batch(root: Path, keys: Sequence[str], start: int) -> FrameBatch:
    pairs = [read_frame(root, k) for k in keys]
    return FrameBatch(start, [p[0] for p in pairs], [p[1] for p in pairs])


def iter_frame_batches(
    root: Path, keys: Sequence[str], batch_size: int, *, workers: int = 2, prefetch: int = 2
) -> Iterator[FrameBatch]:
    """Yield the frames of ``keys`` in order, in batches decoded ahead by a thread pool.

    Args:
        root: Dataset root.
        keys: Frame keys relative to ``root``, in order.
        batch_size: Frames per batch.
        workers: Decoding threads (cv2 releases the GIL while decoding).
        prefetch: Batches decoded ahead of the one being consumed.
    """
    starts = list(range(0, len(keys), max(1, batch_size)))
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hm-decode") as pool:
        pending: deque[Future[FrameBatch]] = deque()
        nxt = 0
        while nxt < len(starts) or pending:
            while nxt < len(starts) and len(pending) <= prefetch:
                s = starts[nxt]
                pending.append(pool.submit(_read_batch, Path(root), keys[s : s + batch_size], s))
                nxt += 1
            yield pending.popleft().result()
