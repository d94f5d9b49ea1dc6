"""`AnalogMultiheadAttention`: ``nn.MultiheadAttention`` whose projections are crossbars.

For queries ``x_q`` (N, L, E), keys ``x_k`` (N, S, kdim) and values ``x_v`` (N, S, vdim)
(or sequence-first, or unbatched, as torch takes them) and H heads of width ``d = E / H``::

    Q = S_q(x_q) + b_q,   K = S_k(x_k) + b_k,   V = S_v(x_v) + b_v        (analog)
    A_h = softmax(Q_h K_h^T / sqrt(d) + M),   O_h = A_h V_h                 (digital)
    y = S_o([O_1, ..., O_H]) + b_o                                          (analog)

``S_*`` are the hardware surrogate products of four :class:`~.linear.AnalogLinear` layers
(``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``): their weights are stationary and are
programmed onto crossbars. The products ``Q K^T`` and ``A V`` multiply two activations
that change with every input, so there is no weight to program: they run on the digital
unit, with the additive mask ``M`` (attention mask, key padding, causal mask) and softmax.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from .base import check_sizes
from .linear import AnalogLinear

_IN_PROJECTIONS = ("q_proj", "k_proj", "v_proj")
_PROJECTIONS = (*_IN_PROJECTIONS, "out_proj")
# nn.MultiheadAttention's own projection parameters; here the AnalogLinear children hold them.
_DIGITAL_PROJECTION_KEYS = (
    "in_proj_weight",
    "in_proj_bias",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
)


def _projection_entries(state: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The q/k/v projection tensors of a digital ``nn.MultiheadAttention`` state (keys under
    ``prefix``), renamed to this module's children: the packed ``in_proj_weight`` (3E, E)
    and ``in_proj_bias`` (3E,) are split in three row blocks, ``q_proj_weight`` etc. move."""
    entries: dict[str, torch.Tensor] = {}
    for kind in ("weight", "bias"):
        packed = state.get(f"{prefix}in_proj_{kind}")
        if packed is not None:
            for name, block in zip(_IN_PROJECTIONS, packed.chunk(3), strict=True):
                entries[f"{prefix}{name}.{kind}"] = block
    for name in _IN_PROJECTIONS:
        separate = state.get(f"{prefix}{name}_weight")
        if separate is not None:
            entries[f"{prefix}{name}.weight"] = separate
    return entries


def _additive(mask: torch.Tensor | None, name: str, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True = may not attend) as 0 / -inf, a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, float("-inf")
        )
    if not torch.is_floating_point(mask):
        raise TypeError(f"{name}: dtype {mask.dtype}; give a bool or floating-point mask")
    return mask


