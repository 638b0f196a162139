"""Split build-masks across processes started by ``torchrun`` (one GPU each), or run alone.

``torchrun --nproc-per-node N -m hmtools build-masks ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; rank r takes samples ``r::WORLD_SIZE`` and uses GPU ``LOCAL_RANK``. All ranks
write to the same SQLite store (WAL; writers wait for each other), one transaction per sample.
The process group (NCCL on GPUs, Gloo on CPUs) is used only to gather the summaries at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def shard(self, items: list[T]) -> list[T]:
        """The items this rank handles: ``items[rank::world]``."""
        return items[self.rank :: self.world]


def rank_from_env() -> Rank:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (as set by torchrun); a lone process is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return Rank(rank, world, int(os.environ.get("LOCAL_RANK", str(rank))))


@contextmanager
def process_group(rank: Rank, device: str) -> Iterator[None]:
    """Join the torchrun process group for the duration (no-op for a single process)."""
    if rank.world == 1:
        yield
        return
    import torch
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":  # NCCL's object collectives run on the current device: this rank's GPU, not GPU 0
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend, rank=rank.rank, world_size=rank.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather(obj: Any, rank: Rank) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for a single process."""
    if rank.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * rank.world
    dist.all_gather_object(out, obj)
    return out


def barrier(rank: Rank) -> None:
    """Wait for every rank (no-op for a single process)."""
    if rank.world > 1:
        import torch.distributed as dist

        dist.barrier()
