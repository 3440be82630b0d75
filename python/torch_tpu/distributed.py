"""The c10d backend "tpu_dist": ``torch.distributed`` for tpu tensors.

``dist.init_process_group("tpu_dist")`` (or ``"cpu:gloo,tpu:tpu_dist"``) under
``torchrun``. Each collective is a cut point: the pending fused graph runs,
the tpu tensors are staged to host memory, the collective runs over c10d's
gloo between processes, and the results are written back to the device. So
ranks may run different work between collectives (MPMD), and any PJRT plugin
works. CPU tensors in a "tpu_dist" group go straight to gloo.

Non-contiguous tensors are staged through contiguous copies and written back
through their views, so a strided view is reduced in full (gloo on CPU reduces
only its first element). Half types travel as float32 and are rounded once at
the end. In debug mode every collective first checks, through the Store, that
all ranks call the same collective in the same order, and raises naming both
sides instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import Backend, ReduceOp, Work

from torch_tpu import _core

__all__ = ["BACKEND_NAME", "TpuDistBackend", "engine_stats"]

BACKEND_NAME = "tpu_dist"

_stats_lock = threading.Lock()
_stats: dict[str, int] = {"collectives": 0, "bytes_staged": 0}


def engine_stats() -> dict[str, Any]:
    """Collectives run and bytes staged through the host, with the engine's name."""
    with _stats_lock:
        return {"engine": "host-staged gloo", **_stats}


class _CompletedWork(Work):
    """The collective already ran (it is a cut point); ``wait`` returns at once."""

    def __init__(self, result: list[torch.Tensor]) -> None:
        super().__init__()
        self._result = result
        self._future: torch.futures.Future = torch.futures.Future()
        self._future.set_result(result)

    def wait(self, timeout: timedelta | None = None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True

    def is_success(self) -> bool:
        return True

    def result(self) -> list[torch.Tensor]:
        return self._result

    def get_future(self) -> torch.futures.Future:
        return self._future


_WIRE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.bool: torch.uint8}
_REDUCE_NAMES = {
    ReduceOp.SUM: "sum",
    ReduceOp.AVG: "avg",
    ReduceOp.PRODUCT: "product",
    ReduceOp.MIN: "min",
    ReduceOp.MAX: "max",
    ReduceOp.BAND: "band",
    ReduceOp.BOR: "bor",
    ReduceOp.BXOR: "bxor",
}


def _op_name(op: Any) -> str:
    for known, name in _REDUCE_NAMES.items():
        if op == known:
            return name
    raise ValueError(f"tpu_dist: reduce op {op} is not supported (use SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR)")


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """A contiguous host copy in the dtype gloo reduces (float32 for half types)."""
    host = t.detach().to("cpu").contiguous()
    wire = _WIRE_DTYPE.get(host.dtype)
    if wire is not None:
        host = host.to(wire)
    if t.device.type == "tpu":
        with _stats_lock:
            _stats["bytes_staged"] += t.numel() * t.element_size()
    return host


def _write_back(dst: torch.Tensor, host: torch.Tensor) -> None:
    if dst.dtype == torch.bool:
        host = host != 0
    with torch.no_grad():
        dst.copy_(host.to(dst.dtype))


