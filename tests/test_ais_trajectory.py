"""`ais.trajectory`: committed share and the coupling/local split of the drift, against
closed-form trajectories (uncoupled rotors) and a direct evaluation of the coupling term."""

from __future__ import annotations

import pytest
import torch

from analogtorch.ais.ising import IsingAIS
from analogtorch.ais.oscillators import OscillatorAIS
from analogtorch.ais.trajectory import plot_profiles, profile_trajectory


def test_uncoupled_rotors_match_their_closed_form():
    """J = 0, b = k = 0: θ_i(t) = θ_i(0) + ω_i t exactly, so the coupling term is 0, the local
    term is mean |ω_i| at every step, and the committed share is that of the pixels
    (1 − cos θ(t)) / 2 computed from the closed form."""
    model = OscillatorAIS(
        (1, 3, 4), n_hidden=2, segments=2, steps_per_segment=3, dt=0.2, omega_max=3.0
    )
    model = model.double()
    omega = torch.linspace(-2.0, 2.0, model.n_units, dtype=torch.float64)
    model.omega.set_values(omega)
    model.couplings.assign(torch.zeros(model.n_units, model.n_units))
    profile = profile_trajectory(model, n=50, seed=5, tolerance=0.1)
    theta0 = model.sample_latent(50, torch.Generator().manual_seed(5))
    assert len(profile.time_s) == model.n_steps + 1
    for step, t_s in enumerate(profile.time_s):
        t = step * model.dt
        assert t_s == pytest.approx(t * 1e-9)
        pixels = 0.5 * (1 - torch.cos(theta0 + omega * t))[:, :12]
        expected = (torch.minimum(pixels, 1 - pixels) <= 0.1).double().mean().item()
        assert profile.committed[step] == pytest.approx(expected)
        assert profile.coupling[step] == 0.0
        assert profile.local[step] == pytest.approx(omega[:12].abs().mean().item())


def test_ising_coupling_term_at_the_start_is_g_times_j_x():
    """At t = 0 the coupling part of the Ising drift is g_0 (J x(0))_i on the visible units,
    evaluated here directly from the latent the profile draws; the local part is the rest,
    |−x³ + (p_0 − 1) x + h_0|."""
    model = IsingAIS((1, 2, 2), n_hidden=1, segments=2, steps_per_segment=2, dt=0.1).double()
    coupling = torch.tensor(
        [
            [0, 0.5, 0, 0, 0.3],
            [0.5, 0, 0.2, 0, 0],
            [0, 0.2, 0, -0.4, 0],
            [0, 0, -0.4, 0, 0.6],
            [0.3, 0, 0, 0.6, 0],
        ],
        dtype=torch.float64,
    )
    model.couplings.assign(coupling)
    profile = profile_trajectory(model, n=8, seed=2)
    x0 = model.sample_latent(8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        gain, pump, bias = model.gains()[0], model.pump()[0], model.bias()[0]
        expected_coupling = (gain * x0 @ coupling.T)[:, :4].abs().mean().item()
        local = -(x0**3) + (pump - 1) * x0 + bias
    assert profile.coupling[0] == pytest.approx(expected_coupling, rel=1e-9)
    assert profile.local[0] == pytest.approx(local[:, :4].abs().mean().item(), rel=1e-9)
    assert profile.committed[0] == 0.0  # |x(0)| ~ 0.1: every pixel near 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"n": 0}, "n=0"), ({"tolerance": 0.5}, "tolerance=0.5")]
)
def test_bad_arguments_are_refused(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        profile_trajectory(OscillatorAIS((1, 2, 2)), **kwargs)


def test_plot_writes_one_png_for_several_profiles(tmp_path):
    model = OscillatorAIS((1, 2, 2), n_hidden=1, steps_per_segment=2)
    profile = profile_trajectory(model, n=4)
    path = plot_profiles({"a": profile, "b": profile}, tmp_path / "d.png", "test")
    assert path.exists() and path.stat().st_size > 1000
