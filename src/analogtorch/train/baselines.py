"""Published hardware-aware training baselines as wrappers around digital layers.

Each baseline wraps a digital ``nn.Linear`` or ``nn.Conv2d`` (the wrapper keeps the float
layer as ``.module``, so its parameters stay the trained "shadow" weights) and changes
only the weight the forward pass uses. Quantisers and noise laws come from
:mod:`analogtorch.hardware`; nothing here re-implements them.

* :class:`QATWrapper` / :func:`qat_convert` — quantisation-aware training with the
  straight-through estimator (STE) of Bengio, Léonard & Courville, "Estimating or
  Propagating Gradients Through Stochastic Neurons for Conditional Computation",
  arXiv:1308.3432, 2013. Forward ``W_q = s · Q_b(W / s)`` with the per-row scale
  ``s = max_i |W_ji|`` (:func:`~analogtorch.hardware.mapping.weight_scale`) and the
  ``b``-bit grid of :func:`~analogtorch.hardware.mapping.normalized_weights`; backward
  ``dW_q/dW = 1`` (the grid never clips, since ``|W/s| <= 1``).
* :class:`NoiseInjection` / :func:`noise_injection_convert` — "Noisy Machines" noise
  injection (Zhou, Kadambi, Mattina & Whatmough, "Noisy Machines: Understanding Noisy
  Neural Networks and Enhancing Robustness to Analog Hardware Errors Using Distillation",
  arXiv:2001.04974, 2020): in training only, ``W_noisy = W + N(0, σ²)`` with
  ``σ = η (W_max − W_min)`` per layer, drawn afresh each forward pass; no noise in eval.
  (The paper's distillation loss is a separate training objective and is not part of
  this module.)
* :class:`VarianceAwareNoiseInjection` / :func:`variance_aware_convert` — variance-aware
  noisy training (Wang, Borras, Klein & Fröning, "Variance-Aware Noisy Training:
  Hardening DNNs against Unstable Analog Computations", arXiv:2503.16183, 2025).
* :func:`noise_aware_normalization` — noise-aware BatchNorm recalibration (Tsai et al.,
  "Robust Processing-In-Memory Neural Networks via Noise-Aware Normalization",
  arXiv:2007.03230, 2020; earlier title "Calibrated BatchNorm: Improving Robustness
  Against Noisy Weights in Neural Networks").

Noise law shared by the noise baselines: the relative level ``η`` is the programming-noise
std of :func:`~analogtorch.hardware.noise.prog_noise_variance` (constant-std profile,
``prog_noise_std = η``) on weights normalised by the layer's full range
``W_max − W_min``, so in weight units ``σ = η (W_max − W_min)``. The range is a digital
constant of the layer (detached), and the noise is additive, so ``dL/dW = dL/dW_noisy``.
All randomness comes from a ``torch.Generator`` seeded by the ``seed`` argument.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import module_device
from ..hardware.mapping import normalized_weights, weight_scale
from ..hardware.noise import prog_noise_variance
from ..hardware.profile import HardwareProfile
from ..hardware.quantize import quantize, weight_step
from ..hardware.random import derive_seed, draw_like

__all__ = [
    "NoiseInjection",
    "NoiseLevelSampler",
    "QATWrapper",
    "VarianceAwareNoiseInjection",
    "noise_aware_normalization",
    "noise_injection_convert",
    "qat_convert",
    "range_noise",
    "recalibrate_batchnorm",
    "strip_baselines",
    "variance_aware_convert",
]

_LAYERS = (nn.Linear, nn.Conv2d)


# -- shared helpers ------------------------------------------------------------------------


def _check_layer(module: nn.Module, name: str = "module") -> None:
    if not isinstance(module, _LAYERS):
        raise TypeError(
            f"{name}={type(module).__name__}: expected nn.Linear or nn.Conv2d; wrap each "
            "layer separately or use the *_convert functions on a whole model"
        )


def _check_eta(eta: float, name: str = "eta") -> float:
    if not (isinstance(eta, (int, float)) and 0.0 <= eta <= 1.0):
        raise ValueError(
            f"{name}={eta!r}: the relative noise level must be a number in [0, 1] "
            "(a fraction of the layer weight range W_max − W_min)"
        )
    return float(eta)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a non-negative int")
    return seed


def _layer_forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``module``'s own operation with ``weight`` in place of ``module.weight``."""
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(x, weight, module.bias)
    return F.linear(x, weight, module.bias)


