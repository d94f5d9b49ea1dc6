"""What a network asks of the hardware, per input sample: traced from one forward pass.

Forward hooks on every leaf module record, for each call: the weight layers' matrix-vector
products (a linear layer's rows of input, a convolution's output positions), the elements
in and out, the elementwise work of activations / normalisations / pooling, and the input
activity of each crossbar row

``a_j = E[(x_j / r)²]`` (amplitude-coded inputs) or ``E[|x_j / r|]`` (pulse-width-coded),

with ``r`` the layer's DAC full scale (its learned ``input_range`` once initialised, else
``max |x|`` of the call). Calls are counted, so a weight-tied equilibrium core that runs 20
solver iterations is costed 20 times. Work done outside ``nn.Module`` calls (a residual
``x + y``, ``F.relu``) is not seen and is listed among the report's assumptions.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..nn.base import AnalogLayerMixin
from ..nn.conv_transpose import crossbar_from_transposed

WorkKind = Literal["analog", "digital", "elementwise", "attention"]
# Softmax cost per attention score: exp, running sum, divide.
SOFTMAX_OPS_PER_SCORE = 3.0

# Elementwise ops per output element (activations, eval-mode normalisation affine) or per
# input element (pooling: each input is compared / added once).
_OPS_PER_OUTPUT: dict[type[nn.Module], float] = {
    nn.ReLU: 1.0,
    nn.ReLU6: 1.0,
    nn.LeakyReLU: 1.0,
    nn.PReLU: 1.0,
    nn.Hardtanh: 1.0,
    nn.Tanh: 1.0,
    nn.Sigmoid: 1.0,
    nn.GELU: 1.0,
    nn.SiLU: 1.0,
    nn.ELU: 1.0,
    nn.Softplus: 1.0,
    nn.BatchNorm1d: 2.0,
    nn.BatchNorm2d: 2.0,
    nn.LayerNorm: 4.0,
    nn.GroupNorm: 4.0,
}
_OPS_PER_INPUT: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_FREE: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
# Digital weight layers, costed as their analog versions would run them.
_WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)
_CONV_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


@dataclass
class LayerWorkload:
    """Per-sample work of one module (all its calls in one forward pass together).

    ``rows``/``cols`` are a weight layer's crossbar fan-in (``in/groups·kh·kw``, the same for a
    transposed convolution) and outputs; ``mvms`` its matrix-vector products (one per output
    position of a convolution); ``row_activity_sq`` / ``row_activity_abs`` the measured
    ``E[(x/r)²]`` / ``E[|x/r|]`` per row (None when the trace ran on placeholder zeros).
    """

    name: str
    kind: WorkKind
    module: nn.Module
    calls: float = 0.0
    mvms: float = 0.0
    rows: int = 0
    cols: int = 0
    elements_in: float = 0.0
    elements_out: float = 0.0
    ops: float = 0.0
    product_macs: float = 0.0  # activation x activation MACs (attention scores and mixing)
    row_activity_sq: torch.Tensor | None = None
    row_activity_abs: torch.Tensor | None = None
    _activity_calls: int = field(default=0, repr=False)

    @property
    def macs(self) -> float:
        return self.mvms * self.rows * self.cols + self.product_macs

    @property
    def weights(self) -> int:
        return self.rows * self.cols


def _kind(module: nn.Module, any_analog: bool) -> WorkKind | None:
    declared = getattr(module, "energy_kind", None)  # a module may say how to cost it
    if declared is not None:
        return declared
    if isinstance(module, AnalogLayerMixin):
        return "analog"
    if isinstance(module, _WEIGHT_LAYERS):
        return "digital" if any_analog else "analog"
    if isinstance(module, _FREE):
        return None
    if type(module) in _OPS_PER_OUTPUT or isinstance(module, _OPS_PER_INPUT):
        return "elementwise"
    if next(module.parameters(recurse=False), None) is not None:
        raise ValueError(
            f"module {type(module).__name__} has weights the energy model cannot cost; "
            "supported weight layers are nn.Linear, nn.Conv1d, nn.Conv2d and "
            "nn.ConvTranspose2d (and their analog versions)"
        )
    return "elementwise"


def crossbar_weight(module: nn.Module) -> torch.Tensor:
    """``W_c`` (cols, ...) of a weight layer as a crossbar holds it, row ``j`` feeding output
    ``j``: an analog layer's :meth:`~analogtorch.nn.base.AnalogLayerMixin.crossbar_weight`, a
    digital ``nn.ConvTranspose2d``'s kernel as its analog version holds it, else ``weight``."""
    if isinstance(module, AnalogLayerMixin):
        return module.crossbar_weight()
    if isinstance(module, nn.ConvTranspose2d):
        return crossbar_from_transposed(module.weight, module.groups)
    return module.weight


