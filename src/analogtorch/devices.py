"""Where work runs: the device a user names (``cpu``, ``cuda``, ``cuda:N``, ``auto``) and the
device a module's tensors are on."""

from __future__ import annotations

from typing import Any

import torch

DEVICE_CHOICES = "cpu, cuda, cuda:N or auto"


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device for ``name``: ``auto`` is the first CUDA GPU when torch sees one,
    else the CPU. A device this process cannot use (no CUDA, a GPU index past the last, a
    kind other than cpu/cuda) is refused here, by name, rather than at the first tensor."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={name!r} is not a device: use {DEVICE_CHOICES}") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: runs take {DEVICE_CHOICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={name!r}: this torch ({torch.__version__}) sees no CUDA GPU; install "
                "a CUDA build of torch on a machine with one, or use device=cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={name!r}: this machine has {count} CUDA GPU(s)")
    return device


def module_device(module: Any) -> torch.device:
    """The device of ``module``'s first parameter (else buffer); the CPU when it has none."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in getattr(module, "buffers", tuple)():
        return tensor.device
    return torch.device("cpu")
