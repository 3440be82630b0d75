"""torch.compile over varying sequence lengths: masked buckets against one program per length.

Two workloads on a tiny GPT-2 built from a config (2 layers, d 64, vocab 128):

- ``forward``: the compiled model fed batch 2 at sequence lengths 2..32 in a
  shuffled order (logits read to the host, checked against CPU);
- ``generate``: greedy ``generate()`` of 40 tokens with the dynamic KV cache,
  eager fused against ``model.forward = torch.compile(model.forward)``
  (tokens checked against CPU).

Each tpu configuration runs in a process of its own with the disk cache off
(``TORCH_TPU_CACHE_DIR=0``), so every program it needs is compiled and
counted. Prints programs compiled and seconds, with the ratio to native CPU.

    python benches/compile_sequence.py [--lengths N] [--tokens N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import torch


def _model(device: str) -> torch.nn.Module:
    import transformers

    config = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=128, n_positions=256, bos_token_id=1, eos_token_id=2
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval().to(device)


def _lengths(n: int) -> list[int]:
    lengths = list(range(2, 2 + n))
    random.Random(0).shuffle(lengths)
    return lengths


def _forward(device: str, compiled: bool, n: int) -> tuple[float, float]:
    """Seconds for one pass over the lengths, and a checksum of the logits."""
    model = _model(device)
    fn = torch.compile(model, backend="tpu") if compiled else model
    total, t0 = 0.0, time.perf_counter()
    with torch.no_grad():
        for length in _lengths(n):
            ids = torch.randint(0, 128, (2, length), generator=torch.Generator().manual_seed(length))
            total += float(fn(ids.to(device)).logits.cpu().double().sum())
    return time.perf_counter() - t0, total


def _generate(device: str, compiled: bool, tokens: int) -> tuple[float, list[int]]:
    model = _model(device)
    if compiled:
        model.forward = torch.compile(model.forward, backend="tpu")
    ids = torch.randint(3, 128, (2, 7), generator=torch.Generator().manual_seed(1))
    kw = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": 0}
    t0 = time.perf_counter()
    out = model.generate(ids.to(device), attention_mask=torch.ones_like(ids).to(device), **kw)
    return time.perf_counter() - t0, out.cpu().flatten().tolist()


def _child(workload: str, config: str, args: argparse.Namespace) -> None:
    """One tpu configuration in this process; prints a JSON line."""
    os.environ["TORCH_TPU_CACHE_DIR"] = "0"
    os.environ["TORCH_TPU_SHAPE_BUCKETS"] = "0" if config == "compiled, one per length" else "1"
    import torch_tpu

    compiled = config != "eager fused"
    before = torch_tpu.metrics()["compiles"]
    if workload == "forward":
        seconds, result = _forward("tpu", compiled, args.lengths)
    else:
        seconds, result = _generate("tpu", compiled, args.tokens)  # type: ignore[assignment]
    print(json.dumps({"programs": torch_tpu.metrics()["compiles"] - before, "seconds": seconds, "result": result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, default=31, help="sequence lengths 2..N+1 (forward)")
    parser.add_argument("--tokens", type=int, default=40, help="new tokens (generate)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child, args)
        return
    configs = {
        "forward": ["compiled, buckets", "compiled, one per length"],
        "generate": ["compiled, buckets", "compiled, one per length", "eager fused"],
    }
    print(f"{'workload':10}{'configuration':28}{'programs':>9}{'seconds':>9}{'x native':>10}")
    for workload, names in configs.items():
        native, want = (
            _forward("cpu", False, args.lengths) if workload == "forward" else _generate("cpu", False, args.tokens)
        )
        print(f"{workload:10}{'native torch (cpu)':28}{'-':>9}{native:9.2f}{1.0:10.2f}")
        for name in names:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                workload,
                name,
                "--lengths",
                str(args.lengths),
                "--tokens",
                str(args.tokens),
            ]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row = json.loads(line)
            if workload == "forward":
                assert abs(row["result"] - want) <= 1e-3 * max(1.0, abs(want)), (name, row["result"], want)  # type: ignore[operator]
            else:
                assert row["result"] == want, (name, "tokens differ from CPU's")
            ratio = row["seconds"] / native
            print(f"{workload:10}{name:28}{row['programs']:9d}{row['seconds']:9.2f}{ratio:10.2f}")


if __name__ == "__main__":
    main()
