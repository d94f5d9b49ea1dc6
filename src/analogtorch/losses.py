"""Physics-informed regularisers: small ``nn.Module`` losses added to the task loss, each × λ.

Every loss states its equation and units in its docstring. Weight losses accept one tensor,
an iterable of tensors, or a model (then the ``.weight`` of every ``nn.Linear`` /
``nn.Conv1d/2d/3d``, analog layers included since they subclass those, each tensor once).
Nothing here draws random numbers; hardware quantities (weight grid, row scales, noise laws,
transfer curves) come from :mod:`analogtorch.hardware`, never re-derived here.

* :class:`BitDepthPenalty`  — weights outside the ``b``-bit code range, in LSB²;
* :class:`WeightKL`         — KL of a device-noise Gaussian posterior to a Gaussian prior, nats;
* :class:`ActivationAlignment` — mean squared gap between a learned and the hardware activation;
* :class:`MomentMatching`   — per-layer batch mean/std gap between network and hardware;
* :class:`JSCalibration`    — Jensen–Shannon divergence of soft activation histograms, nats;
* :class:`Sparsity`         — L1 or row group-lasso of the weights;

and the pieces they share: :func:`gaussian_kl` (closed-form KL of two Gaussians),
:func:`hardware_weight_std` (the hardware's per-weight noise σ) and :func:`js_divergence`
(JS of two discrete distributions).

The energy term (MACs × solver iterations) lives with the DEQ code, not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Literal

import torch
from torch import nn

from .hardware.circuit import transfer_curve
from .hardware.mapping import normalized_weights, weight_codes_per_unit, weight_scale
from .hardware.noise import prog_noise_variance, read_noise_std_at
from .hardware.profile import HardwareProfile
from .hardware.quantize import code_range, weight_step

Weights = torch.Tensor | Iterable[torch.Tensor] | nn.Module
Reduction = Literal["sum", "mean"]

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_tensors(weights: Weights) -> list[torch.Tensor]:
    """The weight tensors a weight loss acts on (see the module docstring), each once."""
    if isinstance(weights, torch.Tensor):
        return [weights]
    if isinstance(weights, nn.Module):
        found = [m.weight for m in weights.modules() if isinstance(m, _WEIGHT_LAYERS)]
        if not found:
            raise ValueError(
                f"model {type(weights).__name__} has no nn.Linear/nn.Conv layer: pass the "
                "weight tensors themselves (a tensor or a list of tensors)"
            )
    elif isinstance(weights, Iterable) and not isinstance(weights, (str, bytes)):
        found = list(weights)
        bad = [type(w).__name__ for w in found if not isinstance(w, torch.Tensor)]
        if bad:
            raise TypeError(f"weights must all be tensors, got {bad}: pass torch.Tensor items")
        if not found:
            raise ValueError("weights=[] is empty: pass at least one weight tensor")
    else:
        raise TypeError(
            f"weights={type(weights).__name__}: expected a tensor, an iterable of tensors or "
            "an nn.Module"
        )
    unique: dict[int, torch.Tensor] = {}
    for w in found:
        unique.setdefault(id(w), w)
    return list(unique.values())


def _check_reduction(reduction: str) -> Reduction:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r}: use 'sum' or 'mean'")
    return reduction  # type: ignore[return-value]


def _reduce(total: torch.Tensor, count: int, reduction: Reduction) -> torch.Tensor:
    return total if reduction == "sum" else total / count


def _rows(w: torch.Tensor) -> torch.Tensor:
    """``w`` as (out, in_flat): one row per output (a 0-d/1-d tensor is one row)."""
    return w.reshape(w.shape[0], -1) if w.ndim >= 2 else w.reshape(1, -1)


def _check_bits(bits: object) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits={bits!r}: must be an integer number of bits, e.g. bits=4")


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value}: must be a finite number > 0")


class BitDepthPenalty(nn.Module):
    """Representable-range penalty of a ``b``-bit signed weight grid with step ``Δ``.

    ``R = Σ_i ReLU(|W_i| / Δ − 2^(b−1))²``, in LSB² (dimensionless): zero while every weight
    is inside the code range ``[−2^(b−1), 2^(b−1)]·Δ`` (``2^(b−1)`` from
    :func:`~analogtorch.hardware.quantize.code_range`), quadratic in the LSBs beyond it.

    The step ``Δ`` (weight units) is either given (``step``, one value for every tensor) or
    derived from ``profile``: ``Δ_j = s_j / c`` with ``s_j`` from
    :func:`~analogtorch.hardware.mapping.weight_scale` (from the profile's fixed
    ``weight_range`` ``r``) and ``c`` codes per unit of ``W / s`` from
    :func:`~analogtorch.hardware.mapping.weight_codes_per_unit`, ``b = bits`` or else
    ``profile.weight_bits``. On the ``symmetric`` grid ``s = r`` and ``c = 2^(b−1) − 1``:
    the grid clips at ``|W| = r`` (code ``2^(b−1) − 1``), so the penalty starts one LSB
    beyond the clip. On the ``affine`` grid ``s = 2r`` and ``c = 2^b − 1``, so ``Δ = 2r /
    (2^b − 1)``, just under the symmetric ``2r / (2^b − 2)`` (both grids span ``[−r, r]``;
    ``s · weight_step(b)`` would be twice too coarse there): the grid clips at ``|W| = r =
    (2^(b−1) − 1/2) Δ``, half an LSB inside the penalty's start. A profile with
    ``weight_range=None`` is refused: its per-row scale ``s_j = max_i |W_ji|`` puts every
    weight inside the grid, so the penalty would be identically zero.

    ``reduction="sum"`` (default) sums over every element of every tensor; ``"mean"`` divides
    by the total element count.
    """

    def __init__(
        self,
        bits: int | None = None,
        step: float | None = None,
        *,
        profile: HardwareProfile | None = None,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__()
        if (step is None) == (profile is None):
            raise ValueError(
                f"step={step!r}, profile={profile!r}: give exactly one, the LSB size Δ in "
                "weight units (step=) or a HardwareProfile with weight_range (profile=)"
            )
        self.step_per_scale = 0.0  # Δ / s = 1 / c, set from the profile below
        if profile is not None:
            if not isinstance(profile, HardwareProfile):
                raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
            bits = profile.weight_bits if bits is None else bits
            if bits is None:
                raise ValueError(
                    f"bits=None and profile.weight_bits=None (profile {profile.name!r}): give "
                    "bits= or a profile with weight_bits"
                )
            if profile.weight_range is None:
                raise ValueError(
                    f"profile {profile.name!r} has weight_range=None: its per-row scale "
                    "s = max|W| keeps every weight on the grid, so the penalty is always 0; "
                    "use profile.replace(weight_range=...) or pass step="
                )
            _check_bits(bits)
            weight_step(bits)  # validates bits in [2, 16]
            # 1 / c, as weight_step computes it: the symmetric grid's Δ stays bit-identical.
            self.step_per_scale = 1.0 / weight_codes_per_unit(profile.replace(weight_bits=bits))
        elif bits is None:
            raise ValueError("bits=None: give the bit depth b of the weight grid (e.g. bits=4)")
        _check_bits(bits)
        _check_positive("step", step)
        self.max_code = float(-code_range(bits)[0])  # 2^(b-1); validates bits in [1, 16]
        self.bits = bits
        self.step = step
        self.profile = profile
        self.reduction = _check_reduction(reduction)

    def lsb(self, weight: torch.Tensor) -> torch.Tensor | float:
        """``Δ`` for ``weight`` as rows (out, 1), or the given scalar step."""
        if self.profile is None:
            return float(self.step)  # type: ignore[arg-type]
        return weight_scale(_rows(weight), self.profile) * self.step_per_scale

    def forward(self, weights: Weights) -> torch.Tensor:
        tensors = weight_tensors(weights)
        total = sum(
            torch.relu(_rows(w).abs() / self.lsb(w) - self.max_code).square().sum() for w in tensors
        )
        return _reduce(total, sum(w.numel() for w in tensors), self.reduction)  # type: ignore[arg-type]


class WeightKL(nn.Module):
    """``KL(q(W) ‖ p(W))`` of a device-noise posterior to a zero-mean Gaussian prior, in nats.

    Posterior ``q = N(μ = W, σ_q²)`` per weight, where ``σ_q`` is the weight noise the
    hardware adds, converted to weight units by the row scale ``s_j``
    (:func:`~analogtorch.hardware.mapping.weight_scale`)::

        σ_q,ji = s_j · sqrt(σ_prog(ŵ_ji)² + σ_r(t)²),   ŵ = normalized_weights(W, s, profile)

    with ``σ_prog²`` from :func:`~analogtorch.hardware.noise.prog_noise_variance` (constant
    and conductance-dependent programming noise, fractions of g_max) and ``σ_r(t)`` from
    :func:`~analogtorch.hardware.noise.read_noise_std_at` at ``time_s`` (default 0 s, as in
    training). Additive output (ADC-input) noise is not a weight noise and is left out, as
    are device mismatch and drift (chip-programming effects). ``σ_q`` is a property of the
    hardware, not a learned variance: it is detached, so the gradient is ``μ / σ_p²``.

    Prior ``p = N(0, σ_p²)``. With ``prior_std`` given, ``σ_p`` is that value (weight units).
    With ``prior_std=None`` it is the empirical-Bayes prior of each tensor, the ``σ_p`` that
    minimises the KL: ``σ_p² = mean(μ² + σ_q²)`` over the tensor (detached; the gradient is
    ``μ / σ_p²`` either way).

    Per element ``KL = ln(σ_p/σ_q) + (σ_q² + μ²) / (2 σ_p²) − 1/2``; ``reduction="sum"``
    (default, as in an ELBO) or ``"mean"`` over all elements. Weight tensors need at least
    two dimensions (out, ...): one row per output, as the hardware maps them. Given a model,
    every Linear/Conv weight is treated as stored on this hardware; to leave digital layers
    out pass ``[m.weight for m in analog_layers(model).values()]``. A weight row of zeros
    has ``s`` at the float ``tiny``, hence a large constant KL (no gradient).
    """

    def __init__(
        self,
        profile: HardwareProfile,
        prior_std: float | None = None,
        *,
        time_s: float = 0.0,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__()
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
        self.read_std = read_noise_std_at(profile, time_s)  # validates time_s
        if not profile.has_weight_noise and self.read_std == 0.0:
            raise ValueError(
                f"profile {profile.name!r} has no programming or read noise: σ_q = 0 makes "
                "the KL infinite; use a noisy profile (e.g. preset 'pcm') or Sparsity"
            )
        _check_positive("prior_std", prior_std)
        self.profile = profile
        self.prior_std = prior_std
        self.time_s = time_s
        self.reduction = _check_reduction(reduction)

    def posterior_std(self, weight: torch.Tensor) -> torch.Tensor:
        """``σ_q`` of every element of ``weight`` (same shape, weight units, detached)."""
        return hardware_weight_std(weight, self.profile, self.read_std)

    def forward(self, weights: Weights) -> torch.Tensor:
        tensors = weight_tensors(weights)
        total = torch.zeros((), dtype=tensors[0].dtype, device=tensors[0].device)
        for mu in tensors:
            sigma_q = self.posterior_std(mu)
            if self.prior_std is None:
                var_p = (mu.detach().square() + sigma_q.square()).mean()
            else:
                var_p = torch.tensor(self.prior_std**2, dtype=mu.dtype, device=mu.device)
            total = total + gaussian_kl(mu, sigma_q, torch.zeros_like(mu), var_p.sqrt()).sum()
        return _reduce(total, sum(w.numel() for w in tensors), self.reduction)


def gaussian_kl(
    mu_q: torch.Tensor, std_q: torch.Tensor, mu_p: torch.Tensor, std_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))`` in nats (arguments broadcast)::

    KL = ln(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²) / (2 σ_p²) − 1/2
    """
    return (
        torch.log(std_p)
        - torch.log(std_q)
        + (std_q.square() + (mu_q - mu_p).square()) / (2.0 * std_p.square())
        - 0.5
    )


