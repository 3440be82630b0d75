"""torch.distributed with backend "tpu_dist" under torchrun (2 processes on the CPU plugin).

The checks themselves live in ``dist_worker.py`` (collectives against hand-computed
values in fused and strict modes, DDP and FSDP2 against single-process full-batch
training, DTensor, a rank-divergent loop, batched point-to-point and a GPipe
pipeline, half-precision collectives, SyncBatchNorm against BatchNorm on the
whole batch, the debug-mode order and shape checks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import torch_tpu

WORKER = Path(__file__).with_name("dist_worker.py")
CHECKS = (
    "collectives fused", "collectives strict", "ddp", "fsdp2", "dtensor", "divergent", "p2p and half precision",
    "sync batch norm", "order check", "shape check",
)  # fmt: skip


@pytest.mark.parametrize("backend", ["tpu_dist", "cpu:gloo,tpu:tpu_dist"])
def test_torchrun_two_ranks(backend: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_TPU_EAGER")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), backend]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    for check in CHECKS:
        assert r.stdout.count(f"OK {check}") == 2, f"{check!r} did not pass on both ranks:\n{r.stdout}"


def test_streams_and_events() -> None:
    s = torch.tpu.Stream()
    assert s.device == torch.device("tpu", 0) and isinstance(s, torch.Stream)
    x = torch.randn(64, 64, device="tpu")
    start, end = torch.tpu.Event(enable_timing=True), torch.tpu.Event(enable_timing=True)
    with torch.tpu.stream(s):
        start.record(s)
        y = x @ x
        end.record(s)
    end.synchronize()
    assert end.query() and s.query()
    assert start.elapsed_time(end) >= 0.0
    s.wait_stream(torch.tpu.current_stream())
    torch.tpu.current_stream().wait_event(s.record_event())
    torch.testing.assert_close(y.cpu(), x.cpu() @ x.cpu(), atol=1e-4, rtol=1e-4)
    assert torch.tpu.current_stream() == torch.tpu.default_stream()
    with pytest.raises(RuntimeError, match="enable_timing"):
        torch.tpu.Event().elapsed_time(torch.tpu.Event())
    assert torch_tpu.distributed.engine_stats()["engine"] == "host-staged gloo"


def test_torch_accelerator_synchronize_and_timing_events_wait_for_the_device() -> None:
    if torch.accelerator.current_accelerator().type != "tpu":
        pytest.skip("another accelerator is torch's current one")
    x = torch.randn(64, device="tpu")
    torch.tpu.synchronize()
    with torch_tpu.eager_mode("fused"):
        torch_tpu.reset_metrics()
        y = x * 2 + 1  # pending in the fused graph
        assert torch_tpu.metrics()["executions"] == 0
        torch.accelerator.synchronize()  # was a no-op: nothing ran
        m = torch_tpu.metrics()
        assert m["executions"] == 1 and m["cut_reasons"].get("sync") == 1, m
        torch_tpu.reset_metrics()
        y = y * 3
        torch.Stream(device="tpu").synchronize()
        assert torch_tpu.metrics()["executions"] == 1
    start, end = torch.Event(enable_timing=True), torch.Event(enable_timing=True)
    start.record()
    time.sleep(0.05)
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) >= 50.0
    torch.testing.assert_close(y.cpu(), (x.cpu() * 2 + 1) * 3)
