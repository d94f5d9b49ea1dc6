"""`AnalogConv1d` and `AnalogConvTranspose2d` against torch's own convolutions.

References are torch's ``F.conv1d`` / ``F.conv_transpose2d`` and quantities written out here:
the crossbar of a transposed convolution holds, per group ``g`` and output channel ``o``,
the block ``W[g C_in/groups : (g + 1) C_in/groups, o]`` (one row per output channel), so its
row scale, clipping and held weights are per such block; its read noise on output pixel
``a`` has variance ``sigma^2 (s_o r_in)^2 sum_{i, taps reaching a} (x_i / r_in)^2``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analogtorch as at
from analogtorch.energy.workload import trace_workload
from analogtorch.nn import AnalogConv1d, AnalogConvTranspose2d

IDEAL = at.HardwareProfile.preset("ideal")
PCM = at.HardwareProfile.preset("pcm")
# Exact arithmetic through the analog path (a fixed weight range is not the digital fast path).
EXACT = at.HardwareProfile(weight_range=100.0, tile_rows=64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fix_input_range(layer: nn.Module, r_in: float) -> nn.Module:
    with torch.no_grad():
        layer.input_range.fill_(r_in)
        layer.input_range_initialized.fill_(True)
    return layer


def _crossbar_blocks(weight: torch.Tensor, groups: int) -> list[tuple[slice, int]]:
    """(input-channel slice, output index) of every crossbar row of a transposed conv."""
    in_per_group = weight.shape[0] // groups
    return [
        (slice(g * in_per_group, (g + 1) * in_per_group), o)
        for g in range(groups)
        for o in range(weight.shape[1])
    ]


# -- exact hardware reproduces torch ---------------------------------------------------------

CONV1D_CASES = [
    {"kernel_size": 3},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 2, "stride": 3, "padding": 2, "dilation": 2, "bias": False},
    {"kernel_size": 3, "padding": 1, "groups": 2},
]

TRANSPOSED_CASES = [
    {"kernel_size": 3},
    {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    {"kernel_size": (3, 2), "stride": (2, 3), "padding": (0, 1), "bias": False},
    {"kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1, "output_padding": (1, 0)},
    {"kernel_size": 3, "stride": 3, "padding": 3, "output_padding": 2},  # crops: p > k - 1
    {"kernel_size": 2, "stride": 2, "groups": 2},
]


@pytest.mark.parametrize("profile", [IDEAL, EXACT], ids=["ideal", "analog-path"])
@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_reproduces_f_conv1d_on_exact_hardware(case, profile):
    torch.manual_seed(0)
    layer = AnalogConv1d(4, 6, **case, profile=profile).eval()
    assert layer.use_digital_path() == (profile is IDEAL)
    x = torch.randn(3, 4, 11, generator=_gen(1))
    expected = F.conv1d(
        x,
        layer.weight,
        layer.bias,
        case.get("stride", 1),
        case.get("padding", 0),
        case.get("dilation", 1),
        case.get("groups", 1),
    )
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("profile", [IDEAL, EXACT], ids=["ideal", "analog-path"])
@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_conv_transpose2d_reproduces_f_conv_transpose2d_on_exact_hardware(case, profile):
    torch.manual_seed(0)
    layer = AnalogConvTranspose2d(4, 6, **case, profile=profile).eval()
    assert layer.use_digital_path() == (profile is IDEAL)
    x = torch.randn(2, 4, 4, 5, generator=_gen(1))
    expected = F.conv_transpose2d(
        x,
        layer.weight,
        layer.bias,
        case.get("stride", 1),
        case.get("padding", 0),
        case.get("output_padding", 0),
        case.get("groups", 1),
        case.get("dilation", 1),
    )
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(9, 9), (10, 10), [1, 6, 10, 9]])
def test_conv_transpose2d_output_size_picks_the_output_padding_as_torch_does(size):
    torch.manual_seed(0)
    digital = nn.ConvTranspose2d(3, 6, 3, stride=2, padding=1)
    analog = at.convert(digital, EXACT).eval()
    x = torch.randn(1, 3, 5, 5, generator=_gen(1))
    with torch.no_grad():
        got = analog(x, output_size=size)
        torch.testing.assert_close(got, digital(x, output_size=size), atol=1e-5, rtol=1e-5)
    assert tuple(got.shape[-2:]) == tuple(size[-2:])
    with pytest.raises(ValueError, match="output size"):
        analog(x, output_size=(12, 12))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv1d_padding_modes_match_torch_on_the_analog_path(mode):
    torch.manual_seed(0)
    digital = nn.Conv1d(3, 4, 3, padding=2, padding_mode=mode)
    analog = at.convert(digital, EXACT).eval()
    x = torch.randn(2, 3, 9, generator=_gen(1))
    with torch.no_grad():
        torch.testing.assert_close(analog(x), digital(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("digital", "shape"),
    [
        (nn.Conv1d(3, 2, 3), (3, 7)),
        (nn.Conv1d(3, 2, 3), (0, 3, 7)),
        (nn.ConvTranspose2d(3, 2, 3, stride=2), (3, 4, 5)),
        (nn.ConvTranspose2d(3, 2, 3, stride=2), (0, 3, 4, 5)),
    ],
)
def test_unbatched_and_empty_inputs_give_what_torch_gives(digital, shape):
    analog = at.convert(digital, EXACT).eval()
    x = torch.randn(shape, generator=_gen(0))
    with torch.no_grad():
        got, expected = analog(x), digital(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digital", "x", "match"),
    [
        (nn.Conv1d(3, 2, 3), torch.rand(2, 4, 7), r"'0'.*\(N, 3, L\), got \(2, 4, 7\)"),
        (nn.Conv1d(3, 2, 3), torch.rand(7), r"'0'.*got \(7,\)"),
        (nn.Conv1d(3, 2, 3), torch.rand(1, 2, 3, 7), r"'0'.*got \(1, 2, 3, 7\)"),
        (nn.ConvTranspose2d(3, 2, 3), torch.rand(2, 4, 5, 5), r"'0'.*\(N, 3, H, W\)"),
        (nn.ConvTranspose2d(3, 2, 3), torch.rand(5, 5), r"'0'.*got \(5, 5\)"),
        (nn.ConvTranspose2d(3, 2, 3), torch.rand(1, 1, 3, 5, 5), r"'0'.*got \(1, 1, 3, 5, 5\)"),
        (nn.ConvTranspose2d(3, 2, 3, padding=3), torch.rand(1, 3, 1, 1), r"'0'.*empty output"),
    ],
)
def test_a_wrong_input_raises_a_value_error_naming_the_layer(digital, x, match):
    analog = at.convert(nn.Sequential(digital), PCM)
    with pytest.raises(ValueError, match=match):
        analog(x)


def test_string_padding_and_impossible_output_padding_are_refused_by_name():
    with pytest.raises(ValueError, match="padding='same'"):
        AnalogConv1d(2, 2, 3, padding="same", profile=PCM)
    with pytest.raises(ValueError, match="padding"):
        at.convert(nn.Conv1d(2, 2, 3, padding="same"), PCM)
    with pytest.raises(ValueError, match="output_padding"):
        AnalogConvTranspose2d(2, 2, 3, stride=2, output_padding=2, profile=PCM)
    with pytest.raises(ValueError, match="padding"):
        AnalogConvTranspose2d(2, 2, 3, padding="same", profile=PCM)  # type: ignore[arg-type]


def test_grouped_layers_whose_group_exceeds_a_tile_are_refused():
    profile = EXACT.replace(tile_rows=4, adc_bits=8)
    layer = AnalogConvTranspose2d(4, 4, 2, groups=2, profile=profile)
    with pytest.raises(ValueError, match="groups=2"):
        layer(torch.rand(1, 4, 3, 3))


# -- tiling -----------------------------------------------------------------------------------


def test_conv1d_split_over_several_tiles_matches_the_untiled_result():
    # 5 channels x 3 taps on 6-row tiles: 2 whole channels per tile, 3 tiles, a 16-bit ADC
    # on every tile's partial sums (an ideal ADC would sum all tiles in one product).
    profile = at.HardwareProfile(weight_range=1.0, adc_bits=16, adc_range=4.0, tile_rows=6)
    torch.manual_seed(0)
    layer = AnalogConv1d(5, 4, 3, stride=2, padding=1, profile=profile).eval()
    assert layer.row_tiling(profile).n_tiles == 3
    x = torch.randn(2, 5, 12, generator=_gen(1))
    with torch.no_grad():
        got = layer(x)
    expected = F.conv1d(x, layer.weight, layer.bias, 2, 1)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)


def test_conv_transpose2d_split_over_several_tiles_matches_the_untiled_result():
    # 5 input channels x 9 taps on 18-row tiles: 3 tiles of whole channels.
    profile = at.HardwareProfile(weight_range=1.0, adc_bits=16, adc_range=4.0, tile_rows=18)
    torch.manual_seed(0)
    layer = AnalogConvTranspose2d(5, 4, 3, stride=2, padding=1, profile=profile).eval()
    assert layer.row_tiling(profile).n_tiles == 3
    x = torch.randn(2, 5, 4, 4, generator=_gen(1))
    with torch.no_grad():
        got = layer(x)
    expected = F.conv_transpose2d(x, layer.weight, layer.bias, 2, 1)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)


# -- noise ------------------------------------------------------------------------------------

N_DRAWS = 20_000  # standard error of a sample variance sqrt(2/n) = 1 %
SIGMA_P, SIGMA_R, R_IN = 0.1, 0.05, 2.0
NOISY = at.HardwareProfile(prog_noise_std=SIGMA_P, read_noise_std=SIGMA_R)


def _assert_moments(draws: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    draws = draws.double()
    standard_error = (var / draws.shape[0]).sqrt()
    assert bool(((draws.mean(0) - mean).abs() < 5 * standard_error).all())
    ratio = draws.var(0) / var
    assert bool(((ratio - 1).abs() < 0.06).all()), f"var ratio {ratio.min()}..{ratio.max()}"


def test_conv1d_training_noise_matches_the_analytic_moments():
    torch.manual_seed(0)
    layer = _fix_input_range(AnalogConv1d(3, 2, 3, padding=1, profile=NOISY), R_IN).train()
    x = torch.empty(1, 3, 6).uniform_(0.2, R_IN, generator=_gen(1))
    with torch.no_grad():
        draws = layer(x.expand(N_DRAWS, -1, -1))
    weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
    xd = x.double()
    mean = F.conv1d(xd, weight, bias, padding=1)[0]
    patch_sq = F.conv1d((xd / R_IN) ** 2, torch.ones(1, 3, 3, dtype=torch.float64), padding=1)[0]
    s = weight.abs().amax(dim=(1, 2)).view(-1, 1)
    var = (SIGMA_P**2 + SIGMA_R**2) * patch_sq * (s * R_IN) ** 2
    _assert_moments(draws, mean, var)


def test_conv_transpose2d_training_noise_matches_the_analytic_moments():
    torch.manual_seed(0)
    layer = AnalogConvTranspose2d(2, 3, 3, stride=2, padding=1, profile=NOISY)
    layer = _fix_input_range(layer, R_IN).train()
    x = torch.empty(1, 2, 3, 3).uniform_(0.2, R_IN, generator=_gen(1))
    with torch.no_grad():
        draws = layer(x.expand(N_DRAWS, -1, -1, -1))
    weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
    xd = x.double()
    mean = F.conv_transpose2d(xd, weight, bias, stride=2, padding=1)[0]
    ones = torch.ones(2, 1, 3, 3, dtype=torch.float64)
    patch_sq = F.conv_transpose2d((xd / R_IN) ** 2, ones, stride=2, padding=1)[0]
    s = weight.abs().amax(dim=(0, 2, 3)).view(-1, 1, 1)  # one row per output channel
    var = (SIGMA_P**2 + SIGMA_R**2) * patch_sq * (s * R_IN) ** 2
    _assert_moments(draws, mean, var)


# -- gradients --------------------------------------------------------------------------------


def test_analog_path_gradients_equal_torch_gradients_on_exact_hardware():
    torch.manual_seed(0)
    layer = AnalogConvTranspose2d(
        4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2, profile=EXACT
    ).train()
    x = torch.randn(2, 4, 4, 4, generator=_gen(1), requires_grad=True)
    target = torch.randn(2, 6, 10, 10, generator=_gen(2))
    (layer(x) * target).sum().backward()
    got = (x.grad, layer.weight.grad, layer.bias.grad)

    weight = layer.weight.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    reference = F.conv_transpose2d(x_ref, weight, bias, 2, 1, 1, 2, 2)
    (reference * target).sum().backward()
    for a, b in zip(got, (x_ref.grad, weight.grad, bias.grad), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["conv1d", "transposed"])
def test_gradients_flow_to_weights_inputs_and_ranges_in_noisy_quantised_training(kind):
    profile = PCM.replace(dac_bits=8, adc_bits=8, adc_range=4.0)
    torch.manual_seed(0)
    if kind == "conv1d":
        layer = AnalogConv1d(3, 4, 3, padding=1, profile=profile)
        x = torch.randn(4, 3, 10, generator=_gen(1), requires_grad=True)
    else:
        layer = AnalogConvTranspose2d(3, 4, 2, stride=2, profile=profile)
        x = torch.randn(4, 3, 4, 4, generator=_gen(1), requires_grad=True)
    layer.train()(x).square().mean().backward()
    for grad in (x.grad, layer.weight.grad, layer.bias.grad, layer.input_range.grad):
        assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0


# -- weight clipping --------------------------------------------------------------------------


def _heavy_tailed(shape: tuple[int, ...]) -> torch.Tensor:
    """Student-t weights (2 degrees of freedom): outliers to clip."""
    gen = _gen(0)
    normal = torch.randn(shape, generator=gen)
    return normal / (torch.randn((2, *shape), generator=gen).pow(2).sum(0) / 2).sqrt()


def test_transposed_weights_are_clipped_per_crossbar_row_that_is_per_output_channel():
    profile = at.HardwareProfile(weight_bits=4, prog_noise_std=0.1, weight_clip_sigma=2.0)
    layer = AnalogConvTranspose2d(4, 6, 3, groups=2, profile=profile)  # weight (4, 3, 3, 3)
    with torch.no_grad():
        layer.weight.copy_(_heavy_tailed(tuple(layer.weight.shape)))
    before = layer.weight.detach().clone()
    expected = before.clone()
    for inputs, o in _crossbar_blocks(before, groups=2):
        block = before[inputs, o]
        limit = 2.0 * block.std()  # sample std over the row's 2 x 3 x 3 weights
        expected[inputs, o] = block.clamp(-limit, limit)
    layer.train()(torch.rand(2, 4, 3, 3))
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-6, atol=0)
    assert not torch.equal(expected, before)  # the test clips something


def test_conv1d_weights_are_clipped_per_output_row():
    profile = at.HardwareProfile(weight_bits=4, prog_noise_std=0.1, weight_clip_sigma=2.0)
    layer = AnalogConv1d(6, 3, 4, profile=profile)
    with torch.no_grad():
        layer.weight.copy_(_heavy_tailed(tuple(layer.weight.shape)))
    before = layer.weight.detach().clone()
    limit = 2.0 * before.reshape(3, -1).std(dim=1).view(3, 1, 1)
    layer.train()(torch.rand(2, 6, 8))
    torch.testing.assert_close(
        layer.weight.detach(), before.clamp(-limit, limit), rtol=1e-6, atol=0
    )


# -- convert, to_digital ----------------------------------------------------------------------


class _AutoEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=1), nn.ReLU())
        self.decode = nn.ConvTranspose2d(4, 3, 2, stride=2, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).unsqueeze(2))


def test_convert_makes_conv1d_and_transposed_conv_analog_with_the_same_weights():
    torch.manual_seed(0)
    digital = _AutoEncoder()
    analog = at.convert(digital, PCM)
    assert type(analog.encode[0]) is AnalogConv1d
    assert type(analog.decode) is AnalogConvTranspose2d
    for name, value in digital.state_dict().items():
        assert torch.equal(analog.state_dict()[name], value)
    ideal = at.convert(digital, IDEAL).eval()
    x = torch.randn(2, 2, 8, generator=_gen(1))
    with torch.no_grad():
        torch.testing.assert_close(ideal(x), digital(x))


def _held(block: torch.Tensor, bits: int) -> torch.Tensor:
    """``s Q(W / s)`` of one crossbar row, written out: s = max |W|, step 1 / (2^(b-1) - 1)."""
    s = block.abs().max()
    step = 1.0 / (2 ** (bits - 1) - 1)
    return torch.round(block / s / step) * step * s


def test_to_digital_of_a_transposed_conv_holds_the_8_bit_crossbar_weights_in_torch_layout():
    torch.manual_seed(0)
    eight_bit = at.HardwareProfile(weight_bits=8)
    layer = AnalogConvTranspose2d(
        4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2, profile=eight_bit
    )
    digital = layer.to_digital()
    assert type(digital) is nn.ConvTranspose2d
    for name in ("stride", "padding", "output_padding", "groups", "dilation", "kernel_size"):
        assert getattr(digital, name) == getattr(layer, name)
    weight = layer.weight.detach()
    expected = torch.empty_like(weight)
    for inputs, o in _crossbar_blocks(weight, groups=2):
        expected[inputs, o] = _held(weight[inputs, o], 8)
    torch.testing.assert_close(digital.weight.detach(), expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(digital.bias, layer.bias)
    assert not torch.equal(digital.weight, layer.weight)  # 8 bits change something
    unconverted = at.nn.unconvert(nn.Sequential(layer))[0]
    assert type(unconverted) is nn.ConvTranspose2d
    assert torch.equal(unconverted.weight, digital.weight)


def test_to_digital_of_a_conv1d_holds_the_8_bit_weights_per_output_row():
    torch.manual_seed(0)
    layer = AnalogConv1d(4, 6, 3, stride=2, groups=2, profile=at.HardwareProfile(weight_bits=8))
    digital = layer.to_digital()
    assert type(digital) is nn.Conv1d and digital.groups == 2 and digital.stride == (2,)
    weight = layer.weight.detach()
    expected = torch.stack([_held(weight[o], 8) for o in range(6)])
    torch.testing.assert_close(digital.weight.detach(), expected, rtol=1e-6, atol=1e-7)


# -- chips ------------------------------------------------------------------------------------


def _layer_and_input(kind: str, profile: at.HardwareProfile) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "conv1d":
        layer = AnalogConv1d(3, 4, 3, stride=2, padding=1, profile=profile)
        return layer.eval(), torch.randn(2, 3, 9, generator=_gen(1))
    layer = AnalogConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, profile=profile)
    return layer.eval(), torch.randn(2, 3, 4, 4, generator=_gen(1))


def _read(chip: at.Chip, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with chip.deploy(layer, time_s=60.0), torch.no_grad():
        return layer(x)


@pytest.mark.parametrize("kind", ["conv1d", "transposed"])
def test_chips_are_reproducible_per_seed_and_differ_between_seeds(kind):
    layer, x = _layer_and_input(kind, PCM)
    first = _read(at.Chip(PCM, seed=5), layer, x)
    assert torch.equal(first, _read(at.Chip(PCM, seed=5), layer, x))
    assert not torch.allclose(first, _read(at.Chip(PCM, seed=6), layer, x))


@pytest.mark.parametrize("kind", ["conv1d", "transposed"])
def test_an_ideal_chip_reproduces_the_torch_layer(kind):
    layer, x = _layer_and_input(kind, IDEAL)
    w, b = layer.weight.detach(), layer.bias.detach()
    if kind == "conv1d":
        expected = F.conv1d(x, w, b, stride=2, padding=1)
    else:
        expected = F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    got = _read(at.Chip(IDEAL, seed=0), layer, x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# -- energy -----------------------------------------------------------------------------------

ENERGY = at.HardwareProfile(tile_rows=64, tile_cols=64, dac_bits=8, adc_bits=8)


def test_energy_costs_a_conv1d_per_output_position_converted_or_not():
    digital = nn.Sequential(nn.Conv1d(6, 4, 3, stride=2, groups=2))
    x = torch.randn(3, 6, 11, generator=_gen(0))
    positions = (11 - 3) // 2 + 1
    reports = [
        at.energy.estimate(m, ENERGY, inputs=x) for m in (digital, at.convert(digital, ENERGY))
    ]
    for report in reports:
        layer = report.layers[0]
        assert layer.kind == "analog"
        assert layer.mvms == positions
        assert layer.macs == positions * (3 * 3) * 4  # rows in/groups*k, cols = out
    assert reports[0].energy_j == pytest.approx(reports[1].energy_j, rel=1e-6)


def test_energy_costs_a_transposed_conv_on_its_crossbar_layout_converted_or_not():
    digital = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1))
    x = torch.randn(3, 4, 5, 5, generator=_gen(0))
    positions = 10 * 10
    reports = [
        at.energy.estimate(m, ENERGY, inputs=x) for m in (digital, at.convert(digital, ENERGY))
    ]
    for report in reports:
        layer = report.layers[0]
        assert layer.kind == "analog"
        assert layer.mvms == positions
        assert layer.macs == positions * (4 * 9) * 6
        assert layer.adc_conversions == positions * 6  # one row tile, one ADC read per output
    assert reports[0].energy_j == pytest.approx(reports[1].energy_j, rel=1e-6)


def test_row_activity_of_a_transposed_conv_is_measured_on_the_zero_stuffed_input():
    stride, kernel = 3, 2
    model = nn.Sequential(nn.ConvTranspose2d(2, 3, kernel, stride=stride))
    x = torch.randn(4, 2, 3, 5, generator=_gen(0))
    (work,) = trace_workload(model, x, measure_activity=True)
    assert (work.rows, work.cols) == (2 * kernel * kernel, 3)
    xn = x / x.abs().max()
    stuffed = torch.zeros(4, 2, (3 - 1) * stride + 1, (5 - 1) * stride + 1)
    stuffed[:, :, ::stride, ::stride] = xn
    per_channel = stuffed.square().mean(dim=(0, 2, 3))
    expected = per_channel.repeat_interleave(kernel * kernel)
    torch.testing.assert_close(work.row_activity_sq, expected)


def test_row_activity_of_a_conv1d_is_the_channel_mean_over_its_taps():
    model = nn.Sequential(nn.Conv1d(3, 2, 4))
    x = torch.randn(5, 3, 9, generator=_gen(0))
    (work,) = trace_workload(model, x, measure_activity=True)
    assert (work.rows, work.cols, work.mvms) == (12, 2, 6)
    xn = (x / x.abs().max()).abs()
    expected = torch.stack([xn[:, c].mean() for c in range(3) for _ in range(4)])
    torch.testing.assert_close(work.row_activity_abs, expected)
    assert math.isclose(work.macs, 6 * 12 * 2)
