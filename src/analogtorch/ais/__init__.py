"""Analog Interaction Systems: generative models whose sampler is physical dynamics.

Coupled phase oscillators (:class:`OscillatorAIS`) or an analog Ising machine
(:class:`IsingAIS`) with hidden units, piecewise-constant controls, sparse 4-bit couplings and
hardware noise, trained as WGAN-GP generators (:func:`train_wgan`) and scored by FID, KID and
precision/recall in a classifier's features (:func:`evaluate_samples`,
:func:`classifier_extractor`); baselines :class:`MLPGenerator` and :class:`BernoulliRBM`.
Studies: ``analogtorch ais study experiments/ais/mnist.yaml``.
"""

from .couplings import Couplings, connectivity_mask
from .critic import ConvCritic
from .features import classifier_extractor, resize_images
from .fid import (
    FIDResult,
    evaluate_samples,
    frechet_distance,
    inception_extractor,
    kernel_inception_distance,
    precision_recall,
)
from .generator import ImageGenerator, count_parameters, sample_images
from .integrators import integrate
from .ising import IsingAIS
from .mlp_generator import MLPGenerator, mlp_matching
from .oscillators import OscillatorAIS
from .rbm import BernoulliRBM, RBMGenerator
from .schedule import PiecewiseConstant
from .system import AnalogInteractionSystem
from .wgan import WGANConfig, gradient_penalty, train_wgan

__all__ = [
    "AnalogInteractionSystem",
    "BernoulliRBM",
    "ConvCritic",
    "Couplings",
    "FIDResult",
    "ImageGenerator",
    "IsingAIS",
    "MLPGenerator",
    "OscillatorAIS",
    "PiecewiseConstant",
    "RBMGenerator",
    "WGANConfig",
    "classifier_extractor",
    "connectivity_mask",
    "count_parameters",
    "evaluate_samples",
    "frechet_distance",
    "gradient_penalty",
    "inception_extractor",
    "integrate",
    "kernel_inception_distance",
    "mlp_matching",
    "precision_recall",
    "resize_images",
    "sample_images",
    "train_wgan",
]
