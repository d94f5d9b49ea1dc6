"""Noise schedules ``σ(t)`` over training steps, and a hardware curriculum over epochs.

Schedules are frozen dataclasses called with a step ``t >= 0`` (an int); ``T`` is
``total_steps``, and every schedule holds its last value for ``t > T``:

* :class:`Constant`    ``σ_t = value``;
* :class:`Linear`      ``σ_t = start + (end − start) · min(t, T)/T``;
* :class:`Exponential` ``σ_t = start · (end/start)^(min(t, T)/T)``, ``start, end > 0``
                       (geometric interpolation: the midpoint is ``sqrt(start · end)``);
* :class:`Step`        ``σ_t = values[i]`` for ``boundaries[i−1] <= t < boundaries[i]``.

Both end points are exact: ``σ_0 = start`` and ``σ_T = end`` bit for bit.
:func:`make_schedule` builds one from a YAML-style spec.

A :class:`Curriculum` switches the hardware on in stages (by epoch). Each :class:`Stage`
says how much of the base profile a layer sees: ``noise_scale`` (a schedule over the step
within the stage, multiplying every noise amplitude), ``quantize`` (the weight grid and
converters: ``weight_bits``, ``weight_range``, ``dac_bits``, ``adc_bits``) and ``circuit``
(IR drop, crosstalk, device transfer curve). The default stages are
``digital`` (ideal) → ``noise`` (noise ramped 0 → 1, infinite precision) → ``precision``
(full noise + grid and converters) → ``full`` (the base profile, circuit included).

Applying a stage's profile to a model (each step, or when the profile changes)::

    profile = curriculum.profile_at(epoch, step_in_stage, base)
    apply_profile(model, profile)
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import nn

from ..hardware.profile import HardwareProfile
from ..nn.base import analog_layers

if TYPE_CHECKING:
    from .trainer import Trainer


@runtime_checkable
class Schedule(Protocol):
    """A value per training step: ``schedule(step) -> float``."""

    def __call__(self, step: int) -> float: ...


def _check_step(step: int, name: str = "step") -> int:
    if isinstance(step, bool):
        raise TypeError(f"{name}={step!r}: must be an integer >= 0, not a bool")
    try:
        index = operator.index(step)
    except TypeError:
        raise TypeError(f"{name}={step!r}: must be an integer >= 0") from None
    if index < 0:
        raise ValueError(f"{name}={step}: must be >= 0")
    return index


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r}: must be a number")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value}: must be finite")
    return float(value)


def _check_total(total_steps: int) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps={total_steps!r}: must be an integer >= 1")


@dataclass(frozen=True)
class Constant:
    """``σ_t = value`` for every step."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _check_finite("value", self.value))

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.value


@dataclass(frozen=True)
class Linear:
    """``σ_t = start + (end − start) · t/T`` for ``t <= T``, ``end`` after."""

    start: float
    end: float
    total_steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _check_finite("start", self.start))
        object.__setattr__(self, "end", _check_finite("end", self.end))
        _check_total(self.total_steps)

    def __call__(self, step: int) -> float:
        t = _check_step(step)
        if t >= self.total_steps:
            return self.end
        f = t / self.total_steps
        return (1.0 - f) * self.start + f * self.end


@dataclass(frozen=True)
class Exponential:
    """``σ_t = start · (end/start)^(t/T)`` for ``t <= T``, ``end`` after; ``start, end > 0``."""

    start: float
    end: float
    total_steps: int

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = _check_finite(name, getattr(self, name))
            if value <= 0:
                raise ValueError(
                    f"{name}={value}: exponential schedules need start, end > 0 "
                    "(use Linear to reach 0)"
                )
            object.__setattr__(self, name, value)
        _check_total(self.total_steps)

    def __call__(self, step: int) -> float:
        t = _check_step(step)
        if t >= self.total_steps:
            return self.end
        return self.start * (self.end / self.start) ** (t / self.total_steps)


