"""Calibrate on the chip, train on the calibrated profile, recalibrate while training.

:class:`ChipCalibration` measures a chip that has a measurement mode (``chip.measure``, e.g.
:class:`~analogtorch.hil.VirtualChip`), fits a :class:`~analogtorch.hardware.HardwareProfile`
to the measurements (:func:`~analogtorch.hardware.calibrate.calibrate`: drift, read noise and
its growth, programming noise, transfer curve, wire resistance) and runs a model's analog
layers on that profile. As a :class:`~analogtorch.train.trainer.Trainer` callback it measures
again every ``refresh_every`` optimiser steps: the seed's "periodically deploy on the hardware
to refine the noise parameters".
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

from ..hardware.calibrate import CalibrationResult, calibrate
from ..hardware.measurement_sets import concat_measurements
from ..hardware.measurements import Measurements
from ..hardware.profile import HardwareProfile
from ..nn.base import analog_layers
from .chip_measurements import ChipMeasurement, MeasurementPlan

__all__ = ["ChipCalibration", "MeasurableBackend"]


@runtime_checkable
class MeasurableBackend(Protocol):
    """A backend with a measurement mode: characterisation experiments on fresh devices."""

    def measure(self, plan: MeasurementPlan | None = None, round_index: int = 0) -> ChipMeasurement:
        """One round of the experiments of ``plan``; each ``round_index`` on new devices."""
        ...

    @property
    def device_reads(self) -> int:
        """Device and bit-line reads taken by ``measure`` so far."""
        ...


class ChipCalibration:
    """Run ``model``'s analog layers on a profile calibrated on ``chip``; a ``Trainer``
    callback that recalibrates every ``refresh_every`` optimiser steps (``None``: never).

    :meth:`refresh` measures one more round of fresh devices (``chip.measure(plan, round)``),
    fits ``base`` (which supplies ``g_max``, ``t0``, ``v_read`` and every field no measurement
    informs) to all rounds so far and moves every analog layer onto the result
    (``set_profile``; weights and learned ranges are kept). Pooling the rounds assumes the
    chip's design is fixed, as a VirtualChip's is: each round then shrinks the standard
    errors as ``1/sqrt(rounds)``. ``history`` holds every calibration, oldest first.
    """

    def __init__(
        self,
        model: nn.Module,
        chip: MeasurableBackend,
        base: HardwareProfile,
        *,
        plan: MeasurementPlan | None = None,
        refresh_every: int | None = None,
    ) -> None:
        if not isinstance(chip, MeasurableBackend):
            raise TypeError(
                f"chip: {type(chip).__name__} has no measurement mode (measure, device_reads); "
                "calibrate from a measurement file with analogtorch calibrate instead"
            )
        if not isinstance(base, HardwareProfile):
            raise TypeError(f"base must be a HardwareProfile, got {type(base).__name__}")
        if refresh_every is not None and (isinstance(refresh_every, bool) or refresh_every < 1):
            raise ValueError(f"refresh_every={refresh_every!r}: give steps >= 1, or None")
        self.layers = analog_layers(model)
        if not self.layers:
            raise ValueError("model has no analog layers: convert it with analogtorch.convert")
        self.chip = chip
        self.base = base
        self.plan = plan or MeasurementPlan()
        self.refresh_every = refresh_every
        self.history: list[CalibrationResult] = []
        self.stuck_devices: list[dict[str, int]] = []
        self._rounds: list[Measurements] = []
        self._steps = 0

    def refresh(self) -> CalibrationResult:
        """Measure one more round, recalibrate on all rounds, move the layers onto it."""
        measured = self.chip.measure(self.plan, len(self._rounds))
        self._rounds.append(measured.measurements)
        pooled = concat_measurements(self._rounds, f"{len(self._rounds)} measurement round(s)")
        result = calibrate(pooled, self.base)
        for layer in self.layers.values():
            layer.set_profile(result.profile)
        self.history.append(result)
        self.stuck_devices.append(measured.stuck_devices)
        return result

    def on_step_end(self, trainer: object, epoch: int, step: int) -> None:
        self._steps += 1
        if self.refresh_every is not None and self._steps % self.refresh_every == 0:
            self.refresh()

    def state_dict(self) -> dict[str, int]:
        """Steps counted and rounds measured (every ``Trainer`` checkpoint saves them)."""
        return {"steps": self._steps, "rounds": len(self._rounds)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`'s ``state``: the rounds this object has not
        measured yet are measured again (a round's devices depend only on its index), so
        the layers' profile and ``history`` are those of the saved run."""
        self._steps = int(state["steps"])
        while len(self._rounds) < int(state["rounds"]):
            self.refresh()