class AnalogMultiheadAttention(nn.MultiheadAttention):
    """Multi-head attention with analog q/k/v/out projections (subclass of
    ``nn.MultiheadAttention``; same constructor and forward, plus ``profile`` and
    ``noise_seed``). See the module docstring for the equations.

    It is not an analog layer itself: its four ``AnalogLinear`` children are, so
    ``Chip.deploy``, ``set_eval_noise``, ``seed_noise`` and the energy model see them by their
    qualified names (``...self_attn.q_proj``). The parent's ``in_proj_weight``,
    ``in_proj_bias`` and ``q/k/v_proj_weight`` are ``None``; torch's fused inference kernels
    (``nn.TransformerEncoderLayer`` in eval under ``no_grad``), which take those tensors
    directly, need them, so they never run in place of the crossbars (``convert`` also
    turns off ``nn.TransformerEncoder``'s nested-tensor packing). ``bias_k`` / ``bias_v``
    (``add_bias_kv``) stay digital parameters: rows appended to K and V, not weights of a
    product. A digital ``nn.MultiheadAttention`` state dict loads into it (the packed
    projections are split), and :meth:`to_digital` packs the held weights back.

    Shapes: query (N, L, E) with ``batch_first`` else (L, N, E), or (L, E) unbatched; key
    (N, S, kdim), value (N, S, vdim) likewise; output like query; attention weights
    (N, L, S) averaged over heads or (N, H, L, S) per head, with S grown by one per
    ``add_bias_kv`` / ``add_zero_attn``.
    """

    digital_type = nn.MultiheadAttention

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        """The ``nn.MultiheadAttention`` constructor arguments (no device/dtype) that rebuild
        ``module`` (a digital or an analog attention)."""
        return {
            "embed_dim": module.embed_dim,
            "num_heads": module.num_heads,
            "dropout": module.dropout,
            "bias": module.out_proj.bias is not None,
            "add_bias_kv": module.bias_k is not None,
            "add_zero_attn": module.add_zero_attn,
            "kdim": module.kdim,
            "vdim": module.vdim,
            "batch_first": module.batch_first,
        }

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
    ) -> None:
        check_sizes("AnalogMultiheadAttention", embed_dim=embed_dim, num_heads=num_heads)
        if embed_dim % num_heads:
            raise ValueError(
                f"AnalogMultiheadAttention: embed_dim={embed_dim} is not divisible by "
                f"num_heads={num_heads}; each head takes embed_dim / num_heads features"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout={dropout!r}: the attention dropout is in [0, 1]")
        if isinstance(noise_seed, bool) or not isinstance(noise_seed, int):
            raise TypeError(f"noise_seed={noise_seed!r}: must be an int")
        super().__init__(
            embed_dim,
            num_heads,
            dropout,
            bias,
            add_bias_kv,
            add_zero_attn,
            kdim,
            vdim,
            batch_first,
            device=device,
            dtype=dtype,
        )
        # torch's initialisation (xavier-uniform over the packed (3E, E) matrix, zero biases)
        # is kept: the crossbars start from the weights nn.MultiheadAttention would have.
        initial = _projection_entries(self._parameters, "")
        initial["out_proj.weight"] = self.out_proj.weight
        if self.out_proj.bias is not None:
            initial["out_proj.bias"] = self.out_proj.bias
        for key in _DIGITAL_PROJECTION_KEYS:
            self.register_parameter(key, None)
        del self.out_proj  # re-added after q, k, v: children in the order of the data flow
        fan_in = {"q_proj": embed_dim, "k_proj": self.kdim, "v_proj": self.vdim}
        for name in _PROJECTIONS:
            projection = AnalogLinear(
                fan_in.get(name, embed_dim),
                embed_dim,
                bias,
                profile=profile,
                noise_seed=derive_seed(noise_seed, name),
                device=device,
                dtype=dtype,
            )
            setattr(self, name, projection)
        with torch.no_grad():
            for key, value in initial.items():
                self.get_parameter(key).copy_(value)
        self.layer_name = ""

    @property
    def layer_name(self) -> str:
        """Qualified name in its model (set by ``convert``); the projections are named
        ``<name>.q_proj`` etc."""
        return self._layer_name

    @layer_name.setter
    def layer_name(self, name: str) -> None:
        self._layer_name = name
        for child, projection in self.projections():
            projection.layer_name = f"{name}.{child}" if name else child

    def projections(self) -> Iterator[tuple[str, AnalogLinear]]:
        """``(name, layer)`` of the four analog projections: q, k, v, out."""
        for name in _PROJECTIONS:
            yield name, getattr(self, name)

    @classmethod
    def from_digital(
        cls, module: nn.Module, profile: HardwareProfile, noise_seed: int
    ) -> AnalogMultiheadAttention:
        """The analog copy of the ``nn.MultiheadAttention`` ``module`` (same weights, same
        train mode); projection ``p`` gets the noise seed ``derive_seed(noise_seed, p)``."""
        reference = module.out_proj.weight
        new = cls(
            **cls.constructor_args(module),
            profile=profile,
            noise_seed=noise_seed,
            device=reference.device,
            dtype=reference.dtype,
        )
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new

    def to_digital(self) -> nn.MultiheadAttention:
        """The ``nn.MultiheadAttention`` holding the weights the four projections program
        onto a chip (each ``AnalogLinear.to_digital()``), packed into ``in_proj_weight`` /
        ``in_proj_bias`` as torch stores them; ``bias_k`` / ``bias_v`` as they are."""
        reference = self.out_proj.weight
        digital = nn.MultiheadAttention(
            **self.constructor_args(self), device=reference.device, dtype=reference.dtype
        )
        held = {name: projection.to_digital() for name, projection in self.projections()}
        state = {f"out_proj.{k}": v for k, v in held["out_proj"].state_dict().items()}
        inputs = [held[name] for name in _IN_PROJECTIONS]
        if digital._qkv_same_embed_dim:
            state["in_proj_weight"] = torch.cat([p.weight for p in inputs])
        else:
            state.update({f"{name}_weight": held[name].weight for name in _IN_PROJECTIONS})
        if self.q_proj.bias is not None:
            state["in_proj_bias"] = torch.cat([p.bias for p in inputs])
        if self.bias_k is not None:
            state["bias_k"], state["bias_v"] = self.bias_k, self.bias_v
        digital.load_state_dict({k: v.detach() for k, v in state.items()})
        digital.train(self.training)
        return digital

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:  # type: ignore[no-untyped-def]
        """Accept digital ``nn.MultiheadAttention`` checkpoints: their packed projections
        become the children's entries (torch hands each module a copy it may change)."""
        entries = _projection_entries(state_dict, prefix)
        for key in _DIGITAL_PROJECTION_KEYS:
            state_dict.pop(prefix + key, None)
        state_dict.update(entries)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(y, attention weights or None)`` as ``nn.MultiheadAttention.forward`` returns
        them. Masks: ``key_padding_mask`` (N, S) or (S,), ``attn_mask`` (L, S) or
        (N·H, L, S); boolean (True = may not attend) or additive float. ``is_causal``
        without ``attn_mask`` applies the causal mask (query i sees keys j <= i); with one,
        ``attn_mask`` is used as given (the flag is a hint, as in torch)."""
        batched = self._check_inputs(query, key, value)
        q_in, k_in, v_in = (self._batch_major(x, batched) for x in (query, key, value))
        batch, tgt_len, src_len = q_in.shape[0], q_in.shape[1], k_in.shape[1]
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(tgt_len, src_len, dtype=torch.bool, device=query.device)
            attn_mask = attn_mask.triu(1)
        if key_padding_mask is not None and not batched:
            key_padding_mask = key_padding_mask.unsqueeze(0)
        mask = self._merged_mask(attn_mask, key_padding_mask, batch, tgt_len, src_len, query.dtype)
        k, v, mask = self._extended_keys(self.k_proj(k_in), self.v_proj(v_in), mask)
        q, k, v = (self._split_heads(t) for t in (self.q_proj(q_in), k, v))
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
            weights = (scores if mask is None else scores + mask).softmax(dim=-1)
            weights = F.dropout(weights, dropout_p)
            heads = weights @ v
        else:
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            weights = None
        y = self.out_proj(heads.transpose(1, 2).reshape(batch, tgt_len, self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            return y.squeeze(0), None if weights is None else weights.squeeze(0)
        return (y if self.batch_first else y.transpose(0, 1)), weights

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
        """Refuse inputs torch's attention refuses, naming them; True when batched."""
        for name, x in (("query", query), ("key", key), ("value", value)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
            if x.is_nested:
                raise ValueError(
                    f"{name} is a nested tensor; AnalogMultiheadAttention takes padded "
                    "tensors with a key_padding_mask"
                )
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key, value: expected three 3-D (batched) or three 2-D (unbatched) "
                f"tensors, got shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                f"{tuple(value.shape)}"
            )
        batched = query.dim() == 3
        seq_dims = slice(0, 2) if batched else slice(0, 1)  # (S, N) or (N, S), or (S,)
        if key.shape[seq_dims] != value.shape[seq_dims]:
            raise ValueError(
                f"key {tuple(key.shape)} and value {tuple(value.shape)} differ in their "
                "sequence or batch sizes"
            )
        batch_dim = 0 if self.batch_first else 1
        if batched and query.shape[batch_dim] != key.shape[batch_dim]:
            raise ValueError(
                f"query {tuple(query.shape)} and key {tuple(key.shape)} differ in batch size "
                f"(batch_first={self.batch_first})"
            )
        return batched

    def _batch_major(self, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """(N, T, features) from a batched input in this module's layout, or unbatched."""
        if not batched:
            return x.unsqueeze(0)
        return x if self.batch_first else x.transpose(0, 1)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, E) -> (N, H, T, E / H)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _merged_mask(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        batch: int,
        tgt_len: int,
        src_len: int,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        """One additive mask broadcastable to (N, H, L, S), or None."""
        attn = _additive(attn_mask, "attn_mask", dtype)
        padding = _additive(key_padding_mask, "key_padding_mask", dtype)
        if attn is not None:
            per_head = (batch * self.num_heads, tgt_len, src_len)
            if tuple(attn.shape) == (tgt_len, src_len):
                attn = attn.view(1, 1, tgt_len, src_len)
            elif tuple(attn.shape) == per_head:
                attn = attn.view(batch, self.num_heads, tgt_len, src_len)
            else:
                raise ValueError(
                    f"attn_mask: shape {tuple(attn.shape)}; expected (L, S) = "
                    f"{(tgt_len, src_len)} or (N*num_heads, L, S) = {per_head}"
                )
        if padding is not None:
            if tuple(padding.shape) != (batch, src_len):
                raise ValueError(
                    f"key_padding_mask: shape {tuple(padding.shape)}; expected (N, S) = "
                    f"{(batch, src_len)}"
                )
            padding = padding.view(batch, 1, 1, src_len)
        if attn is None or padding is None:
            return attn if padding is None else padding
        return attn + padding

    def _extended_keys(
        self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Keys and values (N, S, E) with the learned ``bias_k`` / ``bias_v`` row and then a
        zero row appended when configured; the mask lets every query see the new rows."""
        extra: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.bias_k is not None:
            extra.append((self.bias_k, self.bias_v))
        if self.add_zero_attn:
            zero = k.new_zeros(1, 1, self.embed_dim)
            extra.append((zero, zero))
        for k_row, v_row in extra:
            k = torch.cat([k, k_row.expand(k.shape[0], 1, -1)], dim=1)
            v = torch.cat([v, v_row.expand(v.shape[0], 1, -1)], dim=1)
            if mask is not None:
                mask = F.pad(mask, (0, 1))
        return k, v, mask

    def extra_repr(self) -> str:
        sizes = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if not self._qkv_same_embed_dim:
            sizes += f", kdim={self.kdim}, vdim={self.vdim}"
        return f"{sizes}, dropout={self.dropout}, batch_first={self.batch_first}"