@dataclass(frozen=True)
class Step:
    """Piecewise constant: ``values[i]`` for ``boundaries[i−1] <= t < boundaries[i]``.

    ``boundaries`` are strictly increasing steps ``> 0``; ``len(values) = len(boundaries)
    + 1`` (``values[0]`` before the first boundary, ``values[-1]`` from the last one on).
    """

    values: tuple[float, ...]
    boundaries: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        values = tuple(_check_finite(f"values[{i}]", v) for i, v in enumerate(self.values))
        boundaries = tuple(self.boundaries)
        for i, b in enumerate(boundaries):
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ValueError(f"boundaries[{i}]={b!r}: must be an integer step >= 1")
        if any(b >= c for b, c in pairwise(boundaries)):
            raise ValueError(f"boundaries={list(boundaries)}: must be strictly increasing")
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{len(values)} values for {len(boundaries)} boundaries: need exactly one "
                "more value than boundaries"
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "boundaries", boundaries)

    def __call__(self, step: int) -> float:
        return self.values[bisect.bisect_right(self.boundaries, _check_step(step))]


_KINDS: dict[str, type] = {
    "constant": Constant,
    "linear": Linear,
    "exponential": Exponential,
    "step": Step,
}


def make_schedule(spec: Mapping[str, Any] | str | float | Schedule) -> Schedule:
    """A schedule from a config value.

    * a number, or a string holding one (YAML reads ``1e-3`` as a string) -> :class:`Constant`;
    * a mapping ``{"kind": "constant" | "linear" | "exponential" | "step", **fields}``, e.g.
      ``{"kind": "linear", "start": 0, "end": 1, "total_steps": 10}``;
    * a schedule (any callable ``step -> float``) is returned as it is.
    """
    if isinstance(spec, bool):
        raise TypeError(f"schedule spec={spec!r}: a bool is not a schedule; give a number")
    if isinstance(spec, (int, float)):
        return Constant(spec)
    if isinstance(spec, str):
        try:
            return Constant(float(spec))
        except ValueError:
            raise ValueError(
                f"schedule spec={spec!r}: a string must be a number; for other schedules "
                f"use a mapping with kind in {sorted(_KINDS)}"
            ) from None
    if isinstance(spec, Mapping):
        params = dict(spec)
        kind = params.pop("kind", None)
        if kind not in _KINDS:
            raise ValueError(f"schedule kind={kind!r}: use one of {sorted(_KINDS)}")
        cls = _KINDS[kind]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"{kind} schedule: unknown field(s) {unknown}; known: {sorted(known)}")
        if kind == "step":
            params = {k: tuple(v) for k, v in params.items()}
        try:
            return cls(**params)
        except TypeError as err:
            raise ValueError(
                f"{kind} schedule {dict(spec)}: {err}; fields: {sorted(known)}"
            ) from None
    if callable(spec):
        return spec
    raise TypeError(
        f"schedule spec={type(spec).__name__}: give a number, a mapping with 'kind' or a schedule"
    )


