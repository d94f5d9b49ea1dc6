"""The surrogate forward of the analog layers against independently written references.

Normalised units (``analogtorch.hardware.surrogate``): ``x_hat = x / r_in``, ``w_hat = W / s``
with ``s`` the row max ``|W|`` (or a fixed ``weight_range``), per-tile partial sums
``y_t = w_hat_t x_hat_t`` in units of ``g_max v_read``, an ADC of ``b`` bits with step
``r_out / 2**(b-1)`` and codes ``[-2**(b-1), 2**(b-1) - 1]`` per tile, and the output
``y = s r_in sum_t ADC(y_t)``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analogtorch as at
from analogtorch.hardware.adc import digital_rescale
from analogtorch.hardware.ir_drop import ir_drop_effective_conductance
from analogtorch.hardware.mapping import normalized_weights, weight_scale
from analogtorch.hardware.noise import weight_space_noise
from analogtorch.hardware.product_weights import product_weights

IDEAL = at.HardwareProfile.preset("ideal")


@pytest.fixture
def one_thread():
    """gradcheck runs hundreds of tiny forwards; intra-op threads only add overhead there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fix_input_range(layer: nn.Module, r_in: float) -> nn.Module:
    with torch.no_grad():
        layer.input_range.fill_(r_in)
        layer.input_range_initialized.fill_(True)
    return layer


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _row_max(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1).abs().max(dim=1).values


def _balanced_tiles(n_rows: int, tile_rows: int, unit: int = 1) -> list[range]:
    """Fewest tiles of at most ``tile_rows`` rows, equal sizes (last may be short)."""
    n_units = math.ceil(n_rows / unit)
    units_per_tile = tile_rows // unit
    n_tiles = math.ceil(n_units / units_per_tile)
    per_tile = math.ceil(n_units / n_tiles) * unit
    return [range(t * per_tile, min((t + 1) * per_tile, n_rows)) for t in range(n_tiles)]


def _adc(y: torch.Tensor, bits: int, r_out: float) -> torch.Tensor:
    """Signed ``bits``-bit ADC on normalised partial sums, returned in normalised units."""
    step = r_out / 2 ** (bits - 1)
    codes = torch.round(y / step).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return codes * step


# -- ideal profile ---------------------------------------------------------------------------


def _mlp(bias: bool) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 16, bias=bias), nn.Tanh(), nn.Linear(16, 3, bias=bias))


def _cnn(bias: bool) -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(4, 5, (3, 2), stride=(1, 2), padding=(2, 0), bias=bias),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 6 * 2, 3, bias=bias),
    )


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("build", "shape"), [(_mlp, (6, 10)), (_cnn, (2, 3, 8, 8))])
def test_convert_with_ideal_profile_reproduces_the_model(build, shape, bias, train):
    digital = build(bias).train(train)
    analog = at.convert(digital, IDEAL)
    n_layers = sum(isinstance(m, nn.Linear | nn.Conv2d) for m in digital.modules())
    assert len(at.nn.analog_layers(analog)) == n_layers
    assert analog.training == train
    x = torch.randn(shape, generator=_gen(0))
    with torch.no_grad():
        assert torch.allclose(analog(x), digital(x), rtol=0, atol=1e-6)


def test_convert_leaves_the_original_model_digital():
    digital = _mlp(bias=True)
    at.convert(digital, IDEAL)
    assert not at.nn.analog_layers(digital)


# -- gradients -------------------------------------------------------------------------------

CIRCUIT = at.HardwareProfile(
    crosstalk=0.1,
    wire_resistance_ohm=2000.0,
    transfer_curve="tanh",
    transfer_nonlinearity=0.5,
    adc_bits=None,
    dac_bits=None,
    tile_rows=3,
)


def _check_circuit_matters(layer: nn.Module, x: torch.Tensor, digital) -> None:
    with torch.no_grad():
        assert not torch.allclose(layer(x), digital(x), atol=1e-3)


def test_analog_linear_gradient_wrt_input_matches_finite_differences(one_thread):
    layer = _fix_input_range(
        at.AnalogLinear(5, 3, profile=CIRCUIT, dtype=torch.float64), 1.5
    ).eval()
    x = torch.empty(2, 5, dtype=torch.float64).uniform_(-1, 1, generator=_gen(0))
    _check_circuit_matters(layer, x, lambda v: F.linear(v, layer.weight, layer.bias))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-7)


