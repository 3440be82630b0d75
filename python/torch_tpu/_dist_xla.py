"""XLA collectives over several tpu devices of this process (``torch_tpu.distributed.xla``).

Two ways in, one engine (``_core.xla_collective``: one replicated XLA program
compiled for the devices taking part, run by one PJRT Execute over all of them):

- SPMD: one call with one tensor per device, e.g.
  ``xla.all_reduce([t0, t1], "sum")`` with ``t0`` on ``tpu:0`` and ``t1`` on
  ``tpu:1``.
- Ranks as threads: each rank of a "tpu_dist" group whose ranks all live in
  this process, each on its own device, calls the collective with its own
  tensor; the ranks meet in a process-local rendezvous (:class:`Rendezvous`),
  the last to arrive runs the one Execute, and every rank returns with its
  result. :func:`spawn_threads` starts such ranks.

A collective is a cut point: the pending work computing the inputs runs
first. Inputs may be any views (strided views are read in full); results are
written through the outputs' views.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch._C._distributed_c10d import ReduceOp

from torch_tpu import _core

__all__ = ["all_gather", "all_reduce", "all_to_all", "collective_permute", "reduce_scatter"]

XLA_ENGINE = "xla collectives"
GLOO_ENGINE = "host-staged gloo"

_DTYPE_CODES = {
    torch.uint8: 0,
    torch.int8: 1,
    torch.int16: 2,
    torch.int32: 3,
    torch.int64: 4,
    torch.float16: 5,
    torch.float32: 6,
    torch.float64: 7,
    torch.complex64: 9,
    torch.complex128: 10,
    torch.bool: 11,
    torch.bfloat16: 15,
}
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

_stats_lock = threading.Lock()
_stats: dict[str, dict[str, int]] = {
    XLA_ENGINE: {"collectives": 0, "bytes": 0},
    GLOO_ENGINE: {"collectives": 0, "bytes": 0},
}
_last_engine: list[str] = [GLOO_ENGINE]


def count(engine: str, nbytes: int, collectives: int = 1) -> None:
    """Counts collectives and the bytes of their inputs for ``engine``."""
    with _stats_lock:
        _stats[engine]["collectives"] += collectives
        _stats[engine]["bytes"] += nbytes
        if collectives:
            _last_engine[0] = engine


def stats() -> tuple[str, dict[str, dict[str, int]]]:
    """The engine of the latest collective and the per-engine counts."""
    with _stats_lock:
        return _last_engine[0], {k: dict(v) for k, v in _stats.items()}


def op_name(op: Any) -> str:
    """``"sum"``, ``"avg"``, ... for a ``ReduceOp`` or one of those names."""
    if isinstance(op, str):
        if op in _REDUCE_NAMES.values():
            return op
    else:
        for known, name in _REDUCE_NAMES.items():
            if op == known:
                return name
    raise ValueError(f"tpu_dist: reduce op {op} is not supported (use SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR)")


def _spec(name: str, t: torch.Tensor, output: bool) -> tuple[int, int, list[int], list[int], int]:
    if t.device.type != "tpu":
        raise ValueError(f"{name} (xla collectives): every tensor must be on a tpu device, got {t.device}")
    code = _DTYPE_CODES.get(t.dtype)
    if code is None:
        raise TypeError(f"{name} (xla collectives): dtype {t.dtype} is not supported")
    if t.is_conj() or t.is_neg():
        if output:
            raise ValueError(f"{name} (xla collectives): an output must not be a lazy conj/neg view")
        t = t.resolve_conj().resolve_neg()
    return (t.untyped_storage().data_ptr(), t.storage_offset(), list(t.shape), list(t.stride()), code)


def run(
    name: str,
    inputs: Sequence[torch.Tensor],
    outputs: Sequence[torch.Tensor],
    op: str = "sum",
    pairs: Sequence[tuple[int, int]] = (),
) -> None:
    """One collective, replica ``i`` on ``inputs[i]``'s device, result into ``outputs[i]``."""
    ins = [_spec(name, t, False) for t in inputs]
    outs = [_spec(name, t, True) for t in outputs]
    _core.xla_collective(name, op, ins, outs, [tuple(p) for p in pairs])
    count(XLA_ENGINE, sum(t.numel() * t.element_size() for t in inputs))


def _check_list(name: str, tensors: Sequence[torch.Tensor]) -> None:
    if not tensors:
        raise ValueError(f"{name}: no tensors")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.shape != first.shape or t.dtype != first.dtype:
            raise ValueError(
                f"{name}: tensor {i} is {t.dtype}{list(t.shape)}, tensor 0 is {first.dtype}{list(first.shape)}"
            )


def _like(tensors: Sequence[torch.Tensor], shape: Sequence[int]) -> list[torch.Tensor]:
    return [torch.empty(tuple(shape), dtype=t.dtype, device=t.device) for t in tensors]


def all_reduce(tensors: Sequence[torch.Tensor], op: Any = "sum") -> list[torch.Tensor]:
    """Reduces one tensor per device in place (``op``: a ``ReduceOp`` or its name)."""
    _check_list("all_reduce", tensors)
    run("all_reduce", tensors, tensors, op_name(op))
    return list(tensors)


