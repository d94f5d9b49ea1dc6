"""Stochastic residual layers: noise statistics, hardware-fitted init, modes, seeds, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.residual import PerturbedLayer, StochasticResidual

PROFILE = HardwareProfile(
    name="residual-test",
    prog_noise_std=0.05,
    read_noise_std=0.03,
    read_noise_log_growth=0.7,  # irrelevant at t = 0
    output_noise_std=0.1,
)
SIGMA = torch.tensor([[1.0, 0.6, -0.3], [0.6, 2.0, 0.5], [-0.3, 0.5, 1.5]])


class Zero(nn.Module):
    """x (..., n) -> zeros (..., out)."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out)


class Ones(Zero):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_ones(*x.shape[:-1], self.out)


def _rel_frobenius(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b))


# -- PerturbedLayer -------------------------------------------------------------------------


def test_perturbed_noise_sample_covariance_matches_configured_nondiagonal_sigma():
    layer = PerturbedLayer(Zero(3), Ones(3), covariance=SIGMA, noise_seed=11).train()
    y = layer(torch.zeros(40000, 2)).double()
    sample_cov = y.T @ y / y.shape[0]  # the mean is zero by construction
    assert _rel_frobenius(sample_cov, SIGMA.double()) < 0.03
    assert float(y.mean(0).abs().max()) < 0.03


def test_perturbed_singular_psd_sigma_is_accepted_and_reproduced():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, 2.0]])
    sigma = a @ a.T  # rank 2, positive semi-definite
    layer = PerturbedLayer(Zero(3), Ones(3), covariance=sigma)
    factor = layer.noise_factor.double()
    torch.testing.assert_close(factor @ factor.T, sigma.double(), atol=1e-5, rtol=1e-5)
    y = layer(torch.zeros(20000, 1)).double()
    assert _rel_frobenius(y.T @ y / y.shape[0], sigma.double()) < 0.04


def test_perturbed_profile_sigma_is_diagonal_weight_noise_variance():
    layer = PerturbedLayer(nn.Linear(4, 5), Ones(5), profile=PROFILE)
    expected = (0.05**2 + 0.03**2) * torch.eye(5)
    torch.testing.assert_close(layer.covariance, expected)
    assert layer.out_features == 5


def test_perturbed_profile_sigma_uses_prog_noise_poly_at_full_scale():
    profile = PROFILE.replace(prog_noise_poly=(0.01, 0.04))
    layer = PerturbedLayer(Zero(2), Ones(2), profile=profile, out_features=2)
    # sigma_p(1)^2 = std^2 + poly(G+ = 1)^2 + poly(G- = 0)^2, plus read noise at t = 0.
    by_hand = 0.05**2 + (0.01 + 0.04) ** 2 + 0.01**2 + 0.03**2
    torch.testing.assert_close(layer.covariance, by_hand * torch.eye(2))


def test_perturbed_eval_is_deterministic_and_noise_free_unless_eval_noise():
    torch.manual_seed(0)
    f, h = nn.Linear(4, 3), nn.Linear(4, 3)
    layer = PerturbedLayer(f, h, covariance=SIGMA).eval()
    x = torch.randn(8, 4)
    first, second = layer(x), layer(x)
    assert torch.equal(first, second)
    assert torch.equal(first, f(x))
    layer.eval_noise = True
    assert not torch.allclose(layer(x), f(x))


def test_perturbed_gradients_reach_F_and_H_parameters():
    torch.manual_seed(1)
    f, h = nn.Linear(4, 3), nn.Linear(4, 3)
    layer = PerturbedLayer(f, h, covariance=SIGMA, noise_seed=3).train()
    layer(torch.randn(16, 4)).square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, name
        assert bool(torch.isfinite(param.grad).all()), name
        assert float(param.grad.abs().sum()) > 0, name
    assert {n.split(".")[0] for n, _ in layer.named_parameters()} == {"F", "H"}


def test_perturbed_same_seed_identical_different_seed_different():
    x = torch.ones(6, 2)

    def run(seed: int) -> torch.Tensor:
        return PerturbedLayer(Zero(3), Ones(3), covariance=SIGMA, noise_seed=seed)(x)

    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


