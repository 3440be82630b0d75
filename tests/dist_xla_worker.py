"""The XLA collectives engine over two CPU-plugin devices of one process.

Run by ``test_dist_xla.py`` with ``TORCH_TPU_CPU_DEVICE_COUNT=2`` (read when
the runtime loads). Prints ``OK <check>`` per passing check; any failure
raises. Expected values are computed on CPU from the same inputs.
"""

from __future__ import annotations

import re
import sys

import torch
import torch.distributed as dist
from torch import nn

import torch_tpu
from torch_tpu.distributed import engine_stats, spawn_threads, xla

N = 2
DEVS = [torch.device("tpu", i) for i in range(N)]


def close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    got = got.cpu()
    if want.dtype in (torch.bfloat16, torch.float16):
        torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2, msg=what)
    else:
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=what)


def sample(dtype: torch.dtype, rank: int, n: int = 6) -> torch.Tensor:
    """Small distinct values per rank (exact in every dtype)."""
    if dtype == torch.bool:
        return torch.tensor([(i + rank) % 3 == 0 for i in range(n)])
    v = torch.arange(n) * (rank + 1) + 2 * rank + 1
    return v.to(dtype)


def reduce_cpu(xs: list[torch.Tensor], op: str) -> torch.Tensor:
    if op in ("sum", "avg"):
        if xs[0].dtype == torch.bool:
            return xs[0] | xs[1]
        s = (xs[0].double() + xs[1].double()) if xs[0].is_floating_point() else xs[0] + xs[1]
        if op == "avg":
            s = s / N if xs[0].is_floating_point() else torch.div(s, N, rounding_mode="trunc")
        return s.to(xs[0].dtype)
    if op == "product":
        return xs[0] & xs[1] if xs[0].dtype == torch.bool else xs[0] * xs[1]
    if op == "min":
        return torch.minimum(xs[0], xs[1])
    if op == "max":
        return torch.maximum(xs[0], xs[1])
    return {"band": torch.bitwise_and, "bor": torch.bitwise_or, "bxor": torch.bitwise_xor}[op](xs[0], xs[1])


FLOATS = (torch.float32, torch.bfloat16, torch.float16)
INTS = (torch.int32, torch.int64, torch.uint8)
OPS = {torch.bool: ("sum", "product", "min", "max", "band", "bor", "bxor")}


def ops_for(dtype: torch.dtype) -> tuple[str, ...]:
    if dtype == torch.bool:
        return OPS[torch.bool]
    base = ("sum", "avg", "product", "min", "max")
    return base + (("band", "bor", "bxor") if dtype in INTS else ())


def check_spmd() -> None:
    for dtype in (*FLOATS, *INTS, torch.bool):
        cpu = [sample(dtype, r) for r in range(N)]
        for op in ops_for(dtype):
            dev = [c.to(d) for c, d in zip(cpu, DEVS)]
            xla.all_reduce(dev, op)
            want = reduce_cpu(cpu, op)
            for r in range(N):
                close(dev[r], want, f"all_reduce {op} {dtype} rank {r}")
            rs = xla.reduce_scatter([c.to(d) for c, d in zip(cpu, DEVS)], op)
            for r in range(N):
                close(rs[r], want.reshape(N, -1)[r], f"reduce_scatter {op} {dtype} rank {r}")
        dev = [c.to(d) for c, d in zip(cpu, DEVS)]
        gathered = xla.all_gather(dev)
        for r in range(N):
            close(gathered[r], torch.cat(cpu), f"all_gather {dtype}")
            assert gathered[r].device == DEVS[r]
        a2a = xla.all_to_all(dev)
        for r in range(N):
            close(a2a[r], torch.cat([c.reshape(N, -1)[r] for c in cpu]), f"all_to_all {dtype}")
        perm = xla.collective_permute(dev, [(0, 1), (1, 0)])
        close(perm[0], cpu[1], f"permute {dtype}")
        close(perm[1], cpu[0], f"permute {dtype}")
        one_way = xla.collective_permute(dev, [(0, 1)])
        close(one_way[1], cpu[0], f"permute one way {dtype}")
        close(one_way[0], torch.zeros_like(cpu[0]), f"permute: untargeted gets zeros {dtype}")
    print("OK spmd collectives")


