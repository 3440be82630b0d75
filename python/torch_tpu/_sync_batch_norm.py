"""The per-channel statistics kernels ``nn.SyncBatchNorm`` calls (CUDA has
them in C++), written as the reductions and elementwise ops they are.

A training step of ``SyncBatchNorm`` computes each rank's channel means and
inverse standard deviations (``batch_norm_stats``), gathers them from every
rank and merges them by count (``batch_norm_gather_stats_with_counts``, which
also moves the running statistics), normalizes (``batch_norm_elemt``), and in
the backward pass reduces the gradient per channel
(``batch_norm_backward_reduce``), sums that over ranks and forms the input
gradient (``batch_norm_backward_elemt``). The channel dim is 1; statistics of
half-precision inputs are float32, as CUDA's are.
"""

from __future__ import annotations

import torch

__all__ = ["register"]


def _acc(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _dims(x: torch.Tensor) -> list[int]:
    return [d for d in range(x.dim()) if d != 1]


def _per_channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A [C] tensor shaped to broadcast along ``x``'s channel dim."""
    return t.reshape([1, -1] + [1] * (x.dim() - 2))


def _check(op: str, x: torch.Tensor) -> None:
    if x.dim() < 2:
        raise RuntimeError(f"aten::{op}: expected an input with a channel dim (2 or more dims), got {tuple(x.shape)}")


def batch_norm_stats(input: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _check("batch_norm_stats", input)
    x = _acc(input)
    var, mean = torch.var_mean(x, dim=_dims(x), correction=0)
    return mean, (var + eps).rsqrt()


def batch_norm_gather_stats_with_counts(
    input: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
    counts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merges ``[ranks, C]`` means and inverse deviations by their counts."""
    n = counts.to(mean.dtype).reshape(-1, 1)
    total = n.sum(0)
    merged_mean = (mean * n).sum(0) / total
    var = invstd.reciprocal().square() - eps  # each rank's biased variance
    merged_var = (n * (var + (mean - merged_mean).square())).sum(0) / total
    if running_mean is not None:
        running_mean.copy_((running_mean * (1 - momentum) + merged_mean * momentum).to(running_mean.dtype))
    if running_var is not None:
        unbiased = merged_var * total / (total - 1)
        running_var.copy_((running_var * (1 - momentum) + unbiased * momentum).to(running_var.dtype))
    return merged_mean, (merged_var + eps).rsqrt()


def batch_norm_elemt(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    _check("batch_norm_elemt", input)
    y = (_acc(input) - _per_channel(mean, input)) * _per_channel(invstd, input)
    if weight is not None:
        y = y * _per_channel(weight, input)
    if bias is not None:
        y = y + _per_channel(bias, input)
    return y.to(input.dtype)


def batch_norm_backward_reduce(
    grad_out: torch.Tensor,
    input: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    input_g: bool,
    weight_g: bool,
    bias_g: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of dy, sum of dy * (x - mean), grad of weight, grad of bias) per
    channel; every result is computed (the flags only say which are used)."""
    _check("batch_norm_backward_reduce", input)
    dy, x = _acc(grad_out), _acc(input)
    dims = _dims(x)
    sum_dy = dy.sum(dims)
    sum_dy_xmu = (dy * (x - _per_channel(mean, x))).sum(dims)
    dtype = weight.dtype if weight is not None else sum_dy.dtype
    return sum_dy, sum_dy_xmu, (sum_dy_xmu * invstd).to(dtype), sum_dy.to(dtype)


def batch_norm_backward_elemt(
    grad_out: torch.Tensor,
    input: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    sum_dy: torch.Tensor,
    sum_dy_xmu: torch.Tensor,
    count: torch.Tensor,
) -> torch.Tensor:
    """The input gradient from the all-ranks sums; ``count`` holds each rank's
    number of values per channel."""
    _check("batch_norm_backward_elemt", input)
    total = count.to(sum_dy.dtype).sum()
    mean_dy, mean_dy_xmu = sum_dy / total, sum_dy_xmu / total
    dy, x = _acc(grad_out), _acc(input)
    inv = _per_channel(invstd, x)
    g = dy - _per_channel(mean_dy, x) - (x - _per_channel(mean, x)) * inv.square() * _per_channel(mean_dy_xmu, x)
    g = g * inv
    if weight is not None:
        g = g * _per_channel(weight.to(g.dtype), x)
    return g.to(input.dtype)


def register(lib: torch.library.Library) -> None:
    for kernel in (
        batch_norm_stats,
        batch_norm_gather_stats_with_counts,
        batch_norm_elemt,
        batch_norm_backward_reduce,
        batch_norm_backward_elemt,
    ):
        lib.impl(kernel.__name__, kernel, "PrivateUse1")
