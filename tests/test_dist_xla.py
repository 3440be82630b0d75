"""The XLA collectives engine over two CPU-plugin devices of one process.

``TORCH_TPU_CPU_DEVICE_COUNT`` is read when the runtime loads, so the checks
run in a subprocess (``dist_xla_worker.py``): every XLA collective against
values computed on CPU for several dtypes through the SPMD API
(``torch_tpu.distributed.xla``) and through the c10d backend with thread
ranks (``spawn_threads``, fused and strict modes), strided views, errors
naming the collective, a DDP step equal to single-process training, and
``engine_stats`` naming the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch_tpu

WORKER = Path(__file__).with_name("dist_xla_worker.py")
CHECKS = ("spmd collectives", "views and errors", "thread ranks fused", "thread ranks strict", "ddp", "mismatch")
SUBGROUP = """
import torch, torch.distributed as dist, torch_tpu
from torch_tpu.distributed import spawn_threads

def rank(r):
    g = dist.new_group([0, 2])
    t = torch.full((2,), float(r + 1), device=f"tpu:{r}")
    if r in (0, 2):
        dist.all_reduce(t, group=g)  # 1 + 3 on ranks 0 and 2
    dist.all_reduce(t)  # 4 + 2 + 4
    return t.cpu().tolist()

print(spawn_threads(rank, 3))
"""


def test_xla_engine_over_two_cpu_devices() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_TPU_EAGER")}
    env["TORCH_TPU_CPU_DEVICE_COUNT"] = "2"
    r = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    for check in CHECKS:
        assert f"OK {check}" in r.stdout, f"{check!r} did not pass:\n{r.stdout}"
    assert "'engine': 'xla collectives'" in r.stdout, r.stdout


def test_thread_ranks_subgroup_over_three_devices() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_TPU_EAGER")}
    env["TORCH_TPU_CPU_DEVICE_COUNT"] = "3"
    cmd = [sys.executable, "-c", SUBGROUP]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip().splitlines()[-1] == str([[10.0, 10.0]] * 3), r.stdout


def test_spmd_api_refuses_a_single_device_list_clearly() -> None:
    # One device in this process (no TORCH_TPU_CPU_DEVICE_COUNT): the same device twice is refused.
    import torch

    if torch.tpu.device_count() > 1:
        pytest.skip("needs a one-device process")
    x = torch.ones(2, device="tpu")
    with pytest.raises(RuntimeError, match=r"all_reduce \(xla collectives\).*given twice"):
        torch_tpu.distributed.xla.all_reduce([x, x.clone()])
    assert x.cpu().tolist() == [1.0, 1.0]
    # Refused before it ran: this process has run no collective on the XLA engine.
    assert torch_tpu.distributed.engine_stats()["engines"]["xla collectives"]["collectives"] == 0


def test_a_c10d_store_backs_the_pjrt_key_value_callbacks() -> None:
    """The adapter the plugin's kv_get/kv_try_get/kv_put callbacks go through (the CPU
    plugin never calls them; ``cargo test -p pjrt`` calls the C callbacks as a plugin would)."""
    import torch.distributed as dist

    tried, got, missing = torch_tpu._core.kv_store_roundtrip(dist.HashStore(), "nccl/0", b"\x00id")
    assert (tried, got, missing) == (b"\x00id", b"\x00id", True)
    with pytest.raises(RuntimeError, match="before the platform starts"):
        torch_tpu._core.set_kv_store(dist.HashStore(), 0, 1)


def test_torchrun_store_for_pjrt_at_import() -> None:
    """``TORCH_TPU_PJRT_KV_STORE=torchrun`` creates the client with torchrun's Store behind
    the callbacks (and node_id/num_nodes), which the CPU plugin accepts and ignores."""
    from datetime import timedelta

    import torch.distributed as dist

    master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_TPU_EAGER")}
    env.update(
        TORCH_TPU_PJRT_KV_STORE="torchrun",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(master.port),
        RANK="0",
        WORLD_SIZE="1",
    )
    code = "import torch, torch_tpu; print((torch.ones(3, device='tpu') * 2).sum().item())"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "6.0", r.stdout + r.stderr[-3000:]
    env["TORCH_TPU_PJRT_KV_STORE"] = "etcd"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode != 0 and "TORCH_TPU_PJRT_KV_STORE" in r.stderr, r.stderr[-3000:]
