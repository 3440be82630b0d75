"""The c10d backend "tpu_dist": ``torch.distributed`` for tpu tensors.

``dist.init_process_group("tpu_dist")`` (or ``"cpu:gloo,tpu:tpu_dist"``) under
``torchrun``. Each collective is a cut point, so ranks may run different work
between collectives (MPMD). Two engines, chosen when the group is made
(``engine_stats()`` names the one used, with per-engine counts):

- "xla collectives": every rank of the group is a thread of this process on
  its own tpu device (found through the Store: each rank publishes host, pid
  and device; :func:`spawn_threads` starts such ranks). The ranks meet in a
  process-local rendezvous and one replicated XLA program runs over their
  devices (``_dist_threads.py``, ``_dist_xla.py``). ``xla.all_reduce([t0, t1])``
  and its siblings are the same engine as a plain SPMD API over local devices.
- "host-staged gloo" otherwise (ranks in different processes, any PJRT
  plugin): the pending fused graph runs, the tpu tensors are staged to host
  memory, the collective runs over c10d's gloo between processes, and the
  results are written back to the device. ``TORCH_TPU_DIST_ENGINE=gloo``
  forces it for thread ranks too.

CPU tensors in a "tpu_dist" group go to gloo without a device round trip
(staged only where a half type needs its float32 wire form). ``isend``
returns at once (its peer may be sending too: ``batch_isend_irecv``,
pipeline schedules); ``irecv`` writes into its tensors when waited for.
``recv`` without ``src`` is not supported.

Non-contiguous tensors are staged through contiguous copies and written back
through their views, so a strided view is reduced in full (gloo on CPU reduces
only its first element). Half types travel as float32 and are rounded once at
the end. In debug mode every collective first checks, through the Store, that
all ranks call the same collective in the same order, with the same dtypes and
input shapes (scatter and all-to-all inputs may differ), and raises naming both
sides instead of hanging or returning a wrong result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import Backend, ReduceOp, Work

from torch_tpu import _core
from torch_tpu import _dist_xla as xla
from torch_tpu._dist_threads import ThreadRankEngine, in_process_engine, spawn_threads

__all__ = ["BACKEND_NAME", "TpuDistBackend", "engine_stats", "spawn_threads", "xla"]

BACKEND_NAME = "tpu_dist"


def engine_stats() -> dict[str, Any]:
    """``engine``: the engine of the latest collective ("xla collectives" or
    "host-staged gloo"); ``engines``: collectives and input bytes per engine;
    ``collectives`` and ``bytes_staged``: the host-staged engine's counts."""
    engine, per = xla.stats()
    gloo = per[xla.GLOO_ENGINE]
    return {"engine": engine, "collectives": gloo["collectives"], "bytes_staged": gloo["bytes"], "engines": per}


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


class _PendingRecv(Work):
    """An irecv in flight: waiting for it writes the received host copy into
    the tensors (a tpu tensor cannot be written by gloo directly)."""

    def __init__(self, work: Work, tensors: list[torch.Tensor], hosts: list[torch.Tensor]) -> None:
        super().__init__()
        self._work, self._tensors, self._hosts = work, tensors, hosts
        self._written = False

    def wait(self, timeout: timedelta | None = None) -> bool:
        if not self._written:
            self._work.wait() if timeout is None else self._work.wait(timeout)
            for dst, h in zip(self._tensors, self._hosts):
                _write_back(dst, h)
            self._written = True
        return True

    def is_completed(self) -> bool:
        return self._written or self._work.is_completed()

    def is_success(self) -> bool:
        return self._work.is_success()

    def result(self) -> list[torch.Tensor]:
        return self._tensors

    def get_future(self) -> torch.futures.Future:
        self.wait()  # the values exist on the tpu only once written back
        future: torch.futures.Future = torch.futures.Future()
        future.set_result(self._tensors)
        return future


