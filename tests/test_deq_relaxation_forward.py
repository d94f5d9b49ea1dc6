"""``HybridDEQ(forward="relaxation")``: the core settled by the circuit ODE
``τ dz/dt = −z + f(z, u)`` as the forward, the implicit gradient at the settled state as the
backward; checked against the solver forward, central finite differences of the settled
output, the exact Euler recursion of a linear core and the energy model."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from analogtorch.deq import SolverOptions
from analogtorch.deq.hybrid import HybridDEQ, build_hybrid_deq
from analogtorch.deq.options import SolverStats
from analogtorch.deq.regularizers import RegularizerWeights
from analogtorch.deq.relaxation import (
    RelaxationOptions,
    RelaxationStats,
    relaxation_time_constant,
)
from analogtorch.deq.study import complete_config, run_deq_study
from analogtorch.deq.training import DEQLoss, evaluate_hybrid, train_hybrid
from analogtorch.energy import estimate_dynamics
from analogtorch.hardware.profile import HardwareProfile

F64 = torch.float64
IDEAL = HardwareProfile.preset("ideal")
PCM = HardwareProfile.preset("pcm")
TAU = relaxation_time_constant(IDEAL)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(forward: str = "relaxation", *, tol: float = 1e-12, **kwargs) -> HybridDEQ:
    """A float64 ideal hybrid DEQ 5 → 6 → 3 whose forward stops at an absolute change ``tol``."""
    options = SolverOptions(tol=tol, mode="absolute", max_iter=500)
    kwargs.setdefault("contraction", 0.5)
    return build_hybrid_deq(
        5,
        3,
        IDEAL,
        width=6,
        digital_bits=None,
        forward_options=options,
        backward_options=SolverOptions(tol=1e-13, mode="absolute", max_iter=500),
        forward=forward,
        seed=1,
        **kwargs,
    ).double()


def _per_window_decay(model: HybridDEQ) -> float:
    """Upper bound ``ρ`` of the error decay over one τ of the Euler-integrated relaxation
    of a map contracting by ``γ``: ``(1 − (1 − γ) / steps_per_tau) ** steps_per_tau``."""
    gamma, steps = model.core.contraction_bound(), model.relaxation.steps_per_tau
    return (1 - (1 - gamma) / steps) ** steps


def test_relaxation_forward_reaches_the_solver_fixed_point_within_its_stop_criterion():
    tol = 1e-9
    relaxing = _model(tol=tol)
    solving = _model("solver", tol=1e-14)
    solving.load_state_dict(relaxing.state_dict())
    x = torch.randn(8, 5, generator=_gen(0), dtype=F64)
    with torch.no_grad():
        y_relax, y_solve = relaxing(x), solving(x)
    stats = relaxing.last_forward_stats
    assert isinstance(stats, RelaxationStats) and isinstance(stats, SolverStats)
    assert stats.converged and stats.reason == "converged"
    assert solving.last_forward_stats.converged
    # A change below tol over the last τ leaves at most tol · ρ / (1 − ρ) to go.
    rho = _per_window_decay(relaxing)
    bound = tol * rho / (1 - rho)
    distance = torch.linalg.vector_norm(relaxing.last_state - solving.last_state, dim=1)
    assert float(distance.max()) <= bound
    assert float(distance.max()) > 0  # a real relaxation, not the solver's answer
    torch.testing.assert_close(y_relax, y_solve, rtol=0, atol=10 * bound)


def _central_difference(loss, tensor: torch.Tensor, direction: torch.Tensor, eps: float) -> float:
    """``(L(t + ε d) − L(t − ε d)) / 2ε`` of the settled output, ``t`` restored afterwards."""
    original = tensor.detach().clone()
    values = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            tensor.copy_(original + sign * eps * direction)
            values.append(float(loss()))
        tensor.copy_(original)
    return (values[0] - values[1]) / (2 * eps)


def test_implicit_gradient_at_the_settled_state_matches_finite_differences():
    model = _model(tol=1e-13)
    g = _gen(1)
    x = torch.randn(4, 5, generator=g, dtype=F64, requires_grad=True)
    weights = torch.randn(4, 3, generator=g, dtype=F64)

    def loss() -> torch.Tensor:
        return (model(x) * weights).sum()

    loss().backward()
    assert model.last_forward_stats.converged
    assert model.deq.last_backward_stats.converged  # the adjoint solve of this backward
    checked = {
        "input": x,
        "encoder": model.encoder[1].weight,
        "feedback": model.core.feedback.weight,
    }
    for k, (name, tensor) in enumerate(checked.items()):
        direction = torch.randn(tensor.shape, generator=_gen(10 + k), dtype=F64)
        analytic = float((tensor.grad * direction).sum())
        numeric = _central_difference(loss, tensor, direction, eps=1e-5)
        assert analytic == pytest.approx(numeric, rel=1e-6), name


def _oscillator(max_tau: float) -> HybridDEQ:
    """Width 2, ``W = [[2, 3], [−3, 2]]`` (bypassing the projection): ``−I + W`` has
    eigenvalues ``1 ± 3i``, an unstable spiral that tanh bounds to a limit cycle."""
    model = build_hybrid_deq(
        5,
        3,
        IDEAL,
        width=2,
        digital_bits=None,
        forward_options=SolverOptions(tol=1e-6, mode="absolute"),
        forward="relaxation",
        relaxation=RelaxationOptions(max_tau=max_tau),
        seed=2,
    ).double()
    with torch.no_grad():
        model.core.feedback.weight.copy_(torch.tensor([[2.0, 3.0], [-3.0, 2.0]], dtype=F64))
    assert model.core.contraction_bound() > 1
    return model


def test_a_core_that_never_settles_is_reported_not_returned_as_nan():
    model = _oscillator(max_tau=30.0)
    x = torch.randn(3, 5, generator=_gen(2), dtype=F64)
    with pytest.warns(RuntimeWarning, match="3 of 3 samples did not settle"):
        y = model(x)
    stats = model.last_forward_stats
    assert stats.reason == "max_iter" and not stats.converged
    assert stats.final_residual > 1e-6  # still moving at the end of the budget
    assert torch.isfinite(y).all() and torch.isfinite(model.last_state).all()
    assert torch.isinf(stats.sample_settling_time_s).all()
    assert not stats.sample_settled.any()
    torch.testing.assert_close(
        stats.sample_duration_s, torch.full((3,), 30 * TAU, dtype=F64), rtol=1e-12, atol=0
    )
    assert torch.isfinite(stats.sample_energy_j).all() and (stats.sample_energy_j > 0).all()


def test_a_diverging_relaxation_keeps_the_last_finite_state_and_warns():
    model = _model(activation="identity", relaxation=RelaxationOptions(max_tau=200.0))
    with torch.no_grad():
        model.core.feedback.weight.copy_(10 * torch.eye(6, dtype=F64))  # τ ż = 9 z + u
    x = torch.randn(2, 5, generator=_gen(3), dtype=F64)
    with pytest.warns(RuntimeWarning, match="diverged for 2 of 2 samples"):
        y = model(x)
    stats = model.last_forward_stats
    assert stats.reason == "diverged" and stats.diverged_samples == 2
    assert not stats.converged and math.isinf(stats.settling_time_s)
    assert torch.isfinite(model.last_state).all()
    assert not torch.isnan(y).any()


def _linear_model(gamma: float) -> HybridDEQ:
    """``f(z, u) = γ z + u`` (identity activation, ``W = γ I``), stop at a relative change
    below 1e-6 per τ, noise-free."""
    model = build_hybrid_deq(
        5,
        3,
        IDEAL,
        width=4,
        activation="identity",
        contraction=0.99,
        digital_bits=None,
        forward_options=SolverOptions(tol=1e-6, mode="relative"),
        forward="relaxation",
        relaxation=RelaxationOptions(steps_per_tau=10, max_tau=2000.0),
    ).double()
    with torch.no_grad():
        model.core.feedback.weight.copy_(gamma * torch.eye(4, dtype=F64))
    return model


def _expected_windows(gamma: float, steps: int, tol: float) -> int:
    """First τ window ``m`` whose relative change of ``z_k = z*(1 − ρ^k)``,
    ``ρ = 1 − (1 − γ) / steps``, falls below ``tol``: the exact Euler recursion."""
    rho = 1 - (1 - gamma) / steps

    def change(m: int) -> float:
        return rho ** ((m - 1) * steps) * (1 - rho**steps) / (1 - rho ** (m * steps))

    return next(m for m in range(1, 100_000) if change(m) < tol)


def test_settling_time_grows_as_the_contraction_margin_shrinks_and_energy_with_it():
    x = torch.randn(3, 5, generator=_gen(4), dtype=F64)
    times, energies = [], []
    for gamma in (0.5, 0.8, 0.9, 0.95):
        model = _linear_model(gamma).eval()
        with torch.no_grad():
            model(x)
        stats = model.last_forward_stats
        expected = _expected_windows(gamma, 10, 1e-6) * TAU
        assert stats.converged and stats.sample_settled.all()
        torch.testing.assert_close(
            stats.sample_settling_time_s, torch.full((3,), expected, dtype=F64), rtol=1e-12, atol=0
        )
        torch.testing.assert_close(stats.sample_duration_s, stats.sample_settling_time_s)
        reference = estimate_dynamics(model.core.feedback.weight.detach(), IDEAL, expected)
        torch.testing.assert_close(
            stats.sample_energy_j,
            torch.full((3,), reference.energy_j, dtype=F64),
            rtol=1e-12,
            atol=0,
        )
        times.append(expected)
        energies.append(float(stats.sample_energy_j[0]))
    assert all(0 < a < b for a, b in itertools.pairwise(times))
    # The continuous-time relaxation z(t) = z*(1 − exp(−δ t / τ)), δ = 1 − γ, changes by
    # exp(−δ (m − 1)) (1 − exp(−δ)) over window m: it settles after m τ with
    # m δ ≈ δ + ln((1 − exp(−δ)) / tol), about ln(1/tol) / δ windows — up to the Euler step
    # and the window granularity.
    for gamma, t in zip((0.5, 0.8, 0.9, 0.95), times, strict=True):
        delta = 1 - gamma
        continuous = delta + math.log((1 - math.exp(-delta)) / 1e-6)
        assert t * delta / TAU == pytest.approx(continuous, rel=0.05)
    # E(T) = P T + read-out: affine in the time with a positive slope (the power)
    assert all(math.isfinite(e) and e > 0 for e in energies)
    slopes = [
        (e - energies[0]) / (t - times[0]) for e, t in zip(energies[1:], times[1:], strict=True)
    ]
    assert min(slopes) > 0
    assert slopes == pytest.approx([slopes[0]] * len(slopes), rel=1e-9)


def test_each_sample_is_read_out_at_its_own_settling_time():
    model = _model(tol=1e-8, contraction=0.9).eval()
    weak, strong = torch.randn(2, 2, 5, generator=_gen(5), dtype=F64)
    x = torch.cat([0.01 * weak, 5 * strong])  # near-linear vs saturated samples
    with torch.no_grad():
        model(x)
        together = model.last_forward_stats
        z_together = model.last_state
        alone = []
        for i in range(len(x)):
            model(x[i : i + 1])
            alone.append((model.last_state, model.last_forward_stats.sample_settling_time_s))
    # the same relaxation per sample, up to the rounding of a batched product
    torch.testing.assert_close(z_together, torch.cat([z for z, _ in alone]), rtol=0, atol=1e-15)
    torch.testing.assert_close(
        together.sample_settling_time_s, torch.cat([t for _, t in alone]), rtol=0, atol=0
    )
    assert together.sample_settling_time_s.unique().numel() > 1
    assert together.settling_time_s == float(together.sample_settling_time_s.max())


def test_relaxation_forward_draws_read_noise_in_training_and_is_exact_in_eval():
    model = build_hybrid_deq(5, 3, PCM, width=6, forward="relaxation", seed=3)
    layer = model.core.feedback
    x = torch.randn(4, 5, generator=_gen(6))
    with torch.no_grad():
        model.train()
        first, second = model(x), model(x)
        model.eval()
        third, fourth = model(x), model(x)
    assert not torch.equal(first, second)
    torch.testing.assert_close(third, fourth, rtol=0, atol=0)
    assert layer.profile is PCM and layer.chip_read is None  # the layer is left as it was


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian classes in 5-D around fixed centres (a tiny generated task)."""
    g = _gen(seed)
    centres = 2.0 * torch.randn(3, 5, generator=_gen(100))
    y = torch.randint(0, 3, (n,), generator=g)
    return centres[y] + torch.randn(n, 5, generator=g), y