@dataclass(frozen=True)
class Stage:
    """One curriculum stage, in force from ``start_epoch`` until the next stage starts.

    Args:
        name: label (``"digital"``, ``"noise"``, ...).
        start_epoch: first epoch of the stage (an integer >= 0).
        noise_scale: factor ``f >= 0`` on the base profile's noise amplitudes
            (``HardwareProfile.scale_noise(f)``, and ``mismatch_std · f``) as a function of
            the step within the stage; a number, a :func:`make_schedule` spec or a schedule.
        quantize: keep the base weight grid and converters (``weight_bits``,
            ``weight_range``, ``dac_bits``, ``adc_bits``); ``False`` sets them to ``None``.
        circuit: keep the base circuit effects (``wire_resistance_ohm``, ``crosstalk``,
            ``transfer_curve``); ``False`` makes the crossbar ideal.
    """

    name: str
    start_epoch: int
    noise_scale: Schedule | Mapping[str, Any] | float | str = 1.0
    quantize: bool = True
    circuit: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"stage name={self.name!r}: give a non-empty string")
        _check_step(self.start_epoch, f"stage {self.name!r} start_epoch")
        object.__setattr__(self, "noise_scale", make_schedule(self.noise_scale))
        for flag in ("quantize", "circuit"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"stage {self.name!r} {flag}={getattr(self, flag)!r}: need a bool")

    def profile(self, base: HardwareProfile, step_in_stage: int) -> HardwareProfile:
        """The profile this stage gives at ``step_in_stage``; ``base`` itself when all is on."""
        if not isinstance(base, HardwareProfile):
            raise TypeError(f"base_profile must be a HardwareProfile, got {type(base).__name__}")
        factor = float(self.noise_scale(step_in_stage))  # type: ignore[operator]
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(
                f"stage {self.name!r}: noise_scale({step_in_stage})={factor}; the noise factor "
                "must be finite and >= 0"
            )
        if factor == 1.0 and self.quantize and self.circuit:
            return base
        changes: dict[str, Any] = {"mismatch_std": base.mismatch_std * factor}
        if not self.quantize:
            changes.update(weight_bits=None, weight_range=None, dac_bits=None, adc_bits=None)
        if not self.circuit:
            changes.update(
                wire_resistance_ohm=0.0,
                crosstalk=0.0,
                transfer_curve="linear",
                transfer_nonlinearity=0.0,
            )
        return base.scale_noise(factor).replace(**changes)


def default_stages(
    noise_epoch: int = 1, precision_epoch: int = 2, full_epoch: int = 3, ramp_steps: int = 1000
) -> tuple[Stage, ...]:
    """``digital`` → ``noise`` (linear ramp 0 → 1 in ``ramp_steps``) → ``precision`` → ``full``."""
    return (
        Stage("digital", 0, noise_scale=0.0, quantize=False, circuit=False),
        Stage("noise", noise_epoch, Linear(0.0, 1.0, ramp_steps), quantize=False, circuit=False),
        Stage("precision", precision_epoch, noise_scale=1.0, quantize=True, circuit=False),
        Stage("full", full_epoch, noise_scale=1.0, quantize=True, circuit=True),
    )


def epoch_stages(epochs: int, steps_per_epoch: int) -> tuple[Stage, ...]:
    """The default curriculum fitted to ``epochs`` epochs: :func:`default_stages` with the
    noise ramped over one epoch (``ramp_steps = steps_per_epoch``) when there are at least 4
    epochs; 3 epochs: digital → noise ramp → full; 2: digital → full; 1: full only."""
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs={epochs}, steps_per_epoch={steps_per_epoch}: both must be >= 1")
    ramp = Linear(0.0, 1.0, steps_per_epoch)
    if epochs >= 4:
        return default_stages(1, 2, 3, ramp_steps=steps_per_epoch)
    digital = Stage("digital", 0, noise_scale=0.0, quantize=False, circuit=False)
    if epochs == 3:
        return (digital, Stage("noise", 1, ramp, quantize=False, circuit=False), Stage("full", 2))
    if epochs == 2:
        return (digital, Stage("full", 1))
    return (Stage("full", 0),)


