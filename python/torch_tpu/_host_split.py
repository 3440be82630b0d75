"""A compiled graph's CPU-only prelude, split off so the rest runs directly.

An optimizer step compiled on tpu parameters keeps its ``step`` counters on
the CPU (Dynamo sets ``capturable`` only for CUDA/XPU parameters): the graph
increments them, computes the bias corrections from them, and feeds those
0-d CPU tensors into the parameter updates. A CPU tensor input used to make
every call replay op by op. Here the nodes that depend on CPU tensors alone
(and make CPU tensors) become a host graph, run as plain PyTorch on the CPU at
each call (mutating the counters as the user's program would), and the 0-d
CPU values they hand to the device part are uploaded as 0-d tpu tensors of
the same dtype, which promote exactly as 0-d CPU tensors do. The device part
is then an ordinary all-tpu graph with a plan.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

__all__ = ["HostSplit", "split_host"]


def _tensors(v: Any) -> list[torch.Tensor]:
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for x in v for t in _tensors(x)]
    return []


def _on_cpu(v: Any) -> bool:
    ts = _tensors(v)
    return bool(ts) and all(t.device.type == "cpu" for t in ts)


def _host_input(v: Any) -> bool:
    """A CPU tensor input, or a non-tensor one (a number, a symbolic size)."""
    return _on_cpu(v) or not _tensors(v)


def _scalar_cpu(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.device.type == "cpu" and v.dim() == 0


class HostSplit:
    """Runs the host graph, then the device graph on the inputs plus the host
    values (0-d CPU tensors uploaded to the graph's device)."""

    def __init__(self, host: fx.GraphModule, upload: list[int]) -> None:
        self.host = host
        self.upload = upload  # positions of the device graph's inputs that are 0-d CPU tensors

    def inputs(self, args: tuple[Any, ...]) -> list[Any]:
        with torch.no_grad():
            values = self.host(*args)
        inputs = [*args, *values]
        device = next((a.device for a in inputs if isinstance(a, torch.Tensor) and a.device.type == "tpu"), None)
        if device is None:
            return inputs
        for k in self.upload:
            if _scalar_cpu(inputs[k]):
                inputs[k] = inputs[k].to(device)
        return inputs


def split_host(gm: fx.GraphModule) -> tuple[fx.GraphModule, HostSplit] | None:
    """The device graph and how to feed it, or None when the graph has no
    CPU-only part (or its CPU inputs are written by device ops)."""
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if not any(_on_cpu(p.meta.get("val")) for p in placeholders):
        return None
    # Captured constants: both graphs may read them (each copy reads the same attribute).
    constants = [n for n in nodes if n.op == "get_attr"]
    cpu_constants = {n for n in constants if _host_input(operator.attrgetter(n.target)(gm))}
    host: set[fx.Node] = set()
    for n in nodes:
        if n.op != "call_function":
            continue
        ins = n.all_input_nodes
        from_host = all(
            i in host or i in cpu_constants or (i.op == "placeholder" and _host_input(i.meta.get("val"))) for i in ins
        )
        if from_host and (_on_cpu(n.meta.get("val")) or (n.target is operator.getitem and ins[0] in host)):
            host.add(n)
    if not host:
        return None
    device_nodes = [n for n in nodes if n.op == "call_function" and n not in host]
    (out,) = [n for n in nodes if n.op == "output"]
    # Host values the device part (or the output) uses, in graph order.
    needed = [n for n in nodes if n in host and any(u not in host for u in n.users)]
    # A device op writing a CPU input: the host graph would not see it.
    for n in device_nodes:
        t = n.target
        if isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable:
            if any(_on_cpu(a.meta.get("val")) for a in n.all_input_nodes):
                return None

    host_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for p in [*placeholders, *constants]:
        env[p] = host_graph.node_copy(p)
    for n in nodes:
        if n in host:
            env[n] = host_graph.node_copy(n, env.__getitem__)
    host_graph.output(tuple(env[n] for n in needed))

    device_graph = fx.Graph()
    denv: dict[fx.Node, fx.Node] = {}
    for p in [*placeholders, *constants]:
        denv[p] = device_graph.node_copy(p)
    for k, n in enumerate(needed):
        q = device_graph.placeholder(f"host_value_{k}")
        q.meta = dict(n.meta)
        denv[n] = q
    for n in nodes:
        if n.op == "call_function" and n not in host:
            denv[n] = device_graph.node_copy(n, denv.__getitem__)
    device_graph.output(fx.map_arg(out.args[0], denv.__getitem__))

    device_gm = fx.GraphModule(gm, device_graph)
    device_gm.meta.update(gm.meta)  # what the partitioner told bucketing
    host_gm = fx.GraphModule(gm, host_graph)
    # No device op writes a CPU input (refused above), so every 0-d CPU input may be a copy.
    upload = [k for k, n in enumerate([*placeholders, *needed]) if _scalar_cpu(n.meta.get("val"))]
    return device_gm, HostSplit(host_gm, upload)
