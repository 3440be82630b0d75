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


def test_compile_stats_count_dynamo_graphs_and_breaks_since_reset() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        y = x.exp()
        torch._dynamo.graph_break()
        return y + 1

    torch.compile(f, backend="tpu")(torch.randn(3, device=TPU))
    assert torch_tpu.compile_stats()["dynamo_graphs"] >= 2
    torch_tpu.reset_metrics()
    stats = torch_tpu.compile_stats()
    assert (stats["dynamo_graphs"], stats["graph_breaks"], stats["recompile_reasons"]) == (0, 0, [])
    torch._dynamo.reset()  # Dynamo forgets f: traced afresh, its counters kept
    torch.compile(f, backend="tpu")(torch.randn(3, device=TPU))
    stats = torch_tpu.compile_stats()
    assert stats["dynamo_graphs"] == 2 and stats["graph_breaks"] == 1, stats


def test_data_dependent_branch_is_a_counted_graph_break() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        if y.sum() > 0:  # Dynamo cannot trace the branch: it breaks here
            return y + 1
        return y - 1

    torch._dynamo.reset()
    torch_tpu.reset_metrics()
    compiled = torch.compile(f, backend="tpu")
    for x in (torch.ones(3), -torch.ones(3)):
        assert_same(compiled(x.to(TPU)), f(x), "both sides of a data-dependent branch")
    stats = torch_tpu.compile_stats()
    assert stats["graph_breaks"] >= 1, stats
    assert any("Data-dependent branching" in r for r in stats["graph_break_reasons"]), stats


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


# Direct calls: after its first call with an input signature a compiled graph
# runs its one program on the inputs' buffers (no FX replay, no per-op dispatch).


def _graph_totals() -> tuple[int, int]:
    s = torch_tpu._compile.compile_stats()
    return s["direct_calls"], s["replayed_calls"]


def test_direct_calls_after_warm_up_dispatch_no_ops() -> None:
    cpu, dev = _pair(_mlp)
    compiled = torch.compile(dev, backend="tpu")
    xs = [torch.randn(4, 6) for _ in range(5)]
    for i, x in enumerate(xs):
        xd = x.to(TPU)
        torch_tpu.sync()
        if i == 2:
            torch_tpu._compile.reset_compile_stats()
            torch_tpu.reset_metrics()
        out = compiled(xd)
        ref = cpu(x)
        out.square().sum().backward()
        ref.square().sum().backward()
        assert_same(out, ref, f"compiled MLP forward, call {i}")
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert_same(p.grad, q.grad, "compiled MLP gradients accumulated over direct calls")
    direct, replayed = _graph_totals()
    assert replayed == 0 and direct == 6, torch_tpu._compile.compile_stats()["graphs"]
    assert torch_tpu.metrics()["compiles"] == 0


def test_direct_forward_dispatches_nothing_per_call() -> None:
    cpu, dev = _pair(_mlp)
    with torch.no_grad():
        compiled = torch.compile(dev, backend="tpu")
        x = torch.randn(3, 6)
        xd = x.to(TPU)
        compiled(xd)
        torch_tpu.sync()
        torch_tpu.reset_metrics()
        outs = [compiled(xd) for _ in range(4)]
        assert torch_tpu.metrics()["ops_dispatched"] == 0
        assert torch_tpu.metrics()["executions"] == 4
        for out in outs:
            assert_same(out, cpu(x), "direct forward")
    graphs = [g for g in torch_tpu._compile.compile_stats()["graphs"] if g["direct_calls"]]
    assert graphs and graphs[-1]["programs_compiled"] >= 0 and graphs[-1]["plans"] == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_training_step_with_optimizer_inside_the_compiled_function(optimizer: str) -> None:
    """AdamW keeps its step counters on the CPU: that part of the graph runs on
    the host and the rest runs directly."""
    cpu, dev = _pair(lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)))
    if optimizer == "sgd":
        opt_c = torch.optim.SGD(cpu.parameters(), lr=0.05, momentum=0.9)
        opt_d = torch.optim.SGD(dev.parameters(), lr=0.05, momentum=0.9)
    else:
        opt_c = torch.optim.AdamW(cpu.parameters(), lr=0.01, weight_decay=0.1)
        opt_d = torch.optim.AdamW(dev.parameters(), lr=0.01, weight_decay=0.1)

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    compiled_step = torch.compile(step, backend="tpu")
    x, y = torch.randn(6, 5), torch.randn(6, 2)
    xd, yd = x.to(TPU), y.to(TPU)
    for i in range(5):
        if i == 3:
            torch_tpu._compile.reset_compile_stats()
            torch_tpu.reset_metrics()
        loss_d = compiled_step(dev, opt_d, xd, yd)
        loss_c = step(cpu, opt_c, x, y)
        assert_same(loss_d, loss_c, f"loss of step {i}", atol=1e-5, rtol=1e-4)
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert_same(p, q, "parameters after compiled steps with the optimizer inside", atol=1e-5, rtol=1e-4)
    graphs = torch_tpu._compile.compile_stats()["graphs"]
    direct, replayed = _graph_totals()
    assert direct > 0 and replayed == 0, graphs  # after warm-up every call runs directly
    assert torch_tpu.metrics()["compiles"] == 0
    if optimizer == "adamw":
        assert any(g["host_prelude"] for g in graphs), graphs
        for p, q in zip(dev.parameters(), cpu.parameters()):
            assert opt_d.state[p]["step"].device.type == "cpu"
            assert float(opt_d.state[p]["step"]) == float(opt_c.state[q]["step"]) == 5.0


