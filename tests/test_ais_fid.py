"""FID / KID / precision-recall against closed forms and naive implementations, and the
cached classifier extractor on small synthetic data (no real dataset needed)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from analogtorch.ais import features as features_module
from analogtorch.ais.features import (
    ClassifierExtractor,
    checkpoint_path,
    classifier_extractor,
    resize_images,
    train_classifier,
)
from analogtorch.ais.fid import (
    FeatureExtractor,
    FIDResult,
    evaluate_samples,
    frechet_distance,
    gaussian_statistics,
    inception_extractor,
    kernel_inception_distance,
    precision_recall,
)
from analogtorch.data import Split


def _gaussian(n: int, mean: torch.Tensor, seed: int, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return mean + scale * torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64)


def _random_spd(dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))


def test_gaussian_statistics_are_float64_mean_and_unbiased_covariance() -> None:
    f = _gaussian(50, torch.zeros(3), seed=0).float()
    mu, sigma = gaussian_statistics(f)
    assert mu.dtype == sigma.dtype == torch.float64
    x = f.double().numpy()
    np.testing.assert_allclose(mu.numpy(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x, rowvar=False, ddof=1), rtol=1e-10)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances() -> None:
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 3.0, -2.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    # ‖Δμ‖² = 1 + 4 + 0 = 5; Σ_i (σ1 + σ2 − 2 sqrt(σ1 σ2)) = (1+9−6) + (4+1−4) + 0 = 5.
    expected = 10.0
    distance = frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2))
    assert distance == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_in_one_dimension_is_squared_difference_of_std() -> None:
    # Fréchet distance of N(m1, s1²), N(m2, s2²): (m1 − m2)² + (s1 − s2)².
    as64 = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    distance = frechet_distance(as64([0.5]), as64([[2.0**2]]), as64([-1.0]), as64([[0.3**2]]))
    assert distance == pytest.approx(1.5**2 + 1.7**2, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances() -> None:
    sigma1, sigma2 = _random_spd(6, seed=1), _random_spd(6, seed=2)
    mu1, mu2 = torch.arange(6.0), torch.ones(6)
    s1, s2 = sigma1.numpy(), sigma2.numpy()
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum()) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_exact_for_singular_covariances() -> None:
    # Rank-1 covariances along different axes: Σ1^{1/2} Σ2 Σ1^{1/2} = 0, so d² = Tr Σ1 + Tr Σ2.
    sigma1, sigma2 = torch.diag(torch.tensor([2.0, 0.0])), torch.diag(torch.tensor([0.0, 3.0]))
    assert frechet_distance(torch.zeros(2), sigma1, torch.zeros(2), sigma2) == pytest.approx(5.0)


def test_frechet_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="mu1 and mu2"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="sigma2 must be a"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match=r"features must have shape \(N, D\)"):
        gaussian_statistics(torch.zeros(1, 4))


def test_fid_of_a_sample_set_with_itself_is_zero() -> None:
    f = _gaussian(400, torch.zeros(8), seed=3)
    scale = _fid(f, f + 10.0)
    assert _fid(f, f) < 1e-6 * scale


def test_fid_between_samples_of_one_gaussian_shrinks_with_sample_size() -> None:
    mean = torch.zeros(4)
    small = _fid(_gaussian(200, mean, seed=4), _gaussian(200, mean, seed=5))
    large = _fid(_gaussian(8000, mean, seed=6), _gaussian(8000, mean, seed=7))
    assert large < small
    assert large < 0.02


def test_fid_between_shifted_gaussians_is_squared_mean_shift() -> None:
    shift = torch.tensor([3.0, 0.0, -1.0, 0.0])
    distance = _fid(_gaussian(8000, torch.zeros(4), seed=8), _gaussian(8000, shift, seed=9))
    assert distance == pytest.approx(float(shift.square().sum()), abs=0.3)


def _naive_kid(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    kernel = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    within = sum(
        kernel(x[i], x[j]) + kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j
    )
    between = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2 * between / m**2


def test_kid_matches_naive_unbiased_mmd_when_subset_is_whole_set() -> None:
    x, y = _gaussian(12, torch.zeros(3), seed=10), _gaussian(12, torch.ones(3), seed=11)
    mean, std = kernel_inception_distance(
        x, y, subsets=3, subset_size=12, generator=torch.Generator().manual_seed(0)
    )
    assert mean == pytest.approx(_naive_kid(x.numpy(), y.numpy()), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_kid_is_zero_within_its_std_for_equal_distributions_and_large_for_shifted() -> None:
    generator = torch.Generator().manual_seed(1)
    x, y = _gaussian(1500, torch.zeros(8), seed=12), _gaussian(1500, torch.zeros(8), seed=13)
    same_mean, same_std = kernel_inception_distance(
        x, y, subsets=10, subset_size=300, generator=generator
    )
    shifted = _gaussian(1500, torch.full((8,), 0.5), seed=14)
    shift_mean, shift_std = kernel_inception_distance(
        x, shifted, subsets=10, subset_size=300, generator=generator
    )
    assert abs(same_mean) < 3 * same_std
    assert shift_mean > 10 * max(shift_std, same_std)


def _naive_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def inside(q: np.ndarray, c: np.ndarray, r: np.ndarray) -> float:
        d = np.linalg.norm(q[:, None] - c[None], axis=-1)
        return float((d <= r[None]).any(axis=1).mean())

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_match_naive_knn_manifolds_with_chunking() -> None:
    real = _gaussian(90, torch.zeros(5), seed=15)
    fake = _gaussian(70, torch.full((5,), 0.8), seed=16, scale=0.6)
    expected = _naive_precision_recall(real.numpy(), fake.numpy(), k=3)
    assert 0.05 < expected[0] < 0.95 and 0.05 < expected[1] < 0.95  # a non-trivial case
    assert precision_recall(real, fake, k=3, chunk_size=16) == pytest.approx(expected)


def test_precision_recall_of_identical_sets_is_one_and_of_distant_sets_is_zero() -> None:
    real = _gaussian(200, torch.zeros(4), seed=17)
    assert precision_recall(real, real.clone(), k=3) == (1.0, 1.0)
    far = _gaussian(200, torch.full((4,), 100.0), seed=18)
    assert precision_recall(real, far, k=3) == (0.0, 0.0)


def test_precision_counts_fake_samples_off_the_real_manifold() -> None:
    real = _gaussian(400, torch.zeros(2), seed=19)
    fake = torch.cat([real[:100] + 1e-3, real[:100] + 50.0])
    precision, _ = precision_recall(real, fake, k=3)
    assert precision == pytest.approx(0.5)


class _FlattenExtractor:
    name = "flatten (test)"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def test_evaluate_samples_names_its_extractor_and_scores_identical_sets_perfectly() -> None:
    generator = torch.Generator().manual_seed(20)
    real = torch.rand(120, 1, 3, 3, generator=generator)
    extractor = _FlattenExtractor()
    assert isinstance(extractor, FeatureExtractor)
    result = evaluate_samples(real, real.clone(), extractor, batch_size=32, generator=generator)
    assert isinstance(result, FIDResult)
    assert result.extractor == "flatten (test)"
    assert (result.n_real, result.n_fake) == (120, 120)
    assert result.fid < 1e-9 and (result.precision, result.recall) == (1.0, 1.0)
    assert set(result.to_dict()) == {
        "fid",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "extractor",
        "n_real",
        "n_fake",
    }
    darker = evaluate_samples(real, real * 0.5, extractor, generator=generator)
    assert darker.fid > 0.1 and darker.kid_mean > 0


def test_evaluate_samples_rejects_images_outside_unit_range_or_of_other_size() -> None:
    generator = torch.Generator().manual_seed(21)
    real = torch.rand(10, 1, 4, 4, generator=generator)
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        evaluate_samples(real, real * 2 - 1, _FlattenExtractor(), generator=generator)
    with pytest.raises(ValueError, match="resize the real images"):
        evaluate_samples(real, real[:, :, :2, :2], _FlattenExtractor(), generator=generator)


def test_resize_images_averages_blocks_when_halving() -> None:
    images = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]]).reshape(1, 1, 2, 2)
    torch.testing.assert_close(resize_images(images, 2), expected)
    assert resize_images(images, 4) is images


def _synthetic_split(n: int, seed: int, size: int = 8) -> Split:
    """Two classes: a bright top half or a bright bottom half, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    images = 0.2 * torch.rand(n, 1, size, size, generator=generator)
    rows = torch.arange(size)[None, :, None]
    bright = torch.where(labels[:, None, None] == 0, rows < size // 2, rows >= size // 2)
    images[:, 0] += 0.7 * bright
    return Split(images.clamp(0, 1), labels)


def test_train_classifier_learns_a_synthetic_split_deterministically() -> None:
    train, test = _synthetic_split(256, seed=0), _synthetic_split(64, seed=1)
    kwargs = dict(epochs=2, seed=3, progress=False, split=train, test_split=test)
    model = train_classifier("mnist", **kwargs)
    again = train_classifier("mnist", **kwargs)
    with torch.no_grad():
        accuracy = (model(test.images).argmax(1) == test.labels).float().mean()
        torch.testing.assert_close(model(test.images), again(test.images), rtol=0, atol=0)
    assert accuracy > 0.9


def test_classifier_extractor_trains_once_then_loads_from_cache(monkeypatch, tmp_path) -> None:
    splits = {"train": _synthetic_split(256, seed=0, size=16), "test": _synthetic_split(64, 1, 16)}
    monkeypatch.setattr(features_module, "load_dataset", lambda name, split, *a, **k: splits[split])
    trainings = []
    original_train = features_module._train
    monkeypatch.setattr(
        features_module, "_train", lambda *a, **k: trainings.append(1) or original_train(*a, **k)
    )
    options = dict(cache_dir=tmp_path, image_size=8, epochs=1, progress=False)
    first = classifier_extractor("mnist", **options)
    path = checkpoint_path("mnist", cache_dir=tmp_path, image_size=8, epochs=1)
    assert path.is_file() and path.name == "mnist-cnn-v1-8px-e1.pt"
    assert not list(tmp_path.glob("*.tmp"))
    mtime = path.stat().st_mtime_ns
    second = classifier_extractor("mnist", **options)
    assert len(trainings) == 1 and path.stat().st_mtime_ns == mtime
    assert isinstance(first, ClassifierExtractor) and isinstance(second, FeatureExtractor)
    assert first.name == second.name
    assert first.name.startswith("cnn-mnist-v1-8px-e1 (test acc ")
    images = splits["test"].images  # 16x16: resized to the classifier's 8x8
    features = second(images)
    assert features.shape == (64, 128)
    torch.testing.assert_close(features, first(images))


def test_inception_extractor_missing_weights_says_offline_and_where_to_get_them(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="offline") as info:
        inception_extractor(tmp_path / "missing.pth")
    assert "pt_inception-2015-12-05" in str(info.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in str(info.value)


def test_inception_extractor_without_torch_fidelity_says_how_to_install(
    monkeypatch, tmp_path
) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(ImportError, match="pip install torch-fidelity") as info:
        inception_extractor(weights)
    assert "weights" in str(info.value)


def test_kid_and_precision_reject_bad_arguments() -> None:
    x = torch.zeros(5, 3)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="same feature dimension"):
        kernel_inception_distance(x, torch.zeros(5, 2), generator=generator)
    with pytest.raises(ValueError, match="k=5"):
        precision_recall(x, x, k=5)
    assert math.isfinite(kernel_inception_distance(x, x + 1, generator=generator)[0])


def test_train_classifier_gives_the_same_network_on_one_and_two_threads() -> None:
    # Multi-threaded kernels sum in another order: without one_thread() the weights of
    # these two runs differ by ~1e-7 after one epoch, and the FID features with them.
    train, test = _synthetic_split(512, seed=0, size=28), _synthetic_split(64, seed=1, size=28)
    kwargs = dict(epochs=1, seed=3, progress=False, split=train, test_split=test)
    previous = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = train_classifier("mnist", **kwargs)
            assert torch.get_num_threads() == threads  # the caller's count comes back
            weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