def test_analog_linear_gradient_wrt_weight_matches_finite_differences(one_thread):
    # A fixed weight range makes the digital scale s constant, as on hardware (mapping.py).
    profile = CIRCUIT.replace(weight_range=1.0)
    layer = _fix_input_range(
        at.AnalogLinear(5, 3, profile=profile, dtype=torch.float64), 1.5
    ).eval()
    x = torch.empty(2, 5, dtype=torch.float64).uniform_(-1, 1, generator=_gen(0))
    w = torch.empty(3, 5, dtype=torch.float64).uniform_(-0.9, 0.9, generator=_gen(1))
    _check_circuit_matters(layer, x, lambda v: F.linear(v, w, layer.bias))
    w.requires_grad_(True)
    x.requires_grad_(True)

    def forward(x, w):
        return torch.func.functional_call(layer, {"weight": w, "bias": layer.bias}, (x,))

    assert torch.autograd.gradcheck(forward, (x, w), eps=1e-6, atol=1e-7)


def test_analog_conv_gradient_wrt_input_and_weight_matches_finite_differences(one_thread):
    profile = CIRCUIT.replace(weight_range=1.0, tile_rows=9)  # one input channel per tile
    layer = _fix_input_range(
        at.AnalogConv2d(2, 2, 3, stride=2, padding=1, profile=profile, dtype=torch.float64), 1.5
    ).eval()
    x = torch.empty(1, 2, 4, 4, dtype=torch.float64).uniform_(-1, 1, generator=_gen(0))
    w = torch.empty(2, 2, 3, 3, dtype=torch.float64).uniform_(-0.9, 0.9, generator=_gen(1))
    _check_circuit_matters(layer, x, lambda v: F.conv2d(v, w, layer.bias, 2, 1))
    w.requires_grad_(True)
    x.requires_grad_(True)

    def forward(x, w):
        return torch.func.functional_call(layer, {"weight": w, "bias": layer.bias}, (x,))

    assert torch.autograd.gradcheck(forward, (x, w), eps=1e-6, atol=1e-7)


CONVERTERS = at.HardwareProfile(dac_bits=12, adc_bits=12, adc_range=1.0, tile_rows=9)


def _range_gradients_match_finite_differences(layer: nn.Module, x: torch.Tensor) -> None:
    """Autograd vs finite differences of ``L = sum(a * y)`` w.r.t. ``r_in`` and ``r_out``.

    ``L`` is piecewise smooth in a range (a kink wherever an input or a partial sum crosses
    a converter's full scale), so the check integrates: the mean of the autograd derivative
    over ``[r - h, r + h]`` (midpoint rule, 200 points) must equal ``(L(r + h) - L(r - h)) /
    2h``. With 12-bit converters the rounding jumps and the LSQ rounding term are a few LSB,
    far below the part of ``L`` that moves with the ranges (clipped inputs and saturated
    outputs scale with them).
    """
    with torch.no_grad():
        a = torch.randn(layer(x).shape, generator=_gen(5), dtype=x.dtype)
    for name in ("input_range", "output_range"):
        param = getattr(layer, name)
        value = param.item()
        h, n_points = 0.05 * value, 200
        derivatives = []
        for k in range(n_points):
            with torch.no_grad():
                param.fill_(value - h + (2 * k + 1) * h / n_points)
            layer.zero_grad()
            (a * layer(x)).sum().backward()
            derivatives.append(param.grad.item())
        losses = []
        with torch.no_grad():
            for shifted in (value + h, value - h):
                param.fill_(shifted)
                losses.append((a * layer(x)).sum().item())
            param.fill_(value)
        finite_difference = (losses[0] - losses[1]) / (2 * h)
        mean_derivative = sum(derivatives) / n_points
        assert abs(finite_difference) > 0.1, f"{name}: the range does not matter here"
        assert mean_derivative == pytest.approx(finite_difference, rel=0.05), name


def _clipping_converters(layer: nn.Module, x: torch.Tensor) -> nn.Module:
    """Input range at the 80th percentile of |x|, output range at the 70th of the partial
    sums: a fifth of the inputs clip at the DAC and a third of the partial sums at the ADC."""
    with torch.no_grad():
        _fix_input_range(layer, x.abs().quantile(0.8).item())
        layer.output_range.fill_(1.0)
        row_max = _row_max(layer.weight).reshape(-1, *[1] * (x.dim() - 2))
        y = layer(x) / (layer.input_range * row_max)
        layer.output_range.fill_(y.abs().quantile(0.7).item())
    return layer


def test_learned_range_gradients_of_a_linear_layer_match_finite_differences():
    torch.manual_seed(0)
    layer = at.AnalogLinear(20, 6, profile=CONVERTERS, dtype=torch.float64).eval()
    x = torch.randn(64, 20, generator=_gen(1), dtype=torch.float64)
    _range_gradients_match_finite_differences(_clipping_converters(layer, x), x)