_WIRE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.bool: torch.uint8}
_op_name = xla.op_name


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """A contiguous host copy in the dtype gloo reduces (float32 for half types)."""
    host = t.detach().to("cpu").contiguous()
    wire = _WIRE_DTYPE.get(host.dtype)
    if wire is not None:
        host = host.to(wire)
    if t.device.type == "tpu":
        xla.count(xla.GLOO_ENGINE, t.numel() * t.element_size(), collectives=0)
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
        self._timeout = timeout
        self._store = store
        self._xla: ThreadRankEngine | None = in_process_engine(store, rank, size, timeout)
        self._gloo = dist.ProcessGroupGloo(store, rank, size, timeout)
        self._seq = 0

    def getBackendName(self) -> str:
        return BACKEND_NAME

    # torch's Backend binding answers these for a Python subclass by calling
    # back into Python, which recursed without end when the subclass left them
    # to the base (batch_isend_irecv reads supports_coalescing,
    # init_process_group(device_id=...) supports_splitting). Each op here
    # completes on its own: nothing is coalesced, split or reconfigured.
    supports_coalescing = property(lambda self: False)
    supports_splitting = property(lambda self: False)
    supports_shrinking = property(lambda self: False)
    supports_reconfigure = property(lambda self: False)
    supports_window = property(lambda self: False)
    supports_abort_hooks = property(lambda self: False)
    supports_completion_hooks = property(lambda self: False)
    _supports_time_estimate = property(lambda self: False)
    options = property(lambda self: Backend.Options(BACKEND_NAME, self._timeout))

    # --- plumbing ------------------------------------------------------------------

    def _on_xla(self, *groups: Sequence[torch.Tensor] | torch.Tensor) -> ThreadRankEngine | None:
        """The XLA engine when this group has one and every tensor is on the tpu."""
        if self._xla is None:
            return None
        ts = [t for g in groups for t in ([g] if isinstance(g, torch.Tensor) else g)]
        return self._xla if all(t.device.type == "tpu" for t in ts) else None

    def _done(self, outputs: Sequence[torch.Tensor]) -> Work:
        return _CompletedWork(list(outputs))

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
        same_shapes: bool = True,
    ) -> Work:
        """Stages ``inputs`` to the host, runs ``call(host_inputs, host_outputs)`` on gloo,
        writes the host outputs back into ``outputs`` and returns a completed Work.
        ``same_shapes``: every rank passes inputs of the same shapes (debug mode
        checks it; scatter and all_to_all inputs legitimately differ)."""

        def describe() -> str:
            dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in [*inputs, *outputs]})
            shapes = f" of shapes {[list(t.shape) for t in inputs]}" if same_shapes else ""
            return f"{name}({', '.join(dtypes)}){shapes}"

        self._check_order(describe)
        _core.cut("collective")
        host_in = [_to_host(t) for t in inputs]
        if outputs is inputs:  # in place (all_reduce, broadcast, ...): staged once
            host_out = host_in
        else:
            # Outputs are staged in the inputs' wire dtypes too: gloo moves bytes,
            # and a half-precision CPU output against float32 inputs came back
            # garbled (all_to_all) or aborted the process (reduce's scratch).
            host_out = [
                _to_host(t) if t.device.type == "tpu" or t.dtype in _WIRE_DTYPE else t.detach().contiguous()
                for t in outputs
            ]
        work = call(host_in, host_out)
        if work is not None:
            work.wait()
        if finish is not None:
            finish(host_out)
        for dst, host in zip(outputs, host_out):
            _write_back(dst, host)
        xla.count(xla.GLOO_ENGINE, 0)
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
        if e := self._on_xla(tensors):
            e.all_reduce(tensors, _op_name(op))
            return self._done(tensors)
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
        if e := self._on_xla(tensors):
            e.broadcast(tensors, opts.rootRank)
            return self._done(tensors)
        gopts = dist.BroadcastOptions()
        gopts.rootRank, gopts.rootTensor = opts.rootRank, opts.rootTensor

        return self._run("broadcast", tensors, tensors, lambda _, ho: self._gloo.broadcast(ho, gopts))

    def reduce(self, tensors: list[torch.Tensor], opts: Any = None) -> Work:
        if e := self._on_xla(tensors):
            e.reduce(tensors, opts.rootRank, _op_name(opts.reduceOp))
            return self._done(tensors)
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
        if e := self._on_xla(inputs, flat_out):
            self._xla_gather_lists(e, output_lists, inputs)
            return self._done(flat_out)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.allgather([ho[i * n : (i + 1) * n] for i in range(len(hi))], hi)

        return self._run("all_gather", inputs, flat_out, call)

    @staticmethod
    def _xla_gather_lists(
        e: ThreadRankEngine, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor]
    ) -> None:
        for outs, x in zip(output_lists, inputs):
            g = e.gathered(x)
            with torch.no_grad():
                for r, o in enumerate(outs):
                    o.copy_(g[r])

    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> Work:
        if e := self._on_xla(output, input):
            e.all_gather_into([output], [input])
            return self._done([output])

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            # Flat, as NCCL takes it: gloo splits the output along dim 0, which
            # failed for SyncBatchNorm's [1, world * n] output.
            return self._gloo._allgather_base(ho[0].view(-1), hi[0].view(-1))

        return self._run("all_gather_into_tensor", [input], [output], call)

    def all_gather_single_coalesced(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> Work:
        if e := self._on_xla(outputs, inputs):
            e.all_gather_into(outputs, inputs)
            return self._done(outputs)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            for h, o in zip(hi, ho):
                self._gloo._allgather_base(o.view(-1), h.view(-1)).wait()

        return self._run("all_gather_into_tensor_coalesced", inputs, outputs, call)

    def allgather_coalesced(
        self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None
    ) -> Work:
        flat_out = [t for lst in output_lists for t in lst]
        n = len(output_lists[0]) if output_lists else 0
        if e := self._on_xla(inputs, flat_out):
            self._xla_gather_lists(e, output_lists, inputs)
            return self._done(flat_out)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.allgather_coalesced([ho[i * n : (i + 1) * n] for i in range(len(output_lists))], hi)

        return self._run("all_gather_coalesced", inputs, flat_out, call)

    def gather(self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None) -> Work:
        flat_out = [t for lst in output_lists for t in lst]
        if e := self._on_xla(inputs, flat_out):
            e.gather(flat_out, inputs[0], opts.rootRank)
            return self._done(flat_out)
        gopts = dist.GatherOptions()
        gopts.rootRank = opts.rootRank

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.gather([ho] if ho else [], hi, gopts)

        return self._run("gather", inputs, flat_out, call)

    def scatter(self, outputs: list[torch.Tensor], input_lists: list[list[torch.Tensor]], opts: Any = None) -> Work:
        flat_in = [t for lst in input_lists for t in lst]
        if e := self._on_xla(outputs, flat_in):
            e.scatter(outputs[0], flat_in, opts.rootRank)
            return self._done(outputs)
        gopts = dist.ScatterOptions()
        gopts.rootRank = opts.rootRank

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.scatter(ho, [hi] if hi else [], gopts)

        return self._run("scatter", flat_in, outputs, call, same_shapes=False)

    def reduce_scatter(
        self, outputs: list[torch.Tensor], input_lists: list[list[torch.Tensor]], opts: Any = None
    ) -> Work:
        # gloo has no list reduce_scatter: reduce every chunk, keep this rank's.
        op = opts.reduceOp if opts is not None else ReduceOp.SUM
        gopts, avg = self._reduce_opts(dist.AllreduceOptions, op)
        flat_in = [t for lst in input_lists for t in lst]
        n = self._size
        if e := self._on_xla(outputs, flat_in):
            stacked = [torch.stack([t.to(o.dtype) for t in lst]) for lst, o in zip(input_lists, outputs)]
            e.reduce_scatter_into(outputs, stacked, _op_name(op))
            return self._done(outputs)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            self._allreduce_each(hi, gopts)
            for i, o in enumerate(ho):
                o.copy_(hi[i * n + self._rank])

        return self._run(f"reduce_scatter[{_op_name(op)}]", flat_in, outputs, call, self._average if avg else None)

    def reduce_scatter_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> Work:
        op = opts.reduceOp if opts is not None else ReduceOp.SUM
        if e := self._on_xla(output, input):
            e.reduce_scatter_into([output], [input], _op_name(op))
            return self._done([output])
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
        if e := self._on_xla(outputs, inputs):
            e.reduce_scatter_into(outputs, inputs, _op_name(op))
            return self._done(outputs)
        gopts, avg = self._reduce_opts(dist.AllreduceOptions, op)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            self._allreduce_each(hi, gopts)
            for h, o in zip(hi, ho):
                o.copy_(h.reshape(self._size, -1)[self._rank].reshape(o.shape))

        return self._run(
            f"reduce_scatter_tensor_coalesced[{_op_name(op)}]", inputs, outputs, call, self._average if avg else None
        )

    def alltoall(self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None) -> Work:
        if e := self._on_xla(outputs, inputs):
            flat_in = torch.cat([t.reshape(-1) for t in inputs])
            flat_out = flat_in.new_empty(sum(o.numel() for o in outputs))
            e.all_to_all(flat_out, flat_in, [o.numel() for o in outputs], [t.numel() for t in inputs])
            with torch.no_grad():
                for o, part in zip(outputs, torch.split(flat_out, [o.numel() for o in outputs])):
                    o.copy_(part.view(o.shape))
            return self._done(outputs)

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.alltoall(ho, hi)

        return self._run("all_to_all", inputs, outputs, call, same_shapes=False)

    def all_to_all_single(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        output_split_sizes: list[int],
        input_split_sizes: list[int],
        opts: Any = None,
    ) -> Work:
        if e := self._on_xla(output, input):
            e.all_to_all(output, input, output_split_sizes, input_split_sizes)
            return self._done([output])

        def call(hi: list[torch.Tensor], ho: list[torch.Tensor]) -> Any:
            return self._gloo.alltoall_base(ho[0], hi[0], list(output_split_sizes), list(input_split_sizes))

        return self._run("all_to_all_single", [input], [output], call, same_shapes=False)

    def send(self, tensors: list[torch.Tensor], dst: int, tag: int) -> Work:
        # Point-to-point calls involve two ranks only: no all-rank order check.
        if e := self._on_xla(tensors):
            e.send(tensors, dst, tag)
            return self._done(tensors)
        _core.cut("collective")
        # Not waited for: isend must return before its peer posts the matching
        # recv (batch_isend_irecv, pipeline schedules). gloo's Work keeps the
        # staged host copy alive until it is sent.
        return self._gloo.send([_to_host(t) for t in tensors], dst, tag)

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int) -> Work:
        if e := self._on_xla(tensors):
            e.recv(tensors, src, tag)
            return self._done(tensors)
        _core.cut("collective")
        hosts = [_to_host(t) for t in tensors]
        return _PendingRecv(self._gloo.recv(hosts, src, tag), tensors, hosts)

    def barrier(self, opts: Any = None) -> Work:
        if self._xla is not None:
            self._xla.barrier()
            return self._done([])
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