@dataclass(frozen=True)
class Curriculum:
    """Ordered stages by epoch; the stage in force at epoch ``e`` is the last one started.

    The first stage starts at epoch 0 and start epochs increase strictly. The digital stage
    of the default keeps the base profile's name, tiles and energy constants and removes
    every non-ideality, so ``profile.is_ideal`` holds and analog layers take their exact
    digital path.
    """

    stages: tuple[Stage, ...] = field(default_factory=default_stages)

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages:
            raise ValueError("stages=[]: give at least one Stage")
        bad = [type(s).__name__ for s in stages if not isinstance(s, Stage)]
        if bad:
            raise TypeError(f"stages must be Stage objects, got {bad}")
        if stages[0].start_epoch != 0:
            raise ValueError(
                f"first stage {stages[0].name!r} starts at epoch {stages[0].start_epoch}: "
                "the first stage must start at epoch 0"
            )
        for a, b in pairwise(stages):
            if b.start_epoch <= a.start_epoch:
                raise ValueError(
                    f"stage {b.name!r} starts at epoch {b.start_epoch}, not after stage "
                    f"{a.name!r} (epoch {a.start_epoch}): start epochs must increase strictly"
                )
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names {names} repeat: give each stage its own name")
        object.__setattr__(self, "stages", stages)

    @classmethod
    def from_config(cls, stages: Iterable[Mapping[str, Any]]) -> Curriculum:
        """From YAML-style stage mappings (the :class:`Stage` fields; ``noise_scale`` as in
        :func:`make_schedule`)."""
        built = []
        for i, spec in enumerate(stages):
            try:
                built.append(Stage(**spec))
            except TypeError as err:
                known = [f.name for f in fields(Stage)]
                raise ValueError(f"stage {i} {dict(spec)}: {err}; fields: {known}") from None
        return cls(tuple(built))

    def stage_at(self, epoch: int) -> Stage:
        """The stage in force at ``epoch`` (an integer >= 0)."""
        epoch = _check_step(epoch, "epoch")
        starts = [s.start_epoch for s in self.stages]
        return self.stages[bisect.bisect_right(starts, epoch) - 1]

    def profile_at(
        self, epoch: int, step_in_stage: int, base_profile: HardwareProfile
    ) -> HardwareProfile:
        """The profile at ``epoch`` and optimizer step ``step_in_stage`` (counted from the
        stage's first step), derived from ``base_profile`` by :meth:`Stage.profile`."""
        return self.stage_at(epoch).profile(base_profile, _check_step(step_in_stage, "step"))


def apply_profile(model: nn.Module, profile: HardwareProfile) -> nn.Module:
    """Give every analog layer of ``model`` the profile ``profile`` (see
    :meth:`~analogtorch.nn.base.AnalogLayerMixin.set_profile`); returns ``model``."""
    if not isinstance(profile, HardwareProfile):
        raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
    for layer in analog_layers(model).values():
        layer.set_profile(profile)
    return model


class CurriculumProfiles:
    """Trainer callback: run the model on ``curriculum``'s profile (built from ``base``) at
    the current epoch and step within the stage, ``(epoch − stage start) · steps_per_epoch +
    step``; re-derived after every step so that ramps (noise 0 → 1) take effect, and
    stateless so that a resumed run follows the same profiles as an uninterrupted one.

    The profile is handed to ``model.set_profile`` when the model has one (a hybrid DEQ
    also re-profiles its converters), else to every analog layer (:func:`apply_profile`).
    """

    def __init__(self, curriculum: Curriculum, base: HardwareProfile, steps_per_epoch: int):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch={steps_per_epoch}: must be >= 1")
        self.curriculum = curriculum
        self.base = base
        self.steps_per_epoch = steps_per_epoch

    def _apply(self, trainer: Trainer, epoch: int, step: int) -> None:
        start = self.curriculum.stage_at(epoch).start_epoch
        step_in_stage = (epoch - start) * self.steps_per_epoch + step
        profile = self.curriculum.profile_at(epoch, step_in_stage, self.base)
        set_profile = getattr(trainer.model, "set_profile", None)
        if set_profile is not None:
            set_profile(profile)
        else:
            apply_profile(trainer.model, profile)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._apply(trainer, epoch, 0)

    def on_step_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        self._apply(trainer, epoch, step + 1)

    def on_resume(self, trainer: Trainer, epoch: int, steps_done: int) -> None:
        self._apply(trainer, epoch, steps_done)