def test_learned_range_gradients_of_a_convolution_match_finite_differences():
    torch.manual_seed(0)
    layer = at.AnalogConv2d(
        3, 4, 3, padding=1, profile=CONVERTERS, dtype=torch.float64
    ).eval()  # 27 rows on tiles of 9: three tiles, three ADC reads per output
    x = torch.randn(8, 3, 6, 6, generator=_gen(1), dtype=torch.float64)
    _range_gradients_match_finite_differences(_clipping_converters(layer, x), x)


# -- per-tile ADC ----------------------------------------------------------------------------


def _linear_adc_reference(x, weight, r_in, r_out, bits, tile_rows):
    s = _row_max(weight)
    x_hat, w_hat = x / r_in, weight / s[:, None]
    y = torch.zeros(x.shape[0], weight.shape[0], dtype=x.dtype)
    for rows in _balanced_tiles(weight.shape[1], tile_rows):
        idx = list(rows)
        y = y + _adc(x_hat[:, idx] @ w_hat[:, idx].T, bits, r_out)
    return y * s * r_in


@pytest.mark.parametrize(("n_in", "tile_rows"), [(10, 4), (9, 4), (12, 5), (7, 7)])
def test_per_tile_adc_matches_a_hand_written_tiled_reference(n_in, tile_rows):
    bits, r_in, r_out = 4, 2.0, 1.5
    profile = at.HardwareProfile(adc_bits=bits, adc_range=r_out, tile_rows=tile_rows)
    layer = _fix_input_range(
        at.AnalogLinear(n_in, 3, profile=profile, dtype=torch.float64), r_in
    ).eval()
    x = torch.empty(32, n_in, dtype=torch.float64).uniform_(-r_in, r_in, generator=_gen(0))
    with torch.no_grad():
        got = layer(x) - layer.bias  # tile by tile, no autograd
    tracked = layer(x) - layer.bias  # all tiles in one product, through autograd
    expected = _linear_adc_reference(x, layer.weight.detach(), r_in, r_out, bits, tile_rows)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert torch.allclose(tracked.detach(), expected, rtol=1e-10, atol=1e-10)
    if tile_rows < n_in:  # digitising per tile differs from digitising the whole column
        whole = _linear_adc_reference(x, layer.weight.detach(), r_in, r_out, bits, n_in)
        assert not torch.allclose(got, whole, atol=1e-3)


@pytest.mark.parametrize("in_channels", [4, 3])
def test_per_tile_adc_of_a_convolution_matches_an_unfold_reference(in_channels):
    bits, r_in, r_out, taps = 5, 1.0, 2.0, 9
    profile = at.HardwareProfile(adc_bits=bits, adc_range=r_out, tile_rows=2 * taps)
    layer = _fix_input_range(
        at.AnalogConv2d(
            in_channels, 3, 3, stride=2, padding=1, bias=False, profile=profile, dtype=torch.float64
        ),
        r_in,
    ).eval()
    x = torch.empty(2, in_channels, 7, 7, dtype=torch.float64).uniform_(-1, 1, generator=_gen(0))
    with torch.no_grad():
        got = layer(x)

    weight = layer.weight.detach().reshape(3, -1)  # rows ordered (channel, kh, kw)
    s = _row_max(weight)
    patches = F.unfold(x / r_in, 3, padding=1, stride=2)  # (B, C*9, L), same row order
    tiles = _balanced_tiles(in_channels * taps, 2 * taps, unit=taps)
    assert len(tiles) == 2
    y = torch.zeros(2, 3, patches.shape[-1], dtype=torch.float64)
    for rows in tiles:
        idx = list(rows)
        partial = torch.einsum("or,brl->bol", weight[:, idx] / s[:, None], patches[:, idx])
        y = y + _adc(partial, bits, r_out)
    expected = (y * (s * r_in)[None, :, None]).reshape(2, 3, 4, 4)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)


# -- crosstalk and IR drop -------------------------------------------------------------------


def _crosstalk_reference(weight: torch.Tensor, k: float, tiles: list[range]) -> torch.Tensor:
    """W'_{j,i} = W_{j,i} + k (W_{j,i-1} + W_{j,i+1}), neighbours only within a tile."""
    coupled = weight.clone()
    for rows in tiles:
        for i in rows:
            for neighbour in (i - 1, i + 1):
                if neighbour in rows:
                    coupled[:, i] += k * weight[:, neighbour]
    return coupled


