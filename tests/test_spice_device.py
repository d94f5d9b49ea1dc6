"""SPICE backend closer to a chip: nonlinear device I-V (B-sources) and the DAC/ADC read chain.

Units: conductances in siemens, voltages in volts, currents in amperes. References are
independent of the code under test: numpy sums ``I_j = sum_i G_ij v_read f(V_i / v_read)``,
a scipy root solve of the nodal equations, and the hardware model (``AnalogLinear``, noise
off, float64) for the backend's outputs and ADC codes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.optimize import root

if shutil.which("ngspice") is None:
    pytest.skip(
        "ngspice is not installed (apt-get install ngspice); the SPICE backend needs it",
        allow_module_level=True,
    )

from analogtorch.hardware.profile import HardwareProfile
from analogtorch.hil.spice import DeviceIV, SpiceBackend, build_netlist, simulate_tile
from analogtorch.nn.linear import AnalogLinear

READ_VOLTS = 0.2
ALPHA = 2.5
INPUT_RANGE = 2.0  # a power of two: the float32 ranges of the hardware model are exact
CURVES = {
    "sinh": lambda v: np.sinh(ALPHA * v) / np.sinh(ALPHA),
    "tanh": lambda v: np.tanh(ALPHA * v) / np.tanh(ALPHA),
}


def _conductances(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1e-6, 50e-6, (rows, cols))


def _rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _profile(curve: str, **changes: object) -> HardwareProfile:
    return HardwareProfile(
        transfer_curve=curve, transfer_nonlinearity=ALPHA, v_read_volts=READ_VOLTS, **changes
    )


def _hardware_model(weight: torch.Tensor, profile: HardwareProfile) -> AnalogLinear:
    """The hardware model's layer (noise off, float64) holding ``weight`` at ``INPUT_RANGE``."""
    out_features, in_features = weight.shape
    layer = AnalogLinear(in_features, out_features, bias=False, profile=profile)
    layer = layer.double().eval()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.input_range.fill_(INPUT_RANGE)
        layer.input_range_initialized.fill_(True)
    return layer


def _inputs(batch: int, features: int, amplitude: float, seed: int) -> torch.Tensor:
    u = torch.rand(batch, features, generator=torch.Generator().manual_seed(seed))
    return (amplitude * INPUT_RANGE * (2 * u - 1)).double()


@pytest.mark.parametrize("curve", ["sinh", "tanh"])
@pytest.mark.parametrize("amplitude", [0.05, 0.5, 1.0])
def test_nonlinear_devices_carry_g_times_the_transfer_curve_4x3(
    curve: str, amplitude: float
) -> None:
    g = _conductances(4, 3, seed=1)
    v = amplitude * np.random.default_rng(2).uniform(-READ_VOLTS, READ_VOLTS, (5, 4))
    device = DeviceIV(curve, ALPHA, READ_VOLTS)
    currents = simulate_tile(g, v, 0.0, g_neg=g[::-1], device=device)
    drive = READ_VOLTS * CURVES[curve](v / READ_VOLTS)
    assert _rel_error(currents, drive @ g - drive @ g[::-1]) < 1e-9


def test_nonlinear_devices_behind_wires_match_a_nodal_root_solve() -> None:
    rows, cols, r = 4, 3, 50.0
    g = _conductances(rows, cols, seed=3)
    v = np.random.default_rng(4).uniform(-READ_VOLTS, READ_VOLTS, (3, rows))

    def device_current(volts: np.ndarray) -> np.ndarray:
        return g * READ_VOLTS * CURVES["sinh"](volts / READ_VOLTS)

    def column_currents(v_in: np.ndarray) -> np.ndarray:
        # Unknowns: word-line nodes u (rows, cols) and bit-line nodes b (rows, cols); the
        # word line starts at the DAC, the bit line ends at the amplifier's virtual ground.
        def kcl(z: np.ndarray) -> np.ndarray:
            u, b = z.reshape(2, rows, cols)
            device = device_current(u - b)
            left = np.column_stack([v_in, u[:, :-1]])
            right = np.column_stack([u[:, 1:], u[:, -1]])  # last node: no segment beyond
            above = np.vstack([b[:1], b[:-1]])  # first node: no segment above
            below = np.vstack([b[1:], np.zeros(cols)])
            at_u = (left - u) / r - (u - right) / r - device
            at_b = device + (above - b) / r - (b - below) / r
            return r * np.concatenate([at_u.ravel(), at_b.ravel()])

        start = np.concatenate([np.repeat(v_in, cols), np.zeros(rows * cols)])
        solution = root(kcl, start, method="hybr", tol=1e-12)
        assert solution.success, solution.message
        return solution.x.reshape(2, rows, cols)[1, -1] / r

    expected = np.array([column_currents(row) for row in v])
    currents = simulate_tile(g, v, r, device=DeviceIV("sinh", ALPHA, READ_VOLTS))
    assert _rel_error(currents, expected) < 1e-8
    ideal_wires = READ_VOLTS * CURVES["sinh"](v / READ_VOLTS) @ g
    assert _rel_error(expected, ideal_wires) > 1e-2  # the wires matter at 50 ohm


