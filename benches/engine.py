"""The workloads of the execution-engine issue, side by side with native torch CPU eager.

Columns: ``cpu`` (native torch eager), ``strict`` and ``fused`` (tpu eager modes),
``compiled`` (``torch.compile(backend="tpu")`` of the model, where it applies).
Ratios are tpu time / native time (< 1 is faster than native). Every block of
iterations ends by reading its last result on the host (a loss, an output), so
XLA cannot drop the work; blocks of all columns are interleaved and the median
over ``--repeats`` is reported.

Workloads:
  mlp-train  784-1024-1024-10, batch 128, SGD
  gpt-train  2 layers, d 256, 4 heads, seq 128, batch 8, vocab 256, AdamW
  cnn-train  conv/BN/ReLU/maxpool x2 + linear, 32x32, batch 16, SGD momentum
  mlp-fwd-b1 the MLP forward at batch 1, result read every call
  tiny-ops   ``x * a + b`` on 4 elements, read every 10 calls
and the compile time of one fused graph of 500 and of 2000 chained ops.

    python benches/engine.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion import GPT

import torch_tpu

TPU = "tpu"


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )  # fmt: skip


class Step:
    """One training step of a model on one device; returns the loss tensor (not read)."""

    def __init__(self, model: nn.Module, opt: str, x: torch.Tensor, y: torch.Tensor, compiled: bool) -> None:
        self.model = model
        self.forward = torch.compile(model, backend="tpu") if compiled else model
        params = model.parameters()
        if opt == "adamw":
            self.opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=1e-3)
        else:
            self.opt = torch.optim.SGD(params, lr=0.01, momentum=0.9 if opt == "momentum" else 0.0)
        self.x, self.y = x, y

    def __call__(self) -> torch.Tensor:
        self.opt.zero_grad()
        out = self.forward(self.x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), self.y.reshape(-1))
        loss.backward()
        self.opt.step()
        return loss.detach()


def train_columns(make: Callable[[], nn.Module], opt: str, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable]:
    torch.manual_seed(0)
    base = make()
    cols: dict[str, Callable] = {}
    for col in ("cpu", "strict", "fused", "compiled"):
        m = make()
        m.load_state_dict(base.state_dict())
        dev = "cpu" if col == "cpu" else TPU
        cols[col] = Step(m.to(dev), opt, x.to(dev), y.to(dev), compiled=col == "compiled")
    return cols


def run_block(col: str, fn: Callable[[], torch.Tensor], iters: int, read_every: int) -> float:
    mode = col if col in ("strict", "fused") else "fused"
    with torch_tpu.eager_mode(mode):
        t0 = time.perf_counter()
        r = None
        for i in range(iters):
            r = fn()
            if read_every and (i + 1) % read_every == 0:
                r.sum().item()
        r.sum().item()  # the last result is read: nothing is dead code
        return (time.perf_counter() - t0) / iters


def measure(fns: dict[str, Callable], iters: int, repeats: int, read_every: int = 0) -> dict[str, float]:
    for col, fn in fns.items():  # warm-up with the timed block's shape: compiles, caches, step detection
        run_block(col, fn, iters, read_every)
    times: dict[str, list[float]] = {c: [] for c in fns}
    cols = list(fns)
    for rep in range(repeats):
        for col in cols[rep % len(cols) :] + cols[: rep % len(cols)]:
            times[col].append(run_block(col, fns[col], iters, read_every))
    return {c: statistics.median(v) for c, v in times.items()}


def compile_time(n_ops: int) -> float:
    """Seconds to compile one fused graph of ``n_ops`` chained ops (disk cache off)."""
    torch_tpu.clear_executable_cache()
    saved = os.environ.get("TORCH_TPU_CACHE_DIR")
    os.environ["TORCH_TPU_CACHE_DIR"] = "0"  # a disk-cache hit would time nothing
    try:
        return _compile_time(n_ops)
    finally:
        if saved is None:
            del os.environ["TORCH_TPU_CACHE_DIR"]
        else:
            os.environ["TORCH_TPU_CACHE_DIR"] = saved


def _compile_time(n_ops: int) -> float:
    with torch_tpu.eager_mode("fused"):
        x = torch.randn(16, device=TPU)
        torch_tpu.sync()
        before = torch_tpu.metrics()["compile_time_s"]
        for i in range(n_ops):
            x = x * 1.0001 + (i % 7) * 1e-3 if i % 2 else torch.sin(x)
        x.sum().item()
        return torch_tpu.metrics()["compile_time_s"] - before


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small iteration counts (a smoke run)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    iters = 2 if args.quick else 10
    repeats = 1 if args.quick else args.repeats
    torch.manual_seed(0)
    info = torch_tpu.plugin_info()
    print(f"plugin: {info['plugin']} (PJRT API {info['pjrt_api_version']}), torch {torch.__version__}")
    rows: list[tuple[str, dict[str, float]]] = []

    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    rows.append(("mlp-train", measure(train_columns(mlp, "sgd", x, y), iters, repeats)))
    vocab, d, heads, layers, ctx, batch = 256, 256, 4, 2, 128, 8
    idx = torch.randint(0, vocab, (batch, ctx))
    tgt = torch.randint(0, vocab, (batch, ctx))
    rows.append(
        (
            "gpt-train",
            measure(train_columns(lambda: GPT(vocab, d, heads, layers, ctx), "adamw", idx, tgt), iters, repeats),
        )
    )
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    rows.append(("cnn-train", measure(train_columns(cnn, "momentum", x, y), iters, repeats)))

    torch.manual_seed(0)
    base = mlp().eval()
    fwd: dict[str, Callable] = {}
    for col in ("cpu", "strict", "fused", "compiled"):
        dev = "cpu" if col == "cpu" else TPU
        m = mlp().eval()
        m.load_state_dict(base.state_dict())
        m.to(dev)
        f = torch.compile(m, backend="tpu") if col == "compiled" else m
        inp = torch.randn(1, 784, device=dev)
        fwd[col] = lambda f=f, inp=inp: _no_grad(f, inp)
    rows.append(("mlp-fwd-b1", measure(fwd, iters * 10, repeats, read_every=1)))

    tiny: dict[str, Callable] = {}
    for col in ("cpu", "strict", "fused"):
        dev = "cpu" if col == "cpu" else TPU
        t = torch.randn(4, device=dev)
        tiny[col] = lambda t=t: t * 1.5 + 0.25
    rows.append(("tiny-ops", measure(tiny, iters * 100, repeats, read_every=10)))

    print(f"\n{'workload':<12} {'cpu ms':>9} {'strict':>9} {'fused':>9} {'compiled':>9}   (tpu / native; <1 = faster)")
    for name, t in rows:
        ratios = [f"{t[c] / t['cpu']:>8.2f}x" if c in t else f"{'-':>9}" for c in ("strict", "fused", "compiled")]
        print(f"{name:<12} {t['cpu'] * 1e3:>9.3f} {' '.join(ratios)}")
    gpt = dict(rows)["gpt-train"]
    print(
        f"\nGPT step: fused / strict speed-up {gpt['strict'] / gpt['fused']:.2f}x, "
        f"compiled / fused speed-up {gpt['fused'] / gpt['compiled']:.2f}x"
    )
    small, big = compile_time(125 if args.quick else 500), compile_time(500 if args.quick else 2000)
    print(f"compile of one fused graph: {small:.2f} s -> {big:.2f} s for 4x the ops ({big / small:.1f}x)")


def _no_grad(f: Callable, inp: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return f(inp)


if __name__ == "__main__":
    main()
