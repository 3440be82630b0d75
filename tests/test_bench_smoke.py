"""benches/dispatch.py runs (with a tiny iteration count) and prints its table; no timing is asserted."""

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
