"""AIS studies from YAML configs (``experiments/ais/*.yaml``), resumable model by model.

Each entry of ``models`` is trained for every seed of ``seeds`` (or of its own ``seeds`` list)
and scored the same way:

* ``oscillator`` / ``ising`` — an Analog Interaction System (:mod:`.oscillators`,
  :mod:`.ising`) trained as a WGAN-GP (:mod:`.wgan`) against a digital :class:`ConvCritic`;
* ``mlp`` — the digital baseline: an :class:`MLPGenerator` with the parameter count of the
  first AIS entry (``match`` names another), trained by the same WGAN-GP;
* ``rbm`` — the prior analog generative model: a Bernoulli RBM trained by PCD and sampled
  by block Gibbs sweeps (:mod:`.rbm`).

Score: FID, KID and precision/recall of ``fid.n_samples`` generated images against as many
test images (resized to ``image_size``) in the features of the dataset's classifier
(:mod:`.features`); every result names its extractor. AIS entries also get the energy per
generated image from :func:`analogtorch.energy.dynamics.estimate_dynamics` (couplings
powered for the sampling time, read-out ADCs on the visible units).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..devices import resolve_device
from ..energy.dynamics import estimate_dynamics
from ..files import write_json
from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from ..runs import run_cells
from ..study_cells import read_config, slug
from .critic import ConvCritic
from .features import classifier_extractor, resize_images
from .fid import evaluate_samples, inception_extractor
from .generator import count_parameters, sample_images
from .ising import IsingAIS
from .mlp_generator import mlp_matching
from .oscillators import OscillatorAIS
from .rbm import BernoulliRBM, RBMGenerator
from .study_config import RBM_OPTIONS, validate_ais
from .system import AnalogInteractionSystem
from .wgan import CHECKPOINT_NAME, WGANConfig, save_grid, train_wgan

_SYSTEMS = {"oscillator": OscillatorAIS, "ising": IsingAIS}


def complete_config(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check an AIS study config (:mod:`.study_config`), fill in its defaults and build
    every model entry once at the study's image size, so that a wrong option is an error
    naming its entry before anything trains."""
    config = validate_ais(data, source)
    labels = [slug(entry["label"]) for entry in config["models"]]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{source}: model labels {labels} repeat; give each a label")
    systems = [entry["label"] for entry in config["models"] if entry["kind"] in _SYSTEMS]
    channels = 3 if config["dataset"] == "cifar10" else 1
    shape = (channels, config["image_size"], config["image_size"])
    for entry in config["models"]:
        where = f"{source}: model {entry['label']!r}"
        if entry["kind"] == "mlp" and not systems:
            raise ValueError(f"{where}: an mlp entry is sized to an AIS entry; the study has none")
        if entry["kind"] == "mlp" and entry["match"] not in (None, *systems):
            raise ValueError(f"{where}: match={entry['match']!r}: name an AIS entry {systems}")
        unknown = sorted(set(entry["options"]) - set(RBM_OPTIONS))
        if entry["kind"] == "rbm" and unknown:
            raise ValueError(f"{where}: unknown RBM option(s) {unknown}; known: {RBM_OPTIONS}")
        if entry["kind"] in _SYSTEMS:
            try:
                build_system(entry, shape, seed=0)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: options: {err}") from None
    return config


def load_study(path: str | Path) -> dict[str, Any]:
    """Read a study YAML (``name`` defaults to the file name) and fill in the defaults."""
    return read_config(path, complete_config)


def study_images(config: dict[str, Any], split: str, data_dir: Any = None) -> torch.Tensor:
    """The dataset's ``split`` images (N, C, s, s) in [0, 1] at the study's ``image_size``."""
    images = load_dataset(config["dataset"], split, data_dir=data_dir).images
    if split == "train" and config["n_train"] is not None:
        gen = torch.Generator().manual_seed(0)
        images = images[torch.randperm(len(images), generator=gen)[: config["n_train"]]]
    return resize_images(images, config["image_size"])


def build_system(entry: dict[str, Any], image_shape: tuple[int, int, int], seed: int):
    """The AIS of a model entry (``kind`` oscillator or ising, ``options`` its arguments)."""
    options = dict(entry.get("options") or {})
    profile = options.pop("profile", None)
    if profile is not None:
        options["profile"] = HardwareProfile.from_spec(profile)
    return _SYSTEMS[entry["kind"]](image_shape, seed=seed, **options)


