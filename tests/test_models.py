"""Reference architectures: shapes, structure, seeding, and the equilibrium net's solve."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from analogtorch.demo import build_mlp as demo_build_mlp
from analogtorch.models import (
    MODELS,
    TiedFixedPointNet,
    build_model,
    build_resnet_cifar,
    build_small_cnn,
)


def _parameters_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_model_maps_a_batch_to_logits(name):
    model, input_shape = build_model(name, seed=0)
    assert input_shape == MODELS[name].input_shape
    logits = model(torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(1)))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_unknown_model_name_lists_the_known_names():
    with pytest.raises(ValueError, match="cifar-resnet20"):
        build_model("resnet-9000")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_gives_identical_parameters_and_other_seed_differs(name):
    first, _ = build_model(name, seed=3)
    again, _ = build_model(name, seed=3)
    other, _ = build_model(name, seed=4)
    assert _parameters_equal(first, again)
    assert not _parameters_equal(first, other)


def test_building_a_model_leaves_the_global_rng_untouched():
    state = torch.random.get_rng_state()
    build_model("mnist-cnn", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_resnet20_has_he_et_al_structure_and_size():
    model = build_resnet_cifar(depth=20)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # stem + 2 convs x 3 blocks x 3 stages + 2 projection shortcuts
    assert len(convs) == 1 + 18 + 2
    assert sum(m.kernel_size == (1, 1) for m in convs) == 2
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 1
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.26e6 <= n_params <= 0.28e6  # He et al. (2016), Table 6: 0.27 M


def test_resnet_depth_sets_blocks_per_stage():
    model = build_resnet_cifar(depth=32)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 1 + 30 + 2


@pytest.mark.parametrize("depth", [19, 21, 2, 0])
def test_resnet_rejects_depth_not_six_n_plus_two(depth):
    with pytest.raises(ValueError, match=f"depth={depth}"):
        build_resnet_cifar(depth=depth)


def test_small_cnn_follows_image_size():
    model = build_small_cnn(in_channels=3, num_classes=5, width=8, image_size=32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_demo_mlp_matches_a_hand_built_reference():
    hidden, seed = 32, 7
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reference = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )
    model = demo_build_mlp(hidden, seed)
    assert [type(m) for m in model] == [type(m) for m in reference]
    expected = reference.state_dict()
    actual = model.state_dict()
    assert list(actual) == list(expected)
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key


def _random_images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_equilibrium_core_has_the_requested_spectral_norm():
    net = TiedFixedPointNet(784, width=64, contraction=0.7)
    assert torch.linalg.matrix_norm(net.core.weight.detach(), ord=2).item() == pytest.approx(
        0.7, rel=1e-5
    )
    with torch.no_grad():
        net.core.weight.mul_(3.0)
    net.renormalize_()
    assert torch.linalg.matrix_norm(net.core.weight.detach(), ord=2).item() == pytest.approx(
        0.7, rel=1e-5
    )


def test_equilibrium_converges_to_a_fixed_point():
    net = TiedFixedPointNet(784, width=64, tol=1e-5, max_iter=100)
    x = _random_images()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = net.equilibrium(x).detach()
    assert net.last_converged
    assert 1 < net.last_iterations < net.max_iter
    with torch.no_grad():
        u = net.inject(x.flatten(1))
        step = torch.relu(net.core(z) + u) - z
    relative = step.norm(dim=-1) / z.norm(dim=-1)
    assert relative.max().item() < net.tol


def test_equilibrium_gradient_reaches_every_layer():
    net = TiedFixedPointNet(784, width=32)
    net(_random_images()).sum().backward()
    for name in ("inject", "core", "head"):
        grad = getattr(net, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_equilibrium_warns_instead_of_failing_silently():
    net = TiedFixedPointNet(784, width=32, tol=1e-12, max_iter=1)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        logits = net(_random_images())
    assert not net.last_converged
    assert net.last_iterations == 2  # one solver iteration + the differentiable JFB step
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("field", "value"),
    [("contraction", 1.0), ("contraction", 0.0), ("tol", 0.0), ("max_iter", 0)],
)
def test_equilibrium_rejects_invalid_settings(field, value):
    with pytest.raises(ValueError, match=f"{field}={value}"):
        TiedFixedPointNet(784, **{field: value})
