"""Running a converted model's analog layers on a backend: forward on hardware, backward
through the twin.

Inside :class:`HardwareLoop` every :class:`~analogtorch.nn.AnalogLinear` of the model is
replaced, at its output, according to ``mode``:

* ``"backend"``: ``y = B(x) + b`` — the backend's result only (evaluation on the chip);
* ``"hil"``: ``y = T(ŷ) + stopgrad(B(x) + b − T(ŷ))`` — the value is the hardware's, the
  gradient is the twin's ``∂T(ŷ)/∂(x, W, b)`` (physics-aware training, "forward on the real
  hardware, backward through the surrogate"); each (ŷ, B(x) + b) pair is kept for twin fits;
* ``"twin"``: ``y = T(ŷ)`` — the calibrated surrogate alone, no backend call.

``ŷ`` is the layer's own (nominal-profile) output. Inputs are clipped to the layer's DAC
full scale ``±input_range`` before they reach the backend (the DAC saturates). A layer is
re-programmed whenever its weights or DAC range differ from those last programmed. With a
``budget`` of backend input vectors (counted from the loop's creation), ``"hil"`` falls
back to ``"twin"`` once the budget is spent. The pairs of the last ``buffer_batches``
batches are kept for twin fits.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch
from torch import nn

from ..nn.base import analog_layers
from ..nn.linear import AnalogLinear
from .backend import Backend
from .twin import LayerTwin

LoopMode = Literal["backend", "hil", "twin"]


class HardwareLoop:
    """Context manager that routes a model's analog linear layers through ``backend``."""

    def __init__(
        self,
        model: nn.Module,
        backend: Backend,
        *,
        mode: LoopMode = "backend",
        twins: dict[str, LayerTwin] | None = None,
        budget: int | None = None,
        buffer_batches: int = 8,
    ) -> None:
        layers = analog_layers(model)
        if not layers:
            raise ValueError("model has no analog layers: convert it with analogtorch.convert")
        unsupported = [n for n, m in layers.items() if not isinstance(m, AnalogLinear)]
        if unsupported:
            raise ValueError(f"HIL supports analog linear layers only; not {unsupported}")
        if mode not in ("backend", "hil", "twin"):
            raise ValueError(f"mode={mode!r}: use 'backend', 'hil' or 'twin'")
        if budget is not None and budget < 0:
            raise ValueError(f"budget={budget}: backend input vectors must be >= 0")
        self.model = model
        self.backend = backend
        self.mode: LoopMode = mode
        self.layers: dict[str, AnalogLinear] = layers  # type: ignore[assignment]
        self.twins = twins or {n: LayerTwin(m.out_features) for n, m in layers.items()}
        for twin in self.twins.values():
            twin.requires_grad_(False)  # fitted only by fit_twins, never by the task loss
        self.budget = budget
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
        if self.mode == "twin":
            return False
        left = self.budget_left
        return left is None or left >= rows

    def _hook(self, name: str):
        def replace(module: AnalogLinear, args: tuple, nominal: torch.Tensor) -> torch.Tensor:
            x = args[0].reshape(-1, module.in_features)
            twin = self.twins[name]
            if not self._use_backend(x.shape[0]):
                if self.mode == "backend":
                    raise RuntimeError(f"backend budget of {self.budget} input vectors is spent")
                return twin(nominal)
            measured = self._measure(name, module, x).reshape(nominal.shape)
            if self.mode == "backend":
                return measured
            flat = (-1, module.out_features)
            self.pairs[name].append((nominal.detach().reshape(flat), measured.reshape(flat)))
            predicted = twin(nominal)
            return predicted + (measured - predicted).detach()

        return replace

    def _measure(self, name: str, module: AnalogLinear, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            r = float(module.input_range.detach().abs())
            # compared by value: edits through .data do not bump the version counter
            programmed = self._programmed.get(name)
            if (
                programmed is None
                or programmed[1] != r
                or not torch.equal(programmed[0], module.weight.detach())
            ):
                self.backend.program(name, module.weight.detach(), r)
                self._programmed[name] = (module.weight.detach().clone(), r)
            y = self.backend.mvm(name, x.detach().clamp(-r, r))
            if module.bias is not None:
                y = y + module.bias.detach()
        return y
