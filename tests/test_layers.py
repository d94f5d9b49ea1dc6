"""Analog layers and `convert`: drop-in replacements for nn.Linear / nn.Conv2d."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.nn import analog_layers

PCM = at.HardwareProfile.preset("pcm")
IDEAL = at.HardwareProfile.preset("ideal")
# Noise-free but quantised: deterministic in every mode, yet not the digital fast path.
QUANTISED = at.HardwareProfile(dac_bits=8, adc_bits=8, weight_bits=6)


def make_mlp(seed: int = 0, n_in: int = 8, hidden: int = 16, n_out: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class ConvNet(nn.Module):
    """Linear and conv layers nested one and two levels deep."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_convnet(seed: int = 0) -> ConvNet:
    torch.manual_seed(seed)
    return ConvNet()


# -- subclassing and convert ---------------------------------------------------------------


def test_analog_layers_subclass_the_torch_layers_they_replace():
    linear = at.AnalogLinear(3, 2, profile=PCM)
    conv = at.AnalogConv2d(2, 3, 3, profile=PCM)
    assert isinstance(linear, nn.Linear)
    assert isinstance(conv, nn.Conv2d)


def test_convert_returns_a_copy_and_leaves_the_original_untouched():
    model = make_convnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    amodel = at.convert(model, PCM)

    assert amodel is not model
    assert type(model.features[0]) is nn.Conv2d
    assert type(model.head[1]) is nn.Linear
    original_ptrs = {p.data_ptr() for p in model.parameters()}
    assert not original_ptrs & {p.data_ptr() for p in amodel.parameters()}

    with torch.no_grad():
        for p in amodel.parameters():
            p.add_(1.0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_convert_replaces_nested_linear_and_conv_layers_with_the_same_weights():
    model = make_convnet()
    amodel = at.convert(model, PCM)

    assert isinstance(amodel, ConvNet)
    assert type(amodel.features[0]) is at.AnalogConv2d
    assert type(amodel.head[1]) is at.AnalogLinear
    assert set(analog_layers(amodel)) == {"features.0", "head.1"}
    assert torch.equal(amodel.features[0].weight, model.features[0].weight)
    assert torch.equal(amodel.head[1].bias, model.head[1].bias)
    assert amodel.head[1].profile == PCM


def test_convert_keeps_skipped_layers_digital():
    amodel = at.convert(make_convnet(), PCM, skip=["head.1"])
    assert type(amodel.head[1]) is nn.Linear
    assert type(amodel.features[0]) is at.AnalogConv2d


def test_convert_rejects_unknown_skip_names_listing_the_modules():
    with pytest.raises(ValueError, match="no_such_layer") as info:
        at.convert(make_convnet(), PCM, skip=["no_such_layer"])
    message = str(info.value)
    for name in ("features.0", "head.1"):
        assert name in message


def test_convert_of_a_bare_linear_returns_an_analog_linear():
    torch.manual_seed(0)
    linear = nn.Linear(5, 3)
    alinear = at.convert(linear, PCM)
    assert type(alinear) is at.AnalogLinear
    assert type(linear) is nn.Linear
    assert torch.equal(alinear.weight, linear.weight)
    assert alinear.weight.data_ptr() != linear.weight.data_ptr()


# -- state_dict ----------------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_eval_outputs():
    amodel = at.convert(make_mlp(seed=0), PCM)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    amodel.train()
    amodel(x)  # initialises the DAC ranges
    with torch.no_grad():
        amodel[2].output_range.mul_(0.7)  # a range that differs from its initial value
    state = amodel.state_dict()
    assert {"0.input_range", "0.output_range", "0.input_range_initialized"} <= set(state)

    fresh = at.convert(make_mlp(seed=1), PCM)
    fresh.load_state_dict(state)
    amodel.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), amodel(x))


def test_digital_state_dict_loads_strictly_into_a_converted_model():
    digital = make_mlp(seed=3)
    amodel = at.convert(make_mlp(seed=4), PCM)
    result = amodel.load_state_dict(digital.state_dict(), strict=True)

    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(amodel[0].weight, digital[0].weight)
    assert torch.equal(amodel[2].bias, digital[2].bias)


def test_strict_loading_still_rejects_missing_weights_and_unexpected_keys():
    amodel = at.convert(make_mlp(), PCM)
    state = make_mlp().state_dict()
    del state["0.weight"]
    with pytest.raises(RuntimeError, match=r"0\.weight"):
        amodel.load_state_dict(state, strict=True)
    state = make_mlp().state_dict()
    state["0.bogus"] = torch.zeros(())
    with pytest.raises(RuntimeError, match=r"0\.bogus"):
        amodel.load_state_dict(state, strict=True)


