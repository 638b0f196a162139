"""Process-group plumbing for ``torchrun`` (DistributedDataParallel); a no-op in one process.

``torchrun --nproc-per-node N -m hmtools train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
NCCL is used on CUDA and gloo on CPU. Rank 0 alone writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from hmtools.devices import resolve_device as resolve_device_name
from hmtools.errors import InputError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """:func:`hmtools.devices.resolve_device` for training (``auto``, ``cpu``, ``cuda`` or ``cuda:N``;
    under torchrun ``cuda`` means ``cuda:LOCAL_RANK``), made this process's current CUDA device.

    Raises:
        InputError: CUDA asked for but not there, or a name other than those.
    """
    dev = torch.device(resolve_device_name(name, local_rank))
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun job if there is one; returns this process's info and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    dev = resolve_device(device, info.local_rank)
    if info.enabled and not dist.is_initialized():
        # rank 0 may spend a long time packing the clip cache while the others wait at a barrier
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(hours=3))
    return info, dev


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.enabled:
        dist.barrier()


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(info: DistInfo, x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (in place on a copy)."""
    if not info.enabled:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / info.world


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def rng_state(dev: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch RNG state (CPU, and ``dev``'s CUDA generator), e.g. to resume mid-epoch."""
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def set_rng_state(state: dict[str, torch.Tensor], dev: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], dev)
