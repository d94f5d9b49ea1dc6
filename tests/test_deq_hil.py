"""HIL fine-tuning of a hybrid DEQ: the curriculum's last stage (``deq/hil_stage.py``).

References are independent of the code under test: the plain DEQ on the same weights (a
noise-free backend on the layer's own profile must reproduce it), central finite
differences of a fixed point computed by plain iteration in float64 (the HIL gradient with
an exact twin), and read counts from the solver's own iteration count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import analogtorch as at
from analogtorch.deq.hil_stage import (
    UnconvergedSolvesWarning,
    evaluate_on_backend,
    finetune_on_backend,
)
from analogtorch.deq.hybrid import build_hybrid_deq
from analogtorch.deq.options import SolverOptions
from analogtorch.deq.study import complete_config, load_study, run_deq_study
from analogtorch.hil.backend import check_inputs
from analogtorch.hil.loop import HardwareLoop
from analogtorch.hil.surrogate_backend import SurrogateBackend
from analogtorch.hil.twin import LayerTwin
from analogtorch.runs import config_hash

IDEAL = at.HardwareProfile.preset("ideal")
# noise-free, with 8-bit weights, DAC and ADC, a sinh device I-V and IR drop: deterministic
PHYSICAL = (
    at.HardwareProfile.preset("pcm")
    .scale_noise(0.0)
    .replace(weight_bits=8, transfer_curve="sinh", transfer_nonlinearity=2.0)
)
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments" / "deq"
FEEDBACK = "deq.f_module.feedback"  # the core's analog layer, as HardwareLoop names it

# SHA-256 (first 16 hex digits) of each shipped DEQ study config as `analogtorch deq study`
# fingerprints it (mnist-plain-cc and physics-pi-cc-full use `train.schedule`, the others
# were measured before `train.hil` existed). A change restarts those runs.
PINNED = {
    "fmnist-conv": "ccc18f2e962f5bcf",
    "fmnist-hybrid": "177746893f93f151",
    "mnist-hybrid": "d52b6954a390a9b4",
    "mnist-plain-cc": "738c1ea3452137b3",
    "mnist-relaxation": "791f984c2becdb19",
    "pendulum-swingup": "c9080985b7ecfd27",
    "physics-pi-cc": "572bad3e681463f8",
    "physics-pi-cc-full": "6a7d4b7422034d13",
    "physics-tasks": "fcd5e10b71797f7e",
}


class GainBackend:
    """A fake chip computing ``(x Wᵀ) ⊙ gain`` exactly (a per-column gain error)."""

    name = "gain"

    def __init__(self, gain: torch.Tensor) -> None:
        self.gain = gain
        self.weights: dict[str, torch.Tensor] = {}
        self.ranges: dict[str, float] = {}
        self._calls = 0

    @property
    def calls(self) -> int:
        return self._calls

    def program(self, layer: str, weight: torch.Tensor, input_range: float) -> None:
        self.weights[layer] = weight.detach().clone()
        self.ranges[layer] = input_range

    def mvm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        w = self.weights[layer]
        check_inputs(layer, x, self.ranges[layer], w.shape[1])
        self._calls += x.shape[0]
        return (x @ w.T) * self.gain

    def time_since_programming(self, layer: str) -> float:
        return 0.0


def small_deq(profile: at.HardwareProfile, options: SolverOptions, **kwargs) -> at.deq.HybridDEQ:
    model = build_hybrid_deq(
        12, 3, profile, width=6, forward_options=options, contraction=0.8, seed=0, **kwargs
    )
    return model.eval()


def batch(n: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_hil_forward_on_a_noise_free_backend_of_the_profile_equals_the_plain_deq():
    model = small_deq(PHYSICAL, SolverOptions(tol=1e-4, max_iter=60))
    x, _ = batch(16)
    with torch.no_grad():
        plain = model(x)
        plain_iterations = model.last_forward_stats.iterations
        backend = SurrogateBackend(PHYSICAL, time_s=0.0)
        with HardwareLoop(model, backend, mode="hil", grad_on_twin=True):
            hil = model(x)
    assert torch.equal(hil, plain)
    assert model.last_forward_stats.iterations == plain_iterations


def test_hil_gradient_with_identity_twin_on_an_exact_backend_is_the_plain_deq_gradient():
    options = SolverOptions(tol=1e-7, mode="absolute", max_iter=200, detect_noise_floor=False)
    model = small_deq(IDEAL, options, digital_bits=None)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    plain = grads(model)
    model.zero_grad(set_to_none=True)
    with HardwareLoop(model, SurrogateBackend(IDEAL), mode="hil", grad_on_twin=True):
        F.cross_entropy(model(x), y).backward()
    hil = grads(model)
    assert plain.keys() == hil.keys() and len(plain) >= 4  # encoder, core, head
    for name in plain:
        assert torch.allclose(hil[name], plain[name], rtol=1e-4, atol=1e-6), name


def _reference_loss(
    w_enc: torch.Tensor,
    b_enc: torch.Tensor,
    w_core: torch.Tensor,
    w_head: torch.Tensor,
    b_head: torch.Tensor,
    gain: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """The loss with the hardware's map ``z = tanh((z W_zᵀ) ⊙ gain + u)``, its fixed point by
    plain iteration in float64 (the map is a contraction: 400 steps are exact)."""
    u = x @ w_enc.T + b_enc
    z = torch.zeros_like(u)
    for _ in range(400):
        z = torch.tanh((z @ w_core.T) * gain + u)
    return F.cross_entropy(z @ w_head.T + b_head, y)


def test_hil_implicit_gradient_with_an_exact_twin_matches_finite_differences():
    torch.manual_seed(0)
    options = SolverOptions(tol=1e-12, mode="absolute", max_iter=300, detect_noise_floor=False)
    model = small_deq(IDEAL, options, digital_bits=None).double()
    gain = torch.tensor([1.3, 0.8, 1.1, 0.9, 1.2, 0.7], dtype=torch.float64)
    twin = LayerTwin(6).double()
    with torch.no_grad():
        twin.gain.copy_(gain)  # the twin is exact: T(ŷ) = gain ⊙ ŷ = B(z)
    x, y = batch()
    x = x.double()
    backend = GainBackend(gain)
    loop = HardwareLoop(model, backend, mode="hil", twins={FEEDBACK: twin}, grad_on_twin=True)
    with loop:
        F.cross_entropy(model(x), y).backward()
    enc, core, head = model.encoder[1], model.core.feedback, model.head
    tensors = [enc.weight, enc.bias, core.weight, head.weight, head.bias]
    params = [t.detach().clone() for t in tensors]
    eps = 1e-6
    for index, tensor in ((0, enc.weight), (2, core.weight), (3, head.weight)):
        for i, j in ((0, 0), (1, 2), (2, 5)):
            shifted = []
            for sign in (1, -1):
                moved = [p.clone() for p in params]
                moved[index][i, j] += sign * eps
                shifted.append(_reference_loss(*moved, gain, x, y))
            numeric = float((shifted[0] - shifted[1]) / (2 * eps))
            assert float(tensor.grad[i, j]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("grad_on_twin", [True, False])
def test_every_solver_iteration_is_one_backend_read_and_the_backward_reads_none(grad_on_twin):
    model = small_deq(PHYSICAL, SolverOptions(tol=1e-4, max_iter=60))
    x, y = batch(8)
    backend = SurrogateBackend(PHYSICAL, time_s=0.0)
    with HardwareLoop(model, backend, mode="hil", grad_on_twin=grad_on_twin) as loop:
        F.cross_entropy(model(x), y).backward()
    iterations = model.last_forward_stats.iterations
    assert iterations > 3
    # without the switch, the backward's evaluation of the core at z* is one read more
    assert loop.calls == backend.calls == (iterations + (not grad_on_twin)) * len(x)
    assert model.deq.last_backward_stats.iterations > 0  # the adjoint ran, on the twin


def test_grad_on_twin_is_refused_outside_hil_mode():
    model = small_deq(IDEAL, SolverOptions())
    with pytest.raises(ValueError, match="grad_on_twin=True applies to mode='hil'"):
        HardwareLoop(model, SurrogateBackend(IDEAL), mode="backend", grad_on_twin=True)


def test_non_convergence_on_a_noisy_backend_is_reported_and_never_nan():
    noisy = PHYSICAL.replace(read_noise_std=0.05)
    model = small_deq(PHYSICAL, SolverOptions(tol=1e-6, max_iter=30))
    x, y = batch(64)
    with pytest.warns(UnconvergedSolvesWarning, match=r"6 of 6 forward solves stopped"):
        run, solves = finetune_on_backend(
            model, SurrogateBackend(noisy), x, y, "classification", steps=6, lr=1e-3, batch_size=32
        )
    assert solves["solves"] == 6 and solves["converged_fraction"] == 0.0
    assert set(solves["reasons"]) <= {"noise floor", "max_iter"}
    assert all(torch.isfinite(torch.tensor(run.losses)))
    assert run.backend_calls > 0 and model.core.contraction_bound() <= 0.8 + 1e-6
    record = evaluate_on_backend(model, SurrogateBackend(noisy), x, y, "classification")
    assert record["solves"]["converged_fraction"] == 0.0 and 0 <= record["error"] <= 100
    assert record["reads"] == record["solves"]["iterations"] * len(x)


def test_hil_fine_tuning_lowers_the_loss_on_a_chip_with_a_gain_error():
    gain = torch.tensor([1.6, 0.5, 1.4, 0.6, 1.5, 0.4])
    model = small_deq(IDEAL, SolverOptions(tol=1e-5, max_iter=80), digital_bits=None)
    x, y = batch(64, seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        run, solves = finetune_on_backend(
            model, GainBackend(gain), x, y, "classification", steps=40, lr=2e-2, batch_size=64
        )
    assert solves["converged_fraction"] == 1.0  # exact backend: every solve reaches tol
    assert run.losses[-1] < 0.8 * run.losses[0]
    assert run.twin_errors[0][FEEDBACK] < 1e-2  # gain ⊙ ŷ is within the twin's family


def test_relaxation_forward_is_refused_with_the_reason():
    model = small_deq(IDEAL, SolverOptions()).with_forward("relaxation")
    x, y = batch()
    with pytest.raises(ValueError, match="needs forward='solver'"):
        finetune_on_backend(model, SurrogateBackend(IDEAL), x, y, "classification", steps=1)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_deq_configs_keep_their_digests(name):
    config = load_study(EXPERIMENTS / f"{name}.yaml")
    assert "hil" not in config["train"]
    assert config_hash(json.loads(json.dumps(config, default=str)))[:16] == PINNED[name]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arms": ["physics-aware", "hil"]}, "the arm hil and train.hil: {...} go together"),
        ({"train": {"hil": {}}}, "the arm hil and train.hil: {...} go together"),
        ({"arms": ["hil"], "train": {"hil": {"steps": 0}}}, "train.hil.steps=0"),
        ({"arms": ["hil"], "train": {"hil": {"backend": "spice"}}}, "train.hil.backend='spice'"),
    ],
)
def test_hil_stage_config_is_checked(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        complete_config({"name": "s", "task": "mnist", **changes}, "s.yaml")


def test_the_hil_arm_scores_each_method_on_each_virtual_chip(tmp_path):
    config = complete_config(
        {
            "name": "tiny-hil",
            "task": "linear",
            "n_train": 64,
            "n_test": 32,
            "model": {"width": 8, "max_iter": 20},
            "train": {
                "epochs": 1,
                "batch_size": 32,
                "hil": {"chips": [0, 1], "steps": 2, "twin_steps": 5, "calibration_batches": 1},
            },
            "arms": ["physics-aware", "hil"],
            "eval": {"chips": 1, "time_s": 0.0},
            "relaxation": False,
        }
    )
    assert config["train"]["hil"]["twin"] is True
    with pytest.warns(UnconvergedSolvesWarning):
        report = run_deq_study(config, tmp_path)
    (cell,) = [
        c for c in json.loads((tmp_path / "summary.json").read_text())["cells"] if c["arm"] == "hil"
    ]
    assert [c["chip"] for c in cell["hil"]] == [0, 1]
    for chip in cell["hil"]:
        assert chip["HIL"]["training_reads"] > 0 and chip["I/O twin"]["training_reads"] > 0
        assert chip["HIL"]["training_solves"]["solves"] == 2
    assert "Arm `hil`" in report and "| nominal | HIL |" in report
    assert yaml.safe_dump(config)  # plain data, as the run folder stores it