# -- training ------------------------------------------------------------------------------


def separable_problem(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs in 8-D, labels 0/1."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    centers = torch.tensor([[-1.0] * 8, [1.0] * 8])
    x = centers[y] + 0.5 * torch.randn(n, 8, generator=gen)
    return x, y


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        lambda params: torch.optim.Adam(params, lr=1e-2),
    ],
    ids=["sgd", "adam"],
)
def test_standard_optimizers_reduce_the_loss_in_train_mode(make_optimizer):
    x, y = separable_problem()
    amodel = at.seed_noise(at.convert(make_mlp(n_out=2), PCM), 0)
    loss_fn = nn.CrossEntropyLoss()

    def eval_loss() -> float:
        amodel.eval()
        with torch.no_grad():
            return loss_fn(amodel(x), y).item()

    amodel.train()
    amodel(x)  # initialise the DAC ranges from the data
    initial = eval_loss()
    opt = make_optimizer(amodel.parameters())
    amodel.train()
    for _ in range(10):
        loss = loss_fn(amodel(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = eval_loss()
    assert final < 0.5 * initial
    for p in amodel.parameters():
        assert torch.isfinite(p).all()


# -- learned converter ranges --------------------------------------------------------------


def saturating_layer(learn_ranges: bool) -> tuple[at.AnalogLinear, torch.Tensor]:
    """A layer whose DAC and ADC both clip on the returned input."""
    profile = at.HardwareProfile(
        dac_bits=4, adc_bits=4, adc_range=0.5, prog_noise_std=0.02, learn_ranges=learn_ranges
    )
    torch.manual_seed(0)
    layer = at.AnalogLinear(8, 4, profile=profile)
    gen = torch.Generator().manual_seed(2)
    layer(0.1 * torch.randn(4, 8, generator=gen))  # input range from a small first batch
    x = 10.0 * torch.randn(32, 8, generator=gen)
    assert x.abs().max() > 10 * layer.input_range.abs()  # the DAC clips
    return layer, x


def test_learned_ranges_receive_finite_nonzero_gradients_when_converters_clip():
    layer, x = saturating_layer(learn_ranges=True)
    layer.train()
    layer(x).square().sum().backward()
    for param in (layer.input_range, layer.output_range):
        assert param.requires_grad
        assert param.grad is not None
        assert torch.isfinite(param.grad).all()
        assert param.grad.abs().item() > 0


def test_fixed_ranges_do_not_require_grad():
    layer, x = saturating_layer(learn_ranges=False)
    layer.train()
    layer(x).square().sum().backward()
    for param in (layer.input_range, layer.output_range):
        assert not param.requires_grad
        assert param.grad is None
    assert layer.weight.grad is not None


def test_input_range_is_initialised_once_from_the_first_batch():
    layer = at.AnalogLinear(4, 2, profile=PCM)
    first = torch.tensor([[0.5, -3.0, 1.0, 2.0]])
    layer(first)
    assert layer.input_range.item() == pytest.approx(3.0)
    assert bool(layer.input_range_initialized)
    layer(torch.full((2, 4), 10.0))
    layer.eval()
    layer(torch.full((2, 4), -20.0))
    assert layer.input_range.item() == pytest.approx(3.0)


def test_loaded_input_range_is_not_overwritten_by_the_next_batch():
    source = at.AnalogLinear(4, 2, profile=PCM)
    source(torch.full((1, 4), 1.7))
    target = at.AnalogLinear(4, 2, profile=PCM)
    target(torch.full((1, 4), 5.0))  # already initialised with another value
    target.load_state_dict(source.state_dict())
    target(torch.full((1, 4), 9.0))
    assert target.input_range.item() == pytest.approx(1.7)

    fresh = at.AnalogLinear(4, 2, profile=PCM)  # never run before loading
    fresh.load_state_dict(source.state_dict())
    fresh(torch.full((1, 4), 9.0))
    assert fresh.input_range.item() == pytest.approx(1.7)


# -- torch.compile -------------------------------------------------------------------------


def test_torch_compile_matches_eager_in_eval():
    amodel = at.convert(make_mlp(), QUANTISED).eval()
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = amodel(x)
        compiled = torch.compile(amodel)(x)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)


# -- noise ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile",
    [
        PCM,
        at.HardwareProfile(prog_noise_std=0.1),
        at.HardwareProfile(shot_noise_coeff=0.01, dac_bits=8, adc_bits=8),
    ],
    ids=["pcm", "weight-noise-only", "shot-noise-only"],
)
def test_all_zero_inputs_give_finite_outputs_and_gradients_in_noisy_training(profile):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    amodel = at.convert(model, profile).train()
    x = torch.zeros(3, 2, 4, 4, requires_grad=True)
    out = amodel(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in amodel.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_seed_noise_makes_training_forwards_reproducible():
    amodel = at.convert(make_mlp(), PCM).train()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    amodel(x)  # initialise ranges so both draws start from the same state

    def forward_with_seed(seed: int) -> torch.Tensor:
        at.seed_noise(amodel, seed)
        with torch.no_grad():
            return amodel(x)

    first, again, other = forward_with_seed(5), forward_with_seed(5), forward_with_seed(6)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_set_eval_noise_switches_eval_forwards_between_noisy_and_deterministic():
    amodel = at.convert(make_mlp(), PCM)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    amodel.eval()
    with torch.no_grad():
        assert torch.equal(amodel(x), amodel(x))
        at.set_eval_noise(amodel, True)
        assert not torch.allclose(amodel(x), amodel(x))
        at.set_eval_noise(amodel, False)
        assert torch.equal(amodel(x), amodel(x))


# -- convolution ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile",
    [IDEAL, at.HardwareProfile(weight_range=100.0, tile_rows=64)],
    ids=["ideal-fast-path", "exact-analog-path"],
)
def test_grouped_conv_matches_nn_conv2d_on_exact_hardware(profile):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2, groups=2)
    aconv = at.convert(conv, profile).eval()
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(aconv(x), conv(x), atol=1e-5, rtol=1e-5)


