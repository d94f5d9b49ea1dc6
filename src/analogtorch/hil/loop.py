"""Running a converted model's analog layers on a backend: forward on hardware, backward
through the twin.

Inside :class:`HardwareLoop` every :class:`~analogtorch.nn.AnalogLinear` and
:class:`~analogtorch.nn.AnalogConv2d` of the model is replaced, at its output, according to
``mode``:

* ``"backend"``: ``y = B(x) + b`` — the backend's result only (evaluation on the chip);
* ``"hil"``: ``y = T(ŷ) + stopgrad(B(x) + b − T(ŷ))`` — the value is the hardware's, the
  gradient is the twin's ``∂T(ŷ)/∂(x, W, b)`` (physics-aware training, "forward on the real
  hardware, backward through the surrogate"); each (ŷ, B(x) + b) pair is kept for twin fits;
* ``"twin"``: ``y = T(ŷ)`` — the calibrated surrogate alone, no backend call.

``ŷ`` is the layer's own (nominal-profile) output. A convolution runs on the backend's
matrix-vector interface as unfold → mvm → fold: its weight is programmed as the matrix
``W (C_out, C_in·kh·kw)`` (the crossbar layout of the analog layer), every output pixel is one
read of its input patch (``F.unfold``, same order of channels and kernel taps), and the
``(N·H'·W', C_out)`` reads are folded back to ``(N, C_out, H', W')`` (a reshape: an output
pixel is one read, nothing overlaps). The twin sees the same rows, channels last, so ``T``
and ``(ŷ, B(x) + b)`` pairs are per output pixel. Inputs are clipped to the layer's DAC
full scale ``±input_range`` before they reach the backend (the DAC saturates). A layer is
re-programmed whenever its weights or DAC range differ from those last programmed. With a
``budget`` of backend input vectors (counted from the loop's creation), ``"hil"`` falls
back to ``"twin"`` once the budget is spent. The pairs of the last ``buffer_batches``
calls of each layer are kept for twin fits.

``grad_on_twin=True`` (mode ``"hil"`` only) computes every forward that records an autograd
graph (``torch.is_grad_enabled()``) on the twin alone, ``y = T(ŷ)``, with no backend read,
while forwards under ``no_grad`` read the backend as usual. That is the hardware loop of a
deep equilibrium model (:mod:`analogtorch.deq.hil_stage`): its solver iterations run under
``no_grad`` and are backend reads; its backward re-evaluates the core at the settled state
``z*`` only to carry a gradient (the value is discarded, :mod:`analogtorch.deq.backward`
returns the solver's ``z*``), so with this switch the backward is the twin's at ``z*`` and
costs no reads.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.base import analog_layers
from ..nn.conv import AnalogConv2d
from ..nn.linear import AnalogLinear
from .backend import Backend
from .twin import LayerTwin

LoopMode = Literal["backend", "hil", "twin"]
LoopLayer = AnalogLinear | AnalogConv2d


def _check_layer(name: str, module: nn.Module) -> None:
    """Refuse the layers the backend's matrix-vector interface cannot run (with the reason)."""
    if isinstance(module, AnalogConv2d):
        if module.groups != 1:
            raise ValueError(
                f"layer {name!r}: HIL runs convolutions with groups=1 (one crossbar matrix per "
                f"layer), not groups={module.groups}"
            )
    elif not isinstance(module, AnalogLinear):
        raise ValueError(
            f"layer {name!r}: HIL supports AnalogLinear and AnalogConv2d, not "
            f"{type(module).__name__}"
        )


