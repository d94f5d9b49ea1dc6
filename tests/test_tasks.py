"""Generated DEQ tasks, checked against independent references (exact solutions, invariants)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from analogtorch import data
from analogtorch.tasks import (
    TASKS,
    PendulumParams,
    TaskData,
    angle_to_top,
    burgers_equilibrium,
    central_difference_matrix,
    closed_loop,
    energy,
    expert_policy,
    expert_torque,
    heat_equilibrium,
    image_classification,
    laplacian_matrix,
    linear_system,
    load_imagenet32,
    lorenz_flow,
    lorenz_rhs,
    mackey_glass_forecast,
    mackey_glass_series,
    make_task,
    nonlinear_system,
    observation,
    pendulum_imitation,
    pendulum_step,
    rk4_integrate,
    solve_poisson,
    tanh_equilibrium,
)

F64 = torch.float64
SYNTHETIC = ("linear", "nonlinear", "lorenz", "heat", "burgers", "pendulum", "mackey-glass")
# Shorter simulations where the defaults would only cost time.
FAST = {"lorenz": {"burn_in": 4.0}, "pendulum": {"horizon": 2.0}, "mackey-glass": {"gap": 0}}


@pytest.fixture(autouse=True)
def isolated_data_roots(tmp_path, monkeypatch):
    """Keep image tests away from real datasets in ~/.cache and $ANALOGTORCH_DATA."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANALOGTORCH_DATA", raising=False)


def as64(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# --- registry, container, reproducibility ------------------------------------------------------


def test_registry_names_and_unknown_name():
    images = {"mnist", "fashion-mnist", "cifar10", "imagenet32"}
    assert set(SYNTHETIC) | images | {"maze"} == set(TASKS)
    with pytest.raises(ValueError, match=r"'nope'.*'heat'.*'mackey-glass'"):
        make_task("nope")


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_tasks_are_reproducible_and_serialisable(name):
    kwargs = FAST.get(name, {})
    first = make_task(name, n_train=24, n_test=8, seed=5, **kwargs)
    again = make_task(name, n_train=24, n_test=8, seed=5, **kwargs)
    other = make_task(name, n_train=24, n_test=8, seed=6, **kwargs)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, field), getattr(again, field))
        assert getattr(first, field).dtype == torch.float32
    assert not torch.equal(first.x_train, other.x_train)
    assert (len(first.x_train), len(first.x_test)) == (24, 8)
    assert first.kind == "regression" and first.name == name
    assert first.out_features == first.y_train[0].numel()
    json.dumps(first.info)


def test_task_error_and_features():
    x = torch.zeros(4, 2, 3)
    reg = TaskData("r", "regression", x, torch.ones(4, 5), x[:2], torch.ones(2, 5))
    assert (reg.in_features, reg.out_features) == (6, 5)
    target = as64([[3.0, 4.0]])
    assert reg.error(as64([[3.0, 1.0]]), target) == pytest.approx(3.0 / 5.0)
    labels = torch.tensor([0, 1, 2, 2])
    cls = TaskData("c", "classification", x, labels, x[:2], labels[:2], {"num_classes": 7})
    assert cls.out_features == 7
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 3).float()
    assert cls.error(logits, labels) == pytest.approx(50.0)
    assert cls.error(labels, labels) == 0.0
    with pytest.raises(ValueError, match="x_train"):
        TaskData("r", "regression", x, torch.ones(3, 5), x, torch.ones(4, 5))
    with pytest.raises(TypeError, match="int64"):
        TaskData("c", "classification", x, labels.float(), x, labels)


def test_argument_errors_name_the_parameter():
    with pytest.raises(ValueError, match="n_train=0"):
        linear_system(n_train=0)
    with pytest.raises(TypeError, match=r"n_test=2\.5"):
        linear_system(n_test=2.5)
    with pytest.raises(ValueError, match=r"spectral_norm=1\.2"):
        nonlinear_system(spectral_norm=1.2)
    with pytest.raises(ValueError, match=r"horizon=0\.1005"):
        lorenz_flow(8, 8, horizon=0.1005)
    with pytest.raises(ValueError, match="dtype"):
        heat_equilibrium(8, 8, dtype=torch.int32)