def test_training_with_the_relaxation_forward_lowers_the_loss():
    x, y = _blobs(192, 7)
    model = build_hybrid_deq(5, 3, PCM, width=8, forward="relaxation", seed=4)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x), y))

    before = eval_loss()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # every relaxation settles
        history = train_hybrid(model, x, y, "classification", epochs=6, lr=2e-2, batch_size=64)
    assert eval_loss() < 0.7 * before
    assert history[-1]["loss"] < history[0]["loss"]
    assert model.core.contraction_bound() <= 0.9 + 1e-6


def test_evaluation_on_chips_reports_settling_time_and_energy_per_sample():
    x, y = _blobs(64, 8)
    model = build_hybrid_deq(5, 3, PCM, width=8, forward="relaxation", seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        record = evaluate_hybrid(model, x, y, "classification", n_chips=2, time_s=3600.0)
    for key in ("settling_time_s", "energy_j"):
        assert math.isfinite(record[key]) and record[key] > 0
        assert record[f"{key}_std"] >= 0
    assert 0 <= record["below_tol_fraction"] <= 1 and 0 <= record["unsettled_fraction"] <= 1
    solver = build_hybrid_deq(5, 3, PCM, width=8, seed=5)
    assert "settling_time_s" not in evaluate_hybrid(solver, x, y, "classification", n_chips=1)


def test_with_forward_copies_the_model_and_leaves_the_original_alone():
    model = _model(tol=1e-12)
    twin = model.with_forward("solver")
    assert (model.forward_mode, twin.forward_mode) == ("relaxation", "solver")
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name
    x = torch.randn(3, 5, generator=_gen(9), dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=1e-10)
    assert isinstance(model.last_forward_stats, RelaxationStats)
    assert not isinstance(twin.last_forward_stats, RelaxationStats)
    with pytest.raises(ValueError, match="forward='newton'"):
        model.with_forward("newton")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"forward": "newton"}, ValueError, "forward='newton'"),
        ({"relaxation": RelaxationOptions()}, ValueError, "forward='relaxation' only"),
        ({"forward": "relaxation", "relaxation": {"max_tau": 3}}, TypeError, "RelaxationOptions"),
    ],
)
def test_hybrid_rejects_bad_forward_settings_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        build_hybrid_deq(5, 3, IDEAL, width=4, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps_per_tau": 1}, "steps_per_tau=1"),
        ({"max_tau": 0.0}, "max_tau=0.0"),
        ({"max_tau": math.inf}, "max_tau=inf"),
    ],
)
def test_relaxation_options_are_checked_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RelaxationOptions(**kwargs)


