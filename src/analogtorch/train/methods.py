"""The training methods a robustness study compares, each from one digital FP32 model.

Every method fine-tunes a copy of the seed's pre-trained FP32 model for the same number
of epochs with the same optimiser, so every method — the FP32 reference included — sees the
same data for the same total epochs and the methods differ only in what the forward pass
sees and what the loss adds:

* ``fp32`` — the digital model, fine-tuned digitally (:func:`fp32_reference`): the
  reference every drop is measured against, and "no hardware awareness";
* ``qat`` — quantisation-aware training, STE (:func:`~.baselines.qat_convert`);
* ``noise-injection`` — Gaussian weight noise in training only (Zhou et al. 2020);
* ``noisy-machines`` — the same noise plus the paper's knowledge distillation from the
  noise-free FP32 teacher: ``L = (1 − λ) CE(y, s) + λ T² KL(softmax(t/T) ‖ softmax(s/T))``
  (Zhou et al., arXiv:2001.04974, Sec. 4; Hinton et al. 2015 for the ``T²`` factor);
* ``variance-aware`` — noise level η drawn per step from ``[η_min, η_max]`` (Wang et al.
  2025);
* ``noise-aware-norm`` — the ``fp32`` model, its BatchNorm statistics re-estimated on each
  chip (Tsai et al. 2020; applied in evaluation);
* ``physics-informed`` — this project's method: the analog surrogate of ``hardware/`` in
  the loop (quantised weights and converters, device noise), its noise amplitude ramped
  by a schedule (``train.schedules``), optional physics-informed losses
  (:mod:`.physics_loss`) and optional stochastic residual blocks (``nn.residual``).

Baseline noise law: the hardware's weight noise is ``σ = η_hw · max_i |W_ji|`` per row
(``prog_noise_std`` of the profile); the Noisy Machines law is ``σ = η (W_max − W_min)``
per layer, and ``W_max − W_min ≈ 2 max|W|``, so the baselines use ``η = η_hw / 2``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.profile import HardwareProfile
from ..nn.base import analog_layers
from ..nn.convert import convert
from ..nn.residual import StochasticResidual
from .augment import augmented
from .baselines import (
    noise_injection_convert,
    qat_convert,
    strip_baselines,
    variance_aware_convert,
)
from .lr_schedule import CosineSchedule
from .physics_loss import LOSS_OPTION_RULES, LOSS_OPTIONS, PhysicsLoss
from .schedules import Curriculum, CurriculumProfiles, Stage
from .trainer import Trainer, epoch_batches

METHODS = (
    "fp32",
    "qat",
    "noise-injection",
    "noisy-machines",
    "variance-aware",
    "noise-aware-norm",
    "physics-informed",
)
_PHYSICS_OPTIONS = {
    "schedule": "linear",  # noise ramp 0 → 1 over the fine-tuning: linear | exponential | constant
    "quantize": True,  # weights and converters quantised in the loop
    "noise": True,  # device noise in the loop
    "weight_kl": 0.0,  # λ of the noise KL (per weight, "mean"; form: kl_posterior)
    "sparsity": 0.0,  # λ of losses.Sparsity (L1, "mean")
    "residual": False,  # hidden square blocks as nn.residual.StochasticResidual
}  # and the optional loss options of physics_loss.LOSS_OPTIONS
_BASELINE_OPTIONS = {"distill_weight": 0.7, "temperature": 4.0, "eta_spread": 0.5}
# Evaluation options of a trained method, left out of its resolved options unless given (so
# the cells of configs written before them keep their parameters): ``chip_bn`` re-estimates
# the BatchNorm statistics on each chip, as ``noise-aware-norm`` does for the FP32 model.
EVAL_OPTIONS: dict[str, Any] = {"chip_bn": False}


# What each option takes: a set of choices, bool, or a closed numeric interval (low, high).
_OPTION_RULES: dict[str, object] = {
    "schedule": ("linear", "exponential", "constant"),
    "quantize": bool,
    "noise": bool,
    "residual": bool,
    "weight_kl": (0.0, 1e3),
    "sparsity": (0.0, 1e3),
    "distill_weight": (0.0, 1.0),
    "temperature": (1e-3, 1e3),
    "eta_spread": (0.0, 0.99),
    "chip_bn": bool,
    **LOSS_OPTION_RULES,
}


def _check_option(method: str, name: str, value: object) -> None:
    """Refuse an option value of the wrong type or out of range, naming method and option."""
    rule = _OPTION_RULES[name]
    if rule is bool:
        ok = isinstance(value, bool)
        expected = "true or false"
    elif isinstance(rule[0], str):  # type: ignore[index]
        ok = value in rule  # type: ignore[operator]
        expected = f"one of {rule}"
    else:
        low, high = rule  # type: ignore[misc]
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and low <= value <= high  # NaN fails both comparisons
        )
        expected = f"a number in [{low}, {high}]"
    if not ok:
        raise ValueError(f"method {method}: option {name}={value!r}; expected {expected}")


@dataclass(frozen=True)
class MethodSpec:
    """One entry of a study's ``methods`` list: a label, the method and its options."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, entry: str | Mapping[str, Any]) -> MethodSpec:
        """``"qat"`` or ``{label: pi-no-kl, method: physics-informed, options: {...}}``."""
        if isinstance(entry, str):
            entry = {"method": entry}
        unknown = set(entry) - {"label", "method", "options"}
        if unknown:
            raise ValueError(f"method entry {dict(entry)}: unknown keys {sorted(unknown)}")
        method = entry.get("method")
        if method not in METHODS:
            raise ValueError(f"method={method!r}: known methods are {METHODS}")
        options = entry.get("options") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"method {method}: options={options!r} must be a mapping")
        known = _PHYSICS_OPTIONS if method == "physics-informed" else _BASELINE_OPTIONS
        optional = LOSS_OPTIONS if method == "physics-informed" else {}
        if method not in ("fp32", "noise-aware-norm"):  # those two are scored as trained
            optional = {**optional, **EVAL_OPTIONS}
        bad = set(options) - set(known) - set(optional)
        if bad:
            allowed = sorted([*known, *optional])
            raise ValueError(f"method {method}: unknown options {sorted(bad)}; known {allowed}")
        merged = {**known, **options}  # optional ones only when given
        for name, value in merged.items():
            _check_option(method, name, value)
        return cls(str(entry.get("label", method)), method, merged)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser settings shared by every method of a study.

    ``optimizer``: ``"adam"`` or ``"sgd"`` (with ``momentum``, Nesterov); ``schedule``:
    ``"constant"`` or ``"cosine"`` (:class:`~.lr_schedule.CosineSchedule`, ``warmup_epochs``
    of linear warm-up) for FP32 training and fine-tuning alike; ``augment``: ``"none"`` or
    ``"crop-flip"`` (:func:`~.augment.crop_flip`, image batches only).
    """

    epochs: int = 3
    finetune_epochs: int = 2
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    batch_size: int = 128
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "none"

    def __post_init__(self) -> None:
        choices = {
            "optimizer": ("adam", "sgd"),
            "schedule": ("constant", "cosine"),
            "augment": ("none", "crop-flip"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name}={getattr(self, name)!r}: expected one of {allowed}")
        for name in ("epochs", "finetune_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"train.{name}={value!r}: expected an integer >= 1")
        bounds = {
            "lr": (0.0, 10.0, False),
            "finetune_lr": (0.0, 10.0, False),
            "momentum": (0.0, 1.0, True),
            "weight_decay": (0.0, 1.0, True),
            "label_smoothing": (0.0, 1.0, True),
        }
        for name, (low, high, closed) in bounds.items():
            value = getattr(self, name)
            ok = _is_number(value) and (low <= value if closed else low < value)
            if not (ok and value <= high):
                side = "[" if closed else "("
                raise ValueError(
                    f"train.{name}={value!r}: expected a number in {side}{low}, {high}]"
                )
        if not (_is_number(self.warmup_epochs) and 0.0 <= self.warmup_epochs < self.epochs):
            raise ValueError(
                f"train.warmup_epochs={self.warmup_epochs!r}: expected 0 <= warmup < epochs"
            )

    def optimizer_for(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The configured optimiser over ``model``'s parameters at learning rate ``lr``."""
        params = model.parameters()
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=lr,
                momentum=self.momentum,
                nesterov=self.momentum > 0,
                weight_decay=self.weight_decay,
            )
        return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)


