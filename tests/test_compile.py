"""torch.compile(backend="tpu") and the default backend on tpu tensors, against CPU eager."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import torch_tpu
from helpers import TPU, assert_same


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 3))


def _pair(make: type | object) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    cpu = make()  # type: ignore[operator]
    dev = make()  # type: ignore[operator]
    dev.load_state_dict(cpu.state_dict())
    return cpu, dev.to(TPU)


@pytest.mark.parametrize("backend", ["tpu", None])
def test_compiled_forward_backward_matches_cpu(mode: str, backend: str | None) -> None:
    cpu, dev = _pair(_mlp)
    compiled = torch.compile(dev, backend=backend) if backend else torch.compile(dev)
    x = torch.randn(4, 6)
    out = compiled(x.to(TPU))
    ref = cpu(x)
    assert_same(out, ref, "compiled MLP forward")
    out.square().sum().backward()
    ref.square().sum().backward()
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert_same(p.grad, q.grad, "compiled MLP gradient")


def test_training_steps_match_cpu_and_stop_compiling() -> None:
    cpu, dev = _pair(
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    )
    compiled = torch.compile(dev, backend="tpu")
    opt_c = torch.optim.SGD(cpu.parameters(), lr=0.1, momentum=0.9)
    opt_d = torch.optim.SGD(dev.parameters(), lr=0.1, momentum=0.9)
    x, target = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    for step in range(4):
        if step == 2:
            torch_tpu.reset_metrics()
        losses = []
        for model, opt, dev_name in ((cpu, opt_c, "cpu"), (compiled, opt_d, TPU)):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x.to(dev_name)), target.to(dev_name))
            loss.backward()
            opt.step()
            losses.append(loss)
        assert_same(losses[1], losses[0], f"loss of compiled step {step}", atol=1e-5, rtol=1e-4)
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert_same(p, q, "parameter after 4 compiled training steps", atol=1e-4, rtol=1e-4)
    # Batch-norm buffers are input mutations of the compiled graph: written back.
    assert_same(dev[1].running_mean, cpu[1].running_mean, "running_mean", atol=1e-5, rtol=1e-4)
    assert torch_tpu.metrics()["compiles"] == 0, "steps after warm-up compiled again"


def test_dropout_per_call_and_reproducible() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).to(TPU)
    compiled = torch.compile(model, backend="tpu")
    x = torch.ones(4, 8, device=TPU)
    torch.manual_seed(1)
    a, b = compiled(x).cpu(), compiled(x).cpu()
    torch.manual_seed(1)
    c = compiled(x).cpu()
    assert not torch.equal(a, b), "dropout masks repeat across calls"
    assert torch.equal(a, c), "dropout not reproducible per seed"
    assert ((a == 0).float().mean() - 0.5).abs() < 0.2


def test_graph_break_and_views_and_mutation() -> None:
    def f(x: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        y = x.t()[1:].sin()
        buf.add_(1)  # input mutation
        torch._dynamo.graph_break()
        return y.cos() * buf[: y.shape[1]]

    compiled = torch.compile(f, backend="tpu")
    x = torch.randn(5, 4)
    buf_cpu, buf_dev = torch.zeros(6), torch.zeros(6, device=TPU)
    ref = f(x, buf_cpu)
    out = compiled(x.to(TPU), buf_dev)
    assert_same(out, ref, "graph with a break, views and an input mutation")
    assert_same(buf_dev, buf_cpu, "mutated input")
    assert torch_tpu._compile.compile_stats()["graph_breaks"] >= 1


def test_fullgraph_mode_dynamic_accepted() -> None:
    fn = torch.compile(
        lambda a: (a * 2).relu().sum(0), backend="tpu", fullgraph=True, mode="max-autotune", dynamic=False
    )
    x = torch.randn(3, 4)
    assert_same(fn(x.to(TPU)), (x * 2).relu().sum(0), "fullgraph=True, mode=, dynamic=")


def test_hf_model_compiled(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    torch.manual_seed(0)
    cpu = transformers.GPT2LMHeadModel(cfg).eval()
    dev = transformers.GPT2LMHeadModel(cfg).eval()
    dev.load_state_dict(cpu.state_dict())
    dev.to(TPU)
    compiled = torch.compile(dev, backend="tpu")
    ids = torch.randint(0, 64, (2, 8))
    assert_same(compiled(ids.to(TPU)).logits, cpu(ids).logits, "compiled GPT-2 logits", atol=1e-4, rtol=1e-4)


def test_dump_dir_writes_fx_beside_stablehlo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_TPU_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_TPU_CACHE_DIR", "0")
    torch_tpu.clear_executable_cache()
    fn = torch.compile(lambda a: a.exp() + 41.5, backend="tpu")
    assert_same(fn(torch.zeros(3, device=TPU)), torch.full((3,), 42.5), "exp + constant")
    torch_tpu.sync()
    fx = list(tmp_path.glob("*.fx.py"))
    assert fx and "exp" in fx[0].read_text()
    assert any("exponential" in p.read_text() for p in tmp_path.glob("*.mlir"))
