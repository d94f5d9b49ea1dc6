"""`convert(model, profile)`: a copy of a model with its linear/conv layers made analog."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from torch import nn

from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from .base import AnalogLayerMixin
from .conv import AnalogConv2d
from .linear import AnalogLinear


def _analog_copy(module: nn.Module, profile: HardwareProfile, seed: int) -> nn.Module:
    kwargs = {
        "profile": profile,
        "noise_seed": seed,
        "device": module.weight.device,
        "dtype": module.weight.dtype,
    }
    if isinstance(module, nn.Linear):
        new: nn.Module = AnalogLinear(
            module.in_features, module.out_features, module.bias is not None, **kwargs
        )
    else:
        new = AnalogConv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
            module.padding_mode,
            **kwargs,
        )
    new.load_state_dict(module.state_dict(), strict=False)
    new.train(module.training)
    return new


def convert(
    model: nn.Module,
    profile: HardwareProfile,
    *,
    skip: Iterable[str] = (),
    seed: int = 0,
) -> nn.Module:
    """Return a deep copy of ``model`` with every ``nn.Linear`` and ``nn.Conv2d`` (exact
    types, not already analog) replaced by ``AnalogLinear`` / ``AnalogConv2d`` on ``profile``.

    Args:
        model: the digital model (left unchanged).
        profile: hardware profile of the analog layers.
        skip: qualified module names to keep digital (e.g. ``["0", "head.fc"]``), for the
            usual choice of a digital first and last layer. Unknown names are errors.
        seed: seeds each layer's training-noise generator (per layer name).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(profile, HardwareProfile):
        raise TypeError(
            f"profile must be a HardwareProfile, got {type(profile).__name__}; "
            "e.g. HardwareProfile.preset('pcm')"
        )
    if isinstance(skip, str):
        raise TypeError(f"skip={skip!r}: give a list of module names, e.g. [{skip!r}]")
    skip = set(skip)
    names = {name for name, _ in model.named_modules()}
    unknown = sorted(skip - names)
    if unknown:
        raise ValueError(f"skip={unknown}: no such modules; model has {sorted(names - {''})}")
    converted = copy.deepcopy(model)
    targets = [
        (name, module)
        for name, module in converted.named_modules()
        if type(module) in (nn.Linear, nn.Conv2d)
        and name not in skip
        and not isinstance(module, AnalogLayerMixin)
    ]
    for name, module in targets:
        new = _analog_copy(module, profile, derive_seed(seed, name))
        new.layer_name = name
        if name == "":
            return new
        parent_name, _, child = name.rpartition(".")
        parent = converted.get_submodule(parent_name) if parent_name else converted
        setattr(parent, child, new)
    return converted
