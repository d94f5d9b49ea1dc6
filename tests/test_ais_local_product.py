"""The local coupling product against the dense ``signal @ J^T``: values, gradients with
respect to ``J`` and the signal, whole samples of both AIS kinds, and every offset."""

from __future__ import annotations

import pytest
import torch

from analogtorch.ais.coupling_product import (
    DenseProduct,
    LocalProduct,
    LocalStencil,
    choose_product,
)
from analogtorch.ais.couplings import connectivity_mask
from analogtorch.ais.ising import IsingAIS
from analogtorch.ais.oscillators import OscillatorAIS
from analogtorch.hardware.profile import HardwareProfile

F64 = torch.float64
GRIDS = [((5, 6), 1, 0), ((5, 6), 2, 3), ((5, 6), 1, 3), ((3, 9), 2, 0), ((9, 16), 3, 2)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masked_couplings(grid: tuple[int, int], radius: int, n_hidden: int, dtype, seed: int):
    n_units = grid[0] * grid[1] + n_hidden
    mask = connectivity_mask("local", n_units, grid_shape=grid, radius=radius)
    values = torch.randn(n_units, n_units, generator=_gen(seed), dtype=F64)
    return ((values + values.T) * mask).to(dtype), mask


@pytest.mark.parametrize(("dtype", "tol"), [(F64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize(("grid", "radius", "n_hidden"), GRIDS)
def test_local_product_equals_dense_matmul(grid, radius, n_hidden, dtype, tol):
    couplings, _ = _masked_couplings(grid, radius, n_hidden, dtype, seed=0)
    stencil = LocalStencil(grid, radius, couplings.shape[0])
    signal = torch.randn(7, couplings.shape[0], generator=_gen(1), dtype=F64).to(dtype)
    reference = signal.double() @ couplings.double().T
    torch.testing.assert_close(
        LocalProduct(couplings, stencil)(signal).double(), reference, atol=tol, rtol=tol
    )


@pytest.mark.parametrize(("grid", "radius", "n_hidden"), GRIDS)
def test_local_product_gradients_equal_dense(grid, radius, n_hidden):
    """Gradients w.r.t. the signal everywhere and w.r.t. ``J`` on the mask (the only entries
    the couplings' parameters reach) equal those of ``signal @ J^T``."""
    values, mask = _masked_couplings(grid, radius, n_hidden, F64, seed=2)
    signal = torch.randn(4, values.shape[0], generator=_gen(3), dtype=F64)
    weight = torch.randn(4, values.shape[0], generator=_gen(4), dtype=F64)
    stencil = LocalStencil(grid, radius, values.shape[0])
    grads = []
    for make in (DenseProduct, lambda j: LocalProduct(j, stencil)):
        couplings, x = values.clone().requires_grad_(), signal.clone().requires_grad_()
        loss = (make(couplings)(x) * weight).sum()
        grads.append(torch.autograd.grad(loss, (couplings, x)))
    (dense_j, dense_x), (local_j, local_x) = grads
    torch.testing.assert_close(local_x, dense_x, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(local_j * mask, dense_j * mask, atol=1e-12, rtol=1e-12)
    n_grid = grid[0] * grid[1]
    assert torch.count_nonzero(local_j[:n_grid, :n_grid] * ~mask[:n_grid, :n_grid]) == 0


@pytest.mark.parametrize("radius", [1, 2])
@pytest.mark.parametrize("n_hidden", [0, 2])
def test_local_product_keeps_every_offset(radius, n_hidden):
    """A ``J`` with the single pair (p, p + o) for every pixel p and every in-range offset o
    in turn, the corners included: the product sees exactly that coupling."""
    grid, n_grid = (5, 6), 30
    n_units = n_grid + n_hidden
    mask = connectivity_mask("local", n_units, grid_shape=grid, radius=radius)
    stencil = LocalStencil(grid, radius, n_units)
    signal = torch.randn(3, n_units, generator=_gen(5), dtype=F64)
    pairs = torch.triu(mask, diagonal=1).nonzero()
    assert len(pairs) == torch.triu(mask, diagonal=1).sum()
    for i, j in pairs.tolist():
        couplings = torch.zeros(n_units, n_units, dtype=F64)
        couplings[i, j] = couplings[j, i] = 1.0
        local = LocalProduct(couplings, stencil)(signal)
        torch.testing.assert_close(local, signal @ couplings.T, atol=1e-15, rtol=0)


def test_corner_offset_coupling_is_not_dropped():
    """Top-left pixel coupled to its farthest neighbour (r, r) only, and the mirror pair."""
    grid, radius = (5, 6), 2
    n_units = 30
    couplings = torch.zeros(n_units, n_units, dtype=F64)
    corner = radius * grid[1] + radius
    couplings[0, corner] = couplings[corner, 0] = 0.7
    signal = torch.randn(2, n_units, generator=_gen(6), dtype=F64)
    out = LocalProduct(couplings, LocalStencil(grid, radius, n_units))(signal)
    assert torch.equal(out[:, 0], 0.7 * signal[:, corner])
    assert torch.equal(out[:, corner], 0.7 * signal[:, 0])


def _system_pair(kind: str, n_hidden: int, radius: int, bits, profile):
    cls = OscillatorAIS if kind == "oscillator" else IsingAIS
    options = {
        "n_hidden": n_hidden,
        "segments": 2,
        "steps_per_segment": 3,
        "dt": 0.25,
        "mask": "local",
        "mask_kwargs": {"radius": radius},
        "bits": bits,
        "profile": profile,
        "seed": 3,
    }
    if profile is not None and profile.read_noise_std > 0:
        options["method"] = "euler_maruyama"
    local = cls((1, 5, 6), coupling_product="local", **options).double()
    dense = cls((1, 5, 6), coupling_product="dense", **options).double()
    dense.load_state_dict(local.state_dict())
    return local, dense


@pytest.mark.parametrize("kind", ["oscillator", "ising"])
@pytest.mark.parametrize(
    ("n_hidden", "radius", "bits", "noisy"),
    [(0, 1, 4, False), (3, 2, None, False), (3, 1, 4, True), (0, 2, None, True)],
)
def test_system_sample_and_gradients_match_dense_path(kind, n_hidden, radius, bits, noisy):
    profile = (
        HardwareProfile.preset("seed-4bit-10pct").replace(read_noise_std=0.02) if noisy else None
    )
    local, dense = _system_pair(kind, n_hidden, radius, bits, profile)
    z = local.sample_latent(4, _gen(7))
    outputs, grads = [], []
    for system in (local, dense):
        images = system(z, _gen(8))
        loss = (images * torch.linspace(-1, 1, images.numel(), dtype=F64).view_as(images)).sum()
        params = [p for p in system.parameters() if p.requires_grad]
        outputs.append(images)
        grads.append(torch.autograd.grad(loss, params, allow_unused=True))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-12, rtol=1e-12)
    for local_grad, dense_grad in zip(*grads, strict=True):
        if dense_grad is None:
            assert local_grad is None
        else:
            torch.testing.assert_close(local_grad, dense_grad, atol=1e-10, rtol=1e-10)


def test_auto_product_follows_mask_size_and_device():
    def chosen(system):
        return type(system.product(system.coupling_matrix())).__name__

    assert chosen(OscillatorAIS((1, 4, 4), mask="local")) == "DenseProduct"
    assert chosen(IsingAIS((1, 23, 23), mask="local")) == "LocalProduct"
    assert chosen(IsingAIS((1, 23, 23), mask="block")) == "DenseProduct"
    stencil = LocalStencil((23, 23), 1, 529)
    assert choose_product("auto", stencil, 529, "cpu") == "local"
    assert choose_product("auto", stencil, 529, "cuda") == "dense"
    assert choose_product("local", stencil, 529, "cuda") == "local"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"coupling_product": "sparse"}, "coupling_product='sparse'"),
        ({"coupling_product": "local", "mask": "dense"}, "needs mask='local'"),
    ],
)
def test_coupling_product_option_is_validated(options, message):
    with pytest.raises(ValueError, match=message):
        IsingAIS((1, 4, 4), **options)