# --- equilibria --------------------------------------------------------------------------------


def test_linear_targets_are_equilibria_of_a_hurwitz_system():
    task = linear_system(64, 16, seed=3, dtype=F64)
    a, b = as64(task.info["A"]), as64(task.info["B"])
    assert torch.linalg.eigvals(a).real.max() < 0
    for x, z in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
        residual = z @ a.T + x @ b.T
        assert residual.abs().max() < 1e-10
    single = linear_system(64, 16, seed=3)
    torch.testing.assert_close(single.y_train, task.y_train.float(), rtol=1e-5, atol=1e-6)


def test_nonlinear_targets_are_fixed_points():
    task = nonlinear_system(64, 16, seed=2, dtype=F64)
    w, u, b = as64(task.info["W"]), as64(task.info["U"]), as64(task.info["b"])
    assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(0.8, rel=1e-12)
    z, x = task.y_train, task.x_train
    assert (z - torch.tanh(z @ w.T + x @ u.T + b)).abs().max() < 1e-8
    assert z.abs().max() > 0.1  # not a trivial zero target


@pytest.mark.parametrize("coupling", ["orthogonal", "symmetric"])
def test_strong_couplings_reach_their_norm_in_their_spectrum(coupling):
    task = nonlinear_system(32, 8, seed=4, state_dim=24, spectral_norm=0.95, coupling=coupling)
    w = as64(task.info["W"])
    singular = torch.linalg.svdvals(w)
    assert singular.max() == pytest.approx(0.95, rel=1e-12)
    radius = torch.linalg.eigvals(w).abs().max()
    assert radius == pytest.approx(0.95, rel=1e-9)  # a Gaussian W reaches only about half
    if coupling == "orthogonal":
        torch.testing.assert_close(singular, torch.full_like(singular, 0.95))
    else:
        torch.testing.assert_close(w, w.T)
        assert torch.linalg.eigvalsh(w).min() >= 0
    z, x = task.y_train.double(), task.x_train.double()
    u, b = as64(task.info["U"]), as64(task.info["b"])
    assert (z - torch.tanh(z @ w.T + x @ u.T + b)).abs().max() < 1e-5


def test_gaussian_coupling_is_the_default_and_keeps_its_data():
    default = nonlinear_system(16, 4, seed=2)
    named = nonlinear_system(16, 4, seed=2, coupling="gaussian")
    torch.testing.assert_close(named.y_train, default.y_train, rtol=0, atol=0)
    w = as64(default.info["W"])
    assert torch.linalg.eigvals(w).abs().max() < 0.7  # the feedback is weak in its spectrum
    with pytest.raises(ValueError, match="coupling='unitary'"):
        nonlinear_system(16, 4, coupling="unitary")


def test_fixed_point_iteration_reports_divergence():
    w = -3.0 * torch.eye(2, dtype=F64)  # |slope| ≈ 3 at the fixed point: period-2 oscillation
    with pytest.raises(RuntimeError, match="did not converge"):
        tanh_equilibrium(
            w,
            torch.eye(2, dtype=F64),
            torch.full((2,), 0.1, dtype=F64),
            torch.zeros(1, 2, dtype=F64),
            max_iter=200,
        )


# --- integrator and Lorenz ---------------------------------------------------------------------


