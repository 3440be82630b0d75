"""TorchTitan's Llama 3 debug model (from the `torchtitan` package, built from its
config with random weights) trains on tpu with the CPU's losses.

Its rotary embedding is complex (`torch.polar`, `view_as_complex`), its position
bound a device-side `torch._assert_async`. The attention backend is TorchTitan's
`ScaledDotProductAttention` (causal): its flex backend refuses any device but
CUDA, CPU, HPU and MPS inside PyTorch itself, and cannot run backward on the CPU
reference either."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_tpu
from helpers import TPU

llama3 = pytest.importorskip("torchtitan.models.llama3", reason="torchtitan is in the test extras (Python >= 3.11)")
attention = pytest.importorskip("torchtitan.models.common.attention")


def _losses(device: str, steps: int = 5) -> list[float]:
    cfg = llama3.model_registry("debugmodel", attn_backend="flex").model
    for layer in cfg.layers:
        layer.attention.inner_attention = attention.ScaledDotProductAttention.Config()
    with torch.device("meta"):
        model = cfg.build()
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights(buffer_device=torch.device("cpu"))
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=8e-4)
    g = torch.Generator().manual_seed(1)
    batch, seq = 2, 64
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g)
    inputs, targets = tokens[:, :-1].to(device), tokens[:, 1:].to(device)
    positions = torch.arange(seq).repeat(batch, 1).to(device)
    losses = []
    for _ in range(steps):
        logits = model(inputs, positions=positions)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_llama3_debug_model_trains_like_cpu(mode: str) -> None:
    cpu = _losses("cpu")
    tpu = _losses(TPU)
    assert cpu[-1] < cpu[0] - 1.0  # it learns: the comparison is not of constants
    torch.testing.assert_close(torch.tensor(tpu), torch.tensor(cpu), atol=2e-3, rtol=1e-3)


def test_position_beyond_rope_cache_raises(mode: str) -> None:
    """TorchTitan's bound check is a device-side assert: it raises at the op in debug
    mode, else at the next sync."""
    cond = torch.tensor(False, device=TPU)
    with pytest.raises(RuntimeError, match="position out of range for the RoPE cache"):
        torch._assert_async(cond, "position out of range for the RoPE cache")
        torch_tpu.sync()
    torch_tpu.sync()  # raised once, then cleared
    torch._assert_async(torch.tensor(3, device=TPU))  # nonzero: holds
    torch_tpu.sync()
    assert torch.tensor(2.0, device=TPU).item() == 2.0
