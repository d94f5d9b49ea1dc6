"""Calibration recovers known profile parameters from synthetic measurements.

Every synthetic data set is drawn here with numpy from the laws of ``hardware/noise.py`` and
``hardware/chip.py`` (drift, mean shift, read noise, programming noise), the transfer-curve
formula of ``circuit.apply_transfer_curve`` and the exact crossbar solve of ``nodal.py``,
with known parameters; each fit must land within 5 % of them. Sample sizes are those of a
modest device characterisation (one 256 x 256 array holds 65 536 devices): the drift set is
8000 devices read 8 times, which is what pins the read-noise growth ``gamma`` to a few per
cent (its standard error at 500 devices x 6 reads is about 25 %).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from analogtorch import HardwareProfile
from analogtorch.cli import app, main
from analogtorch.hardware.calibrate import (
    ProgrammingFit,
    calibrate,
    fit_drift,
    fit_ir_drop,
    fit_programming,
    fit_transfer,
    transfer_function,
)
from analogtorch.hardware.calibration.base import Estimate, bounded
from analogtorch.hardware.circuit import apply_transfer_curve
from analogtorch.hardware.measurements import (
    CrossbarMeasurement,
    DriftMeasurements,
    MeasurementError,
    Measurements,
    ProgrammingMeasurements,
    TransferMeasurements,
    load_measurements,
)
from analogtorch.hardware.nodal import solve_crossbar

G_MAX = 25e-6  # siemens
T0 = 20.0  # seconds
V_READ = 0.2  # volts
TIMES = np.array([0.0, 1.0, 20.0, 200.0, 2e3, 2e4, 2e5, 2e6])  # s since programming
DRIFT = {"nu_mean": 0.049, "nu_std": 0.008, "slope": 0.02, "sigma": 0.0045, "gamma": 0.5}
PROG_POLY = (0.0105392, 0.0786, -0.046924)  # pcm preset, fractions of g_max
NARROW_TERMINAL = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}


def drift_data(
    rng: np.random.Generator, n_devices: int, times: np.ndarray = TIMES, **params: float
) -> DriftMeasurements:
    """Reads ``G = a (max(t,t0)/t0)^-nu (1 + s ln(1+t/t0)) + sigma sqrt(1 + gamma L) eps``."""
    p = {**DRIFT, **params}
    a = rng.uniform(0.2, 1.0, n_devices)
    nu = rng.normal(p["nu_mean"], p["nu_std"], n_devices)
    device = np.repeat(np.arange(n_devices), times.size)
    t = np.tile(times, n_devices)
    log_growth = np.log1p(t / T0)
    mean = a[device] * (np.maximum(t, T0) / T0) ** -nu[device] * (1 + p["slope"] * log_growth)
    noise = p["sigma"] * np.sqrt(1 + p["gamma"] * log_growth) * rng.standard_normal(t.size)
    return DriftMeasurements(device, t, (mean + noise) * G_MAX)


def programming_data(rng: np.random.Generator, n: int) -> ProgrammingMeasurements:
    x = rng.uniform(0.1, 1.0, n)
    std = np.polynomial.polynomial.polyval(x, PROG_POLY)
    return ProgrammingMeasurements(x * G_MAX, (x + std * rng.standard_normal(n)) * G_MAX)


def transfer_data(
    rng: np.random.Generator, n: int, curve: str, alpha: float
) -> TransferMeasurements:
    v = rng.uniform(-V_READ, V_READ, n)
    g = rng.uniform(0.2, 1.0, n) * G_MAX
    shape = {"sinh": np.sinh, "tanh": np.tanh}[curve]
    f = shape(alpha * v / V_READ) / shape(alpha)
    return TransferMeasurements(v, g * V_READ * (f + 0.01 * rng.standard_normal(n)), g)


def crossbar_data(
    rng: np.random.Generator, size: int, n_vectors: int, r_ohm: float, name: str = "A"
) -> CrossbarMeasurement:
    g = rng.uniform(0.0, 1.0, (size, size)) * G_MAX
    v = rng.uniform(0.0, V_READ, (n_vectors, size))
    i = solve_crossbar(g, v, r_ohm)
    return CrossbarMeasurement(
        name, g, v, i + 0.002 * np.abs(i).mean() * rng.standard_normal(i.shape)
    )


def assert_within(fitted: float, true: float, rel: float = 0.05) -> None:
    assert abs(fitted - true) <= rel * abs(true), f"fitted {fitted:.6g}, true {true:.6g}"


# -- recovery of known parameters ---------------------------------------------------------------


def test_drift_fit_recovers_drift_mean_shift_and_read_noise():
    fit = fit_drift(drift_data(np.random.default_rng(1), 8000), G_MAX, T0)
    pairs = {
        "nu_mean": (fit.nu_mean, DRIFT["nu_mean"]),
        "nu_std": (fit.nu_std, DRIFT["nu_std"]),
        "slope": (fit.mean_log_slope, DRIFT["slope"]),
        "sigma": (fit.read_noise_std, DRIFT["sigma"]),
        "gamma": (fit.read_noise_log_growth, DRIFT["gamma"]),
    }
    for name, (estimate, true) in pairs.items():
        assert_within(estimate.value, true)
        # The standard errors are honest: the error is a few of them at most.
        assert abs(estimate.value - true) < 4 * estimate.stderr, name
    assert fit.n_devices == 8000 and fit.n_measurements == 8000 * TIMES.size
    assert fit.chi2_per_dof == pytest.approx(1.0, abs=0.03)


def test_drift_fit_of_drift_free_data_gives_zero_exponent():
    data = drift_data(np.random.default_rng(2), 1000, nu_mean=0.0, nu_std=0.0, slope=0.0)
    fit = fit_drift(data, G_MAX, T0)
    assert abs(fit.nu_mean.value) < 1e-3
    assert abs(fit.mean_log_slope.value) < 2e-3
    assert fit.nu_std.value < 1e-3
    assert fit.profile_changes()["drift_nu_mean"] < 1e-3


def test_programming_fit_recovers_the_std_curve():
    fit = fit_programming(programming_data(np.random.default_rng(3), 20_000), G_MAX)
    for x in (0.2, 0.5, 0.8):
        assert_within(float(fit.std(x)), float(np.polynomial.polynomial.polyval(x, PROG_POLY)))
    changes = fit.profile_changes()
    assert changes["prog_noise_std"] == 0.0 and len(changes["prog_noise_poly"]) == 3


def programming_fit(coefficients: tuple[float, ...], stderr: float) -> ProgrammingFit:
    """A programming fit with the given coefficients, each of standard error ``stderr``."""
    return ProgrammingFit(
        coefficients=tuple(Estimate(c, stderr) for c in coefficients),
        n=1000,
        log_likelihood=0.0,
        binned_r2=1.0,
        mean_error=0.0,
        covariance=np.diag(np.full(len(coefficients), stderr**2)),
    )


def test_a_programming_fit_dipping_below_zero_within_its_errors_is_lifted_to_touch_zero():
    # sigma(x) = -0.002 + 0.1 x: negative below x = 0.02, where no target was measured
    changes = programming_fit((-0.002, 0.1), stderr=0.004).profile_changes()
    assert changes["prog_noise_poly"] == pytest.approx((0.0, 0.1))
    HardwareProfile(**changes)  # a valid profile
    # an interior dip: sigma(x) = 0.01 - 0.2 x + 0.2 x^2 is lowest at x = 0.5 (-0.04)
    lifted = programming_fit((0.01, -0.2, 0.2), stderr=0.02).profile_changes()
    assert lifted["prog_noise_poly"] == pytest.approx((0.05, -0.2, 0.2))
    with pytest.raises(ValueError, match="three standard errors"):
        programming_fit((0.01, -0.2, 0.2), stderr=0.001).profile_changes()


@pytest.mark.parametrize(("curve", "alpha"), [("sinh", 2.5), ("tanh", 1.5)])
def test_transfer_fit_recovers_alpha_and_picks_the_curve(curve, alpha):
    fit = fit_transfer(transfer_data(np.random.default_rng(4), 200, curve, alpha), V_READ)
    assert fit.curve == curve
    assert_within(fit.alpha.value, alpha)
    assert fit.r2 > 0.99


@pytest.mark.parametrize("curve", ["sinh", "tanh"])
def test_transfer_function_matches_the_simulator_curve(curve):
    profile = HardwareProfile(transfer_curve=curve, transfer_nonlinearity=1.7)
    v = np.linspace(-1.0, 1.0, 41)
    expected = apply_transfer_curve(torch.tensor(v, dtype=torch.float64), profile).numpy()
    np.testing.assert_allclose(transfer_function(v, curve, 1.7), expected, rtol=1e-12)


def test_ir_drop_fit_recovers_wire_resistance():
    fit = fit_ir_drop([crossbar_data(np.random.default_rng(5), 32, 10, r_ohm=2.5)])
    assert_within(fit.wire_resistance_ohm.value, 2.5)
    assert fit.rms_residual_a < 0.2 * fit.rms_ideal_a


def test_calibrate_returns_the_base_profile_with_the_fitted_fields():
    rng = np.random.default_rng(6)
    measurements = Measurements(
        drift=drift_data(rng, 300, times=TIMES[:6]),
        programming=programming_data(rng, 2000),
        transfer=transfer_data(rng, 100, "tanh", 1.5),
        ir_drop=(crossbar_data(rng, 8, 4, r_ohm=5.0),),
    )
    base = HardwareProfile.preset("pcm")
    result = calibrate(measurements, base)
    assert list(result.fits) == ["drift", "programming", "transfer", "ir_drop"]
    expected = {}
    for fit in result.fits.values():
        expected.update(fit.profile_changes())
    for name, value in expected.items():
        assert getattr(result.profile, name) == value, name
    assert result.profile.transfer_curve == "tanh"
    assert result.profile.adc_bits == base.adc_bits and result.profile.energy == base.energy
    record = json.loads(result.to_json())
    assert record["fits"]["ir_drop"]["parameters"]["wire_resistance_ohm"]["stderr"] > 0


# -- measurement files --------------------------------------------------------------------------

HEADER = "kind,device,time_s,conductance_siemens,target_siemens"
GOOD_ROWS = ["drift,d1,0,1e-5,", "drift,d1,100,0.9e-5,"]


@pytest.mark.parametrize(
    ("lines", "line", "column"),
    [
        (["kind,device,time_s", "drift,d1,0"], 2, "conductance_siemens"),
        ([HEADER, *GOOD_ROWS, "drift,d2,nan,1e-5,"], 4, "time_s"),
        ([HEADER, *GOOD_ROWS, "drift,d2,5,inf,"], 4, "conductance_siemens"),
        ([HEADER, *GOOD_ROWS, "programming,,,-1e-6,1e-5"], 4, "conductance_siemens"),
        ([HEADER, *GOOD_ROWS, "drift,d2,10,1e-5,", "drift,d1,50,1e-5,"], 5, "time_s"),
        ([HEADER, *GOOD_ROWS, "retention,d2,10,1e-5,"], 4, "kind"),
        ([HEADER, *GOOD_ROWS, "drift,d2,10 s,1e-5,"], 4, "time_s"),
        ([HEADER, *GOOD_ROWS, "drift,,10,1e-5,"], 4, "device"),
        ([HEADER, "# a comment line", *GOOD_ROWS, "drift,d2,1,1e-5,-2"], 5, "target_siemens"),
    ],
    ids=[
        "missing-column",
        "nan",
        "inf",
        "negative-conductance",
        "unsorted-time",
        "unknown-kind",
        "non-numeric",
        "empty-cell",
        "negative-optional",
    ],
)
def test_bad_measurement_file_names_line_and_column(tmp_path, lines, line, column):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeasurementError) as err:
        load_measurements(path)
    message = str(err.value)
    assert f"line {line} " in message and f"column {column!r}" in message, message
    assert str(path) in message


def test_unknown_header_column_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("kind,device,time_s,conductance_S\ndrift,d1,0,1e-5\n")
    with pytest.raises(MeasurementError, match=r"line 1 \(header\).*'conductance_S'"):
        load_measurements(path)


def test_incomplete_crossbar_names_the_missing_device(tmp_path):
    path = tmp_path / "bad.csv"
    rows = ["kind,crossbar,vector,row,col,conductance_siemens,voltage_v,current_a"]
    rows += [f"ir_conductance,A,,{r},{c},1e-5,," for r in range(2) for c in range(2)][:-1]
    rows += ["ir_voltage,A,0,0,,,0.1,", "ir_voltage,A,0,1,,,0.1,"]
    rows += ["ir_current,A,0,,0,,,1e-6", "ir_current,A,0,,1,,,1e-6"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(MeasurementError, match=r"crossbar 'A'.*row=1, col=1"):
        load_measurements(path)


def write_measurement_csv(path: Path, rng: np.random.Generator) -> None:
    """Every kind in one long-format file, written with the csv module."""
    columns = [
        "kind", "device", "time_s", "target_siemens", "conductance_siemens",
        "voltage_v", "current_a", "crossbar", "vector", "row", "col",
    ]  # fmt: skip
    drift = drift_data(rng, 200, times=TIMES[:6])
    prog = programming_data(rng, 1000)
    transfer = transfer_data(rng, 60, "sinh", 2.0)
    xb = crossbar_data(rng, 6, 3, r_ohm=10.0)
    g_name, xb_name = "conductance_siemens", {"crossbar": "A"}
    transfer_columns = (transfer.voltage_v, transfer.current_a, transfer.conductance_siemens)
    records: list[dict[str, object]] = [
        {"kind": "drift", "device": f"dev{d}", "time_s": t, g_name: g}
        for d, t, g in zip(drift.device, drift.time_s, drift.conductance_siemens, strict=True)
    ]
    records += [
        {"kind": "programming", "target_siemens": target, g_name: g}
        for target, g in zip(prog.target_siemens, prog.conductance_siemens, strict=True)
    ]
    records += [
        {"kind": "transfer", "voltage_v": v, "current_a": i, g_name: g}
        for v, i, g in zip(*transfer_columns, strict=True)
    ]
    records += [
        {**xb_name, "kind": "ir_conductance", "row": r, "col": c, g_name: g}
        for (r, c), g in np.ndenumerate(xb.conductance_siemens)
    ]
    records += [
        {**xb_name, "kind": "ir_voltage", "vector": k, "row": r, "voltage_v": v}
        for (k, r), v in np.ndenumerate(xb.voltage_v)
    ]
    records += [
        {**xb_name, "kind": "ir_current", "vector": k, "col": c, "current_a": i}
        for (k, c), i in np.ndenumerate(xb.current_a)
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def test_loaded_file_round_trips_every_kind(tmp_path):
    path = tmp_path / "chip.csv"
    write_measurement_csv(path, np.random.default_rng(7))
    m = load_measurements(path)
    assert m.kinds == ["drift", "programming", "transfer", "ir_drop"]
    assert m.drift is not None and m.drift.n_devices == 200 and m.drift.time_s.size == 1200
    assert m.ir_drop[0].conductance_siemens.shape == (6, 6)
    assert m.ir_drop[0].current_a.shape == (3, 6)


# -- command line -------------------------------------------------------------------------------


def test_cli_calibrate_writes_profile_record_and_plot(tmp_path):
    path = tmp_path / "chip.csv"
    write_measurement_csv(path, np.random.default_rng(8))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["calibrate", str(path), "--base", "pcm", "--out", str(out)], env=NARROW_TERMINAL
    )
    assert result.exit_code == 0, result.output
    results = {"profile.yaml", "summary.json", "report.md", "fit.png"}
    assert results <= {p.name for p in out.iterdir()}
    profile = HardwareProfile.from_yaml(out / "profile.yaml")
    record = json.loads((out / "summary.json").read_text())
    assert profile.transfer_curve == "sinh"
    assert profile.wire_resistance_ohm == pytest.approx(10.0, rel=0.05)
    assert set(record["fits"]) == {"drift", "programming", "transfer", "ir_drop"}
    assert "drift_nu_mean" in result.output and "goodness of fit" in result.output


def test_cli_calibrate_bad_file_is_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n{GOOD_ROWS[0]}\ndrift,d1,-3,1e-5,\n")
    argv = ["analogtorch", "calibrate", str(path), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "line 3" in err and "'time_s'" in err and "negative" in err
    assert not (tmp_path / "profile.yaml").exists()


# -- implausible data is refused, never clipped into a profile --------------------------------


def _with_drift_value(path, value: str) -> None:
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("drift,"))
    cells = lines[row + 4].split(",")
    cells[4] = value  # conductance_siemens of one drift read
    lines[row + 4] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_a_measurement_beyond_physical_limits_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "chip.csv"
    write_measurement_csv(path, np.random.default_rng(8))
    _with_drift_value(path, "1e30")
    with pytest.raises(MeasurementError, match=r"line \d+ .*conductance_siemens.*1e30.*limit"):
        load_measurements(path)


def test_a_fit_far_outside_the_profile_range_is_an_error_not_a_clipped_profile(tmp_path):
    path = tmp_path / "chip.csv"
    write_measurement_csv(path, np.random.default_rng(8))
    _with_drift_value(path, "0.5")  # one read 20 000x the others: still below 1 S
    with pytest.raises(ValueError, match=r"fitted \w+ = .* is outside its physical range"):
        calibrate(load_measurements(path), HardwareProfile.preset("pcm"))


@pytest.mark.parametrize(
    ("value", "stderr", "expected"),
    [(-0.001, 0.002, 0.0), (0.5, 0.1, 0.5), (1.0005, 0.001, 1.0)],
)
def test_a_fit_at_its_bound_within_three_standard_errors_is_clipped_to_it(value, stderr, expected):
    assert bounded("x", Estimate(value, stderr), 0.0, 1.0) == expected
    with pytest.raises(ValueError, match="x = "):
        bounded("x", Estimate(-0.1, 0.002), 0.0, 1.0)
