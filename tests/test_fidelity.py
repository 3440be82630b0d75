"""What a PyTorch or Hugging Face user meets first: plugin discovery, parameter
identity, autocast, fork safety, safetensors, weight_norm, quiet start-up,
``python -m torch_tpu``. Each compares against CPU PyTorch or a known value."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_tpu
from helpers import BF16, F32, TPU, assert_same, run_python

# --- 1. plugin discovery and start-up -------------------------------------------------


def test_plugin_found_without_python_on_path() -> None:
    """As an IDE or systemd runs a venv's python: no `python3` on PATH, no activation."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_TPU_PJRT_PLUGIN", "TORCH_TPU_SITE_PACKAGES")}
    env["PATH"] = "/nonexistent"
    code = "import torch, torch_tpu; print(torch_tpu.platform(), (torch.ones(3, device='tpu') * 2).sum().item())"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cpu", "6.0"]


def test_runtime_started_at_import_and_init_is_thread_safe() -> None:
    import threading

    assert torch.tpu.is_initialized()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            torch.tpu.init()
            assert torch.tpu.device_count() >= 1
        except BaseException as e:  # collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_newest_cpu_plugin_preferred() -> None:
    info = torch_tpu.plugin_info()
    cpu = [p for k, p in torch_tpu._plugins.candidates() if k == "cpu"]
    assert info["plugin"] == cpu[0]
    known = {p.library: p.pjrt_api for p in torch_tpu._plugins.KNOWN_PLUGINS}
    assert info["pjrt_api_version"] == "{}.{}".format(*known[Path(cpu[0]).name])


def test_quiet_by_default_and_bug_report() -> None:
    r = run_python("import torch, torch_tpu; x = torch.ones(2, device='tpu'); print((x + 1).sum().item())")
    assert r.returncode == 0 and r.stdout.strip() == "4.0", r.stderr
    assert r.stderr == "", f"import printed to stderr:\n{r.stderr}"
    r = subprocess.run([sys.executable, "-m", "torch_tpu"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    for key in ("platform: cpu", "plugin: ", "pjrt_api_version: ", "device 0:", "eager mode:", "torch "):
        assert key in r.stdout, r.stdout
    assert torch_tpu.plugin_info()["plugin"] in r.stdout


# --- 2. parameter identity -------------------------------------------------------------


def test_to_keeps_parameter_objects_and_optimizer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ref.load_state_dict(model.state_dict())
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built before the move, as tutorials do
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    model.to(TPU)
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(p.device.type == TPU for p in model.parameters())
    x = torch.randn(5, 4)
    for m, o, inp in ((model, opt, x.to(TPU)), (ref, ref_opt, x)):
        o.zero_grad()
        m(inp).square().mean().backward()
        o.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert_same(p, q, "parameter after one SGD step with an optimizer built before .to('tpu')")
    model.cpu()
    assert all(a is b and a.device.type == "cpu" for a, b in zip(model.parameters(), params))


def test_tied_weights_survive_to_and_load_state_dict() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    cpu_model = Tied()
    n_cpu = sum(p.numel() for p in cpu_model.parameters())
    model = Tied().to(TPU)
    assert model.head.weight is model.emb.weight
    assert sum(p.numel() for p in model.parameters()) == n_cpu
    state = cpu_model.state_dict()
    model.load_state_dict(state)
    assert model.head.weight is model.emb.weight
    assert_same(model.emb.weight, cpu_model.emb.weight, "load_state_dict into a tied tpu model")
    assigned = Tied().to(TPU)
    assigned.load_state_dict({k: v.to(TPU) for k, v in state.items()}, assign=True)
    cpu_assigned = Tied()
    cpu_assigned.load_state_dict(dict(state), assign=True)
    assert (assigned.head.weight is assigned.emb.weight) == (cpu_assigned.head.weight is cpu_assigned.emb.weight)
    assert_same(assigned.head.weight, cpu_model.emb.weight, "load_state_dict(assign=True)")


# --- 3. autocast ---------------------------------------------------------------------------


def test_autocast_policy_matches_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert torch.get_autocast_dtype(TPU) == BF16
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4))
    tpu_model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4))
    tpu_model.load_state_dict(model.state_dict())
    tpu_model.to(TPU)
    x = torch.randn(3, 8)
    monkeypatch.setenv("TORCH_TPU_DUMP_DIR", str(tmp_path))
    torch_tpu.clear_executable_cache()
    monkeypatch.setenv("TORCH_TPU_CACHE_DIR", "0")
    results = {}
    for dev, m in (("cpu", model), (TPU, tpu_model)):
        with torch.autocast(dev, dtype=BF16):
            h = m[0](x.to(dev))
            y = m(x.to(dev))
            probs = torch.softmax(y, dim=-1)
            loss = nn.functional.cross_entropy(y, torch.tensor([0, 1, 2], device=dev))
        loss.backward()
        results[dev] = (h, y, probs, loss, m[0].weight.grad)
    h, y, probs, loss, grad = results[TPU]
    assert (h.dtype, y.dtype, probs.dtype, loss.dtype, grad.dtype) == (BF16, BF16, F32, F32, F32)
    # CUDA's policy (softmax and losses in f32); CPU autocast keeps softmax in bf16, so compare values in f32.
    for got, want, what in zip(results[TPU], results["cpu"], ("linear", "model", "softmax", "loss", "grad")):
        assert_same(got.float(), want.float(), f"autocast {what}", atol=3e-2, rtol=3e-2)
    torch_tpu.sync()
    hlo = "\n".join(p.read_text() for p in tmp_path.glob("*.mlir"))
    assert "dot_general" in hlo
    assert any("dot_general" in line and "bf16" in line for line in hlo.splitlines()), "no bf16 dot was compiled"