def _input_rows(module: LoopLayer, x: torch.Tensor) -> torch.Tensor:
    """The crossbar input vectors of one forward: (reads, in) for a linear layer; for a
    convolution the unfolded patches (N·H'·W', C_in·kh·kw), in the weight's row order."""
    if isinstance(module, AnalogLinear):
        return x.reshape(-1, module.in_features)
    x = x if x.dim() == 4 else x.unsqueeze(0)
    padding = module.padding
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = (0, 0)
    patches = F.unfold(x, module.kernel_size, module.dilation, padding, module.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _output_rows(module: LoopLayer, y: torch.Tensor) -> torch.Tensor:
    """A layer output as (reads, out): channels last for a convolution's (N, C, H', W')."""
    if isinstance(module, AnalogConv2d):
        y = y.movedim(-3, -1)
    return y.reshape(-1, module.weight.shape[0])


def _fold(module: LoopLayer, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_output_rows`: (reads, out) back to the layout of ``like``."""
    if isinstance(module, AnalogConv2d):
        return rows.reshape(like.movedim(-3, -1).shape).movedim(-1, -3)
    return rows.reshape(like.shape)


class HardwareLoop:
    """Context manager that routes a model's analog linear and convolution layers through
    ``backend``."""

    def __init__(
        self,
        model: nn.Module,
        backend: Backend,
        *,
        mode: LoopMode = "backend",
        twins: dict[str, LayerTwin] | None = None,
        budget: int | None = None,
        buffer_batches: int = 8,
        grad_on_twin: bool = False,
    ) -> None:
        layers = analog_layers(model)
        if not layers:
            raise ValueError("model has no analog layers: convert it with analogtorch.convert")
        for name, module in layers.items():
            _check_layer(name, module)
        if mode not in ("backend", "hil", "twin"):
            raise ValueError(f"mode={mode!r}: use 'backend', 'hil' or 'twin'")
        if budget is not None and budget < 0:
            raise ValueError(f"budget={budget}: backend input vectors must be >= 0")
        if grad_on_twin and mode != "hil":
            raise ValueError(f"grad_on_twin=True applies to mode='hil', not mode={mode!r}")
        self.model = model
        self.backend = backend
        self.mode: LoopMode = mode
        self.layers: dict[str, LoopLayer] = layers  # type: ignore[assignment]
        self.twins = twins or {n: LayerTwin(m.weight.shape[0]) for n, m in layers.items()}
        for twin in self.twins.values():
            twin.requires_grad_(False)  # fitted only by fit_twins, never by the task loss
        self.budget = budget
        self.grad_on_twin = grad_on_twin
        self.pairs: dict[str, deque[tuple[torch.Tensor, torch.Tensor]]] = {
            name: deque(maxlen=buffer_batches) for name in layers
        }
        self._programmed: dict[str, tuple[torch.Tensor, float]] = {}
        self._calls_at_start = backend.calls
        self._handles: list = []

    # -- context ----------------------------------------------------------------------

    def __enter__(self) -> HardwareLoop:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def calls(self) -> int:
        """Backend input vectors sent since this loop was created."""
        return self.backend.calls - self._calls_at_start

    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.calls, 0)

    def fit_twins(self, steps: int = 200) -> dict[str, float]:
        """Fit every layer's twin on the stored pairs; relative rms error per layer."""
        errors = {}
        for name, pairs in self.pairs.items():
            if not pairs:
                continue
            nominal = torch.cat([p[0] for p in pairs])
            measured = torch.cat([p[1] for p in pairs])
            errors[name] = self.twins[name].fit(nominal, measured, steps=steps)
        return errors

    # -- the per-layer replacement ----------------------------------------------------

    def _use_backend(self, rows: int) -> bool:
        if self.mode == "twin" or (self.grad_on_twin and torch.is_grad_enabled()):
            return False
        left = self.budget_left
        return left is None or left >= rows

    def _hook(self, name: str):
        def replace(module: LoopLayer, args: tuple, nominal: torch.Tensor) -> torch.Tensor:
            x = _input_rows(module, args[0])
            nominal_rows = _output_rows(module, nominal)
            twin = self.twins[name]
            if not self._use_backend(x.shape[0]):
                if self.mode == "backend":
                    raise RuntimeError(f"backend budget of {self.budget} input vectors is spent")
                return _fold(module, twin(nominal_rows), nominal)
            measured = self._measure(name, module, x)
            if self.mode == "backend":
                return _fold(module, measured, nominal)
            self.pairs[name].append((nominal_rows.detach(), measured))
            predicted = twin(nominal_rows)
            return _fold(module, predicted + (measured - predicted).detach(), nominal)

        return replace

    def _measure(self, name: str, module: LoopLayer, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            r = float(module.input_range.detach().abs())
            weight = module.weight.detach()
            # compared by value: edits through .data do not bump the version counter
            programmed = self._programmed.get(name)
            if programmed is None or programmed[1] != r or not torch.equal(programmed[0], weight):
                self.backend.program(name, weight.reshape(weight.shape[0], -1), r)
                self._programmed[name] = (weight.clone(), r)
            y = self.backend.mvm(name, x.detach().clamp(-r, r))
            if module.bias is not None:
                y = y + module.bias.detach()
        return y
