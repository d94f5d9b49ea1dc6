"""``SurrogateBackend``: the hardware model itself behind the :class:`Backend` interface.

Each programmed layer is an :class:`~analogtorch.nn.AnalogLinear` on ``profile`` whose devices
are drawn once by a :class:`~analogtorch.hardware.Chip` of ``seed`` (programming noise,
mismatch, stuck devices and drift exponents fixed per device, as on one physical chip).
Every ``mvm`` is a fresh read at the backend's clock ``time_s`` (read noise drawn anew each
call). The clock is simulated: ``advance(seconds)`` moves it; the default reads happen
``time_s`` seconds after programming. ``measure(plan)`` characterises the chip through its
test port (:mod:`.chip_measurements`): the data ``analogtorch calibrate`` fits.
"""

from __future__ import annotations

import torch

from ..hardware.chip import Chip, read_state
from ..hardware.profile import HardwareProfile
from ..hardware.random import NoiseSource, derive_seed
from ..nn.linear import AnalogLinear
from .backend import check_inputs
from .chip_measurements import ChipMeasurement, MeasurementPlan, measure_chip


class SurrogateBackend:
    """The differentiable hardware model used as a backend (white box, for tests and twins)."""

    name = "surrogate"

    def __init__(self, profile: HardwareProfile, seed: int = 0, time_s: float = 60.0) -> None:
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
        if time_s < 0:
            raise ValueError(f"time_s={time_s}: seconds since programming must be >= 0")
        self._profile = profile
        self._chip = Chip(profile, seed)
        self._source = NoiseSource(derive_seed(seed, "backend-read"), torch.device("cpu"))
        self._layers: dict[str, AnalogLinear] = {}
        self._ranges: dict[str, float] = {}
        self._elapsed: dict[str, float] = {}
        self._time_s = float(time_s)
        self._calls = 0
        self._device_reads = 0

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def device_reads(self) -> int:
        """Device and bit-line reads taken by ``measure`` so far."""
        return self._device_reads

    def measure(self, plan: MeasurementPlan | None = None, round_index: int = 0) -> ChipMeasurement:
        """Run the characterisation experiments of ``plan`` (default :class:`MeasurementPlan`)
        on this chip's measurement arrays; each ``round_index`` uses fresh devices."""
        result = measure_chip(
            self._profile, self._chip.seed, plan or MeasurementPlan(), round_index
        )
        self._device_reads += result.reads
        return result

    def program(self, layer: str, weight: torch.Tensor, input_range: float) -> torch.Tensor | None:
        """Program ``weight`` (out, in); returns ``None`` (no read-back on this backend)."""
        if weight.ndim != 2:
            raise ValueError(f"layer {layer!r}: weight must be 2-D, not {tuple(weight.shape)}")
        if not input_range > 0:
            raise ValueError(f"layer {layer!r}: input_range={input_range} must be > 0")
        out_features, in_features = weight.shape
        analog = self._layers.get(layer)
        if analog is None or analog.weight.shape != weight.shape:
            analog = AnalogLinear(in_features, out_features, bias=False, profile=self._profile)
            analog.eval()
            self._layers[layer] = analog
        with torch.no_grad():
            analog.weight.copy_(weight.detach().to("cpu", torch.float32))
            analog.input_range.fill_(float(input_range))
            analog.input_range_initialized.fill_(True)
        self._ranges[layer] = float(input_range)
        self._elapsed[layer] = 0.0
        return None

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass for every programmed layer."""
        if seconds < 0:
            raise ValueError(f"seconds={seconds}: time only moves forward")
        for layer in self._elapsed:
            self._elapsed[layer] += seconds

    def time_since_programming(self, layer: str) -> float:
        return self._time_s + self._elapsed[layer]

    def mvm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        analog = self._layers[layer]
        check_inputs(layer, x, self._ranges[layer], analog.in_features)
        programmed = self._chip.program_layer(
            layer, analog.weight, analog.row_tiling(self._profile)
        )
        analog.chip_read = read_state(
            programmed, self._profile, self.time_since_programming(layer), self._source
        )
        try:
            with torch.no_grad():
                y = analog(x.detach().to("cpu", torch.float32))
        finally:
            analog.chip_read = None
        self._calls += x.shape[0]
        return y.to(x.device, x.dtype)
