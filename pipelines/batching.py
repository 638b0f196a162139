"""Run a batched function over many items, halving the batch when the GPU runs out of memory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


@dataclass
class BatchSize:
    """A mutable batch size shared by calls, so a shrink learned once holds for the rest of the run.

    Attributes:
        value: Current batch size (>= 1).
        shrinks: How many times it was halved.
    """

    value: int
    shrinks: int = 0


def run_batched(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], size: BatchSize) -> list[R]:
    """Apply ``fn`` to consecutive chunks of ``items`` of at most ``size.value`` items.

    On a CUDA out-of-memory error the chunk is retried at half the size (and ``size`` keeps the
    smaller value); an out-of-memory error at batch size 1 is raised.

    Args:
        fn: Maps a chunk to one result per item, in order.
        items: Everything to process.
        size: Batch size, updated in place when it shrinks.

    Returns:
        One result per item, in order.
    """
    out: list[R] = []
    i = 0
    while i < len(items):
        chunk = items[i : i + size.value]
        try:
            res = fn(chunk)
        except RuntimeError as e:
            if not _is_oom(e) or size.value == 1:
                raise
            _free_cuda()
            size.value = max(1, size.value // 2)
            size.shrinks += 1
            log.warning("GPU out of memory; batch size lowered to %d", size.value)
            continue
        if len(res) != len(chunk):
            raise RuntimeError(f"batched function returned {len(res)} results for {len(chunk)} items")
        out.extend(res)
        i += len(chunk)
    return out


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
