"""Physics-aware training on a backend, the calibrated-surrogate alternative, evaluation.

``hil_train``: forward on the backend, backward through the learned twin (see
:mod:`.loop`). The twins are first fitted on ``calibration_batches`` batches of backend
input/output pairs, then re-fitted every ``recalibrate_every`` steps on the most recent
pairs — alternating between the hardware and the surrogate. ``budget`` caps the backend input
vectors; past it, training continues through the twin alone.

``twin_train``: the calibrated-surrogate baseline: fit the twins once on backend pairs, then
train in software through the twins with no further backend calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..progress import progress_bar
from ..train.fit import TrainingDivergedError
from .backend import Backend
from .loop import HardwareLoop
from .twin import LayerTwin

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


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
) -> HILResult:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    result = HILResult(twins=loop.twins)
    model.eval()  # deterministic nominal surrogate under the twin; no training noise
    with progress_bar(show_progress) as bar:
        task = bar.add_task(label, total=steps)
        for step, (x, y) in zip(range(steps), _cycle(loader), strict=False):
            spent = loop.budget_left is not None and loop.budget_left < len(x)
            if result.twin_only_from_step is None and loop.mode == "hil" and spent:
                result.twin_only_from_step = step
            loss = loss_fn(model(x), y)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(
                    f"{label}: loss is {loss.item()} at step {step}; lower lr={lr}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
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
) -> HILResult:
    """Fine-tune ``model`` in place: forward on ``backend``, backward through the twins."""
    if steps < 1:
        raise ValueError(f"steps={steps}: need at least 1")
    twins, errors, used = calibrate_twins(
        model, backend, loader, calibration_batches, twin_steps, budget
    )
    left = None if budget is None else budget - used
    loop = HardwareLoop(model, backend, mode="hil", twins=twins, budget=left)
    with loop:
        result = _train(
            model, loop, loader, steps, lr, recalibrate_every, twin_steps, "HIL", show_progress
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
) -> HILResult:
    """Calibrated-surrogate baseline: fit twins once on the backend, then train through them."""
    if steps < 1:
        raise ValueError(f"steps={steps}: need at least 1")
    twins, errors, used = calibrate_twins(model, backend, loader, calibration_batches, twin_steps)
    with HardwareLoop(model, backend, mode="twin", twins=twins) as loop:
        result = _train(model, loop, loader, steps, lr, None, twin_steps, "twin", show_progress)
    result.twin_errors.insert(0, errors)
    result.backend_calls += used
    return result
