"""Measurement mode of a simulated chip: the characterisation experiments whose CSV files
``analogtorch calibrate`` reads (schema: :mod:`analogtorch.hardware.measurements`).

The chip is characterised through a test port, the way a parametric tester reads an array:
every experiment programs fresh devices of its own measurement array with the chip's own
programming (:func:`~analogtorch.hardware.chip.program_weights`: programming noise, gain
mismatch, stuck devices, drift exponents) and reads them with the chip's own read model
(:func:`~analogtorch.hardware.chip.read_state`: drift, mean shift, read noise, IR drop) and
device I–V (:func:`~analogtorch.hardware.circuit.apply_transfer_curve`). The port senses
device and bit-line currents directly, without the column ADC and its read-out noise (which
calibration does not fit). A target ``x = G_target/g_max`` is programmed as the positive
device of a differential pair; in units of ``g_max`` one read of that device at time ``t``
after programming is ::

    y(t) = y+ (max(t, t0)/t0)^(-nu) (1 + mu(t)) + sigma_r(t) eps,   eps ~ N(0, 1) fresh,

and a reported conductance is never below 0 (an ammeter reads a conductance >= 0). Each
round of experiments (``round_index``) uses new devices; the experiments of
:class:`MeasurementPlan`:

1. **Stuck-device screen** (every array below): program all devices to 0, read; to
   ``g_max``, read; a device reading above ``g_max/2`` at 0 or below it at ``g_max`` is stuck
   and left out (its count is reported, not its data).
2. **Programming sweep**: ``programming_devices`` targets evenly spaced on ``[x_min, 1]``,
   each read ``reads`` times at ``t = 0`` and averaged (read noise / sqrt(reads)).
3. **Read-noise series**: ``drift_devices`` targets on ``[x_min, 1]``, one read at each of
   ``drift_times_s`` (drift, mean shift and read-noise growth).
4. **I–V sweep**: ``transfer_devices`` devices; conductance ``G = I(v_read)/v_read`` from
   ``reads`` averaged reads at ``v_read``, then one read at each of ``transfer_points``
   voltages on ``[-v_read, v_read]``: ``I = g_max v_read f(V/v_read) (y+ + sigma_r eps)``.
5. **IR-drop patterns**: an ``ir_rows x ir_cols`` array loaded with targets uniform on
   ``[x_min, 1]``: its wire-free device conductances (``ir_conductance_reads`` averaged reads
   of each device alone: the fit takes them as exact, so their error must stay well below
   that of the currents, else the fit's standard error is too small), then the bit-line
   currents ``I_j = g_max v_read (sum_i G_eff[i, j] u_i + sigma_r |u| eps)`` (averaged over
   ``reads``) for structured binary inputs ``u`` (rows at ``v_read`` or 0 V:
   all rows, even, odd, first half, second half, the first, middle and last row alone) and
   ``ir_random_vectors`` random ones; ``G_eff`` is the chip's IR-drop model of the loaded
   array. Binary inputs sit where the device I–V is calibrated (``f(0) = 0, f(1) = 1``), so
   the patterns see the wires alone.

``x_min = 0.25``: below it a programmed device can land at 0 and reads stop being Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..hardware.chip import ProgrammedLayer, program_weights, read_state
from ..hardware.circuit import apply_transfer_curve
from ..hardware.errors import explain
from ..hardware.measurements import (
    CrossbarMeasurement,
    DriftMeasurements,
    Measurements,
    ProgrammingMeasurements,
    TransferMeasurements,
)
from ..hardware.profile import HardwareProfile
from ..hardware.random import NoiseSource, derive_seed
from ..hardware.tiling import layer_row_tiling

__all__ = ["ChipMeasurement", "MeasurementPlan", "measure_chip"]

TARGET_MIN = 0.25  # x_min: lowest target, fraction of g_max (see the module docstring)
STUCK_THRESHOLD = 0.5  # fraction of g_max separating a stuck device from a working one


def _times(times: list[float]) -> list[float]:
    if any(b < a for a, b in pairwise(times)):
        raise ValueError(f"times must be non-decreasing, got {times}")
    if len(set(times)) < 3:
        raise ValueError(f"need reads at 3 or more distinct times to fit drift, got {times}")
    return times


class MeasurementPlan(BaseModel):
    """How many devices, reads, times and voltages each experiment uses (one round).

    The defaults pin every calibrated parameter of a PCM-like chip to a few per cent (see
    docs/calibration.md): about 4.6·10⁵ device and bit-line reads, under a second of simulation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    programming_devices: int = Field(8000, ge=20, le=10**7)
    drift_devices: int = Field(4000, ge=10, le=10**7)
    drift_times_s: Annotated[
        list[Annotated[float, Field(ge=0, le=3.2e9)]], AfterValidator(_times)
    ] = Field(default_factory=lambda: [0.0, 1.0, 20.0, 200.0, 2e3, 2e4, 2e5, 2e6])
    transfer_devices: int = Field(16, ge=1, le=10**5)
    transfer_points: int = Field(41, ge=3, le=10**4)
    ir_rows: int = Field(32, ge=2, le=256)
    ir_cols: int = Field(32, ge=1, le=256)
    ir_random_vectors: int = Field(8, ge=0, le=10**4)
    ir_conductance_reads: int = Field(256, ge=1, le=10**5)
    reads: int = Field(16, ge=1, le=10**4)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise explain(err, "MeasurementPlan", type(self)) from None