@pytest.mark.parametrize("mode", ["superposition", "direct"])
@pytest.mark.parametrize(("curve", "dac_bits"), [("sinh", None), ("tanh", None), ("sinh", 5)])
def test_backend_matches_the_hardware_models_transfer_curve_4x3(
    mode: str, curve: str, dac_bits: int | None
) -> None:
    profile = _profile(curve, dac_bits=dac_bits)
    weight = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    backend = SpiceBackend(profile, mode=mode)
    backend.program("fc", weight, INPUT_RANGE)
    model = _hardware_model(weight, profile)
    for seed, amplitude in enumerate([0.05, 0.5, 1.0]):
        x = _inputs(6, 4, amplitude, seed)
        with torch.no_grad():
            expected = model(x)
        assert _rel_error(backend.mvm("fc", x).numpy(), expected.numpy()) < 1e-9
    linear = (x @ weight.T).numpy()
    assert _rel_error(expected.numpy(), linear) > 0.1  # full scale is strongly nonlinear


@pytest.mark.parametrize("mode", ["superposition", "direct"])
def test_adc_codes_equal_the_hardware_models_code_for_code(mode: str) -> None:
    # Chip tiles of 4 rows (10 inputs: 4 + 4 + 2), each simulated as arrays of at most
    # 3 rows: the ADC must read the sum of a chip tile's arrays, once per chip tile.
    adc_range = 2.0
    profile = _profile("sinh", dac_bits=5, adc_bits=6, adc_range=adc_range, tile_rows=4)
    weight = torch.randn(3, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    backend = SpiceBackend(profile, mode=mode, tile_rows=3)
    backend.program("fc", weight, INPUT_RANGE)
    x = torch.cat([_inputs(40, 10, amplitude, 7) for amplitude in (0.3, 1.0)])
    with torch.no_grad():
        expected = _hardware_model(weight, profile)(x)
    # One ADC code in layer units: s r r_out / 2**(bits - 1) per output row s.
    lsb = weight.abs().amax(dim=1) * INPUT_RANGE * adc_range / 32
    codes, expected_codes = backend.mvm("fc", x) / lsb, expected / lsb
    torch.testing.assert_close(expected_codes, expected_codes.round(), rtol=0, atol=1e-9)
    torch.testing.assert_close(codes, expected_codes, rtol=0, atol=1e-6)
    assert len(expected_codes.unique()) > 20  # many distinct codes, not a saturated read


def test_adc_clips_at_full_scale() -> None:
    # Rows of +1, -1 and mixed weights at full input: |partial sums| up to 4 g_max v_read,
    # twice the ADC full scale r_out = 2 (h = 32 codes of r_out / h each).
    adc_range, half = 2.0, 32
    profile = _profile("sinh", adc_bits=6, adc_range=adc_range)
    weight = torch.tensor(
        [[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0], [1.0, -1.0, 0.5, 0.0]],
        dtype=torch.float64,
    )
    backend = SpiceBackend(profile)
    backend.program("fc", weight, INPUT_RANGE)
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    y = backend.mvm("fc", INPUT_RANGE * x).numpy()

    partial = CURVES["sinh"](x.numpy()) @ weight.numpy().T  # units of g_max v_read
    codes = np.clip(np.round(partial * half / adc_range), -half, half - 1)
    np.testing.assert_allclose(y, codes * adc_range / half * INPUT_RANGE, rtol=1e-12, atol=0)
    assert codes[0].tolist()[:2] == [half - 1, -half]  # both ends of the ADC saturate
    assert -half < codes[0, 2] < half - 1 and abs(codes[1]).max() < half - 1


def test_nonlinear_devices_are_behavioural_sources_and_linear_ones_resistors() -> None:
    g = _conductances(3, 2, seed=8)
    g[1, 1] = 0.0
    sinh_lines = build_netlist(g, np.ones(3), 0.0, device=DeviceIV("sinh", ALPHA, READ_VOLTS))
    sources = [ln for ln in sinh_lines.splitlines() if ln.startswith("bd")]
    assert len(sources) == 5 and all(" i = " in ln and "sinh(" in ln for ln in sources)
    assert not any(ln.startswith("rd") for ln in sinh_lines.splitlines())
    linear_lines = build_netlist(g, np.ones(3), 0.0).splitlines()
    assert len([ln for ln in linear_lines if ln.startswith("rd")]) == 5


def test_superposition_refuses_nonlinear_devices_behind_wires() -> None:
    with pytest.raises(ValueError, match="mode='direct'"):
        SpiceBackend(_profile("sinh", wire_resistance_ohm=1.0))
    assert SpiceBackend(_profile("sinh", wire_resistance_ohm=1.0), mode="direct").mode == "direct"


@pytest.mark.parametrize(
    ("curve", "nonlinearity", "v_ref", "field"),
    [
        ("cubic", 1.0, 0.2, "curve"),
        ("sinh", 0.0, 0.2, "nonlinearity"),
        ("tanh", 1.0, -1.0, "v_ref"),
    ],
)
def test_device_iv_refuses_invalid_values(
    curve: str, nonlinearity: float, v_ref: float, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        DeviceIV(curve, nonlinearity, v_ref)  # type: ignore[arg-type]
