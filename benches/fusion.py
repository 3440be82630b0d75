"""Fused vs strict eager mode on tpu, with torch CPU eager as the reference.

Workloads:
  (a) a chain of elementwise ops on a large float32 tensor (Google's TorchTPU
      reports 2.3x fused over strict for 150 ops on 5000x5000 bf16): a cycle of
      10 ops (add, mul, sin, exp, cos, tanh, sigmoid, abs), (a') the same ops in
      a shuffled order, (a'') cheap ops only (memory-bound; the transcendental
      mix is compute-bound on the CPU plugin, where fusion saves little);
  (b) an MLP training step (SGD with momentum, batch 256);
  (c) a small GPT-style training step (embedding, causal self-attention + MLP
      blocks with layer_norm and gelu, cross_entropy, AdamW).
Each timed block runs ``--iters`` calls and then waits for the device; blocks of
all columns are interleaved (the order rotates each repeat) after a warm-up, and
the median over ``--repeats`` blocks is reported, so every column is measured
side by side under the same machine conditions. The training loops read nothing
on the host inside a block (fused mode finds the step boundaries itself).

Also reported: graphs run per call and compiles after step 3 in fused mode, how
long ``torch_tpu.sync(wait=False)`` takes to return compared with the graph's
run time (asynchrony), and the first training step of a fresh process with a
cold and a warm disk cache (``TORCH_TPU_CACHE_DIR``).

    python benches/fusion.py [--quick] [--repeats 5] [--iters N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import torch_tpu

COLUMNS = ("cpu", "strict", "fused")


# --- workloads -----------------------------------------------------------------------------

# A mix of elementwise ops that keeps values bounded over any number of steps.
CHAIN_OPS: list[Callable[[torch.Tensor], torch.Tensor]] = [
    lambda x: x + 0.1,
    lambda x: x * 0.9,
    torch.sin,
    torch.exp,
    lambda x: x * 0.5,
    torch.cos,
    torch.tanh,
    torch.sigmoid,
    lambda x: x - 0.2,
    torch.abs,
]


def chain(x: torch.Tensor, n: int, order: list[int] | None = None) -> torch.Tensor:
    """``n`` ops cycling through CHAIN_OPS (or taking them in ``order``)."""
    for i in range(n):
        x = CHAIN_OPS[order[i] if order else i % len(CHAIN_OPS)](x)
    return x


# Cheap ops only: the chain is memory-bound on every backend.
CHEAP_OPS: list[Callable[[torch.Tensor], torch.Tensor]] = [
    lambda x: x + 0.1,
    lambda x: x * 0.9,
    lambda x: x - 0.05,
    torch.abs,
    lambda x: x.clamp_max(2.0),
    torch.neg,
    lambda x: x * 1.1,
]


def cheap_chain(x: torch.Tensor, order: list[int]) -> torch.Tensor:
    for i in order:
        x = CHEAP_OPS[i](x)
    return x


def shuffled_order(n: int) -> list[int]:
    """The same multiset of ops as the cycle, in a fixed pseudo-random order (no repeating period)."""
    idx = [i % len(CHAIN_OPS) for i in range(n)]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    return [idx[p] for p in perm]


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, classes: int, layers: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            mods += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*mods, nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        attn = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, layers: int, ctx: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(ctx, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


class Trainer:
    """One model and optimizer per column; ``step()`` runs one training step without host reads."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.opt, self.x, self.y = model, opt, x, y
        self.loss: torch.Tensor | None = None

    def step(self) -> None:
        self.opt.zero_grad()
        out = self.model(self.x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), self.y.reshape(-1))
        loss.backward()
        self.opt.step()
        self.loss = loss.detach()


def make_mlp(device: str, quick: bool) -> Trainer:
    torch.manual_seed(0)
    d_in, hidden, layers, batch = (64, 128, 2, 64) if quick else (784, 1024, 3, 256)
    model = MLP(d_in, hidden, 10, layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, d_in, generator=g), torch.randint(0, 10, (batch,), generator=g)
    return Trainer(model, opt, x.to(device), y.to(device))


GPT_CFG = {"quick": (64, 32, 2, 2, 16, 4), "full": (256, 128, 4, 2, 64, 16)}  # vocab, d, heads, layers, ctx, batch


def make_gpt(device: str, quick: bool) -> Trainer:
    torch.manual_seed(0)
    vocab, d, heads, layers, ctx, batch = GPT_CFG["quick" if quick else "full"]
    model = GPT(vocab, d, heads, layers, ctx).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, vocab, (batch, ctx + 1), generator=g)
    return Trainer(model, opt, seq[:, :-1].to(device), seq[:, 1:].to(device))


# --- timing ----------------------------------------------------------------------------------


def run_block(column: str, fn: Callable[[], object], iters: int) -> float:
    """Seconds per call of ``fn`` over ``iters`` calls in ``column``, waiting for the device at the end."""
    mode = "fused" if column == "cpu" else column
    with torch_tpu.eager_mode(mode):
        torch_tpu.sync()
        start = time.perf_counter()
        results = [fn() for _ in range(iters)]  # kept alive: dead results would never be computed
        if column != "cpu":
            torch_tpu.sync(wait=True)
        elapsed = time.perf_counter() - start
        del results
        return elapsed / iters


