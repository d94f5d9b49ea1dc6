"""`Chip`: reproducible sampled hardware instances, deploy() semantics and device faults."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import analogtorch as at

PCM = at.HardwareProfile.preset("pcm")


def _mlp_on(profile: at.HardwareProfile) -> nn.Module:
    torch.manual_seed(0)  # parameter initialisation only; every draw below is seeded
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    return at.convert(model, profile).eval()


def _input(shape: tuple[int, ...] = (8, 12), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _read(chip: at.Chip, model: nn.Module, x: torch.Tensor, time_s: float) -> torch.Tensor:
    with chip.deploy(model, time_s=time_s), torch.no_grad():
        return model(x)


def test_same_chip_seed_gives_bit_identical_outputs():
    model, x = _mlp_on(PCM), _input()
    a = _read(at.Chip(PCM, seed=11), model, x, 3600.0)
    b = _read(at.Chip(PCM, seed=11), model, x, 3600.0)
    assert torch.equal(a, b)


def test_same_chip_seed_is_identical_across_separately_converted_models():
    x = _input()
    a = _read(at.Chip(PCM, seed=11), _mlp_on(PCM), x, 60.0)
    b = _read(at.Chip(PCM, seed=11), _mlp_on(PCM), x, 60.0)
    assert torch.equal(a, b)


def test_different_chip_seeds_give_different_outputs():
    model, x = _mlp_on(PCM), _input()
    a = _read(at.Chip(PCM, seed=11), model, x, 3600.0)
    b = _read(at.Chip(PCM, seed=12), model, x, 3600.0)
    assert not torch.allclose(a, b)


def test_reading_one_chip_at_one_time_in_two_deploys_is_identical():
    model, x, chip = _mlp_on(PCM), _input(), at.Chip(PCM, seed=3)
    first = _read(chip, model, x, 100.0)
    second = _read(chip, model, x, 100.0)
    assert torch.equal(first, second)


def test_reads_within_one_deploy_draw_fresh_read_noise():
    model, x, chip = _mlp_on(PCM), _input(), at.Chip(PCM, seed=3)
    with chip.deploy(model, time_s=100.0), torch.no_grad():
        first, second = model(x), model(x)
    assert not torch.equal(first, second)


def test_reading_one_chip_at_different_times_differs():
    model, x, chip = _mlp_on(PCM), _input(), at.Chip(PCM, seed=3)
    assert not torch.allclose(_read(chip, model, x, 100.0), _read(chip, model, x, 1e6))


def test_layers_return_to_their_own_behaviour_after_deploy():
    model, x = _mlp_on(PCM), _input()
    with torch.no_grad():
        before = model(x)
    on_chip = _read(at.Chip(PCM, seed=1), model, x, 3600.0)
    with torch.no_grad():
        after = model(x)
    assert not torch.allclose(before, on_chip)
    assert torch.equal(before, after)
    assert all(layer.chip_read is None for layer in at.nn.analog_layers(model).values())


def test_layers_return_to_their_own_behaviour_when_deploy_body_raises():
    model, x = _mlp_on(PCM), _input()
    with torch.no_grad():
        before = model(x)
    with pytest.raises(RuntimeError, match="inside deploy"), at.Chip(PCM, seed=1).deploy(model):
        raise RuntimeError("inside deploy")
    assert all(layer.chip_read is None for layer in at.nn.analog_layers(model).values())
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_ideal_chip_reproduces_the_digital_model():
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    analog = at.convert(digital, at.HardwareProfile.preset("ideal"))
    x = _input()
    with torch.no_grad():
        expected = digital(x)
    # Deployed, the analog layers take the full surrogate path (not the digital shortcut).
    got = _read(at.Chip(at.HardwareProfile.preset("ideal"), seed=0), analog, x, 1e5)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


class _TwoLayers(nn.Module):
    """Two analog layers registered in a chosen order (named_modules follows it)."""

    def __init__(self, profile: at.HardwareProfile, order: tuple[str, ...]) -> None:
        super().__init__()
        for name in order:
            n_in = 6 if name == "encoder" else 5
            layer = at.AnalogLinear(n_in, 3, profile=profile)
            with torch.no_grad():
                seed = 1 if name == "encoder" else 2
                g = torch.Generator().manual_seed(seed)
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
                layer.bias.zero_()
                layer.input_range.fill_(2.0)
                layer.input_range_initialized.fill_(True)
            setattr(self, name, layer)


# Every programming-time random effect, and no read noise (so outputs are deterministic).
PROGRAMMING_ONLY = at.HardwareProfile(
    prog_noise_std=0.1,
    mismatch_std=0.05,
    stuck_rate=0.05,
    drift_nu_mean=0.05,
    drift_nu_std=0.02,
    drift_t0_seconds=20.0,
)


def _per_layer_outputs(model: _TwoLayers, chip: at.Chip) -> dict[str, torch.Tensor]:
    x_enc, x_dec = _input((4, 6), seed=1), _input((4, 5), seed=2)
    outputs = {}
    with chip.deploy(model, time_s=1000.0), torch.no_grad():
        for name, module in model.named_children():
            outputs[name] = module(x_enc if name == "encoder" else x_dec)
    return outputs


def test_programming_does_not_depend_on_the_order_layers_are_deployed():
    forward = _per_layer_outputs(
        _TwoLayers(PROGRAMMING_ONLY, ("encoder", "decoder")), at.Chip(PROGRAMMING_ONLY, seed=9)
    )
    backward = _per_layer_outputs(
        _TwoLayers(PROGRAMMING_ONLY, ("decoder", "encoder")), at.Chip(PROGRAMMING_ONLY, seed=9)
    )
    alone = _per_layer_outputs(
        _TwoLayers(PROGRAMMING_ONLY, ("decoder",)), at.Chip(PROGRAMMING_ONLY, seed=9)
    )
    assert torch.equal(forward["encoder"], backward["encoder"])
    assert torch.equal(forward["decoder"], backward["decoder"])
    assert torch.equal(forward["decoder"], alone["decoder"])


def test_program_layer_state_depends_on_the_layer_name_not_the_call_order():
    weight = torch.randn(3, 7, generator=torch.Generator().manual_seed(0))
    tiling = at.AnalogLinear(7, 3, profile=PROGRAMMING_ONLY).row_tiling(PROGRAMMING_ONLY)
    chip_a, chip_b = at.Chip(PROGRAMMING_ONLY, 4), at.Chip(PROGRAMMING_ONLY, 4)
    a1 = chip_a.program_layer("first", weight, tiling)
    a2 = chip_a.program_layer("second", weight, tiling)
    b2 = chip_b.program_layer("second", weight, tiling)
    b1 = chip_b.program_layer("first", weight, tiling)
    for x, y in ((a1, b1), (a2, b2)):
        assert torch.equal(x.g_plus, y.g_plus) and torch.equal(x.g_minus, y.g_minus)
        assert torch.equal(x.nu_plus, y.nu_plus) and torch.equal(x.nu_minus, y.nu_minus)
    assert not torch.equal(a1.g_plus, a2.g_plus)  # each name draws its own devices


def test_chip_reprograms_a_layer_whose_weights_changed():
    profile = at.HardwareProfile(dac_bits=8, adc_bits=8, adc_range=12.0)
    model, x, chip = _mlp_on(profile), _input(), at.Chip(profile, seed=0)
    first = _read(chip, model, x, 0.0)
    with torch.no_grad():
        model[2].weight.mul_(-1.0)
        model[2].bias.zero_()
    second = _read(chip, model, x, 0.0)
    with torch.no_grad():
        expected = model(x)  # same quantisation and circuit, no noise: the new weights
    assert not torch.allclose(first, second)
    assert torch.equal(second, expected)


def test_chip_reprograms_a_layer_whose_weights_changed_through_data():
    # ``weight.data`` edits (weight clipping, pruning) do not bump ``weight._version``; the
    # programming cache must still notice that the weights are different.
    ideal = at.HardwareProfile.preset("ideal")
    model, x, chip = _mlp_on(ideal), _input(), at.Chip(ideal, seed=0)
    _read(chip, model, x, 0.0)
    model[2].weight.data.mul_(-1.0)
    got = _read(chip, model, x, 0.0)
    with torch.no_grad():
        expected = model(x)  # the ideal profile's digital path: exactly W x + b
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


def _positive_weights(n_rows: int = 4, n_cols: int = 50_001) -> torch.Tensor:
    """Weights in (0.05, 0.95) with a row max of exactly 1 in column 0."""
    weight = torch.empty(n_rows, n_cols).uniform_(
        0.05, 0.95, generator=torch.Generator().manual_seed(0)
    )
    weight[:, 0] = 1.0
    return weight


def _program(profile: at.HardwareProfile, weight: torch.Tensor, seed: int = 0):
    layer = at.AnalogLinear(weight.shape[1], weight.shape[0], profile=profile)
    return at.Chip(profile, seed).program_layer("fc", weight, layer.row_tiling(profile))


def test_stuck_devices_occur_at_the_profile_rate_and_split_on_and_off():
    rate, on_fraction = 0.2, 0.25
    profile = at.HardwareProfile(stuck_rate=rate, stuck_on_fraction=on_fraction)
    programmed = _program(profile, _positive_weights())
    # Column 0 (the row max, G+ = 1) is excluded; every other healthy G+ is in (0, 1)
    # and every healthy G- is exactly 0.
    g_plus = programmed.g_plus[:, 1:].flatten().double()
    g_minus = programmed.g_minus[:, 1:].flatten().double()
    n = g_plus.numel()
    p_on, p_off = rate * on_fraction, rate * (1 - on_fraction)

    def within_binomial(fraction: torch.Tensor, p: float) -> bool:
        return abs(fraction.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)

    assert within_binomial(g_plus == 1.0, p_on)
    assert within_binomial(g_plus == 0.0, p_off)
    assert within_binomial((g_plus == 0.0) | (g_plus == 1.0), rate)
    assert within_binomial(g_minus == 1.0, p_on)
    assert within_binomial(g_minus == 0.0, 1 - p_on)
    # The healthy devices keep their programmed value.
    healthy = (g_plus > 0) & (g_plus < 1)
    assert torch.equal(g_plus[healthy], _positive_weights()[:, 1:].flatten().double()[healthy])


def test_no_device_is_stuck_when_the_stuck_rate_is_zero():
    programmed = _program(at.HardwareProfile(stuck_rate=0.0), _positive_weights(1, 10_001))
    assert torch.equal(programmed.g_plus, _positive_weights(1, 10_001))


def test_mismatch_changes_weights_multiplicatively():
    sigma_m = 0.1
    profile = at.HardwareProfile(mismatch_std=sigma_m)
    weight = _positive_weights()
    programmed = _program(profile, weight)
    # A device that is off stays off: mismatch is a gain, not an offset.
    assert torch.equal(programmed.g_minus, torch.zeros_like(weight))
    ratio = (programmed.g_plus / weight).double()
    n = ratio.numel()
    assert abs(ratio.mean().item() - 1.0) < 5 * sigma_m / math.sqrt(n)
    assert ratio.std().item() == pytest.approx(sigma_m, rel=0.02)
    # The relative spread is the same for small and for large conductances.
    small, large = ratio[weight < 0.3], ratio[weight > 0.7]
    assert small.std().item() == pytest.approx(sigma_m, rel=0.05)
    assert large.std().item() == pytest.approx(sigma_m, rel=0.05)


def test_deploy_on_a_model_without_analog_layers_raises_value_error():
    chip = at.Chip(PCM, seed=0)
    with pytest.raises(ValueError, match="no analog layers"), chip.deploy(nn.Linear(3, 2)):
        pass


def test_chip_rejects_a_profile_that_is_not_a_hardware_profile():
    with pytest.raises(TypeError, match="HardwareProfile"):
        at.Chip({"prog_noise_std": 0.1}, seed=0)  # type: ignore[arg-type]