def test_rk4_matches_exponential_decay_and_polynomials():
    y0 = as64([1.0, -2.0, 0.5])
    y1 = rk4_integrate(lambda y: -y, y0, 0.01, 100)
    torch.testing.assert_close(y1, y0 * math.exp(-1.0), rtol=1e-10, atol=0.0)
    path = rk4_integrate(lambda y: -y, y0, 0.1, 5, trajectory=True)
    assert path.shape == (6, 3) and torch.equal(path[0], y0)
    # non-autonomous form: RK4 integrates ẏ = 3t² exactly (quadrature of a cubic)
    assert rk4_integrate(lambda t, y: 3.0 * t**2, 0.0, 0.1, 10, t0=0.0) == pytest.approx(1.0)


def test_lorenz_fixed_points_stay_put():
    c = math.sqrt(8.0 / 3.0 * 27.0)
    points = as64([[c, c, 27.0], [-c, -c, 27.0], [0.0, 0.0, 0.0]])
    assert lorenz_rhs(points).abs().max() < 1e-12
    moved = rk4_integrate(lorenz_rhs, points, 0.01, 100)
    assert (moved - points).abs().max() < 1e-10


def test_lorenz_task_targets_and_normalisation():
    task = lorenz_flow(96, 32, seed=1, dtype=F64)
    mean, std = as64(task.info["mean"]), as64(task.info["std"])
    assert task.x_train.shape == task.y_train.shape == (96, 3)
    assert task.x_train.mean(0).abs().max() < 0.3
    assert ((task.x_train.std(0) - 1.0).abs() < 0.3).all()
    assert abs(mean[2].item() - 23.5) < 1.5 and ((std - 8.5).abs() < 1.5).all()  # attractor
    start, end = task.x_test * std + mean, task.y_test * std + mean
    reference = rk4_integrate(lorenz_rhs, start, 0.0005, 200)  # independent finer step
    assert ((reference - end).abs().max() / end.abs().max()) < 1e-8
    assert (end - start).abs().max() > 0.5  # the horizon really moves the state


# --- PDEs --------------------------------------------------------------------------------------


def test_poisson_exact_for_constant_source_and_discrete_sine():
    n, kappa = 15, 2.5
    x = torch.arange(1, n + 1, dtype=F64) / (n + 1)
    u = solve_poisson(torch.full((1, n), 3.0, dtype=F64), kappa)[0]
    torch.testing.assert_close(u, 3.0 * x * (1 - x) / (2 * kappa), rtol=1e-12, atol=1e-14)
    h = 1.0 / (n + 1)
    eigenvalue = 4.0 / h**2 * math.sin(math.pi * h / 2) ** 2  # of the FD second difference
    u = solve_poisson(torch.sin(math.pi * x)[None], kappa)[0]
    torch.testing.assert_close(
        u, torch.sin(math.pi * x) / (kappa * eigenvalue), rtol=1e-12, atol=1e-14
    )


def test_heat_task_solves_the_fd_system():
    task = heat_equilibrium(32, 8, seed=4, n_grid=20, kappa=0.7, dtype=F64)
    lap = laplacian_matrix(20, 0.7)
    residual = task.y_train @ lap.T - task.x_train
    assert residual.abs().max() < 1e-10 * task.x_train.abs().max()
    dense = torch.linalg.solve(lap, task.x_test.T).T
    torch.testing.assert_close(task.y_test, dense, rtol=1e-10, atol=1e-12)


def test_burgers_task_solves_the_nonlinear_fd_system():
    nu, n = 0.1, 24
    task = burgers_equilibrium(32, 8, seed=2, n_grid=n, nu=nu, dtype=F64)
    u, s = task.y_train, task.x_train
    dense = u @ laplacian_matrix(n, nu).T + u * (u @ central_difference_matrix(n).T) - s
    assert dense.abs().max() < 1e-8
    heat = solve_poisson(s, nu)
    assert (u - heat).abs().max() > 1e-3  # the nonlinearity matters
    weak = burgers_equilibrium(4, 4, seed=2, n_grid=n, nu=nu, amplitude=1e-4, dtype=F64)
    linear = solve_poisson(weak.x_train, nu)  # u u' is O(u²): negligible for a tiny source
    assert (weak.y_train - linear).abs().max() < 1e-3 * linear.abs().max()