def energy_per_image(system: AnalogInteractionSystem, profile: HardwareProfile) -> dict[str, Any]:
    """Energy (J), time (s) and area (mm²) of generating one image on analog hardware."""
    couplings = system.coupling_matrix().detach().cpu()
    bits = system.couplings.bits
    report = estimate_dynamics(
        couplings,
        profile.replace(weight_bits=bits) if bits else profile,
        system.duration_s,
        n_units=system.n_units,
        n_readout=system.n_visible,
        digital_steps=system.n_steps * (4 if system.method == "rk4" else 1),
        name="ais",
    )
    return report.to_dict()


def sample_generator(generator: Any, n: int, seed: int, gibbs_steps: int = 1000) -> torch.Tensor:
    """``n`` images (n, C, H, W) in [0, 1]: Gibbs sweeps for an RBM, else latents and the
    hardware noise of an AIS drawn from ``seed``."""
    if isinstance(generator, RBMGenerator):
        return generator.sample(n, seed=seed, gibbs_steps=gibbs_steps)
    if hasattr(generator, "reseed"):
        generator.reseed(derive_seed(seed, "sample-noise"))
    return sample_images(generator, n, seed=seed)


def build_generator(
    config: dict[str, Any], entry: dict[str, Any], shape: tuple[int, int, int], seed: int
) -> Any:
    """The untrained generator of a model entry: an AIS, an MLP or an RBM sampler."""
    if entry["kind"] in _SYSTEMS:
        return build_system(entry, shape, seed)
    if entry["kind"] == "rbm":
        n_hidden = int((entry.get("options") or {}).get("n_hidden", 64))
        return RBMGenerator(BernoulliRBM(math.prod(shape), n_hidden, seed=seed), shape)
    systems = [m["label"] for m in config["models"] if m["kind"] in _SYSTEMS]
    match = entry.get("match") or systems[0]
    reference = next(m for m in config["models"] if m["label"] == match)
    params = build_system(reference, shape, seed).parameter_counts()["total"]
    with torch.random.fork_rng():  # the MLP's default init, seeded
        torch.manual_seed(seed)
        return mlp_matching(params, shape, int(entry.get("latent_dim", 64)))