# --- 4. fork safety -------------------------------------------------------------------------


def _child_touches_device(q: mp.Queue) -> None:
    try:
        torch.ones(2, device=TPU).sum().item()
        q.put("no error")
    except RuntimeError as e:
        q.put(f"RuntimeError: {e}")


def test_forked_child_gets_a_clear_error() -> None:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_touches_device, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0, "the forked child hung or crashed"
    msg = q.get(timeout=5)
    assert msg.startswith("RuntimeError") and "forked subprocess" in msg, msg
    assert not torch.tpu._is_in_bad_fork()
    assert torch.ones(2, device=TPU).sum().item() == 2.0


class _Squares(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i * i)])


def test_dataloader_fork_workers_unaffected() -> None:
    loader = torch.utils.data.DataLoader(_Squares(), batch_size=4, num_workers=2, multiprocessing_context="fork")
    total = sum(batch.to(TPU).sum().item() for batch in loader)
    assert total == sum(i * i for i in range(8))


# --- 5. safetensors and Hugging Face checkpoints ------------------------------------------


def test_safetensors_load_to_tpu() -> None:
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    tensors = {"a": torch.randn(3, 4), "b": torch.arange(6, dtype=torch.int64)}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.safetensors")
        st.save_file(tensors, path)
        loaded = st.load_file(path, device="tpu")
        for k, v in tensors.items():
            assert_same(loaded[k], v, f"load_file(device='tpu')[{k}]")
        with safe_open(path, framework="pt", device="tpu:0") as f:
            assert_same(f.get_tensor("a"), tensors["a"], "safe_open(device='tpu:0').get_tensor")
            assert_same(f.get_slice("a")[1:, :2], tensors["a"][1:, :2], "safe_open().get_slice")
        model = nn.Linear(4, 3).to(TPU)
        st.save_model(nn.Linear(4, 3), path)
        missing, unexpected = st.load_model(model, path, device="tpu")
        assert not missing and not unexpected


# --- 7. weight_norm ----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1])
def test_weight_norm_forward_backward(mode: str, dim: int) -> None:
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    cpu = weight_norm(nn.Linear(5, 3), dim=dim)
    dev = weight_norm(nn.Linear(5, 3), dim=dim)
    dev.load_state_dict(cpu.state_dict())
    dev.to(TPU)
    x = torch.randn(4, 5)
    cpu(x).square().sum().backward()
    out = dev(x.to(TPU))
    out.square().sum().backward()
    assert_same(out, cpu(x), "weight_norm forward")
    for (name, p), q in zip(dev.named_parameters(), cpu.parameters()):
        assert_same(p.grad, q.grad, f"weight_norm grad of {name}")


# --- Hugging Face models from configs ------------------------------------------------------