def _cross_entropy(label_smoothing: float = 0.0) -> Callable:
    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return F.cross_entropy(model(x), y, label_smoothing=label_smoothing), {}

    return loss_fn


def _train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    *,
    epochs: int,
    lr: float,
    seed: int,
    label: str,
    loss_fn: Callable | None = None,
    callbacks: tuple[object, ...] = (),
    warmup_epochs: float = 0.0,
    checkpoint: Path | None = None,
) -> list[dict[str, float]]:
    """Train with ``settings``' optimiser, schedule and augmentation; with a ``checkpoint``
    the run is saved after every epoch and resumes from it."""
    x, y = data
    if settings.schedule == "cosine":
        steps = -(-len(x) // settings.batch_size)
        callbacks = (*callbacks, CosineSchedule(lr, epochs, steps, warmup_epochs))
    batches = epoch_batches(x, y, settings.batch_size, seed=seed)
    if settings.augment == "crop-flip":
        plain = batches

        def batches(epoch: int):  # type: ignore[no-redef]
            return augmented(plain(epoch), seed, epoch)

    trainer = Trainer(
        model,
        loss_fn or _cross_entropy(settings.label_smoothing),
        settings.optimizer_for(model, lr),
        epochs=epochs,
        callbacks=callbacks,
        seed=seed,
        label=label,
        checkpoint=checkpoint,
        show_progress=checkpoint is not None,
    )
    return trainer.fit(batches, resume=checkpoint is not None)


def _finetune(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    seed: int,
    loss_fn: Callable | None,
    label: str,
    callbacks: tuple[object, ...] = (),
    checkpoint: Path | None = None,
) -> None:
    """The fine-tuning every method shares: ``finetune_epochs`` at ``finetune_lr``; with a
    ``checkpoint`` file it is saved after every epoch and resumes from there."""
    _train(
        model,
        data,
        settings,
        epochs=settings.finetune_epochs,
        lr=settings.finetune_lr,
        seed=seed,
        loss_fn=loss_fn,
        callbacks=callbacks,
        label=label,
        checkpoint=checkpoint,
    )


def train_fp32(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    seed: int,
    checkpoint: Path | None = None,
) -> nn.Module:
    """Digital FP32 training of ``model`` in place (cross-entropy, ``settings``); with a
    ``checkpoint`` file it is saved after every epoch and resumes from there."""
    _train(
        model,
        data,
        settings,
        epochs=settings.epochs,
        lr=settings.lr,
        seed=seed,
        label="fp32",
        warmup_epochs=settings.warmup_epochs,
        checkpoint=checkpoint,
    )
    return model


def fp32_reference(
    fp32: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    seed: int,
    checkpoint: Path | None = None,
) -> nn.Module:
    """A copy of the pre-trained ``fp32`` model fine-tuned digitally like every other method
    (``finetune_epochs`` at ``finetune_lr``): the FP32 reference of the same total budget."""
    model = copy.deepcopy(fp32)
    _finetune(model, data, settings, seed, None, "fp32", checkpoint=checkpoint)
    return model.eval()


def distillation_loss(teacher: nn.Module, weight: float, temperature: float) -> Callable:
    """``(1 − λ) CE(y, s) + λ T² KL(softmax(t/T) ‖ softmax(s/T))`` with a frozen teacher."""
    if not 0.0 <= weight <= 1.0 or temperature <= 0:
        raise ValueError(f"distill_weight={weight} in [0, 1] and temperature={temperature} > 0")
    teacher = teacher.eval()

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        logits = model(x)
        with torch.no_grad():
            target = F.log_softmax(teacher(x) / temperature, dim=1)
        student = F.log_softmax(logits / temperature, dim=1)
        kl = F.kl_div(student, target, log_target=True, reduction="batchmean")
        ce = F.cross_entropy(logits, y)
        loss = (1 - weight) * ce + weight * temperature**2 * kl
        return loss, {"ce": float(ce.detach()), "kl": float(kl.detach())}

    return loss_fn


def noise_ramp(kind: str, total_steps: int) -> Mapping[str, Any] | float:
    """The noise-scale schedule spec (``train.schedules.make_schedule``) over the run."""
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return {"kind": "linear", "start": 0.0, "end": 1.0, "total_steps": total_steps}
    if kind == "exponential":
        return {"kind": "exponential", "start": 0.01, "end": 1.0, "total_steps": total_steps}
    raise ValueError(f"schedule={kind!r}: use constant, linear or exponential")


def add_stochastic_residuals(model: nn.Sequential, profile: HardwareProfile, seed: int) -> int:
    """Wrap every square ``Linear → ReLU`` pair of a Sequential MLP in a
    :class:`StochasticResidual` (in place); returns the number of blocks wrapped."""
    wrapped = 0
    children = list(model.named_children())
    for (name, layer), (next_name, act) in itertools.pairwise(children):
        square = isinstance(layer, nn.Linear) and layer.in_features == layer.out_features
        if square and isinstance(act, nn.ReLU):
            block = nn.Sequential(layer, act)
            residual = StochasticResidual(
                block, layer.in_features, profile=profile, alpha_init=0.0, noise_seed=seed
            )
            setattr(model, name, residual)
            setattr(model, next_name, nn.Identity())
            wrapped += 1
    return wrapped


def physics_informed(
    fp32: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    profile: HardwareProfile,
    options: Mapping[str, Any],
    seed: int,
    checkpoint: Path | None = None,
) -> nn.Module:
    """Fine-tune an analog copy of ``fp32`` on ``profile`` (see the module docstring)."""
    model = copy.deepcopy(fp32)
    if options["residual"] and not (
        isinstance(model, nn.Sequential) and add_stochastic_residuals(model, profile, seed)
    ):
        raise ValueError("residual=True needs a Sequential with a square Linear → ReLU block")
    model = convert(model, profile, seed=seed)
    steps = -(-len(data[0]) // settings.batch_size)
    total = steps * settings.finetune_epochs
    stage = Stage(
        "hardware",
        0,
        noise_scale=noise_ramp(options["schedule"], total) if options["noise"] else 0.0,
        quantize=bool(options["quantize"]),
    )
    ramp = CurriculumProfiles(Curriculum((stage,)), profile, steps)
    loss = PhysicsLoss(model, profile, options, seed)
    _finetune(
        loss.trainable,
        data,
        settings,
        seed,
        loss,
        "physics-informed",
        (ramp, loss),
        checkpoint=checkpoint,
    )
    for layer in analog_layers(model).values():
        layer.set_profile(profile)
    return model


def train_method(
    spec: MethodSpec,
    fp32: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    profile: HardwareProfile,
    seed: int,
    checkpoint: Path | None = None,
) -> nn.Module:
    """The model ``spec`` produces from the trained ``fp32`` model (which is not changed);
    with a ``checkpoint`` file its training is saved after every epoch and resumes there.

    Baselines come back digital (their wrappers stripped: the trained shadow weights are
    what gets programmed); ``physics-informed`` comes back analog (its learned converter
    ranges are part of the model).
    """
    if spec.method in ("fp32", "noise-aware-norm"):
        return fp32_reference(fp32, data, settings, seed, checkpoint)
    if spec.method == "physics-informed":
        return physics_informed(fp32, data, settings, profile, spec.options, seed, checkpoint)
    if profile.weight_bits is None and spec.method == "qat":
        raise ValueError("qat needs a profile with weight_bits")
    eta = profile.prog_noise_std / 2
    model = copy.deepcopy(fp32)
    loss_fn: Callable | None = None  # cross-entropy with the settings' label smoothing
    if spec.method == "qat":
        model = qat_convert(model, profile.weight_bits)
    elif spec.method in ("noise-injection", "noisy-machines"):
        model = noise_injection_convert(model, eta, seed=seed)
        if spec.method == "noisy-machines":
            loss_fn = distillation_loss(
                fp32, spec.options["distill_weight"], spec.options["temperature"]
            )
    else:
        spread = spec.options["eta_spread"]
        model = variance_aware_convert(model, eta * (1 - spread), eta * (1 + spread), seed=seed)
    _finetune(model, data, settings, seed, loss_fn, spec.label, checkpoint=checkpoint)
    return strip_baselines(model).eval()