def test_analog_conv_rejects_same_padding():
    with pytest.raises(ValueError, match="padding"):
        at.AnalogConv2d(2, 2, 3, padding="same", profile=PCM)
    with pytest.raises(ValueError, match="padding"):
        at.convert(nn.Conv2d(2, 2, 3, padding="same"), PCM)


# -- bad input ------------------------------------------------------------------------------

PCM = at.HardwareProfile.preset("pcm")


def _analog(module: nn.Module) -> nn.Module:
    return at.convert(nn.Sequential(module), PCM)


@pytest.mark.parametrize(
    ("module", "x", "error", "match"),
    [
        (nn.Linear(6, 3), torch.rand(4, 3), ValueError, r"'0'.*\(\.\.\., 6\), got \(4, 3\)"),
        (nn.Linear(6, 3), torch.rand(2, 12), ValueError, r"got \(2, 12\)"),  # reshapeable
        (nn.Linear(6, 3), torch.rand(4, 6).double(), TypeError, "float64"),
        (nn.Linear(6, 3), torch.ones(4, 6, dtype=torch.long), TypeError, "int64"),
        (nn.Conv2d(3, 2, 3), torch.rand(2, 4, 5, 5), ValueError, r"\(N, 3, H, W\)"),
        (nn.Conv2d(3, 2, 3), torch.rand(5, 5), ValueError, r"got \(5, 5\)"),
        (nn.Conv2d(3, 2, 3), torch.rand(1, 1, 3, 5, 5), ValueError, r"got \(1, 1, 3, 5, 5\)"),
    ],
)
def test_a_wrong_input_raises_an_error_naming_the_layer(module, x, error, match):
    with pytest.raises(error, match=match):
        _analog(module)(x)


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.Linear(6, 3), (0, 6)),
        (nn.Linear(6, 3), (6,)),
        (nn.Conv2d(3, 2, 3), (0, 3, 5, 5)),
        (nn.Conv2d(3, 2, 3), (3, 5, 5)),
    ],
)
def test_empty_and_unbatched_inputs_give_the_shapes_torch_gives(module, shape):
    x = torch.rand(shape)
    analog = _analog(module)
    assert analog(x).shape == module(x).shape
    assert not bool(analog[0].input_range_initialized) or x.numel() > 0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_first_batch_is_refused_and_leaves_the_dac_range_unset(bad):
    analog = _analog(nn.Linear(6, 3)).train()
    x = torch.rand(4, 6)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"'0'.*NaN or inf"):
        analog(x)
    assert not bool(analog[0].input_range_initialized)
    analog(torch.rand(4, 6))
    assert torch.isfinite(analog[0].input_range).all()


def test_a_non_finite_sample_after_the_range_is_set_stays_in_its_own_row():
    analog = _analog(nn.Linear(6, 3)).eval()
    analog(torch.rand(4, 6))  # sets the DAC range
    x = torch.rand(4, 6)
    x[1, 0] = math.nan
    with torch.no_grad():
        y = analog(x)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2, 3]]).all()