# --- pendulum ----------------------------------------------------------------------------------


def test_pendulum_conserves_energy_without_damping_or_torque():
    params = PendulumParams(damping=0.0)
    state = as64([[0.3, 0.0], [2.5, 0.0], [0.0, 5.0]])
    e0 = energy(state, params)
    zero = torch.zeros(3, dtype=F64)
    for _ in range(1000):  # 10 s at dt = 0.01
        state = pendulum_step(state, zero, params, 0.01)
    assert ((energy(state, params) - e0).abs() / e0).max() < 1e-6


def test_expert_swings_up_and_holds_and_zero_policy_fails():
    params = PendulumParams()
    assert params.max_torque < params.mass * params.gravity * params.length  # needs pumping
    hanging = as64([[0.0, 0.0], [0.1, 0.0], [-0.2, 0.5]])
    result = closed_loop(expert_policy(params), params, hanging, steps=600, dt=0.02)
    assert result["success_rate"] == 1.0
    assert result["trajectory"].shape == (601, 3, 2)
    assert result["torque"].abs().max() <= params.max_torque
    zero = closed_loop(lambda obs: torch.zeros(len(obs)), params, hanging, steps=600, dt=0.02)
    assert zero["success_rate"] == 0.0
    assert zero["cost"] > result["cost"]
    rest = closed_loop(lambda obs: torch.zeros(len(obs)), params, hanging[:1], steps=50)
    assert rest["cost"] == pytest.approx(math.pi**2, rel=1e-12)  # φ = π, θ̇ = 0, u = 0
    bang = closed_loop(lambda obs: torch.full((len(obs), 1), 100.0), params, hanging, steps=5)
    assert torch.equal(bang["torque"], torch.full((5, 3), 2.0, dtype=F64))


def test_pendulum_imitation_labels_are_expert_torques():
    task = pendulum_imitation(64, 16, seed=3, dtype=F64)
    assert task.x_train.shape == (64, 3) and task.y_train.shape == (64, 1)
    cos, sin, omega = task.x_train.unbind(-1)
    torch.testing.assert_close(cos**2 + sin**2, torch.ones(64, dtype=F64))
    state = torch.stack((torch.atan2(sin, cos), omega), dim=-1)
    torch.testing.assert_close(task.y_train[:, 0], expert_torque(state, PendulumParams()))
    assert task.y_train.abs().max() <= 2.0
    torch.testing.assert_close(observation(state), task.x_train)
    assert angle_to_top(as64([math.pi + 0.1]))[0] == pytest.approx(0.1)


# --- Mackey–Glass ------------------------------------------------------------------------------


def test_mackey_glass_matches_exact_solution_over_first_delay():
    # With constant history x_h on [−τ, 0] the delayed term is constant for t ≤ τ:
    # x(t) = K/c + (x0 − K/c) e^{−ct}, K = 0.2 x_h / (1 + x_h^10), c = 0.1.
    xh = 1.1
    series = mackey_glass_series(18, tau=17.0, dt=0.1, burn_in=0.0, initial=xh)
    k = 0.2 * xh / (1 + xh**10)
    t = torch.arange(18, dtype=F64)
    torch.testing.assert_close(
        series, k / 0.1 + (xh - k / 0.1) * torch.exp(-0.1 * t), rtol=1e-10, atol=0.0
    )