def test_crosstalk_matches_the_coupled_weight_matrix_on_one_tile():
    k, n_in = 0.15, 6
    layer = _fix_input_range(
        at.AnalogLinear(
            n_in, 3, bias=False, profile=at.HardwareProfile(crosstalk=k), dtype=torch.float64
        ),
        2.0,
    ).eval()
    x = torch.randn(5, n_in, dtype=torch.float64, generator=_gen(0))
    with torch.no_grad():
        got = layer(x)
    coupled = _crosstalk_reference(layer.weight.detach(), k, [range(n_in)])
    assert torch.allclose(got, x @ coupled.T, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, x @ layer.weight.detach().T, atol=1e-3)


@pytest.mark.parametrize("adc_bits", [None, 16])
def test_crosstalk_does_not_couple_word_lines_of_different_tiles(adc_bits):
    # Two physical tiles of 3 word lines: rows 2 and 3 sit on different arrays. The ADC
    # resolution (ideal or 16 bits) must not change which word lines are neighbours.
    k, n_in = 0.15, 6
    profile = at.HardwareProfile(crosstalk=k, tile_rows=3, adc_bits=adc_bits, adc_range=64.0)
    layer = _fix_input_range(
        at.AnalogLinear(n_in, 3, bias=False, profile=profile, dtype=torch.float64), 2.0
    ).eval()
    x = torch.randn(5, n_in, dtype=torch.float64, generator=_gen(0))
    with torch.no_grad():
        got = layer(x)
    coupled = _crosstalk_reference(layer.weight.detach(), k, [range(0, 3), range(3, 6)])
    adc_error = 0.0 if adc_bits is None else 2 * 64.0 / 2**15 * 2.0 * _row_max(coupled).max()
    assert torch.allclose(got, x @ coupled.T, rtol=1e-10, atol=1e-10 + float(adc_error))


@pytest.mark.parametrize("adc_bits", [None, 16])
def test_ir_drop_is_computed_per_physical_tile(adc_bits):
    # Reference: each 3-word-line tile's G+ and G- arrays through the IR-drop model on their
    # own (a tile's wires end at the tile edge), then the differential weights.
    r_wire, g_max, n_in = 3000.0, 25e-6, 6
    profile = at.HardwareProfile(
        wire_resistance_ohm=r_wire,
        g_max_siemens=g_max,
        tile_rows=3,
        adc_bits=adc_bits,
        adc_range=64.0,
    )
    layer = _fix_input_range(
        at.AnalogLinear(n_in, 4, bias=False, profile=profile, dtype=torch.float64), 1.0
    ).eval()
    x = torch.randn(5, n_in, dtype=torch.float64, generator=_gen(0))
    with torch.no_grad():
        got = layer(x)
    weight = layer.weight.detach()
    s = _row_max(weight)
    w_hat = weight / s[:, None]
    effective = torch.zeros_like(w_hat)
    for rows in (slice(0, 3), slice(3, 6)):
        for sign in (1.0, -1.0):
            g = (sign * w_hat[:, rows]).clamp_min(0).T * g_max  # (word lines, bit lines)
            g_eff = ir_drop_effective_conductance(g, r_wire, approximation="pade") / g_max
            effective[:, rows] += sign * g_eff.T
    expected = (x @ effective.T) * s
    assert not torch.allclose(expected, x @ weight.T, atol=1e-3)  # IR drop is visible
    adc_error = 0.0 if adc_bits is None else 2 * 64.0 / 2**15 * float(s.max())
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-10 + adc_error)


def test_eval_forward_uses_weights_changed_through_data():
    # ``weight.data`` edits (weight clipping, pruning) do not bump ``weight._version``; a
    # forward must still use the current weights.
    k = 0.15
    layer = _fix_input_range(
        at.AnalogLinear(
            6, 3, bias=False, profile=at.HardwareProfile(crosstalk=k), dtype=torch.float64
        ),
        2.0,
    ).eval()
    x = torch.randn(5, 6, dtype=torch.float64, generator=_gen(0))
    with torch.no_grad():
        layer(x)
    layer.weight.data.mul_(-1.0)
    with torch.no_grad():
        got = layer(x)
    coupled = _crosstalk_reference(layer.weight.detach(), k, [range(6)])
    assert torch.allclose(got, x @ coupled.T, rtol=1e-10, atol=1e-12)


