"""Hardware-in-the-loop fine-tuning of a :class:`HybridDEQ`: the curriculum's last stage.

Seed 003's curriculum ends with (d), "transfer to the actual hardware for final adaptation".
:func:`finetune_on_backend` runs it with the machinery of :mod:`analogtorch.hil`
(:func:`~analogtorch.hil.hil_train`, :class:`~analogtorch.hil.HardwareLoop`): only the core's
feedback ``W_z`` is analog, so it is the one layer computed by the backend; the encoder, the
converters and the head stay digital.

**Forward.** For a batch of ``N`` inputs the solver iterates

    z_{t+1} = σ(B(z_t) + u),        u = DAC(g_θ(x)),

where ``B(z) = z W_zᵀ`` as read on the backend (inside the loop the layer's value is
``T(ŷ) + stopgrad(B(z) − T(ŷ)) = B(z)``). Every solver iteration is one backend read of ``N``
input vectors, so a solve of ``k`` iterations costs ``k · N`` reads, counted by the backend
(``HILResult.backend_calls``, calibration included).

**Backward** (``method="hil"``). Implicit differentiation at the settled state ``z*`` with
the twin ``T`` in place of the backend (``grad_on_twin``): with
``f_T(z) = σ(T(S(z, W_z)) + u)``,

    gᵀ = ∂L/∂z* + gᵀ J_T,   J_T = ∂f_T/∂z (z*),     ∂L/∂φ = gᵀ ∂f_T/∂φ (z*),

the adjoint fixed point solved as in :mod:`.backward`. The Jacobian is the twin's, evaluated
at the hardware's fixed point; the backward reads nothing from the backend (reading the core
once more at ``z*`` would only have carried the same twin gradient, its value is discarded).
Its error is the twin's fit error near ``z*``: the loop keeps the pairs of the core's last 8
reads, i.e. the last solver iterations of the latest batch, close to its ``z*``, and the twins
are fitted on them after ``calibration_batches`` batches and refitted every
``recalibrate_every`` steps (a local fit where the Jacobian is needed; keeping whole solves
would make every fit several times dearer, for pairs far from ``z*``). ``method="twin"`` is
the I/O-twin alternative: the twins fitted once, then forward and backward both on the
twins, no further backend reads.

**Non-convergence.** A solve on a noisy backend usually stops at the noise floor (the
residual cannot fall below the read noise) rather than at ``tol``. Every forward solve of
the fine-tuning is kept (:class:`~.options.SolverStats`) and summarised by
:func:`summarise_solves` (converged fraction, stop reasons, iterations, worst residual); if
any stopped short of ``tol``, :func:`finetune_on_backend` warns once
(:class:`UnconvergedSolvesWarning`) with that summary. A non-finite loss stops the run
(:class:`~analogtorch.train.fit.TrainingDivergedError`); a diverged sample keeps its best
finite iterate (:mod:`.residual`), so no NaN reaches the optimizer silently.
"""

from __future__ import annotations

import collections
import statistics
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..hil import Backend, HardwareLoop, HILResult, hil_train, twin_train
from .hybrid import HybridDEQ
from .options import SolverStats
from .training import DEQLoss, forward_batches, task_error

FinetuneMethod = Literal["hil", "twin"]


class UnconvergedSolvesWarning(RuntimeWarning):
    """Forward solves of a DEQ on a backend stopped before reaching their tolerance."""


def summarise_solves(stats: Sequence[SolverStats]) -> dict[str, Any]:
    """Forward solves in figures: how many, the fraction that reached ``tol``, the count of
    each stop reason, the mean iterations and the largest final residual."""
    if not stats:
        raise ValueError("no solver stats to summarise")
    return {
        "solves": len(stats),
        "converged_fraction": sum(s.converged for s in stats) / len(stats),
        "reasons": dict(collections.Counter(s.reason for s in stats)),
        "iterations": statistics.fmean(s.iterations for s in stats),
        "final_residual_max": max(s.final_residual for s in stats),
    }


def _check(model: HybridDEQ) -> None:
    if not isinstance(model, HybridDEQ):
        raise TypeError(f"expected a HybridDEQ, got {type(model).__name__}")
    if model.forward_mode != "solver":
        raise ValueError(
            f"forward={model.forward_mode!r}: HIL runs the core's crossbar read by read, which "
            "needs forward='solver' (the relaxation has no reads to send to a backend)"
        )


def evaluate_on_backend(
    model: HybridDEQ, backend: Backend, x: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, Any]:
    """Task error (:func:`.training.task_error`) with every core read computed by
    ``backend``, the backend input vectors this took and the summary of the solves."""
    _check(model)
    model.eval()
    with HardwareLoop(model, backend, mode="backend") as loop:
        out, stats = forward_batches(model, x)
    return {
        "error": task_error(kind, out, y),
        "reads": loop.calls,
        "iterations": statistics.fmean(s.iterations for s in stats),
        "solves": summarise_solves(stats),
    }


class _RecordingLoss:
    """The DEQ's task loss, keeping each forward's solver stats."""

    def __init__(self, kind: str) -> None:
        self.loss = DEQLoss(kind)
        self.stats: list[SolverStats] = []

    def __call__(
        self, model: HybridDEQ, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        value, logs = self.loss(model, x, y)
        self.stats.append(model.last_forward_stats)
        return value, logs


def finetune_on_backend(
    model: HybridDEQ,
    backend: Backend,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    *,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 128,
    method: FinetuneMethod = "hil",
    budget: int | None = None,
    recalibrate_every: int | None = 50,
    calibration_batches: int = 4,
    twin_steps: int = 200,
    seed: int = 0,
    show_progress: bool = False,
) -> tuple[HILResult, dict[str, Any]]:
    """Fine-tune ``model`` in place on ``backend`` (see the module docstring): ``steps`` Adam
    steps at ``lr`` on batches of ``(x, y)`` in an order drawn from ``seed``, the core
    projected back onto its contractive set after each. Returns the run
    (:class:`~analogtorch.hil.HILResult`: losses, backend input vectors, twin errors) and
    the summary of its forward solves (:func:`summarise_solves`)."""
    _check(model)
    if method not in ("hil", "twin"):
        raise ValueError(f"method={method!r}: use 'hil' or 'twin'")
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    loss = _RecordingLoss(kind)
    options = {
        "steps": steps,
        "lr": lr,
        "calibration_batches": calibration_batches,
        "twin_steps": twin_steps,
        "show_progress": show_progress,
        "loss": loss,
        "after_step": HybridDEQ.project_,
    }
    if method == "hil":
        result = hil_train(
            model,
            backend,
            loader,
            budget=budget,
            recalibrate_every=recalibrate_every,
            grad_on_twin=True,
            **options,
        )
    else:
        result = twin_train(model, backend, loader, **options)
    summary = summarise_solves(loss.stats)
    if summary["converged_fraction"] < 1:
        tol = model.deq.forward_options.tol
        warnings.warn(
            f"{method} fine-tuning on {backend.name}: "
            f"{round((1 - summary['converged_fraction']) * summary['solves'])} of "
            f"{summary['solves']} forward solves stopped before tol={tol:g} "
            f"(reasons {summary['reasons']}, worst final residual "
            f"{summary['final_residual_max']:.3g}); their z* is the best iterate",
            UnconvergedSolvesWarning,
            stacklevel=2,
        )
    return result, summary