def test_mackey_glass_windows_align_with_the_series():
    task = mackey_glass_forecast(40, 10, seed=7, window=12, horizon=3, dtype=F64)
    assert task.x_train.shape == (40, 12) and task.y_test.shape == (10, 3)
    info = task.info
    total = info["test_offset"] + 10 + 12 + 3 - 1
    series = (mackey_glass_series(total, 7) - info["mean"]) / info["std"]
    for i in (0, 17, 39):
        torch.testing.assert_close(task.x_train[i], series[i : i + 12], rtol=0, atol=1e-12)
        torch.testing.assert_close(task.y_train[i], series[i + 12 : i + 15], rtol=0, atol=1e-12)
    offset = info["test_offset"]
    torch.testing.assert_close(
        task.y_test[9], series[offset + 21 : offset + 24], rtol=0, atol=1e-12
    )
    torch.testing.assert_close(task.y_train[0], task.x_train[12, :3])
    assert 0.8 < series.std() < 1.25  # normalised, and chaotic rather than settled
    assert task.x_train.abs().max() < 5


# --- images ------------------------------------------------------------------------------------


def write_fake_imagenet32(directory, per_batch=2):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, 11):
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(1, 1001, per_batch).tolist()
        np.savez(directory / f"train_data_batch_{i}.npz", data=pixels, labels=labels)
    pixels = np.zeros((2, 3072), dtype=np.uint8)
    pixels[0, 1 * 1024 + 2 * 32 + 3] = 255  # green channel, row 2, column 3
    np.savez(directory / "val_data.npz", data=pixels, labels=[1, 1000])


def test_load_imagenet32_reads_chw_npz_batches(tmp_path):
    write_fake_imagenet32(tmp_path / "imagenet32")
    val = load_imagenet32(tmp_path, "val")
    assert val.images.shape == (2, 3, 32, 32) and val.images.dtype == torch.float32
    assert val.labels.tolist() == [0, 999]
    assert val.images[0, 1, 2, 3] == 1.0 and val.images.sum() == 1.0
    train = load_imagenet32(tmp_path, "train")
    assert train.images.shape == (20, 3, 32, 32) and train.labels.min() >= 0
    assert len(load_imagenet32(tmp_path, "train", batches=[3])) == 2
    assert make_task("imagenet32", data_dir=tmp_path, batches=[2, 5]).x_train.shape == (4, 3072)
    task = make_task("imagenet32", data_dir=tmp_path, n_train=12, seed=1)
    assert task.x_train.shape == (12, 3072) and task.x_test.shape == (2, 3072)
    assert task.out_features == 1000 and task.kind == "classification"
    channel_means = task.x_train.view(12, 3, -1).mean(dim=(0, 2))
    assert channel_means.abs().max() < 1e-5


def test_load_imagenet32_missing_files_explain_how_to_get_them(tmp_path):
    missing = tmp_path / "nothing"
    with pytest.raises(FileNotFoundError, match=r"val_data\.npz") as error:
        load_imagenet32(missing, "val")
    message = str(error.value)
    assert str(missing) in message and "image-net.org" in message and "terms" in message
    np.savez(tmp_path / "val_data.npz", data=np.zeros((1, 3072), np.uint8), labels=[0])
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        load_imagenet32(tmp_path, "val")


def test_image_classification_subsamples_and_normalises(monkeypatch):
    def fake_loader(name, split, data_dir=None, download=True):
        assert download is False and name == "cifar10"
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        count = 30 if split == "train" else 12
        images = torch.rand(count, 3, 4, 4, generator=gen)
        return data.Split(images, torch.arange(count) % 10)

    monkeypatch.setattr(data, "load_dataset", fake_loader)
    task = image_classification("cifar10", n_train=20, n_test=5, seed=3, flatten=False)
    assert task.x_train.shape == (20, 3, 4, 4) and task.y_test.shape == (5,)
    assert task.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert ((task.x_train.std(dim=(0, 2, 3)) - 1).abs() < 1e-4).all()
    again = make_task("cifar10", n_train=20, n_test=5, seed=3)
    torch.testing.assert_close(again.x_train, task.x_train.flatten(1))
    assert again.in_features == 48 and again.out_features == 10
    with pytest.raises(ValueError, match="n_train=31"):
        image_classification("cifar10", n_train=31)
    with pytest.raises(ValueError, match=r"'svhn'.*mnist"):
        image_classification("svhn")
