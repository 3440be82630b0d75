"""Fused ATen ops that PyTorch's modules call on any PrivateUse1 device,
written as the ordinary ops they fuse (which the runtime lowers): the fast
paths of ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention``, the
LSTM and GRU cells of ``nn.LSTM``/``nn.GRU``, and ``torch.amp.GradScaler``'s
unscale and update; ``tril_indices``/``triu_indices``; the fused optimizer
kernels (``_fused_optim.py``) and ``nn.SyncBatchNorm``'s (``_sync_batch_norm.py``).

``nn.TransformerEncoderLayer`` in eval mode under ``no_grad`` calls
``aten::_transformer_encoder_layer_fwd``, and ``nn.MultiheadAttention``'s
self-attention ``aten::_native_multi_head_attention``: kernels CPU and CUDA
have in C++; without these the modules raised ``NotImplementedError`` on the
tpu.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from torch_tpu import _fused_optim, _sync_batch_norm

__all__ = ["install"]

_lib: torch.library.Library | None = None


def _native_multi_head_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    embed_dim: int,
    num_head: int,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    mask: torch.Tensor | None = None,
    need_weights: bool = True,
    average_attn_weights: bool = True,
    mask_type: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-first attention; ``mask_type`` 0: ``[L, S]``, 1: key padding
    ``[B, S]``, 2: ``[B, H, L, S]``; a bool mask is True where masked, a float
    mask is added to the scores. A row with every key masked gives zeros, as
    the CPU kernel's masked softmax does."""
    b, length, _ = query.shape
    s = key.shape[1]
    d = embed_dim // num_head
    w_q, w_k, w_v = qkv_weight.chunk(3)
    b_q, b_k, b_v = qkv_bias.chunk(3)

    def heads(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w, bias).view(x.shape[0], x.shape[1], num_head, d).transpose(1, 2)

    q, k, v = heads(query, w_q, b_q), heads(key, w_k, b_k), heads(value, w_v, b_v)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
    if mask is not None:
        if mask.dim() == 4 or mask_type == 2:
            m = mask.reshape(b, num_head, length, s)
        elif mask_type == 1 or (mask_type is None and mask.dim() == 2 and tuple(mask.shape) == (b, s) != (length, s)):
            m = mask.reshape(b, 1, 1, s)
        else:
            m = mask.reshape(1, 1, length, s)
        scores = scores.masked_fill(m, float("-inf")) if m.dtype == torch.bool else scores + m
    p = torch.softmax(scores, dim=-1)
    p = p.masked_fill(scores.amax(-1, keepdim=True) == float("-inf"), 0.0)
    out = (p @ v).transpose(1, 2).reshape(b, length, embed_dim)
    out = F.linear(out, proj_weight, proj_bias)
    if not need_weights:
        return out, None  # type: ignore[return-value]  # the CPU kernel's undefined tensor
    return out, p.mean(dim=1) if average_attn_weights else p


def _transformer_encoder_layer_fwd(
    src: torch.Tensor,
    embed_dim: int,
    num_heads: int,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    use_gelu: bool,
    norm_first: bool,
    eps: float,
    norm_weight_1: torch.Tensor,
    norm_bias_1: torch.Tensor,
    norm_weight_2: torch.Tensor,
    norm_bias_2: torch.Tensor,
    ffn_weight_1: torch.Tensor,
    ffn_bias_1: torch.Tensor,
    ffn_weight_2: torch.Tensor,
    ffn_bias_2: torch.Tensor,
    mask: torch.Tensor | None = None,
    mask_type: int | None = None,
) -> torch.Tensor:
    def attend(h: torch.Tensor) -> torch.Tensor:
        out, _ = _native_multi_head_attention(
            h, h, h, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, mask, False, True, mask_type
        )
        return out

    def feed_forward(h: torch.Tensor) -> torch.Tensor:
        h = F.linear(h, ffn_weight_1, ffn_bias_1)
        h = F.gelu(h) if use_gelu else F.relu(h)
        return F.linear(h, ffn_weight_2, ffn_bias_2)

    def norm(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, (embed_dim,), w, b, eps)

    x = src
    if norm_first:
        x = x + attend(norm(x, norm_weight_1, norm_bias_1))
        return x + feed_forward(norm(x, norm_weight_2, norm_bias_2))
    x = norm(x + attend(x), norm_weight_1, norm_bias_1)
    return norm(x + feed_forward(x), norm_weight_2, norm_bias_2)


def _nested_tensor_from_mask_left_aligned(src: torch.Tensor, mask: torch.Tensor) -> bool:
    """The tpu has no nested tensors, so ``nn.TransformerEncoder``'s sparsity
    fast path is declined here (it asks this before converting): the layers run
    on the dense batch with the padding mask. Positions that are padding then
    hold the layers' values where CPU gives zeros; every other position is the
    same."""
    if not _warned:
        _warned.append(True)
        warnings.warn(
            "nn.TransformerEncoder on tpu: no nested tensors, the padded batch stays dense "
            "(outputs at padding positions are not zeroed)",
            stacklevel=3,
        )
    return False


