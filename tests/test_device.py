"""The torch.tpu API, moving tensors and modules, printing, modes and their environment variables."""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Callable

import pytest
import torch

import torch_tpu
from helpers import ALL, ALL_MODES, BF16, BOOL, F16, F32, I32, I64, MODES, TPU, assert_same, make, run_python

# --- registration ---------------------------------------------------------------------


def test_registration() -> None:
    assert torch._C._get_privateuse1_backend_name() == "tpu"
    assert torch.tpu is torch_tpu.device
    assert torch.get_device_module("tpu") is torch_tpu.device
    assert torch.device("tpu").type == "tpu"
    assert str(torch.device("tpu", 0)) == "tpu:0"
    assert isinstance(torch_tpu.__version__, str) and torch_tpu.__version__


def test_accelerator_api() -> None:
    acc = torch.accelerator.current_accelerator()
    assert acc is not None and acc.type == "tpu", acc
    assert torch.accelerator.device_count() == torch.tpu.device_count()


def test_import_is_idempotent() -> None:
    r = run_python(
        "import importlib, torch, torch_tpu\n"
        "import torch_tpu as again\n"
        "importlib.reload(torch_tpu)\n"
        "x = torch.ones(2, device='tpu') + 1\n"
        "assert torch.tpu.is_available() and x.is_tpu\n"
        "print(x.cpu().tolist())\n"
    )
    assert r.returncode == 0, r.stderr
    assert "[2.0, 2.0]" in r.stdout


def test_platform() -> None:
    assert torch_tpu.platform() in ("cpu", "cuda", "tpu")
    assert torch.tpu.get_device_properties().platform == torch_tpu.platform()


