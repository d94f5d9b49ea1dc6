"""Training and evaluation of a :class:`HybridDEQ` on a task (``analogtorch.tasks``).

The loss is the task loss (cross-entropy for classification, mean squared error for
regression) plus the regularisers of ``regularizers.py`` with their weights λ. After every
optimizer step the core is projected back onto its contractive set (``project_``), so the
equilibrium stays unique during training. A curriculum (``train.schedules``) may switch the
core's hardware profile at epoch boundaries: digital → noise → precision → full model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.chip import Chip
from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from ..nn.base import set_eval_noise
from ..train.trainer import Trainer, epoch_batches
from .hybrid import HybridDEQ
from .options import SolverStats
from .regularizers import (
    RegularizerWeights,
    core_energy_nj,
    feedback_sparsity,
    jacobian_penalty,
)
from .relaxation import RelaxationStats


def task_loss(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (``"classification"``) or mean squared error (``"regression"``)."""
    if kind == "classification":
        return F.cross_entropy(output, target)
    if kind == "regression":
        return F.mse_loss(output, target.reshape(output.shape))
    raise ValueError(f"kind={kind!r}: use 'classification' or 'regression'")


class DEQLoss:
    """``L = L_task + λ_s R_s + λ_J R_J + λ_b R_bits + λ_E R_E`` (see ``regularizers.py``).

    Also a trainer callback: it re-seeds its generator (Hutchinson probes) every epoch, and
    saves where it stands in mid-epoch checkpoints.
    ``precision`` is a module mapping the model to the bit-depth penalty (e.g.
    ``losses.BitDepthPenalty``); it is needed when ``weights.precision > 0``.
    """

    def __init__(
        self,
        kind: str,
        weights: RegularizerWeights | None = None,
        *,
        precision: nn.Module | None = None,
    ) -> None:
        self.kind = kind
        self.weights = weights or RegularizerWeights()
        if self.weights.precision > 0 and precision is None:
            raise ValueError("weights.precision > 0 needs precision= (a bit-depth penalty)")
        self.precision = precision
        self.generator = torch.Generator()

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.generator.manual_seed(derive_seed(trainer.seed, "jacobian", epoch))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Where the probe generator stands (every ``Trainer`` checkpoint saves it)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if not isinstance(model, HybridDEQ):
            raise TypeError(f"DEQLoss trains a HybridDEQ, got {type(model).__name__}")
        loss = task_loss(self.kind, model(x), y)
        stats = model.last_forward_stats
        iterations = stats.iterations if stats is not None else 0
        logs = {"task": float(loss.detach()), "iterations": float(iterations)}
        w, core = self.weights, model.core
        terms: dict[str, torch.Tensor] = {}
        if w.sparsity:
            terms["sparsity"] = w.sparsity * feedback_sparsity(core)
        if w.jacobian:
            terms["jacobian"] = w.jacobian * jacobian_penalty(
                core, model.last_state, model.last_injection, generator=self.generator
            )
        if w.precision:
            terms["precision"] = w.precision * self.precision(model)
        if w.energy:
            if model.forward_mode != "solver":
                raise ValueError(
                    f"weights.energy={w.energy}: the energy regulariser costs iterated crossbar "
                    f"reads and is not defined for forward={model.forward_mode!r}; set it to 0"
                )
            terms["energy_nj"] = w.energy * core_energy_nj(core, model.last_state, iterations)
        for name, term in terms.items():
            loss = loss + term
            logs[name] = float(term.detach())
        return loss, logs


class ProjectContractive:
    """Trainer callback: restore the core's contractivity after every optimizer step."""

    def on_step_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        trainer.model.project_()


def train_hybrid(
    model: HybridDEQ,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    loss: DEQLoss | None = None,
    callbacks: Sequence[object] = (),
    checkpoint: str | Path | None = None,
    seed: int = 0,
    label: str = "hybrid DEQ",
    show_progress: bool = False,
) -> list[dict[str, float]]:
    """Adam on ``loss`` (default: the task loss alone), projecting after every step."""
    loss = loss or DEQLoss(kind)
    trainer = Trainer(
        model,
        loss,
        torch.optim.Adam(model.parameters(), lr=lr),
        epochs=epochs,
        callbacks=[loss, ProjectContractive(), *callbacks],
        checkpoint=checkpoint,
        seed=seed,
        max_grad_norm=10.0,
        label=label,
        show_progress=show_progress,
    )
    return trainer.fit(epoch_batches(x, y, batch_size, seed))