_warned: list[bool] = []


def _thnn_fused_lstm_cell(
    input_gates: torch.Tensor,
    hidden_gates: torch.Tensor,
    cx: torch.Tensor,
    input_bias: torch.Tensor | None = None,
    hidden_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM step from its gate pre-activations (``nn.LSTM`` on a non-CPU
    device). Registered for the autograd key: its gradient is that of these
    ops, so the workspace (the activated gates) is for show only."""
    gates = input_gates + hidden_gates
    if input_bias is not None:
        gates = gates + input_bias
    if hidden_bias is not None:
        gates = gates + hidden_bias
    i, f, g, o = gates.chunk(4, dim=1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    cy = f * cx + i * g
    hy = o * cy.tanh()
    return hy, cy, torch.cat([i, f, g, o], dim=1)


def _thnn_fused_gru_cell(
    input_gates: torch.Tensor,
    hidden_gates: torch.Tensor,
    hx: torch.Tensor,
    input_bias: torch.Tensor | None = None,
    hidden_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GRU step (``nn.GRU`` on a non-CPU device); autograd key, as above."""
    if input_bias is not None:
        input_gates = input_gates + input_bias
    if hidden_bias is not None:
        hidden_gates = hidden_gates + hidden_bias
    ir, iz, in_ = input_gates.chunk(3, dim=1)
    hr, hz, hn = hidden_gates.chunk(3, dim=1)
    r = (ir + hr).sigmoid()
    z = (iz + hz).sigmoid()
    n = (in_ + r * hn).tanh()
    hy = n + z * (hx - n)
    return hy, torch.cat([r, z, n, hx, hn], dim=1)


def _amp_foreach_non_finite_check_and_unscale_(
    grads: list[torch.Tensor], found_inf: torch.Tensor, inv_scale: torch.Tensor
) -> None:
    """``GradScaler.unscale_``: grads *= inv_scale; found_inf = 1 if any grad
    has an Inf or NaN (on the device: no host read)."""
    for g in grads:
        bad = (~torch.isfinite(g)).any().to(found_inf.dtype)
        found_inf.copy_(torch.maximum(found_inf, bad))
        g.mul_(inv_scale)


def _amp_update_scale_(
    scale: torch.Tensor,
    growth_tracker: torch.Tensor,
    found_inf: torch.Tensor,
    growth_factor: float,
    backoff_factor: float,
    growth_interval: int,
) -> torch.Tensor:
    """``GradScaler.update``: back off after an overflow, else grow the scale
    every ``growth_interval`` clean steps (counted in ``growth_tracker``)."""
    overflow = found_inf > 0
    grown = growth_tracker + 1
    grow = (~overflow) & (grown >= growth_interval)
    new_scale = torch.where(overflow, scale * backoff_factor, torch.where(grow, scale * growth_factor, scale))
    growth_tracker.copy_(torch.where(overflow | grow, torch.zeros_like(grown), grown))
    scale.copy_(new_scale)
    return scale


def _index_factory(name: str) -> Callable[..., torch.Tensor]:
    """``tril_indices``/``triu_indices``: the indices depend on the sizes
    alone, so they are made on the CPU and uploaded (as a ``torch.tensor``
    of them would be)."""
    make = getattr(torch, name)

    def indices(
        row: int,
        col: int,
        offset: int = 0,
        *,
        dtype: torch.dtype | None = None,
        layout: torch.layout | None = None,
        device: torch.device | None = None,
        pin_memory: bool | None = None,
    ) -> torch.Tensor:
        return make(row, col, offset, dtype=dtype or torch.long).to(device)

    return indices


def install() -> None:
    """Registers the composites for the PrivateUse1 key; safe to call twice."""
    global _lib
    if _lib is not None:
        return
    _lib = torch.library.Library("aten", "IMPL")
    _lib.impl("_native_multi_head_attention", _native_multi_head_attention, "PrivateUse1")
    _lib.impl("_nested_tensor_from_mask_left_aligned", _nested_tensor_from_mask_left_aligned, "PrivateUse1")
    _lib.impl("_transformer_encoder_layer_fwd", _transformer_encoder_layer_fwd, "PrivateUse1")
    _lib.impl("_amp_foreach_non_finite_check_and_unscale_", _amp_foreach_non_finite_check_and_unscale_, "PrivateUse1")
    _lib.impl("_amp_update_scale_", _amp_update_scale_, "PrivateUse1")
    for name in ("tril_indices", "triu_indices"):
        _lib.impl(name, _index_factory(name), "PrivateUse1")
    _fused_optim.register(_lib)
    _sync_batch_norm.register(_lib)
    # Autograd key: the backward is that of the ops inside.
    _lib.impl("_thnn_fused_lstm_cell", _thnn_fused_lstm_cell, "AutogradPrivateUse1")
    _lib.impl("_thnn_fused_gru_cell", _thnn_fused_gru_cell, "AutogradPrivateUse1")
