"""The loss of the ``physics-informed`` method: ``CE + Σ_k λ_k L_k``, the terms chosen by
the method's options (seed 001, Sec. 2.2: ``L = L_task + λ L_noise + γ L_physics``).

Options (a weight of 0 leaves its term out):

* ``weight_kl`` — λ of the noise KL, of the form ``kl_posterior`` names:
  ``"hardware"`` (default) :class:`~analogtorch.losses.WeightKL`, a posterior fixed at the
  device noise against a zero-mean prior; ``"learned"``
  :class:`~.weight_posterior.VariationalWeights`, a learned per-weight ``σ_q`` against the
  hardware prior ``N(μ, σ_hw²)`` (seed 001's form; training then samples the posterior);
* ``sparsity`` — λ of :class:`~analogtorch.losses.Sparsity` (L1, mean);
* ``bit_depth`` — λ of :class:`~analogtorch.losses.BitDepthPenalty` on the profile's weight
  grid (mean; the profile needs a fixed ``weight_range``);
* ``moment_matching`` — γ of :class:`~analogtorch.losses.MomentMatching` between the analog
  layers' outputs in the training forward and on hardware (below);
* ``js_calibration`` — λ of :class:`~analogtorch.losses.JSCalibration` on the same pairs,
  summed over layers, both sides divided by the hardware side's largest ``|value|`` so the
  soft histogram's range ``(−1, 1)`` holds them;
* ``chip_time_s`` — seconds after programming at which that hardware is read (default 0).

The "hardware" side of the activation terms is a chip of the study profile drawn afresh for
every step (seed from the method seed, epoch and step, so a resumed run draws the same
chips), programmed with the current weights and run on the same batch without gradient
(a target), BatchNorm statistics left untouched by that pass.

Options added after the first studies (:data:`LOSS_OPTIONS`) are left out of a method's
resolved options unless given, so studies configured before them keep their cells.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.chip import Chip
from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from ..losses import BitDepthPenalty, JSCalibration, MomentMatching, Sparsity, WeightKL
from .activations import recorded_outputs
from .weight_posterior import VariationalWeights

LOSS_OPTIONS: dict[str, Any] = {
    "kl_posterior": "hardware",
    "bit_depth": 0.0,
    "moment_matching": 0.0,
    "js_calibration": 0.0,
    "chip_time_s": 0.0,
}
LOSS_OPTION_RULES: dict[str, object] = {
    "kl_posterior": ("hardware", "learned"),
    "bit_depth": (0.0, 1e3),
    "moment_matching": (0.0, 1e3),
    "js_calibration": (0.0, 1e3),
    "chip_time_s": (0.0, 3.2e9),
}


def loss_option(options: Mapping[str, Any], name: str) -> Any:
    """The value of the optional loss option ``name`` (its default when not given)."""
    return options.get(name, LOSS_OPTIONS[name])


def weight_terms(
    options: Mapping[str, Any], profile: HardwareProfile
) -> list[tuple[float, nn.Module]]:
    """``(λ, loss)`` for the selected losses of the weights alone (built here, so a profile
    they cannot use is refused before anything trains)."""
    terms: list[tuple[float, nn.Module]] = []
    if options["weight_kl"]:
        kl = WeightKL(profile, reduction="mean")  # refuses a noise-free profile either way
        if loss_option(options, "kl_posterior") == "hardware":
            terms.append((options["weight_kl"], kl))
    if options["sparsity"]:
        terms.append((options["sparsity"], Sparsity(reduction="mean")))
    if loss_option(options, "bit_depth"):
        terms.append((options["bit_depth"], BitDepthPenalty(profile=profile, reduction="mean")))
    return terms


@contextlib.contextmanager
def _frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers in train mode keep their running statistics inside the block."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0  # running = (1 − 0) running + 0 · batch
    try:
        yield
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum


class PhysicsLoss:
    """``loss_fn(net, x, y) -> (loss, logs)`` for :class:`~.trainer.Trainer` and the callback
    that tells it the step (pass it as both). Train :attr:`trainable`: the model, or its
    :class:`~.weight_posterior.VariationalWeights` wrapper with a learned posterior."""

    def __init__(
        self, model: nn.Module, profile: HardwareProfile, options: Mapping[str, Any], seed: int
    ) -> None:
        self.terms = weight_terms(options, profile)
        learned = options["weight_kl"] and loss_option(options, "kl_posterior") == "learned"
        self.posterior = VariationalWeights(model, profile, seed=seed) if learned else None
        self.trainable: nn.Module = self.posterior if self.posterior is not None else model
        self.kl_weight = float(options["weight_kl"])
        self.moment_weight = float(loss_option(options, "moment_matching"))
        self.js_weight = float(loss_option(options, "js_calibration"))
        self.chip_time_s = float(loss_option(options, "chip_time_s"))
        self.profile = profile
        self.seed = seed
        self.epoch = self.step = 0

    def on_epoch_start(self, trainer: object, epoch: int) -> None:
        self.epoch, self.step = epoch, 0

    def on_step_end(self, trainer: object, epoch: int, step: int) -> None:
        self.step = step + 1

    def on_resume(self, trainer: object, epoch: int, steps_done: int) -> None:
        self.epoch, self.step = epoch, steps_done

    def _chip_outputs(self, net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        chip = Chip(self.profile, derive_seed(self.seed, "training-chip", self.epoch, self.step))
        with (
            torch.no_grad(),
            _frozen_batchnorm(net),
            chip.deploy(net, self.chip_time_s),
            recorded_outputs(net) as outputs,
        ):
            net(x)
        return {name: torch.cat(outs) for name, outs in outputs.items()}

    def __call__(
        self, net: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        compare = self.moment_weight > 0 or self.js_weight > 0
        with recorded_outputs(net) if compare else contextlib.nullcontext({}) as simulated:
            logits = net(x)
        loss = F.cross_entropy(logits, y)
        logs: dict[str, float] = {}
        for index, (weight, term) in enumerate(self.terms):
            value = term(net)
            logs[f"reg{index}"] = float(value.detach())
            loss = loss + weight * value
        if self.posterior is not None:
            value = self.posterior.kl()
            logs["kl"] = float(value.detach())
            loss = loss + self.kl_weight * value
        if compare:
            hardware = self._chip_outputs(net, x)
            sim = [torch.cat(simulated[name]) for name in hardware]
            hw = list(hardware.values())
            if self.moment_weight > 0:
                value = MomentMatching()(sim, hw)
                logs["moments"] = float(value.detach())
                loss = loss + self.moment_weight * value
            if self.js_weight > 0:
                js = JSCalibration()
                scales = [h.abs().max().clamp_min(1e-12) for h in hw]
                value = sum(js(s / c, h / c) for s, h, c in zip(sim, hw, scales, strict=True))
                logs["js"] = float(value.detach())
                loss = loss + self.js_weight * value
        return loss, logs