def test_perturbed_reseed_restarts_the_noise_sequence():
    layer = PerturbedLayer(Zero(3), Ones(3), covariance=SIGMA, noise_seed=2)
    x = torch.ones(4, 1)
    first = layer(x)
    assert not torch.equal(layer(x), first)
    layer.reseed(2)
    assert torch.equal(layer(x), first)


@pytest.mark.parametrize(
    "covariance",
    [
        torch.tensor([[1.0, 2.0], [2.0, 1.0]]),  # eigenvalue -1: not PSD
        torch.tensor([[-1.0, 0.0], [0.0, 1.0]]),  # negative variance
        torch.ones(2, 3),  # not square
        torch.ones(3),  # not a matrix
        torch.eye(2).expand(2, 2, 2),  # batched
        torch.tensor([[1.0, 0.5], [0.0, 1.0]]),  # not symmetric
        torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]),
    ],
)
def test_perturbed_rejects_invalid_sigma_with_value_error(covariance):
    with pytest.raises(ValueError, match="covariance"):
        PerturbedLayer(Zero(2), Ones(2), covariance=covariance)


def test_perturbed_rejects_ambiguous_or_mismatched_configuration():
    with pytest.raises(ValueError, match="exactly one"):
        PerturbedLayer(Zero(3), Ones(3))
    with pytest.raises(ValueError, match="exactly one"):
        PerturbedLayer(Zero(3), Ones(3), covariance=SIGMA, profile=PROFILE)
    with pytest.raises(ValueError, match="out_features"):
        PerturbedLayer(Zero(3), Ones(3), profile=PROFILE)  # Zero has no out_features
    with pytest.raises(ValueError, match="out_features=2"):
        PerturbedLayer(Zero(3), Ones(3), covariance=SIGMA, out_features=2)
    with pytest.raises(TypeError, match="covariance"):
        PerturbedLayer(Zero(3), Ones(3), covariance=SIGMA.tolist())
    with pytest.raises(TypeError, match="H="):
        PerturbedLayer(Zero(3), lambda x: x, covariance=SIGMA)
    with pytest.raises(ValueError, match=r"F\(x\)\.shape"):
        PerturbedLayer(Zero(4), Ones(4), covariance=SIGMA)(torch.zeros(2, 1))


def test_perturbed_extra_repr_names_the_noise_source():
    text = repr(PerturbedLayer(nn.Linear(2, 3), Ones(3), profile=PROFILE, noise_seed=9))
    assert "out_features=3" in text and "residual-test" in text and "noise_seed=9" in text


# -- StochasticResidual ---------------------------------------------------------------------


def test_residual_initial_theta_equals_profile_numbers():
    block = StochasticResidual(Zero(4), 4, profile=PROFILE)
    theta_0 = 0.1**2  # output_noise_std^2
    theta_1 = 0.05**2 + 0.03**2  # prog_noise_std^2 + read_noise_std^2 (t = 0)
    torch.testing.assert_close(block.theta, torch.tensor([theta_0, theta_1]), rtol=1e-5, atol=0)


def test_residual_initial_theta_1_uses_prog_noise_poly_at_full_scale():
    profile = PROFILE.replace(prog_noise_poly=(0.02, 0.03))
    block = StochasticResidual(Zero(2), 2, profile=profile)
    theta_1 = 0.05**2 + (0.02 + 0.03) ** 2 + 0.02**2 + 0.03**2
    torch.testing.assert_close(block.theta[1], torch.tensor(theta_1), rtol=1e-5, atol=0)


def test_residual_noise_free_profile_starts_at_tiny_positive_theta():
    block = StochasticResidual(Zero(2), 2, profile=HardwareProfile())
    assert bool((block.theta > 0).all()) and float(block.theta.detach().max()) < 1e-11
    assert bool(torch.isfinite(block(torch.zeros(3, 2))).all())