def test_the_iterative_energy_regulariser_is_refused_for_a_relaxation_forward():
    model = build_hybrid_deq(5, 3, IDEAL, width=4, forward="relaxation")
    loss = DEQLoss("classification", RegularizerWeights(energy=1.0))
    with pytest.raises(ValueError, match="forward='relaxation'"):
        loss(model, torch.randn(2, 5), torch.tensor([0, 1]))


def test_a_study_trains_and_scores_the_relaxation_arm(tmp_path):
    config = complete_config(
        {
            "name": "tiny-relaxation",
            "task": "linear",
            "n_train": 64,
            "n_test": 32,
            "model": {"width": 6, "max_tau": 100},
            "train": {"epochs": 1, "batch_size": 32},
            "arms": ["physics-aware", "relaxation"],
            "eval": {"chips": 2, "time_s": 0.0},
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = run_deq_study(config, tmp_path)
    assert "Arm `relaxation`" in report and "relaxation (1 cells)" in report
    record = (tmp_path / "summary.json").read_text()
    assert '"settling_time_s"' in record and '"energy_j"' in record


def test_the_traced_energy_estimate_refuses_a_relaxation_forward():
    """Euler steps are not crossbar reads: counting them would be a wrong number."""
    from analogtorch.energy import estimate

    model = _model()
    with pytest.raises(ValueError, match="settles its core by relaxation"):
        estimate(model, input_shape=(5,))
    assert estimate(model.with_forward("solver"), input_shape=(5,))
