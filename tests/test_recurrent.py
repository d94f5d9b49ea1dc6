"""Analog LSTM / GRU: torch's recurrences with every gate product read from a crossbar.

References are torch's own ``nn.LSTM`` / ``nn.GRU`` with the same weights (outputs, final
states, gradients), the analytic read-noise variance of the profile, and per-step read
counts.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import analogtorch as at
from analogtorch.nn import AnalogGRU, AnalogLayerMixin, AnalogLSTM, analog_layers

IDEAL = at.HardwareProfile.preset("ideal")
PCM = at.HardwareProfile.preset("pcm")
# Not the digital fast path (a fixed weight range maps every weight through the crossbar),
# yet exact up to float rounding: no converters, no noise.
EXACT = at.HardwareProfile(weight_range=100.0)
PROFILES = pytest.mark.parametrize("profile", [IDEAL, EXACT], ids=["ideal", "exact-analog"])
KINDS = pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
ANALOG_OF = {nn.LSTM: AnalogLSTM, nn.GRU: AnalogGRU}
N_IN, HIDDEN, STEPS, BATCH = 5, 6, 7, 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _digital(kind: type[nn.RNNBase], seed: int = 0, **options) -> nn.RNNBase:
    torch.manual_seed(seed)
    return kind(N_IN, HIDDEN, **options)


def _initial_states(rnn: nn.RNNBase, batch: int | None, seed: int = 1):
    """States inside (-0.9, 0.9): tanh-bounded, as the W_hh DAC range expects."""
    shape = (rnn.num_layers * (2 if rnn.bidirectional else 1), *([batch] if batch else []))
    shape = (*shape, HIDDEN)
    gen = _gen(seed)
    h0 = torch.empty(shape, dtype=rnn.all_weights[0][0].dtype).uniform_(-0.9, 0.9, generator=gen)
    if isinstance(rnn, nn.LSTM):
        return h0, torch.empty_like(h0).uniform_(-2.0, 2.0, generator=gen)
    return h0


def _tensors(result) -> list[torch.Tensor]:
    """``output, states`` flattened: [output, h_n] or [output, h_n, c_n]."""
    output, states = result
    return [output, *(states if isinstance(states, tuple) else (states,))]


def _assert_same(got, expected, tol: float = 1e-5) -> None:
    for g, e in zip(_tensors(got), _tensors(expected), strict=True):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol)


def _torch_name_to_crossbar(name: str) -> str:
    """``weight_ih_l0_reverse`` -> ``l0_reverse.ih.weight``: the analog layer's layout."""
    kind, product, cell = name.split("_", 2)
    return f"{cell}.{product}.{kind}"


# -- outputs and final states match torch --------------------------------------------------

