"""The fused optimizer kernels (``Adam``/``AdamW``/``SGD``/``Adagrad`` with
``fused=True``), written as the elementwise ops they fuse.

PyTorch lists every PrivateUse1 device among those with fused optimizers, and
the Hugging Face Trainer's default optimizer is ``adamw_torch_fused``, so these
ops are reached by ordinary training code. Each one follows the arithmetic of
PyTorch's CPU kernel (``aten/src/ATen/native/cpu/Fused*Kernel.cpp``): the
moment updates in ``a * beta + g * (1 - beta)`` form, bias corrections from the
step count, AdamW's decoupled decay applied to the parameter first. Reduced
precision parameters are computed in float32, as the CPU kernels do.

With a ``GradScaler`` (``grad_scale`` and ``found_inf`` given), gradients are
unscaled in place; a step whose gradients overflowed changes nothing. That
choice is made on the device with ``where`` rather than by reading
``found_inf`` to the host, so a scaled training step never waits on it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["register"]

Tensors = list[torch.Tensor]
Lr = float | torch.Tensor


def _opmath(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _check_lengths(op: str, params: Tensors, **lists: Tensors) -> None:
    for name, ts in lists.items():
        if len(ts) != len(params):
            raise RuntimeError(f"{op}: {name} has {len(ts)} tensors for {len(params)} parameters")


def _unscaled_grad(op: str, g: torch.Tensor, grad_scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    if not g.dtype.is_floating_point:
        raise RuntimeError(f"{op}: expected floating point gradients, got {g.dtype}")
    gf = g.to(dtype)
    return gf if grad_scale is None else gf / grad_scale.to(dtype)


def _prologue(
    op: str, p: torch.Tensor, grad: torch.Tensor, grad_scale: torch.Tensor | None, maximize: bool, decay: float
) -> tuple[torch.dtype, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What every kernel starts with for one parameter: its compute dtype, the
    unscaled gradient, the descent direction (negated when maximizing, with
    L2 ``decay`` added) and the parameter in the compute dtype."""
    dt = _opmath(p)
    g = _unscaled_grad(op, grad, grad_scale, dt)
    d = -g if maximize else g
    pf = p.to(dt)
    if decay != 0:
        d = d + pf * decay
    return dt, g, d, pf


def _store(updates: list[tuple[torch.Tensor, torch.Tensor]], found_inf: torch.Tensor | None) -> None:
    """Writes each new value into its tensor; after an overflow, keeps the old one."""
    skip = None if found_inf is None else found_inf.reshape(()) == 1.0
    for dst, new in updates:
        new = new.to(dst.dtype)
        dst.copy_(new if skip is None else torch.where(skip, dst, new))


def _adam(decoupled: bool, op: str) -> Callable[..., None]:
    def step(
        params: Tensors,
        grads: Tensors,
        exp_avgs: Tensors,
        exp_avg_sqs: Tensors,
        max_exp_avg_sqs: Tensors,
        state_steps: Tensors,
        *,
        lr: Lr,
        beta1: float,
        beta2: float,
        weight_decay: float,
        eps: float,
        amsgrad: bool,
        maximize: bool,
        grad_scale: torch.Tensor | None = None,
        found_inf: torch.Tensor | None = None,
    ) -> None:
        _check_lengths(op, params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, state_steps=state_steps)
        if amsgrad:
            _check_lengths(op, params, max_exp_avg_sqs=max_exp_avg_sqs)
        for i, p in enumerate(params):
            dt, g, d, pf = _prologue(op, p, grads[i], grad_scale, maximize, 0.0 if decoupled else weight_decay)
            if decoupled and weight_decay != 0:
                pf = pf * (1 - lr * weight_decay)
            m = exp_avgs[i].to(dt) * beta1 + d * (1 - beta1)
            v = exp_avg_sqs[i].to(dt) * beta2 + d * d * (1 - beta2)
            t = state_steps[i].to(dt)
            bias_correction1 = 1 - torch.pow(beta1, t)
            bias_correction2_sqrt = (1 - torch.pow(beta2, t)).sqrt()
            updates = [(exp_avgs[i], m), (exp_avg_sqs[i], v)]
            if amsgrad:
                v = torch.maximum(max_exp_avg_sqs[i].to(dt), v)
                updates.append((max_exp_avg_sqs[i], v))
            denom = v.sqrt() / bias_correction2_sqrt + eps
            updates.append((p, pf - (lr / bias_correction1) * m / denom))
            if grad_scale is not None:
                updates.append((grads[i], g))
            _store(updates, found_inf)

    return step


def _fused_sgd_(
    params: Tensors,
    grads: Tensors,
    momentum_buffer_list: Tensors,
    *,
    weight_decay: float,
    momentum: float,
    lr: Lr,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    is_first_step: bool,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    op = "aten::_fused_sgd_"
    _check_lengths(op, params, grads=grads)
    if momentum != 0:
        _check_lengths(op, params, momentum_buffer_list=momentum_buffer_list)
    for i, p in enumerate(params):
        dt, g, d, pf = _prologue(op, p, grads[i], grad_scale, maximize, weight_decay)
        updates = []
        if momentum != 0:
            buf = d if is_first_step else momentum_buffer_list[i].to(dt) * momentum + d * (1 - dampening)
            updates.append((momentum_buffer_list[i], buf))
            d = d + buf * momentum if nesterov else buf
        updates.append((p, pf - lr * d))
        if grad_scale is not None:
            updates.append((grads[i], g))
        _store(updates, found_inf)


def _fused_adagrad_(
    params: Tensors,
    grads: Tensors,
    state_sums: Tensors,
    state_steps: Tensors,
    *,
    lr: Lr,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    op = "aten::_fused_adagrad_"
    _check_lengths(op, params, grads=grads, state_sums=state_sums, state_steps=state_steps)
    for i, p in enumerate(params):
        dt, g, d, pf = _prologue(op, p, grads[i], grad_scale, maximize, weight_decay)
        clr = lr / (1 + (state_steps[i].to(dt) - 1) * lr_decay)
        s = state_sums[i].to(dt) + d * d
        updates = [(state_sums[i], s), (p, pf - clr * d / (s.sqrt() + eps))]
        if grad_scale is not None:
            updates.append((grads[i], g))
        _store(updates, found_inf)


def register(lib: torch.library.Library) -> None:
    """The in-place kernels and their ``tensor_lr`` overloads for PrivateUse1;
    the functional forms (``torch.compile``) are PyTorch's, built on these."""
    kernels = {
        "_fused_adam_": _adam(False, "aten::_fused_adam_"),
        "_fused_adamw_": _adam(True, "aten::_fused_adamw_"),
        "_fused_sgd_": _fused_sgd_,
        "_fused_adagrad_": _fused_adagrad_,
    }
    for name, kernel in kernels.items():
        lib.impl(name, kernel, "PrivateUse1")
        lib.impl(f"{name}.tensor_lr", kernel, "PrivateUse1")
