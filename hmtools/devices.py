"""The ``--device`` option of build-masks, train and eval, resolved to a torch device name.

Torch is imported inside the function (``import hmtools`` never imports it).
"""

from __future__ import annotations

from hmtools.errors import InputError


def resolve_device(device: str, local_rank: int = 0) -> str:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; a bare ``cuda`` ->
    ``cuda:<local_rank>`` (one GPU per torchrun rank); other values as given.

    Raises:
        InputError: not a torch device string, or a CUDA device that this machine does not have (exit 2).
    """
    import torch

    if device == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r} is not a torch device; pass auto, cpu, cuda or cuda:N") from None
    if dev.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = local_rank if dev.index is None else dev.index
    if index >= count:
        raise InputError(
            f"--device {device} needs CUDA device {index}, but this machine has {count} usable; "
            "pass --device cpu or a smaller index"
        )
    return f"cuda:{index}"