def _hf_models() -> dict[str, object]:
    transformers = pytest.importorskip("transformers")
    return {
        "gpt2": lambda: transformers.GPT2LMHeadModel(
            transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=32)
        ),
        "llama": lambda: transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                num_hidden_layers=2,
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=128,
                max_position_embeddings=32,
                tie_word_embeddings=True,
            )
        ),
        "bert": lambda: transformers.BertForMaskedLM(
            transformers.BertConfig(
                num_hidden_layers=2,
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=2,
                vocab_size=128,
                max_position_embeddings=32,
            )
        ),
        "vit": lambda: transformers.ViTForImageClassification(
            transformers.ViTConfig(
                image_size=16,
                patch_size=4,
                num_channels=3,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                num_labels=3,
            )
        ),
    }


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "vit"])
def test_hf_model_trains_like_cpu_with_tied_weights(name: str) -> None:
    make = _hf_models()[name]
    torch.manual_seed(0)
    cpu_model = make()
    torch.manual_seed(0)
    tpu_model = make()
    n_cpu = sum(p.numel() for p in cpu_model.parameters())
    tpu_model.to(TPU)
    assert sum(p.numel() for p in tpu_model.parameters()) == n_cpu, "tied weights came apart"
    tied = name != "vit"  # ViT has no output embeddings
    if tied:
        assert tpu_model.get_output_embeddings().weight is tpu_model.get_input_embeddings().weight
    cpu_model.train(False), tpu_model.train(False)  # no dropout: the two runs must match
    if name == "vit":
        batch = {"pixel_values": torch.randn(2, 3, 16, 16), "labels": torch.tensor([0, 2])}
    else:
        ids = torch.randint(0, 128, (2, 16))
        batch = {"input_ids": ids, "labels": ids}
    losses = {}
    for dev, m in (("cpu", cpu_model), (TPU, tpu_model)):
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        losses[dev] = []
        for _ in range(3):
            opt.zero_grad()
            loss = m(**{k: v.to(dev) for k, v in batch.items()}).loss
            loss.backward()
            opt.step()
            losses[dev].append(loss.item())
    assert losses[TPU] == pytest.approx(losses["cpu"], rel=1e-3, abs=1e-4)
    assert losses[TPU][-1] < losses[TPU][0], "the model did not train"
    if tied:
        assert tpu_model.get_output_embeddings().weight is tpu_model.get_input_embeddings().weight


def test_hf_from_pretrained_device_map_tpu() -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    torch.manual_seed(0)
    model = _hf_models()["gpt2"]()
    model.train(False)
    ids = torch.randint(0, 128, (1, 8))
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        loaded = transformers.GPT2LMHeadModel.from_pretrained(d, device_map="tpu")
    assert loaded.lm_head.weight.device.type == TPU
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert_same(loaded(ids.to(TPU)).logits, model(ids).logits, "from_pretrained(device_map='tpu') logits")


# --- 6. profiler ------------------------------------------------------------------------------


def test_profiler_records_device_work_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.profiler import ProfilerActivity, profile

    monkeypatch.setenv("TORCH_TPU_CACHE_DIR", "0")
    torch_tpu.clear_executable_cache()
    x = torch.randn(32, 32, device=TPU)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1], profile_memory=True) as prof:
        y = (x @ x).relu().sum() * 3.5
        value = y.item()
        torch.ones(16, device=TPU).cpu()
    assert value == pytest.approx(((x.cpu() @ x.cpu()).relu().sum() * 3.5).item(), rel=1e-4)
    names = [e.name for e in prof.events()]
    assert any(n.startswith("tpu::compile graph_") for n in names), names
    execs = [n for n in names if n.startswith("tpu::execute graph_")]
    assert execs and any("cut: read to host" in n for n in execs), execs
    assert any(n.startswith("tpu::to_host") for n in names)
    assert any(e.name == "[memory]" for e in prof.events()), "no memory events"
    summary = torch_tpu.profile_summary(prof)
    assert "tpu::execute" in summary and "tpu::compile" in summary


@pytest.mark.parametrize("dtype", [torch.uint32, torch.uint64])
def test_wide_unsigned_dtypes_round_trip(dtype: torch.dtype) -> None:
    """uint32/uint64 keep their dtype and values (torch numbers them 28 and 29)."""
    x = torch.tensor([0, 1, 7, 2**31 + 5], dtype=dtype)
    t = x.to("tpu")
    assert t.dtype == dtype
    assert torch.equal(t.cpu(), x)
    ones = torch.ones(4, dtype=dtype, device="tpu")
    # CPU torch has no add kernel for these dtypes: the reference is computed in int64.
    assert torch.equal((t + ones).cpu().to(torch.int64), x.to(torch.int64) + 1)


def test_uint16_is_refused_by_name() -> None:
    with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
        torch.ones(3, dtype=torch.uint16, device="tpu").cpu()
