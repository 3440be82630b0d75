"""Helion kernels with the Pallas backend on tpu tensors, against torch on CPU.

Helion's Pallas launcher (``helion/runtime/pallas/launcher.py``) wraps each
kernel in TorchTPU's ``JaxCallable`` (``torch_tpu._internal.pallas.pallas``) and,
from the second call on, calls ``tpu_torch_pallas.call_custom_kernel``
directly. On a plugin that is not a TPU's the kernels, built for a TPU, are
lowered in Pallas's interpret mode (``torch_tpu.pallas._interpreted``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from helpers import TPU, assert_same

pytest.importorskip("jax")
helion = pytest.importorskip("helion")  # a test dependency ('.[test]' installs it)
hl = pytest.importorskip("helion.language")

if os.environ.get("HELION_PALLAS_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y", "t"):
    # Helion's own interpret mode copies to the host and back, never calling TorchTPU's bridge.
    pytest.skip("HELION_PALLAS_INTERPRET bypasses the TorchTPU bridge", allow_module_level=True)


def _kernel(**config: Any) -> Any:
    return helion.kernel(backend="pallas", config=helion.Config(**config), static_shapes=True)


@_kernel(block_sizes=[8])
def add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile in hl.tile(out.size()):
        out[tile] = x[tile] + y[tile]
    return out


@_kernel(block_sizes=[8])
def add_(x: torch.Tensor, y: torch.Tensor) -> None:
    for tile in hl.tile(x.size()):
        x[tile] = x[tile] + y[tile]


@_kernel(block_sizes=[16, 16, 16], pallas_loop_type="fori_loop")
def matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, x[tile_m, tile_k], y[tile_k, tile_n])
        out[tile_m, tile_n] = acc
    return out


@_kernel(block_sizes=[8])
def softmax(x: torch.Tensor) -> torch.Tensor:
    n, _m = x.size()
    out = torch.empty_like(x)
    for tile_n in hl.tile(n):
        out[tile_n, :] = torch.nn.functional.softmax(x[tile_n, :], dim=1)
    return out


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the kernels Helion runs through ``call_custom_kernel`` (its hot path)."""
    from torch_tpu._internal.pallas import tpu_torch_pallas

    names: list[str] = []
    original = tpu_torch_pallas.call_custom_kernel

    def counting(name: str, key: str, **kwargs: Any) -> Any:
        names.append(name)
        return original(name, key, **kwargs)

    monkeypatch.setattr(tpu_torch_pallas, "call_custom_kernel", counting)
    yield names


def test_elementwise_add(direct_calls: list[str]) -> None:
    x, y = torch.randn(64), torch.randn(64)
    for _ in range(3):  # the first call traces and lowers; the others take Helion's direct path
        out = add(x.to(TPU), y.to(TPU))
        assert out.device.type == "tpu"
        assert_same(out, x + y, "helion add")
    assert direct_calls, "Helion never called tpu_torch_pallas.call_custom_kernel"


def test_in_place_kernel_updates_its_input() -> None:
    x, y = torch.randn(32), torch.randn(32)
    xd = x.to(TPU)
    add_(xd, y.to(TPU))
    assert_same(xd, x + y, "helion in-place add")
    add_(xd, y.to(TPU))
    assert_same(xd, x + 2 * y, "helion in-place add, direct path")


def test_matmul() -> None:
    a, b = torch.randn(32, 48), torch.randn(48, 16)
    for _ in range(2):
        out = matmul(a.to(TPU), b.to(TPU))
        torch.testing.assert_close(out.cpu(), a @ b, rtol=1e-5, atol=1e-5)


def test_softmax() -> None:
    x = torch.randn(16, 64)
    for _ in range(2):
        out = softmax(x.to(TPU))
        torch.testing.assert_close(out.cpu(), torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)


def test_helion_kernel_fuses_with_the_ops_around_it() -> None:
    import torch_tpu

    x, y = torch.randn(64), torch.randn(64)
    with torch_tpu.eager_mode("fused"):
        xd, yd = x.to(TPU), y.to(TPU)
        add(xd, yd)  # compiled (and its first, slow call made) outside the count
        torch_tpu.sync()
        before = torch_tpu.metrics()
        got = (add(xd * 2, yd) + 1).sum().cpu()  # ops -> Helion kernel -> ops
        after = torch_tpu.metrics()
    torch.testing.assert_close(got, (x * 2 + y + 1).sum(), rtol=1e-5, atol=1e-5)
    assert after["executions"] - before["executions"] == 1


def test_helion_kernel_under_torch_compile() -> None:
    torch._dynamo.reset()
    x, y = torch.randn(32), torch.randn(32)
    compiled = torch.compile(lambda a, b: add(a.sin(), b) * 2, backend="tpu", fullgraph=True)
    torch.testing.assert_close(compiled(x.to(TPU), y.to(TPU)).cpu(), (x.sin() + y) * 2, rtol=1e-5, atol=1e-6)
