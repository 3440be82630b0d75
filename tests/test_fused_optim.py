"""Optimizers with ``fused=True`` (PyTorch offers them on every PrivateUse1
device, and the Hugging Face Trainer's default is fused AdamW): parameters and
optimizer state after a few steps equal PyTorch's CPU fused kernels', with and
without a ``GradScaler`` whose step overflows once."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import torch_tpu
from helpers import TPU

STEPS = 4
OVERFLOW_STEP = 2

CASES = {
    "adam": (torch.optim.Adam, {}),
    "adam-decay-amsgrad-maximize": (torch.optim.Adam, {"weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.1}),
    "adamw-tensor-lr-amsgrad": (torch.optim.AdamW, {"lr": torch.tensor(0.01), "amsgrad": True}),
    "sgd": (torch.optim.SGD, {"lr": 0.1}),
    "sgd-nesterov-decay": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "sgd-dampening-maximize": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "maximize": True}),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01}),
}


def _train(
    base: nn.Module, device: str, cls: type, kw: dict, scaled: bool, dtype: torch.dtype
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    model = copy.deepcopy(base).to(device=device, dtype=dtype)
    opt = cls(model.parameters(), fused=True, **kw)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8) if scaled else None
    for step in range(STEPS):
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(step)).to(device=device, dtype=dtype)
        loss = model(x).float().square().mean()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            if step == OVERFLOW_STEP:
                loss = loss * float("inf")  # this step must change nothing
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad()
    params = [p.detach().cpu().float() for p in model.parameters()]
    state = [v.detach().cpu().float() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return params, state


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "grad-scaler"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_optimizer_matches_cpu_fused_kernel(case: str, scaled: bool) -> None:
    cls, kw = CASES[case]
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    want_params, want_state = _train(base, "cpu", cls, kw, scaled, torch.float32)
    torch_tpu.reset_metrics()
    got_params, got_state = _train(base, TPU, cls, kw, scaled, torch.float32)
    assert torch_tpu.metrics()["cpu_fallbacks"] == {}
    assert len(got_state) == len(want_state)
    for got, want in zip(got_params + got_state, want_params + want_state):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    moved = max((a - b).abs().max().item() for a, b in zip(got_params, [p.detach() for p in base.parameters()]))
    assert moved > 1e-3  # the steps did update the parameters


def test_fused_adamw_bfloat16_parameters_within_one_rounding() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    kw = {"weight_decay": 0.1}
    want, _ = _train(base, "cpu", torch.optim.AdamW, kw, False, torch.bfloat16)
    got, _ = _train(base, TPU, torch.optim.AdamW, kw, False, torch.bfloat16)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=2**-7, atol=2**-8)  # bfloat16 keeps 8 bits


def test_fused_adam_rejects_mismatched_lists() -> None:
    p = torch.zeros(3, device=TPU)
    with pytest.raises(RuntimeError, match=r"_fused_adam_.*exp_avgs"):
        torch._fused_adam_(
            [p], [p.clone()], [], [p.clone()], [], [torch.ones((), device=TPU)],
            lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False,
        )  # fmt: skip
