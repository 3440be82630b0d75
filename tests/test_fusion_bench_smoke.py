"""benches/fusion.py --quick runs and prints its tables; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_fusion_bench_runs() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "fusion.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-4000:]}"
    out = r.stdout
    for word in (
        "elementwise",
        "MLP training step",
        "GPT training step",
        "fused/strict",
        "compiles after warm-up",
        "sync(wait=False)",
        "cold disk cache",
        "warm disk cache",
    ):
        assert word in out, f"{word!r} missing from the benchmark output:\n{out}"