def measure(name: str, fns: dict[str, Callable[[], object]], iters: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call per column; also graphs per call and compiles after warm-up in fused mode.
    ``warmup`` untimed blocks of the same length run first in each column."""
    for _ in range(warmup):
        for column, fn in fns.items():
            run_block(column, fn, iters)
    times: dict[str, list[float]] = {c: [] for c in fns}
    fused_stats = {"executions": 0, "compiles": 0, "calls": 0}
    cols = list(fns)
    for r in range(repeats):
        order = cols[r % len(cols) :] + cols[: r % len(cols)]
        for column in order:
            before = torch_tpu.metrics()
            times[column].append(run_block(column, fns[column], iters))
            after = torch_tpu.metrics()
            if column == "fused":
                fused_stats["executions"] += after["executions"] - before["executions"]
                fused_stats["compiles"] += after["compiles"] - before["compiles"]
                fused_stats["calls"] += iters
    med = {c: statistics.median(v) for c, v in times.items()}
    med["fused graphs/call"] = fused_stats["executions"] / max(fused_stats["calls"], 1)
    med["fused compiles after warm-up"] = fused_stats["compiles"]
    return med


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:9.2f}"


# --- asynchrony ----------------------------------------------------------------------------------


def asynchrony(x: torch.Tensor, n: int, repeats: int) -> tuple[float, float]:
    """(time for sync(wait=False) to return, time until the result is ready), medians, fused mode."""
    launch, total = [], []
    with torch_tpu.eager_mode("fused"):
        for _ in range(repeats + 1):
            torch_tpu.sync()
            y = chain(x, n)
            t0 = time.perf_counter()
            torch_tpu.sync(wait=False)
            t1 = time.perf_counter()
            torch_tpu.sync(wait=True)
            t2 = time.perf_counter()
            launch.append(t1 - t0)
            total.append(t2 - t0)
            del y
    return statistics.median(launch[1:]), statistics.median(total[1:])


# --- cold vs warm disk cache ----------------------------------------------------------------------

FIRST_STEP = """
import json, sys, time
sys.path.insert(0, {bench_dir!r})
t_import = time.perf_counter()
import torch, torch_tpu
import fusion
torch_tpu.set_eager_mode("fused")
tr = fusion.make_gpt("tpu", {quick!r})
torch_tpu.sync()
t0 = time.perf_counter()
tr.step()
loss = tr.loss.item()
t1 = time.perf_counter()
m = torch_tpu.metrics()
print("RESULT " + json.dumps({{"first_step_s": t1 - t0, "loss": loss, "compiles": m["compiles"],
      "compile_time_s": m["compile_time_s"], "cache_hits_disk": m["cache_hits_disk"]}}))
"""


def first_step(cache_dir: str, quick: bool) -> dict:
    code = FIRST_STEP.format(bench_dir=str(Path(__file__).resolve().parent), quick=quick)
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_TPU_EAGER_MODE", "TPU_LAUNCH_BLOCKING")}
    env["TORCH_TPU_CACHE_DIR"] = cache_dir
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900, check=False)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"first-step script failed:\n{r.stdout}\n{r.stderr[-3000:]}")


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks per column (median reported)")
    parser.add_argument("--size", type=int, default=None, help="side of the square tensor for (a)")
    parser.add_argument("--chain", type=int, default=150, help="elementwise ops in (a)")
    parser.add_argument("--iters", type=int, default=None, help="training steps per timed block")
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=1,
        help="torch CPU threads for the cpu column (0: torch's default; "
        "its OpenMP pool degrades badly on a busy small machine)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (2 if quick else 5)
    size = args.size or (256 if quick else 2000)
    n_chain = 30 if quick else args.chain
    iters_chain = 2 if quick else 3
    iters_train = args.iters or (6 if quick else 10)
    warmup = 1 if quick else 2
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)

    print(
        f"torch {torch.__version__}, torch_tpu {torch_tpu.__version__}, platform {torch_tpu.platform()}, "
        f"device {torch.tpu.get_device_name(0)}, {os.cpu_count()} host cores, "
        f"torch CPU threads {torch.get_num_threads()}"
    )
    print(
        f"repeats {repeats} (median) after {warmup} warm-up block(s) per column; blocks of {iters_chain} chains /"
        f" {iters_train} training steps; times in ms per call\n"
    )

    results: dict[str, dict[str, float]] = {}

    # (a) elementwise chain
    torch.manual_seed(0)
    x_cpu = torch.randn(size, size)
    x_tpu = x_cpu.to("tpu")
    a_name = f"(a) {n_chain} elementwise ops, {size}x{size} f32"
    results[a_name] = measure(
        a_name,
        {
            "cpu": lambda: chain(x_cpu, n_chain),
            "strict": lambda: chain(x_tpu, n_chain),
            "fused": lambda: chain(x_tpu, n_chain),
        },
        iters_chain,
        warmup,
        repeats,
    )
    order = shuffled_order(n_chain)
    a2_name = "(a') the same ops in shuffled order (no repeating period)"
    results[a2_name] = measure(
        a2_name,
        {
            "cpu": lambda: chain(x_cpu, n_chain, order),
            "strict": lambda: chain(x_tpu, n_chain, order),
            "fused": lambda: chain(x_tpu, n_chain, order),
        },
        iters_chain,
        warmup,
        repeats,
    )
    cheap = [i % len(CHEAP_OPS) for i in shuffled_order(n_chain)]
    a3_name = f"(a'') {n_chain} cheap ops (add/mul/abs/clamp/neg), shuffled"
    results[a3_name] = measure(
        a3_name,
        {
            "cpu": lambda: cheap_chain(x_cpu, cheap),
            "strict": lambda: cheap_chain(x_tpu, cheap),
            "fused": lambda: cheap_chain(x_tpu, cheap),
        },
        iters_chain,
        warmup,
        repeats,
    )
    with torch_tpu.eager_mode("fused"):
        torch.testing.assert_close(cheap_chain(x_tpu, cheap).cpu(), cheap_chain(x_cpu, cheap), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(chain(x_tpu, n_chain).cpu(), chain(x_cpu, n_chain), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            chain(x_tpu, n_chain, order).cpu(), chain(x_cpu, n_chain, order), rtol=1e-4, atol=1e-4
        )

    # (b) MLP step, (c) GPT step
    # Each at full size (compute-bound on the CPU plugin) and small (dispatch-bound,
    # where per-op overhead dominates, as on a fast accelerator).
    steps = [
        ("(b) MLP training step (SGD)", make_mlp, quick),
        ("(c) GPT training step (AdamW)", make_gpt, quick),
        ("(b-small) MLP training step (SGD)", make_mlp, True),
        ("(c-small) GPT training step (AdamW)", make_gpt, True),
    ]
    if quick:
        steps = steps[:2]
    for label, make, small in steps:
        trainers = {"cpu": make("cpu", small)}
        for mode in ("strict", "fused"):
            with torch_tpu.eager_mode(mode):
                trainers[mode] = make("tpu", small)
        desc = label
        if make is make_mlp:
            t = trainers["cpu"]
            desc += f", batch {t.x.shape[0]}, {sum(p.numel() for p in t.model.parameters()) / 1e6:.2f}M params"
        else:
            vocab, d, _heads, layers, ctx, batch = GPT_CFG["quick" if small else "full"]
            desc += f", {layers} blocks d={d} ctx={ctx} batch={batch} vocab={vocab}"
        results[desc] = measure(desc, {c: trainers[c].step for c in COLUMNS}, iters_train, warmup, repeats)
        with torch_tpu.eager_mode("fused"):
            losses = {c: float(trainers[c].loss.cpu()) for c in COLUMNS}
        print(f"{desc}: last losses " + ", ".join(f"{c} {v:.4f}" for c, v in losses.items()))

    print()
    header = (
        f"{'workload':<72} {'cpu':>9} {'strict':>9} {'fused':>9} {'fused/strict':>13} {'fused/cpu':>10}"
        f" {'graphs/call':>12} {'compiles after warm-up':>23}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<72} {fmt_ms(r['cpu'])} {fmt_ms(r['strict'])} {fmt_ms(r['fused'])}"
            f" {r['strict'] / r['fused']:12.2f}x {r['cpu'] / r['fused']:9.2f}x"
            f" {r['fused graphs/call']:12.2f} {r['fused compiles after warm-up']:23d}"
        )
    print("(fused/strict and fused/cpu: speed-up of fused; >1 means fused is faster)\n")

    launch, total = asynchrony(x_tpu, n_chain, repeats)
    print(
        f"asynchrony: sync(wait=False) returns after {launch * 1e3:.2f} ms;"
        f" the graph is done after {total * 1e3:.2f} ms\n"
    )

    with tempfile.TemporaryDirectory(prefix="torch_tpu_cache_") as cache:
        cold = first_step(cache, quick)
        warm = first_step(cache, quick)
    print(f"first GPT training step of a fresh process (fused, {'quick' if quick else 'full'} config):")
    print(
        f"  cold disk cache: {cold['first_step_s'] * 1e3:9.1f} ms"
        f"  ({cold['compiles']} compiles, {cold['compile_time_s']:.2f} s compiling)"
    )
    print(
        f"  warm disk cache: {warm['first_step_s'] * 1e3:9.1f} ms"
        f"  ({warm['compiles']} compiles, {warm['cache_hits_disk']} disk hits)"
    )
    print(
        f"  cold / warm: {cold['first_step_s'] / warm['first_step_s']:.1f}x (target >= 5x);"
        f" same loss: {cold['loss'] == warm['loss']}"
    )


if __name__ == "__main__":
    main()
