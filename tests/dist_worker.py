"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: every
check compares against values computed by hand (or single-process training)
and prints ``OK <name>``; any failure raises and fails the run."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

import torch_tpu

TPU = "tpu"


def close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 1e-5) -> None:
    a, b = a.detach().cpu(), b.detach().cpu()
    torch.testing.assert_close(a, b.to(a.dtype), atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


def collectives(rank: int, world: int, mode: str) -> None:
    r1 = rank + 1
    tot = sum(range(1, world + 1))
    for op, want in (
        (dist.ReduceOp.SUM, tot),
        (dist.ReduceOp.MAX, world),
        (dist.ReduceOp.MIN, 1),
        (dist.ReduceOp.PRODUCT, 2.0 if world == 2 else None),
        (dist.ReduceOp.AVG, tot / world),
    ):
        if want is None:
            continue
        x = torch.full((3,), float(r1), device=TPU)
        dist.all_reduce(x, op=op)
        close(x, torch.full((3,), float(want)), f"all_reduce {op}")
    for dtype in (torch.bfloat16, torch.float16, torch.int32, torch.int64):
        x = torch.full((2,), r1, dtype=dtype, device=TPU)
        dist.all_reduce(x)
        assert x.dtype == dtype
        close(x, torch.full((2,), tot, dtype=dtype), f"all_reduce {dtype}")
    b = torch.tensor([True, False], device=TPU) if rank == 0 else torch.tensor([False, False], device=TPU)
    dist.all_reduce(b, op=dist.ReduceOp.MAX)
    assert b.cpu().tolist() == [True, False]
    # A strided view is reduced in full (gloo on CPU would reduce one element).
    base = torch.arange(12.0, device=TPU).reshape(3, 4) * r1
    dist.all_reduce(base[:, 1])
    close(base[:, 1], torch.tensor([1.0, 5.0, 9.0]) * tot, "all_reduce of a strided view")
    close(base[:, 0], torch.tensor([0.0, 4.0, 8.0]) * r1, "untouched columns")
    # Coalesced.
    xs = [torch.full((2,), float(r1), device=TPU), torch.full((3,), 2.0 * r1, device=TPU)]
    dist.all_reduce_coalesced(xs)
    close(xs[1], torch.full((3,), 2.0 * tot), "all_reduce_coalesced")
    # Broadcast, all_gather, all_gather_into_tensor, reduce_scatter_tensor, reduce, gather, scatter.
    x = torch.full((2,), float(r1), device=TPU)
    dist.broadcast(x, src=1)
    close(x, torch.full((2,), 2.0), "broadcast")
    outs = [torch.empty(2, device=TPU) for _ in range(world)]
    dist.all_gather(outs, torch.full((2,), float(rank), device=TPU))
    close(torch.stack(outs), torch.arange(world).float()[:, None].expand(world, 2), "all_gather")
    out = torch.empty(2 * world, device=TPU)
    dist.all_gather_into_tensor(out, torch.full((2,), float(rank), device=TPU))
    close(out, torch.arange(world).float().repeat_interleave(2), "all_gather_into_tensor")
    o = torch.empty(2, device=TPU)
    dist.reduce_scatter_tensor(o, torch.arange(2.0 * world, device=TPU) * r1)
    close(o, torch.arange(2.0 * world)[2 * rank : 2 * rank + 2] * tot, "reduce_scatter_tensor")
    outs = [torch.empty(2, device=TPU)]
    dist.reduce_scatter(outs[0], [torch.full((2,), float(r1 * (i + 1)), device=TPU) for i in range(world)])
    close(outs[0], torch.full((2,), float(tot * (rank + 1))), "reduce_scatter")
    x = torch.full((2,), float(r1), device=TPU)
    dist.reduce(x, dst=0)
    close(x, torch.full((2,), float(tot if rank == 0 else r1)), "reduce")
    g = [torch.empty(2, device=TPU) for _ in range(world)] if rank == 0 else None
    dist.gather(torch.full((2,), float(rank), device=TPU), g, dst=0)
    if rank == 0:
        close(torch.stack(g), torch.arange(world).float()[:, None].expand(world, 2), "gather")
    s = torch.empty(2, device=TPU)
    dist.scatter(s, [torch.full((2,), 10.0 + i, device=TPU) for i in range(world)] if rank == 0 else None, src=0)
    close(s, torch.full((2,), 10.0 + rank), "scatter")
    # all_to_all_single, even and uneven; all_to_all.
    inp = torch.arange(2.0 * world, device=TPU) + 100 * rank
    out = torch.empty(2 * world, device=TPU)
    dist.all_to_all_single(out, inp)
    want = torch.cat([torch.arange(2.0 * rank, 2.0 * rank + 2) + 100 * src for src in range(world)])
    close(out, want, "all_to_all_single")
    if world == 2:
        in_splits = [1, 2] if rank == 0 else [3, 1]
        out_splits = [1, 3] if rank == 0 else [2, 1]
        inp = torch.arange(float(sum(in_splits)), device=TPU) + 10 * rank
        out = torch.empty(sum(out_splits), device=TPU)
        dist.all_to_all_single(out, inp, out_splits, in_splits)
        want = torch.tensor([0.0, 10.0, 11.0, 12.0]) if rank == 0 else torch.tensor([1.0, 2.0, 13.0])
        close(out, want, "uneven all_to_all_single")
    outs = [torch.empty(1, device=TPU) for _ in range(world)]
    dist.all_to_all(outs, [torch.full((1,), float(10 * rank + i), device=TPU) for i in range(world)])
    close(torch.cat(outs), torch.tensor([float(10 * src + rank) for src in range(world)]), "all_to_all")
    # async_op, send/recv, barrier, a subgroup, CPU tensors in the same group.
    x = torch.full((2,), float(r1), device=TPU)
    work = dist.all_reduce(x, async_op=True)
    work.wait()
    close(x, torch.full((2,), float(tot)), "async all_reduce")
    if world == 2:
        t = torch.full((3,), 7.0, device=TPU) if rank == 0 else torch.zeros(3, device=TPU)
        if rank == 0:
            dist.send(t, dst=1)
        else:
            dist.recv(t, src=0)
        close(t, torch.full((3,), 7.0), "send/recv")
    dist.barrier()
    sub = dist.new_group([0, 1])
    x = torch.ones(2, device=TPU)
    dist.all_reduce(x, group=sub)
    close(x, torch.full((2,), 2.0), "subgroup all_reduce")
    c = torch.full((2,), float(r1))
    dist.all_reduce(c)
    close(c, torch.full((2,), float(tot)), "CPU tensor in a tpu_dist group")
    print(f"OK collectives {mode}", flush=True)


def ddp_matches_full_batch(rank: int, world: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    model.load_state_dict(ref.state_dict())
    ddp = DDP(model.to(TPU))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(4 * world, 4, generator=g), torch.randn(4 * world, 1, generator=g)
        ref_opt.zero_grad()
        nn.functional.mse_loss(ref(x), y).backward()
        ref_opt.step()
        shard = slice(4 * rank, 4 * rank + 4)
        opt.zero_grad()
        nn.functional.mse_loss(ddp(x[shard].to(TPU)), y[shard].to(TPU)).backward()
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p, q, "DDP parameter vs single-process full batch", 1e-5)
    print("OK ddp", flush=True)


def fsdp2_matches_full_batch(rank: int, world: int) -> None:
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model.load_state_dict(ref.state_dict())
    model.to(TPU)
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        x = torch.randn(2 * world, 4, generator=g)
        ref_opt.zero_grad()
        ref(x).square().mean().backward()
        ref_opt.step()
        opt.zero_grad()
        model(x[2 * rank : 2 * rank + 2].to(TPU)).square().mean().backward()
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p.full_tensor(), q, "FSDP2 parameter vs single-process full batch", 1e-5)
    print("OK fsdp2", flush=True)