def all_gather(tensors: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Each device gets every device's tensor, concatenated along dim 0 in list order."""
    _check_list("all_gather", tensors)
    n, t0 = len(tensors), tensors[0]
    shape = [n * t0.shape[0], *t0.shape[1:]] if t0.dim() else [n]
    outputs = list(outputs) if outputs is not None else _like(tensors, shape)
    run("all_gather", tensors, outputs)
    return outputs


def reduce_scatter(
    tensors: Sequence[torch.Tensor], op: Any = "sum", outputs: Sequence[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Reduces, then device ``i`` gets block ``i`` (of ``len(tensors)`` along dim 0)."""
    _check_list("reduce_scatter", tensors)
    n, t0 = len(tensors), tensors[0]
    if t0.dim() == 0 or t0.shape[0] % n:
        raise ValueError(f"reduce_scatter: dim 0 of {list(t0.shape)} does not split into {n} equal blocks")
    outputs = list(outputs) if outputs is not None else _like(tensors, [t0.shape[0] // n, *t0.shape[1:]])
    run("reduce_scatter", tensors, outputs, op_name(op))
    return outputs


def all_to_all(tensors: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Block ``j`` (along dim 0) of device ``i``'s tensor becomes block ``i`` of device ``j``'s result."""
    _check_list("all_to_all", tensors)
    n, t0 = len(tensors), tensors[0]
    if t0.dim() == 0 or t0.shape[0] % n:
        raise ValueError(f"all_to_all: dim 0 of {list(t0.shape)} does not split into {n} equal blocks")
    outputs = list(outputs) if outputs is not None else _like(tensors, t0.shape)
    run("all_to_all", tensors, outputs)
    return outputs


def collective_permute(
    tensors: Sequence[torch.Tensor],
    pairs: Sequence[tuple[int, int]],
    outputs: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Device ``target`` gets device ``source``'s tensor for each (source, target) list
    position; a device that no pair targets gets zeros."""
    _check_list("collective_permute", tensors)
    outputs = list(outputs) if outputs is not None else _like(tensors, tensors[0].shape)
    run("collective_permute", tensors, outputs, pairs=pairs)
    return outputs


class Rendezvous:
    """Where the thread ranks of one group meet: the last rank to arrive at
    collective number ``seq`` runs it for all of them (one Execute), and an
    error reaches every rank. Ranks that call different collectives get an
    error naming both instead of a hang."""

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size = size
        self._timeout = timeout_s
        self._cond = threading.Condition()
        self._slots: dict[Any, dict[str, Any]] = {}
        self._aborted: str | None = None

    def abort(self, reason: str) -> None:
        """Every waiting and later ``meet`` raises ``reason`` (a rank has failed)."""
        with self._cond:
            self._aborted = reason
            self._cond.notify_all()

    def meet(
        self,
        key: Any,
        rank: int,
        signature: str,
        payload: Any,
        execute: Callable[[list[Any]], None],
        ranks: Sequence[int] | None = None,
    ) -> None:
        """Deposits ``payload`` for ``key``; ``execute(payloads by rank)`` runs once all of
        ``ranks`` (default: every rank) have arrived."""
        members = list(ranks) if ranks is not None else list(range(self.size))
        with self._cond:
            if self._aborted is not None:
                raise RuntimeError(self._aborted)
            slot = self._slots.setdefault(key, {"in": {}, "done": False, "error": None, "left": len(members)})
            slot["in"][rank] = (signature, payload)
            if len(slot["in"]) == len(members):
                try:
                    sigs = {r: slot["in"][r][0] for r in members}
                    odd = [r for r in members if sigs[r] != sigs[members[0]]]
                    if odd:
                        raise RuntimeError(
                            f"tpu_dist: collective {key} differs across ranks: rank {members[0]} called "
                            f"{sigs[members[0]]}, rank {odd[0]} called {sigs[odd[0]]}"
                        )
                    execute([slot["in"][r][1] for r in members])
                except BaseException as e:  # every rank raises it, not only the one that ran
                    slot["error"] = e
                slot["done"] = True
                self._cond.notify_all()
            elif not self._cond.wait_for(lambda: slot["done"] or self._aborted, timeout=self._timeout):
                slot["error"] = RuntimeError(
                    f"tpu_dist: rank {rank} waited {self._timeout:.0f} s for {signature} (collective {key}); "
                    f"ranks {sorted(slot['in'])} arrived"
                )
                slot["done"] = True
                self._cond.notify_all()
            elif not slot["done"]:
                raise RuntimeError(self._aborted)
            slot["left"] -= 1
            if slot["left"] == 0:
                del self._slots[key]
            if slot["error"] is not None:
                raise slot["error"]


_rendezvous_lock = threading.Lock()
_rendezvous: dict[str, Rendezvous] = {}


def rendezvous(token: str, size: int, timeout_s: float) -> Rendezvous:
    """The process-local rendezvous of the group named ``token`` (made by its first rank)."""
    with _rendezvous_lock:
        r = _rendezvous.get(token)
        if r is None:
            r = _rendezvous[token] = Rendezvous(size, timeout_s)
        return r


def abort_all(reason: str) -> None:
    """Aborts every rendezvous of this process (a thread rank has failed)."""
    with _rendezvous_lock:
        for r in _rendezvous.values():
            r.abort(reason)
