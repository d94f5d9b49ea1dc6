"""`convert(model, profile)`: a copy of a model with its weight layers made analog."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from torch import nn

from ..hardware.random import derive_seed
from .attention import AnalogMultiheadAttention
from .base import AnalogLayerMixin
from .conv import AnalogConv2d
from .conv1d import AnalogConv1d
from .conv_transpose import AnalogConvTranspose2d
from .linear import AnalogLinear
from .plan import ProfilePlan, resolve_plan
from .recurrent import AnalogGRU, AnalogLSTM
from .recurrent_base import AnalogRecurrentBase

# The analog layer that replaces each torch layer type (exact types: a subclass of a torch
# layer may change its forward, so it is left alone). An attention is not an analog layer
# itself: its projections are; nor is a recurrent layer: its crossbars are.
ANALOG_CLASSES: tuple[
    type[AnalogLayerMixin] | type[AnalogMultiheadAttention] | type[AnalogRecurrentBase], ...
] = (
    AnalogLinear,
    AnalogConv2d,
    AnalogConv1d,
    AnalogConvTranspose2d,
    AnalogMultiheadAttention,
    AnalogLSTM,
    AnalogGRU,
)
_ANALOG_OF = {cls.digital_type: cls for cls in ANALOG_CLASSES}


def convertible_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``model`` that :func:`convert` can make analog, by qualified name:
    exact ``nn.Linear`` / ``nn.Conv2d`` / ... types, outside any layer that is already
    analog or becomes analog itself."""
    found: dict[str, nn.Module] = {}
    closed: list[str] = []  # layers whose insides are not converted separately
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") for outer in closed):
            continue
        if type(module) in _ANALOG_OF:  # an analog layer's type never is
            found[name] = module
        elif not isinstance(module, AnalogLayerMixin):
            continue
        if name == "":  # the model itself is one layer
            break
        closed.append(name)
    return found


def convert(
    model: nn.Module,
    profile: ProfilePlan,
    *,
    skip: Iterable[str] = (),
    seed: int = 0,
) -> nn.Module:
    """Return a deep copy of ``model`` with its torch weight layers (exact ``nn.Linear``,
    ``nn.Conv2d``, ... types, not already analog) replaced by their analog versions.

    Args:
        model: the digital model (left unchanged).
        profile: the hardware of every analog layer, or per-layer rules: a mapping from
            module-name glob patterns or torch layer types to a profile or ``None`` (stays
            digital), first match wins, default under ``"*"`` (see :mod:`.plan`), e.g.
            ``{"0": None, nn.Conv2d: pcm, "*": rram}``.
        skip: qualified module names to keep digital (e.g. ``["0", "head.fc"]``), for the
            usual choice of a digital first and last layer. Unknown names are errors.
        seed: seeds each layer's training-noise generator (per layer name).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(skip, str):
        raise TypeError(f"skip={skip!r}: give a list of module names, e.g. [{skip!r}]")
    skip = set(skip)
    names = {name for name, _ in model.named_modules()}
    unknown = sorted(skip - names)
    if unknown:
        raise ValueError(f"skip={unknown}: no such modules; model has {sorted(names - {''})}")
    converted = copy.deepcopy(model)
    layers = {n: m for n, m in convertible_layers(converted).items() if n not in skip}
    for name, layer_profile in resolve_plan(profile, layers).items():
        module = layers[name]
        new = _ANALOG_OF[type(module)].from_digital(module, layer_profile, derive_seed(seed, name))
        new.layer_name = name  # type: ignore[assignment]
        if name == "":
            return new
        parent_name, _, child = name.rpartition(".")
        parent = converted.get_submodule(parent_name) if parent_name else converted
        setattr(parent, child, new)
    _disable_fused_transformer_kernels(converted)
    return converted


def _disable_fused_transformer_kernels(model: nn.Module) -> None:
    """torch's fused transformer kernels (eval + no_grad) read the layers' weights directly,
    which would skip every analog layer inside: a ``TransformerEncoderLayer`` holding one
    is kept off them (its ``activation_relu_or_gelu`` flag only selects the fused kernel),
    and a ``TransformerEncoder`` does not pack padded batches into nested tensors, which
    analog layers do not take."""
    for module in model.modules():
        if not isinstance(module, (nn.TransformerEncoder, nn.TransformerEncoderLayer)):
            continue
        if not any(isinstance(m, AnalogLayerMixin) for m in module.modules()):
            continue
        if isinstance(module, nn.TransformerEncoder):
            module.use_nested_tensor = False
        else:
            module.activation_relu_or_gelu = 0
