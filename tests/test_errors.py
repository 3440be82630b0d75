"""Errors: unsupported ops, CPU fallback, bad shapes, dtypes and devices, NaN checks; nothing crashes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

import torch_tpu
from helpers import TPU, run_python


def _is_lowered(op: str) -> bool:
    """Whether any overload of ``op`` (e.g. "special_zeta") is in the registry."""
    for name in torch_tpu.lowered_ops():
        base = name.removeprefix("aten::").split(".")[0]
        if base == op:
            return True
    return False


# Ops that reach the fallback under their own name and that nothing lowers.
UNSUPPORTED: list[tuple[str, Callable[[torch.device | str], torch.Tensor]]] = [
    ("special_zeta", lambda d: torch.special.zeta(torch.full((3,), 2.0, device=d), torch.ones(3, device=d))),
    ("linalg_qr", lambda d: torch.linalg.qr((torch.eye(3) + 1).to(d))[0]),
    ("cumsum", lambda d: torch.cumsum(torch.arange(5.0, device=d), 0)),
    # Rate 0: no randomness, so the CPU fallback's result matches the CPU's.
    ("poisson", lambda d: torch.poisson(torch.zeros(5, device=d))),
    (
        "special_chebyshev_polynomial_t",
        lambda d: torch.special.chebyshev_polynomial_t(
            torch.linspace(-1.0, 1.0, 5, device=d), torch.full((5,), 3.0, device=d)
        ),
    ),
]


def _unsupported() -> Iterator[tuple[str, Callable[[torch.device | str], torch.Tensor]]]:
    found = [(op, fn) for op, fn in UNSUPPORTED if not _is_lowered(op)]
    assert found, "every op in UNSUPPORTED is lowered now: pick another"
    yield from found


@pytest.fixture
def no_fallback() -> Iterator[None]:
    torch_tpu.set_cpu_fallback(False)
    yield
    torch_tpu.set_cpu_fallback(False)


def test_unsupported_op_raises_not_implemented(no_fallback: None, mode: str) -> None:
    for op, fn in _unsupported():
        with pytest.raises(NotImplementedError) as err:
            fn(TPU)
            torch_tpu.sync()
        assert op in str(err.value), f"the error does not name {op}: {err.value}"


def test_cpu_fallback(no_fallback: None, mode: str) -> None:
    torch_tpu.set_cpu_fallback(True)
    for op, fn in _unsupported():
        torch_tpu.reset_metrics()
        actual = fn(TPU)
        assert actual.device.type == "tpu", f"{op} with CPU fallback returned a {actual.device} tensor"
        torch.testing.assert_close(actual.cpu(), fn("cpu"), msg=lambda m, op=op: f"{op} via CPU fallback: {m}")
        counts = torch_tpu.metrics()["cpu_fallbacks"]
        assert any(op in name for name in counts), f"{op} was not counted in cpu_fallbacks: {counts}"
        assert "cpu_fallbacks" in torch_tpu.metrics_report()


def test_cpu_fallback_env() -> None:
    assert not _is_lowered("poisson"), "poisson is lowered now: pick another op"
    code = (
        "import torch, torch_tpu\n"
        "x = torch.poisson(torch.full((3,), 0.0, device='tpu'))\n"
        "print(x.cpu().tolist())\n"
        "print(torch_tpu.metrics()['cpu_fallbacks'])\n"
    )
    r = run_python(code, {"TORCH_TPU_CPU_FALLBACK": "1"})
    assert r.returncode == 0, r.stderr
    assert "[0.0, 0.0, 0.0]" in r.stdout  # a Poisson draw of rate 0
    assert "poisson" in r.stdout.splitlines()[-1]


def test_shape_mismatch_names_op_and_shapes(mode: str) -> None:
    a = torch.ones(2, 3, device=TPU)
    with pytest.raises(RuntimeError) as err:
        torch.mm(a, a)
        torch_tpu.sync()
    msg = str(err.value)
    assert "mm" in msg, msg
    assert "2x3" in msg or "[2, 3]" in msg or "(2, 3)" in msg, msg


def test_broadcast_mismatch(mode: str) -> None:
    with pytest.raises(RuntimeError, match="must match the size"):
        torch.ones(3, device=TPU) + torch.ones(4, device=TPU)


def test_dtype_errors(mode: str) -> None:
    with pytest.raises(RuntimeError):
        torch.ones(2, 2, device=TPU).bitwise_and(torch.ones(2, 2, device=TPU))  # bitwise on floats
    with pytest.raises(RuntimeError):
        torch.mm(torch.ones(2, 2, device=TPU), torch.ones(2, 2, dtype=torch.int64, device=TPU))
    with pytest.raises(RuntimeError):
        torch.ones(2, dtype=torch.int64, device=TPU).mul_(1.5 * torch.ones(2, device=TPU))
    with pytest.raises(RuntimeError):
        F.embedding(torch.ones(2, device=TPU), torch.ones(4, 2, device=TPU))  # float indices


def test_mixed_devices(mode: str) -> None:
    a = torch.ones(3, device=TPU)
    b = torch.ones(3)
    for fn in (torch.add, torch.mul, torch.maximum):
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            fn(a, b)
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            fn(b, a)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.mm(torch.ones(2, 2, device=TPU), torch.ones(2, 2))


def test_index_out_of_range() -> None:
    """Debug mode checks index values, as CPU does (strict mode does not read them back)."""
    w = torch.ones(4, 2, device=TPU)
    with pytest.raises(IndexError):
        w[5]
    with torch_tpu.eager_mode("debug"):
        with pytest.raises((RuntimeError, IndexError)) as err:
            torch.index_select(w, 0, torch.tensor([7], device=TPU)).cpu()
        assert "index_select" in str(err.value), str(err.value)
        with pytest.raises((RuntimeError, IndexError)) as err:
            F.embedding(torch.tensor([4], device=TPU), w).cpu()
        assert "embedding" in str(err.value), str(err.value)


def test_nan_check_in_debug_mode() -> None:
    x = torch.tensor([1.0, 0.0, -1.0], device=TPU)
    with torch_tpu.eager_mode("debug"):
        torch_tpu.set_nan_check(True)
        try:
            y = x + 1  # fine
            with pytest.raises(RuntimeError) as err:
                torch.log(x - 1)  # log(0) = -inf and log(-1) = NaN, in this op
            assert "log" in str(err.value), str(err.value)
            with pytest.raises(RuntimeError) as err:
                z = y / torch.zeros(3, device=TPU)
                del z
            assert "div" in str(err.value), str(err.value)
        finally:
            torch_tpu.set_nan_check(False)
        assert torch.isnan(torch.log(x - 1.5)).cpu().all(), "NaN check still on after set_nan_check(False)"


def test_nan_check_env() -> None:
    code = (
        "import torch, torch_tpu\n"
        "x = torch.zeros(2, device='tpu')\n"
        "try:\n"
        "    (x / x).cpu()\n"
        "    print('no error')\n"
        "except RuntimeError as e:\n"
        "    print('raised', 'div' in str(e))\n"
    )
    r = run_python(code, {"TORCH_TPU_NAN_CHECK": "1", "TORCH_TPU_EAGER_MODE": "debug"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "raised True", r.stdout


def test_bad_calls_never_crash_the_process() -> None:
    code = """