def hardware_weight_std(
    weight: torch.Tensor, profile: HardwareProfile, read_std: float
) -> torch.Tensor:
    """Weight noise std the hardware adds to each element of ``weight``, weight units,
    detached: ``s_j · sqrt(σ_prog(ŵ_ji)² + σ_r²)`` (see :class:`WeightKL`), with ``σ_r`` the
    read-noise std (fraction of g_max) at the time of interest."""
    if weight.ndim < 2:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)}: a weight-noise KL needs a weight matrix "
            "(out, ...) as mapped onto the crossbar; leave biases out"
        )
    with torch.no_grad():
        scale = weight_scale(weight, profile)
        w_hat = normalized_weights(weight, scale, profile)
        var = prog_noise_variance(profile, w_hat) + read_std**2
        return (scale * var.sqrt()).reshape(weight.shape)


class ActivationAlignment(nn.Module):
    """``E[(φ(h) − φ_hw(h))²]`` over all elements of ``h``, in (activation units)².

    ``φ`` is the learned activation (``activation``, registered as a submodule when it is an
    ``nn.Module``, or passed to :meth:`forward` already evaluated as ``phi_h``). ``φ_hw`` is
    ``hw_activation``: any callable, or a :class:`HardwareProfile`, whose device transfer
    curve :func:`~analogtorch.hardware.circuit.transfer_curve` is used
    (``sinh(a h)/sinh(a)``, ``tanh(a h)/tanh(a)`` or ``h``; ``h`` normalised to the DAC full
    scale, so ``φ_hw(±1) = ±1``). Gradients flow through both terms. ``reduction="mean"``
    (default, the expectation) or ``"sum"``.
    """

    def __init__(
        self,
        hw_activation: Callable[[torch.Tensor], torch.Tensor] | HardwareProfile,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if isinstance(hw_activation, HardwareProfile):
            self.hw_activation: Callable[[torch.Tensor], torch.Tensor] = partial(
                transfer_curve,
                curve=hw_activation.transfer_curve,
                a=hw_activation.transfer_nonlinearity,
            )
        elif callable(hw_activation):
            self.hw_activation = hw_activation
        else:
            raise TypeError(
                f"hw_activation={type(hw_activation).__name__}: give a callable or a "
                "HardwareProfile (its transfer curve)"
            )
        if activation is not None and not callable(activation):
            raise TypeError(f"activation={type(activation).__name__}: give a callable or None")
        self.activation = activation
        self.reduction = _check_reduction(reduction)

    def forward(self, h: torch.Tensor, phi_h: torch.Tensor | None = None) -> torch.Tensor:
        if phi_h is None:
            if self.activation is None:
                raise ValueError(
                    "no learned activation: pass phi_h=φ(h) or build with activation=..."
                )
            phi_h = self.activation(h)
        if phi_h.shape != h.shape:
            raise ValueError(f"phi_h shape {tuple(phi_h.shape)} != h shape {tuple(h.shape)}")
        gap = (phi_h - self.hw_activation(h)).square()
        return gap.sum() if self.reduction == "sum" else gap.mean()


class MomentMatching(nn.Module):
    """``Σ_l (‖μ_net,l − μ_hw,l‖² + ‖σ_net,l − σ_hw,l‖²)`` in (activation units)².

    For layer ``l`` the moments are taken over the batch dimension (dim 0) of its activation
    tensor, per feature (every other dimension), and ``‖·‖²`` sums the squared gaps over
    features. ``σ`` is the standard deviation (population, ``1/N``), not the variance: it has
    the units of the activations, so both terms weigh alike. A feature with zero variance
    has ``σ = 0`` and zero gradient (no ``0/0``). The two lists are aligned by layer; batch
    sizes may differ, feature shapes may not; each batch needs at least two samples.
    Neither side is detached: detach the hardware activations when they are a target.
    """

    def forward(
        self, net: Sequence[torch.Tensor], hardware: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        if isinstance(net, torch.Tensor) or isinstance(hardware, torch.Tensor):
            raise TypeError("net and hardware must be lists of per-layer activation tensors")
        if len(net) != len(hardware) or not net:
            raise ValueError(
                f"got {len(net)} network and {len(hardware)} hardware layers: give one "
                "activation tensor per layer on both sides (at least one)"
            )
        total = torch.zeros((), dtype=net[0].dtype, device=net[0].device)
        for index, (a, b) in enumerate(zip(net, hardware, strict=True)):
            if a.shape[1:] != b.shape[1:] or a.ndim == 0:
                raise ValueError(
                    f"layer {index}: feature shapes {tuple(a.shape[1:])} (net) and "
                    f"{tuple(b.shape[1:])} (hardware) must match, batch first"
                )
            if min(a.shape[0], b.shape[0]) < 2:
                raise ValueError(f"layer {index}: batch of 1 has no spread; use >= 2 samples")
            mean_a, std_a = _batch_moments(a)
            mean_b, std_b = _batch_moments(b)
            total = total + (mean_a - mean_b).square().sum() + (std_a - std_b).square().sum()
        return total


def _batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x, dim=0, correction=0)
    return mean, var.clamp_min(torch.finfo(var.dtype).tiny).sqrt()


class JSCalibration(nn.Module):
    """Jensen–Shannon divergence of soft activation histograms, natural log, in ``[0, ln 2]``.

    Soft binning over ``bins`` equal bins of width ``w = (hi − lo)/bins`` with centres
    ``c_k = lo + (k + 1/2) w``: each sample ``x`` spreads unit mass as
    ``a_k(x) = softmax_k(−(x − c_k)² / (2 h²))`` (Gaussian kernel of bandwidth ``h``,
    default ``h = w``; samples outside the range land in the edge bins), and
    ``P_k = mean_x a_k(x)``. Then, with ``M = (P + Q)/2``::

        JS(P, Q) = ½ Σ_k P_k ln(P_k / M_k) + ½ Σ_k Q_k ln(Q_k / M_k),   0 ln 0 = 0.

    Differentiable in the samples of both sides (gradients finite where bins are empty).
    ``forward(learned, hardware)`` flattens each tensor into one sample set.
    """

    def __init__(
        self,
        bins: int = 32,
        range: tuple[float, float] = (-1.0, 1.0),  # as in numpy.histogram
        bandwidth: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins={bins!r}: use an integer >= 2")
        lo, hi = (float(v) for v in range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range={range!r}: need finite lo < hi")
        _check_positive("bandwidth", bandwidth)
        self.bins = bins
        self.lo, self.hi = lo, hi
        self.bin_width = (hi - lo) / bins
        self.bandwidth = self.bin_width if bandwidth is None else float(bandwidth)

    def histogram(self, x: torch.Tensor) -> torch.Tensor:
        """Soft histogram ``P`` (bins,) of all elements of ``x``; ``Σ_k P_k = 1``."""
        if x.numel() == 0:
            raise ValueError("empty activation tensor: need at least one sample")
        centres = torch.arange(self.bins, dtype=x.dtype, device=x.device)
        centres = self.lo + (centres + 0.5) * self.bin_width
        logits = -(x.reshape(-1, 1) - centres).square() / (2.0 * self.bandwidth**2)
        return torch.softmax(logits, dim=1).mean(dim=0)

    def forward(self, learned: torch.Tensor, hardware: torch.Tensor) -> torch.Tensor:
        return js_divergence(self.histogram(learned), self.histogram(hardware))


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence of two discrete distributions over the last dimension,
    nats, in ``[0, ln 2]``: ``½ Σ_k P_k ln(P_k/M_k) + ½ Σ_k Q_k ln(Q_k/M_k)``, ``M = (P+Q)/2``,
    ``0 ln 0 = 0``. ``p`` and ``q`` are probability vectors (non-negative, summing to 1)."""
    m = 0.5 * (p + q)
    tiny = torch.finfo(m.dtype).tiny
    log_m = m.clamp_min(tiny).log()
    kl_pm = (p * (p.clamp_min(tiny).log() - log_m)).sum(dim=-1)
    kl_qm = (q * (q.clamp_min(tiny).log() - log_m)).sum(dim=-1)
    return 0.5 * (kl_pm + kl_qm)


class Sparsity(nn.Module):
    """Weight sparsity penalty, in weight units.

    * ``kind="l1"``:    ``Σ_i |W_i|`` over every element (``"mean"``: divided by their count);
    * ``kind="group"``: group lasso over output rows, ``Σ_j ‖W_j‖₂`` with
      ``W_j = W[j].flatten()`` (one output neuron / filter; ``"mean"``: divided by the
      number of rows), which drives whole rows to zero. The gradient of a zero row is 0.

    ``reduction="mean"`` is the default.
    """

    def __init__(
        self, kind: Literal["l1", "group"] = "l1", *, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        if kind not in ("l1", "group"):
            raise ValueError(f"kind={kind!r}: use 'l1' or 'group' (group lasso over rows)")
        self.kind = kind
        self.reduction = _check_reduction(reduction)

    def forward(self, weights: Weights) -> torch.Tensor:
        tensors = weight_tensors(weights)
        if self.kind == "l1":
            total = sum(w.abs().sum() for w in tensors)
            count = sum(w.numel() for w in tensors)
        else:
            rows = [_rows(w) for w in tensors]
            total = sum(torch.linalg.vector_norm(r, dim=1).sum() for r in rows)
            count = sum(r.shape[0] for r in rows)
        return _reduce(total, count, self.reduction)  # type: ignore[arg-type]
