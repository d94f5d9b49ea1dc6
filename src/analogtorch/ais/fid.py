"""Sample-quality metrics for image generators: FID, KID and improved precision/recall.

All four compare a set of real images with a set of generated ("fake") images through the
features ``f = φ(x) ∈ R^D`` of a fixed network φ (a :class:`FeatureExtractor`):

- FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local
  Nash equilibrium"): the Fréchet (2-Wasserstein) distance between Gaussians fitted to the
  two feature sets, ``‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r^{1/2} Σ_g Σ_r^{1/2})^{1/2})``.
- KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased squared MMD with the
  cubic polynomial kernel ``k(x, y) = (x·y / D + 1)³``, averaged over random subsets.
- Precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models"): the fraction of fake samples inside the k-NN manifold of the
  real ones, and vice versa.

The numbers depend on φ: scores from different extractors, or from images at different
resolutions, are not comparable. Every :class:`FIDResult` therefore names its extractor.
:func:`inception_extractor` gives the standard Inception-v3 features (via the optional
``torch-fidelity`` package); :mod:`analogtorch.ais.features` gives a small dataset-specific
CNN, the default for MNIST-like data where Inception features are a poor fit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
# Images must lie in [0, 1]; this slack absorbs float round-off from a generator's last op.
_RANGE_TOLERANCE = 1e-4


@runtime_checkable
class FeatureExtractor(Protocol):
    """A fixed feature network φ: images ``(N, C, H, W)`` in [0, 1] -> features ``(N, D)``.

    ``name`` identifies φ (network, training data, resolution) so that results computed with
    different extractors are never mixed up.
    """

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class FIDResult:
    """FID, KID (mean ± std over subsets), precision and recall of one fake set against one
    real set, with the extractor that produced the features and the two sample sizes."""

    fid: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    extractor: str
    n_real: int
    n_fake: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_features(features: torch.Tensor, name: str, min_rows: int = 2) -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(features)}")
    if features.ndim != 2 or features.shape[0] < min_rows or features.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (N, D) with N >= {min_rows} and D >= 1, got "
            f"{tuple(features.shape)}"
        )
    features = features.detach().to(torch.float64)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return features


def _check_pair(
    f1: torch.Tensor, f2: torch.Tensor, names: tuple[str, str], min_rows: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    f1 = _check_features(f1, names[0], min_rows)
    f2 = _check_features(f2, names[1], min_rows)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same feature dimension D, got "
            f"{f1.shape[1]} and {f2.shape[1]}"
        )
    return f1, f2


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``μ`` (D,) and unbiased covariance ``Σ = (F − μ)ᵀ (F − μ) / (N − 1)`` (D, D) of
    ``features`` (N, D), both float64."""
    features = _check_features(features, "features")
    return features.mean(dim=0), torch.cov(features.T).reshape(features.shape[1], -1)


def _as_float64(value: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach().to(torch.float64)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) (Heusel et al. 2017, Dowson & Landau
    1982): ``d² = ‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2})``.

    Computed in float64. ``Σ1^{1/2} Σ2 Σ1^{1/2}`` is symmetric PSD and similar to ``Σ1 Σ2``, so
    the trace term is ``Σ_i sqrt(λ_i)`` over its eigenvalues ``λ_i`` (round-off negatives are
    clamped to 0); this stays exact for singular covariances, where ``sqrtm(Σ1 Σ2)`` needs an
    ``εI`` offset. ``mu*``: (D,); ``sigma*``: (D, D) symmetric PSD. A result below 0 by
    round-off is returned as 0.
    """
    mu1, mu2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    sigma1, sigma2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu2.shape != mu1.shape:
        raise ValueError(
            f"mu1 and mu2 must be vectors of the same length D, got shapes {tuple(mu1.shape)} "
            f"and {tuple(mu2.shape)}"
        )
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise ValueError(
                f"{name} must be a (D, D) = ({dim}, {dim}) covariance matching mu1, got "
                f"{tuple(sigma.shape)}"
            )
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_inception_distance(
    f1: torch.Tensor,
    f2: torch.Tensor,
    *,
    subsets: int = 10,
    subset_size: int = 1000,
    generator: torch.Generator,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and standard deviation (ddof=0, as torch-fidelity
    reports it) over ``subsets`` random subsets of the unbiased squared MMD

    ``MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (m(m−1))
    − 2 Σ_{i,j} k(x_i, y_j) / m²``, with ``k(x, y) = (x·y / D + 1)³``.

    Each subset draws ``m = min(subset_size, N1, N2)`` rows of ``f1`` (N1, D) and of ``f2``
    (N2, D) without replacement, using ``generator``. Being unbiased, the estimate can be
    slightly negative when the two distributions are equal.
    """
    f1, f2 = _check_pair(f1, f2, ("f1", "f2"))
    if subsets < 1:
        raise ValueError(f"subsets={subsets} must be >= 1")
    if subset_size < 2:
        raise ValueError(f"subset_size={subset_size} must be >= 2")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    mmds = torch.empty(subsets, dtype=torch.float64)
    for s in range(subsets):
        x = f1[torch.randperm(f1.shape[0], generator=generator)[:m]]
        y = f2[torch.randperm(f2.shape[0], generator=generator)[:m]]
        k_xx, k_yy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
        off_diagonal = k_xx.sum() - k_xx.trace() + k_yy.sum() - k_yy.trace()
        mmds[s] = off_diagonal / (m * (m - 1)) - 2 * _polynomial_kernel(x, y).mean()
    return float(mmds.mean()), float(mmds.std(correction=0))


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk_size: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself is neighbour 0)."""
    radii = [
        torch.cdist(chunk, features).topk(k + 1, dim=1, largest=False).values[:, k]
        for chunk in features.split(chunk_size)
    ]
    return torch.cat(radii)


def _fraction_inside(
    queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk_size: int
) -> float:
    """Fraction of ``queries`` within ``radii[j]`` of at least one ``centres[j]``."""
    inside = sum(
        int((torch.cdist(chunk, centres) <= radii).any(dim=1).sum())
        for chunk in queries.split(chunk_size)
    )
    return inside / queries.shape[0]


def precision_recall(
    real_f: torch.Tensor, fake_f: torch.Tensor, k: int = 3, *, chunk_size: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The manifold of a set Φ is the union of balls ``B(φ, NN_k(φ))`` around its points, with
    ``NN_k(φ)`` the distance to the k-th nearest other point of Φ. Then
    ``precision = mean_{g ∈ fake} 1[g ∈ manifold(real)]`` (how many samples look real) and
    ``recall = mean_{r ∈ real} 1[r ∈ manifold(fake)]`` (how much of the data is covered).
    Distances are computed ``chunk_size`` rows at a time, so memory is O(chunk_size · N).
    """
    real_f, fake_f = _check_pair(real_f, fake_f, ("real_f", "fake_f"), min_rows=1)
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    for name, features in (("real_f", real_f), ("fake_f", fake_f)):
        if features.shape[0] <= k:
            raise ValueError(
                f"{name} has {features.shape[0]} rows; k-NN radii with k={k} need more than k"
            )
    real_radii = _kth_neighbour_radii(real_f, k, chunk_size)
    fake_radii = _kth_neighbour_radii(fake_f, k, chunk_size)
    precision = _fraction_inside(fake_f, real_f, real_radii, chunk_size)
    recall = _fraction_inside(real_f, fake_f, fake_radii, chunk_size)
    return precision, recall


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 2:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"{name} must be a tensor (N, C, H, W) with N >= 2, got {shape}")
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]; map a tanh "
            "generator's [-1, 1] output with (x + 1) / 2"
        )


