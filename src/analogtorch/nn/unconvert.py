"""`unconvert(model)`: the plain torch model holding the weights a chip would hold."""

from __future__ import annotations

import copy

from torch import nn

from .convert import ANALOG_CLASSES


def unconvert(model: nn.Module) -> nn.Module:
    """Return a deep copy of ``model`` with every analog layer replaced by the torch layer
    it came from (``nn.Linear``, ``nn.Conv2d``, ...), holding the weights the layer programs
    onto a chip before any device noise: ``W' = s * Q(W / s)`` per output row (``s`` the
    row's max ``|W|`` or the profile's fixed ``weight_range``, which also clips; ``Q`` the
    profile's ``weight_bits`` grid), and the same biases.

    The result runs in plain torch (export, ``torch.compile``, another toolkit). What it
    leaves out, because a digital layer has no place for it: DAC/ADC quantisation and the
    learned ranges, programming/read noise, drift, IR drop and crosstalk. ``model`` is left
    unchanged; a model without analog layers comes back as a copy.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, ANALOG_CLASSES):
        return model.to_digital()
    digital = copy.deepcopy(model)
    replaced: list[str] = []
    for name, module in list(digital.named_modules()):
        if any(name.startswith(f"{outer}.") for outer in replaced):
            continue
        if isinstance(module, ANALOG_CLASSES):
            parent_name, _, child = name.rpartition(".")
            parent = digital.get_submodule(parent_name) if parent_name else digital
            setattr(parent, child, module.to_digital())
            replaced.append(name)
    return digital