def test_platform_env() -> None:
    r = run_python("import torch_tpu; print(torch_tpu.platform())", {"TORCH_TPU_PLATFORM": "cpu"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cpu"


# --- devices --------------------------------------------------------------------------


def test_device_queries() -> None:
    assert torch.tpu.is_available()
    n = torch.tpu.device_count()
    assert n >= 1
    assert 0 <= torch.tpu.current_device() < n
    assert torch.tpu.is_initialized()
    torch.tpu.init()
    torch.tpu._lazy_init()
    assert torch.tpu.is_bf16_supported()
    for i in range(n):
        name = torch.tpu.get_device_name(i)
        assert isinstance(name, str) and name
        props = torch.tpu.get_device_properties(i)
        assert props.name == name and props.index == i
    assert torch.tpu.get_device_name() == torch.tpu.get_device_name(torch.tpu.current_device())
    assert torch.tpu.get_device_name("tpu:0") == torch.tpu.get_device_name(0)
    with pytest.raises(ValueError):
        torch.tpu.get_device_name("cpu")


def test_set_device_and_context_manager() -> None:
    code = (
        "import torch, torch_tpu\n"
        "assert torch.tpu.device_count() == 2, torch.tpu.device_count()\n"
        "assert torch.tpu.current_device() == 0\n"
        "with torch.tpu.device(1):\n"
        "    assert torch.tpu.current_device() == 1\n"
        "    x = torch.ones(3, device='tpu')\n"
        "    assert x.device == torch.device('tpu:1'), x.device\n"
        "assert torch.tpu.current_device() == 0\n"
        "torch.tpu.set_device('tpu:1')\n"
        "assert torch.tpu.current_device() == 1\n"
        "torch.tpu.set_device(0)\n"
        "y = torch.ones(3, device='tpu:1') * 2 + torch.ones(3, device='tpu:1')\n"
        "assert y.device.index == 1 and y.cpu().tolist() == [3.0, 3.0, 3.0]\n"
        "z = y.to('tpu:0')\n"
        "assert z.device.index == 0 and z.cpu().tolist() == [3.0, 3.0, 3.0]\n"
        "print('ok')\n"
    )
    if torch_tpu.platform() != "cpu":
        pytest.skip("the number of devices is fixed by the hardware")
    r = run_python(code, {"TORCH_TPU_CPU_DEVICE_COUNT": "2"})
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_synchronize() -> None:
    x = torch.ones(64, 64, device=TPU)
    y = x @ x
    torch.tpu.synchronize()
    torch.tpu.synchronize(0)
    torch.tpu.synchronize("tpu")
    torch_tpu.sync()
    torch_tpu.sync(wait=False)
    assert y[0, 0].item() == 64.0


# --- random numbers -----------------------------------------------------------------------


def test_manual_seed_reproducible(mode: str) -> None:
    torch.manual_seed(1234)  # must reach torch.tpu.manual_seed_all
    a = torch.rand(50, device=TPU).cpu()
    b = torch.randn(50, device=TPU).cpu()
    torch.manual_seed(1234)
    a2 = torch.rand(50, device=TPU).cpu()
    b2 = torch.randn(50, device=TPU).cpu()
    assert torch.equal(a, a2), "torch.manual_seed does not make torch.rand on tpu reproducible"
    assert torch.equal(b, b2), "torch.manual_seed does not make torch.randn on tpu reproducible"
    assert not torch.equal(a, torch.rand(50, device=TPU).cpu()), "the sequence does not advance"
    torch.manual_seed(99)
    assert not torch.equal(a, torch.rand(50, device=TPU).cpu()), "a different seed gave the same numbers"


def test_tpu_seeding_api() -> None:
    torch.tpu.manual_seed(7)
    assert torch.tpu.initial_seed() == 7
    a = torch.rand(20, device=TPU).cpu()
    torch.tpu.manual_seed_all(7)
    assert torch.equal(a, torch.rand(20, device=TPU).cpu())
    s = torch.tpu.seed()
    assert isinstance(s, int) and torch.tpu.initial_seed() == s
    s2 = torch.tpu.seed_all()
    assert torch.tpu.initial_seed() == s2
    torch.manual_seed(-5)  # negative seeds wrap as on CPU
    assert torch.tpu.initial_seed() == torch.initial_seed()


def test_rng_state_round_trip() -> None:
    torch.manual_seed(0)
    state = torch.tpu.get_rng_state()
    assert state.dtype == torch.uint8 and state.device.type == "cpu" and state.dim() == 1
    a = torch.rand(30, device=TPU).cpu()
    torch.rand(5, device=TPU)
    torch.tpu.set_rng_state(state)
    b = torch.rand(30, device=TPU).cpu()
    assert torch.equal(a, b), "set_rng_state did not restore the sequence"
    states = torch.tpu.get_rng_state_all()
    assert len(states) == torch.tpu.device_count()
    c = torch.randn(10, device=TPU).cpu()
    torch.tpu.set_rng_state_all(states)
    assert torch.equal(c, torch.randn(10, device=TPU).cpu())


def test_fork_rng() -> None:
    torch.manual_seed(3)
    with torch.random.fork_rng(device_type="tpu"):
        a = torch.rand(10, device=TPU).cpu()
    b = torch.rand(10, device=TPU).cpu()
    assert torch.equal(a, b), "fork_rng did not restore the tpu generator"


# --- memory ----------------------------------------------------------------------------------


def test_memory_allocated_grows_and_shrinks(mode: str) -> None:
    gc.collect()
    torch.tpu.synchronize()
    m0 = torch.tpu.memory_allocated()
    nbytes = 1024 * 1024 * 4
    x = torch.ones(1024, 1024, device=TPU)
    torch.tpu.synchronize()
    m1 = torch.tpu.memory_allocated()
    assert m1 >= m0 + nbytes, f"memory_allocated went from {m0} to {m1} for a new {nbytes}-byte tensor"
    assert torch.tpu.max_memory_allocated() >= m1
    del x
    gc.collect()
    torch.tpu.synchronize()
    m2 = torch.tpu.memory_allocated()
    assert m2 <= m1 - nbytes, f"memory_allocated went from {m1} to {m2} after freeing a {nbytes}-byte tensor"
    assert torch.tpu.max_memory_allocated() >= m1
    torch.tpu.reset_peak_memory_stats()
    assert torch.tpu.max_memory_allocated() == torch.tpu.memory_allocated()
    assert torch.tpu.memory_reserved() == torch.tpu.memory_allocated()
    assert torch.tpu.max_memory_reserved() == torch.tpu.max_memory_allocated()
    stats = torch.tpu.memory_stats()
    assert isinstance(stats, dict) and stats
    torch.tpu.empty_cache()


def test_torch_accelerator_memory_calls_reach_the_runtime() -> None:
    # accelerate (the HF Trainer) calls torch.accelerator.empty_cache(), which
    # needs the allocator to be a c10::DeviceAllocator.
    if torch.accelerator.current_accelerator().type != TPU:
        pytest.skip("another accelerator is torch's current one")
    torch.accelerator.empty_cache()
    gc.collect()
    torch.tpu.synchronize()
    torch.accelerator.reset_accumulated_memory_stats()
    before = torch.accelerator.memory_stats()
    x = torch.empty(1000, device=TPU)
    during = torch.accelerator.memory_stats()
    assert during["allocated_bytes.all.current"] - before["allocated_bytes.all.current"] == 4000
    assert during["allocation.all.current"] - before["allocation.all.current"] == 1
    assert during["allocated_bytes.all.allocated"] == 4000
    assert torch.accelerator.memory_allocated() == torch.tpu.memory_allocated() == during["allocated_bytes.all.current"]
    assert torch.tpu.memory_stats()["allocated_bytes.all.current"] == during["allocated_bytes.all.current"]
    del x
    gc.collect()
    after = torch.accelerator.memory_stats()
    assert after["allocated_bytes.all.freed"] == 4000
    assert after["allocated_bytes.all.current"] == before["allocated_bytes.all.current"]
    assert torch.accelerator.max_memory_allocated() >= during["allocated_bytes.all.current"]
    torch.accelerator.reset_peak_memory_stats()
    assert torch.accelerator.max_memory_allocated() == torch.accelerator.memory_allocated()


def test_memory_of_views_and_copies(mode: str) -> None:
    gc.collect()
    torch.tpu.synchronize()
    m0 = torch.tpu.memory_allocated()
    x = torch.zeros(256, 256, device=TPU)
    v = x[::2].t()  # a view allocates nothing
    torch.tpu.synchronize()
    m1 = torch.tpu.memory_allocated()
    del x
    gc.collect()
    torch.tpu.synchronize()
    assert torch.tpu.memory_allocated() == m1, "freeing the base while a view lives released its storage"
    del v
    gc.collect()
    torch.tpu.synchronize()
    assert torch.tpu.memory_allocated() <= m0 + (m1 - m0) - 256 * 256 * 4


# --- moving tensors and modules -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL + (torch.float64, torch.uint8, torch.int8, torch.int16), ids=str)
def test_round_trip(dtype: torch.dtype, mode: str) -> None:
    x = make((3, 5), dtype, -100, 100) if dtype not in (torch.uint8,) else torch.randint(0, 255, (3, 5), dtype=dtype)
    tx = x.to(TPU)
    assert tx.is_tpu and tx.device.type == "tpu" and tx.dtype == dtype and tx.shape == x.shape
    assert torch.equal(tx.cpu(), x), f"to('tpu').cpu() changed {dtype} values"
    assert torch.equal(x.tpu().cpu(), x)
    assert torch.equal(torch.tensor(x.tolist(), dtype=dtype, device=TPU).cpu(), x)


def test_round_trip_shapes(mode: str) -> None:
    for shape in [(), (0,), (2, 0, 3), (1,), (1_000_003,)]:
        x = torch.randn(shape)
        assert torch.equal(x.to(TPU).cpu(), x), f"round trip of shape {shape}"
    x = make((4, 6), F32)
    assert torch.equal(x.t().to(TPU).cpu(), x.t()), "round trip of a transposed CPU tensor"
    assert torch.equal(x[:, ::2].to(TPU).cpu(), x[:, ::2]), "round trip of a strided CPU tensor"
    assert torch.equal(x.to(TPU)[:, ::2].cpu(), x[:, ::2]), "a strided tpu view to CPU"
    assert torch.equal(x.to(TPU, non_blocking=True).cpu(), x)


def test_item_tolist_and_python_conversions(mode: str) -> None:
    assert torch.tensor(2.5, device=TPU).item() == 2.5
    v = torch.tensor(7, device=TPU).item()
    assert v == 7 and isinstance(v, int)
    b = torch.tensor(True, device=TPU).item()
    assert b is True
    assert torch.tensor([1.5], dtype=BF16, device=TPU).item() == 1.5
    assert torch.tensor([[1, 2], [3, 4]], dtype=I32, device=TPU).tolist() == [[1, 2], [3, 4]]
    x = torch.arange(6, device=TPU).float()
    assert float(x.sum()) == 15.0
    assert int(x[3]) == 3
    assert bool(x.sum() > 10)
    steps = 0
    while x.sum() > 0 and steps < 10:  # a comparison read in Python control flow: 15, 9, 3, -3
        x = x - 1
        steps += 1
    assert steps == 3


def _repr_cpu_like(t: torch.Tensor) -> str:
    """The repr without the device suffix, which torch puts on its own line for wide tensors."""
    return re.sub(r",\s*device='tpu:0'", "", repr(t))


@pytest.mark.parametrize(
    "make_tensor",
    [
        lambda: torch.tensor([1.0, 2.5, -3.0]),
        lambda: torch.arange(12).reshape(3, 4),
        lambda: torch.tensor([True, False]),
        lambda: torch.tensor([[1.5, 0.0], [float("nan"), float("inf")]]),
        lambda: torch.tensor(3.25),
        lambda: torch.randn(4, 3, dtype=BF16),
        lambda: torch.randn(2, 3, dtype=F16),
        lambda: torch.randn(200, 300),  # summarized
        lambda: torch.arange(5, dtype=I64)[::2],
        lambda: torch.empty(0, 3),
    ],
    ids=["f32", "i64_2d", "bool", "nan_inf", "0d", "bf16", "f16", "large", "strided", "empty"],
)
def test_print_matches_cpu(make_tensor: Callable[[], torch.Tensor], mode: str) -> None:
    x = make_tensor()
    tx = x.to(TPU)
    assert "device='tpu:0'" in repr(tx)
    assert _repr_cpu_like(tx) == repr(x)
    assert re.sub(r",\s*device='tpu:0'", "", str(tx)) == str(x)


def test_model_to_tpu(mode: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 4)
    expected = model(x)
    model.to("tpu")
    assert all(p.is_tpu for p in model.parameters())
    assert_same(model(x.to(TPU)), expected, "Sequential forward after model.to('tpu')")
    model.cpu()
    model.tpu()
    assert all(p.device.type == "tpu" for p in model.parameters())
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).to(TPU)
    fresh.load_state_dict(state)  # copy_ from CPU into tpu parameters
    assert_same(fresh(x.to(TPU)), expected, "forward after load_state_dict")


def test_mixed_dtype_module() -> None:
    model = torch.nn.Linear(3, 3).to(TPU, BF16)
    assert all(p.dtype == BF16 and p.is_tpu for p in model.parameters())
    assert model(torch.ones(2, 3, dtype=BF16, device=TPU)).dtype == BF16


# --- modes -----------------------------------------------------------------------------------


def test_mode_api() -> None:
    start = torch_tpu.get_eager_mode()
    assert start in ALL_MODES
    for m in MODES:
        torch_tpu.set_eager_mode(m)
        assert torch_tpu.get_eager_mode() == m
        x = torch.ones(3, device=TPU) + 1  # ops work in every mode
        assert x.cpu().tolist() == [2.0, 2.0, 2.0]
    torch_tpu.set_eager_mode(start)
    with pytest.raises(ValueError):
        torch_tpu.set_eager_mode("lazy")
    assert torch_tpu.get_eager_mode() == start


def test_mode_context_manager() -> None:
    start = torch_tpu.get_eager_mode()
    with torch_tpu.eager_mode("debug"):
        assert torch_tpu.get_eager_mode() == "debug"
        with torch_tpu.eager_mode("strict"):
            assert torch_tpu.get_eager_mode() == "strict"
        assert torch_tpu.get_eager_mode() == "debug"
    assert torch_tpu.get_eager_mode() == start
    with pytest.raises(KeyError), torch_tpu.eager_mode("debug"):
        raise KeyError("boom")
    assert torch_tpu.get_eager_mode() == start, "the mode was not restored after an exception"


def test_values_flow_across_modes() -> None:
    with torch_tpu.eager_mode("strict"):
        a = torch.arange(4.0, device=TPU) * 2
    with torch_tpu.eager_mode("debug"):
        b = a + 1
    assert b.cpu().tolist() == [1.0, 3.0, 5.0, 7.0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TORCH_TPU_EAGER_MODE": "strict"}, "strict"),
        ({"TORCH_TPU_EAGER_MODE": "debug"}, "debug"),
        ({"TPU_LAUNCH_BLOCKING": "1"}, "debug"),
        ({"TORCH_TPU_DEFER_AND_FUSE": "1"}, "fused"),
        ({"TORCH_TPU_EAGER_MODE": "fused"}, "fused"),
    ],
    ids=["eager_mode_strict", "eager_mode_debug", "launch_blocking", "defer_and_fuse", "eager_mode_fused"],
)
def test_mode_env_vars(env: dict[str, str], expected: str) -> None:
    if expected not in ALL_MODES:
        pytest.skip(f"{expected} mode is not there yet")
    r = run_python("import torch_tpu; print(torch_tpu.get_eager_mode())", env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected


def test_default_mode() -> None:
    r = run_python("import torch_tpu; print(torch_tpu.get_eager_mode())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ALL_MODES
    if "fused" in ALL_MODES:
        assert r.stdout.strip() == "fused", "fused is the default once it exists"


# --- metrics ----------------------------------------------------------------------------------


def test_metrics() -> None:
    torch_tpu.reset_metrics()
    x = torch.ones(4, device=TPU)
    y = (x + 1) * 2
    y.cpu()
    m = torch_tpu.metrics()
    for key in (
        "ops_dispatched",
        "executions",
        "compiles",
        "compile_time_s",
        "cpu_fallbacks",
        "bytes_to_device",
        "bytes_to_host",
    ):
        assert key in m, f"metrics() lacks {key}: {sorted(m)}"
    assert m["ops_dispatched"] >= 2
    assert m["bytes_to_host"] >= 16
    assert isinstance(m["cpu_fallbacks"], dict)
    report = torch_tpu.metrics_report()
    assert isinstance(report, str) and "ops_dispatched" in report
    torch_tpu.reset_metrics()
    assert torch_tpu.metrics()["ops_dispatched"] == 0


def test_strict_mode_caches_executables() -> None:
    x = torch.randn(5, 7, device=TPU)
    with torch_tpu.eager_mode("strict"):
        (x * 3 + 1).cpu()  # warm
        before = torch_tpu.metrics()
        for _ in range(5):
            (x * 3 + 1).cpu()
        after = torch_tpu.metrics()
    assert after["compiles"] == before["compiles"], "strict mode recompiled an op it had run before"
    assert after["executions"] > before["executions"]


def test_lowered_ops() -> None:
    ops = torch_tpu.lowered_ops()
    assert isinstance(ops, list) and len(ops) > 50
    assert any("add" in o for o in ops)


@pytest.mark.parametrize("dtype", [F32, BF16, F16, I32, I64, BOOL], ids=str)
def test_zeros_ones_on_device(dtype: torch.dtype) -> None:
    assert torch.equal(torch.zeros(2, 3, dtype=dtype, device=TPU).cpu(), torch.zeros(2, 3, dtype=dtype))
    assert torch.equal(torch.ones(2, 3, dtype=dtype, device="tpu:0").cpu(), torch.ones(2, 3, dtype=dtype))


def test_empty_cache_keeps_compiled_programs() -> None:
    # The HF Trainer empties the cache every torch_empty_cache_steps steps:
    # that must not recompile (or reload) the step's programs.
    x = torch.randn(8, device=TPU)
    for _ in range(2):
        torch.testing.assert_close((x * 2 + 1).cpu(), x.cpu() * 2 + 1)
    torch_tpu.reset_metrics()
    torch.tpu.empty_cache()
    if torch.accelerator.current_accelerator().type == TPU:
        torch.accelerator.empty_cache()
    torch.testing.assert_close((x * 2 + 1).cpu(), x.cpu() * 2 + 1)
    m = torch_tpu.metrics()
    assert (m["compiles"], m["cache_hits_disk"], m["cache_hits_memory"]) == (0, 0, 1), m


def test_mem_get_info_reports_free_and_total_bytes() -> None:
    free, total = torch.tpu.mem_get_info()
    assert 0 < free <= total
    assert torch.tpu.get_device_properties().total_memory == total
    if torch.accelerator.current_accelerator().type == TPU:
        assert torch.accelerator.get_memory_info()[1] == total
    if torch_tpu.platform() == "cpu":  # the CPU plugin's buffers are host memory
        assert total == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_pinned_host_memory_is_reported_as_pinned() -> None:
    x = torch.arange(12.0).reshape(4, 3)
    assert not x.is_pinned()
    pinned = x.pin_memory()
    assert pinned.is_pinned() and pinned[1:].is_pinned() and pinned.device.type == "cpu"
    assert torch.equal(pinned, x)
    assert torch.empty(5, pin_memory=True).is_pinned()
    assert torch.equal(pinned.to(TPU, non_blocking=True).cpu(), x)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2, pin_memory=True)
    batches = [b for (b,) in loader]
    assert all(b.is_pinned() for b in batches)
    assert torch.equal(torch.cat(batches), x)
    address = pinned.data_ptr()
    del pinned, batches
    gc.collect()
    # A freed pinned buffer is forgotten: memory reused for an ordinary tensor is not pinned.
    assert not any(t.is_pinned() for t in [torch.empty(3) for _ in range(8)] if t.data_ptr() == address)


def test_tpu_tensors_and_modules_pickle() -> None:
    import pickle

    x = torch.arange(6.0).reshape(2, 3)
    t = x.to(TPU)
    for got, want in [(t, x), (t[1], x[1]), (t.to(BF16), x.to(BF16))]:
        back = pickle.loads(pickle.dumps(got))
        assert back.device.type == TPU
        assert_same(back, want, "pickle")
    m = torch.nn.Linear(2, 2).to(TPU)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.weight.device.type == TPU and torch.equal(m2.weight.cpu(), m.weight.cpu())