def check_views_and_errors() -> None:
    # Non-contiguous inputs and outputs: a column of a matrix, reduced in full and written through the view.
    bases = [torch.arange(12.0).reshape(3, 4) * (r + 1) for r in range(N)]
    dev = [b.to(d) for b, d in zip(bases, DEVS)]
    cols = [t[:, 1] for t in dev]
    xla.all_reduce(cols, "sum")
    want = bases[0].clone()
    want[:, 1] = bases[0][:, 1] + bases[1][:, 1]
    close(dev[0], want, "strided all_reduce rank 0")
    want1 = bases[1].clone()
    want1[:, 1] = want[:, 1]
    close(dev[1], want1, "strided all_reduce rank 1")
    tr = [b.t().to(d) for b, d in zip(bases, DEVS)]  # transposed contiguous copy, then a transposed view
    views = [t.t() for t in tr]
    outs = xla.all_gather(views)
    close(outs[0], torch.cat([b for b in bases]), "all_gather of transposed views")
    # 0-d tensors and a scalar result.
    s = [torch.tensor(2.0 + r, device=d) for r, d in enumerate(DEVS)]
    xla.all_reduce(s, "product")
    close(s[1], torch.tensor(6.0), "0-d all_reduce")
    one = torch.arange(3.0, device=DEVS[1])
    xla.all_reduce([one], "max")  # a one-device group: the values stay
    close(one, torch.arange(3.0), "one-device all_reduce")
    for call, pattern in (
        (lambda: xla.all_reduce([torch.ones(2, device=d) for d in DEVS], "bxor"), "all_reduce.*bxor"),
        (lambda: xla.reduce_scatter([torch.ones(3, device=d) for d in DEVS]), "reduce_scatter"),
        (
            lambda: xla.all_reduce([torch.ones(2, device=d, dtype=torch.complex64) for d in DEVS], "max"),
            "all_reduce.*real",
        ),
        (lambda: xla.all_gather([torch.ones(2), torch.ones(2, device="tpu:1")]), "all_gather.*tpu device"),
        (lambda: xla.all_reduce([torch.ones(2, device="tpu:0")] * 2), "all_reduce.*given twice"),
        (lambda: xla.all_reduce([torch.ones(2, device=d, dtype=torch.bool) for d in DEVS], "avg"), "avg"),
        (lambda: xla.collective_permute([torch.ones(2, device=d) for d in DEVS], [(0, 1), (0, 0)]), "permute"),
    ):
        try:
            call()
        except (RuntimeError, TypeError, ValueError) as e:
            assert re.search(pattern, str(e)), f"{pattern!r} not in {e}"
        else:
            raise AssertionError(f"no error for {pattern}")
    print("OK views and errors")


def ranks_body(rank: int, mode: str) -> None:
    torch_tpu.set_eager_mode(mode)
    dev = DEVS[rank]
    for dtype in (torch.float32, torch.bfloat16, torch.int64):
        cpu = [sample(dtype, r, 4) for r in range(N)]
        for op, rop in (("sum", dist.ReduceOp.SUM), ("max", dist.ReduceOp.MAX), ("product", dist.ReduceOp.PRODUCT)):
            t = cpu[rank].to(dev)
            dist.all_reduce(t, rop)
            close(t, reduce_cpu(cpu, op), f"c10d all_reduce {op} {dtype}")
        t = cpu[rank].to(dev)
        dist.all_reduce(t, dist.ReduceOp.AVG if dtype != torch.int64 else dist.ReduceOp.BXOR)
        close(t, reduce_cpu(cpu, "avg" if dtype != torch.int64 else "bxor"), f"c10d all_reduce avg/bxor {dtype}")
        out = torch.empty(N * 4, dtype=dtype, device=dev)
        dist.all_gather_into_tensor(out, cpu[rank].to(dev))
        close(out, torch.cat(cpu), f"c10d all_gather_into_tensor {dtype}")
        outs = [torch.empty(4, dtype=dtype, device=dev) for _ in range(N)]
        dist.all_gather(outs, cpu[rank].to(dev))
        for r in range(N):
            close(outs[r], cpu[r], f"c10d all_gather list {dtype}")
        rs = torch.empty(2, dtype=dtype, device=dev)
        dist.reduce_scatter_tensor(rs, cpu[rank].to(dev))
        close(rs, reduce_cpu(cpu, "sum").reshape(N, -1)[rank], f"c10d reduce_scatter_tensor {dtype}")
        rsl = torch.empty(2, dtype=dtype, device=dev)
        dist.reduce_scatter(rsl, list(cpu[rank].to(dev).chunk(N)))
        close(rsl, reduce_cpu(cpu, "sum").reshape(N, -1)[rank], f"c10d reduce_scatter list {dtype}")
        a2a = torch.empty(4, dtype=dtype, device=dev)
        dist.all_to_all_single(a2a, cpu[rank].to(dev))
        close(a2a, torch.cat([c.reshape(N, -1)[rank] for c in cpu]), f"c10d all_to_all_single {dtype}")
        b = cpu[rank].to(dev)
        dist.broadcast(b, src=1)
        close(b, cpu[1], f"c10d broadcast {dtype}")
    # Uneven all_to_all_single: rank 0 sends 1 then 3 elements, rank 1 sends 2 then 2.
    in_splits = [[1, 3], [2, 2]][rank]
    out_splits = [[1, 2], [3, 2]][rank]
    src = torch.arange(4.0) + 10 * rank
    got = torch.empty(sum(out_splits), device=dev)
    dist.all_to_all_single(got, src.to(dev), out_splits, in_splits)
    want = [torch.tensor([0.0, 10.0, 11.0]), torch.tensor([1.0, 2.0, 3.0, 12.0, 13.0])][rank]
    close(got, want, "c10d uneven all_to_all_single")
    # Strided tensors through c10d.
    base = torch.arange(8.0).reshape(2, 4).to(dev) * (rank + 1)
    dist.all_reduce(base[:, 2])
    close(base[:, 2], torch.tensor([2.0, 6.0]) * 3, "c10d strided all_reduce")
    # Point to point, reduce, gather, scatter, barrier, and a CPU tensor through gloo.
    if rank == 0:
        dist.send(torch.tensor([7.0, 8.0], device=dev), dst=1)
    else:
        r = torch.zeros(2, device=dev)
        dist.recv(r, src=0)
        close(r, torch.tensor([7.0, 8.0]), "c10d send/recv")
    red = torch.full((3,), float(rank + 2), device=dev)
    dist.reduce(red, dst=0)
    close(red, torch.full((3,), 5.0) if rank == 0 else torch.full((3,), 3.0), "c10d reduce")
    g = [torch.empty(2, device=dev) for _ in range(N)] if rank == 0 else None
    dist.gather(torch.full((2,), float(rank), device=dev), g, dst=0)
    if rank == 0:
        close(torch.stack(g), torch.tensor([[0.0, 0.0], [1.0, 1.0]]), "c10d gather")
    sc = torch.empty(2, device=dev)
    dist.scatter(sc, [torch.full((2,), 5.0 + r, device=dev) for r in range(N)] if rank == 1 else None, src=1)
    close(sc, torch.full((2,), 5.0 + rank), "c10d scatter")
    dist.barrier()
    c = torch.full((2,), float(rank + 1))
    dist.all_reduce(c)
    close(c, torch.full((2,), 3.0), "c10d cpu tensor through gloo")
    torch_tpu.set_eager_mode("fused")