def train_model(
    config: dict[str, Any],
    entry: dict[str, Any],
    seed: int,
    run_dir: Path,
    data_dir: Any,
    *,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[Any, dict[str, Any]]:
    """Train one model entry for one seed into ``run_dir`` (resumable); returns the trained
    generator and a record (parameter count, energy per image for an AIS). ``progress``
    shows the training (a study shows its cells instead). A WGAN-trained generator and its
    critic train on ``device`` (the images stay on the CPU, one batch at a time goes over;
    latents and noise are drawn on the CPU, so they are the same on every device); an RBM
    trains on the CPU."""
    train = study_images(config, "train", data_dir)
    shape = tuple(train.shape[1:])
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {"config": config, "entry": entry, "seed": seed, "image_shape": list(shape)}
    write_json(run_dir / "model.json", spec)
    generator = build_generator(config, entry, shape, seed)
    record: dict[str, Any] = {}
    if isinstance(generator, RBMGenerator):
        options = {
            k: v
            for k, v in (entry.get("options") or {}).items()
            if k not in ("n_hidden", "gibbs_steps")
        }
        history = generator.rbm.fit(train.flatten(1), seed=seed, **{"epochs": 5, **options})
        torch.save(generator.rbm.state_dict(), run_dir / "rbm.pt")
        record["parameters"] = count_parameters(generator.rbm)
        record["final_reconstruction_error"] = history[-1].get("reconstruction_error")
        return generator, record
    generator = generator.to(device)  # built on the CPU: the same initial weights everywhere
    critic = ConvCritic(shape, **config["critic"]).to(device)
    wgan = WGANConfig(**{**config["wgan"], **entry.get("wgan", {}), "seed": seed})
    history = train_wgan(generator, critic, train, wgan, run_dir, progress=progress)
    record["final_wasserstein"] = history[-1]["wasserstein"] if history else None
    if isinstance(generator, AnalogInteractionSystem):
        record["parameters"] = generator.parameter_counts()["total"]
        record["energy"] = energy_per_image(
            generator, HardwareProfile.from_spec(config["energy_profile"])
        )
        record["duration_s"] = generator.duration_s
    else:
        record["parameters"] = count_parameters(generator)
    return generator, record


def load_trained(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The generator trained in ``run_dir`` (by :func:`train_model`) and its spec."""
    run_dir = Path(run_dir)
    spec_path = run_dir / "model.json"
    if not spec_path.exists():
        raise FileNotFoundError(f"{run_dir} has no model.json: not an AIS training run")
    spec = json.loads(spec_path.read_text())
    shape = tuple(spec["image_shape"])
    generator = build_generator(spec["config"], spec["entry"], shape, spec["seed"])
    if isinstance(generator, RBMGenerator):
        state = torch.load(run_dir / "rbm.pt", map_location="cpu", weights_only=True)
        generator.rbm.load_state_dict(state)
    else:
        checkpoint = torch.load(run_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
        generator.load_state_dict(checkpoint["generator"])
        generator.eval()
    return generator, spec


def score_model(
    config: dict[str, Any],
    generator: Any,
    entry: dict[str, Any],
    seed: int,
    data_dir: Any,
    *,
    inception_weights: str | Path | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Samples of ``generator`` and their FID/KID/precision/recall against the test set, in
    the classifier's features (and Inception-v3's with ``inception_weights``)."""
    n = config["fid"]["n_samples"]
    gibbs_steps = int((entry.get("options") or {}).get("gibbs_steps", 1000))
    fake = sample_generator(generator, n, derive_seed(seed, "fid"), gibbs_steps)
    real = study_images(config, "test", data_dir)[:n]
    extractor = classifier_extractor(
        config["dataset"], image_size=config["image_size"], data_dir=data_dir, progress=progress
    )
    rng = torch.Generator().manual_seed(seed)
    kid = min(1000, n)
    scores = evaluate_samples(real, fake, extractor, generator=rng, kid_subset_size=kid)
    record = scores.to_dict()
    if inception_weights is not None:
        inception = evaluate_samples(
            real, fake, inception_extractor(inception_weights), generator=rng, kid_subset_size=kid
        )
        record["inception"] = inception.to_dict()
    return fake, record


def real_data_scores(config: dict[str, Any], out_dir: Path, data_dir: Any) -> dict[str, Any]:
    """The metric's floor for this study: FID/KID/precision/recall of ``fid.n_samples`` real
    training images (a random subset, seed 0) against the test images every model is scored
    on, in the same features; a perfect generator scores about this. Computed once and kept
    in ``out_dir/reference.json``."""
    path = out_dir / "reference.json"
    if path.exists():
        return json.loads(path.read_text())
    n = config["fid"]["n_samples"]
    train = study_images(config, "train", data_dir)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]
    real = study_images(config, "test", data_dir)[:n]
    extractor = classifier_extractor(
        config["dataset"], image_size=config["image_size"], data_dir=data_dir
    )
    rng = torch.Generator().manual_seed(0)
    scores = evaluate_samples(
        real, train[pick], extractor, generator=rng, kid_subset_size=min(1000, n)
    )
    record = scores.to_dict()
    write_json(path, record)
    return record


def run_model(
    config: dict[str, Any],
    entry: dict[str, Any],
    seed: int,
    out_dir: Path,
    data_dir: Any,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train one model entry for one seed on ``device``, sample it and score it (one study
    cell; the scoring features are computed on the CPU)."""
    started = time.perf_counter()
    key = slug(f"{entry['label']}-seed{seed}")
    run_dir = out_dir / "runs" / key
    generator, record = train_model(config, entry, seed, run_dir, data_dir, device=device)
    fake, scores = score_model(config, generator, entry, seed, data_dir)
    grid = out_dir / "samples" / f"{key}.png"
    save_grid(fake[:64], grid, nrow=8)
    return {
        **record,
        **scores,
        "grid": str(grid.relative_to(out_dir)),
        "seconds": time.perf_counter() - started,
    }


def _without_seeds(entry: dict[str, Any]) -> dict[str, Any]:
    """A model entry without its own ``seeds`` list (which chooses cells, not results)."""
    return {k: v for k, v in entry.items() if k != "seeds"}


def run_study(
    config: dict[str, Any],
    out_dir: str | Path,
    *,
    data_dir: Any = None,
    backend: str = "local",
    show_progress: bool = True,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Run every missing (model, seed) cell into ``out_dir`` on ``device``
    (:func:`run_model`); returns all cell records."""
    out_dir = Path(out_dir)
    resolve_device(device)  # refused here, before any cell starts
    cells = [
        (slug(f"{entry['label']}-seed{seed}"), {"model": _without_seeds(entry), "seed": int(seed)})
        for entry in config["models"]
        for seed in entry["seeds"]
    ]

    def run(params: dict[str, Any]) -> dict[str, Any]:
        return run_model(config, params["model"], params["seed"], out_dir, data_dir, device)

    return run_cells(
        cells, run, out_dir, backend=backend, label=config["name"], show_progress=show_progress
    )
