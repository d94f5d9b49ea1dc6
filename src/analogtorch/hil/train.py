"""Physics-aware training on a backend, the calibrated-surrogate alternative, evaluation.

``hil_train``: forward on the backend, backward through the learned twin (see
:mod:`.loop`). The twins are first fitted on ``calibration_batches`` batches of backend
input/output pairs, then re-fitted every ``recalibrate_every`` steps on the most recent
pairs — alternating between the hardware and the surrogate. ``budget`` caps the backend input
vectors; past it, training continues through the twin alone. The loss is cross-entropy
unless ``loss`` (``loss(model, x, y) -> (value, logs)``, the signature of
:class:`~analogtorch.train.trainer.Trainer`) says otherwise, and ``after_step(model)`` runs
after every optimizer step (e.g. a DEQ's contractivity projection); ``grad_on_twin`` goes to
the :class:`~.loop.HardwareLoop` (a DEQ's backward on the twin alone:
:mod:`analogtorch.deq.hil_stage`).

``twin_train``: the I/O-twin baseline: fit the twins once on backend input/output pairs,
then train in software through the twins with no further backend calls.

``calibrated_train``: the calibrated physical surrogate: measure the chip (its measurement
mode), calibrate a hardware profile on the measurements, train hardware-aware on that
profile with the :class:`~analogtorch.train.trainer.Trainer`, and recalibrate every
``refresh_every`` steps (:class:`~.chip_calibration.ChipCalibration`, a Trainer callback).
The chip computes no product for training; it is only measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.calibrate import CalibrationResult
from ..hardware.profile import HardwareProfile
from ..nn.base import analog_layers
from ..progress import progress_bar
from ..train.fit import TrainingDivergedError
from ..train.trainer import Trainer
from .backend import Backend
from .chip_calibration import ChipCalibration, MeasurableBackend
from .chip_measurements import MeasurementPlan
from .loop import HardwareLoop
from .twin import LayerTwin

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
StepHook = Callable[[nn.Module], object]


def _cross_entropy(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    return F.cross_entropy(net(x), y), {}


@dataclass
class HILResult:
    """What a hardware-in-the-loop run did: losses, backend input vectors it sent
    (calibration included), twin fit errors."""

    losses: list[float] = field(default_factory=list)
    backend_calls: int = 0
    twin_errors: list[dict[str, float]] = field(default_factory=list)
    twin_only_from_step: int | None = None
    twins: dict[str, LayerTwin] = field(default_factory=dict)


def _cycle(loader: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("loader yielded no batches")


def evaluate_on_backend(model: nn.Module, backend: Backend, loader: Batches) -> float:
    """Top-1 accuracy with every analog layer computed by ``backend``."""
    model.eval()
    correct = total = 0
    with HardwareLoop(model, backend, mode="backend"), torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += y.numel()
    if total == 0:
        raise ValueError("loader yielded no samples")
    return correct / total


def calibrate_twins(
    model: nn.Module,
    backend: Backend,
    loader: Batches,
    batches: int,
    steps: int = 300,
    budget: int | None = None,
) -> tuple[dict[str, LayerTwin], dict[str, float], int]:
    """Fit one twin per analog layer on up to ``batches`` batches of backend pairs (fewer
    when ``budget`` input vectors run out); returns twins, fit errors and calls used."""
    model.eval()
    with HardwareLoop(model, backend, mode="hil", budget=budget) as loop, torch.no_grad():
        for _, (x, _) in zip(range(batches), _cycle(loader), strict=False):
            if loop.budget_left is not None and loop.budget_left < len(x):
                break
            model(x)
        errors = loop.fit_twins(steps)
    return loop.twins, errors, loop.calls


def _train(
    model: nn.Module,
    loop: HardwareLoop,
    loader: Batches,
    steps: int,
    lr: float,
    recalibrate_every: int | None,
    twin_steps: int,
    label: str,
    show_progress: bool,
    loss_fn: LossFn,
    after_step: StepHook | None,
) -> HILResult:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    result = HILResult(twins=loop.twins)
    model.eval()  # deterministic nominal surrogate under the twin; no training noise
    with progress_bar(show_progress) as bar:
        task = bar.add_task(label, total=steps)
        for step, (x, y) in zip(range(steps), _cycle(loader), strict=False):
            spent = loop.budget_left is not None and loop.budget_left < len(x)
            if result.twin_only_from_step is None and loop.mode == "hil" and spent:
                result.twin_only_from_step = step
            loss, _ = loss_fn(model, x, y)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(
                    f"{label}: loss is {loss.item()} at step {step}; lower lr={lr}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            result.losses.append(loss.item())
            due = recalibrate_every and (step + 1) % recalibrate_every == 0
            if due and loop.mode == "hil" and result.twin_only_from_step is None:
                result.twin_errors.append(loop.fit_twins(twin_steps))
            bar.advance(task)
    result.backend_calls = loop.calls
    return result


def hil_train(
    model: nn.Module,
    backend: Backend,
    loader: Batches,
    *,
    steps: int,
    lr: float = 1e-4,
    budget: int | None = None,
    calibration_batches: int = 4,
    recalibrate_every: int | None = 50,
    twin_steps: int = 200,
    show_progress: bool = False,
    loss: LossFn = _cross_entropy,
    after_step: StepHook | None = None,
    grad_on_twin: bool = False,
) -> HILResult:
    """Fine-tune ``model`` in place: forward on ``backend``, backward through the twins."""
    if steps < 1:
        raise ValueError(f"steps={steps}: need at least 1")
    twins, errors, used = calibrate_twins(
        model, backend, loader, calibration_batches, twin_steps, budget
    )
    left = None if budget is None else budget - used
    loop = HardwareLoop(
        model,
        backend,
        mode="hil",
        twins=twins,
        budget=left,
        grad_on_twin=grad_on_twin,
    )
    with loop:
        result = _train(
            model,
            loop,
            loader,
            steps,
            lr,
            recalibrate_every,
            twin_steps,
            "HIL",
            show_progress,
            loss,
            after_step,
        )
    result.twin_errors.insert(0, errors)
    result.backend_calls += used
    return result


def twin_train(
    model: nn.Module,
    backend: Backend,
    loader: Batches,
    *,
    steps: int,
    lr: float = 1e-4,
    calibration_batches: int = 4,
    twin_steps: int = 200,
    show_progress: bool = False,
    loss: LossFn = _cross_entropy,
    after_step: StepHook | None = None,
) -> HILResult:
    """I/O-twin baseline: fit twins once on the backend, then train through them (``loss``
    and ``after_step`` as in :func:`hil_train`)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: need at least 1")
    twins, errors, used = calibrate_twins(model, backend, loader, calibration_batches, twin_steps)
    with HardwareLoop(model, backend, mode="twin", twins=twins) as loop:
        result = _train(
            model,
            loop,
            loader,
            steps,
            lr,
            None,
            twin_steps,
            "twin",
            show_progress,
            loss,
            after_step,
        )
    result.twin_errors.insert(0, errors)
    result.backend_calls += used
    return result


