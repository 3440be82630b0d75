"""``torch.compile(model, backend="tpu")``: Dynamo → AOTAutograd → the tpu runtime.

Where a compiled graph is captured: :func:`tpu_backend` receives Dynamo's FX
graph; AOTAutograd splits it into functionalized forward and backward graphs
of ATen ops (decompositions only for ops the runtime has no lowering for) and
hands each to :func:`_compile_graph` (a :class:`_Graph`). The first call with
an input signature replays that ATen graph on the device inside one fused
region (capture mode): the ops go through the same lowering rules, views and
scalar handling as eager, are recorded into one pending graph and run as one
XLA program, found in the same memory and disk caches as eager (keyed by its
structural hash). At that cut the runtime keeps a plan (which input feeds
each parameter, which outputs are written back into mutated inputs, what each
output is a view of; ``crates/tpu-runtime/src/graphcache.rs``), and every
later call with the signature is executed directly: one
``_core.CompiledGraph.call`` feeds the inputs' buffers to the program, with no
FX interpretation and no per-op dispatch. RNG ops draw their seeds from the
tpu generator per call. Graphs a plan cannot represent are replayed at every
call, with the reason in :func:`compile_stats`.

``torch.compile(model)`` with the default backend also lands here when the
example inputs live on the tpu: Inductor's own device-"tpu" code generator is
for a different project and would fail.
"""

from __future__ import annotations

import atexit
import itertools
import operator
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import fx

from torch_tpu import _core
from torch_tpu._buckets import (
    BACKWARD_EXACT,
    FORWARD_META,
    USER_OUTPUTS,
    Bucketing,
    compact,
    forward_layouts,
    plan_buckets,
)
from torch_tpu._host_split import split_host
from torch_tpu._module import any_on_tpu

__all__ = ["compile_stats", "reset_compile_stats", "tpu_backend"]

_stats_lock = threading.Lock()
_stats: dict[str, int] = {
    "graphs_compiled": 0,
    "forward_graphs": 0,
    "backward_graphs": 0,
    "compiled_calls": 0,
    "direct_calls": 0,
    "replayed_calls": 0,
}


# Dynamo's own counters are global and outlive ``torch._dynamo.reset()``;
# ours report what happened since ``reset_compile_stats`` (their values then).
_dynamo_base: dict[str, Any] = {"unique_graphs": 0, "graph_break": {}, "reasons": 0}


def _dynamo_counts() -> tuple[int, dict[str, int], list[str]]:
    from torch._dynamo.utils import counters

    failures = getattr(torch._dynamo.utils, "guard_failures", {})
    reasons = [str(r) for rs in failures.values() for r in rs]
    # A break Dynamo resumes after is filed under "graph_break", but one it
    # takes at a data-dependent jump (`if tensor.sum() > 0:`) stays under
    # "unimplemented" (torch 2.15): both are places the compiled code fell
    # back to Python.
    breaks = Counter(counters["graph_break"]) + Counter(counters["unimplemented"])
    return counters["stats"].get("unique_graphs", 0), dict(breaks), reasons


def _since(now: int, base: int) -> int:
    """``now - base``, or ``now`` when the counter was cleared since."""
    return now - base if now >= base else now


def compile_stats() -> dict[str, Any]:
    """Graphs captured by the backend and compiled calls (``direct_calls`` fed
    one executable, ``replayed_calls`` went op by op), per graph
    (``graphs``: see :func:`graph_stats`), with Dynamo's own counts: graphs
    traced, graph breaks (with reasons) and recompile reasons; all since the
    last :func:`reset_compile_stats`."""
    with _stats_lock:
        out: dict[str, Any] = dict(_stats)
        base = dict(_dynamo_base)
    out["graphs"] = graph_stats()
    graphs, breaks, reasons = _dynamo_counts()
    out["dynamo_graphs"] = _since(graphs, base["unique_graphs"])
    new_breaks = {k: _since(v, base["graph_break"].get(k, 0)) for k, v in breaks.items()}
    out["graph_break_reasons"] = {k: v for k, v in new_breaks.items() if v}
    out["graph_breaks"] = sum(out["graph_break_reasons"].values())
    out["recompile_reasons"] = reasons[base["reasons"] :] if len(reasons) >= base["reasons"] else reasons
    return out