def test_residual_noise_variance_equals_beta_squared_theta_law():
    block = StochasticResidual(Zero(5), 5, profile=PROFILE, alpha_init=0.7, beta_init=0.5)
    h = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    theta_0, theta_1 = 0.1**2, 0.05**2 + 0.03**2
    by_hand = 0.5**2 * (theta_0 + theta_1 * h.square())
    torch.testing.assert_close(block.noise_variance(h), by_hand, rtol=1e-5, atol=0)

    y = block.train()(h.expand(40000, 5)).detach().double()
    noise = y - 0.7 * h.double()  # f = 0, W = I
    assert float((noise.mean(0) / by_hand.double().sqrt()).abs().max()) < 0.05
    rel = noise.square().mean(0) / by_hand.double() - 1
    assert float(rel.abs().max()) < 0.05


def test_residual_eval_is_deterministic_and_noise_free_unless_eval_noise():
    torch.manual_seed(0)
    f = nn.Linear(3, 3)
    block = StochasticResidual(f, 3, profile=PROFILE, alpha_init=0.8).eval()
    with torch.no_grad():
        block.skip_weight.add_(0.1 * torch.randn(3, 3))
    h = torch.randn(10, 3)
    first, second = block(h), block(h)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, f(h) + 0.8 * h @ block.skip_weight.T)
    block.eval_noise = True
    assert not torch.allclose(block(h), first)


def test_residual_gradients_reach_alpha_beta_theta_skip_and_f():
    torch.manual_seed(2)
    block = StochasticResidual(nn.Linear(4, 4), 4, profile=PROFILE, beta_init=0.5).train()
    block(torch.randn(32, 4)).square().sum().backward()
    names = {name for name, _ in block.named_parameters()}
    assert {"alpha", "beta", "theta_raw", "skip_weight", "f.weight", "f.bias"} == names
    for name, param in block.named_parameters():
        assert param.grad is not None, name
        assert bool(torch.isfinite(param.grad).all()), name
        assert bool((param.grad != 0).any()), name
    assert bool((block.theta_raw.grad != 0).all())  # both theta_0 and theta_1


def test_residual_same_seed_identical_different_seed_different():
    h = torch.linspace(-1, 1, 12).reshape(3, 4)

    def run(seed: int) -> torch.Tensor:
        return StochasticResidual(Zero(4), 4, profile=PROFILE, noise_seed=seed)(h)

    assert torch.equal(run(4), run(4))
    assert not torch.allclose(run(4), run(5))


def test_residual_batched_shapes_are_preserved():
    block = StochasticResidual(Zero(4), 4, profile=PROFILE)
    assert block(torch.zeros(2, 3, 4)).shape == (2, 3, 4)
    assert block(torch.zeros(4)).shape == (4,)


def test_residual_rejects_invalid_arguments_naming_them():
    with pytest.raises(ValueError, match="features=0"):
        StochasticResidual(Zero(1), 0, profile=PROFILE)
    with pytest.raises(TypeError, match="features"):
        StochasticResidual(Zero(2), 2.0, profile=PROFILE)
    with pytest.raises(TypeError, match="profile"):
        StochasticResidual(Zero(2), 2, profile="ideal")
    with pytest.raises(TypeError, match="f="):
        StochasticResidual(lambda h: h, 2, profile=PROFILE)
    with pytest.raises(ValueError, match="beta_init"):
        StochasticResidual(Zero(2), 2, profile=PROFILE, beta_init=float("inf"))
    with pytest.raises(TypeError, match="noise_seed"):
        StochasticResidual(Zero(2), 2, profile=PROFILE, noise_seed=1.5)
    block = StochasticResidual(Zero(3), 3, profile=PROFILE)
    with pytest.raises(ValueError, match=r"h\.shape"):
        block(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"f\(h\)\.shape"):
        StochasticResidual(Zero(2), 3, profile=PROFILE)(torch.zeros(2, 3))


def test_residual_extra_repr_reports_parameters():
    text = repr(StochasticResidual(Zero(2), 2, profile=PROFILE, alpha_init=0.5, noise_seed=7))
    for part in ("features=2", "residual-test", "alpha=0.5", "theta=(0.01,", "noise_seed=7"):
        assert part in text