def dtensor_matmul(rank: int, world: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh(TPU, (world,))
    torch.manual_seed(3)
    a, b = torch.randn(4 * world, 3), torch.randn(3, 5)
    da = distribute_tensor(a.to(TPU), mesh, [Shard(0)])
    db = distribute_tensor(b.to(TPU), mesh, [Replicate()])
    dc = da @ db
    close(dc.full_tensor(), a @ b, "DTensor sharded matmul", 1e-5)
    close(dc.redistribute(mesh, [Replicate()]).to_local(), a @ b, "DTensor redistribute", 1e-5)
    print("OK dtensor", flush=True)


def rank_divergent_loop(rank: int, world: int) -> None:
    model = nn.Linear(3, 1).to(TPU)
    for step in range(3):
        x = torch.ones(2, 3, device=TPU)
        if rank == 0:  # rank 0 evaluates and logs: extra device work no other rank does
            for _ in range(step + 2):
                _ = (model(x) * 3).sum().item()
        g = torch.full((1,), float(step + rank), device=TPU)
        dist.all_reduce(g)
        close(g, torch.full((1,), float(2 * step + 1)), "all_reduce after divergent work")
    print("OK divergent", flush=True)


def sync_batch_norm_matches_full_batch(rank: int, world: int) -> None:
    """nn.SyncBatchNorm under DDP, each rank a different number of rows: the
    same parameters and running statistics as BatchNorm2d on the whole batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 1))
    model = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(ref)).to(TPU)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)
    rows = [3, 5]  # uneven: the statistics are merged by count
    for _ in range(3):
        x, y = torch.randn(sum(rows), 2, 4, 4, generator=g), torch.randn(sum(rows), 1, generator=g)
        ref_opt.zero_grad()
        # DDP averages the ranks' gradients: the reference weighs each rank's mean loss equally.
        out = ref(x)
        sum(nn.functional.mse_loss(out[s], y[s]) for s in (slice(0, 3), slice(3, 8))).div(world).backward()
        ref_opt.step()
        mine = slice(0, 3) if rank == 0 else slice(3, 8)
        opt.zero_grad()
        nn.functional.mse_loss(ddp(x[mine].to(TPU)), y[mine].to(TPU)).backward()
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p, q, "SyncBatchNorm model parameter vs full batch", 1e-4)
    close(model[1].running_mean, ref[1].running_mean, "SyncBatchNorm running_mean")
    close(model[1].running_var, ref[1].running_var, "SyncBatchNorm running_var")
    print("OK sync batch norm", flush=True)


def p2p_half_precision_and_pipeline(rank: int, world: int) -> None:
    """batch_isend_irecv (both ranks send first), reduce and CPU collectives in
    half precision, DDP with unused parameters, and a two-stage GPipe schedule
    against the unsplit model."""
    peer = 1 - rank
    send, recv = torch.full((2,), float(rank), device=TPU), torch.zeros(2, device=TPU)
    ops = [dist.P2POp(dist.isend, send, peer), dist.P2POp(dist.irecv, recv, peer)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    close(recv, torch.full((2,), float(peer)), "batch_isend_irecv")
    backend = dist.group.WORLD._get_backend(torch.device(TPU))
    assert not backend.supports_splitting and not backend.supports_coalescing
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.full((3,), rank + 1.0, dtype=dtype, device=TPU)
        dist.reduce(x, dst=1)
        close(x.float(), torch.full((3,), 3.0 if rank == 1 else 1.0), f"reduce {dtype}")
        c = torch.tensor([rank, 10 + rank], dtype=dtype)
        out = torch.empty(2, dtype=dtype)
        dist.all_to_all_single(out, c)
        close(out.float(), torch.tensor([0.0, 1.0]) + 10 * rank, f"CPU all_to_all_single {dtype}")
        gathered = torch.empty(4, dtype=dtype)
        dist.all_gather_into_tensor(gathered, c)
        close(gathered.float(), torch.tensor([0.0, 10.0, 1.0, 11.0]), f"CPU all_gather_into_tensor {dtype}")

    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    model = nn.ModuleDict({"used": nn.Linear(4, 1), "unused": nn.Linear(4, 1)}).to(TPU)
    ddp = DDP(model, find_unused_parameters=True)
    ddp.module["used"](torch.ones(2, 4, device=TPU)).sum().backward()
    close(model["used"].weight.grad, torch.full((1, 4), 2.0), "DDP grad with unused parameters")
    assert model["unused"].weight.grad is None

    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    torch.manual_seed(0)
    full = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():
        want = [((full(x[i : i + 2]) - y[i : i + 2]) ** 2).mean() for i in (0, 2)]
    stage = PipelineStage((full[:2] if rank == 0 else full[2:]).to(TPU), rank, world, torch.device(TPU))
    schedule = ScheduleGPipe(stage, n_microbatches=2, loss_fn=lambda out, target: ((out - target) ** 2).mean())
    if rank == 0:
        schedule.step(x.to(TPU))
    else:
        losses: list[torch.Tensor] = []
        schedule.step(target=y.to(TPU), losses=losses)
        for got, w in zip(losses, want):
            close(got, w, "GPipe microbatch loss")
    print("OK p2p and half precision", flush=True)


def _raises_in_debug_mode(check: str, collective: Callable[[], object], *needles: str) -> None:
    """Debug mode: ``collective`` (called differently per rank) must raise on
    every rank with a message naming both sides."""
    with torch_tpu.eager_mode("debug"):
        try:
            collective()
        except RuntimeError as e:
            msg = str(e)
            assert "differs across ranks" in msg and all(n in msg for n in needles), msg
            print(f"OK {check}", flush=True)
            return
    raise AssertionError(f"{check}: a mismatched collective did not raise in debug mode")


def mismatched_order_raises(rank: int, world: int) -> None:
    x = torch.ones(2, device=TPU)
    _raises_in_debug_mode(
        "order check", lambda: dist.all_reduce(x) if rank == 0 else dist.broadcast(x, src=0), "all_reduce", "broadcast"
    )


def mismatched_shapes_raise(rank: int, world: int) -> None:
    x = torch.ones(3 + rank, device=TPU)
    _raises_in_debug_mode("shape check", lambda: dist.all_reduce(x), "[3]", "[4]")


def main() -> None:
    dist.init_process_group(sys.argv[1] if len(sys.argv) > 1 else "tpu_dist")
    rank, world = dist.get_rank(), dist.get_world_size()
    for mode in ("fused", "strict"):
        with torch_tpu.eager_mode(mode):
            collectives(rank, world, mode)
    ddp_matches_full_batch(rank, world)
    fsdp2_matches_full_batch(rank, world)
    dtensor_matmul(rank, world)
    rank_divergent_loop(rank, world)
    p2p_half_precision_and_pipeline(rank, world)
    sync_batch_norm_matches_full_batch(rank, world)
    mismatched_order_raises(rank, world)
    mismatched_shapes_raise(rank, world)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