def range_noise(weight: torch.Tensor, eta: float, generator: torch.Generator) -> torch.Tensor:
    """One draw of ``N(0, σ²)`` of ``weight``'s shape, ``σ = η (W_max − W_min)`` (weight units).

    The per-element variance is the hardware programming-noise law
    (:func:`~analogtorch.hardware.noise.prog_noise_variance` with ``prog_noise_std = η``)
    of the weights normalised by the layer range, scaled back by that range (Zhou et al.,
    arXiv:2001.04974, 2020). The result is detached: the noise is a constant offset.
    """
    eta = _check_eta(eta)
    w = weight.detach()
    w_range = (w.max() - w.min()).clamp_min(torch.finfo(w.dtype).tiny)
    profile = HardwareProfile(prog_noise_std=eta)
    std = prog_noise_variance(profile, w / w_range).sqrt() * w_range
    return draw_like("normal", w.shape, generator, w) * std


def _replace_layers(model: nn.Module, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Replace, in place and in module order, every bare Linear/Conv2d child by ``make(child)``."""
    if isinstance(model, _LAYERS):
        return make(model)
    for name, child in list(model.named_children()):
        if isinstance(child, _BaselineWrapper):
            continue
        if isinstance(child, _LAYERS):
            setattr(model, name, make(child))
        else:
            _replace_layers(child, make)
    return model


def strip_baselines(model: nn.Module) -> nn.Module:
    """Replace, in place, every baseline wrapper by the digital layer it holds (its trained
    shadow weights: what a chip is programmed with); returns ``model`` (or the layer)."""
    if isinstance(model, _BaselineWrapper):
        return model.module
    for name, child in list(model.named_children()):
        setattr(model, name, strip_baselines(child))
    return model


class _BaselineWrapper(nn.Module):
    """Holds the wrapped digital layer as ``.module`` (its weight is the trained weight)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        _check_layer(module)
        self.module = module

    def forward_weight(self) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _layer_forward(self.module, x, self.forward_weight())


# -- 1. QAT with the straight-through estimator -----------------------------------------------


class QATWrapper(_BaselineWrapper):
    """Quantisation-aware training with the STE (Bengio et al., arXiv:1308.3432, 2013).

    Forward weight ``W_q = s · Q_b(W / s)``: ``s`` of shape (out, 1) is the per-output-row
    max |W| (:func:`~analogtorch.hardware.mapping.weight_scale`, adaptive scale, no clip)
    and ``Q_b`` the symmetric ``b``-bit grid of step ``1 / (2^(b−1) − 1)`` applied by
    :func:`~analogtorch.hardware.mapping.normalized_weights` with a ``weight_bits = b``
    profile. Each row therefore takes at most ``2^b − 1`` distinct values (the extra
    negative code is unused). Backward: ``∂W_q/∂W = 1`` (STE) — the float weights of
    ``.module`` are the full-precision shadow weights the optimiser updates.

    ``act_bits`` (optional) also quantises the layer input on a signed ``act_bits`` grid
    over the dynamic range ``[−max|x|, max|x|]`` of the current batch (detached), again
    with STE gradients. The dynamic range is an assumption of this baseline (the hardware
    DAC of :mod:`analogtorch.nn` uses a learned range instead).
    """

    def __init__(self, module: nn.Module, weight_bits: int, act_bits: int | None = None) -> None:
        super().__init__(module)
        if isinstance(weight_bits, bool) or not isinstance(weight_bits, int):
            raise ValueError(f"weight_bits={weight_bits!r}: must be an int in [2, 16]")
        weight_step(weight_bits)  # validates the range [2, 16]
        if act_bits is not None:
            if isinstance(act_bits, bool) or not isinstance(act_bits, int):
                raise ValueError(f"act_bits={act_bits!r}: must be an int in [2, 16] or None")
            if not 2 <= act_bits <= 16:
                raise ValueError(f"act_bits={act_bits}: must be an int in [2, 16] or None")
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.profile = HardwareProfile(weight_bits=weight_bits)

    def forward_weight(self) -> torch.Tensor:
        weight = self.module.weight
        scale = weight_scale(weight, self.profile)
        w_hat = normalized_weights(weight, scale, self.profile)
        return (w_hat * scale).reshape(weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits is not None:
            x_range = x.detach().abs().amax().clamp_min(torch.finfo(x.dtype).tiny)
            x = quantize(x / x_range, self.act_bits, weight_step(self.act_bits)) * x_range
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"weight_bits={self.weight_bits}, act_bits={self.act_bits}"


def qat_convert(model: nn.Module, weight_bits: int, act_bits: int | None = None) -> nn.Module:
    """Wrap every ``nn.Linear``/``nn.Conv2d`` of ``model`` in a :class:`QATWrapper`, in place.

    Returns ``model`` (or the wrapper, when ``model`` itself is a single layer).
    """
    return _replace_layers(model, lambda layer: QATWrapper(layer, weight_bits, act_bits))


# -- 2. Noisy Machines noise injection --------------------------------------------------------


class NoiseInjection(_BaselineWrapper):
    """Training-time Gaussian weight noise of Zhou et al. ("Noisy Machines", 2020).

    In ``train()`` mode each forward pass uses ``W + ε``, ``ε ~ N(0, σ²)`` i.i.d. per
    element, ``σ = η (W_max − W_min)`` over the whole layer weight (see
    :func:`range_noise`), freshly sampled every call; in ``eval()`` mode the clean ``W``
    is used. ``η`` is dimensionless (fraction of the weight range). ``generator`` lets
    several wrappers share one seeded stream (the converters do); otherwise one is made
    from ``seed``.

    The paper's exact wording of the noise model was not re-read here; the law above is
    the one this project's brief states for arXiv:2001.04974 (additive Gaussian weight
    noise relative to the layer's weight range).
    """

    def __init__(
        self,
        module: nn.Module,
        eta: float,
        seed: int = 0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(module)
        self.eta = _check_eta(eta)
        if generator is None:
            generator = torch.Generator().manual_seed(_check_seed(seed))
        self.generator = generator

    def current_eta(self) -> float:
        """Relative noise level of this forward pass."""
        return self.eta

    def reseed(self, seed: int) -> None:
        """Restart this layer's noise from ``seed`` (its own stream from now on)."""
        self.generator = torch.Generator().manual_seed(_check_seed(seed))

    def noise_state(self) -> dict[str, object]:
        """Where this layer's noise stream stands."""
        return {"generator": self.generator.get_state()}

    def load_noise_state(self, state: dict[str, object]) -> None:
        """Continue this layer's noise from :meth:`noise_state`'s ``state`` (a generator
        shared with other layers gets the same state from each)."""
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]

    def forward_weight(self) -> torch.Tensor:
        weight = self.module.weight
        if not self.training:
            return weight
        eta = self.current_eta()
        if eta == 0.0:
            return weight
        return weight + range_noise(weight, eta, self.generator)

    def extra_repr(self) -> str:
        return f"eta={self.eta}"


def noise_injection_convert(model: nn.Module, eta: float, seed: int = 0) -> nn.Module:
    """Wrap every Linear/Conv2d of ``model`` in :class:`NoiseInjection`, in place.

    All layers draw from one generator seeded by ``seed`` (in module order), so a run is
    reproducible from ``seed`` alone.
    """
    _check_eta(eta)
    generator = torch.Generator().manual_seed(_check_seed(seed))
    return _replace_layers(model, lambda layer: NoiseInjection(layer, eta, generator=generator))


# -- 3. Variance-aware noisy training ---------------------------------------------------------


class NoiseLevelSampler:
    """Draws the relative noise level ``η_t`` of a training step.

    ``distribution="uniform"``: ``η_t ~ U[eta_min, eta_max]``; ``"log-uniform"``:
    ``ln η_t ~ U[ln eta_min, ln eta_max]`` (``eta_min > 0``). :meth:`resample` draws a new
    level from the seeded generator and stores it as :attr:`eta`; ``history`` keeps every
    level drawn (for inspection and tests).
    """

    def __init__(
        self,
        eta_min: float,
        eta_max: float,
        seed: int = 0,
        distribution: str = "uniform",
    ) -> None:
        self.eta_min = _check_eta(eta_min, "eta_min")
        self.eta_max = _check_eta(eta_max, "eta_max")
        if self.eta_max < self.eta_min:
            raise ValueError(f"eta_max={eta_max} < eta_min={eta_min}: give eta_min <= eta_max")
        if distribution not in ("uniform", "log-uniform"):
            raise ValueError(f"distribution={distribution!r}: use 'uniform' or 'log-uniform'")
        if distribution == "log-uniform" and self.eta_min <= 0.0:
            raise ValueError(
                f"eta_min={eta_min}: a log-uniform level needs eta_min > 0; raise it or use "
                "distribution='uniform'"
            )
        self.distribution = distribution
        self.generator = torch.Generator().manual_seed(_check_seed(seed))
        self.eta = self.eta_max
        self.history: list[float] = []

    def reseed(self, seed: int) -> None:
        """Restart the level draws from ``seed``."""
        self.generator = torch.Generator().manual_seed(_check_seed(seed))

    def resample(self) -> float:
        """Draw and return a new level ``η_t``."""
        u = float(torch.rand((), generator=self.generator, dtype=torch.float64))
        if self.distribution == "uniform":
            eta = self.eta_min + u * (self.eta_max - self.eta_min)
        else:
            lo, hi = math.log(self.eta_min), math.log(self.eta_max)
            eta = math.exp(lo + u * (hi - lo))
        self.eta = min(max(eta, self.eta_min), self.eta_max)
        self.history.append(self.eta)
        return self.eta


class VarianceAwareNoiseInjection(NoiseInjection):
    """Variance-aware noisy training (Wang et al., arXiv:2503.16183, 2025).

    Idea implemented (from the paper's abstract): plain noisy training fixes the noise
    variance, but deployed analog hardware sees a noise level that fluctuates (temperature,
    temporal drift); Variance-Aware Noisy Training instead trains under a *schedule of
    noise levels* emulating that variation. Here each training step draws a relative level
    ``η_t`` from :class:`NoiseLevelSampler` (``U[eta_min, eta_max]`` or log-uniform), and
    the weight noise is ``N(0, (η_t (W_max − W_min))²)`` as in :class:`NoiseInjection`.
    No noise in eval mode.

    ASSUMED, not confirmed from the paper's body: the exact distribution of ``η_t``
    (uniform / log-uniform over a user range), that the level is resampled once per
    training step, and that it is shared by all layers of a model (one "environment" per
    step, which :func:`variance_aware_convert` arranges by passing a shared ``sampler``).
    A standalone wrapper (no ``sampler``) resamples at each of its own training forwards.
    """

    def __init__(
        self,
        module: nn.Module,
        eta_min: float,
        eta_max: float,
        seed: int = 0,
        *,
        distribution: str = "uniform",
        sampler: NoiseLevelSampler | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.shared = sampler is not None
        if sampler is None:
            sampler = NoiseLevelSampler(eta_min, eta_max, seed, distribution)
        super().__init__(module, sampler.eta_max, seed + 1, generator=generator)
        self.sampler = sampler

    def current_eta(self) -> float:
        if not self.shared:
            return self.sampler.resample()
        return self.sampler.eta

    def reseed(self, seed: int) -> None:
        """Restart the weight noise and the level draws from ``seed`` (a shared sampler is
        restarted by each layer in turn: the last one, in module order, sets it)."""
        super().reseed(seed)
        self.sampler.reseed(derive_seed(seed, "noise-level"))

    def noise_state(self) -> dict[str, object]:
        """The weight-noise stream and the level sampler's stream and current level."""
        sampler = {"generator": self.sampler.generator.get_state(), "eta": self.sampler.eta}
        return {**super().noise_state(), "sampler": sampler}

    def load_noise_state(self, state: dict[str, object]) -> None:
        """Continue both streams from :meth:`noise_state`'s ``state`` (a shared sampler gets
        the same state from each layer)."""
        super().load_noise_state(state)
        sampler = state["sampler"]
        self.sampler.generator.set_state(sampler["generator"])  # type: ignore[index]
        self.sampler.eta = float(sampler["eta"])  # type: ignore[index]

    def extra_repr(self) -> str:
        s = self.sampler
        return f"eta in [{s.eta_min}, {s.eta_max}] ({s.distribution}), shared={self.shared}"


def variance_aware_convert(
    model: nn.Module,
    eta_min: float,
    eta_max: float,
    seed: int = 0,
    distribution: str = "uniform",
) -> nn.Module:
    """Wrap every Linear/Conv2d in :class:`VarianceAwareNoiseInjection`, in place.

    One :class:`NoiseLevelSampler` is shared by all layers and resampled by a forward
    pre-hook on ``model`` at every training-mode forward pass (one ``η_t`` per step); the
    sampler is returned as ``model.noise_level_sampler``. ``model`` must be a container
    (not a bare layer) so that the hook sees the whole step.
    """
    if isinstance(model, _LAYERS):
        raise ValueError(
            f"model={type(model).__name__}: variance_aware_convert needs a container "
            "module; wrap a single layer with VarianceAwareNoiseInjection(shared=False)"
        )
    sampler = NoiseLevelSampler(eta_min, eta_max, seed, distribution)
    generator = torch.Generator().manual_seed(_check_seed(seed) + 1)
    _replace_layers(
        model,
        lambda layer: VarianceAwareNoiseInjection(
            layer, eta_min, eta_max, seed, sampler=sampler, generator=generator
        ),
    )

    def _resample(module: nn.Module, _inputs: object) -> None:
        if module.training:
            sampler.resample()

    model.register_forward_pre_hook(_resample)
    model.noise_level_sampler = sampler  # type: ignore[assignment]
    return model


# -- 4. Noise-aware normalisation -------------------------------------------------------------

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, calibration_batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running statistics of ``model`` as it now computes
    (e.g. on a noisy chip): reset them, run the batches with only the BatchNorm layers in
    train mode and cumulative averaging (``momentum=None``), restore the momenta, and leave
    ``model`` in eval mode. Affine parameters are not changed."""
    norms = [m for m in model.modules() if isinstance(m, _BN)]
    if not norms:
        raise ValueError(
            "model has no BatchNorm layer: noise-aware normalisation recalibrates "
            "BatchNorm1d/2d/3d running statistics; add BatchNorm or skip this baseline"
        )
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    count = 0
    device = module_device(model)
    for batch in calibration_batches:
        model(batch.to(device))
        count += 1
    if count == 0:
        raise ValueError("calibration_batches is empty: give at least one input batch")
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.eval()


@torch.no_grad()
def noise_aware_normalization(
    model: nn.Module,
    calibration_batches: Iterable[torch.Tensor],
    eta: float,
    seed: int = 0,
) -> nn.Module:
    """A noisy copy of ``model`` whose BatchNorm statistics are re-estimated under its noise.

    Tsai et al. (arXiv:2007.03230, 2020) attribute the accuracy loss of a noisy analog
    network to shifted activation distributions and re-compute the BatchNorm statistics
    on the noisy network, without retraining. Here: (1) deep-copy ``model`` (the input is
    not changed); (2) program one weight-noise realisation into every Linear/Conv2d,
    ``W ← W + N(0, (η (W_max − W_min))²)`` (:func:`range_noise`, one simulated chip);
    (3) reset every BatchNorm's running statistics and run the calibration batches with
    only the BatchNorm layers in train mode and cumulative averaging (``momentum=None``),
    so ``running_mean`` is the mean of the batch means and ``running_var`` the mean of the
    unbiased batch variances of the *noisy* activations; (4) restore each BatchNorm's
    momentum and return the copy in eval mode. Affine BN parameters are not changed.

    ASSUMED, not confirmed from the paper's body: the weight-noise model (the Noisy
    Machines range law above rather than the paper's own noise settings), a single fixed
    noise realisation during calibration (a deployed chip), and cumulative averaging over
    the calibration set. ``eta=0`` re-estimates the statistics of the model as given.
    """
    _check_eta(eta)
    generator = torch.Generator().manual_seed(_check_seed(seed))
    noisy = copy.deepcopy(model)
    for layer in noisy.modules():
        if isinstance(layer, _LAYERS) and eta > 0.0:
            layer.weight.add_(range_noise(layer.weight, eta, generator))
    recalibrate_batchnorm(noisy, calibration_batches)
    return noisy.eval()
