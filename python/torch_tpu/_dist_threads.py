"""Thread ranks on the XLA engine: the c10d collectives of one rank of a
"tpu_dist" group whose ranks are threads of this process, each on its own
tpu device (:class:`ThreadRankEngine`), and :func:`spawn_threads`, which
starts such ranks.

Every collective meets the other ranks in the group's process-local
rendezvous (``_dist_xla.Rendezvous``); the last rank to arrive runs one
replicated XLA program over all the ranks' devices. The five XLA
collectives serve the rest: broadcast and gather are an all-gather, reduce
an all-reduce, scatter an all-to-all, send/recv a collective permute between
two ranks, barrier an all-reduce of one element; uneven all-to-all splits
are padded to the largest split.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from torch_tpu import _core
from torch_tpu import _dist_xla as xla

__all__ = ["ThreadRankEngine", "in_process_engine", "spawn_threads"]


def in_process_engine(store: dist.Store, rank: int, size: int, timeout: timedelta) -> ThreadRankEngine | None:
    """The XLA engine for this rank when every rank of the group is a thread of this
    process on its own tpu device (found through the Store), else None (host-staged gloo)."""
    choice = os.environ.get("TORCH_TPU_DIST_ENGINE", "auto") or "auto"
    if choice not in ("auto", "gloo"):
        raise ValueError(f"TORCH_TPU_DIST_ENGINE={choice!r}: expected 'auto' or 'gloo'")
    if size < 2 or choice == "gloo":
        return None
    device = _core.current_device()
    store.set(f"tpu_dist_engine/{rank}", f"{socket.gethostname()}:{os.getpid()}:{device}")
    if rank == 0:
        store.set("tpu_dist_engine/token", uuid.uuid4().hex)
    peers = [store.get(f"tpu_dist_engine/{r}").decode().rsplit(":", 1) for r in range(size)]
    if len({p[0] for p in peers}) != 1 or len({p[1] for p in peers}) != size:
        return None
    token = store.get("tpu_dist_engine/token").decode()
    return ThreadRankEngine(xla.rendezvous(token, size, timeout.total_seconds()), rank, size, device)


def _describe(name: str, tensors: Sequence[torch.Tensor]) -> str:
    parts = [str(t.dtype).removeprefix("torch.") + str(list(t.shape)) for t in tensors]
    return f"{name}({', '.join(parts)})"


class ThreadRankEngine:
    """One thread rank's side of the XLA engine (see the module docstring)."""

    def __init__(self, rv: xla.Rendezvous, rank: int, size: int, device: int) -> None:
        self.rv, self.rank, self.size, self.device = rv, rank, size, device
        self._seq = 0
        self._p2p: dict[tuple[int, int, int], int] = {}

    def _meet(self, signature: str, payload: Any, execute: Callable[[list[Any]], None]) -> None:
        self._seq += 1
        self.rv.meet(self._seq, self.rank, signature, payload, execute)

    # --- the five XLA collectives, per rank -------------------------------------------

    def all_reduce(self, tensors: Sequence[torch.Tensor], op: str) -> None:
        def execute(payloads: list[Sequence[torch.Tensor]]) -> None:
            for i in range(len(tensors)):
                xla.run("all_reduce", [p[i] for p in payloads], [p[i] for p in payloads], op)

        self._meet(_describe(f"all_reduce[{op}]", tensors), tensors, execute)

    def all_gather_into(self, outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> None:
        """``outputs[i]`` (``size`` times ``inputs[i]``'s elements) gets every rank's ``inputs[i]``."""

        def execute(payloads: list[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]]) -> None:
            for i in range(len(inputs)):
                xla.run("all_gather", [p[0][i] for p in payloads], [p[1][i] for p in payloads])

        self._meet(_describe("all_gather", inputs), (inputs, outputs), execute)

    def reduce_scatter_into(self, outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], op: str) -> None:
        def execute(payloads: list[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]]) -> None:
            for i in range(len(inputs)):
                xla.run("reduce_scatter", [p[0][i] for p in payloads], [p[1][i] for p in payloads], op)

        self._meet(_describe(f"reduce_scatter[{op}]", inputs), (inputs, outputs), execute)

    def all_to_all(
        self, output: torch.Tensor, input: torch.Tensor, out_splits: Sequence[int], in_splits: Sequence[int]
    ) -> None:
        """``all_to_all_single`` along dim 0; empty split lists mean equal blocks."""
        n = self.size
        in_splits = list(in_splits) or [input.shape[0] // n] * n
        out_splits = list(out_splits) or [output.shape[0] // n] * n

        def execute(payloads: list[tuple[torch.Tensor, torch.Tensor, list[int], list[int]]]) -> None:
            even = all(len(set(p[2] + p[3])) == 1 and p[2][0] * n == p[0].shape[0] for p in payloads)
            if even:
                xla.run("all_to_all", [p[0] for p in payloads], [p[1] for p in payloads])
                return
            # Uneven: every block padded to the largest, exchanged, then cut back out.
            block = max(max(p[2] + p[3]) for p in payloads)
            padded_in, padded_out = [], []
            for x, _, _, splits in payloads:
                buf = x.new_zeros((n * block, *x.shape[1:]))
                for j, part in enumerate(torch.split(x, splits)):
                    buf[j * block : j * block + part.shape[0]].copy_(part)
                padded_in.append(buf)
                padded_out.append(torch.empty_like(buf))
            xla.run("all_to_all", padded_in, padded_out)
            for (_, y, splits, _), buf in zip(payloads, padded_out):
                for j, part in enumerate(torch.split(y, splits)):
                    part.copy_(buf[j * block : j * block + part.shape[0]])

        # Splits, hence shapes, may differ across ranks: the signature names the dtype only.
        sig = f"all_to_all({str(input.dtype).removeprefix('torch.')})"
        self._meet(sig, (input, output, out_splits, in_splits), execute)

    def _p2p_meet(self, src: int, dst: int, tag: int, tensors: Sequence[torch.Tensor]) -> None:
        key = (src, dst, tag)
        self._p2p[key] = self._p2p.get(key, 0) + 1

        def execute(payloads: list[Sequence[torch.Tensor]]) -> None:
            for sent, received in zip(*payloads):
                scratch = torch.empty_like(sent)
                xla.run("collective_permute", [sent, received], [scratch, received], pairs=[(0, 1)])

        sig = _describe(f"send/recv {src}->{dst} tag {tag}", tensors)
        self.rv.meet(("p2p", *key, self._p2p[key]), self.rank, sig, tensors, execute, ranks=[src, dst])

    def send(self, tensors: Sequence[torch.Tensor], dst: int, tag: int) -> None:
        self._p2p_meet(self.rank, dst, tag, tensors)

    def recv(self, tensors: Sequence[torch.Tensor], src: int, tag: int) -> None:
        self._p2p_meet(src, self.rank, tag, tensors)

    # --- the rest, built on them ------------------------------------------------------

    def gathered(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t``, stacked along a new dim 0."""
        out = t.new_empty((self.size, *t.shape))
        self.all_gather_into([out], [t])
        return out

    def broadcast(self, tensors: Sequence[torch.Tensor], root: int) -> None:
        for t in tensors:
            g = self.gathered(t)
            if self.rank != root:
                with torch.no_grad():
                    t.copy_(g[root])

    def reduce(self, tensors: Sequence[torch.Tensor], root: int, op: str) -> None:
        scratch = [t.clone() for t in tensors]
        self.all_reduce(scratch, op)
        if self.rank == root:
            with torch.no_grad():
                for t, s in zip(tensors, scratch):
                    t.copy_(s)

    def gather(self, outputs: Sequence[torch.Tensor], t: torch.Tensor, root: int) -> None:
        g = self.gathered(t)
        if self.rank == root:
            with torch.no_grad():
                for r, o in enumerate(outputs):
                    o.copy_(g[r])

    def scatter(self, output: torch.Tensor, inputs: Sequence[torch.Tensor], root: int) -> None:
        # Rank j's block i of an all-to-all is rank i's block j: the root's block j is rank j's part.
        if self.rank == root:
            src = torch.stack([x.to(output.device) for x in inputs])
        else:
            src = output.new_zeros((self.size, *output.shape))
        dst = torch.empty_like(src)
        self.all_to_all(dst, src, [], [])
        with torch.no_grad():
            output.copy_(dst[root])

    def barrier(self) -> None:
        self.all_reduce([torch.zeros(1, device=f"tpu:{self.device}")], "sum")


def spawn_threads(
    fn: Callable[..., Any], nprocs: int, args: Sequence[Any] = (), backend: str = "tpu_dist"
) -> list[Any]:
    """Runs ``fn(rank, *args)`` in ``nprocs`` threads of this process, each a rank of a
    ``backend`` process group with its own tpu device (``tpu:rank``), and returns their
    results by rank; the first rank's error is raised. The group's collectives on tpu
    tensors run on the XLA engine (one replicated program over the ranks' devices).

    Needs ``nprocs`` devices (``TORCH_TPU_CPU_DEVICE_COUNT`` on the CPU plugin).
    Like torch's own threaded process groups, it makes c10d's world thread-local
    (``torch.testing._internal.distributed.multi_threaded_pg``) while the ranks run,
    and runs autograd on the calling thread (device threads would serve all ranks).
    """
    from torch.testing._internal.distributed import multi_threaded_pg as mtpg

    if torch.tpu.device_count() < nprocs:
        raise RuntimeError(
            f"spawn_threads: {nprocs} ranks need {nprocs} tpu devices, there are {torch.tpu.device_count()} "
            "(on the CPU plugin set TORCH_TPU_CPU_DEVICE_COUNT before importing torch_tpu)"
        )
    store = dist.HashStore()
    results: list[Any] = [None] * nprocs
    errors: list[BaseException | None] = [None] * nprocs

    def body(rank: int) -> None:
        try:
            torch.tpu.set_device(rank)
            dist.init_process_group(backend, rank=rank, world_size=nprocs, store=store)
            try:
                results[rank] = fn(rank, *args)
            finally:
                dist.destroy_process_group()
        except BaseException as e:  # reported after every thread has finished
            errors[rank] = e
            # Ranks waiting for this one in a collective raise instead of waiting forever.
            xla.abort_all(f"tpu_dist: rank {rank} failed: {e!r}")

    mtpg._install_threaded_pg()
    # c10d's registry of group names is process-wide unless isolated per thread.
    torch._C._distributed_c10d._set_thread_isolation_mode(True)
    try:
        threads = [threading.Thread(target=body, args=(r,), name=f"tpu_dist rank {r}") for r in range(nprocs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch._C._distributed_c10d._set_thread_isolation_mode(False)
        mtpg._uninstall_threaded_pg()
    for e in errors:
        if e is not None:
            raise e
    return results