def test_batch_norm_running_stats_written_by_direct_calls() -> None:
    cpu, dev = _pair(lambda: nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)))
    compiled = torch.compile(dev, backend="tpu")
    for i in range(4):
        x = torch.randn(8, 4)
        assert_same(compiled(x.to(TPU)), cpu(x), f"batch-norm forward {i}", atol=1e-5, rtol=1e-4)
    assert_same(dev[1].running_mean, cpu[1].running_mean, "running_mean", atol=1e-5, rtol=1e-4)
    assert_same(dev[1].running_var, cpu[1].running_var, "running_var", atol=1e-5, rtol=1e-4)
    assert dev[1].num_batches_tracked.item() == 4
    # Inference: the mutation of the running stats is inside the graph.
    cpu.eval(), dev.eval()
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(dev, backend="tpu")
        for i in range(3):
            x = torch.randn(8, 4)
            assert_same(compiled(x.to(TPU)), cpu(x), f"eval batch-norm forward {i}", atol=1e-5, rtol=1e-4)
    assert _graph_totals()[0] > 0


def test_inference_input_mutation_and_output_views_of_inputs() -> None:
    def f(x: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        buf.mul_(2).add_(x.sum())
        return x.t()[1:], buf[1:3], x * buf[0]

    compiled = torch.compile(f, backend="tpu")
    x = torch.randn(3, 4)
    buf_c, buf_d = torch.ones(5), torch.ones(5, device=TPU)
    xd = x.to(TPU)
    with torch.no_grad():
        for i in range(4):
            outs_c, outs_d = f(x, buf_c), compiled(xd, buf_d)
            for k, (a, b) in enumerate(zip(outs_d, outs_c)):
                assert_same(a, b, f"output {k} of call {i}")
            assert_same(buf_d, buf_c, f"mutated input after call {i}")
        # The first two outputs are views of the inputs, as on the CPU.
        t_d, b_d, _ = compiled(xd, buf_d)
        t_c, b_c, _ = f(x, buf_c)
        xd.add_(1), x.add_(1)
        buf_d.sub_(3), buf_c.sub_(3)
        assert_same(t_d, t_c, "a view output follows its input")
        assert_same(b_d, b_c, "a view output of a mutated input follows it")
    assert _graph_totals()[0] > 0


def test_dropout_differs_per_direct_call_reproducible_and_never_compiles() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).to(TPU)
    compiled = torch.compile(model, backend="tpu")
    x = torch.ones(4, 8, device=TPU)
    torch.manual_seed(3)
    first = [compiled(x).detach().cpu() for _ in range(3)]
    torch_tpu.reset_metrics()
    torch.manual_seed(3)
    again = [compiled(x).detach().cpu() for _ in range(3)]
    assert torch_tpu.metrics()["compiles"] == 0
    assert not torch.equal(again[1], again[2]), "dropout masks repeat across direct calls"
    for k, (a, b) in enumerate(zip(first, again)):
        assert torch.equal(a, b), f"call {k} not reproducible per seed (replay vs direct)"
    assert _graph_totals()[0] >= 3


def test_a_new_input_shape_makes_a_new_plan() -> None:
    cpu, dev = _pair(_mlp)
    compiled = torch.compile(dev, backend="tpu", dynamic=False)
    with torch.no_grad():
        for batch in (2, 2, 5, 5, 2):
            x = torch.randn(batch, 6)
            assert_same(compiled(x.to(TPU)), cpu(x), f"batch {batch}")
    stats = torch_tpu._compile.compile_stats()
    assert stats["direct_calls"] >= 2, stats["graphs"]


def test_a_cpu_tensor_input_replays_and_says_why() -> None:
    fn = torch.compile(lambda a, s: a * s + 1, backend="tpu")
    x = torch.randn(4)
    for v in (2.0, 3.0, 4.0):
        s = torch.tensor(v)
        assert_same(fn(x.to(TPU), s), x * s + 1, f"times a CPU scalar tensor {v}")
    graphs = torch_tpu._compile.compile_stats()["graphs"]
    reasons = {r for g in graphs for r in g["fallback_reasons"]}
    assert "a CPU tensor input" in reasons, graphs


def test_compiled_transformer_encoder_training_step() -> None:
    """nn.TransformerEncoder's backward has select_backward (a
    CompositeExplicitAutogradNonFunctional kernel): runnable, not refused."""
    torch.manual_seed(0)

    def make() -> nn.Module:
        return nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 2)

    cpu, dev = _pair(make)
    # SGD: Adam's normalized step turns float noise in near-zero gradients into lr-sized differences.
    opt_c = torch.optim.SGD(cpu.parameters(), lr=0.05, momentum=0.9)
    opt_d = torch.optim.SGD(dev.parameters(), lr=0.05, momentum=0.9)

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        return loss.detach()

    compiled_step = torch.compile(step, backend="tpu")
    x = torch.randn(2, 5, 16)
    for i in range(3):
        assert_same(compiled_step(dev, opt_d, x.to(TPU)), step(cpu, opt_c, x), f"loss {i}", atol=1e-5, rtol=1e-4)
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert_same(p, q, "parameters after compiled steps", atol=1e-5, rtol=1e-4)
