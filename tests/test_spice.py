"""SPICE backend: ngspice netlists of crossbar tiles against the exact nodal solve.

Units: conductances in siemens, voltages in volts, resistances in ohms, currents in amperes.
Random conductances are 1-50 µS (seeded); agreement is measured as
``max |I_spice - I_nodal| / max |I_nodal|`` in float64.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

if shutil.which("ngspice") is None:
    pytest.skip(
        "ngspice is not installed (apt-get install ngspice); the SPICE backend needs it",
        allow_module_level=True,
    )

from analogtorch.hardware.mapping import normalized_weights, split_differential, weight_scale
from analogtorch.hardware.nodal import effective_conductance_exact, solve_crossbar
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.hil.backend import Backend, BackendInputError
from analogtorch.hil.spice import (
    SpiceBackend,
    SpiceTile,
    build_netlist,
    characterize_tile,
    run_ngspice,
    simulate_tile,
)

G_LOW_SIEMENS, G_HIGH_SIEMENS = 1e-6, 50e-6
READ_VOLTS = 0.2


def _conductances(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(G_LOW_SIEMENS, G_HIGH_SIEMENS, (rows, cols))


def _voltages(batch: int, rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-READ_VOLTS, READ_VOLTS, (batch, rows))


def _rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _profile(wire_resistance_ohm: float) -> HardwareProfile:
    return HardwareProfile(wire_resistance_ohm=wire_resistance_ohm, v_read_volts=READ_VOLTS)


@pytest.mark.parametrize("wire_resistance_ohm", [0.5, 2.0])
def test_effective_conductance_matches_nodal_solve_16x12(wire_resistance_ohm: float) -> None:
    g = _conductances(16, 12, seed=1)
    g_eff = characterize_tile(g, wire_resistance_ohm)
    assert _rel_error(g_eff, effective_conductance_exact(g, wire_resistance_ohm)) < 1e-6


@pytest.mark.parametrize("wire_resistance_ohm", [0.5, 2.0])
def test_differential_currents_match_nodal_solve_16x12(wire_resistance_ohm: float) -> None:
    g_pos, g_neg = _conductances(16, 12, seed=2), _conductances(16, 12, seed=3)
    v = _voltages(3, 16, seed=4)
    currents = simulate_tile(g_pos, v, wire_resistance_ohm, g_neg=g_neg)
    expected = solve_crossbar(g_pos, v, wire_resistance_ohm) - solve_crossbar(
        g_neg, v, wire_resistance_ohm
    )
    assert _rel_error(currents, expected) < 1e-6


def test_currents_match_nodal_solve_64x64() -> None:
    g = _conductances(64, 64, seed=5)
    v = _voltages(2, 64, seed=6)
    resistances = [0.5, 2.0]
    with ThreadPoolExecutor(max_workers=2) as pool:  # one ngspice process per resistance
        currents = list(pool.map(lambda r: simulate_tile(g, v, r), resistances))
    for r, spice in zip(resistances, currents, strict=True):
        assert _rel_error(spice, solve_crossbar(g, v, r)) < 1e-6, f"r = {r} ohm"


def test_sub_milliohm_wires_are_impedance_scaled_not_clamped() -> None:
    # ngspice raises resistances below 1 mOhm to 1 mOhm; the netlist is scaled instead.
    g = _conductances(8, 6, seed=7)
    v = _voltages(2, 8, seed=8)
    tile = SpiceTile.from_conductances(g, 1e-5)
    assert tile.impedance_scale == pytest.approx(1e5)
    assert _rel_error(tile.simulate(v), solve_crossbar(g, v, 1e-5)) < 1e-6


def test_ideal_wires_give_v_times_g() -> None:
    g = _conductances(10, 7, seed=9)
    v = _voltages(4, 10, seed=10)
    netlist = build_netlist(g, v, 0.0)
    assert "rw" not in netlist and "rb" not in netlist  # no wire segments at all
    assert _rel_error(simulate_tile(g, v, 0.0), v @ g) < 1e-12
    assert _rel_error(simulate_tile(g, v[0], 0.0), v[0] @ g) < 1e-12  # one vector: (cols,)


def test_netlist_has_devices_wires_dacs_and_transimpedance_readout() -> None:
    g = _conductances(3, 2, seed=11)
    g[1, 1] = 0.0  # an absent device is an open circuit, not a resistor
    lines = build_netlist(g, np.ones(3), 2.0, feedback_ohm=1e3).splitlines()
    devices = [ln for ln in lines if ln.startswith("rd")]
    assert len(devices) == 5 and not any(ln.startswith("rd1_1 ") for ln in devices)
    assert len([ln for ln in lines if ln.startswith(("rw", "rb"))]) == 2 * 3 * 2
    assert len([ln for ln in lines if ln.startswith("bin")]) == 3
    assert "htia0 o0 0 vsense0 -1000" in lines and "vsense0 a0 0 dc 0" in lines
    assert "wrdata" in "\n".join(lines) and "set numdgt=17" in lines


def test_ngspice_failure_raises_with_its_message() -> None:
    with pytest.raises(RuntimeError, match=r"ngspice failed(.|\n)*q1 x y"):
        run_ngspice("bad deck\nq1 x y\n.end\n", (1, 1))


def test_backend_is_a_backend() -> None:
    assert isinstance(SpiceBackend(_profile(0.0)), Backend)


def test_backend_reproduces_x_wt_with_ideal_wires() -> None:
    backend = SpiceBackend(_profile(0.0), tile_rows=16, tile_cols=16)
    weight = torch.randn(20, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = 2.0 * torch.rand(5, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1
    readback = backend.program("fc", weight, input_range=1.0)
    torch.testing.assert_close(readback, weight, rtol=1e-12, atol=0.0)
    y = backend.mvm("fc", x)
    assert _rel_error(y.numpy(), (x @ weight.T).numpy()) < 1e-9
    assert backend.calls == 5


def test_backend_multi_tile_layer_matches_per_tile_nodal_reference() -> None:
    r = 1.5
    profile = _profile(r)
    backend = SpiceBackend(profile, tile_rows=32, tile_cols=32)
    weight = torch.randn(100, 70, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    input_range = 2.0
    x = input_range * (2 * torch.rand(4, 70, generator=torch.Generator().manual_seed(3)) - 1)
    backend.program("big", weight, input_range)
    y = backend.mvm("big", x.double()).numpy()

    # Reference assembled by hand: balanced tiles of 3 x 24 inputs (70 = 24+24+22) and
    # 4 x 25 outputs, each tile's G+ and G- solved exactly, partial currents added.
    scale = weight_scale(weight, profile)
    g_plus, g_minus = split_differential(normalized_weights(weight, scale, profile))
    g_pos = (profile.g_max_siemens * g_plus).T.numpy()
    g_neg = (profile.g_max_siemens * g_minus).T.numpy()
    v = READ_VOLTS * x.double().numpy() / input_range
    currents = np.zeros((4, 100))
    for r0 in range(0, 70, 24):
        for c0 in range(0, 100, 25):
            rows, cols = slice(r0, r0 + 24), slice(c0, c0 + 25)
            currents[:, cols] += solve_crossbar(g_pos[rows, cols], v[:, rows], r)
            currents[:, cols] -= solve_crossbar(g_neg[rows, cols], v[:, rows], r)
    expected = currents * scale[:, 0].numpy() * input_range / (profile.g_max_siemens * READ_VOLTS)
    assert _rel_error(y, expected) < 1e-6
    assert _rel_error(y, (x.double() @ weight.T).numpy()) > 1e-4  # IR drop is visible


def test_superposition_and_direct_modes_agree() -> None:
    weight = torch.randn(12, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = 2 * torch.rand(3, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64) - 1
    outputs = []
    for mode in ("superposition", "direct"):
        backend = SpiceBackend(_profile(2.0), mode=mode)
        backend.program("fc", weight, input_range=1.0)
        outputs.append(backend.mvm("fc", x).numpy())
    assert _rel_error(outputs[0], outputs[1]) < 1e-9


def test_float32_inputs_give_float32_outputs() -> None:
    backend = SpiceBackend(_profile(0.0))
    weight = torch.randn(4, 6, generator=torch.Generator().manual_seed(6))
    readback = backend.program("fc", weight, input_range=1.0)
    y = backend.mvm("fc", torch.full((2, 6), 0.5))
    assert readback.dtype == torch.float32 and y.dtype == torch.float32 and y.shape == (2, 4)


def test_inputs_beyond_input_range_raise_naming_the_layer() -> None:
    backend = SpiceBackend(_profile(0.0))
    backend.program("encoder.fc1", torch.ones(3, 4), input_range=1.0)
    with pytest.raises(BackendInputError, match=r"encoder\.fc1"):
        backend.mvm("encoder.fc1", torch.full((1, 4), 1.5))
    with pytest.raises(KeyError, match="never programmed"):
        backend.mvm("decoder", torch.zeros(1, 4))
    with pytest.raises(KeyError):
        backend.time_since_programming("decoder")


def test_programming_the_same_weights_twice_runs_ngspice_once() -> None:
    backend = SpiceBackend(_profile(1.0))
    weight = torch.randn(8, 10, generator=torch.Generator().manual_seed(7))
    backend.program("a", weight, input_range=1.0)
    runs = backend.ngspice_runs
    assert runs == 2  # one run for the G+ array, one for G-
    backend.program("b", weight, input_range=1.0)
    backend.mvm("a", torch.zeros(3, 10))
    assert backend.ngspice_runs == runs
    assert backend.time_since_programming("a") >= backend.time_since_programming("b") >= 0.0


def test_all_zero_arrays_are_not_simulated() -> None:
    backend = SpiceBackend(_profile(1.0))
    backend.program("relu_only", torch.rand(5, 6, generator=torch.Generator().manual_seed(8)), 1.0)
    assert backend.ngspice_runs == 1  # G- is all zero for non-negative weights


def test_tiles_above_64_need_allow_large() -> None:
    with pytest.raises(ValueError, match="allow_large"):
        SpiceBackend(_profile(0.0), tile_rows=128)
    assert SpiceBackend(_profile(0.0), tile_rows=128, allow_large=True).tile_rows == 128