def _row_activity(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-crossbar-row ``E[(x/r)²]`` and ``E[|x/r|]`` of one call's input."""
    x = x.detach().float()
    if isinstance(module, AnalogLayerMixin) and bool(module.input_range_initialized):
        r = module.input_range.detach().abs().float()
    else:
        r = x.abs().max()
    xn = (x / r.clamp_min(1e-12)).clamp(-1.0, 1.0)
    if isinstance(module, _CONV_LAYERS):
        # Channel means, repeated over the taps of the flattened (in/groups, *kernel) rows.
        taps = math.prod(module.kernel_size)
        spatial = len(module.kernel_size)
        channel = x.dim() - spatial - 1  # unbatched inputs have no batch axis
        dims = tuple(d for d in range(x.dim()) if d != channel)
        sq = xn.square().mean(dims).repeat_interleave(taps)
        ab = xn.abs().mean(dims).repeat_interleave(taps)
        if isinstance(module, nn.ConvTranspose2d):
            # The crossbar reads the zero-stuffed input (stride - 1 zeros between pixels):
            # the same channel sums over a plane of (n - 1) * stride + 1 positions per axis.
            sizes = x.shape[channel + 1 :]
            density = math.prod(
                n / ((n - 1) * s + 1) for n, s in zip(sizes, module.stride, strict=True)
            )
            sq, ab = sq * density, ab * density
        groups = module.groups
        if groups > 1:  # every group's crossbar sees its own channels: average over groups
            sq = sq.reshape(groups, -1).mean(0)
            ab = ab.reshape(groups, -1).mean(0)
        return sq, ab
    flat = xn.reshape(-1, xn.shape[-1])
    return flat.square().mean(0), flat.abs().mean(0)


def trace_workload(
    model: nn.Module, inputs: torch.Tensor, *, measure_activity: bool
) -> list[LayerWorkload]:
    """Run ``model(inputs)`` once (eval mode, no grad) and return per-sample work by module.

    Linear/Conv1d/Conv2d/ConvTranspose2d layers are ``analog`` when the model has no analog
    layers (it is costed as if converted) and ``digital`` when it has some (layers
    ``convert`` was told to skip).
    """
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must have a batch dimension, got shape {tuple(inputs.shape)}")
    batch = inputs.shape[0]
    # Trace a copy: a first forward initialises analog layers' DAC ranges, which must not
    # be set from a placeholder batch on the caller's model.
    model = copy.deepcopy(model)
    any_analog = any(isinstance(m, AnalogLayerMixin) for m in model.modules())
    work: dict[str, LayerWorkload] = {}
    handles = []

    def hook(name: str, kind: WorkKind):
        def record(module: nn.Module, args: tuple, output: object) -> None:
            x = args[0]
            if not isinstance(output, torch.Tensor) or not isinstance(x, torch.Tensor):
                return
            w = work.setdefault(name, LayerWorkload(name, kind, module))
            w.calls += 1.0 / batch
            w.elements_in += x.numel() / batch
            w.elements_out += output.numel() / batch
            if kind == "elementwise":
                w.ops += (
                    (x.numel() if isinstance(module, _OPS_PER_INPUT) else output.numel())
                    * (_OPS_PER_OUTPUT.get(type(module), 1.0))
                    / batch
                )
                return
            shape = crossbar_weight(module).shape
            w.rows, w.cols = math.prod(shape[1:]), shape[0]
            w.mvms += output.numel() / w.cols / batch
            if measure_activity:
                sq, ab = _row_activity(module, x)
                n = w._activity_calls
                if n == 0:
                    w.row_activity_sq, w.row_activity_abs = sq, ab
                else:  # running mean over calls
                    w.row_activity_sq = (w.row_activity_sq * n + sq) / (n + 1)
                    w.row_activity_abs = (w.row_activity_abs * n + ab) / (n + 1)
                w._activity_calls = n + 1

        return record

    def attention_hook(name: str):
        def record(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: object):
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs["key"]
            w = work.setdefault(name, LayerWorkload(name, "attention", module))
            w.calls += 1.0 / batch
            axis = 1 if module.batch_first and query.dim() == 3 else 0
            length, keys = query.shape[axis], key.shape[axis]
            sequences = query.numel() / (length * module.embed_dim) / batch  # per sample
            # Q K^T and A V: L S E MACs each (E = all heads' dims); softmax over L S H scores
            w.product_macs += 2.0 * length * keys * module.embed_dim * sequences
            w.ops += SOFTMAX_OPS_PER_SCORE * length * keys * module.num_heads * sequences

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None or module.q_proj_weight is not None:
                raise ValueError(
                    f"{name or 'model'}: a digital nn.MultiheadAttention's in-projection is not "
                    "costed; convert the attention (analogtorch.convert) before the estimate"
                )
            handles.append(
                module.register_forward_hook(attention_hook(f"{name}.products"), with_kwargs=True)
            )
        is_leaf = next(module.children(), None) is None
        if not is_leaf and not isinstance(module, AnalogLayerMixin):
            continue
        kind = _kind(module, any_analog)
        if kind is not None:
            handles.append(module.register_forward_hook(hook(name or type(module).__name__, kind)))
    model.eval()
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    return list(work.values())
