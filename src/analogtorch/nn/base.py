"""What every analog layer shares: profile, learned DAC/ADC ranges, noise mode, generator.

Modes of an analog layer's forward:

* ``train()``                      -> fresh training noise every forward (``noisy``);
                                      weights rounded stochastically to their grid when
                                      ``profile.weight_rounding == 'stochastic'``;
* ``eval()``                       -> ``ideal`` (no stochastic noise; quantisation and
                                      circuit effects stay) unless ``set_eval_noise(model,
                                      True)``;
* inside ``Chip.deploy(model, t)`` -> the chip's programmed devices at time ``t``, with
                                      fresh read noise per read.

Outside training, weights always round to the nearest code: a chip is programmed once to
the level closest to each weight (the smallest error of one instance), and ``eval()``,
noisy or not, stands for such a chip. Stochastic rounding is a training device: its
``E[q(w)] = w`` lets weight updates smaller than a code move the expected forward, and its
variance ``Delta^2 f (1 - f)`` is noise the net learns to tolerate.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from ..hardware.mapping import held_weights
from ..hardware.profile import HardwareProfile
from ..hardware.random import NoiseSource, derive_seed
from ..hardware.surrogate import ChipRead, TiledMVM, surrogate_forward
from ..hardware.tiling import RowTiling

_RANGE_KEYS = ("input_range", "output_range", "input_range_initialized")
# Optional in a state dict: digital checkpoints and files written before it existed lack it.
_OPTIONAL_KEYS = (*_RANGE_KEYS, "_extra_state")


class ProfileMismatchWarning(UserWarning):
    """Weights trained under one hardware profile were loaded into a layer on another."""


def _fingerprint_code(profile: HardwareProfile) -> int:
    return int(profile.fingerprint[:15], 16)


def check_sizes(layer: str, **sizes: object) -> None:
    """Refuse layer sizes that are not integers >= 1, naming the layer and the size."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{layer}: {name}={value!r} must be an integer >= 1")