def check_thread_ranks(mode: str) -> None:
    before = engine_stats()["engines"]["xla collectives"]["collectives"]
    spawn_threads(ranks_body, N, (mode,))
    stats = engine_stats()
    assert stats["engine"] in ("xla collectives", "host-staged gloo"), stats
    assert stats["engines"]["xla collectives"]["collectives"] > before + 30, stats
    print(f"OK thread ranks {mode}")


def mlp_like(state: dict) -> nn.Module:
    m = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    m.load_state_dict(state)
    return m


def ddp_body(rank: int, x: torch.Tensor, y: torch.Tensor, state: dict) -> list[torch.Tensor]:
    dev = DEVS[rank]
    # The initial weights come from the main thread: the CPU generator is shared by the threads.
    model = nn.parallel.DistributedDataParallel(mlp_like(state).to(dev))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xs, ys = x.chunk(N)[rank].to(dev), y.chunk(N)[rank].to(dev)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(xs), ys).backward()
        opt.step()
    return [p.detach().cpu() for p in model.parameters()]


def check_ddp() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(8, 8), torch.randn(8, 2)
    state = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2)).state_dict()
    before = engine_stats()["engines"]["xla collectives"]["collectives"]
    params = spawn_threads(ddp_body, N, (x, y, state))
    # Single process, full batch, on the CPU: the mean of the two half-batch gradients.
    ref = mlp_like(state)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(ref(x), y).backward()
        opt.step()
    for r in range(N):
        for got, want in zip(params[r], ref.parameters()):
            torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-5)
    assert engine_stats()["engines"]["xla collectives"]["collectives"] > before, engine_stats()
    assert engine_stats()["engine"] == "xla collectives", engine_stats()
    print("OK ddp")


def mismatched_body(rank: int) -> None:
    t = torch.ones(2, device=DEVS[rank])
    if rank == 0:
        dist.all_reduce(t)
    else:
        dist.all_gather_into_tensor(torch.empty(4, device=DEVS[rank]), t)


def check_mismatch() -> None:
    """Ranks calling different collectives get an error naming both, not a hang."""
    try:
        spawn_threads(mismatched_body, N)
    except RuntimeError as e:
        assert "rank 0 called all_reduce[sum](float32[2]), rank 1 called all_gather" in str(e), e
    else:
        raise AssertionError("no error for mismatched collectives")
    print("OK mismatch")


def main() -> None:
    assert torch.tpu.device_count() == N, torch.tpu.device_count()
    check_spmd()
    check_views_and_errors()
    for mode in ("fused", "strict"):
        check_thread_ranks(mode)
    check_ddp()
    check_mismatch()
    print("engine_stats:", engine_stats())


if __name__ == "__main__":
    main()
    sys.stdout.flush()