CONFIGS = [
    {"num_layers": 1, "bidirectional": False, "batch_first": False, "bias": True},
    {"num_layers": 2, "bidirectional": False, "batch_first": True, "bias": False},
    {"num_layers": 1, "bidirectional": True, "batch_first": True, "bias": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": False, "bias": True},
]


@pytest.mark.parametrize("given_hx", [False, True], ids=["zero-hx", "given-hx"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
@PROFILES
@KINDS
def test_converted_rnn_reproduces_torch_outputs_and_final_states(kind, profile, config, given_hx):
    digital = _digital(kind, **config)
    analog = at.convert(digital, profile)
    assert type(analog) is ANALOG_OF[kind]
    shape = (BATCH, STEPS, N_IN) if config["batch_first"] else (STEPS, BATCH, N_IN)
    x = torch.randn(shape, generator=_gen(0))
    hx = _initial_states(digital, BATCH) if given_hx else None
    with torch.no_grad():
        _assert_same(analog(x, hx), digital(x, hx))


@PROFILES
@KINDS
def test_unbatched_sequences_match_torch(kind, profile):
    digital = _digital(kind, num_layers=2, bidirectional=True)
    analog = at.convert(digital, profile)
    x = torch.randn(STEPS, N_IN, generator=_gen(0))
    hx = _initial_states(digital, None)
    with torch.no_grad():
        _assert_same(analog(x, hx), digital(x, hx))


@KINDS
def test_packed_sequences_of_unequal_lengths_match_torch(kind):
    digital = _digital(kind, num_layers=2, bidirectional=True, batch_first=True)
    analog = at.convert(digital, EXACT)
    x = torch.randn(4, STEPS, N_IN, generator=_gen(0))
    packed = pack_padded_sequence(x, [5, STEPS, 2, STEPS], batch_first=True, enforce_sorted=False)
    hx = _initial_states(digital, 4)
    with torch.no_grad():
        (got, got_states), (expected, expected_states) = analog(packed, hx), digital(packed, hx)
    assert torch.equal(got.batch_sizes, expected.batch_sizes)
    assert torch.equal(got.sorted_indices, expected.sorted_indices)
    _assert_same((got.data, got_states), (expected.data, expected_states))


@KINDS
def test_dropout_between_layers_draws_what_torch_draws(kind):
    digital = _digital(kind, num_layers=3, dropout=0.5).train()
    analog = at.convert(digital, IDEAL)
    x = torch.randn(STEPS, BATCH, N_IN, generator=_gen(0))
    with torch.no_grad():
        torch.manual_seed(5)
        expected = digital(x)
        torch.manual_seed(5)
        got = analog(x)
        _assert_same(got, expected)
        evaluated = analog.eval()(x)
        assert not torch.allclose(evaluated[0], got[0])  # dropout did act in training
        _assert_same(evaluated, digital.eval()(x))


# -- gradients -----------------------------------------------------------------------------


@PROFILES
@KINDS
def test_gradients_match_torch_for_inputs_states_and_weights(kind, profile):
    digital = _digital(kind, num_layers=2, bidirectional=True, batch_first=True).double()
    analog = at.convert(digital, profile)
    x = torch.randn(BATCH, STEPS, N_IN, generator=_gen(0), dtype=torch.float64)
    hx = _initial_states(digital, BATCH)
    projection = torch.randn(BATCH, STEPS, 2 * HIDDEN, generator=_gen(2), dtype=torch.float64)

    def grads(model: nn.Module) -> list[torch.Tensor]:
        x_in = x.clone().requires_grad_()
        states = [t.clone().requires_grad_() for t in (hx if isinstance(hx, tuple) else (hx,))]
        output, *finals = _tensors(model(x_in, tuple(states) if len(states) == 2 else states[0]))
        loss = (output * projection).sum() + sum((f**2).sum() for f in finals)
        loss.backward()
        return [x_in.grad, *(s.grad for s in states)]

    # the analog path carries its DAC range in float32: float32 rounding there
    tol = 1e-9 if profile.is_ideal else 1e-6
    for got, expected in zip(grads(analog), grads(digital), strict=True):
        torch.testing.assert_close(got, expected, atol=tol, rtol=tol)
    for name, parameter in digital.named_parameters():
        crossbar = analog.get_parameter(_torch_name_to_crossbar(name))
        torch.testing.assert_close(crossbar.grad, parameter.grad, atol=tol, rtol=tol)


# -- conversion ----------------------------------------------------------------------------


class Tagger(nn.Module):
    """An LSTM over a sequence and a linear read-out of its last step."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(N_IN, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_convert_puts_the_weights_on_two_crossbars_per_layer_and_direction():
    torch.manual_seed(0)
    amodel = at.convert(Tagger(), PCM)
    rnn = amodel.rnn
    assert isinstance(rnn, nn.LSTM) and type(rnn) is AnalogLSTM
    assert not isinstance(rnn, AnalogLayerMixin)  # its crossbars are the analog layers
    assert list(rnn.parameters(recurse=False)) == []
    assert set(analog_layers(amodel)) == {"rnn.l0.ih", "rnn.l0.hh", "head"}
    assert rnn.layer_name == "rnn"
    assert rnn.l0.ih.layer_name == "rnn.l0.ih" and rnn.l0.hh.layer_name == "rnn.l0.hh"
    assert tuple(rnn.l0.ih.weight.shape) == (4 * HIDDEN, N_IN)
    assert tuple(rnn.l0.hh.weight.shape) == (4 * HIDDEN, HIDDEN)
    assert rnn.l0.ih.noise_seed != rnn.l0.hh.noise_seed


@KINDS
def test_constructor_initialises_the_weights_as_torch_does(kind):
    torch.manual_seed(3)
    analog = ANALOG_OF[kind](N_IN, HIDDEN, num_layers=2, profile=IDEAL)
    digital = _digital(kind, seed=3, num_layers=2)
    for name, parameter in digital.named_parameters():
        assert torch.equal(analog.get_parameter(_torch_name_to_crossbar(name)), parameter)
    ranges = {n: p.clone() for n, p in analog.named_parameters() if n.endswith("_range")}
    analog.reset_parameters()
    assert all(torch.equal(analog.get_parameter(n), r) for n, r in ranges.items())


@KINDS
def test_to_digital_round_trips_the_torch_layer(kind):
    digital = _digital(kind, num_layers=2, bidirectional=True, bias=False, batch_first=True)
    back = at.convert(digital, IDEAL).to_digital()
    assert type(back) is kind
    assert back.state_dict().keys() == digital.state_dict().keys()
    for key, value in digital.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert type(at.nn.unconvert(at.convert(digital, IDEAL))) is kind


def test_to_digital_holds_the_quantised_weights_of_each_crossbar():
    digital = _digital(nn.GRU, bidirectional=True)
    analog = at.convert(digital, at.HardwareProfile(weight_bits=4))
    back = analog.to_digital()
    for name, value in back.named_parameters():
        crossbar, _, kind = _torch_name_to_crossbar(name).rpartition(".")
        held = analog.get_submodule(crossbar).to_digital().get_parameter(kind)
        assert torch.equal(value, held), name
    assert not torch.equal(back.weight_hh_l0, digital.weight_hh_l0)  # rounded to 4 bits


@KINDS
def test_torch_checkpoints_load_strictly_into_the_analog_layer(kind):
    digital = _digital(kind, num_layers=2, bidirectional=True)
    analog = at.convert(_digital(kind, seed=9, num_layers=2, bidirectional=True), EXACT)
    analog.load_state_dict(digital.state_dict())
    x = torch.randn(STEPS, BATCH, N_IN, generator=_gen(0))
    with torch.no_grad():
        _assert_same(analog(x), digital(x))


def test_copies_and_dtype_changes_keep_the_layer_working():
    digital = _digital(nn.LSTM, num_layers=2)
    analog = copy.deepcopy(at.convert(digital, EXACT)).double()
    x = torch.randn(STEPS, BATCH, N_IN, generator=_gen(0), dtype=torch.float64)
    with torch.no_grad():
        _assert_same(analog(x), digital.double()(x), tol=1e-10)
    assert len(analog.all_weights) == 2 and len(analog.all_weights[0]) == 4


# -- refusals ------------------------------------------------------------------------------


def test_projections_are_refused_naming_proj_size():
    with pytest.raises(ValueError, match="proj_size=3"):
        at.convert(nn.LSTM(N_IN, HIDDEN, proj_size=3), PCM)


@pytest.mark.parametrize(
    ("x", "hx", "error", "match"),
    [
        (torch.zeros(STEPS, BATCH, 4), None, ValueError, "input_size=5"),
        (torch.zeros(STEPS, BATCH, N_IN), torch.zeros(1, BATCH, HIDDEN), TypeError, "h_0, c_0"),
        (
            torch.zeros(STEPS, BATCH, N_IN),
            (torch.zeros(2, BATCH, HIDDEN), torch.zeros(2, BATCH, HIDDEN)),
            ValueError,
            r"\(1, 3, 6\)",
        ),
        (torch.zeros(0, BATCH, N_IN), None, ValueError, "0 time steps"),
    ],
    ids=["input-size", "hx-not-a-pair", "hx-shape", "empty"],
)
def test_wrong_inputs_are_refused_naming_the_layer(x, hx, error, match):
    rnn = nn.Sequential(nn.LSTM(N_IN, HIDDEN))
    analog = at.convert(rnn, PCM)[0]
    with pytest.raises(error, match=match) as info:
        analog(x, hx)
    assert "AnalogLSTM '0'" in str(info.value)


# -- hardware: noise, chips, energy --------------------------------------------------------


def test_recurrent_read_draws_fresh_noise_of_the_profiles_variance_every_step():
    sigma_r = 0.05
    digital = _digital(nn.GRU)
    analog = at.convert(digital, at.HardwareProfile(read_noise_std=sigma_r)).train()
    crossbar = analog.l0.hh
    reads: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = crossbar.register_forward_hook(lambda m, args, y: reads.append((args[0], y)))
    n = 2000  # identical sequences: the spread across the batch is the noise
    x = torch.randn(3, 1, N_IN, generator=_gen(0)).expand(-1, n, -1)
    h0 = _initial_states(digital, 1).expand(-1, n, -1)
    with torch.no_grad():
        analog(x, h0)
    handle.remove()
    assert len(reads) == 3  # one read of W_hh per time step

    weight, bias = crossbar.weight.detach().double(), crossbar.bias.detach().double()
    r_in = float(crossbar.input_range.detach())
    row_scale = weight.abs().amax(dim=1)  # per-row max |W|: the crossbar's weight scale
    normalised = []
    for h, y in reads:
        h = h.double()
        variance = sigma_r**2 * ((h / r_in) ** 2).sum(-1, keepdim=True) * (row_scale * r_in) ** 2
        normalised.append((y.double() - (h @ weight.T + bias)) / variance.sqrt())
    for z in normalised:
        assert abs(float(z.mean())) < 5 / z.numel() ** 0.5
        assert abs(float(z.var()) - 1) < 0.05
    for a, b in [(0, 1), (1, 2), (0, 2)]:  # fresh draws: no correlation between steps
        correlation = torch.corrcoef(
            torch.stack([normalised[a].flatten(), normalised[b].flatten()])
        )
        assert abs(float(correlation[0, 1])) < 0.05


def test_chip_deploy_runs_a_converted_lstm_reproducibly_per_chip_seed():
    torch.manual_seed(0)
    amodel = at.convert(Tagger(), PCM).eval()
    x = torch.randn(BATCH, STEPS, N_IN, generator=_gen(0))

    def on_chip(seed: int) -> torch.Tensor:
        with at.Chip(PCM, seed=seed).deploy(amodel):
            return amodel(x)

    first = on_chip(1)
    assert torch.equal(first, on_chip(1))
    assert not torch.allclose(first, on_chip(2))
    assert amodel.rnn.l0.hh.chip_read is None  # the chip is gone after deploy


def test_energy_counts_one_recurrent_and_one_input_read_per_time_step():
    torch.manual_seed(0)
    amodel = at.convert(Tagger(), PCM)
    report = at.energy.estimate(amodel, input_shape=(STEPS, N_IN))
    layers = {cost.name: cost for cost in report.layers}
    assert layers["rnn.l0.hh"].mvms == pytest.approx(STEPS)
    assert layers["rnn.l0.ih"].mvms == pytest.approx(STEPS)
    assert layers["head"].mvms == pytest.approx(1)
    assert layers["rnn.l0.hh"].macs == pytest.approx(STEPS * HIDDEN * 4 * HIDDEN)