class TpuDistBackend(Backend):
    """c10d backend over a gloo group of the same ranks; see the module docstring."""

    def __init__(self, store: dist.Store, rank: int, size: int, timeout: timedelta) -> None:
        super().__init__(rank, size)
        self._rank, self._size = rank, size
        self._store = store
        self._gloo = dist.ProcessGroupGloo(store, rank, size, timeout)
        self._seq = 0

    def getBackendName(self) -> str:
        return BACKEND_NAME

    # --- plumbing ------------------------------------------------------------------

    def _check_order(self, describe: Callable[[], str]) -> None:
        """Debug mode: every rank must call the same collective at the same position."""
        self._seq += 1
        if _core.get_eager_mode() != "debug" or self._size == 1:
            return
        signature = describe()
        key = f"tpu_dist_order/{self._seq}"
        self._store.set(f"{key}/{self._rank}", signature)
        for r in range(self._size):
            if r == self._rank:
                continue
            theirs = self._store.get(f"{key}/{r}").decode()
            if theirs != signature:
                raise RuntimeError(
                    f"tpu_dist: collective #{self._seq} differs across ranks: rank {self._rank} called "
                    f"{signature}, rank {r} called {theirs}"
                )

    def _run(
        self,
        name: str,
        inputs: Sequence[torch.Tensor],
        outputs: Sequence[torch.Tensor],
        call: Callable[[list[torch.Tensor], list[torch.Tensor]], Any],
        finish: Callable[[list[torch.Tensor]], None] | None = None,
    ) -> Work:
        """Stages ``inputs`` to the host, runs ``call(host_inputs, host_outputs)`` on gloo,
        writes the host outputs back into ``outputs`` and returns a completed Work."""

        def describe() -> str:
            dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in [*inputs, *outputs]})
            return f"{name}({', '.join(dtypes)})"

        self._check_order(describe)
        _core.cut("collective")
        host_in = [_to_host(t) for t in inputs]
        if outputs is inputs:  # in place (all_reduce, broadcast, ...): staged once
            host_out = host_in
        else:
            host_out = [_to_host(t) if t.device.type == "tpu" else t.detach().contiguous() for t in outputs]
        work = call(host_in, host_out)
        if work is not None:
            work.wait()
        if finish is not None:
            finish(host_out)
        for dst, host in zip(outputs, host_out):
            _write_back(dst, host)
        with _stats_lock:
            _stats["collectives"] += 1
        return _CompletedWork(list(outputs))

    def _reduce_opts(self, cls: type, op: Any, **fields: Any) -> tuple[Any, bool]:
        """Options for gloo with ``op``; AVG runs as SUM followed by a division."""
        name = _op_name(op)
        opts = cls()
        opts.reduceOp = ReduceOp.SUM if name == "avg" else op
        for k, v in fields.items():
            setattr(opts, k, v)
        return opts, name == "avg"

    def _allreduce_each(self, hosts: list[torch.Tensor], opts: Any) -> None:
        # One call per tensor: gloo's allreduce of a list also reduces across the list.
        for h in hosts:
            self._gloo.allreduce([h], opts).wait()

    def _average(self, hosts: list[torch.Tensor]) -> None:
        for h in hosts:
            if h.is_floating_point() or h.is_complex():
                h.div_(self._size)
            else:
                h.copy_(torch.div(h, self._size, rounding_mode="trunc"))

    # --- collectives ----------------------------------------------------------------

    def _reduce_in_place(
        self,
        name: str,
        tensors: list[torch.Tensor],
        opts: Any,
        options: type,
        gloo_call: Callable[[list[torch.Tensor], Any], Any],
    ) -> Work:
        op = opts.reduceOp if opts is not None else ReduceOp.SUM
        gopts, avg = self._reduce_opts(options, op)
        return self._run(
            f"{name}[{_op_name(op)}]",
            tensors,
            tensors,
            lambda _, ho: gloo_call(ho, gopts),
            self._average if avg else None,
        )

    def allreduce(self, tensors: list[torch.Tensor], opts: Any = None) -> Work:
        return self._reduce_in_place("all_reduce", tensors, opts, dist.AllreduceOptions, self._gloo.allreduce)

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any = None) -> Work:
        return self._reduce_in_place(
            "all_reduce_coalesced", tensors, opts, dist.AllreduceCoalescedOptions, self._gloo.allreduce_coalesced
        )

    def broadcast(self, tensors: list[torch.Tensor], opts: Any = None) -> Work:
        gopts = dist.BroadcastOptions()
        gopts.rootRank, gopts.rootTensor = opts.rootRank, opts.rootTensor

        return self._run("broadcast", tensors, tensors, lambda _, ho: self._gloo.broadcast(ho, gopts))

    def reduce(self, tensors: list[torch.Tensor], opts: Any = None) -> Work:
        gopts, avg = self._reduce_opts(
            dist.ReduceOptions, opts.reduceOp, rootRank=opts.rootRank, rootTensor=opts.rootTensor
        )
        root = opts.rootRank

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            if ho is not hi:  # a non-root reduces into scratch space
                for h, o in zip(hi, ho):
                    o.copy_(h)
            return self._gloo.reduce(ho, gopts)

        finish = self._average if avg and self._rank == root else None
        # Only the root's tensors take the result; the others keep their values.
        if self._rank == root:
            return self._run(f"reduce[{_op_name(opts.reduceOp)}]", tensors, tensors, call, finish)
        scratch = [torch.empty_like(t, device="cpu") for t in tensors]
        self._run(f"reduce[{_op_name(opts.reduceOp)}]", tensors, scratch, call)
        return _CompletedWork(list(tensors))

    def allgather(self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None) -> Work:
        flat_out = [t for lst in output_lists for t in lst]
        n = len(output_lists[0]) if output_lists else 0

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.allgather([ho[i * n : (i + 1) * n] for i in range(len(hi))], hi)

        return self._run("all_gather", inputs, flat_out, call)

    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> Work:
        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo._allgather_base(ho[0], hi[0])

        return self._run("all_gather_into_tensor", [input], [output], call)

    def all_gather_single_coalesced(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> Work:
        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            for h, o in zip(hi, ho):
                self._gloo._allgather_base(o, h).wait()

        return self._run("all_gather_into_tensor_coalesced", inputs, outputs, call)

    def allgather_coalesced(
        self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None
    ) -> Work:
        flat_out = [t for lst in output_lists for t in lst]
        n = len(output_lists[0]) if output_lists else 0

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.allgather_coalesced([ho[i * n : (i + 1) * n] for i in range(len(output_lists))], hi)

        return self._run("all_gather_coalesced", inputs, flat_out, call)

    def gather(self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None) -> Work:
        flat_out = [t for lst in output_lists for t in lst]
        gopts = dist.GatherOptions()
        gopts.rootRank = opts.rootRank

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.gather([ho] if ho else [], hi, gopts)

        return self._run("gather", inputs, flat_out, call)

    def scatter(self, outputs: list[torch.Tensor], input_lists: list[list[torch.Tensor]], opts: Any = None) -> Work:
        flat_in = [t for lst in input_lists for t in lst]
        gopts = dist.ScatterOptions()
        gopts.rootRank = opts.rootRank

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.scatter(ho, [hi] if hi else [], gopts)

        return self._run("scatter", flat_in, outputs, call)

    def reduce_scatter(
        self, outputs: list[torch.Tensor], input_lists: list[list[torch.Tensor]], opts: Any = None
    ) -> Work:
        # gloo has no list reduce_scatter: reduce every chunk, keep this rank's.
        op = opts.reduceOp if opts is not None else ReduceOp.SUM
        gopts, avg = self._reduce_opts(dist.AllreduceOptions, op)
        flat_in = [t for lst in input_lists for t in lst]
        n = self._size

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            self._allreduce_each(hi, gopts)
            for i, o in enumerate(ho):
                o.copy_(hi[i * n + self._rank])

        return self._run(f"reduce_scatter[{_op_name(op)}]", flat_in, outputs, call, self._average if avg else None)

    def reduce_scatter_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> Work:
        op = opts.reduceOp if opts is not None else ReduceOp.SUM
        gopts, avg = self._reduce_opts(dist.AllreduceOptions, op)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            self._gloo.allreduce(hi, gopts).wait()
            ho[0].copy_(hi[0].reshape(self._size, -1)[self._rank].reshape(ho[0].shape))

        return self._run(
            f"reduce_scatter_tensor[{_op_name(op)}]", [input], [output], call, self._average if avg else None
        )

    def reduce_scatter_single_coalesced(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> Work:
        op = opts.reduceOp if opts is not None else ReduceOp.SUM
        gopts, avg = self._reduce_opts(dist.AllreduceOptions, op)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            self._allreduce_each(hi, gopts)
            for h, o in zip(hi, ho):
                o.copy_(h.reshape(self._size, -1)[self._rank].reshape(o.shape))

        return self._run(
            f"reduce_scatter_tensor_coalesced[{_op_name(op)}]", inputs, outputs, call, self._average if avg else None
        )

    def alltoall(self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None) -> Work:
        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.alltoall(ho, hi)

        return self._run("all_to_all", inputs, outputs, call)

    def all_to_all_single(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        output_split_sizes: list[int],
        input_split_sizes: list[int],
        opts: Any = None,
    ) -> Work:
        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.alltoall_base(ho[0], hi[0], list(output_split_sizes), list(input_split_sizes))

        return self._run("all_to_all_single", [input], [output], call)

    def send(self, tensors: list[torch.Tensor], dst: int, tag: int) -> Work:
        # Point-to-point calls involve two ranks only: no all-rank order check.
        _core.cut("collective")
        hosts = [_to_host(t) for t in tensors]
        self._gloo.send(hosts, dst, tag).wait()
        return _CompletedWork(list(tensors))

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int) -> Work:
        _core.cut("collective")
        hosts = [_to_host(t) for t in tensors]
        self._gloo.recv(hosts, src, tag).wait()
        for dst, h in zip(tensors, hosts):
            _write_back(dst, h)
        return _CompletedWork(list(tensors))

    def barrier(self, opts: Any = None) -> Work:
        self._check_order(lambda: "barrier()")
        _core.cut("collective")
        self._gloo.barrier().wait()
        return _CompletedWork([])

    # Names older torch releases dispatch to.
    _allgather_base = all_gather_single
    _reduce_scatter_base = reduce_scatter_single
    alltoall_base = all_to_all_single


def _create(store: dist.Store, rank: int, size: int, timeout: timedelta) -> Backend:
    return TpuDistBackend(store, rank, size, timeout)


def register() -> None:
    """Registers "tpu_dist" for the tpu and CPU devices (safe to call twice)."""
    if BACKEND_NAME.upper() in dist.Backend._plugins:
        return
    dist.Backend.register_backend(BACKEND_NAME, _create, devices=["cpu", "tpu"])