import torch, torch_tpu
bad = [
    lambda: torch.mm(torch.ones(2, 3, device='tpu'), torch.ones(2, 3, device='tpu')),
    lambda: torch.special.zeta(torch.ones(3, device='tpu'), torch.ones(3, device='tpu')),
    lambda: torch.ones(3, device='tpu') + torch.ones(3),
    lambda: torch.ones(3, device='tpu').view(2, 2),
    lambda: torch.cat([torch.ones(2, 3, device='tpu'), torch.ones(3, 2, device='tpu')]),
    lambda: torch.ones(2, device='tpu')[torch.tensor([5], device='tpu')].cpu(),
    lambda: torch.empty(-1, device='tpu'),
    lambda: torch.ones(2, 2, device='tpu').reshape(5),
    lambda: torch.nn.functional.conv2d(torch.ones(1, 3, 4, 4, device='tpu'), torch.ones(2, 4, 3, 3, device='tpu')),
    lambda: torch.nn.functional.nll_loss(torch.ones(2, 3, device='tpu'), torch.tensor([0, 7], device='tpu')).cpu(),
    lambda: torch.ones(1 << 62, device='tpu'),
]
for mode in ['debug', 'strict']:
    torch_tpu.set_eager_mode(mode)
    for i, fn in enumerate(bad):
        try:
            fn()
            torch_tpu.sync()
        except Exception as e:
            print(mode, i, type(e).__name__)
x = torch.ones(3, device='tpu') * 2
print('alive', x.cpu().tolist())
"""
    r = run_python(code)
    assert r.returncode == 0, f"the process died (code {r.returncode}): {r.stderr[-2000:]}"
    assert "alive [2.0, 2.0, 2.0]" in r.stdout, r.stdout + r.stderr


def test_out_of_memory() -> None:
    code = """
import torch, torch_tpu
try:
    x = torch.empty(1 << 50, device='tpu')
    x.fill_(1)
    torch_tpu.sync()
    print('no error')
except torch.OutOfMemoryError as e:
    print('oom')
except RuntimeError as e:
    print('runtime error', e)
print('alive', (torch.ones(2, device='tpu') + 1).cpu().tolist())
"""
    r = run_python(code)
    assert r.returncode == 0, f"the process died (code {r.returncode}): {r.stderr[-2000:]}"
    assert "alive [2.0, 2.0]" in r.stdout, r.stdout
    assert r.stdout.startswith("oom"), f"expected torch.OutOfMemoryError: {r.stdout}"


def test_cpu_fallback_of_an_op_without_a_cpu_kernel_says_so() -> None:
    # _fused_dropout has CUDA kernels only: the fallback is tried and fails clearly.
    code = (
        "import torch, torch_tpu\n"
        "x = torch.randn(2, 3, device='tpu')\n"
        "try:\n"
        "    torch._fused_dropout(x, 0.5)\n"
        "except NotImplementedError as e:\n"
        "    print('RAISED', e)\n"
    )
    r = run_python(code, env={"TORCH_TPU_CPU_FALLBACK": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "RAISED" in r.stdout and "_fused_dropout has no tpu lowering, and the CPU fallback cannot run it" in r.stdout
