"""Frame images for the annotator: decoded on demand from the dataset root, kept in a small LRU
cache bounded in MB (never a whole video in memory)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from hmtools.errors import InputError


class FrameSource:
    """Reads frames by frame key (path relative to ``root``) as ``(H, W, 3)`` uint8 RGB.

    Decoded frames and thumbnails share one LRU cache of ``cache_mb``. Thread-safe.
    """

    def __init__(self, root: str | Path, cache_mb: float = 256.0):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError(f"dataset root {self.root} is not a folder; pass --root DIR that holds the frames")
        self.max_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        """Path of a frame key under the root; refuses absolute keys and ``..`` (symlinked frame
        folders inside the root are fine)."""
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"frame key {key!r} points outside the dataset root {self.root}")
        return self.root / rel

    def _get(self, key: str, width: int) -> np.ndarray | None:
        with self._lock:
            img = self._cache.get((key, width))
            if img is not None:
                self._cache.move_to_end((key, width))
            return img

    def _put(self, key: str, width: int, img: np.ndarray) -> None:
        with self._lock:
            if (key, width) in self._cache:
                return
            self._cache[(key, width)] = img
            self._bytes += img.nbytes
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes

    def load(self, key: str) -> np.ndarray:
        """The frame as ``(H, W, 3)`` uint8 RGB.

        Raises:
            InputError: the file is missing or not an image.
        """
        img = self._get(key, 0)
        if img is None:
            p = self.path(key)
            try:
                with Image.open(p) as im:
                    img = np.asarray(im.convert("RGB"))
            except (OSError, ValueError) as e:
                raise InputError(f"cannot read frame {key} at {p}: {e}; check --root") from e
            self._put(key, 0, img)
        return img

    def thumbnail(self, key: str, width: int) -> np.ndarray:
        """The frame scaled to ``width`` pixels wide (aspect kept), ``(h, width, 3)`` uint8."""
        img = self._get(key, width)
        if img is None:
            full = self.load(key)
            h = max(1, round(full.shape[0] * width / full.shape[1]))
            img = np.asarray(Image.fromarray(full).resize((width, h), Image.BILINEAR))
            self._put(key, width, img)
        return img
