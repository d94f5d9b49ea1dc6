"""What :class:`~.recurrent.AnalogLSTM` and :class:`~.recurrent.AnalogGRU` share: their
crossbars in place of ``nn.RNNBase``'s flat weights, conversion from and to the torch
layer, and the forward over tensors, unbatched sequences and packed sequences."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from .linear import AnalogLinear
from .recurrent_crossbars import GateUpdate, RecurrentCrossbars, States, repack, scan_layers, unpack


class AnalogRecurrentBase:
    """Base of the analog recurrent layers (placed before ``nn.LSTM`` / ``nn.GRU`` in the
    bases): one :class:`~.recurrent_crossbars.RecurrentCrossbars` per layer and direction,
    as attributes ``l0``, ``l0_reverse``, ``l1``, ... in place of the flat parameters.

    Not an analog layer itself: its :class:`~.linear.AnalogLinear` children are, so
    ``Chip.deploy``, ``seed_noise``, ``set_eval_noise`` and the energy model reach every
    crossbar. A torch checkpoint (``weight_ih_l0``, ...) loads into the crossbars.
    """

    digital_type: ClassVar[type[nn.RNNBase]]
    n_gates: ClassVar[int]
    n_states: ClassVar[int]
    gate_update: ClassVar[GateUpdate]
    # set by nn.RNNBase.__init__
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    training: bool
    _flat_weights_names: list[str]
    _all_weights: list[list[str]]

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        """The ``digital_type`` constructor arguments (no device/dtype) that rebuild ``module``."""
        names = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"]
        names += ["bidirectional", *(["proj_size"] if isinstance(module, nn.LSTM) else [])]
        return {name: getattr(module, name) for name in names}

    @classmethod
    def from_digital(
        cls, module: nn.Module, profile: HardwareProfile, noise_seed: int
    ) -> nn.Module:
        """The analog copy of the torch layer ``module`` (same weights, same train mode)."""
        weight = module.weight_ih_l0
        new = cls(  # type: ignore[call-arg]
            **cls.constructor_args(module),
            profile=profile,
            noise_seed=noise_seed,
            device=weight.device,
            dtype=weight.dtype,
        )
        new._copy_torch_weights(module)
        new.train(module.training)
        return new

    def to_digital(self) -> nn.Module:
        """The torch layer holding the weights the crossbars program onto a chip (each
        crossbar's :meth:`~.base.AnalogLayerMixin.to_digital`) and the same biases."""
        linears = {name: child.to_digital() for name, child in self.crossbars()}
        weight = self.get_parameter("l0.ih.weight")  # type: ignore[attr-defined]
        digital = self.digital_type(
            **self.constructor_args(self),  # type: ignore[arg-type]
            device=weight.device,
            dtype=weight.dtype,
        )
        state = {}
        for torch_name, path in self._parameter_paths():
            child, _, kind = path.rpartition(".")
            state[torch_name] = linears[child].get_parameter(kind).detach()
        digital.load_state_dict(state)
        digital.train(self.training)
        return digital

    def _init_crossbars(self, profile: HardwareProfile, noise_seed: int) -> None:
        """Move the weights ``nn.RNNBase.__init__`` drew (torch's initialisation) onto new
        crossbars and drop the flat parameters, so the weights live only in the crossbars."""
        first = self.weight_ih_l0  # type: ignore[attr-defined]
        directions = 2 if self.bidirectional else 1
        for k, name in enumerate(self._cell_names()):
            crossbars = RecurrentCrossbars(
                self.input_size if k < directions else directions * self.hidden_size,
                self.hidden_size,
                self.n_gates,
                self.bias,
                profile=profile,
                noise_seed=derive_seed(noise_seed, name),
                device=first.device,
                dtype=first.dtype,
            )
            self.add_module(name, crossbars)  # type: ignore[attr-defined]
        self._copy_torch_weights(self)
        for name in self._flat_weights_names:
            delattr(self, name)
        self._flat_weights_names = []
        self._all_weights = []
        self._init_flat_weights()  # type: ignore[attr-defined]
        self.layer_name = ""

    def _cell_names(self) -> list[str]:
        """``l0``, ``l0_reverse``, ``l1``, ...: torch's order of layers and directions."""
        suffixes = ("", "_reverse") if self.bidirectional else ("",)
        return [f"l{layer}{s}" for layer in range(self.num_layers) for s in suffixes]

    def _parameter_paths(self) -> Iterator[tuple[str, str]]:
        """Pairs (torch parameter name, crossbar parameter path): ``("weight_ih_l0",
        "l0.ih.weight")``, ``("bias_hh_l1_reverse", "l1_reverse.hh.bias")``, ..."""
        kinds = ("weight", "bias") if self.bias else ("weight",)
        for cell in self._cell_names():
            for product in ("ih", "hh"):
                for kind in kinds:
                    yield f"{kind}_{product}_{cell}", f"{cell}.{product}.{kind}"

    def _copy_torch_weights(self, source: nn.Module) -> None:
        with torch.no_grad():
            for torch_name, path in self._parameter_paths():
                self.get_parameter(path).copy_(getattr(source, torch_name))  # type: ignore[attr-defined]

    def crossbars(self) -> Iterator[tuple[str, AnalogLinear]]:
        """The ``AnalogLinear`` children by name relative to this layer (``"l0.ih"``, ...)."""
        for cell in self._cell_names():
            for product in ("ih", "hh"):
                yield f"{cell}.{product}", self.get_submodule(f"{cell}.{product}")  # type: ignore[attr-defined]

    @property
    def layer_name(self) -> str:
        """Qualified name in its model (set by ``convert``); the crossbars are named below it."""
        return self._layer_name

    @layer_name.setter
    def layer_name(self, name: str) -> None:
        self._layer_name = name
        for child_name, child in self.crossbars():
            child.layer_name = f"{name}.{child_name}" if name else child_name

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Per layer and direction ``[W_ih, W_hh, b_ih, b_hh]`` (biases only with
        ``bias=True``), as ``nn.RNNBase`` lists them, read from the crossbars."""
        kinds = ("weight", "bias") if self.bias else ("weight",)
        get = self.get_parameter  # type: ignore[attr-defined]
        return [
            [get(f"{cell}.{product}.{kind}") for kind in kinds for product in ("ih", "hh")]
            for cell in self._cell_names()
        ]

    def flatten_parameters(self) -> None:
        """Nothing to flatten: the weights live on the crossbars, cuDNN is never used."""

    def reset_parameters(self) -> None:
        """torch's initialisation ``U(-1/sqrt(H), 1/sqrt(H))`` of every weight and bias; the
        DAC/ADC ranges keep their values."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, parameter in self.named_parameters():  # type: ignore[attr-defined]
            if not name.endswith(("input_range", "output_range")):
                nn.init.uniform_(parameter, -bound, bound)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # nn.RNNBase.__setstate__ rebuilds flat weight names from the first layer's, which
        # this layer has none of.
        nn.Module.__setstate__(self, state)  # type: ignore[arg-type]
        self._flat_weight_refs = []

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:  # type: ignore[no-untyped-def]
        """Accept the torch layer's checkpoints: ``weight_ih_l0`` loads into ``l0.ih.weight``."""
        for torch_name, path in self._parameter_paths():
            if prefix + torch_name in state_dict:
                state_dict[prefix + path] = state_dict.pop(prefix + torch_name)
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def describe(self) -> str:
        """The layer as error messages name it: class and name in its model."""
        name = f" {self.layer_name!r}" if self.layer_name else ""
        return f"{type(self).__name__}{name}"

    def extra_repr(self) -> str:
        profile = self.get_submodule("l0.ih").profile  # type: ignore[attr-defined]
        return f"{super().extra_repr()}, profile={profile.name!r}"  # type: ignore[misc]

    # -- forward --------------------------------------------------------------------------

    def _forward_states(
        self, input: torch.Tensor | PackedSequence, hx: States | None
    ) -> tuple[torch.Tensor | PackedSequence, States]:
        """The output and the final states for ``input`` from ``hx`` (None: zeros)."""
        valid = None
        if isinstance(input, PackedSequence):
            x, valid = unpack(input)
            batched = True
        else:
            self._check_input(input)
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            x = x.transpose(0, 1) if batched and self.batch_first else x
        out, finals = scan_layers(
            [self.get_submodule(name) for name in self._cell_names()],  # type: ignore[attr-defined]
            x,
            self._initial_states(x, hx, batched),
            type(self).gate_update,
            bidirectional=self.bidirectional,
            dropout=self.dropout if self.training else 0.0,
            valid=valid,
        )
        if isinstance(input, PackedSequence):
            return repack(out, valid, input), finals  # type: ignore[arg-type]
        if not batched:
            return out.squeeze(1), tuple(f.squeeze(1) for f in finals)
        return (out.transpose(0, 1) if self.batch_first else out), finals

    def _check_input(self, input: object) -> None:
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"{self.describe()}: input must be a tensor or a PackedSequence")
        layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{self.describe()}: expected an input of shape {layout} or (T, input_size) "
                f"with input_size={self.input_size}, got {tuple(input.shape)}"
            )
        if input.shape[1 if self.batch_first and input.dim() == 3 else 0] == 0:
            raise ValueError(f"{self.describe()}: the sequence is empty (0 time steps)")

    def _initial_states(self, x: torch.Tensor, hx: States | None, batched: bool) -> States:
        shape = (len(self._cell_names()), x.shape[1], self.hidden_size)
        if hx is None:
            return tuple(x.new_zeros(shape) for _ in range(self.n_states))
        expected = shape if batched else (shape[0], shape[2])
        for h in hx:
            if not isinstance(h, torch.Tensor) or tuple(h.shape) != expected:
                got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                raise ValueError(
                    f"{self.describe()}: each initial state must have shape "
                    f"(num_layers * num_directions, N, hidden_size) = {expected}, got {got}"
                )
        return hx if batched else tuple(h.unsqueeze(1) for h in hx)
