"""benches/dispatch.py, the XLA half of benches/distributed.py and
benches/compile_buckets.py run (tiny iteration counts) and print their tables;
no timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dispatch_bench_runs() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "dispatch.py"), "--iters", "5", "--repeats", "2", "--warmup", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for word in ("add", "relu", "sum", "cpu µs/op", "strict", "debug", "geomean"):
        assert word in out, f"{word!r} missing from the benchmark output:\n{out}"


def test_distributed_bench_xla_part_runs() -> None:
    """The XLA-engine half of benches/distributed.py (the torchrun half runs in test_distributed.py's setting)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "distributed.py"), "--quick", "--only-xla"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    for word in ("xla GB/s", "'xla collectives'", "DDP step"):
        assert word in r.stdout, f"{word!r} missing from the benchmark output:\n{r.stdout}"


def test_compile_buckets_bench_runs() -> None:
    """benches/compile_buckets.py: both compiled rows, with their program counts
    (buckets: the first size seen, 11, and 1 are Dynamo's static graphs, then
    buckets 2, 4, 8 and 16)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "compile_buckets.py"), "--passes", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    rows = {line[:24].strip(): line[24:].split() for line in r.stdout.splitlines()}
    assert rows["compiled, buckets"][0] == "6", r.stdout
    assert rows["compiled, one per size"][0] == "16", r.stdout
    assert int(rows["buckets + precompile"][0]) <= 6, r.stdout
