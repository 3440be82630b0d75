"""all_reduce bandwidth and a DDP training step: "tpu_dist" on tpu tensors next
to gloo on CPU tensors, measured side by side in one run of two ranks.

    python benches/distributed.py [--quick]      # starts itself under torchrun (2 ranks)

Bandwidth is bytes of the tensor per second of one all_reduce (algorithm
bandwidth); every timed all_reduce's result is read back before the clock
stops. The DDP step (an MLP 256-1024-1024-10, batch 64 per rank, SGD) reads
its loss at the end of each block.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from torch import nn


def timed(fn, iters: int, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            r = fn()
        r.sum().item()  # the last result is read on the host
        samples.append((time.perf_counter() - t0) / iters)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if "RANK" not in os.environ:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__]
        sys.exit(subprocess.call(cmd + (["--quick"] if args.quick else [])))

    import torch_tpu

    dist.init_process_group("cpu:gloo,tpu:tpu_dist")
    rank = dist.get_rank()
    iters, repeats = (2, 1) if args.quick else (10, 5)
    sizes = [2**10, 2**16, 2**20] if args.quick else [2**10, 2**14, 2**18, 2**20, 2**22]
    rows = []
    for n in sizes:
        t_cpu = torch.ones(n)
        t_tpu = torch.ones(n, device="tpu")

        def ar(t: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(t)
            return t

        cpu_s = timed(lambda t=t_cpu: ar(t), iters, repeats)
        tpu_s = timed(lambda t=t_tpu: ar(t), iters, repeats)
        rows.append((n * 4, cpu_s, tpu_s))

    torch.manual_seed(0)

    def mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))

    steps = {}
    for dev in ("cpu", "tpu"):
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(mlp().to(dev))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = torch.randn(64, 256, device=dev), torch.randint(0, 10, (64,), device=dev)

        def step(model=model, opt=opt, x=x, y=y) -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss.detach()

        steps[dev] = timed(step, iters, repeats)
    if rank == 0:
        print(f"plugin: {torch_tpu.plugin_info()['plugin']}, engine: {torch_tpu.distributed.engine_stats()['engine']}")
        print(f"{'all_reduce bytes':>16} {'gloo cpu GB/s':>14} {'tpu_dist GB/s':>14} {'ratio':>7}")
        for nbytes, cpu_s, tpu_s in rows:
            print(f"{nbytes:>16} {nbytes / cpu_s / 1e9:>14.3f} {nbytes / tpu_s / 1e9:>14.3f} {cpu_s / tpu_s:>6.2f}x")
        print(
            f"DDP step: gloo on CPU {steps['cpu'] * 1e3:.2f} ms, tpu_dist on tpu {steps['tpu'] * 1e3:.2f} ms "
            f"({steps['tpu'] / steps['cpu']:.2f}x the CPU time)"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
