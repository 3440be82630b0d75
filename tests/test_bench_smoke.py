"""benches/dispatch.py, the XLA half of benches/distributed.py and
benches/compile_buckets.py run (tiny iteration counts) and print their tables;
no timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench(script: str, *args: str) -> str:
    """The benchmark's stdout, after checking it exited cleanly."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


def test_dispatch_bench_runs() -> None:
    out = _bench("dispatch.py", "--iters", "5", "--repeats", "2", "--warmup", "2")
    for word in ("add", "relu", "sum", "cpu µs/op", "strict", "debug", "geomean"):
        assert word in out, f"{word!r} missing from the benchmark output:\n{out}"


def test_distributed_bench_xla_part_runs() -> None:
    """The XLA-engine half of benches/distributed.py (the torchrun half runs in test_distributed.py's setting)."""
    out = _bench("distributed.py", "--quick", "--only-xla")
    for word in ("xla GB/s", "'xla collectives'", "DDP step"):
        assert word in out, f"{word!r} missing from the benchmark output:\n{out}"


def test_compile_buckets_bench_runs() -> None:
    """benches/compile_buckets.py: the compiled rows, with their program counts
    (buckets: the first size seen, 11, and 1 are Dynamo's static graphs, then
    buckets 2, 4, 8 and 16)."""
    out = _bench("compile_buckets.py", "--passes", "1")
    rows = {line[:24].strip(): line[24:].split() for line in out.splitlines()}
    assert rows["compiled, buckets"][0] == "6", out
    assert rows["compiled, one per size"][0] == "16", out
    assert int(rows["buckets + precompile"][0]) <= 6, out
