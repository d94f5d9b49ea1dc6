"""`AnalogLSTM` and `AnalogGRU`: ``nn.LSTM`` / ``nn.GRU`` whose gate products run on the
hardware model.

Each layer and direction holds two crossbars (:class:`~.linear.AnalogLinear`): ``W_ih``
(G·H, in) and ``W_hh`` (G·H, H), with G = 4 gates (LSTM: i, f, g, o) or 3 (GRU: r, z, n)
and digital biases, added after the ADC. Per time step ``t``, with ``S`` the surrogate read
(:func:`~analogtorch.hardware.surrogate.surrogate_forward`)::

    a_t = S(x_t, W_ih) + b_ih            u_t = S(h_{t-1}, W_hh) + b_hh

    LSTM:  i, f, o = σ(a + u),  g = tanh(a_g + u_g)
           c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
    GRU:   r, z = σ(a + u),  n = tanh(a_n + r ⊙ u_n)
           h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

Every ``a_t`` and ``u_t`` is one crossbar read with its own noise: the input products of all
steps go to ``W_ih`` as one batched call, the recurrent product is read once per step (see
:mod:`.recurrent_crossbars`). Layers after the first take the (concatenated, for two
directions) hidden states of the layer below, with dropout between layers in training, as
torch does. Units are those of the torch layer.

Shapes as in torch: input (T, N, in), (N, T, in) with ``batch_first``, (T, in) unbatched, or
a ``PackedSequence``; states (L·D, N, H); output (T, N, D·H), L layers, D directions.
Projections (``proj_size``) are refused.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..hardware.profile import HardwareProfile
from .base import check_sizes
from .recurrent_base import AnalogRecurrentBase
from .recurrent_crossbars import States


def lstm_update(a: torch.Tensor, u: torch.Tensor, state: States) -> States:
    """One LSTM step from the gate pre-activations ``a`` (input) and ``u`` (recurrent),
    both (N, 4H), and ``state = (h, c)``, each (N, H); returns ``(h_t, c_t)``."""
    i, f, g, o = (a + u).chunk(4, dim=-1)
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_update(a: torch.Tensor, u: torch.Tensor, state: States) -> States:
    """One GRU step from ``a`` and ``u`` (N, 3H) and ``state = (h,)``; the reset gate scales
    the recurrent read ``u_n`` including its bias, as torch does; returns ``(h_t,)``."""
    a_r, a_z, a_n = a.chunk(3, dim=-1)
    u_r, u_z, u_n = u.chunk(3, dim=-1)
    r = torch.sigmoid(a_r + u_r)
    z = torch.sigmoid(a_z + u_z)
    n = torch.tanh(a_n + r * u_n)
    return (n + z * (state[0] - n),)


def _check_no_projection(proj_size: int) -> None:
    if proj_size != 0:
        raise ValueError(
            f"AnalogLSTM: proj_size={proj_size!r} is not supported (the projected state "
            "W_hr h would need a third crossbar and is not bounded for the W_hh DAC); use "
            "proj_size=0, or convert with skip=[name] to keep this LSTM digital"
        )


class AnalogLSTM(AnalogRecurrentBase, nn.LSTM):
    """LSTM on analog hardware (subclass of ``nn.LSTM``; equations in :mod:`.recurrent`).

    ``forward(input, (h_0, c_0)) -> output, (h_n, c_n)`` with torch's shapes.
    """

    digital_type = nn.LSTM
    n_gates = 4
    n_states = 2
    gate_update = staticmethod(lstm_update)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_sizes(
            "AnalogLSTM", input_size=input_size, hidden_size=hidden_size, num_layers=num_layers
        )
        _check_no_projection(proj_size)
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )
        self._init_crossbars(profile, noise_seed)

    def forward(  # type: ignore[override]
        self,
        input: torch.Tensor | PackedSequence,
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor | PackedSequence, tuple[torch.Tensor, torch.Tensor]]:
        if hx is not None and not (isinstance(hx, tuple | list) and len(hx) == 2):
            raise TypeError(f"{self.describe()}: hx must be a tuple (h_0, c_0) or None")
        output, (h_n, c_n) = self._forward_states(input, None if hx is None else tuple(hx))
        return output, (h_n, c_n)


class AnalogGRU(AnalogRecurrentBase, nn.GRU):
    """GRU on analog hardware (subclass of ``nn.GRU``; equations in :mod:`.recurrent`).

    ``forward(input, h_0) -> output, h_n`` with torch's shapes.
    """

    digital_type = nn.GRU
    n_gates = 3
    n_states = 1
    gate_update = staticmethod(gru_update)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_sizes(
            "AnalogGRU", input_size=input_size, hidden_size=hidden_size, num_layers=num_layers
        )
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )
        self._init_crossbars(profile, noise_seed)

    def forward(  # type: ignore[override]
        self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
        output, (h_n,) = self._forward_states(input, None if hx is None else (hx,))
        return output, h_n