@torch.no_grad()
def forward_batches(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1024
) -> tuple[torch.Tensor, list[SolverStats]]:
    """Outputs of ``model`` on ``x`` in batches, and each batch's ``last_forward_stats``
    (none for a model without them)."""
    outputs, stats = [], []
    for start in range(0, len(x), batch_size):
        outputs.append(model(x[start : start + batch_size]))
        batch_stats = getattr(model, "last_forward_stats", None)
        if batch_stats is not None:
            stats.append(batch_stats)
    return torch.cat(outputs), stats


def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1024
) -> tuple[torch.Tensor, float]:
    """Outputs of ``model`` on ``x`` in batches, and the mean solver iterations (0 if none;
    Euler steps for a relaxation)."""
    outputs, stats = forward_batches(model, x, batch_size)
    return outputs, statistics.fmean(s.iterations for s in stats) if stats else 0.0


def task_error(kind: str, output: torch.Tensor, target: torch.Tensor) -> float:
    """Error rate in % (classification) or relative L2 error ``‖p − t‖ / ‖t‖`` (regression)."""
    if kind == "classification":
        return 100.0 * float((output.argmax(dim=1) != target).float().mean())
    target = target.reshape(output.shape)
    return float(torch.linalg.vector_norm(output - target) / torch.linalg.vector_norm(target))


@torch.no_grad()
def adc_snr_db(model: HybridDEQ, x: torch.Tensor) -> float:
    """SNR at the core's ADC, ``10 log10(Σ y² / Σ (ŷ − y)²)`` in dB, over a batch: ``y = W_z z*``
    the exact product at the (hardware) equilibrium, ``ŷ`` the crossbar read-out of the same
    product (quantisation, read noise, circuit effects: the chip's when deployed)."""
    model(x)
    z_star = model.last_state
    layer = model.core.feedback
    exact = F.linear(z_star, layer.weight)
    read = layer(z_star)
    noise = (read - exact).square().sum()
    if not noise > 0:
        return math.inf
    return 10.0 * math.log10(float(exact.square().sum() / noise))


def relaxation_summary(stats: Sequence[SolverStats]) -> dict[str, float]:
    """Per-sample figures of relaxation forwards (their :class:`RelaxationStats`), over all
    their samples: mean time until read-out (s), mean energy (J), the fraction of samples
    whose change fell below ``tol`` (the rest stopped at the noise floor, ran out of time or
    diverged) and the fraction that did not settle at all (out of the time budget or
    diverged; they count with the time they ran)."""
    relaxations = [s for s in stats if isinstance(s, RelaxationStats)]
    if not relaxations or len(relaxations) != len(stats):
        raise TypeError("relaxation_summary needs the RelaxationStats of relaxation forwards")
    durations = torch.cat([s.sample_duration_s for s in relaxations])
    energies = torch.cat([s.sample_energy_j for s in relaxations])
    settling = torch.cat([s.sample_settling_time_s for s in relaxations])
    settled = torch.cat([s.sample_settled for s in relaxations])
    return {
        "settling_time_s": float(durations.mean()),
        "energy_j": float(energies.mean()),
        "below_tol_fraction": float(settled.double().mean()),
        "unsettled_fraction": float((~torch.isfinite(settling)).double().mean()),
    }


def evaluate_hybrid(
    model: HybridDEQ,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    *,
    n_chips: int = 5,
    time_s: float = 0.0,
    seed: int = 0,
    profile: HardwareProfile | None = None,
    snr_samples: int = 256,
) -> dict[str, float]:
    """Error (ideal surrogate and on ``n_chips`` programmed chips at ``time_s``), mean solver
    iterations and ADC SNR (dB), each on chips as mean and std over chips. A model with
    ``forward="relaxation"`` also reports the per-sample figures of
    :func:`relaxation_summary` (settling time in s, energy in J, settled fractions), as mean
    and std over chips."""
    profile = profile or model.core.feedback.profile
    relaxing = model.forward_mode == "relaxation"
    model.eval()
    set_eval_noise(model, False)
    out, iterations = predict(model, x)
    record = {"error_ideal": task_error(kind, out, y), "iterations_ideal": iterations}
    per_chip: dict[str, list[float]] = {"error": [], "iterations": [], "snr_db": []}
    for k in range(n_chips):
        with Chip(profile, seed + k).deploy(model, time_s=time_s):
            out, stats = forward_batches(model, x)
            per_chip["error"].append(task_error(kind, out, y))
            per_chip["iterations"].append(statistics.fmean(s.iterations for s in stats))
            per_chip["snr_db"].append(adc_snr_db(model, x[:snr_samples]))
            if relaxing:
                for name, value in relaxation_summary(stats).items():
                    per_chip.setdefault(name, []).append(value)
    for name, values in per_chip.items():
        record[name] = statistics.fmean(values)
        record[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return record
