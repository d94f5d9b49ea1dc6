"""Stochastic residual layers: learned noise paths whose scale is fitted to the hardware.

Two published forms (both batched: every sample draws its own noise in one tensor op):

* :class:`StochasticResidual` -- ``h_{l+1} = f(h_l) + alpha W h_l + beta P(h_l; theta)``
  with a learned skip ``W`` and a reparameterised noise generator
  ``P(h; theta) = sigma_theta(h) * eps``, ``eps ~ N(0, I)``,
  ``sigma_theta(h)^2 = theta_0 + theta_1 h^2`` (element-wise), theta initialised from the
  :class:`~analogtorch.hardware.profile.HardwareProfile`;
* :class:`PerturbedLayer` -- ``y = F(x; W) + eps * H(x; W)`` with ``eps ~ N(0, Sigma)``
  per sample, ``Sigma`` given (any PSD matrix) or the profile's weight-noise variance.

Units follow the hardware model (:mod:`analogtorch.hardware.noise`): noise standard
deviations are fractions of ``g_max`` for one weight, outputs are in units of
``g_max * v_read`` and inputs in units of the DAC full scale (``|h| = 1`` is a full-scale
input). Noise variances are taken from :mod:`analogtorch.hardware.noise`, never restated.

Noise is drawn in ``train()`` mode, or in ``eval()`` mode when ``eval_noise`` is True; an
``eval()`` forward without ``eval_noise`` is deterministic and noise-free. Draws come from a
:class:`~analogtorch.hardware.random.NoiseSource` seeded from ``noise_seed`` (never the
global generator), so two layers built with the same seed draw the same noise sequence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import nn

from ..hardware.noise import prog_noise_variance, read_noise_std_at
from ..hardware.profile import HardwareProfile
from ..hardware.random import NoiseSource, derive_seed

__all__ = [
    "PerturbedLayer",
    "StochasticResidual",
    "profile_weight_noise_variance",
]

# Smallest initial theta: softplus^-1(0) = -inf, so a noise-free profile starts here.
_THETA_FLOOR = 1e-12


def profile_weight_noise_variance(profile: HardwareProfile) -> float:
    """Weight-noise variance of one full-scale weight per unit input squared.

    ``sigma_w^2 = sigma_p(w_hat = 1)^2 + sigma_r(t = 0)^2`` (fraction of ``g_max``, squared),
    with ``sigma_p`` from :func:`~analogtorch.hardware.noise.prog_noise_variance` and
    ``sigma_r`` from :func:`~analogtorch.hardware.noise.read_noise_std_at`. A full-scale
    weight is the worst case of the conductance-dependent law ``prog_noise_poly``; without
    a polynomial the law is constant and this is ``prog_noise_std^2 + read_noise_std^2``.
    A weight ``w`` read at input ``h`` then contributes variance ``sigma_w^2 h^2`` to its
    output (units of ``(g_max v_read)^2``).
    """
    if not isinstance(profile, HardwareProfile):
        raise TypeError(
            f"profile={profile!r}: must be a HardwareProfile, got {type(profile).__name__}; "
            "build one with HardwareProfile.preset(name) or HardwareProfile(...)"
        )
    prog = float(prog_noise_variance(profile, torch.ones((), dtype=torch.float64)))
    return prog + read_noise_std_at(profile, 0.0) ** 2


def _inverse_softplus(value: float) -> float:
    """``x`` with ``softplus(x) = log(1 + e^x) = value`` (value > 0)."""
    return value + math.log(-math.expm1(-value))


def _check_module(name: str, value: object) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise TypeError(
            f"{name}={value!r}: must be a torch.nn.Module, got {type(value).__name__}; "
            "wrap a function in an nn.Module subclass"
        )
    return value


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r}: must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value}: must be finite; pass a finite float")
    return float(value)


def _check_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"noise_seed={value!r}: must be an int, got {type(value).__name__}; pass e.g. 0"
        )
    return value


class _SeededNoise:
    """Per-device :class:`NoiseSource` streams derived from one ``noise_seed``."""

    _noise_tag: str
    noise_seed: int
    _noise_sources: dict[torch.device, NoiseSource]

    def reseed(self, noise_seed: int) -> None:
        """Restart the noise sequence from ``noise_seed`` (drops the current streams)."""
        self.noise_seed = _check_seed(noise_seed)
        self._noise_sources = {}

    def noise_state(self) -> dict[str, object]:
        """Where the noise streams stand: ``noise_seed`` and each device's source."""
        sources = {str(device): s.get_state() for device, s in self._noise_sources.items()}
        return {"noise_seed": self.noise_seed, "sources": sources}

    def load_noise_state(self, state: dict[str, object]) -> None:
        """Continue the noise streams from :meth:`noise_state`'s ``state``."""
        self.reseed(int(state["noise_seed"]))  # type: ignore[call-overload]
        for device, streams in state["sources"].items():  # type: ignore[attr-defined]
            self._source(torch.device(device)).set_state(streams)

    def _source(self, device: torch.device) -> NoiseSource:
        if device not in self._noise_sources:
            seed = derive_seed(self.noise_seed, self._noise_tag)
            self._noise_sources[device] = NoiseSource(seed, device)
        return self._noise_sources[device]

    def _draw(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """Standard normal ``z ~ N(0, I)`` of ``shape`` on ``like``'s device and dtype."""
        return self._source(like.device).normal(shape, like.dtype)


class StochasticResidual(_SeededNoise, nn.Module):
    """Residual block with a learned skip and a learned, hardware-fitted noise path.

    ``h_{l+1} = f(h_l) + alpha W h_l + beta sigma_theta(h_l) * eps``, ``eps ~ N(0, I)``,

    ``sigma_theta(h)^2 = theta_0 + theta_1 h^2`` (element-wise; ``theta = softplus(raw)``
    so theta > 0). Shapes: ``h_l`` (..., features) -> (..., features); ``f`` must map
    (..., features) to (..., features). Parameters: ``alpha``, ``beta`` (scalars),
    ``skip_weight`` W (features, features; initialised to the identity), ``theta_raw`` (2,).

    Initial theta is fitted to ``profile`` (units: output ``(g_max v_read)^2``):

    * ``theta_0 = output_noise_std^2`` -- the additive ADC-input noise variance;
    * ``theta_1 = sigma_p(w_hat=1)^2 + sigma_r(0)^2`` -- the weight-noise variance of a
      full-scale weight per unit input squared (:func:`profile_weight_noise_variance`;
      ``prog_noise_std^2 + read_noise_std^2`` when ``prog_noise_poly`` is empty).

    A theta the profile sets to 0 starts at 1e-12 instead (softplus never reaches 0).
    The noise variance of an output element is ``beta^2 (theta_0 + theta_1 h^2)``
    (:meth:`noise_variance`). Gradients reach alpha, beta, theta and W by
    reparameterisation: ``eps`` does not depend on any parameter.
    """

    _noise_tag = "stochastic-residual"

    def __init__(
        self,
        f: nn.Module,
        features: int,
        *,
        profile: HardwareProfile,
        alpha_init: float = 1.0,
        beta_init: float = 0.1,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int):
            raise TypeError(f"features={features!r}: must be an int, got {type(features).__name__}")
        if features < 1:
            raise ValueError(f"features={features}: must be >= 1 (the width of h)")
        self.f = _check_module("f", f)
        self.features = features
        self.profile = profile
        theta_1 = profile_weight_noise_variance(profile)  # also checks the profile type
        theta_0 = profile.output_noise_std**2
        self.alpha = nn.Parameter(torch.tensor(_check_real("alpha_init", alpha_init)))
        self.beta = nn.Parameter(torch.tensor(_check_real("beta_init", beta_init)))
        self.skip_weight = nn.Parameter(torch.eye(features))
        raw = [_inverse_softplus(max(t, _THETA_FLOOR)) for t in (theta_0, theta_1)]
        self.theta_raw = nn.Parameter(torch.tensor(raw, dtype=torch.float64).float())
        self.eval_noise = False
        self.reseed(noise_seed)

    @property
    def theta(self) -> torch.Tensor:
        """``(theta_0, theta_1) = softplus(theta_raw)``, shape (2,), both > 0."""
        return F_.softplus(self.theta_raw)

    @property
    def noisy(self) -> bool:
        """True when a forward draws noise (``train()`` mode or ``eval_noise``)."""
        return self.training or self.eval_noise

    def noise_variance(self, h: torch.Tensor) -> torch.Tensor:
        """Variance of the noise term, ``beta^2 (theta_0 + theta_1 h^2)``, shape of ``h``."""
        theta = self.theta.to(h.dtype)
        return self.beta.to(h.dtype) ** 2 * (theta[0] + theta[1] * h.square())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(..., features) -> (..., features); see the class docstring for the equation."""
        if h.dim() < 1 or h.shape[-1] != self.features:
            raise ValueError(
                f"h.shape={tuple(h.shape)}: last dimension must be features={self.features}; "
                "pass a tensor of shape (..., features)"
            )
        out = self.f(h)
        if out.shape != h.shape:
            raise ValueError(
                f"f(h).shape={tuple(out.shape)} differs from h.shape={tuple(h.shape)}; "
                "f must map (..., features) to (..., features)"
            )
        out = out + self.alpha * F_.linear(h, self.skip_weight)
        if not self.noisy:
            return out
        theta = self.theta.to(h.dtype)
        var = (theta[0] + theta[1] * h.square()).clamp_min(torch.finfo(h.dtype).tiny)
        return out + self.beta * var.sqrt() * self._draw(h.shape, h)

    def extra_repr(self) -> str:
        theta = self.theta.detach().tolist()
        return (
            f"features={self.features}, profile={self.profile.name!r}, "
            f"alpha={float(self.alpha.detach()):.4g}, beta={float(self.beta.detach()):.4g}, "
            f"theta=({theta[0]:.4g}, {theta[1]:.4g}), noise_seed={self.noise_seed}, "
            f"eval_noise={self.eval_noise}"
        )


def _validate_covariance(covariance: object) -> torch.Tensor:
    """``covariance`` as a float64 (n, n) symmetric PSD matrix, or a ValueError/TypeError."""
    if not isinstance(covariance, torch.Tensor):
        raise TypeError(
            f"covariance={covariance!r}: must be a torch.Tensor of shape (out, out), got "
            f"{type(covariance).__name__}"
        )
    if covariance.dim() != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(
            f"covariance.shape={tuple(covariance.shape)}: must be square (out, out); pass "
            "the covariance matrix of the out-dimensional noise"
        )
    if covariance.shape[0] < 1:
        raise ValueError("covariance.shape=(0, 0): need at least one output")
    if covariance.is_complex():
        raise TypeError(f"covariance.dtype={covariance.dtype}: must be real")
    sigma = covariance.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(sigma).all()):
        raise ValueError("covariance contains NaN or inf: every entry must be finite")
    scale = float(sigma.abs().max()) or 1.0
    asym = float((sigma - sigma.T).abs().max())
    if asym > 1e-6 * scale:
        raise ValueError(
            f"covariance is not symmetric (max |Sigma - Sigma^T| = {asym:.3g}); pass "
            "(Sigma + Sigma.T) / 2 if the asymmetry is round-off"
        )
    sigma = 0.5 * (sigma + sigma.T)
    min_eig = float(torch.linalg.eigvalsh(sigma).min())
    if min_eig < -1e-9 * scale:
        raise ValueError(
            f"covariance is not positive semi-definite (smallest eigenvalue {min_eig:.3g}); "
            "a covariance needs all eigenvalues >= 0, e.g. A @ A.T"
        )
    return sigma


def _noise_factor(sigma: torch.Tensor) -> torch.Tensor:
    """``L`` with ``L L^T = Sigma``: Cholesky when Sigma is positive definite, else from the
    eigendecomposition ``V diag(sqrt(max(lambda, 0)))`` (singular PSD Sigma)."""
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0:
        return factor
    eigvals, eigvecs = torch.linalg.eigh(sigma)
    return eigvecs * eigvals.clamp_min(0.0).sqrt()


class PerturbedLayer(_SeededNoise, nn.Module):
    """A layer with a learned, correlated multiplicative perturbation.

    ``y = F(x; W) + eps * H(x; W)`` (element-wise), ``eps = L z``, ``z ~ N(0, I_out)``,
    ``L L^T = Sigma``: one independent ``eps`` per sample. Shapes: ``x`` (..., in) ->
    ``y`` (..., out) where ``F(x)`` is (..., out) and ``H(x)`` broadcasts to it.
    ``eps`` is dimensionless when ``H`` carries the units of ``y``.

    ``Sigma`` (out, out) is one of

    * ``covariance``: any symmetric positive semi-definite matrix (validated; factored by
      Cholesky, or by eigendecomposition when singular); stored as buffers ``covariance``
      and ``noise_factor`` L;
    * from ``profile``: ``Sigma = sigma_w^2 I_out`` with ``sigma_w^2`` the weight-noise
      variance of a full-scale weight per unit input squared,
      ``sigma_p(w_hat=1)^2 + sigma_r(0)^2`` (:func:`profile_weight_noise_variance`), the
      same for every output. With ``H(x)_i = ||x||_2`` this is the output variance of a
      row of full-scale noisy weights. The additive ``output_noise_std`` does not scale
      with ``H`` and is not included; add it to a given ``covariance`` if wanted.
      ``out_features`` defaults to ``F.out_features`` (e.g. ``nn.Linear``).

    Gradients reach ``F`` and ``H`` by reparameterisation (``z`` is parameter-free).
    """

    _noise_tag = "perturbed-layer"

    def __init__(
        self,
        F: nn.Module,
        H: nn.Module,
        *,
        covariance: torch.Tensor | None = None,
        profile: HardwareProfile | None = None,
        out_features: int | None = None,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        self.F = _check_module("F", F)
        self.H = _check_module("H", H)
        if (covariance is None) == (profile is None):
            raise ValueError(
                f"covariance={'given' if covariance is not None else None}, "
                f"profile={'given' if profile is not None else None}: pass exactly one of "
                "covariance (an (out, out) PSD matrix) or profile (diagonal hardware noise)"
            )
        self.profile = profile
        if covariance is not None:
            sigma = _validate_covariance(covariance)
            n = sigma.shape[0]
            if out_features is not None and out_features != n:
                raise ValueError(
                    f"out_features={out_features} differs from covariance.shape[0]={n}; "
                    "omit out_features or pass a matching covariance"
                )
            dtype = covariance.dtype if covariance.is_floating_point() else None
            dtype = dtype or torch.get_default_dtype()
            factor = _noise_factor(sigma)
        else:
            variance = profile_weight_noise_variance(profile)  # type: ignore[arg-type]
            n = out_features if out_features is not None else getattr(F, "out_features", None)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(
                    f"out_features={n!r}: with profile=..., pass out_features >= 1 (it cannot "
                    f"be read from F of type {type(F).__name__})"
                )
            dtype = torch.get_default_dtype()
            sigma = torch.eye(n, dtype=torch.float64) * variance
            factor = torch.eye(n, dtype=torch.float64) * math.sqrt(variance)
        self.out_features = n
        self.register_buffer("covariance", sigma.to(dtype))
        self.register_buffer("noise_factor", factor.to(dtype))
        self.eval_noise = False
        self.reseed(noise_seed)

    @property
    def noisy(self) -> bool:
        """True when a forward draws noise (``train()`` mode or ``eval_noise``)."""
        return self.training or self.eval_noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out); see the class docstring for the equation."""
        y = self.F(x)
        if y.dim() < 1 or y.shape[-1] != self.out_features:
            raise ValueError(
                f"F(x).shape={tuple(y.shape)}: last dimension must be "
                f"out_features={self.out_features} (the size of Sigma); match F to Sigma"
            )
        if not self.noisy:
            return y
        h = self.H(x)
        if torch.broadcast_shapes(h.shape, y.shape) != y.shape:
            raise ValueError(
                f"H(x).shape={tuple(h.shape)} does not broadcast to F(x).shape="
                f"{tuple(y.shape)}; H must return (..., out) or a broadcastable shape"
            )
        z = self._draw(y.shape, y)
        eps = z @ self.noise_factor.to(y.dtype).T
        return y + eps * h

    def extra_repr(self) -> str:
        source = f"profile={self.profile.name!r}" if self.profile is not None else "covariance"
        return (
            f"out_features={self.out_features}, sigma_from={source}, "
            f"noise_seed={self.noise_seed}, eval_noise={self.eval_noise}"
        )