@torch.no_grad()
def _extract(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    parts = [extractor(batch.clamp(0.0, 1.0)).detach().cpu() for batch in images.split(batch_size)]
    return torch.cat(parts)


def evaluate_samples(
    real: torch.Tensor,
    fake: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 500,
    generator: torch.Generator,
    kid_subsets: int = 10,
    kid_subset_size: int = 1000,
    k: int = 3,
) -> FIDResult:
    """FID, KID, precision and recall of ``fake`` against ``real`` in ``extractor``'s features.

    ``real`` and ``fake``: images (N, C, H, W) in [0, 1] with the same (C, H, W): metrics at
    different resolutions are not comparable, so downsample the real images to the generated
    size first (e.g. :func:`analogtorch.ais.features.resize_images`). Features are computed
    ``batch_size`` images at a time without gradients; ``generator`` draws the KID subsets.
    """
    _check_images(real, "real")
    _check_images(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real images are {tuple(real.shape[1:])} and fake images {tuple(fake.shape[1:])} "
            "(C, H, W); resize the real images to the generated size before comparing"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    real_f = _extract(extractor, real, batch_size)
    fake_f = _extract(extractor, fake, batch_size)
    fid = frechet_distance(*gaussian_statistics(real_f), *gaussian_statistics(fake_f))
    kid_mean, kid_std = kernel_inception_distance(
        real_f, fake_f, subsets=kid_subsets, subset_size=kid_subset_size, generator=generator
    )
    precision, recall = precision_recall(real_f, fake_f, k=k)
    return FIDResult(
        fid=fid,
        kid_mean=kid_mean,
        kid_std=kid_std,
        precision=precision,
        recall=recall,
        extractor=extractor.name,
        n_real=real.shape[0],
        n_fake=fake.shape[0],
    )


class _InceptionFeatures:
    """torch-fidelity's Inception-v3 (the TF 2015-12-05 graph ported to PyTorch), pool3."""

    name = "inception-v3-compat pool3-2048 (torch-fidelity)"

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
        images = images.expand(-1, 3, -1, -1)
        # torch-fidelity takes uint8 RGB and resizes to 299x299 itself, as the TF original did.
        pixels = (images * 255).round().clamp(0, 255).to(torch.uint8, copy=True)
        return self.module(pixels.to(self.device))[0].float().cpu()


def inception_extractor(
    weights_path: str | Path, *, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """The standard FID features: 2048-d pool3 of Inception-v3, from the optional package
    ``torch-fidelity`` and a local copy of its weights (runs are offline; nothing is
    downloaded). Grayscale images are repeated to 3 channels.

    Raises ``FileNotFoundError`` when ``weights_path`` is missing and ``ImportError`` when
    ``torch-fidelity`` is not installed.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception weights not found at {path}. This run is offline, so they are not "
            "downloaded: fetch the pt_inception-2015-12-05 weights "
            f"(weights-inception-2015-12-05-6726825d.pth) from {INCEPTION_WEIGHTS_URL} on a "
            "machine with internet access and pass their local path as weights_path."
        )
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as exc:
        raise ImportError(
            "inception_extractor needs the optional package torch-fidelity: "
            "`pip install torch-fidelity`. It also needs the local Inception weights file "
            f"(given here as {path}) since runs are offline."
        ) from exc
    module = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
    )
    return _InceptionFeatures(module, torch.device(device))