def reset_compile_stats() -> None:
    graphs, breaks, reasons = _dynamo_counts()
    with _stats_lock:
        for k in _stats:
            _stats[k] = 0
        _dynamo_base.update(unique_graphs=graphs, graph_break=breaks, reasons=len(reasons))
    for g in list(_graphs.values()):
        fresh = _GraphStats(g.stats.name, g.stats.kind)
        fresh.host_prelude = g.stats.host_prelude
        fresh.bucketing = {**g.stats.bucketing, "padded_inputs": 0} if g.stats.bucketing else {}
        if g.buckets is not None:
            g.buckets.padded_inputs = 0
        g.stats = fresh


def _bump(key: str, n: int = 1) -> None:
    with _stats_lock:
        _stats[key] = _stats.get(key, 0) + n


def _dump(gm: fx.GraphModule, kind: str) -> None:
    """``TORCH_TPU_DUMP_DIR``: each captured ATen graph as readable code."""
    d = os.environ.get("TORCH_TPU_DUMP_DIR")
    if not d:
        return
    path = Path(d)
    path.mkdir(parents=True, exist_ok=True)
    with _stats_lock:
        n = _stats["graphs_compiled"]
    (path / f"graph_{n:04d}_{kind}.fx.py").write_text(gm.code)


def _lowered_names() -> frozenset[str]:
    return frozenset(_core.lowered_ops())


def _unlowered(gm: fx.GraphModule, lowered: frozenset[str]) -> list[str]:
    """ATen ops of the graph the runtime cannot run in any form (not the op,
    nor its ``out=`` variant, nor anything PyTorch decomposes it into)."""
    missing = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        op = node.target
        if op.namespace != "aten":
            continue
        name = op._schema.name.split("::", 1)[1]
        full = name if op._overloadname == "default" else f"{name}.{op._overloadname}"
        if full in lowered or name in lowered or f"{name}.out" in lowered:
            continue
        if any(n.startswith(name + ".") or n == name + "_" for n in lowered):
            continue
        keys = (
            "PrivateUse1",
            "CompositeImplicitAutograd",
            "CompositeExplicitAutograd",
            "CompositeExplicitAutogradNonFunctional",
        )
        if any(torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), k) for k in keys):
            continue
        missing.append(full)
    return missing


# Graph-only ops with a plain eager equivalent.
_REWRITES = {torch.ops.aten.lift_fresh_copy.default: torch.ops.aten.clone.default}


def _canonicalize(gm: fx.GraphModule) -> None:
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _REWRITES:
            node.target = _REWRITES[node.target]
            changed = True
    if changed:
        gm.recompile()


class _GraphStats:
    """What one compiled graph did: its plans (one per input signature, each
    one program), calls run directly and calls replayed op by op, with why."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.programs_compiled = 0
        self.direct_calls = 0
        self.replayed_calls = 0
        self.fallback_reasons: dict[str, int] = {}
        self.bucketing: dict[str, Any] = {}
        # CPU-only ops (an optimizer's step counters) split off and run on the host.
        self.host_prelude = False

    def as_dict(self, plans: int) -> dict[str, Any]:
        return {
            "bucketing": dict(self.bucketing),
            "host_prelude": self.host_prelude,
            "name": self.name,
            "kind": self.kind,
            "plans": plans,
            "programs_compiled": self.programs_compiled,
            "direct_calls": self.direct_calls,
            "replayed_calls": self.replayed_calls,
            "fallback_reasons": dict(self.fallback_reasons),
        }


# Live compiled graphs (weakly: a graph goes with its compiled function).
_graphs: weakref.WeakValueDictionary[int, _Graph] = weakref.WeakValueDictionary()
_next_graph = itertools.count()
_DTYPES = [(d, str(d).removeprefix("torch.")) for d in vars(torch).values() if isinstance(d, torch.dtype)]


def _constants(gm: fx.GraphModule) -> list[torch.Tensor]:
    """The graph's tensor constants (``get_attr``), fed to the plan as inputs
    after the graph's own so that a program reading them finds them."""
    out = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = operator.attrgetter(node.target)(gm)
            if isinstance(value, torch.Tensor) and value.device.type == "tpu":
                out.append(value)
    return out


