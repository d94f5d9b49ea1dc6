"""Hardware-in-the-loop: backends, the virtual chip, learned twins, the loop and training.

References are computed independently: ``x Wᵀ`` by hand, read-noise statistics from the
profile, and the HIL gradient by the chain rule evaluated at the backend's activations.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.hil.backend import Backend, BackendInputError, check_inputs
from analogtorch.hil.loop import HardwareLoop
from analogtorch.hil.surrogate_backend import SurrogateBackend
from analogtorch.hil.train import HILResult, evaluate_on_backend, hil_train, twin_train
from analogtorch.hil.twin import LayerTwin
from analogtorch.hil.virtual_chip import VirtualChip

IDEAL = at.HardwareProfile.preset("ideal")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


class ScaledBackend:
    """A fake chip computing ``gain · x Wᵀ`` exactly; counts programmings per layer."""

    name = "scaled"

    def __init__(self, gain: float = 2.0) -> None:
        self.gain = gain
        self.weights: dict[str, torch.Tensor] = {}
        self.ranges: dict[str, float] = {}
        self.programs: dict[str, int] = {}
        self._calls = 0

    @property
    def calls(self) -> int:
        return self._calls

    def program(self, layer: str, weight: torch.Tensor, input_range: float) -> None:
        self.weights[layer] = weight.detach().clone()
        self.ranges[layer] = input_range
        self.programs[layer] = self.programs.get(layer, 0) + 1

    def mvm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        w = self.weights[layer]
        check_inputs(layer, x, self.ranges[layer], w.shape[1])
        self._calls += x.shape[0]
        return self.gain * x @ w.T

    def time_since_programming(self, layer: str) -> float:
        return 0.0


def ideal_mlp(seed: int = 0, input_range: float | None = None) -> nn.Module:
    torch.manual_seed(seed)
    digital = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    model = at.convert(digital, IDEAL).eval()
    if input_range is not None:
        for layer in (model[1], model[3]):
            with torch.no_grad():
                layer.input_range.fill_(input_range)
                layer.input_range_initialized.fill_(True)
    return model


# -- SurrogateBackend ---------------------------------------------------------------------


def test_surrogate_backend_on_ideal_profile_computes_x_wt():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=gen)
    x = 2.0 * (2 * torch.rand(9, 7, generator=gen) - 1)
    backend = SurrogateBackend(IDEAL)
    assert backend.program("layer", w, 2.0) is None
    assert rel_err(backend.mvm("layer", x), x @ w.T) < 1e-5


def test_surrogate_backend_read_noise_is_fresh_and_unbiased():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 6, generator=gen)
    x = 2 * torch.rand(3, 6, generator=gen) - 1
    sigma = 0.05
    backend = SurrogateBackend(IDEAL.replace(read_noise_std=sigma), seed=3)
    backend.program("layer", w, 1.0)
    reads = torch.stack([backend.mvm("layer", x) for _ in range(400)])
    assert not torch.equal(reads[0], reads[1])
    ref = x @ w.T
    # std of y[b, o] = sigma · s_o · r · ‖x_b / r‖ with s_o = max_i |W_oi| (weights / s_o on
    # the devices, inputs / r on the DAC)
    std = sigma * w.abs().amax(dim=1) * x.norm(dim=1, keepdim=True)
    assert ((reads.mean(0) - ref).abs() < 4 * std / 400**0.5).all()
    ratio = float(reads.std(0).square().sum() / std.square().sum()) ** 0.5
    assert ratio == pytest.approx(1.0, rel=0.1)


def test_surrogate_backend_counts_input_vectors():
    backend = SurrogateBackend(IDEAL)
    backend.program("a", torch.ones(3, 4), 1.0)
    backend.program("b", torch.ones(2, 3), 1.0)
    backend.mvm("a", torch.zeros(5, 4))
    backend.mvm("b", torch.zeros(7, 3))
    assert backend.calls == 12


def test_surrogate_backend_rejects_bad_inputs_and_unknown_layers():
    backend = SurrogateBackend(IDEAL)
    backend.program("fc1", torch.ones(3, 4), 0.5)
    with pytest.raises(BackendInputError, match="fc1"):
        backend.mvm("fc1", torch.full((2, 4), 0.6))
    with pytest.raises(BackendInputError, match="fc1"):
        backend.mvm("fc1", torch.zeros(2, 5))
    with pytest.raises(KeyError):
        backend.mvm("fc2", torch.zeros(2, 4))
    assert backend.calls == 0
    assert issubclass(BackendInputError, ValueError)


def test_backends_satisfy_the_protocol():
    assert isinstance(SurrogateBackend(IDEAL), Backend)
    assert isinstance(VirtualChip(seed=0), Backend)
    assert isinstance(ScaledBackend(), Backend)


def test_surrogate_backend_clock_advances_and_restarts_on_programming():
    backend = SurrogateBackend(IDEAL, time_s=60.0)
    backend.program("layer", torch.ones(2, 2), 1.0)
    assert backend.time_since_programming("layer") == 60.0
    backend.advance(30.0)
    assert backend.time_since_programming("layer") == 90.0
    backend.program("layer", torch.ones(2, 2), 1.0)
    assert backend.time_since_programming("layer") == 60.0
    with pytest.raises(ValueError, match="seconds"):
        backend.advance(-1.0)
    with pytest.raises(ValueError, match="time_s"):
        SurrogateBackend(IDEAL, time_s=-1.0)


# -- VirtualChip --------------------------------------------------------------------------


def chip_reads(chip: VirtualChip, w: torch.Tensor, x: torch.Tensor, n: int) -> list[torch.Tensor]:
    chip.program("layer", w, 1.0)
    return [chip.mvm("layer", x) for _ in range(n)]


@pytest.fixture
def chip_problem() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(6, 12, generator=gen), 2 * torch.rand(8, 12, generator=gen) - 1


def test_virtual_chip_repr_hides_the_design():
    chip = VirtualChip(seed=0)
    design = chip._profile
    text = repr(chip)
    assert "hidden" in text
    for value in (design.read_noise_std, design.mismatch_std, design.wire_resistance_ohm):
        assert f"{value}"[:5] not in text
    for word in ("sinh", "virtual", "noise", "drift", "seed"):
        assert word not in text


def test_virtual_chip_is_reproducible_per_call_sequence(chip_problem):
    w, x = chip_problem
    first = chip_reads(VirtualChip(seed=5), w, x, 3)
    second = chip_reads(VirtualChip(seed=5), w, x, 3)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    # fresh read noise: the same chip read twice at the same time differs
    assert not torch.equal(first[0], first[1])


def test_virtual_chip_device_instances_differ(chip_problem):
    w, x = chip_problem
    a = chip_reads(VirtualChip(seed=0), w, x, 1)[0]
    b = chip_reads(VirtualChip(seed=1), w, x, 1)[0]
    # device-to-device differences are far above the read noise between two reads
    noise = rel_err(*chip_reads(VirtualChip(seed=0), w, x, 2))
    assert rel_err(a, b) > 3 * noise


def test_virtual_chip_deviates_from_ideal_product(chip_problem):
    w, x = chip_problem
    y = chip_reads(VirtualChip(seed=0), w, x, 1)[0]
    assert rel_err(y, x @ w.T) > 0.05


# -- LayerTwin ----------------------------------------------------------------------------


def known_map(nominal: torch.Tensor) -> torch.Tensor:
    return 1.3 * nominal + 0.2 + 0.1 * torch.tanh(nominal)


def test_twin_fit_recovers_known_map():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    nominal = 2 * torch.randn(256, 5, generator=gen)
    twin = LayerTwin(5)
    error = twin.fit(nominal, known_map(nominal))
    assert error < 0.02
    held_out = 2 * torch.randn(256, 5, generator=gen)
    with torch.no_grad():
        assert rel_err(twin(held_out), known_map(held_out)) < 0.02
    assert all(not p.requires_grad for p in twin.parameters())


def test_twin_starts_as_identity():
    x = torch.randn(4, 3)
    assert torch.equal(LayerTwin(3)(x), x)


def test_twin_fit_rejects_mismatched_pairs():
    twin = LayerTwin(3)
    with pytest.raises(ValueError, match="pairs"):
        twin.fit(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="pairs"):
        twin.fit(torch.zeros(10), torch.zeros(10))


# -- HardwareLoop -------------------------------------------------------------------------


def test_backend_mode_on_ideal_backend_reproduces_the_model():
    model = ideal_mlp()
    x = 0.25 * (2 * torch.rand(32, 16, generator=torch.Generator().manual_seed(0)) - 1)
    with torch.no_grad():
        expected = model(x)
        hidden = model[2](model[1](x))
        # the layers' DAC full scale is never initialised on the digital path (see below)
        assert hidden.abs().max() <= model[3].input_range
        backend = SurrogateBackend(IDEAL)
        with HardwareLoop(model, backend, mode="backend"):
            logits = model(x)
    assert torch.allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert backend.calls == 2 * 32


def test_backend_mode_on_ideal_backend_reproduces_the_model_for_large_inputs():
    model = ideal_mlp()
    x = 3 * torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        with HardwareLoop(model, SurrogateBackend(IDEAL), mode="backend"):
            logits = model(x)
    assert torch.allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_hil_value_is_backend_and_gradient_is_nominal_at_backend_outputs():
    torch.manual_seed(0)
    model = at.convert(nn.Sequential(nn.Linear(4, 3)), IDEAL).eval()
    w, b = model[0].weight, model[0].bias
    gen = torch.Generator().manual_seed(1)
    x = (2 * torch.rand(5, 4, generator=gen) - 1).requires_grad_(True)
    target = torch.randn(5, 3, generator=gen)
    with HardwareLoop(model, ScaledBackend(2.0), mode="hil"):
        y = model(x)
    loss = 0.5 * (y - target).square().sum()
    loss.backward()
    with torch.no_grad():
        y_backend = 2 * x @ w.T + b
        residual = y_backend - target  # dL/dy at the backend's output
        assert torch.allclose(y, y_backend, atol=1e-6)
        assert float(loss) == pytest.approx(float(0.5 * residual.square().sum()), rel=1e-6)
        # identity twin: dy/dW is the nominal layer's, i.e. d(x Wᵀ + b)/dW
        assert torch.allclose(w.grad, residual.T @ x, atol=1e-5)
        assert torch.allclose(b.grad, residual.sum(0), atol=1e-5)
        assert torch.allclose(x.grad, residual @ w, atol=1e-5)
        nominal_grad = (x @ w.T + b - target).T @ x
        assert not torch.allclose(w.grad, nominal_grad, atol=1e-2)


def test_hil_gradient_follows_the_twin_gain():
    torch.manual_seed(0)
    model = at.convert(nn.Sequential(nn.Linear(4, 3)), IDEAL).eval()
    twin = LayerTwin(3)
    with torch.no_grad():
        twin.gain.copy_(torch.tensor([3.0, 1.0, 0.5]))
    x = 2 * torch.rand(5, 4) - 1
    target = torch.randn(5, 3)
    with HardwareLoop(model, ScaledBackend(2.0), mode="hil", twins={"0": twin}):
        y = model(x)
    (0.5 * (y - target).square().sum()).backward()
    w, b = model[0].weight, model[0].bias
    with torch.no_grad():
        residual = 2 * x @ w.T + b - target
        assert torch.allclose(y, residual + target, atol=1e-6)
        assert torch.allclose(w.grad, (residual * twin.gain).T @ x, atol=1e-5)


def test_hil_gradient_of_two_layers_uses_backend_activations():
    model = ideal_mlp(seed=1, input_range=20.0)
    w1, b1, w2, b2 = model[1].weight, model[1].bias, model[3].weight, model[3].bias
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 16, generator=gen)
    target = torch.randn(6, 4, generator=gen)
    with HardwareLoop(model, ScaledBackend(2.0), mode="hil"):
        y = model(x)
    (0.5 * (y - target).square().sum()).backward()
    with torch.no_grad():
        pre = 2 * x @ w1.T + b1
        h = pre.clamp_min(0)
        out = 2 * h @ w2.T + b2
        assert torch.allclose(y, out, atol=1e-5)
        residual = out - target
        assert torch.allclose(w2.grad, residual.T @ h, atol=1e-4)
        grad_pre = (residual @ w2) * (pre > 0)
        assert torch.allclose(w1.grad, grad_pre.T @ x, atol=1e-4)
        assert torch.allclose(b1.grad, grad_pre.sum(0), atol=1e-4)


def test_hil_keeps_pairs_for_twin_fits():
    model = ideal_mlp(input_range=20.0)
    x = torch.randn(4, 16)
    with HardwareLoop(model, ScaledBackend(2.0), mode="hil", buffer_batches=2) as loop:
        for _ in range(3):
            model(x)
    assert set(loop.pairs) == {"1", "3"}
    assert len(loop.pairs["1"]) == 2
    nominal, measured = loop.pairs["1"][-1]
    assert torch.allclose(measured - model[1].bias, 2 * (nominal - model[1].bias), atol=1e-5)


def test_layers_are_reprogrammed_only_when_weights_change():
    model = ideal_mlp(input_range=20.0)
    backend = ScaledBackend(1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 16)
    with HardwareLoop(model, backend, mode="hil"):
        model(x)
        model(x)
        assert backend.programs == {"1": 1, "3": 1}
        model(x).square().sum().backward()
        opt.step()
        model(x)
        assert backend.programs == {"1": 2, "3": 2}
        with torch.no_grad():
            model[3].weight.mul_(0.5)
        y = model(x)
        assert backend.programs == {"1": 2, "3": 3}
    assert torch.equal(backend.weights["3"], model[3].weight.detach())
    with torch.no_grad():
        assert torch.allclose(y, model(x), atol=1e-5)


def test_weights_edited_through_data_are_reprogrammed():
    model = ideal_mlp(input_range=20.0)
    backend = ScaledBackend(1.0)
    x = torch.randn(4, 16)
    with HardwareLoop(model, backend, mode="backend"):
        model(x)
        model[3].weight.data.mul_(0.5)
        model(x)
    assert backend.programs["3"] == 2


def test_budget_falls_back_to_twin_in_hil_mode():
    model = at.convert(nn.Sequential(nn.Linear(4, 3)), IDEAL).eval()
    backend = ScaledBackend(2.0)
    x = 2 * torch.rand(4, 4) - 1
    with torch.no_grad():
        nominal = model(x)
        with HardwareLoop(model, backend, mode="hil", budget=10) as loop:
            outputs = [model(x) for _ in range(3)]
    assert backend.calls == 8
    assert loop.budget_left == 2
    b = model[0].bias
    assert torch.allclose(outputs[0], 2 * (nominal - b) + b, atol=1e-6)
    assert torch.allclose(outputs[1], outputs[0])
    assert torch.allclose(outputs[2], nominal, atol=1e-6)  # identity twin


def test_budget_exhausted_raises_in_backend_mode():
    model = at.convert(nn.Sequential(nn.Linear(4, 3)), IDEAL).eval()
    backend = ScaledBackend(2.0)
    x = 2 * torch.rand(4, 4) - 1
    with torch.no_grad(), HardwareLoop(model, backend, mode="backend", budget=10):
        model(x)
        model(x)
        with pytest.raises(RuntimeError, match="budget"):
            model(x)
    assert backend.calls == 8


def test_loop_validates_model_mode_and_budget():
    backend = ScaledBackend()
    with pytest.raises(ValueError, match="analog"):
        HardwareLoop(nn.Sequential(nn.Linear(4, 3)), backend)
    model = ideal_mlp()
    with pytest.raises(ValueError, match="mode"):
        HardwareLoop(model, backend, mode="chip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget"):
        HardwareLoop(model, backend, budget=-1)


def test_loop_removes_its_hooks_on_exit():
    model = ideal_mlp(input_range=20.0)
    backend = ScaledBackend(2.0)
    x = torch.randn(4, 16)
    with torch.no_grad():
        expected = model(x)
        with HardwareLoop(model, backend, mode="backend"):
            assert not torch.allclose(model(x), expected)
        assert torch.equal(model(x), expected)


# -- hil_train / twin_train ---------------------------------------------------------------

BATCH, N_BATCHES, LAYERS, CAL = 16, 6, 2, 2


@pytest.fixture(scope="module")
def blobs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    centers = 1.5 * torch.randn(4, 16, generator=gen)
    labels = torch.randint(0, 4, (N_BATCHES * BATCH,), generator=gen)
    x = centers[labels] + 0.5 * torch.randn(N_BATCHES * BATCH, 16, generator=gen)
    return list(zip(x.split(BATCH), labels.split(BATCH), strict=True))


def pcm_mlp() -> nn.Module:
    torch.manual_seed(0)
    profile = at.HardwareProfile.preset("pcm").scale_noise(0.5)
    return at.convert(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), profile)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_hil_train_lowers_loss_and_counts_backend_calls(blobs):
    model = pcm_mlp()
    steps = 30
    result = hil_train(
        model,
        VirtualChip(seed=0),
        blobs,
        steps=steps,
        lr=1e-2,
        calibration_batches=CAL,
        recalibrate_every=10,
        twin_steps=50,
    )
    assert isinstance(result, HILResult)
    assert len(result.losses) == steps
    assert mean(result.losses[-5:]) < mean(result.losses[:5])
    assert result.backend_calls == BATCH * LAYERS * (steps + CAL)
    assert result.twin_only_from_step is None
    assert len(result.twin_errors) == 1 + steps // 10
    assert set(result.twins) == {"0", "2"}
    accuracy = evaluate_on_backend(model, VirtualChip(seed=0), blobs)
    assert isinstance(accuracy, float)
    assert 0.0 <= accuracy <= 1.0


def test_twin_train_calls_backend_only_to_calibrate(blobs):
    model = pcm_mlp()
    chip = VirtualChip(seed=0)
    result = twin_train(
        model, chip, blobs, steps=20, lr=1e-2, calibration_batches=CAL, twin_steps=50
    )
    assert result.backend_calls == chip.calls == BATCH * LAYERS * CAL
    assert len(result.losses) == 20
    assert mean(result.losses[-5:]) < mean(result.losses[:5])
    assert len(result.twin_errors) == 1


def test_hil_train_switches_to_twin_when_budget_is_spent(blobs):
    model = pcm_mlp()
    chip = VirtualChip(seed=0)
    budget = BATCH * LAYERS * (CAL + 3)  # calibration and three training steps
    result = hil_train(
        model, chip, blobs, steps=6, lr=1e-2, budget=budget, calibration_batches=CAL, twin_steps=20
    )
    assert result.twin_only_from_step == 3
    assert result.backend_calls == budget
    assert len(result.losses) == 6


def test_hil_train_never_exceeds_budget(blobs):
    budget = BATCH  # less than the calibration batches need
    result = hil_train(
        pcm_mlp(), VirtualChip(seed=0), blobs, steps=2, budget=budget, calibration_batches=CAL
    )
    assert result.backend_calls <= budget


def test_training_needs_at_least_one_step(blobs):
    with pytest.raises(ValueError, match="steps"):
        hil_train(pcm_mlp(), VirtualChip(seed=0), blobs, steps=0)
    with pytest.raises(ValueError, match="steps"):
        twin_train(pcm_mlp(), VirtualChip(seed=0), blobs, steps=0)


def test_evaluate_on_ideal_backend_matches_digital_accuracy(blobs):
    model = at.convert(nn.Sequential(nn.Linear(16, 4)), IDEAL).eval()
    with torch.no_grad():
        model[0].input_range.fill_(20.0)
        digital = mean([float((model(x).argmax(1) == y).float().mean()) for x, y in blobs])
    assert evaluate_on_backend(model, SurrogateBackend(IDEAL), blobs) == pytest.approx(digital)