def test_transfer_curve_applies_the_normalised_nonlinearity_to_the_inputs():
    a, r_in = 2.0, 2.0
    for curve, f in (("sinh", torch.sinh), ("tanh", torch.tanh)):
        profile = at.HardwareProfile(transfer_curve=curve, transfer_nonlinearity=a)
        layer = _fix_input_range(
            at.AnalogLinear(4, 2, bias=False, profile=profile, dtype=torch.float64), r_in
        ).eval()
        x = torch.empty(3, 4, dtype=torch.float64).uniform_(-r_in, r_in, generator=_gen(0))
        with torch.no_grad():
            got = layer(x)
        x_eff = f(a * x / r_in) / f(torch.tensor(a, dtype=torch.float64)) * r_in
        assert torch.allclose(got, x_eff @ layer.weight.detach().T, rtol=1e-10, atol=1e-12)


# -- training noise --------------------------------------------------------------------------


def test_training_noise_differs_between_forwards_and_is_unbiased():
    sigma_p, sigma_r, r_in = 0.1, 0.05, 2.0
    profile = at.HardwareProfile(prog_noise_std=sigma_p, read_noise_std=sigma_r)
    layer = _fix_input_range(at.AnalogLinear(8, 3, profile=profile), r_in).train()
    x = torch.empty(8).uniform_(-r_in, r_in, generator=_gen(0))
    batch = x.expand(500, -1)
    with torch.no_grad():
        first, second = layer(batch), layer(batch)
        draws = torch.cat([layer(batch) for _ in range(40)]).double()
    assert not torch.allclose(first, second)
    assert not torch.allclose(first[0], first[1])  # every sample has its own noise

    weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
    noise_free = weight @ x.double() + bias
    s = _row_max(weight)
    var = (sigma_p**2 + sigma_r**2) * ((x.double() / r_in) ** 2).sum() * (s * r_in) ** 2
    standard_error = (var / draws.shape[0]).sqrt()
    assert bool(((draws.mean(dim=0) - noise_free).abs() < 5 * standard_error).all())
    assert bool(((draws.var(dim=0) / var - 1).abs() < 0.05).all())


def test_eval_mode_is_noise_free_and_matches_the_digital_layer_without_quantisation():
    profile = at.HardwareProfile(prog_noise_std=0.1, read_noise_std=0.05)
    layer = _fix_input_range(at.AnalogLinear(8, 3, profile=profile), 2.0).eval()
    x = torch.randn(4, 8, generator=_gen(0))
    with torch.no_grad():
        first, second = layer(x), layer(x)
        assert torch.equal(first, second)
        assert torch.allclose(first, F.linear(x, layer.weight, layer.bias), atol=1e-5)


def test_training_noise_is_reproducible_from_seed_noise():
    profile = at.HardwareProfile(prog_noise_std=0.1)
    torch.manual_seed(0)
    model = at.convert(nn.Sequential(nn.Linear(4, 3)), profile)
    x = torch.randn(2, 4, generator=_gen(0))
    with torch.no_grad():
        at.seed_noise(model, 5)
        a = model(x)
        at.seed_noise(model, 5)
        b = model(x)
        at.seed_noise(model, 6)
        c = model(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# -- fused training weights ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"weight_bits": 4, "prog_noise_std": 0.1},
        {"weight_bits": 6, "weight_range": 0.5, "mismatch_std": 0.05},
        {"prog_noise_poly": (0.0105392, 0.0786, -0.046924), "weight_range": 0.8},
    ],
)
def test_fused_product_weights_match_the_step_by_step_graph(fields):
    # c * (Q(W/s) + sigma(Q(W/s)) z) built from the public pieces (mapping, quantiser STE,
    # weight-space noise) must give the same values and the same gradients for W and c.
    profile = at.HardwareProfile(training_weight_noise="per-batch", **fields)
    gen = _gen(4)
    weight = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    drawn = profile.has_weight_noise or profile.mismatch_std > 0
    z = torch.randn(6, 9, generator=gen, dtype=torch.float64) if drawn else None
    upstream = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    results = []
    for fused in (True, False):
        w = weight.clone().requires_grad_()
        c = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
        scale = weight_scale(w, profile)
        if fused:
            out = product_weights(w, scale, c, z, profile)
        else:
            w_hat = normalized_weights(w, scale, profile)
            out = (w_hat if z is None else weight_space_noise(w_hat, z, profile)) * c
        (out * upstream).sum().backward()
        results.append((out.detach(), w.grad, c.grad))
    for got, want in zip(results[0], results[1], strict=True):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_bias", [True, False])
def test_digital_rescale_gradients_match_finite_differences(with_bias):
    gen = _gen(6)
    y = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    scale = (torch.rand(1, 3, 1, 1, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    bias = torch.randn(1, 3, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs = (y, scale, bias) if with_bias else (y, scale)
    assert torch.autograd.gradcheck(lambda *a: digital_rescale(*a), inputs)
    assert torch.autograd.gradgradcheck(lambda *a: digital_rescale(*a), inputs)