def _explicit_generator(gm: fx.GraphModule) -> bool:
    """A random op given a generator: plans draw seeds from the default one."""
    return any(isinstance(v, torch.Generator) for n in gm.graph.nodes for v in n.kwargs.values())


def _shapes(args: Sequence[Any]) -> tuple[Any, ...]:
    """Arguments as their shapes (tensors) or values: one bucket's key."""
    return tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args)


class _Graph:
    """One captured ATen graph and how its calls run.

    The first call with an input signature replays the graph op by op in
    capture mode and keeps a plan at the cut (``_core.CompiledGraph.capture``,
    ``crates/tpu-runtime/src/graphcache.rs``); later calls with that signature
    are one ``_core.CompiledGraph.call``: the program runs on the inputs'
    buffers, mutated inputs are written, outputs are made over the results.
    """

    def __init__(self, gm: fx.GraphModule, kind: str, precompile: Sequence[int] = ()) -> None:
        self.id = next(_next_graph)
        # Sizes of the bucketed dims to compile at the first bucketed call.
        self.precompile = tuple(precompile)
        self.stats = _GraphStats(f"{kind}_{self.id}", kind)
        self.buckets: Bucketing | None = None
        if _core.env_flag("TORCH_TPU_SHAPE_BUCKETS"):
            # May put masks into gm (and give it inputs for the actual sizes).
            self.buckets, exact = plan_buckets(gm)
            bucketed = [str(s) for s in self.buckets.symbols] if self.buckets else []
            masked = [str(s) for s in self.buckets.masked] if self.buckets else []
            self.stats.bucketing = {"bucketed": bucketed, "masked": masked, "exact": exact, "padded_inputs": 0}
        self.run = gm.forward
        self.core = _core.CompiledGraph(self.stats.name, _DTYPES)
        self.constants = _constants(gm)
        # Why no call of this graph can be planned, if so.
        self.never: str | None = "a random op with an explicit generator" if _explicit_generator(gm) else None
        _graphs[self.id] = self

    def _fallback(self, why: str) -> None:
        self.stats.fallback_reasons[why] = self.stats.fallback_reasons.get(why, 0) + 1

    def __call__(self, *args: Any) -> Any:
        _bump("compiled_calls")
        previous = _core.get_eager_mode()
        if previous == "capture":  # called from inside another graph's replay
            with torch.no_grad():
                out = self.run(*self._with_sizes(args))
            return self._unpack(out, args)
        if self.buckets is None or previous == "debug":
            args = tuple(compact(a) for a in args)  # a bucketed forward's saved activations, exactly
        padded = self.buckets.pad(args) if self.buckets is not None and previous != "debug" else None
        if self.precompile and self.buckets is not None and previous != "debug":
            self._compile_ahead(previous, args, padded[0] if padded is not None else args)
        if padded is None:
            out = self._call(previous, self._with_sizes(args))
            return self._unpack(out, args)
        out = self._call(previous, self.buckets.with_actual_sizes(*padded))
        self.stats.bucketing["padded_inputs"] = self.buckets.padded_inputs  # type: ignore[union-attr]
        return self.buckets.narrow(out, args, padded[1])  # type: ignore[union-attr]

    def _with_sizes(self, args: Sequence[Any]) -> Sequence[Any]:
        """``args``, plus the actual sizes a graph with masks reads."""
        return self.buckets.with_actual_sizes(args) if self.buckets else args

    def _unpack(self, out: Any, args: Sequence[Any]) -> Any:
        """A call at its bucket's sizes: outputs the graph packs still come
        back flat, to be given their shape."""
        if self.buckets is None or not self.buckets.packed:
            return out
        env = self.buckets.actual_sizes(args)
        return out if env is None else self.buckets.narrow(out, args, env)

    def _compile_ahead(self, previous: str, args: Sequence[Any], own: Sequence[Any]) -> None:
        """``options={"precompile_sizes": [...]}``: the graph recorded at each
        of those sizes' buckets on zero inputs and its program compiled on a
        background thread, not run, so that no later size in them waits for a
        compile (the call at a bucket still replays once to keep its plan).
        Skipped for a graph that writes an input. ``own``: this call's
        arguments at its bucket (compiled by the call itself)."""
        sizes, self.precompile = self.precompile, ()
        assert self.buckets is not None
        if self.buckets.mutates:
            self._fallback("precompile_sizes skipped: the graph writes an input")
            return
        done = {_shapes(own)}
        for size in sizes:
            ahead = self.buckets.bucket_args(args, size)
            if ahead is None:
                return
            key = _shapes(ahead)[: len(own)]  # without the actual-size inputs
            if key in done:
                continue
            done.add(key)
            if previous == "fused":
                _core.cut("compiled graph")
            _core.set_eager_mode("capture")
            try:
                with torch.no_grad():
                    out = self.run(*ahead)
                # With the outputs alive: a freed output is dead work, not compiled.
                _core.compile_recorded_in_background()
                del out
            finally:
                _core.cut("compiled graph")  # after a failed replay: what it recorded
                _core.set_eager_mode(previous)
            self.stats.bucketing["precompiled"] = self.stats.bucketing.get("precompiled", 0) + 1

    def _call(self, previous: str, args: Sequence[Any]) -> Any:
        """One call at exactly these arguments' shapes."""
        inputs = (*args, *self.constants) if self.constants else args
        key: int | None = None
        if self.never is not None:
            self._fallback(self.never)
        elif previous == "debug":
            self._fallback("debug mode runs every op")
        else:
            grad = torch.is_grad_enabled()
            torch._C._set_grad_enabled(False)
            try:
                hit, res = self.core.call(inputs)  # cuts pending eager work first
            finally:
                torch._C._set_grad_enabled(grad)
            if hit:
                self.stats.direct_calls += 1
                _bump("direct_calls")
                return res
            if isinstance(res, int):
                key = res
            else:
                self._fallback(res)
        return self._replay(previous, args, inputs, key)

    def _replay(self, previous: str, args: Sequence[Any], inputs: Sequence[Any], key: int | None) -> Any:
        """The graph's ops through the runtime (the same lowering rules, views
        and scalars as eager), recorded in capture mode (fused, with no step or
        size cuts inside the graph) and cut into one program after (without
        waiting); with a signature ``key``, a plan is kept at the cut."""
        self.stats.replayed_calls += 1
        _bump("replayed_calls")
        if previous == "fused":
            _core.cut("compiled graph")
        compiles = _core.metrics()["compiles"]
        before = _core.graph_snapshot()
        _core.set_eager_mode("capture")
        try:
            with torch.no_grad():
                out = self.run(*args)
            why = self.core.capture(before, key, inputs, out)
            if why is not None:
                self._fallback(why)
        finally:
            _core.cut("compiled graph")  # after a failed replay: what it recorded
            _core.set_eager_mode(previous)
        self.stats.programs_compiled += _core.metrics()["compiles"] - compiles
        return out


