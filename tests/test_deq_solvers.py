"""Fixed-point solvers: damped iteration, Anderson, Broyden — one contract, ``solve(f, z0,
options) -> (z, stats)``, checked against exact linear solves and against each other."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from analogtorch.deq import anderson, broyden, fixed_point
from analogtorch.deq.anderson import _anderson_step
from analogtorch.deq.options import SolverOptions, SolverStats
from analogtorch.deq.residual import NoiseFloorDetector, finite_rows, is_finite, residual_norm

SOLVERS = {"fixed_point": fixed_point.solve, "anderson": anderson.solve, "broyden": broyden.solve}
ALL = pytest.mark.parametrize("name", list(SOLVERS))
BATCH, DIM, NORM = 8, 32, 0.9


def contractive_affine(kind="nonnormal", dtype=torch.float64, seed=0, device="cpu"):
    """Per-sample ``A`` (batch, n, n) with ‖A‖₂ = 0.9 exactly, and ``b`` (batch, n).

    ``nonnormal``: U diag(s) Vᵀ with independent orthogonal U, V; ``symmetric``: Q diag(s) Qᵀ
    with s in [0, 0.9], where plain iteration contracts at exactly 0.9 per step.
    """
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(BATCH, DIM, DIM, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(BATCH, DIM, DIM, generator=gen, dtype=torch.float64))
    if kind == "nonnormal":
        s = torch.linspace(NORM, 0.1, DIM, dtype=torch.float64)
    else:
        s = torch.linspace(NORM, 0.0, DIM, dtype=torch.float64)
        v = u
    a = u @ torch.diag_embed(s.expand(BATCH, DIM)) @ v.transpose(1, 2)
    b = torch.randn(BATCH, DIM, generator=gen, dtype=torch.float64)
    return a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)


def affine_map(a, b):
    return lambda z: torch.einsum("bij,bj->bi", a, z) + b


def exact_fixed_point(a, b):
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    return torch.linalg.solve(eye - a, b)


def assert_trace_consistent(stats: SolverStats):
    assert isinstance(stats, SolverStats)
    assert len(stats.residuals) == stats.iterations
    assert stats.wall_time_s > 0
    assert stats.converged == (stats.reason == "converged")


@ALL
@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_affine_fixed_point_matches_linear_solve(name, mode):
    a, b = contractive_affine()
    tol = 1e-10
    options = SolverOptions(tol=tol, mode=mode, max_iter=500)
    z, stats = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    assert_trace_consistent(stats)
    assert stats.converged and stats.reason == "converged"
    assert stats.final_residual < tol
    z_star = exact_fixed_point(a, b)
    # ‖z − z*‖ ≤ ‖(I − A)⁻¹‖₂ ‖f(z) − z‖ ≤ residual / (1 − ‖A‖₂)
    scale = 1.0 if mode == "absolute" else torch.linalg.vector_norm(z_star, dim=-1).max()
    error = torch.linalg.vector_norm(z - z_star, dim=-1).max()
    assert error <= 1.01 * tol * scale / (1 - NORM)


@pytest.mark.parametrize("kind", ["symmetric", "nonnormal"])
def test_anderson_and_broyden_need_fewer_iterations_than_plain(kind):
    a, b = contractive_affine(kind)
    options = SolverOptions(tol=1e-10, mode="absolute", max_iter=1000)
    counts = {}
    for name, solve in SOLVERS.items():
        _, stats = solve(affine_map(a, b), torch.zeros_like(b), options)
        assert stats.converged, name
        counts[name] = stats.iterations
    print(f"{kind}: iterations to 1e-10 {counts}")
    assert counts["anderson"] < counts["fixed_point"]
    assert counts["broyden"] < counts["fixed_point"]


@ALL
def test_absolute_and_relative_tolerance_are_both_honoured(name):
    a, b = contractive_affine()
    solve, tol = SOLVERS[name], 1e-8
    iterations, results = {}, {}
    for scale in (1.0, 1e3):
        f = affine_map(a, scale * b)
        for mode in ("absolute", "relative"):
            options = SolverOptions(tol=tol, mode=mode, max_iter=500)
            z, stats = solve(f, torch.zeros_like(b), options)
            assert stats.converged
            iterations[scale, mode] = stats.iterations
            results[scale, mode] = residual_norm(f(z), z, mode).max().item(), f(z) - z
    print(f"{name}: {iterations}")
    # The relative residual is scale free: scaling b (hence z*, from z0 = 0) changes nothing.
    assert iterations[1e3, "relative"] == iterations[1.0, "relative"]
    # The absolute residual grows with the scale, so it takes more iterations to reach tol.
    assert iterations[1e3, "absolute"] > iterations[1.0, "absolute"]
    for key, (residual, _) in results.items():
        assert residual < tol, key
    # The relative stop of the scaled problem does not meet the absolute criterion.
    step = results[1e3, "relative"][1]
    assert torch.linalg.vector_norm(step, dim=-1).max() > tol


@ALL
def test_stochastic_map_stops_at_noise_floor(name):
    a, b = contractive_affine()
    sigma = 1e-3
    gen = torch.Generator().manual_seed(1)

    def noisy(z):  # fresh read noise on every evaluation
        return affine_map(a, b)(z) + sigma * torch.randn(z.shape, generator=gen, dtype=z.dtype)

    options = SolverOptions(tol=1e-12, mode="absolute", max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a noise floor is a reported outcome, not a warning
        z, stats = SOLVERS[name](noisy, torch.zeros_like(b), options)
    print(f"{name}: noise floor after {stats.iterations} iterations")
    assert_trace_consistent(stats)
    assert stats.reason == "noise floor" and not stats.converged
    assert stats.iterations < 100
    assert min(stats.residuals) < 10 * sigma * math.sqrt(DIM)
    error = torch.linalg.vector_norm(z - exact_fixed_point(a, b), dim=-1).max()
    assert error < 10 * sigma * math.sqrt(DIM)


@ALL
def test_map_returning_nan_stops_as_diverged_with_finite_iterate(name):
    a, b = contractive_affine()
    calls = 0

    def breaks_after_three(z):
        nonlocal calls
        calls += 1
        fz = affine_map(a, b)(z)
        return fz if calls <= 3 else torch.full_like(fz, math.nan)

    with pytest.warns(RuntimeWarning, match=rf"{name}: .*NaN.*diverged"):
        z, stats = SOLVERS[name](breaks_after_three, torch.zeros_like(b), SolverOptions())
    assert_trace_consistent(stats)
    assert stats.reason == "diverged" and not stats.converged
    assert stats.iterations == 4 and stats.residuals[-1] == math.inf
    assert torch.isfinite(z).all()
    assert z.shape == b.shape


@ALL
def test_max_iter_warns_and_returns_best_iterate(name):
    a, b = contractive_affine()
    f = affine_map(a, b)
    options = SolverOptions(tol=1e-14, mode="absolute", max_iter=7)
    with pytest.warns(RuntimeWarning, match=rf"{name}: not converged .*max_iter=7.*tol"):
        z, stats = SOLVERS[name](f, torch.zeros_like(b), options)
    assert_trace_consistent(stats)
    assert stats.reason == "max_iter" and stats.iterations == 7
    returned = residual_norm(f(z), z, "absolute").max().item()
    assert returned == pytest.approx(min(stats.residuals), rel=1e-12)


@ALL
def test_nonlinear_tanh_map_agrees_across_solvers(name):
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(DIM, DIM, generator=gen, dtype=torch.float64)
    w = 0.8 * w / torch.linalg.matrix_norm(w, ord=2)
    x = torch.randn(BATCH, DIM, generator=gen, dtype=torch.float64)

    def f(z):
        return torch.tanh(z @ w.T + x)

    options = SolverOptions(tol=1e-10, mode="absolute", max_iter=200)
    z_ref, _ = fixed_point.solve(f, torch.zeros_like(x), options)
    z, stats = SOLVERS[name](f, torch.zeros_like(x), options)
    assert stats.converged
    torch.testing.assert_close(z, z_ref, atol=1e-6, rtol=0)


@ALL
def test_multidimensional_state_keeps_its_shape(name):
    gen = torch.Generator().manual_seed(4)
    m = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    m = m / torch.linalg.matrix_norm(m, ord=2)
    x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)

    def f(z):  # (batch, 4, 5) -> (batch, 4, 5), 0.5-Lipschitz
        return 0.5 * torch.tanh(z @ m) + x

    options = SolverOptions(tol=1e-10, mode="absolute")
    z, stats = SOLVERS[name](f, torch.zeros_like(x), options)
    assert stats.converged and z.shape == (3, 4, 5)
    torch.testing.assert_close(f(z), z, atol=1e-9, rtol=0)


@ALL
def test_float32_solves_in_float32(name):
    a, b = contractive_affine(dtype=torch.float32)
    options = SolverOptions(tol=1e-5, mode="relative", max_iter=200)
    z, stats = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    assert stats.converged and z.dtype == torch.float32
    a64, b64 = contractive_affine()
    z_star = exact_fixed_point(a64, b64)
    error = torch.linalg.vector_norm(z.double() - z_star, dim=-1) / z_star.norm(dim=-1)
    assert error.max() < 1e-5 / (1 - NORM)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@ALL
def test_solves_on_cuda(name):
    a, b = contractive_affine(dtype=torch.float32, device="cuda")
    options = SolverOptions(tol=1e-5, mode="relative", max_iter=200)
    z, stats = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    assert stats.converged and z.device.type == "cuda"


@ALL
def test_damped_iteration_converges(name):
    a, b = contractive_affine("symmetric")
    options = SolverOptions(tol=1e-10, mode="absolute", max_iter=1000, damping=0.5)
    z, stats = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    assert stats.converged
    torch.testing.assert_close(z, exact_fixed_point(a, b), atol=1e-8, rtol=0)


@ALL
def test_sample_already_at_its_fixed_point_does_not_break_the_batch(name):
    # Sample 0 sits at its fixed point from the start: all its differences are zero, so
    # Anderson's Gram system is singular and Broyden's denominator is zero for it.
    a, b = contractive_affine()
    b[0] = 0
    options = SolverOptions(tol=1e-10, mode="absolute", max_iter=500, regularization=0.0)
    z, stats = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    assert stats.converged
    assert torch.equal(z[0], torch.zeros_like(z[0]))
    torch.testing.assert_close(z, exact_fixed_point(a, b), atol=1e-8, rtol=0)


def test_anderson_step_falls_back_to_damped_step_when_gram_is_singular():
    gen = torch.Generator().manual_seed(5)
    z, g = torch.randn(2, 6, generator=gen), torch.randn(2, 6, generator=gen)
    dz, dg = torch.randn(2, 3, 6, generator=gen), torch.randn(2, 3, 6, generator=gen)
    dg[1] = 0  # sample 1: zero Gram matrix, singular without regularisation
    step = _anderson_step(z, g, dz, dg, beta=0.7, regularization=0.0)
    assert torch.isfinite(step).all()
    torch.testing.assert_close(step[1], z[1] + 0.7 * g[1])
    assert not torch.allclose(step[0], z[0] + 0.7 * g[0])


def test_noise_floor_detector_needs_patience_stalled_iterations():
    detector = NoiseFloorDetector(patience=3, ratio=0.9)
    assert not any(detector.update(r) for r in (1.0, 0.5, 0.25))  # falling fast
    assert not detector.update(0.24) and not detector.update(0.23)  # stalled twice
    assert not detector.update(0.2)  # 0.2 < 0.9 * 0.25: progress resets the count
    assert [detector.update(r) for r in (0.19, 0.185, 0.181)] == [False, False, True]


def test_noise_floor_detection_can_be_switched_off():
    a, b = contractive_affine()
    gen = torch.Generator().manual_seed(1)

    def noisy(z):
        return affine_map(a, b)(z) + 1e-3 * torch.randn(z.shape, generator=gen, dtype=z.dtype)

    options = SolverOptions(tol=1e-12, max_iter=60, detect_noise_floor=False)
    with pytest.warns(RuntimeWarning, match="max_iter=60"):
        _, stats = fixed_point.solve(noisy, torch.zeros_like(b), options)
    assert stats.reason == "max_iter" and stats.iterations == 60


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tol", 0.0),
        ("mode", "l2"),
        ("max_iter", 0),
        ("damping", 0.0),
        ("damping", 1.5),
        ("memory", 0),
        ("regularization", -1.0),
        ("noise_floor_patience", 0),
        ("noise_floor_ratio", 1.0),
    ],
)
def test_invalid_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SolverOptions(**{field: value})


@ALL
def test_invalid_inputs_are_rejected(name):
    solve = SOLVERS[name]
    z0 = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="options"):
        solve(lambda z: z, z0, {"tol": 1e-3})
    with pytest.raises(TypeError, match="floating"):
        solve(lambda z: z, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        solve(lambda z: z, torch.full((2, 3), math.nan))
    with pytest.raises(ValueError, match=r"shape of z0"):
        solve(lambda z: z.sum(-1), z0)


def _reference_anderson(f, z0, memory, beta, iterations, regularization):
    """Textbook type-II Anderson (Walker and Ni 2011), written independently of the solver:
    chronological history, one least-squares problem per sample and step solved by
    ``torch.linalg.lstsq`` on the Tikhonov-augmented system
    ``[dG; sqrt(lam s) I] gamma ~ [g; 0]`` (``s`` the mean squared column norm of ``dG``),
    then ``z+ = z + beta g - (dZ + beta dG) gamma``. Returns the iterates f was evaluated at."""
    z, seen, zs, gs = z0, [], [], []
    for _ in range(iterations):
        seen.append(z)
        g = f(z) - z
        zs, gs = [*zs, z][-(memory + 1) :], [*gs, g][-(memory + 1) :]
        if len(zs) == 1:
            z = z + beta * g
            continue
        steps = []
        for b in range(len(z)):
            dz = torch.stack([q[b] - p[b] for p, q in itertools.pairwise(zs)], dim=1)  # (n, k)
            dg = torch.stack([q[b] - p[b] for p, q in itertools.pairwise(gs)], dim=1)
            k = dg.shape[1]
            lam = max(regularization, torch.finfo(z.dtype).eps) * dg.square().sum(0).mean()
            system = torch.cat([dg, lam.sqrt() * torch.eye(k, dtype=z.dtype)])
            target = torch.cat([g[b], torch.zeros(k, dtype=z.dtype)])
            gamma = torch.linalg.lstsq(system, target.unsqueeze(1)).solution.squeeze(1)
            steps.append(z[b] + beta * g[b] - (dz + beta * dg) @ gamma)
        z = torch.stack(steps)
    return seen


@pytest.mark.parametrize(("memory", "damping"), [(3, 1.0), (3, 0.6), (5, 1.0)])
def test_anderson_iterates_match_the_textbook_algorithm(memory, damping):
    # The solver keeps ring buffers and updates the Gram matrix one row/column at a time;
    # it must take the same steps as rebuilding everything from the history (memory 3 over
    # 14 iterations wraps the ring buffer several times).
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(DIM, DIM, generator=gen, dtype=torch.float64)
    w = 0.95 * w / torch.linalg.matrix_norm(w, ord=2)
    x = torch.randn(BATCH, DIM, generator=gen, dtype=torch.float64)
    seen = []

    def f(z):
        seen.append(z.clone())
        return torch.tanh(z @ w.T + x)

    iterations = 14
    options = SolverOptions(
        tol=1e-30, max_iter=iterations, memory=memory, damping=damping, detect_noise_floor=False
    )
    with pytest.warns(RuntimeWarning, match="max_iter"):
        anderson.solve(f, torch.zeros_like(x), options)
    reference = _reference_anderson(
        lambda z: torch.tanh(z @ w.T + x),
        torch.zeros_like(x),
        memory,
        damping,
        iterations,
        options.regularization,
    )
    assert len(seen) == len(reference) == iterations
    for t, (ours, theirs) in enumerate(zip(seen, reference, strict=True)):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12, msg=f"iterate {t}")


@ALL
def test_map_that_reuses_its_output_buffer(name):
    # A map may return the same tensor every call (e.g. a static output buffer, as with
    # CUDA graphs); a solver must copy what it keeps, not hold on to f's output.
    a, b = contractive_affine()
    buffer = torch.empty_like(b)

    def reusing(z):
        return torch.add(torch.einsum("bij,bj->bi", a, z), b, out=buffer)

    options = SolverOptions(tol=1e-10, mode="absolute", max_iter=500)
    z_ref, stats_ref = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    z, stats = SOLVERS[name](reusing, torch.zeros_like(b), options)
    assert stats.converged and stats.iterations == stats_ref.iterations
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-12)


@ALL
def test_result_never_aliases_the_starting_point(name):
    z0 = torch.zeros(BATCH, DIM, dtype=torch.float64)  # already the fixed point of 0.5 z
    z, stats = SOLVERS[name](lambda z: 0.5 * z, z0, SolverOptions())
    assert stats.converged and stats.iterations == 1
    z0.fill_(1.0)
    assert torch.equal(z, torch.zeros_like(z))


@ALL
@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_residual_overflow_is_reported_as_diverged(name, mode):
    # Finite values whose norm overflows float32: not "the map returned NaN/inf".
    def huge(z):
        return torch.full_like(z, 3e38)

    with pytest.warns(RuntimeWarning, match=rf"{name}: the residual overflowed.*diverged"):
        z, stats = SOLVERS[name](huge, torch.zeros(2, 8), SolverOptions(mode=mode))
    assert stats.reason == "diverged" and stats.iterations == 1
    assert torch.equal(z, torch.zeros(2, 8))


def test_finiteness_checks_are_exact():
    x = torch.ones(4, 8)
    x[1] = 3e38  # finite entries whose sum overflows
    x[2, 3] = math.inf
    x[3, 5] = math.nan
    assert finite_rows(x).tolist() == [True, True, False, False]
    assert finite_rows(x[:2]).tolist() == [True, True]
    assert is_finite(x[:2]) and not is_finite(x) and not is_finite(x[2:3])
    assert is_finite(torch.zeros(0))


@ALL
def test_a_sample_whose_map_turns_nan_is_dropped_and_the_others_still_converge(name):
    # Sample 1's map value is NaN from the third evaluation on: it keeps its best finite
    # iterate, every other sample reaches the fixed point as if it were alone.
    a, b = contractive_affine()
    calls = 0

    def breaks_one_sample(z):
        nonlocal calls
        calls += 1
        fz = affine_map(a, b)(z)
        if calls >= 3:
            fz = fz.clone()
            fz[1] = math.nan
        return fz

    options = SolverOptions(tol=1e-10, mode="absolute", max_iter=200)
    with pytest.warns(RuntimeWarning, match=rf"{name}: the map returned NaN/inf for 1 of"):
        z, stats = SOLVERS[name](breaks_one_sample, torch.zeros_like(b), options)
    assert stats.reason == "diverged" and not stats.converged and stats.diverged_samples == 1
    assert torch.isfinite(z).all()
    others = [i for i in range(len(b)) if i != 1]
    exact = exact_fixed_point(a, b)
    assert torch.allclose(z[others], exact[others], atol=1e-8)
    alone, _ = SOLVERS[name](affine_map(a, b), torch.zeros_like(b), options)
    assert torch.allclose(z[others], alone[others], atol=1e-8)
