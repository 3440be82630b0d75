"""No silent wrong answers: every bad input CPU PyTorch rejects is rejected on
tpu too, in every mode, with CPU's exception type.

- Out-of-range indices and integer division by zero are only visible in the
  data: the program computes a status beside its results. Debug mode raises at
  the op; strict and fused modes raise at the next host sync (as CUDA reports a
  device-side assert), so asynchrony is kept.
- Memory overlap and empty reductions are checked from shapes, at the op.
- A program that fails leaves every tensor it would have written as it was.
- Fused mode may be used from several threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import torch_tpu

W = torch.arange(12.0).reshape(4, 3)


def _i(*v: int) -> torch.Tensor:
    return torch.tensor(list(v))


# name -> f(device) for inputs CPU rejects; each is run on CPU to get the
# expected exception type, then on tpu.
BAD_INPUTS: dict[str, Callable[[str], torch.Tensor]] = {
    "index_select": lambda d: torch.index_select(W.to(d), 0, _i(7).to(d)),
    "gather": lambda d: torch.gather(W.to(d), 0, torch.tensor([[5, 0, 0]]).to(d)),
    "embedding": lambda d: F.embedding(_i(9).to(d), W.to(d)),
    "getitem": lambda d: W.to(d)[_i(6).to(d)],
    "getitem_negative": lambda d: W.to(d)[_i(-6).to(d)],
    "scatter": lambda d: torch.zeros(4, 3, device=d).scatter(0, torch.tensor([[8, 0, 0]]).to(d), 1.0),
    "scatter_add": lambda d: torch.zeros(4, 3, device=d).scatter_add(
        0, torch.tensor([[8, 0, 0]]).to(d), torch.ones(1, 3, device=d)
    ),
    "scatter_reduce": lambda d: torch.zeros(4, 3, device=d).scatter_reduce(
        0, torch.tensor([[8, 0, 0]]).to(d), torch.ones(1, 3, device=d), "amax"
    ),
    "index_add": lambda d: torch.zeros(4, 3, device=d).index_add(0, _i(5).to(d), torch.ones(1, 3, device=d)),
    "index_copy": lambda d: torch.zeros(4, 3, device=d).index_copy(0, _i(5).to(d), torch.ones(1, 3, device=d)),
    "index_fill": lambda d: torch.zeros(4, 3, device=d).index_fill(0, _i(5).to(d), 1.0),
    "index_put_": lambda d: torch.zeros(4, 3, device=d).index_put_((_i(5).to(d),), torch.ones(3, device=d)),
    "take": lambda d: torch.take(W.to(d), _i(100).to(d)),
    "put_": lambda d: torch.zeros(4, 3, device=d).put_(_i(-13).to(d), torch.ones(1, device=d)),
    "nll_loss": lambda d: F.nll_loss(W.to(d).log_softmax(1), _i(0, 1, 2, 5).to(d)),
    "cross_entropy": lambda d: F.cross_entropy(W.to(d), _i(0, 1, -1, 2).to(d)),
    "one_hot": lambda d: F.one_hot(_i(0, 5).to(d), 3),
    "floor_divide_by_zero": lambda d: _i(7).to(d) // _i(0).to(d),
    "remainder_by_zero": lambda d: _i(7).to(d) % _i(0).to(d),
    "fmod_by_zero": lambda d: torch.fmod(_i(7).to(d), _i(0).to(d)),
    "div_floor_by_zero": lambda d: torch.div(_i(7).to(d), 0, rounding_mode="floor"),
    "div_trunc_by_zero": lambda d: torch.div(_i(7).to(d), 0, rounding_mode="trunc"),
    "max_of_empty": lambda d: torch.empty(0, device=d).max(),
    "argmax_of_empty": lambda d: torch.empty(0, device=d).argmax(),
    "amax_of_empty_dim": lambda d: torch.empty(0, 3, device=d).amax(0),
    "scatter_float_index": lambda d: torch.zeros(3, device=d).scatter(0, torch.tensor([0.0]).to(d), 1.0),
    "add_into_expanded": lambda d: torch.zeros(1, device=d).expand(3).add_(1),
    "copy_partial_overlap": lambda d: (lambda x: x[1:].copy_(x[:-1]))(torch.arange(4.0, device=d)),
    "out_partial_overlap": lambda d: (lambda x: torch.add(x[:3], 1, out=x[1:]))(torch.arange(4.0, device=d)),
    "add_transposed_self": lambda d: (lambda x: x.view(2, 2).add_(x.view(2, 2).t()))(torch.arange(4.0, device=d)),
    "getitem_float_index": lambda d: W.to(d)[torch.tensor([0.0]).to(d)],
    "sum_dim_out_of_range": lambda d: W.to(d).sum(3),
    "where_long_condition": lambda d: torch.where(_i(1, 0).to(d), torch.ones(2, device=d), torch.zeros(2, device=d)),
    "lerp_long_weight": lambda d: torch.lerp(torch.ones(2, device=d), torch.zeros(2, device=d), _i(1, 1).to(d)),
    "bce_out_of_range": lambda d: F.binary_cross_entropy(torch.tensor([1.5, 0.5]).to(d), torch.ones(2, device=d)),
    "bce_nan": lambda d: F.binary_cross_entropy(torch.tensor([float("nan")]).to(d), torch.ones(1, device=d)),
    "multinomial_negative": lambda d: torch.multinomial(torch.tensor([-1.0, 2.0]).to(d), 1),
    "multinomial_nan": lambda d: torch.multinomial(torch.tensor([[1.0, 1.0], [float("nan"), 1.0]]).to(d), 1),
    "multinomial_zero_sum": lambda d: torch.multinomial(torch.zeros(3).to(d), 1),
    # LAPACK's exact zero pivot: LinAlgError, as on CPU (was NaNs).
    "inv_singular": lambda d: torch.linalg.inv(torch.zeros(2, 2, device=d)),
    "inv_rank_one": lambda d: torch.linalg.inv(torch.tensor([[1.0, 2.0], [2.0, 4.0]]).to(d)),
    "solve_singular": lambda d: torch.linalg.solve(torch.tensor([[0.0, 1.0], [0.0, 2.0]]).to(d), torch.ones(2).to(d)),
}


def _cpu_error(f: Callable[[str], torch.Tensor]) -> type[BaseException]:
    try:
        f("cpu")
    except (RuntimeError, IndexError) as e:
        return type(e)
    raise AssertionError("CPU accepts this input; the case is wrong")


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_as_on_cpu(name: str, mode: str) -> None:
    f = BAD_INPUTS[name]
    want = _cpu_error(f)
    with pytest.raises(want):
        # The host read is where strict and fused modes report device checks.
        f("tpu").cpu()
    torch_tpu.sync()
    # The error is reported once; the device keeps working.
    assert torch.equal((torch.ones(2, device="tpu") * 3).cpu(), torch.full((2,), 3.0))


@pytest.mark.parametrize(
    "f",
    [
        lambda d: _i(1, 2).to(d).mean(),
        lambda d: _i(1, 2).to(d).std(),
        lambda d: _i(1, 2).to(d).softmax(0),
    ],
    ids=["mean", "std", "softmax"],
)
def test_integer_input_without_a_kernel_is_not_implemented_as_on_cpu(f: Callable[[str], torch.Tensor]) -> None:
    with pytest.raises(NotImplementedError):
        f("cpu")
    with pytest.raises(NotImplementedError):
        f("tpu").cpu()


_LONG = torch.long
OUT_DTYPE_CASES: dict[str, Callable[[str], torch.Tensor]] = {
    # The dim forms compute in out='s dtype; the all-reduce forms want it exact.
    "cumsum": lambda d: torch.cumsum(torch.full((3,), 1.5, device=d), 0, out=torch.empty(3, dtype=_LONG, device=d)),
    "cumprod": lambda d: torch.cumprod(torch.full((3,), 2.5, device=d), 0, out=torch.empty(3, dtype=_LONG, device=d)),
    "sum_dim": lambda d: torch.sum(torch.full((3,), 1.6, device=d), 0, out=torch.empty((), dtype=_LONG, device=d)),
    "prod_dim": lambda d: torch.prod(torch.full((3,), 1.5, device=d), 0, out=torch.empty((), dtype=_LONG, device=d)),
    "sum_all_out": lambda d: torch.ops.aten.sum.out(torch.ones(3, device=d), out=torch.zeros((), dtype=_LONG).to(d)),
    "sum_all_out_f64": lambda d: torch.ops.aten.sum.out(
        torch.ones(3, device=d), out=torch.empty((), dtype=torch.float64, device=d)
    ),
    "prod_all_out": lambda d: torch.ops.aten.prod.out(torch.ones(3, device=d), out=torch.zeros((), dtype=_LONG).to(d)),
}


@pytest.mark.parametrize("name", sorted(OUT_DTYPE_CASES))
def test_reduction_out_dtype_as_on_cpu(name: str) -> None:
    f = OUT_DTYPE_CASES[name]
    try:
        want = f("cpu")
    except RuntimeError:
        with pytest.raises(RuntimeError):
            f("tpu").cpu()
        return
    got = f("tpu").cpu()
    assert got.dtype == want.dtype and torch.equal(got, want), (got, want)


def test_lerp_takes_a_zero_dim_weight_of_any_dtype_as_cpu_does() -> None:
    for w in (torch.tensor(0.25, dtype=torch.float64), torch.tensor(1), torch.tensor(0.5, dtype=torch.float16)):
        want = torch.lerp(torch.ones(2), torch.zeros(2), w)
        got = torch.lerp(torch.ones(2, device="tpu"), torch.zeros(2, device="tpu"), w.to("tpu"))
        assert got.dtype == want.dtype and torch.equal(got.cpu(), want), (w, got, want)


def test_lu_of_singular_matrices_matches_lapack() -> None:
    # A zero pivot stays on U's diagonal, the column is not divided by it,
    # and info names it (1-based), as LAPACK's getrf does.
    for a in (torch.zeros(2, 2), torch.tensor([[1.0, 2.0], [2.0, 4.0]]), torch.tensor([[0.0, 1.0], [0.0, 2.0]])):
        want = torch.linalg.lu_factor_ex(a)
        got = torch.linalg.lu_factor_ex(a.to("tpu"))
        for w, g in zip(want, got):
            assert torch.equal(g.cpu(), w), (a, want, got)
        assert torch.equal(torch.linalg.inv_ex(a.to("tpu")).info.cpu(), torch.linalg.inv_ex(a).info)


@pytest.mark.parametrize("name", ["index_select", "getitem", "nll_loss", "floor_divide_by_zero"])
def test_error_names_the_op_and_the_value(name: str, mode: str) -> None:
    with pytest.raises((IndexError, RuntimeError)) as e:
        BAD_INPUTS[name]("tpu").cpu()
    op = {"getitem": "index", "nll_loss": "nll_loss", "floor_divide_by_zero": "floor_divide"}.get(name, name)
    msg = str(e.value)
    assert f"aten::{op}" in msg, msg
    if name != "floor_divide_by_zero":
        bad = {"index_select": "7", "getitem": "6", "nll_loss": "5"}[name]
        assert f" {bad} " in msg, msg
    else:
        assert "ZeroDivisionError" in msg


def test_debug_mode_raises_at_the_op_and_leaves_tensors_untouched() -> None:
    with torch_tpu.eager_mode("debug"):
        x = torch.zeros(4, 3, device="tpu")
        with pytest.raises(RuntimeError, match="out of bounds"):
            x.index_add_(0, _i(1, 9).to("tpu"), torch.ones(2, 3, device="tpu"))
        assert torch.equal(x.cpu(), torch.zeros(4, 3))


def test_async_modes_stay_asynchronous_and_raise_at_the_sync() -> None:
    with torch_tpu.eager_mode("strict"):
        w = torch.randn(4, 3, device="tpu")
        y = w.index_select(0, _i(7).to("tpu"))  # no error yet: nothing was read
        z = y * 2
        with pytest.raises(IndexError, match="index 7"):
            torch.tpu.synchronize()
        del z
        torch.tpu.synchronize()  # reported once


def test_valid_indices_unchanged(mode: str) -> None:
    # The checks must not change results: negative indices where PyTorch wraps them.
    x = torch.randn(5, 4)
    idx = torch.tensor([0, -1, 4, -5])
    t = x.to("tpu")
    assert torch.equal(t[idx.to("tpu")].cpu(), x[idx])
    assert torch.equal(t.take(idx.to("tpu")).cpu(), x.take(idx))
    assert torch.equal(t.index_fill(0, idx.to("tpu"), 2.0).cpu(), x.index_fill(0, idx, 2.0))
    tgt = torch.tensor([1, -100, 3, 0, 2])
    assert torch.allclose(F.cross_entropy(t, tgt.to("tpu")).cpu(), F.cross_entropy(x, tgt))
    assert torch.equal(torch.empty(0, 3, device="tpu").amax(1).cpu(), torch.empty(0, 3).amax(1))
    assert torch.equal((_i(7, -7).to("tpu") // _i(2, 2).to("tpu")).cpu(), _i(7, -7) // _i(2, 2))


def test_overlap_allowed_where_cpu_allows_it(mode: str) -> None:
    x = torch.arange(4.0)
    t = x.to("tpu")
    t.add_(t)  # the same tensor in and out
    x.add_(x)
    torch.zeros(1, device="tpu").expand(3).fill_(1.0)  # fill_ writes through expansions on CPU too
    a = torch.arange(6.0)
    ta = a.to("tpu")
    ta[:3].copy_(ta[3:])  # disjoint parts of one storage
    a[:3].copy_(a[3:])
    assert torch.equal(t.cpu(), x)
    assert torch.equal(ta.cpu(), a)


def test_failed_program_is_transactional() -> None:
    with torch_tpu.eager_mode("fused"):
        a = torch.arange(4.0, device="tpu")
        u = torch.full((3,), 5.0, device="tpu")
        torch_tpu.sync()
        b = a * 2
        a.add_(1)  # donates a's buffer to the program
        big = torch.ones(1 << 36, device="tpu")  # 256 GiB: more than any CI machine has
        with pytest.raises(torch.OutOfMemoryError):
            torch_tpu.sync()
        del big
        # The program never ran: a keeps its value, u is untouched, b has none and says so.
        assert torch.equal(a.cpu(), torch.arange(4.0))
        assert torch.equal(u.cpu(), torch.full((3,), 5.0))
        with pytest.raises(RuntimeError, match="has no value"):
            b.cpu()
        # Later work proceeds.
        assert torch.equal((a + 1).cpu(), torch.arange(1.0, 5.0))


def _train(seed: int, out: dict[int, torch.Tensor], barrier: threading.Barrier | None) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(16, 16, generator=g).to("tpu").requires_grad_()
    x = torch.randn(8, 16, generator=g).to("tpu")
    if barrier is not None:
        barrier.wait()
    for i in range(12):
        (x @ w).tanh().sum().backward()
        with torch.no_grad():
            w -= 0.01 * w.grad
            w.grad = None
        if i % 4 == 0:
            torch.tpu.synchronize()
    out[seed] = w.detach().cpu()


def test_fused_mode_from_several_threads() -> None:
    with torch_tpu.eager_mode("fused"):
        ref: dict[int, torch.Tensor] = {}
        for s in range(4):
            _train(s, ref, None)
        got: dict[int, torch.Tensor] = {}
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=_train, args=(s, got, barrier)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == [0, 1, 2, 3], "a thread failed"
        for s in range(4):
            # Ops of other threads share the fused graphs, so XLA may fuse
            # them differently: equal up to float rounding, not bit for bit.
            torch.testing.assert_close(got[s], ref[s], rtol=1e-5, atol=1e-6)


def test_strict_replay_keeps_the_checks() -> None:
    # Strict mode replays a cached program for a repeated op signature; the
    # replayed program must still report its checks.
    with torch_tpu.eager_mode("strict"):
        w = torch.randn(4, 3, device="tpu")
        for i in (0, 1, 2, 3):
            w.index_select(0, _i(i).to("tpu"))
        torch.tpu.synchronize()
        hits = torch_tpu.metrics()["cache_hits_memory"]
        w.index_select(0, _i(11).to("tpu"))
        assert torch_tpu.metrics()["cache_hits_memory"] > hits, "not replayed"
        with pytest.raises(IndexError, match="index 11"):
            torch.tpu.synchronize()
