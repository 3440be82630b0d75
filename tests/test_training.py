"""Small models trained for 20 steps on tpu and on CPU from the same weights
and data: the losses must match, in every eager mode."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import TPU

pytestmark = pytest.mark.usefixtures("mode")

STEPS = 20


class MLP(nn.Module):
    def __init__(self, d_in: int = 20, hidden: int = 64, classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=1)
        self.fc = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class Block(nn.Module):
    """Pre-norm transformer block with hand-written causal multi-head attention."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        attn = torch.softmax(scores, dim=-1) @ v
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 32, heads: int = 4, layers: int = 2, ctx: int = 16) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(ctx, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


class TorchEncoder(nn.Module):
    """nn.TransformerEncoderLayer (no dropout) as a classifier."""

    def __init__(self, vocab: int = 30, d: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.enc = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True, activation="gelu")
        self.out = nn.Linear(d, classes)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(self.enc(self.emb(idx)).mean(1))


def _train(
    model: nn.Module,
    opt_fn: Callable[..., torch.optim.Optimizer],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    lm: bool,
) -> list[float]:
    opt = opt_fn(model.parameters())
    losses = []
    for x, y in batches:
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)) if lm else F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _compare(
    name: str,
    build: Callable[[], nn.Module],
    opt_fn: Callable[..., torch.optim.Optimizer],
    make_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    rtol: float,
    lm: bool = False,
) -> None:
    torch.manual_seed(0)
    cpu_model = build()
    tpu_model = copy.deepcopy(cpu_model).to(TPU)
    batches = [make_batch() for _ in range(STEPS)]
    cpu_losses = _train(cpu_model, opt_fn, batches, lm)
    tpu_losses = _train(tpu_model, opt_fn, [(x.to(TPU), y.to(TPU)) for x, y in batches], lm)
    assert cpu_losses[-1] < cpu_losses[0], f"{name}: the CPU reference did not learn: {cpu_losses}"
    for step, (c, t) in enumerate(zip(cpu_losses, tpu_losses)):
        assert math.isclose(t, c, rel_tol=rtol, abs_tol=rtol), (
            f"{name}: step {step} loss {t} on tpu, {c} on CPU\n  tpu {tpu_losses}\n  cpu {cpu_losses}"
        )
    for (pname, p_cpu), p_tpu in zip(cpu_model.named_parameters(), tpu_model.parameters()):
        torch.testing.assert_close(
            p_tpu.detach().cpu(),
            p_cpu.detach(),
            rtol=rtol * 10,
            atol=rtol * 10,
            msg=lambda m, n=pname: f"{name}: parameter {n}: {m}",
        )


def _classification(n: int, d: int, classes: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    centers = torch.randn(classes, d) * 2

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,))
        return centers[y] + torch.randn(n, d), y

    return batch


def test_mlp_sgd() -> None:
    _compare("MLP/SGD", MLP, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), _classification(64, 20, 5), rtol=1e-4)


def test_mlp_adam() -> None:
    _compare("MLP/Adam", MLP, lambda p: torch.optim.Adam(p, lr=1e-2), _classification(64, 20, 5), rtol=1e-4)


def test_mlp_adamw_no_foreach() -> None:
    _compare(
        "MLP/AdamW(foreach=False)",
        MLP,
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, foreach=False),
        _classification(64, 20, 5),
        rtol=1e-4,
    )


def test_cnn_sgd() -> None:
    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (16,))
        x = torch.randn(16, 1, 16, 16) * 0.5
        x[torch.arange(16), 0, y, y] += 3  # a learnable signal
        return x, y

    _compare("CNN/SGD", CNN, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), batch, rtol=1e-3)


def test_transformer_adam() -> None:
    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        start = torch.randint(0, 50, (8, 1))
        seq = (start + torch.arange(17)) % 50  # next token = token + 1
        return seq[:, :-1], seq[:, 1:]

    _compare("TinyGPT/Adam", TinyGPT, lambda p: torch.optim.Adam(p, lr=3e-3), batch, rtol=2e-3, lm=True)


def test_transformer_sgd() -> None:
    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        start = torch.randint(0, 50, (8, 1))
        seq = (start + 2 * torch.arange(17)) % 50
        return seq[:, :-1], seq[:, 1:]

    _compare("TinyGPT/SGD", TinyGPT, lambda p: torch.optim.SGD(p, lr=0.1), batch, rtol=2e-3, lm=True)


def test_torch_transformer_encoder_layer() -> None:
    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, 30, (8, 10))
        return idx, (idx[:, 0] % 4)

    _compare("TransformerEncoderLayer/Adam", TorchEncoder, lambda p: torch.optim.Adam(p, lr=3e-3), batch, rtol=2e-3)
