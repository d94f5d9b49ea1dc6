"""aihwkit-lightning, the peer the benchmarks compare with (``pip install -e '.[bench]'``).

Its standard hardware-aware-training configuration: 8-bit I/O, 4 % output noise, output
bound 12, per-channel Gaussian weight noise (10 %) redrawn every step, learned input ranges,
256-row tiles; optionally per-channel weight clipping at ``clip_sigma`` standard deviations
after every optimiser step (``LAYER_GAUSSIAN_PER_CHANNEL``, applied by its
``AnalogOptimizer``).
"""

from __future__ import annotations

from torch import nn


def lightning_convert(model: nn.Module, clip_sigma: float | None = None) -> nn.Module | None:
    """``model`` converted with the configuration above, or None when not installed."""
    try:
        from aihwkit_lightning.nn.conversion import convert_to_analog
        from aihwkit_lightning.simulator.configs import (
            TorchInferenceRPUConfig,
            WeightClipType,
            WeightNoiseInjectionType,
        )
    except ImportError:
        return None
    cfg = TorchInferenceRPUConfig()
    cfg.forward.inp_res = 2**8 - 2
    cfg.forward.out_res = 2**8 - 2
    cfg.forward.out_noise = 0.04
    cfg.forward.out_bound = 12.0
    cfg.modifier.noise_type = WeightNoiseInjectionType.ADD_NORMAL_PER_CHANNEL
    cfg.modifier.std_dev = 0.10
    if clip_sigma is not None:
        cfg.clip.type = WeightClipType.LAYER_GAUSSIAN_PER_CHANNEL
        cfg.clip.sigma = clip_sigma
    cfg.mapping.max_input_size = 256
    cfg.pre_post.input_range.enable = True
    return convert_to_analog(model, cfg)