@dataclass
class _TestPort:
    """Direct access to one chip's measurement arrays for one round of experiments.

    ``isolated``: the chip's profile for a device read alone (no wires, no crosstalk);
    ``loaded``: the chip's profile for a whole array. Both hold a fixed unit weight range so
    that a weight ``x`` is programmed as the target ``x`` itself; ``reads`` counts device and
    bit-line reads.
    """

    isolated: HardwareProfile
    loaded: HardwareProfile
    seed: int
    round_index: int
    reads: int = 0

    def program(self, experiment: str, targets: torch.Tensor, loaded: bool) -> ProgrammedLayer:
        """Program ``targets`` (out, rows) as positive devices of the experiment's array."""
        profile = self.loaded if loaded else self.isolated
        seed = derive_seed(self.seed, "measure", experiment, self.round_index)
        layer = program_weights(
            targets, layer_row_tiling(targets.shape, profile.tile_rows), profile, seed
        )
        return replace(layer, g_minus=torch.zeros_like(layer.g_minus))

    def source(self, experiment: str, *parts: object) -> NoiseSource:
        seed = derive_seed(self.seed, "measure-read", experiment, self.round_index, *parts)
        return NoiseSource(seed)

    def read(self, layer: ProgrammedLayer, experiment: str, time_s: float, n: int) -> torch.Tensor:
        """``n`` reads of every device alone at ``time_s``: (n, out, rows), units of g_max."""
        state = read_state(layer, self.isolated, time_s, self.source(experiment, time_s))
        self.reads += n * state.w_hat.numel()
        return state.w_hat + state.read_noise_std * state.source.normal((n, *state.w_hat.shape))

    def devices(
        self, experiment: str, n: int
    ) -> tuple[torch.Tensor, torch.Tensor, ProgrammedLayer]:
        """``n`` devices of the experiment, screened, then programmed to targets evenly spaced
        on ``[x_min, 1]`` (bin centres): the targets (n,), True for the devices that are not
        stuck (n,), and the programmed array (n devices of one row each)."""
        screen = []
        for level in (0.0, 1.0):
            layer = self.program(experiment, torch.full((n, 1), level), False)
            screen.append(self.read(layer, f"{experiment}-screen-{level}", 0.0, 1)[0, :, 0])
        working = (screen[0] < STUCK_THRESHOLD) & (screen[1] > STUCK_THRESHOLD)
        targets = TARGET_MIN + (1 - TARGET_MIN) * (torch.arange(n) + 0.5) / n
        return targets, working, self.program(experiment, targets.reshape(n, 1), False)


def _programming_sweep(
    port: _TestPort, plan: MeasurementPlan, g_max: float
) -> tuple[ProgrammingMeasurements, int]:
    targets, ok, layer = port.devices("programming", plan.programming_devices)
    programmed = port.read(layer, "programming", 0.0, plan.reads).mean(0)[:, 0].clamp_min(0)
    data = ProgrammingMeasurements(
        (targets[ok] * g_max).double().numpy(), (programmed[ok] * g_max).double().numpy()
    )
    return data, int((~ok).sum())


def _drift_series(
    port: _TestPort, plan: MeasurementPlan, g_max: float
) -> tuple[DriftMeasurements, int]:
    targets, ok, layer = port.devices("drift", plan.drift_devices)
    reads = torch.stack(
        [port.read(layer, "drift", t, 1)[0, :, 0] for t in plan.drift_times_s], dim=1
    ).clamp_min(0)[ok]
    devices = torch.nonzero(ok)[:, 0]
    n_times = len(plan.drift_times_s)
    data = DriftMeasurements(
        device=np.repeat(np.arange(len(devices)), n_times),
        time_s=np.tile(np.asarray(plan.drift_times_s, float), len(devices)),
        conductance_siemens=(reads * g_max).double().numpy().ravel(),
        device_names=tuple(f"d{int(i)}" for i in devices),
        target_siemens=np.repeat((targets[ok] * g_max).double().numpy(), n_times),
    )
    return data, int((~ok).sum())


