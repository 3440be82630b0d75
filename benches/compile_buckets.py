"""torch.compile with a varying batch: shape buckets against one program per size.

An MLP forward fed batch sizes 1..16 in a shuffled order, compiled with
backend "tpu" three ways (buckets; buckets with ``options={"precompile_sizes":
...}``, the other buckets compiled on a background thread at the first dynamic
call; ``TORCH_TPU_SHAPE_BUCKETS=0``), beside native torch on the CPU. Prints the programs compiled, the first pass over
the sizes (compiles included: what a user waits for) and a warm pass, as
ratios against native. Every result is read to the host. Each compiled
configuration runs in a process of its own.

    python benches/compile_buckets.py [--passes N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import time

import torch
from torch import nn

import torch_tpu


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10)).eval()


def _pass(fn, inputs: list[torch.Tensor]) -> tuple[float, float]:
    """Seconds for one pass, and a checksum of every result (read to the host)."""
    t0 = time.perf_counter()
    total = 0.0
    with torch.no_grad():
        for x in inputs:
            total += float(fn(x).cpu().sum())  # read whole: no eager op per size
    return time.perf_counter() - t0, total


def _compiled_run(flag: str, passes: int) -> None:
    """One compiled configuration, in a process of its own (so that neither
    finds the other's programs in the executable cache); prints a JSON line."""
    os.environ["TORCH_TPU_SHAPE_BUCKETS"] = "0" if flag == "0" else "1"
    options = {"precompile_sizes": SIZES} if flag == "ahead" else {}
    cpu = _model()
    host = _inputs()
    _, want = _pass(cpu, host)
    dev = torch.compile(copy.deepcopy(cpu).to("tpu"), backend="tpu", options=options)
    inputs = [x.to("tpu") for x in host]
    before = torch_tpu.metrics()["compiles"]
    first, got = _pass(dev, inputs)
    programs = torch_tpu.metrics()["compiles"] - before
    warm = min(_pass(dev, inputs)[0] for _ in range(passes))
    assert abs(got - want) <= 1e-3 * max(1.0, abs(want)), (flag, got, want)
    stats = torch_tpu._compile.compile_stats()
    print(json.dumps({"programs": programs, "first": first, "warm": warm, "direct": stats["direct_calls"]}))


def _inputs() -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(b, 256) for b in SIZES]


SIZES = list(range(1, 17))
random.Random(0).shuffle(SIZES)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=5, help="warm passes (the best is shown)")
    ap.add_argument("--one", choices=["0", "1", "ahead"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["TORCH_TPU_CACHE_DIR"] = "0"  # count and time real compiles
    if args.one is not None:
        _compiled_run(args.one, args.passes)
        return
    cpu = _model()
    host = _inputs()
    native_first, _ = _pass(cpu, host)
    native = min(_pass(cpu, host)[0] for _ in range(args.passes))
    print(f"batch sizes {SIZES}")
    print(f"{'':<24}{'programs':>9}{'first pass':>12}{'x native':>10}{'warm pass':>11}{'x native':>10}")
    print(f"{'native torch cpu':<24}{'-':>9}{native_first * 1e3:>10.1f}ms{1:>9.2f}x{native * 1e3:>9.2f}ms{1:>9.2f}x")
    rows = (("compiled, buckets", "1"), ("buckets + precompile", "ahead"), ("compiled, one per size", "0"))
    for label, flag in rows:
        cmd = [sys.executable, __file__, "--one", flag, "--passes", str(args.passes)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{label:<24}{r['programs']:>9}{r['first'] * 1e3:>10.1f}ms{r['first'] / native_first:>9.2f}x"
            f"{r['warm'] * 1e3:>9.2f}ms{r['warm'] / native:>9.2f}x"
        )


if __name__ == "__main__":
    main()
