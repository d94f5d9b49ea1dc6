"""The VirtualChip's measurement mode: what it measures, the CSV it writes, and that
``calibrate`` recovers the chip's hidden design from it.

References are independent of the code under test: the hidden profile's own fields (read
from the chip, the way a test bench knows the design it simulates) and, for the programming
spread, the variance of a device programmed by the hardware model's law worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analogtorch import HardwareProfile
from analogtorch.hardware.calibrate import calibrate
from analogtorch.hardware.errors import ProfileError
from analogtorch.hardware.measurement_sets import concat_measurements, write_measurements
from analogtorch.hardware.measurements import load_measurements
from analogtorch.hil import MeasurementPlan, SurrogateBackend, VirtualChip

PCM = HardwareProfile.preset("pcm")
SMALL = MeasurementPlan(programming_devices=400, drift_devices=100, transfer_devices=4)


@pytest.fixture(scope="module")
def chip_calibration(tmp_path_factory):
    """One VirtualChip measured with the default plan, written to CSV, read back, fitted."""
    chip = VirtualChip(seed=0, design_seed=0)
    measured = chip.measure()
    path = write_measurements(
        measured.measurements, tmp_path_factory.mktemp("chip") / "chip.csv", ["VirtualChip 0"]
    )
    return chip._profile, measured, calibrate(load_measurements(path), PCM)


def programmed_std(design: HardwareProfile, x: float, reads: int) -> float:
    """Std (fraction of g_max) of a device programmed to ``x`` and read ``reads`` times.

    The chip programs ``w = x + s z1`` with ``s^2 = poly(x)^2 + poly(0)^2`` (both devices of the
    pair), keeps ``G+ = w (1 + m z2)`` (gain mismatch ``m``) and adds read noise ``sigma_r``
    per read: ``Var = (x^2 + s^2)(1 + m^2) - x^2 + sigma_r^2 / reads``.
    """

    def poly(g: float) -> float:
        return max(float(np.polynomial.polynomial.polyval(g, design.prog_noise_poly)), 0.0)

    s2 = poly(x) ** 2 + poly(0.0) ** 2
    m2 = design.mismatch_std**2
    return math.sqrt((x * x + s2) * (1 + m2) - x * x + design.read_noise_std**2 / reads)


def test_calibration_recovers_the_hidden_design_within_its_standard_errors(chip_calibration):
    design, _, result = chip_calibration
    drift, transfer, ir = (result.fits[k] for k in ("drift", "transfer", "ir_drop"))
    pairs = {
        "drift_nu_mean": (drift.nu_mean, design.drift_nu_mean),
        "drift_nu_std": (drift.nu_std, design.drift_nu_std),
        "noise_mean_log_slope": (drift.mean_log_slope, design.noise_mean_log_slope),
        "read_noise_std": (drift.read_noise_std, design.read_noise_std),
        "read_noise_log_growth": (drift.read_noise_log_growth, design.read_noise_log_growth),
        "transfer_nonlinearity": (transfer.alpha, design.transfer_nonlinearity),
        "wire_resistance_ohm": (ir.wire_resistance_ohm, design.wire_resistance_ohm),
    }
    for name, (estimate, true) in pairs.items():
        assert abs(estimate.value - true) < 4 * estimate.stderr, (name, estimate, true)
        # and the data pin it: standard error within 7 % of the value (for the mean-shift
        # slope, whose true value is 0: within 0.001, a shift of 1 % of G at 2e6 s)
        assert estimate.stderr < (0.07 * abs(true) or 1e-3), (name, estimate)
    assert transfer.curve == design.transfer_curve
    assert drift.chi2_per_dof == pytest.approx(1.0, abs=0.03)
    programming = result.fits["programming"]
    for x in (0.3, 0.6, 0.9):
        true = programmed_std(design, x, MeasurementPlan().reads)
        assert abs(programming.std(x) - true) < 4 * programming.std_error(x), x
        assert programming.std_error(x) < 0.03 * true
    assert result.profile.transfer_curve == "sinh"


def test_stuck_devices_are_screened_out_at_the_design_rate(chip_calibration):
    design, measured, _ = chip_calibration
    n = MeasurementPlan().programming_devices
    stuck = measured.stuck_devices["programming"]
    expected = design.stuck_rate * n
    assert abs(stuck - expected) < 4 * math.sqrt(expected)  # binomial spread
    data = measured.measurements.programming
    assert data.target_siemens.size == n - stuck
    # no stuck device (at 0 or g_max whatever its target) is left among the programmed ones
    error = (data.conductance_siemens - data.target_siemens) / design.g_max_siemens
    spread = programmed_std(design, 1.0, MeasurementPlan().reads)
    assert np.abs(error).max() < 6 * spread


def test_the_csv_reads_back_to_the_same_measurements(tmp_path):
    measured = VirtualChip(seed=1).measure(SMALL).measurements
    path = write_measurements(measured, tmp_path / "m.csv", ["chip 1", "plan: small"])
    assert path.read_text().startswith("# chip 1\n# plan: small\nkind,")
    back = load_measurements(path)
    assert back.kinds == ["drift", "programming", "transfer", "ir_drop"]
    for kind in ("programming", "transfer"):
        for column, values in vars(getattr(measured, kind)).items():
            assert np.array_equal(getattr(getattr(back, kind), column), values), (kind, column)
    assert back.drift.n_devices == measured.drift.n_devices
    assert np.array_equal(
        np.sort(back.drift.conductance_siemens), np.sort(measured.drift.conductance_siemens)
    )
    (xb,), (xb_back,) = measured.ir_drop, back.ir_drop
    for column in ("conductance_siemens", "voltage_v", "current_a"):
        assert np.array_equal(getattr(xb_back, column), getattr(xb, column)), column


def test_each_round_measures_fresh_devices_and_a_chip_repeats_itself():
    first = VirtualChip(seed=2).measure(SMALL, round_index=0).measurements
    again = VirtualChip(seed=2).measure(SMALL, round_index=0).measurements
    second = VirtualChip(seed=2).measure(SMALL, round_index=1).measurements
    a, b, c = (m.programming.conductance_siemens for m in (first, again, second))
    assert np.array_equal(a, b)
    assert not np.array_equal(a[: min(a.size, c.size)], c[: min(a.size, c.size)])
    pooled = concat_measurements([first, second])
    assert pooled.drift.n_devices == first.drift.n_devices + second.drift.n_devices
    assert pooled.programming.target_siemens.size == a.size + c.size
    assert [xb.name for xb in pooled.ir_drop] == ["0/ir0", "1/ir1"]


def test_measurements_count_device_reads():
    chip = VirtualChip(seed=0)
    assert chip.device_reads == 0
    measured = chip.measure(SMALL)
    assert chip.device_reads == measured.reads
    plan = SMALL
    ir = plan.ir_rows * plan.ir_cols * plan.ir_conductance_reads
    at_least = plan.programming_devices * plan.reads + plan.drift_devices * 8 + ir
    assert measured.reads > at_least
    assert chip.calls == 0  # measurements are not matrix-vector products


def test_a_noise_free_chip_measures_its_targets_exactly():
    profile = PCM.scale_noise(0.0).replace(drift_nu_mean=0.0, drift_nu_std=0.0)
    measured = SurrogateBackend(profile).measure(SMALL).measurements
    p = measured.programming
    assert np.allclose(p.conductance_siemens, p.target_siemens, rtol=1e-6)
    assert np.allclose(measured.drift.conductance_siemens, measured.drift.target_siemens, rtol=1e-6)
    t = measured.transfer
    assert np.allclose(t.current_a, t.conductance_siemens * t.voltage_v, rtol=1e-5, atol=1e-15)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"programming_devices": 3}, "programming_devices=3"),
        ({"reads": 0}, "reads=0"),
        ({"ir_rows": 300}, "ir_rows=300"),
        ({"drift_times_s": [0.0, 20.0, 10.0]}, "non-decreasing"),
        ({"drift_times_s": [0.0, 0.0, 20.0]}, "3 or more distinct"),
        ({"drift_times_s": [0.0, -1.0, 20.0]}, "drift_times_s.1=-1.0"),
        ({"ir_colz": 4}, "ir_colz"),
    ],
)
def test_a_bad_measurement_plan_names_its_field(changes, key):
    with pytest.raises(ProfileError, match=key):
        MeasurementPlan(**changes)


def test_an_ir_array_larger_than_a_tile_is_refused():
    backend = SurrogateBackend(PCM.replace(tile_rows=16, tile_cols=16))
    with pytest.raises(ValueError, match="one tile"):
        backend.measure(SMALL)
    with pytest.raises(ValueError, match="round_index"):
        VirtualChip().measure(SMALL, round_index=-1)
