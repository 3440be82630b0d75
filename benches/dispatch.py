"""Per-op cost of tiny ops on tpu (each eager mode) against torch CPU eager.

Every (op, device/mode) block runs ``--iters`` calls and then waits for the
device; blocks are interleaved (the order rotates each repeat) and the median
over ``--repeats`` blocks is reported, so all columns are measured side by side
in one run under the same machine conditions.

    python benches/dispatch.py [--iters 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

import torch_tpu

OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
    "add": lambda a, b: torch.add(a, b),
    "mul": lambda a, b: torch.mul(a, b),
    "relu": lambda a, b: torch.relu(a),
    "sum": lambda a, b: a.sum(),
    "add_ (in place)": lambda a, b: a.add_(b),
    "mul scalar": lambda a, b: a * 3,
}


def available_modes() -> list[str]:
    modes = []
    previous = torch_tpu.get_eager_mode()
    for mode in ("debug", "strict", "fused"):
        try:
            torch_tpu.set_eager_mode(mode)
            modes.append(mode)
        except ValueError:
            pass
    torch_tpu.set_eager_mode(previous)
    return modes


def time_block(
    fn: Callable[[torch.Tensor, torch.Tensor], object], a: torch.Tensor, b: torch.Tensor, iters: int, sync: bool
) -> float:
    """Seconds per call over ``iters`` calls, including the wait for the device at the end."""
    start = time.perf_counter()
    for _ in range(iters):
        fn(a, b)
    if sync:
        torch_tpu.sync(wait=True)
    return (time.perf_counter() - start) / iters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per column (median reported)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per column before timing")
    parser.add_argument("--modes", default=",".join(available_modes()), help="tpu eager modes to measure")
    args = parser.parse_args(argv)

    modes = [m for m in args.modes.split(",") if m]
    columns = ["cpu"] + modes
    previous_mode = torch_tpu.get_eager_mode()

    torch.manual_seed(0)
    a_cpu, b_cpu = torch.randn(2, 3), torch.randn(2, 3)
    inputs = {"cpu": (a_cpu, b_cpu)}
    for m in modes:
        # fresh tensors per column, so in-place ops of one column do not feed another
        inputs[m] = (a_cpu.to("tpu"), b_cpu.to("tpu"))
    torch_tpu.sync()

    def run(col: str, fn: Callable[[torch.Tensor, torch.Tensor], object], iters: int) -> float:
        a, b = inputs[col]
        if col == "cpu":
            return time_block(fn, a, b, iters, sync=False)
        torch_tpu.set_eager_mode(col)
        try:
            return time_block(fn, a, b, iters, sync=True)
        finally:
            torch_tpu.set_eager_mode(previous_mode)

    samples: dict[tuple[str, str], list[float]] = {}
    for fn in OPS.values():
        for col in columns:
            run(col, fn, args.warmup)
            # keep in-place accumulation bounded
            for t in inputs[col]:
                t.copy_(torch.randn(2, 3).to(t.device))
    torch_tpu.sync()

    for r in range(args.repeats):
        for name, fn in OPS.items():
            order = columns[r % len(columns) :] + columns[: r % len(columns)]
            for col in order:
                samples.setdefault((name, col), []).append(run(col, fn, args.iters))
        for col in columns:
            for t in inputs[col]:
                t.copy_(torch.randn(2, 3).to(t.device))

    med = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    print(
        f"torch-tpu dispatch: 2x3 float32, {args.iters} calls per block, median of {args.repeats} blocks\n"
        f"platform {torch_tpu.platform()} ({torch.tpu.get_device_name(0)}), torch {torch.__version__}, "
        f"torch_tpu {torch_tpu.__version__}\n"
    )
    header = f"{'op':<16}{'cpu µs/op':>12}" + "".join(f"{m + ' µs/op':>16}{'x cpu':>8}" for m in modes)
    print(header)
    print("-" * len(header))
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    for name in OPS:
        cpu = med[(name, "cpu")]
        line = f"{name:<16}{cpu:>12.2f}"
        for m in modes:
            t = med[(name, m)]
            ratios[m].append(t / cpu)
            line += f"{t:>16.2f}{t / cpu:>7.1f}x"
        print(line)
    print("-" * len(header))
    geo = "".join(f"{'':>16}{math.exp(statistics.fmean(math.log(x) for x in ratios[m])):>7.1f}x" for m in modes)
    print(f"{'geomean':<16}{'':>12}{geo}")


if __name__ == "__main__":
    main()