def _iv_sweep(
    port: _TestPort, plan: MeasurementPlan, g_max: float
) -> tuple[TransferMeasurements, int]:
    profile = port.isolated
    _, ok, layer = port.devices("transfer", plan.transfer_devices)
    conductance = port.read(layer, "transfer", 0.0, plan.reads).mean(0)[ok, 0].clamp_min(0)
    v_hat = torch.linspace(-1.0, 1.0, plan.transfer_points)
    # one read per voltage; the device current is f(V/v_read) times the read conductance
    reads = port.read(layer, "transfer-iv", 0.0, plan.transfer_points)[:, ok, 0]
    current = apply_transfer_curve(v_hat, profile)[:, None] * reads
    scale = g_max * profile.v_read_volts
    n_ok = int(ok.sum())
    data = TransferMeasurements(
        voltage_v=(v_hat * profile.v_read_volts).double().repeat(n_ok).numpy(),
        current_a=(current.T * scale).double().numpy().ravel(),
        conductance_siemens=(conductance * g_max).double().repeat_interleave(len(v_hat)).numpy(),
    )
    return data, int((~ok).sum())


def _input_patterns(rows: int, n_random: int, gen: torch.Generator) -> torch.Tensor:
    """Binary word-line patterns (vectors, rows): the structured ones, then random ones."""
    index = torch.arange(rows)
    structured = [
        torch.ones(rows, dtype=torch.bool),
        index % 2 == 0,
        index % 2 == 1,
        index < rows // 2,
        index >= rows // 2,
        *(index == k for k in sorted({0, rows // 2, rows - 1})),
    ]
    random = torch.rand(n_random, rows, generator=gen) < 0.5
    return torch.cat([torch.stack(structured), random]).float()


def _ir_patterns(port: _TestPort, plan: MeasurementPlan, g_max: float) -> CrossbarMeasurement:
    profile = port.loaded
    if plan.ir_rows > profile.tile_rows or plan.ir_cols > profile.tile_cols:
        raise ValueError(
            f"ir_rows x ir_cols = {plan.ir_rows} x {plan.ir_cols}: the IR-drop array must fit "
            f"one tile of this chip ({profile.tile_rows} x {profile.tile_cols})"
        )
    gen = torch.Generator().manual_seed(derive_seed(port.seed, "ir-pattern", port.round_index))
    targets = TARGET_MIN + (1 - TARGET_MIN) * torch.rand(plan.ir_cols, plan.ir_rows, generator=gen)
    layer = port.program("ir", targets, True)
    conductance = port.read(layer, "ir", 0.0, plan.ir_conductance_reads).mean(0).clamp_min(0)
    u = apply_transfer_curve(_input_patterns(plan.ir_rows, plan.ir_random_vectors, gen), profile)
    state = read_state(layer, profile, 0.0, port.source("ir-currents"))
    noise = state.source.normal((plan.reads, *u.shape[:1], plan.ir_cols))
    sigma = state.read_noise_std * u.norm(dim=1, keepdim=True)
    port.reads += plan.reads * u.shape[0] * plan.ir_cols
    current = (u @ state.w_hat.T + sigma * noise).mean(0)
    return CrossbarMeasurement(
        name=f"ir{port.round_index}",
        conductance_siemens=(conductance.T * g_max).double().numpy(),
        voltage_v=(u * profile.v_read_volts).double().numpy(),
        current_a=(current * g_max * profile.v_read_volts).double().numpy(),
    )


@dataclass(frozen=True)
class ChipMeasurement:
    """One round of experiments on a chip: the data, the stuck devices left out of each
    experiment and the device/bit-line reads it took."""

    measurements: Measurements
    stuck_devices: dict[str, int]
    reads: int


def measure_chip(
    profile: HardwareProfile, seed: int, plan: MeasurementPlan, round_index: int = 0
) -> ChipMeasurement:
    """Run every experiment of ``plan`` (module docstring) on the chip of ``profile`` drawn
    from ``seed``; round ``round_index`` uses its own fresh devices."""
    if not isinstance(plan, MeasurementPlan):
        raise TypeError(f"plan must be a MeasurementPlan, got {type(plan).__name__}")
    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 0:
        raise ValueError(f"round_index={round_index!r}: must be an int >= 0")
    unit = {"weight_range": 1.0, "drift_compensation": False}
    port = _TestPort(
        isolated=profile.replace(wire_resistance_ohm=0.0, crosstalk=0.0, **unit),
        loaded=profile.replace(**unit),
        seed=seed,
        round_index=round_index,
    )
    g_max = profile.g_max_siemens
    programming, stuck_programming = _programming_sweep(port, plan, g_max)
    drift, stuck_drift = _drift_series(port, plan, g_max)
    transfer, stuck_transfer = _iv_sweep(port, plan, g_max)
    crossbar = _ir_patterns(port, plan, g_max)
    measurements = Measurements(
        drift=drift,
        programming=programming,
        transfer=transfer,
        ir_drop=(crossbar,),
        source=f"chip measurement round {round_index}",
    )
    stuck = {"programming": stuck_programming, "drift": stuck_drift, "transfer": stuck_transfer}
    return ChipMeasurement(measurements, stuck, port.reads)