class AnalogLayerMixin:
    """Mixin for the subclasses of torch layers (``nn.Linear``, ``nn.Conv2d``, ...) that run
    on the hardware model.

    A concrete layer names the torch layer it replaces (``digital_type``) and the
    constructor arguments that describe one (``constructor_args``, read from the digital
    layer or from the analog one, which has the same attributes); :func:`~.convert.convert`
    and :func:`~.unconvert.unconvert` go through :meth:`from_digital` and :meth:`to_digital`.
    """

    digital_type: ClassVar[type[nn.Module]]
    profile: HardwareProfile
    weight: torch.Tensor
    chip_read: ChipRead | None
    training: bool

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        """The ``digital_type`` constructor arguments (no device/dtype) that rebuild ``module``."""
        raise NotImplementedError

    @classmethod
    def from_digital(
        cls, module: nn.Module, profile: HardwareProfile, noise_seed: int
    ) -> nn.Module:
        """The analog copy of the digital layer ``module`` (same weights, same train mode)."""
        weight = module.weight
        new = cls(  # type: ignore[call-arg]
            **cls.constructor_args(module),
            profile=profile,
            noise_seed=noise_seed,
            device=weight.device,
            dtype=weight.dtype,
        )
        new.load_state_dict(module.state_dict(), strict=False)
        new.train(module.training)
        return new

    def to_digital(self) -> nn.Module:
        """The plain torch layer holding the weights this layer programs onto a chip,
        ``s * Q(W / s)`` (:func:`~analogtorch.hardware.mapping.held_weights`), and the same
        bias; DAC/ADC quantisation, noise and circuit effects are not part of it."""
        weight = self.weight
        digital = self.digital_type(
            **self.constructor_args(self), device=weight.device, dtype=weight.dtype
        )
        state = {k: v for k, v in self.state_dict().items() if k in digital.state_dict()}  # type: ignore[attr-defined]
        held = held_weights(self.crossbar_weight().detach(), self.profile)
        state["weight"] = self.weight_from_crossbar(held)
        digital.load_state_dict(state)
        digital.train(self.training)
        return digital

    def _init_analog(self, profile: HardwareProfile, noise_seed: int) -> None:
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
        if isinstance(noise_seed, bool) or not isinstance(noise_seed, int):
            raise TypeError(f"noise_seed={noise_seed!r}: must be an int")
        self.profile = profile
        self.noise_seed = noise_seed
        self.layer_name = ""  # qualified name in its model, set by ``convert``
        self.eval_noise = False
        self.chip_read = None
        self._noise_sources: dict[tuple[torch.device, str], NoiseSource] = {}
        self._mvm_cache: dict[tuple[int, bool], TiledMVM] = {}
        self._weight_cache: dict[str, object] = {}
        device = self.weight.device
        self.input_range = nn.Parameter(
            torch.ones((), device=device), requires_grad=profile.learn_ranges
        )
        self.output_range = nn.Parameter(
            torch.full((), profile.adc_range, device=device), requires_grad=profile.learn_ranges
        )
        self.register_buffer(
            "input_range_initialized", torch.zeros((), dtype=torch.bool, device=device)
        )
        self._range_ready = False
        self._clipped_version: int | None = None

    def set_profile(self, profile: HardwareProfile) -> None:
        """Run this layer on ``profile`` from now on. Weights, learned range values and the
        noise generators are kept; products and mapped weights built for the old profile
        are dropped, and the ranges are trained iff ``profile.learn_ranges``. A layer inside
        ``Chip.deploy`` keeps reading the chip's own profile until it leaves the chip."""
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
        if profile == self.profile:
            return
        self.profile = profile
        self._mvm_cache.clear()
        self._weight_cache.clear()
        self.input_range.requires_grad_(profile.learn_ranges)
        self.output_range.requires_grad_(profile.learn_ranges)

    # -- hooks the concrete layers provide ----------------------------------------------

    def row_tiling(self, profile: HardwareProfile) -> RowTiling:
        raise NotImplementedError

    def _build_mvm(self, tiling: RowTiling) -> TiledMVM:
        raise NotImplementedError

    def crossbar_weight(self) -> torch.Tensor:
        """``W_c`` (out, ...): the weights as the crossbar holds them, row ``j`` feeding
        output ``j`` (differentiable, weight units); ``self.weight`` unless the torch layout
        is not output-major (a transposed convolution)."""
        return self.weight

    def weight_from_crossbar(self, w_c: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`crossbar_weight`: a tensor laid out like ``W_c`` in the layout
        of ``self.weight``."""
        return w_c

    # -- shared machinery ---------------------------------------------------------------

    def _mvm(self, profile: HardwareProfile) -> tuple[TiledMVM, RowTiling]:
        """The product for ``profile`` and the physical tiling.

        With an ideal ADC the tiles' partial sums need not be digitised separately, so the
        product is computed untiled (one GEMM); the physical tiling still sets the circuit.
        """
        tiling = self.row_tiling(profile)
        tiled = profile.adc_bits is not None
        key = (tiling.rows_per_tile, tiled)
        if key not in self._mvm_cache:
            single = RowTiling(tiling.n_rows, 1, tiling.n_rows)
            self._mvm_cache[key] = self._build_mvm(tiling if tiled else single)
        return self._mvm_cache[key], tiling

    def reseed(self, seed: int) -> None:
        """Restart the training-noise streams from ``seed`` (see ``hardware.random``)."""
        self.noise_seed = int(seed)
        self._noise_sources.clear()

    def _noise_source(self, device: torch.device, stream: str = "train-noise") -> NoiseSource:
        """The layer's draws of one kind (``"train-noise"``, ``"weight-rounding"``): own
        streams each, so turning stochastic rounding on leaves the noise draws as they were."""
        key = (device, stream)
        if key not in self._noise_sources:
            self._noise_sources[key] = NoiseSource(derive_seed(self.noise_seed, stream), device)
        return self._noise_sources[key]

    def noise_state(self) -> dict[str, object]:
        """Where the noise streams stand: ``noise_seed`` and each created source's streams,
        keyed ``"device|stream"`` (see ``hardware.random.noise_state``)."""
        sources = {
            f"{device}|{stream}": source.get_state()
            for (device, stream), source in self._noise_sources.items()
        }
        return {"noise_seed": self.noise_seed, "sources": sources}

    def load_noise_state(self, state: dict[str, object]) -> None:
        """Continue the noise streams from :meth:`noise_state`'s ``state``."""
        self.reseed(int(state["noise_seed"]))  # type: ignore[call-overload]
        for key, streams in state["sources"].items():  # type: ignore[attr-defined]
            device, stream = key.split("|", 1)
            self._noise_source(torch.device(device), stream).set_state(streams)

    def describe(self) -> str:
        """The layer as error messages name it: class, name in its model and shape."""
        name = f" {self.layer_name!r}" if self.layer_name else ""
        return f"{type(self).__name__}{name} ({tuple(self.weight.shape)} weights)"

    def check_input(self, x: torch.Tensor, n_features: int, expected: str) -> None:
        """Refuse inputs this layer cannot take, naming the layer: not a tensor of the
        weights' dtype, or without ``n_features`` along its feature dimension (the last for
        ``expected = "(..., n)"``, the channel axis ``C`` counted from the end for
        ``"(N, C, L)"`` / ``"(N, C, H, W)"``: as many from the end as ``expected`` has commas)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.describe()}: input must be a tensor, got {type(x).__name__}")
        if x.dtype != self.weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"{self.describe()}: input dtype {x.dtype} differs from the weights' "
                f"{self.weight.dtype}; convert the input (x.to({self.weight.dtype})) or the model"
            )
        feature_dim = -expected.count(",")
        if x.dim() < -feature_dim or x.shape[feature_dim] != n_features:
            raise ValueError(
                f"{self.describe()}: expected an input of shape {expected}, got {tuple(x.shape)}"
            )

    def _init_input_range(self, x: torch.Tensor) -> None:
        """DAC full scale from the first non-empty batch seen: ``r_in = max |x|``.

        A batch with NaN or inf would store a non-finite range and spoil every later
        batch: it is refused instead, naming the layer.
        """
        if x.numel() == 0:
            return
        if not bool(self.input_range_initialized):
            peak = x.detach().abs().max()
            if not torch.isfinite(peak):
                raise ValueError(
                    f"{self.describe()}: the first batch it sees contains NaN or inf, and "
                    "its DAC range (input_range) is set from that batch; check the data or "
                    "the layers before it"
                )
            with torch.no_grad():
                self.input_range.fill_(peak.clamp_min(1e-6))
                self.input_range_initialized.fill_(True)
        self._range_ready = True

    def _clip_weights(self, sigma: float) -> None:
        """``W_j <- clamp(W_j, -k std(W_j), k std(W_j))`` per output row ``j`` of
        :meth:`crossbar_weight` (in place in ``self.weight``'s own layout, not
        differentiated; sample std over the row's n > 1 weights; a row of equal weights,
        std 0 up to rounding, is left alone), once per change of the weights: the first
        training forward after each optimiser step clips, later forwards on the same
        weights (gradient accumulation) leave them and the tensors saved for their backward
        alone."""
        if self.weight._version == self._clipped_version:
            return
        weight = self.weight.data  # its own version counter: the check above stays valid
        crossbar = self.crossbar_weight().detach()  # rows j of W_c: one per output
        rows = crossbar.reshape(crossbar.shape[0], -1)
        if rows.shape[1] > 1:
            with torch.no_grad():  # centred two-pass std: 10x faster than Tensor.std on CPU
                centred = rows - rows.mean(dim=1, keepdim=True)
                std = torch.linalg.vector_norm(centred, dim=1) / math.sqrt(rows.shape[1] - 1)
                # no spread beyond rounding (equal weights): nothing to clip
                flat = std <= 64 * torch.finfo(std.dtype).eps * rows.abs().amax(dim=1)
                limit = (sigma * std).masked_fill_(flat, math.inf)
                limit = limit.view((-1,) + (1,) * (crossbar.dim() - 1)).expand(crossbar.shape)
                limit = self.weight_from_crossbar(limit)
                torch.clamp(weight, -limit, limit, out=weight)
        self._clipped_version = self.weight._version

    def analog_forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The layer's output through the hardware surrogate, digital bias added.

        Under ``torch.autocast`` the input is cast to the weights' dtype and the surrogate
        runs with autocast off: DAC/ADC codes, noise and the per-tile sums stay in float32
        (bf16 keeps 8 significant bits, as many as the ADC codes it would have to hold),
        and the output comes back in that dtype, as autocast's float32 operations do."""
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.analog_forward(x.to(self.weight.dtype), bias)
        if not self._range_ready:
            self._init_input_range(x)
        chip = self.chip_read
        profile = chip.profile if chip is not None else self.profile
        if chip is None and self.training and profile.weight_clip_sigma is not None:
            self._clip_weights(profile.weight_clip_sigma)
        mvm, tiling = self._mvm(profile)
        noise = chip is None and (self.training or self.eval_noise)
        stochastic = chip is None and self.training and profile.weight_rounding == "stochastic"
        return surrogate_forward(
            x,
            self.crossbar_weight(),
            mvm,
            profile,
            self.input_range.abs().clamp_min(1e-8),
            self.output_range.abs().clamp_min(1e-8),
            noise=noise,
            source=self._noise_source(x.device) if noise else None,
            chip=chip,
            tiling=tiling,
            bias=bias,
            weight_cache=self._weight_cache,
            rounding_source=self._noise_source(x.device, "weight-rounding") if stochastic else None,
        )

    def use_digital_path(self) -> bool:
        """True when the forward is exactly the digital layer (ideal profile, no chip)."""
        return self.chip_read is None and self.profile.is_ideal

    def get_extra_state(self) -> torch.Tensor:
        """Saved with the weights (``<layer>._extra_state``): the fingerprint of the profile
        they were trained under (:attr:`~HardwareProfile.fingerprint`, its first 60 bits as
        an int64 tensor, so state-dict idioms such as ``v.clone()`` keep working)."""
        return torch.tensor(_fingerprint_code(self.profile))

    def set_extra_state(self, state: Any) -> None:
        """Warn (:class:`ProfileMismatchWarning`) when the weights being loaded were
        saved under another profile: learned ranges and noise robustness belong to that
        hardware. The layer keeps its own profile."""
        if not isinstance(state, torch.Tensor) or state.numel() != 1:
            return
        if int(state) != _fingerprint_code(self.profile):
            warnings.warn(
                f"{self.describe()}: loading weights saved under another hardware profile "
                f"(fingerprint {int(state):015x}) into a layer on {self.profile.name!r} "
                f"({self.profile.fingerprint[:15]}); convert with the saved profile, or call "
                "layer.set_profile(...), if that is not meant",
                ProfileMismatchWarning,
                stacklevel=4,
            )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:  # type: ignore[no-untyped-def]
        """Accept digital checkpoints: missing range entries keep their initial values."""
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        for key in _OPTIONAL_KEYS:
            if prefix + key in missing_keys:
                missing_keys.remove(prefix + key)
        self._range_ready = False

    def analog_extra_repr(self) -> str:
        return f"profile={self.profile.name!r}"


def analog_layers(model: nn.Module) -> dict[str, AnalogLayerMixin]:
    """The analog layers of ``model`` by qualified name (stable programming order)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AnalogLayerMixin)}


def set_eval_noise(model: nn.Module, enabled: bool) -> nn.Module:
    """Make ``eval()`` forwards draw fresh hardware noise (``True``) or be ideal (``False``)."""
    for layer in analog_layers(model).values():
        layer.eval_noise = bool(enabled)
    return model