@dataclass
class CalibratedResult:
    """What a calibrated-physical-surrogate run did: the mean training loss, every
    calibration (the first before training, then one per refresh, each with standard errors)
    and the chip's device reads (the measurements; no products were computed on the chip)."""

    loss: float
    calibrations: list[CalibrationResult]
    device_reads: int


def calibrated_train(
    model: nn.Module,
    chip: MeasurableBackend,
    loader: Batches,
    *,
    steps: int,
    lr: float = 1e-4,
    plan: MeasurementPlan | None = None,
    refresh_every: int | None = None,
    base: HardwareProfile | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> CalibratedResult:
    """Fine-tune ``model`` in place, hardware-aware (training noise on), on a profile
    calibrated on ``chip``, recalibrated every ``refresh_every`` steps (``None``: once).

    ``base`` (default: the profile the model's analog layers share) is the profile the
    calibration starts from; ``plan`` the measurements of each round.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: need at least 1")
    profiles = {layer.profile for layer in analog_layers(model).values()}
    if not profiles:
        raise ValueError("model has no analog layers: convert it with analogtorch.convert")
    if base is None:
        if len(profiles) > 1:
            raise ValueError(
                f"the model's analog layers run on {len(profiles)} profiles; give base= (the "
                "profile to calibrate from)"
            )
        base = profiles.pop()
    reads_before = chip.device_reads
    calibration = ChipCalibration(model, chip, base, plan=plan, refresh_every=refresh_every)
    calibration.refresh()
    trainer = Trainer(
        model,
        _cross_entropy,
        torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr),
        epochs=1,
        callbacks=[calibration],
        seed=seed,
        label="calibrated physical surrogate",
        show_progress=show_progress,
    )
    history = trainer.fit(lambda _epoch: islice(_cycle(loader), steps), resume=False)
    return CalibratedResult(
        loss=history[-1]["loss"],
        calibrations=calibration.history,
        device_reads=chip.device_reads - reads_before,
    )