def graph_stats() -> list[dict[str, Any]]:
    """Per live compiled graph: plans, programs compiled, direct and replayed
    calls, and why calls were replayed."""
    return [g.stats.as_dict(g.core.plan_count()) for _, g in sorted(_graphs.items())]


def _compile_graph(
    kind: str, precompile: Sequence[int] = ()
) -> Callable[[fx.GraphModule, Sequence[Any]], Callable[..., Any]]:
    def compile_one(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        _canonicalize(gm)
        _dump(gm, kind)
        missing = _unlowered(gm, _lowered_names())
        if missing and not _core.env_flag("TORCH_TPU_CPU_FALLBACK"):
            raise NotImplementedError(
                f"torch.compile(backend='tpu'): no tpu lowering for {', '.join(sorted(set(missing)))} "
                "(set TORCH_TPU_CPU_FALLBACK=1 to run such ops on the CPU, counted in the metrics)"
            )
        _bump("graphs_compiled")
        _bump(f"{kind}_graphs")
        split = split_host(gm)
        if split is None:
            graph = _Graph(gm, kind, precompile)

            def compiled(*args: Any) -> Any:
                return graph(*args)
        else:
            device_gm, host = split
            graph = _Graph(device_gm, kind, precompile)
            graph.stats.host_prelude = True

            def compiled(*args: Any) -> Any:
                return graph(*host.inputs(args))

        compiled._tpu_graph = graph  # type: ignore[attr-defined]
        return compiled

    return compile_one


def tpu_backend(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    mode: str | None = None,
    options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """The Dynamo backend "tpu". ``mode=`` is accepted and ignored (the runtime
    picks its own XLA options), as are ``options`` it does not know (Inductor's).
    ``options={"precompile_sizes": [1, 2, ..., 64]}``: when a graph with
    bucketed dynamic sizes is first called, the programs of these sizes'
    buckets are compiled too (they also land in the disk cache, for later
    processes), so later sizes never wait for a compile."""
    from functorch.compile import default_partition, make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    precompile = tuple(int(n) for n in (options or {}).get("precompile_sizes", ()))
    if any(n < 1 for n in precompile):
        raise ValueError(f"torch.compile(backend='tpu'): precompile_sizes must be positive, got {precompile}")
    fw = _compile_graph("forward", precompile)
    bw = _compile_graph("backward")

    def boxed(kind_compiler: Callable[..., Any]) -> Callable[..., Any]:
        def c(g: fx.GraphModule, inputs: Sequence[Any]) -> Callable[..., Any]:
            return make_boxed_func(kind_compiler(g, inputs))

        return c

    def partition(joint: fx.GraphModule, joint_inputs: Any, **kw: Any) -> tuple[fx.GraphModule, fx.GraphModule]:
        # Tells bucketing which forward outputs are saved for backward, and
        # how the forward laid them out.
        fw_gm, bw_gm = default_partition(joint, joint_inputs, **kw)
        if "num_fwd_outputs" in kw:
            fw_gm.meta[USER_OUTPUTS] = kw["num_fwd_outputs"]
        bw_gm.meta[FORWARD_META] = fw_gm.meta
        if _core.env_flag("TORCH_TPU_SHAPE_BUCKETS"):
            # A symbol the backward keeps exact: the forward must hand it exact saved activations.
            forward_layouts(fw_gm)
            fw_gm.meta[BACKWARD_EXACT] = set(plan_buckets(bw_gm, rewrite=False)[1])
        return fw_gm, bw_gm

    return aot_autograd(
        fw_compiler=boxed(fw), bw_compiler=boxed(bw), partition_fn=partition, keep_inference_input_mutations=True
    )(gm, example_inputs)


def _on_tpu(inputs: Sequence[Any]) -> bool:
    return any(isinstance(t, torch.Tensor) and t.device.type == "tpu" for t in inputs)


def install() -> None:
    """Registers backend "tpu" with Dynamo, and routes the default backend
    (Inductor) to it for graphs whose inputs are on the tpu."""
    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    # Background compiles (precompile_sizes) finish before the interpreter goes.
    atexit.register(_core.wait_background_compiles)

    if "tpu" not in _COMPILER_FNS:
        register_backend(tpu_backend, name="tpu")

    wrapper = torch._TorchCompileInductorWrapper
    if getattr(wrapper.__call__, "_torch_tpu", False):
        return
    inductor_call = wrapper.__call__

    def call(self: Any, model_: Any, inputs_: Any, **kwargs: Any) -> Any:
        if _on_tpu(inputs_) or (isinstance(model_, torch.nn.Module) and any_on_tpu(model_)):
            return tpu_backend(model_, inputs_)
        return inductor_call(self, model_, inputs_, **kwargs)

    call._torch_tpu = True  # type: ignore[attr-defined]
    wrapper.__call__ = call  # type: ignore[method-assign]
