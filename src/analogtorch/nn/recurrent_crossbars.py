"""The crossbars of one recurrent layer and direction, and the scan of stacked layers.

A layer and direction reads, per time step ``t``::

    a_t = S(x_t, W_ih) + b_ih        u_t = S(h_{t-1}, W_hh) + b_hh

with ``S`` the surrogate read of an :class:`~.linear.AnalogLinear` and digital biases,
and a gate update (LSTM or GRU, see :mod:`.recurrent`) gives the next state from
``(a_t, u_t, state)``. The input products of all steps go to ``W_ih`` as one batched call
(still one read, with its own noise, per step); the recurrent product is read once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from .linear import AnalogLinear

States = tuple[torch.Tensor, ...]
GateUpdate = Callable[[torch.Tensor, torch.Tensor, States], States]


class RecurrentCrossbars(nn.Module):
    """The crossbars of one layer and direction: ``ih`` holds W_ih (G·H, in), ``hh`` W_hh
    (G·H, H), G gates of H units.

    ``hh``'s DAC full scale starts at 1, the bound of the tanh-bounded hidden state, rather
    than at the first batch's ``max |h|``, which is ``max |h_0|``: usually 0.
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        n_gates: int,
        bias: bool,
        *,
        profile: HardwareProfile,
        noise_seed: int,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"profile": profile, "device": device, "dtype": dtype}
        gates = n_gates * hidden_size
        self.ih = AnalogLinear(
            in_features, gates, bias, noise_seed=derive_seed(noise_seed, "ih"), **factory
        )
        self.hh = AnalogLinear(
            hidden_size, gates, bias, noise_seed=derive_seed(noise_seed, "hh"), **factory
        )
        with torch.no_grad():
            self.hh.input_range.fill_(1.0)
            self.hh.input_range_initialized.fill_(True)

    def scan(
        self,
        x: torch.Tensor,
        state: States,
        update: GateUpdate,
        reverse: bool,
        valid: torch.Tensor | None,
    ) -> tuple[torch.Tensor, States]:
        """Run over ``x`` (T, N, in) from ``state`` (tensors (N, H)), backwards in time when
        ``reverse``; ``valid`` (T, N, 1) bool, for padded sequences, keeps the state at
        padding steps. Returns the hidden states (T, N, H) and the final state."""
        a = self.ih(x)
        steps = x.shape[0]
        outputs: list[torch.Tensor] = [x] * steps
        for t in reversed(range(steps)) if reverse else range(steps):
            new = update(a[t], self.hh(state[0]), state)
            if valid is not None:
                new = tuple(torch.where(valid[t], n, s) for n, s in zip(new, state, strict=True))
            state = new
            outputs[t] = state[0]
        return torch.stack(outputs), state


def scan_layers(
    cells: Sequence[RecurrentCrossbars],
    x: torch.Tensor,
    states: States,
    update: GateUpdate,
    *,
    bidirectional: bool,
    dropout: float,
    valid: torch.Tensor | None,
) -> tuple[torch.Tensor, States]:
    """Stacked layers over ``x`` (T, N, in): ``cells`` and the first axis of each initial
    state (L·D, N, H) in torch's order (layer 0 forward, layer 0 reverse, layer 1, ...).
    Each layer after the first takes the hidden states of the one below (both directions
    concatenated), after dropout with probability ``dropout`` (0 outside training).
    Returns the last layer's hidden states (T, N, D·H) and the final states (L·D, N, H)."""
    directions = 2 if bidirectional else 1
    finals: list[list[torch.Tensor]] = [[] for _ in states]
    for start in range(0, len(cells), directions):
        if start > 0 and dropout > 0:
            x = F.dropout(x, dropout, training=True)
        outputs = []
        for k in range(start, start + directions):
            out, final = cells[k].scan(x, tuple(s[k] for s in states), update, k > start, valid)
            outputs.append(out)
            for acc, f in zip(finals, final, strict=True):
                acc.append(f)
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    return x, tuple(torch.stack(acc) for acc in finals)


def unpack(packed: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    """A packed batch as a padded (T, N, in) tensor in the caller's batch order and the
    mask (T, N, 1) of its valid steps."""
    x, lengths = pad_packed_sequence(packed)
    valid = torch.arange(x.shape[0])[:, None] < lengths[None, :]
    return x, valid.unsqueeze(-1).to(x.device)


def repack(out: torch.Tensor, valid: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """The padded output ``out`` (T, N, F) packed as ``like`` is: its valid steps, time
    major, the batch in ``like``'s length-sorted order."""
    order = like.sorted_indices
    if order is not None:
        out, valid = out.index_select(1, order), valid.index_select(1, order)
    return PackedSequence(out[valid[..., 0]], like.batch_sizes, order, like.unsorted_indices)
