"""Physics terms of PI-DEQ cores: declared Lipschitz constants against independent references."""

import pytest
import torch

from analogtorch.deq import SOLVERS, PICore, SolverOptions
from analogtorch.deq.physics import (
    PHYSICS,
    BurgersStep,
    HeatStep,
    LinearSystemStep,
    equation_residual,
    make_physics,
)
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.tasks import make_task, random_hurwitz


def power_iteration_norm(matrix: torch.Tensor, steps: int = 3000) -> float:
    """Largest singular value by power iteration on ``MᵀM`` (independent of svd / eig)."""
    v = torch.ones(matrix.shape[1], dtype=torch.float64)
    v[::2] = -0.5
    for _ in range(steps):
        v = matrix.T @ (matrix @ v)
        v = v / v.norm()
    return float((matrix @ v).norm())


def explicit_heat_step(n: int, r: float) -> torch.Tensor:
    """``I + r tridiag(1, −2, 1)`` written out entry by entry."""
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        m[i, i] = 1.0 - 2.0 * r
        if i > 0:
            m[i, i - 1] = r
        if i < n - 1:
            m[i, i + 1] = r
    return m


@pytest.mark.parametrize("n,r", [(8, 0.25), (32, 0.5), (17, 0.1)])
def test_heat_lipschitz_matches_matrix_norm_and_power_iteration(n, r):
    physics = HeatStep(n, n + 3, kappa=2.0, courant=r, coupling=0.4)
    m = explicit_heat_step(n, r)
    expected = 0.4 * float(torch.linalg.matrix_norm(m, ord=2))
    assert physics.lipschitz == pytest.approx(expected, rel=1e-10)
    assert physics.lipschitz == pytest.approx(0.4 * power_iteration_norm(m), rel=1e-6)


def test_heat_step_is_explicit_euler_of_heat_equation():
    n, kappa, r = 10, 0.5, 0.3
    physics = HeatStep(n, n, kappa=kappa, courant=r, coupling=1.0)
    h = 1.0 / (n + 1)
    dt = r * h**2 / kappa
    z, s = torch.randn(3, n), torch.randn(3, n)
    padded = torch.nn.functional.pad(z, (1, 1))
    second = (padded[:, 2:] - 2 * z + padded[:, :-2]) / h**2
    expected = z + dt * (kappa * second + s)
    torch.testing.assert_close(physics(z, s), expected, rtol=1e-4, atol=1e-5)


def test_linear_lipschitz_matches_power_iteration():
    a = random_hurwitz(12, torch.Generator().manual_seed(3))
    physics = LinearSystemStep(a, 16, dt=0.2, coupling=0.3)
    m = torch.eye(12, dtype=torch.float64) + 0.2 * a
    assert physics.lipschitz == pytest.approx(0.3 * power_iteration_norm(m), rel=1e-6)


def test_burgers_lipschitz_bounds_jacobian_on_state_box():
    n = 16
    physics = BurgersStep(n, n, nu=0.1, courant=0.25, coupling=0.5).double()
    gen = torch.Generator().manual_seed(0)
    u = torch.zeros(1, n, dtype=torch.float64)
    largest = 0.0
    for trial in range(20):
        z = 2 * torch.rand(1, n, generator=gen, dtype=torch.float64) - 1
        if trial == 0:
            z = torch.sign(z)  # a vertex of the box
        jac = torch.autograd.functional.jacobian(lambda v: physics(v, u), z).reshape(n, n)
        largest = max(largest, float(torch.linalg.matrix_norm(jac, ord=2)))
    assert largest <= physics.lipschitz
    assert largest >= 0.5 * physics.lipschitz  # the bound is not vacuous


def test_pi_core_counts_physics_in_contraction_bound():
    physics = HeatStep(8, 16, coupling=0.5)
    core = PICore(16, HardwareProfile.preset("ideal"), physics, contraction=0.9)
    assert core.physics_lipschitz() == pytest.approx(physics.lipschitz)
    assert core.contraction_bound() <= 0.9 + 1e-6
    u = torch.randn(4, 16)
    options = SolverOptions(tol=1e-5, max_iter=500)
    _, stats = SOLVERS["fixed_point"](lambda v: core(v, u), torch.zeros(4, 16), options)
    assert stats.converged


def test_unknown_physics_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: " + ", ".join(sorted(PHYSICS))):
        make_physics("wave", {}, 8)


@pytest.mark.parametrize("name", ["heat", "burgers", "linear"])
def test_equation_residual_is_small_on_exact_solution_and_large_on_zero(name):
    task = make_task(name, n_train=8, n_test=8, dtype=torch.float64)
    exact = equation_residual(name, task.info, task.x_test, task.y_test)
    zero = equation_residual(name, task.info, task.x_test, torch.zeros_like(task.y_test))
    assert exact < 1e-6
    assert zero == pytest.approx(1.0)
