"""all_reduce bandwidth and a DDP training step on both "tpu_dist" engines, next to
gloo on CPU tensors, measured side by side in one run:

- host-staged gloo: two ranks under torchrun (two processes, one CPU-plugin device each);
- XLA collectives: two CPU-plugin devices of one process (``TORCH_TPU_CPU_DEVICE_COUNT=2``),
  all_reduce through the SPMD API (``torch_tpu.distributed.xla.all_reduce``), DDP with
  thread ranks (``torch_tpu.distributed.spawn_threads``).

    python benches/distributed.py [--quick] [--only-xla]

Bandwidth is bytes of one rank's tensor per second of one all_reduce (algorithm
bandwidth); every timed all_reduce's result is read back on the host before the
clock stops. The DDP step (an MLP 256-1024-1024-10, batch 64 per rank, SGD) reads
its loss at the end of each block.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

SIZES_QUICK = [2**10, 2**16, 2**20]
SIZES_FULL = [2**10, 2**14, 2**18, 2**20, 2**22]


def timed(fn: Callable[[], torch.Tensor], iters: int, repeats: int, barrier: Callable[[], None]) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            r = fn()
        r.sum().item()  # the last result is read on the host
        samples.append((time.perf_counter() - t0) / iters)
    return statistics.median(samples)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def ddp_step_fn(dev: str, state: dict) -> Callable[[], torch.Tensor]:
    model = mlp()
    model.load_state_dict(state)
    model = nn.parallel.DistributedDataParallel(model.to(dev))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 256, generator=g).to(dev), torch.randint(0, 10, (64,), generator=g).to(dev)

    def step() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def torchrun_rank(quick: bool, out_path: str) -> None:
    """One of the two torchrun ranks: gloo on CPU tensors vs host-staged tpu_dist."""
    import torch_tpu

    dist.init_process_group("cpu:gloo,tpu:tpu_dist")
    iters, repeats = (2, 1) if quick else (10, 5)
    rows = {}
    for n in SIZES_QUICK if quick else SIZES_FULL:

        def ar(t: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(t)
            return t

        t_cpu, t_tpu = torch.ones(n), torch.ones(n, device="tpu")
        rows[n * 4] = {
            "gloo cpu": timed(lambda t=t_cpu: ar(t), iters, repeats, dist.barrier),
            "host-staged": timed(lambda t=t_tpu: ar(t), iters, repeats, dist.barrier),
        }
    torch.manual_seed(0)
    state = mlp().state_dict()
    steps = {dev: timed(ddp_step_fn(dev, state), iters, repeats, dist.barrier) for dev in ("cpu", "tpu")}
    if dist.get_rank() == 0:
        engine = torch_tpu.distributed.engine_stats()["engine"]
        with open(out_path, "w") as f:
            json.dump({"rows": rows, "steps": steps, "engine": engine}, f)
    dist.destroy_process_group()


def xla_process(quick: bool, out_path: str) -> None:
    """Two devices of this process: the XLA engine (SPMD all_reduce, DDP with thread ranks)."""
    import torch_tpu
    from torch_tpu.distributed import engine_stats, spawn_threads, xla

    assert torch.tpu.device_count() >= 2, "run with TORCH_TPU_CPU_DEVICE_COUNT=2"
    iters, repeats = (2, 1) if quick else (10, 5)
    rows = {}
    for n in SIZES_QUICK if quick else SIZES_FULL:
        ts = [torch.ones(n, device=f"tpu:{i}") for i in range(2)]

        def ar(ts: list[torch.Tensor] = ts) -> torch.Tensor:
            xla.all_reduce(ts)
            ts[1].sum().item()  # both devices' results are read back
            return ts[0]

        rows[n * 4] = timed(ar, iters, repeats, torch_tpu.sync)
    torch.manual_seed(0)
    state = mlp().state_dict()
    times: list[float] = [0.0, 0.0]
    gate = threading.Barrier(2)

    def rank(r: int) -> None:
        times[r] = timed(ddp_step_fn(f"tpu:{r}", state), iters, repeats, gate.wait)

    spawn_threads(rank, 2)
    stats = engine_stats()
    with open(out_path, "w") as f:
        json.dump({"rows": rows, "step": times[0], "engine": stats["engine"], "engines": stats["engines"]}, f)


def launch(quick: bool, only_xla: bool) -> int:
    tmp = tempfile.mkdtemp(prefix="tpu_dist_bench_")
    xla_out, tr_out = os.path.join(tmp, "xla.json"), os.path.join(tmp, "torchrun.json")
    flags = ["--quick"] if quick else []
    env = {**os.environ, "TORCH_TPU_CPU_DEVICE_COUNT": "2"}
    rc = subprocess.call([sys.executable, __file__, "--xla-process", xla_out, *flags], env=env)
    if rc:
        return rc
    with open(xla_out) as f:
        x = json.load(f)
    t = None
    if not only_xla:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__]
        env = {k: v for k, v in os.environ.items() if k != "TORCH_TPU_CPU_DEVICE_COUNT"}
        rc = subprocess.call([*cmd, "--torchrun-rank", tr_out, *flags], env=env)
        if rc:
            return rc
        with open(tr_out) as f:
            t = json.load(f)
    import torch_tpu

    print(f"plugin: {torch_tpu.plugin_info()['plugin']}")
    print(f"engines: XLA process -> {x['engine']!r}" + (f", torchrun -> {t['engine']!r}" if t else ""))
    head = f"{'all_reduce bytes':>16} {'gloo cpu GB/s':>14} {'host-staged GB/s':>17}"
    print(f"{head} {'xla GB/s':>10} {'xla/staged':>10}")
    for nbytes, xla_s in x["rows"].items():
        gloo_s = t["rows"][nbytes]["gloo cpu"] if t else float("nan")
        staged_s = t["rows"][nbytes]["host-staged"] if t else float("nan")
        nb = int(nbytes)
        print(
            f"{nb:>16} {nb / gloo_s / 1e9:>14.3f} {nb / staged_s / 1e9:>17.3f} {nb / xla_s / 1e9:>10.3f} "
            f"{staged_s / xla_s:>9.2f}x"
        )
    if t:
        cpu, staged = t["steps"]["cpu"], t["steps"]["tpu"]
        print(
            f"DDP step: gloo on CPU {cpu * 1e3:.2f} ms, tpu_dist host-staged {staged * 1e3:.2f} ms "
            f"({staged / cpu:.2f}x), tpu_dist xla collectives (thread ranks) {x['step'] * 1e3:.2f} ms "
            f"({x['step'] / cpu:.2f}x the CPU time)"
        )
    else:
        print(f"DDP step: tpu_dist xla collectives (thread ranks) {x['step'] * 1e3:.2f} ms")
    print(f"xla engine counts: {x['engines']}")
    return 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only-xla", action="store_true", help="skip the torchrun part (host-staged gloo)")
    p.add_argument("--xla-process", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--torchrun-rank", metavar="OUT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.xla_process:
        xla_process(args.quick, args.xla_process)
    elif args.torchrun_rank:
        torchrun_rank(args.quick, args.torchrun_rank)
    else:
        sys.exit(launch(args.quick, args.only_xla))


if __name__ == "__main__":
    main()
