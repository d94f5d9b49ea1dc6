"""WGAN-GP training, the MLP baseline and the RBM baseline of the AIS generative models."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from analogtorch.ais.critic import ConvCritic
from analogtorch.ais.generator import ImageGenerator, count_parameters, sample_images
from analogtorch.ais.mlp_generator import MLPGenerator, mlp_matching
from analogtorch.ais.rbm import BernoulliRBM, RBMGenerator
from analogtorch.ais.wgan import HISTORY_KEYS, WGANConfig, gradient_penalty, train_wgan
from analogtorch.train.fit import TrainingDivergedError

SHAPE = (1, 2, 2)
PATTERN = torch.tensor([0.15, 0.85, 0.3, 0.9]).view(1, *SHAPE)


def _toy_data(n: int = 256) -> torch.Tensor:
    """Tiny images whose pixels cluster tightly around ``PATTERN``."""
    g = torch.Generator().manual_seed(0)
    return (PATTERN + 0.03 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)


def _models(seed: int = 0) -> tuple[MLPGenerator, ConvCritic]:
    torch.manual_seed(seed)
    return MLPGenerator(SHAPE, 2, hidden=(16,)), ConvCritic(SHAPE, width=8, n_downsample=1)


def _config(**overrides: object) -> WGANConfig:
    settings: dict[str, object] = dict(
        steps=20,
        batch_size=16,
        lr_g=3e-3,
        lr_d=3e-3,
        seed=7,
        sample_every=1000,
        checkpoint_every=5,
        log_every=5,
        grid_size=2,
    )
    settings.update(overrides)
    return WGANConfig(**settings)  # type: ignore[arg-type]


def _state(module: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in module.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# --- gradient penalty ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "expected"), [((1.0, 2.0, 2.0, 0.0), 4.0), ((0.6, 0.0, 0.8, 0.0), 0.0)]
)
def test_gradient_penalty_of_linear_critic_is_squared_norm_excess(
    w: tuple[float, ...], expected: float
) -> None:
    # D(x) = w·x has ∇_x D = w everywhere, so E[(‖∇D‖ − 1)²] = (‖w‖ − 1)² whatever ε is.
    linear = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([w]))

    def critic(x: torch.Tensor) -> torch.Tensor:
        return linear(x.flatten(1)).squeeze(1)

    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(8, *SHAPE, generator=g), torch.rand(8, *SHAPE, generator=g)
    penalty = gradient_penalty(critic, real, fake, g)
    assert penalty.item() == pytest.approx(expected, abs=1e-6)
    # d/dw (‖w‖ − 1)² = 2 (‖w‖ − 1) w / ‖w‖: the penalty must be differentiable in the critic.
    penalty.backward()
    w_t = torch.tensor([w])
    norm = w_t.norm()
    assert torch.allclose(linear.weight.grad, 2 * (norm - 1) * w_t / norm, atol=1e-6)


# --- training -----------------------------------------------------------------------------


def test_wgan_moves_generated_mean_onto_the_data_mean(tmp_path) -> None:
    data = _toy_data()
    gen, critic = _models()
    assert isinstance(gen, ImageGenerator)
    target = data.mean(0)
    before = (sample_images(gen, 512, seed=1).mean(0) - target).norm().item()
    train_wgan(
        gen,
        critic,
        data,
        _config(steps=100, checkpoint_every=100, lr_g=5e-3, lr_d=5e-3),
        tmp_path,
        progress=False,
    )
    after = (sample_images(gen, 512, seed=1).mean(0) - target).norm().item()
    assert before > 0.4  # sigmoid(≈0) ≈ 0.5 per pixel, far from the pattern
    assert after < before / 3, (before, after)


def test_resumed_run_ends_bit_identical_to_the_uninterrupted_run(tmp_path) -> None:
    data = _toy_data(64)
    gen_a, critic_a = _models()
    history_a = train_wgan(gen_a, critic_a, data, _config(steps=20), tmp_path / "a", progress=False)

    gen_b, critic_b = _models()
    train_wgan(gen_b, critic_b, data, _config(steps=10), tmp_path / "b", progress=False)
    gen_b, critic_b = _models(seed=123)  # fresh objects: everything must come from the file
    history_b = train_wgan(gen_b, critic_b, data, _config(steps=20), tmp_path / "b", progress=False)

    assert _same(_state(gen_a), _state(gen_b))
    assert _same(_state(critic_a), _state(critic_b))

    def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert without_time(history_a) == without_time(history_b)
    assert [r["step"] for r in history_b] == [5.0, 10.0, 15.0, 20.0]


class PoisonableCritic(ConvCritic):
    """Returns NaN scores once ``poisoned`` is set (a stand-in for a blown-up critic)."""

    poisoned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = super().forward(x)
        return scores * math.nan if self.poisoned else scores


def test_nan_critic_raises_naming_the_step_and_keeps_last_good_checkpoint(tmp_path) -> None:
    data = _toy_data(64)
    torch.manual_seed(0)
    gen = MLPGenerator(SHAPE, 2, hidden=(16,))
    critic = PoisonableCritic(SHAPE, width=8, n_downsample=1)

    def poison_after_step_7(_gen: object, step: int) -> None:
        if step == 7:
            critic.poisoned = True

    with pytest.raises(TrainingDivergedError, match="generator step 8"):
        train_wgan(
            gen,
            critic,
            data,
            _config(),
            tmp_path / "bad",
            progress=False,
            callbacks=[poison_after_step_7],
        )
    saved = torch.load(tmp_path / "bad" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 5

    clean_gen, clean_critic = _models()
    train_wgan(clean_gen, clean_critic, data, _config(steps=5), tmp_path / "ok", progress=False)
    assert _same(list(saved["generator"].values()), _state(clean_gen))
    history = json.loads((tmp_path / "bad" / "history.json").read_text())
    assert [r["step"] for r in history] == [5.0]


def test_sample_grids_and_history_are_written(tmp_path) -> None:
    gen, critic = _models()
    config = _config(steps=4, sample_every=2, log_every=2, checkpoint_every=4)
    history = train_wgan(gen, critic, _toy_data(32), config, tmp_path, progress=False)
    for step in (0, 2, 4):
        png = tmp_path / "samples" / f"step_{step:06d}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = json.loads((tmp_path / "history.json").read_text())
    assert records == history
    assert [r["step"] for r in records] == [2.0, 4.0]
    assert all(set(r) == set(HISTORY_KEYS) for r in records)
    assert all(math.isfinite(v) for r in records for v in r.values())


def test_after_generator_step_hook_sees_every_step(tmp_path) -> None:
    seen: list[int] = []

    class Projector:
        def after_generator_step(self, gen: MLPGenerator, step: int) -> None:
            seen.append(step)
            with torch.no_grad():
                gen.net[0].weight.clamp_(-0.1, 0.1)

    gen, critic = _models()
    train_wgan(
        gen,
        critic,
        _toy_data(32),
        _config(steps=3),
        tmp_path,
        progress=False,
        callbacks=[Projector()],
    )
    assert seen == [1, 2, 3]
    assert gen.net[0].weight.abs().max() <= 0.1


# --- models -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_params", [5_000, 20_000, 150_000])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mlp_matching_hits_the_parameter_count_within_5_percent(n_params: int, depth: int) -> None:
    gen = mlp_matching(n_params, (1, 14, 14), latent_dim=16, depth=depth)
    assert len(gen.hidden) == depth
    assert abs(count_parameters(gen) - n_params) <= 0.05 * n_params


def test_mlp_matching_rejects_unreachable_counts() -> None:
    with pytest.raises(ValueError, match="n_params"):
        mlp_matching(100, (1, 28, 28), latent_dim=16)


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (1, 14, 14), (3, 5, 7)])
def test_critic_scores_one_number_per_image(image_shape: tuple[int, int, int]) -> None:
    critic = ConvCritic(image_shape, width=4)
    assert critic(torch.rand(3, *image_shape)).shape == (3,)


def test_sample_images_is_independent_of_batch_size() -> None:
    gen, _ = _models()
    a = sample_images(gen, 10, seed=3, batch_size=3)
    b = sample_images(gen, 10, seed=3, batch_size=256)
    assert a.shape == (10, *SHAPE) and torch.allclose(a, b)
    assert a.min() >= 0 and a.max() <= 1


# --- RBM ----------------------------------------------------------------------------------


def _tiny_rbm() -> BernoulliRBM:
    rbm = BernoulliRBM(3, 2)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        rbm.weight.copy_(1.5 * torch.randn(3, 2, generator=g))
        rbm.visible_bias.copy_(torch.randn(3, generator=g))
        rbm.hidden_bias.copy_(torch.randn(2, generator=g))
    return rbm


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)))


def test_free_energy_and_log_partition_match_enumeration() -> None:
    rbm = _tiny_rbm()
    v, h = _states(3), _states(2)
    vv, hh = v.repeat_interleave(len(h), 0), h.repeat(len(v), 1)
    energy = rbm.energy(vv, hh).view(len(v), len(h)).detach()
    expected_f = -torch.logsumexp(-energy, dim=1)
    assert torch.allclose(rbm.free_energy(v).detach(), expected_f, atol=1e-5)
    assert rbm.log_partition().item() == pytest.approx(
        torch.logsumexp(-energy.flatten(), 0).item(), abs=1e-5
    )
    wide = BernoulliRBM(2, 3)  # enumerates the visible side instead
    with torch.no_grad():
        wide.weight.copy_(rbm.weight.T)
        wide.visible_bias.copy_(rbm.hidden_bias)
        wide.hidden_bias.copy_(rbm.visible_bias)
    assert wide.log_partition().item() == pytest.approx(rbm.log_partition().item(), abs=1e-5)


def test_gibbs_samples_follow_the_exact_visible_marginal() -> None:
    rbm = _tiny_rbm()
    v_states = _states(3)
    exact = torch.softmax(-rbm.free_energy(v_states).detach(), 0)  # p(v) ∝ exp(−F(v))
    g = torch.Generator().manual_seed(0)
    v = (torch.rand(20_000, 3, generator=g) < 0.5).float()
    counts = torch.zeros(8)
    with torch.no_grad():
        for sweep in range(40):
            v, _ = rbm.gibbs_step(v, g)
            if sweep >= 20 and sweep % 4 == 0:
                index = (v * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
                counts += torch.bincount(index, minlength=8)
    empirical = counts / counts.sum()
    total_variation = 0.5 * (empirical - exact).abs().sum().item()
    assert total_variation < 0.03, (empirical, exact)


def test_pcd_training_raises_exact_log_likelihood_to_the_teachers() -> None:
    # Data drawn exactly from a strongly coupled "teacher" RBM of the same size: PCD must
    # climb from the near-uniform start (−4 log 2) to about the teacher's own likelihood.
    teacher = BernoulliRBM(4, 3, seed=0, init_std=2.0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        teacher.visible_bias.copy_(torch.randn(4, generator=g))
        teacher.hidden_bias.copy_(torch.randn(3, generator=g))
    states = _states(4)
    p_teacher = torch.softmax(-teacher.free_energy(states).detach(), 0)
    data = states[torch.multinomial(p_teacher, 256, replacement=True, generator=g)]
    teacher_ll = teacher.log_likelihood(data).mean().item()

    rbm = BernoulliRBM(4, 3, seed=1)
    before = rbm.log_likelihood(data).mean().item()
    history = rbm.fit(data, epochs=20, batch_size=32, lr=0.1, k=1, seed=1)
    after = rbm.log_likelihood(data).mean().item()
    assert before == pytest.approx(-4 * math.log(2), abs=0.05)
    assert teacher_ll > before + 0.5  # the test has room to fail
    assert after > teacher_ll - 0.1, (before, after, teacher_ll)
    assert history[-1]["reconstruction_error"] < history[0]["reconstruction_error"]


def test_rbm_generator_returns_mean_field_images() -> None:
    rbm = _tiny_rbm()
    rbm4 = BernoulliRBM(4, 2)
    images = RBMGenerator(rbm4, (1, 2, 2)).sample(5, seed=0, gibbs_steps=3)
    assert images.shape == (5, 1, 2, 2) and images.min() >= 0 and images.max() <= 1
    again = RBMGenerator(rbm4, (1, 2, 2)).sample(5, seed=0, gibbs_steps=3)
    assert torch.equal(images, again)
    with pytest.raises(ValueError, match="n_visible"):
        RBMGenerator(rbm, (1, 2, 2))
