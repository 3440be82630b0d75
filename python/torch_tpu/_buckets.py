"""Shape buckets for compiled graphs with dynamic sizes.

Dynamo makes a size symbolic after it has seen two values of it (automatic
dynamic, or ``torch._dynamo.mark_dynamic``). XLA needs static shapes, so
without buckets every new batch size is a new program. A symbol is
*bucketed* when every op of the graph treats the rows along it
independently (elementwise ops, matmuls that do not contract over it,
reductions over other dims, batch-major reshapes, ...): then running the
graph on inputs zero-padded along that dim to the next power of two and
keeping the first rows of each output gives exactly the unpadded result,
and sizes 2..16 share four programs. An op that mixes rows along a symbol
(a softmax or sum over it, a matmul contracting over it: attention over a
dynamic sequence, backward's weight gradients) is masked with the actual size
(``_bucket_masks.py``). A graph that mixes rows in a way no mask fixes (a mean,
``x[-1]``, training-mode batch norm, a random op, an input mutation) keeps
that symbol exact, and says why in
``compile_stats()["graphs"][i]["bucketing"]``.

Padding an input costs nothing when it is the output of an earlier bucketed
graph (its padded base is kept); any other input is padded on the host (one
read and one upload, counted as ``padded_inputs``), because a device-side pad
would itself be one program per size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from torch import fx

from torch_tpu._bucket_masks import (
    MaskSpec,
    Spec,
    index_masks,
    insert_masks,
    layouts,
    mask_specs,
    merged_ok,
    pack_outputs,
)
from torch_tpu._bucket_rewrites import packable
from torch_tpu._bucket_rows import dims_of, expr_of, has_sym, op_name, prefix_slice, val_of, why_rows_mix

__all__ = ["BACKWARD_EXACT", "FORWARD_META", "USER_OUTPUTS", "Bucketing", "compact", "forward_layouts", "plan_buckets"]


@functools.lru_cache(maxsize=4096)
def _size(expr: Any, env: tuple[tuple[Any, int], ...]) -> int:
    """``expr`` at these symbol values (memoized: sympy's ``subs`` costs ~50 µs)."""
    return int(sympy.sympify(expr).subs(dict(env)))


def _bucket(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


# ``fx.GraphModule.meta`` keys: the number of a forward graph's outputs that
# are the user's (the rest are saved for backward), and, on a backward graph,
# its forward graph's meta (where planning left the outputs' layouts and the
# buckets' bounds).
USER_OUTPUTS = "torch_tpu_user_outputs"
FORWARD_META = "torch_tpu_forward_meta"
# On a forward graph: the symbols its backward graph keeps exact.
BACKWARD_EXACT = "torch_tpu_backward_exact"
_OUTPUT_LAYOUTS = "torch_tpu_output_layouts"
_UPPER = "torch_tpu_bucket_upper"

# An output of a bucketed graph keeps the padded tensor it was narrowed from
# under this attribute (alive exactly as long as the output).
_PADDED_BASE = "_torch_tpu_padded_base"
# A narrowed output whose values are not its own (a merged dim) keeps how to gather them.
_COMPACT = "_torch_tpu_compact"
# A caller's input keeps its host-padded copy, with the version it was made at.
_PADDED_COPY = "_torch_tpu_padded_copy"


@dataclass
class Bucketing:
    """How one compiled graph pads its inputs and narrows its outputs."""

    symbols: list[Any]
    # Per graph input: its symbolic dims (tensor), its expression (symbolic
    # int), or None (static).
    inputs: list[Any]
    # Per graph output: its symbolic dims, "input k" (an input passed
    # through), its expression (symbolic int), or None.
    outputs: list[Any]
    # Symbols that stay exact, with why.
    exact: dict[str, str] = field(default_factory=dict)
    # Whether any op writes an input (then extra calls to compile ahead are not harmless).
    mutates: bool = False
    padded_inputs: int = 0
    # Symbols whose actual sizes the graph reads (``_bucket_masks``), in its extra inputs' order.
    masked: list[Any] = field(default_factory=list)
    # Symbols whose actual sizes are the graph's extra inputs (masked ones, and those of packed outputs).
    sized: list[Any] = field(default_factory=list)
    # User outputs the graph returns packed at the front of a flat buffer.
    packed: list[int] = field(default_factory=list)
    # Outputs (saved for backward) with a dim that merges a bucketed symbol under another factor.
    merged: dict[int, Any] = field(default_factory=dict)
    # The largest value each symbol may take under the graph's guards.
    upper: dict[Any, int] = field(default_factory=dict)
    # Inputs (saved activations of an exact forward) with a dim that merges a
    # bucketed symbol under another factor: their layouts, to be padded factor by factor.
    factored: dict[int, Any] = field(default_factory=dict)
    _actual: dict[tuple[Any, int], torch.Tensor] = field(default_factory=dict)

    def bucket_of(self, sym: Any, n: int) -> int:
        """``n``'s bucket: the next power of two, but never past the largest
        size Dynamo's guards allow (a slice of a 512-row table, say)."""
        b = max(2, _bucket(n))
        top = self.upper.get(sym)
        return max(n, min(b, top)) if top is not None else b

    def with_actual_sizes(self, args: Sequence[Any], env: dict[Any, int] | None = None) -> list[Any]:
        """``args`` and, for a graph with masks, each masked symbol's actual
        size as a 0-d int64 tensor on the graph's device (one buffer per size,
        kept: a new size is a new input value, not a new program)."""
        if not self.sized:
            return list(args)
        env = env if env is not None else self.actual_sizes(args)
        if env is None:
            raise RuntimeError("torch.compile(backend='tpu'): a masked dynamic size cannot be read from the inputs")
        device = next((a.device for a in args if isinstance(a, torch.Tensor) and a.device.type != "cpu"), None)
        sizes = []
        for s in self.sized:
            key = (device, env[s])
            if key not in self._actual:
                self._actual[key] = torch.tensor(env[s], dtype=torch.int64).to(device)
            sizes.append(self._actual[key])
        return [*args, *sizes]

    def actual_sizes(self, args: Sequence[Any]) -> dict[Any, int] | None:
        env: dict[Any, int] = {}
        for spec, a in zip(self.inputs, args):
            pairs = (
                zip(spec, a.shape)
                if isinstance(spec, list) and isinstance(a, torch.Tensor)
                else [(spec, a)]
                if isinstance(a, int)
                else []
            )
            for e, n in pairs:
                if isinstance(e, sympy.Symbol):
                    env[e] = int(n)
        return env if all(s in env for s in self.symbols) else None

    def bucket_args(self, args: Sequence[Any], size: int) -> list[Any] | None:
        """Arguments of every bucketed dim at ``size``'s bucket, zeros where
        they carry one (uploaded from the host: no program per shape), to
        compile that bucket ahead of time; None when sizes cannot be read."""
        env = self.actual_sizes(args)
        if env is None:
            return None
        for s in self.symbols:
            env[s] = self.bucket_of(s, size)
        at = tuple(env.items())
        out: list[Any] = []
        for spec, a in zip(self.inputs, args):
            if (
                isinstance(spec, list)
                and isinstance(a, torch.Tensor)
                and any(has_sym(e, s) for e in spec for s in self.symbols)
            ):
                out.append(torch.zeros([_size(e, at) for e in spec], dtype=a.dtype).to(a.device))
            elif spec is not None and isinstance(a, int):
                out.append(_size(spec, at))
            else:
                out.append(a)
        return self.with_actual_sizes(out, env)

    def pad(self, args: Sequence[Any]) -> tuple[list[Any], dict[Any, int]] | None:
        """The arguments padded to their buckets, and the actual sizes; None
        when nothing needs padding (every size already a bucket)."""
        env = self.actual_sizes(args)
        if env is None:
            return None
        padded_env = dict(env)
        for s in self.symbols:
            padded_env[s] = self.bucket_of(s, env[s])
        if padded_env == env:
            return None
        out = []
        at = tuple(padded_env.items())
        actual_at = tuple(env.items())
        for k, (spec, a) in enumerate(zip(self.inputs, args)):
            if isinstance(spec, list) and isinstance(a, torch.Tensor):
                shape = [_size(e, at) for e in spec]
                lay = self.factored.get(k)
                if lay is None:
                    out.append(self._pad_tensor(a, shape))
                else:  # [b*s, d] is [b, s, d] padded along s, not [b*s, d] padded at its end
                    factors = ([_size(f, actual_at) for d in lay for f in d], [_size(f, at) for d in lay for f in d])
                    out.append(self._pad_tensor(a, shape, factors))
            elif spec is not None and isinstance(a, int):
                out.append(_size(spec, at))
            else:
                out.append(a)
        return out, env

    def _pad_tensor(
        self, t: torch.Tensor, shape: list[int], factors: tuple[list[int], list[int]] | None = None
    ) -> torch.Tensor:
        """``t`` padded to ``shape``; with ``factors`` (actual and padded), each
        merged dim padded factor by factor."""
        if list(t.shape) == shape:
            return t
        base = getattr(t, _PADDED_BASE, None)
        if (
            base is not None
            and (_covers(base, shape) if factors is None else list(base.shape) == shape)
            and base.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
            and base.storage_offset() == t.storage_offset()
            and base.stride() == t.stride()
        ):
            return _front(base, shape)
        # A tensor passed again unchanged (same version) reuses its padded copy.
        copy = getattr(t, _PADDED_COPY, None)
        if copy is not None and copy[0] == t._version and _covers(copy[1], shape) and factors is None:
            return _front(copy[1], shape)
        self.padded_inputs += 1
        host = compact(t).detach().to("cpu")
        if factors is not None:
            host = host.reshape(factors[0])
        full = host.new_zeros(factors[1] if factors is not None else shape)
        full[tuple(slice(0, n) for n in host.shape)] = host
        padded = full.reshape(shape).to(t.device)
        setattr(t, _PADDED_COPY, (t._version, padded))
        return padded

    def narrow(self, outs: Any, args: Sequence[Any], env: dict[Any, int]) -> Any:
        """The padded run's outputs cut back to the actual sizes: tensors over
        the padded ones' storage (not autograd views, which AOTAutograd would
        detach from their padded base when it saves them for backward)."""
        seq = list(outs)
        twins = dict(zip(self.packed, seq[len(self.outputs) :]))  # the packed outputs' padded forms
        seq = seq[: len(self.outputs)]
        at = tuple(env.items())
        padded_at = tuple((s, self.bucket_of(s, n)) for s, n in env.items())
        for k, spec in enumerate(self.outputs):
            if isinstance(spec, str):
                seq[k] = args[int(spec.split()[1])]
            elif k in self.packed and isinstance(spec, list) and isinstance(seq[k], torch.Tensor):
                flat = seq[k]
                shape = [_size(e, at) for e in spec]
                seq[k] = _over(flat, 0, shape, _contiguous_strides(shape))
                setattr(seq[k], _PADDED_COPY, (seq[k]._version, twins[k]))
            elif isinstance(spec, list) and isinstance(seq[k], torch.Tensor):
                padded = seq[k]
                o = padded
                for d, e in enumerate(spec):
                    if any(has_sym(e, s) for s in self.symbols):
                        o = o.narrow(d, 0, _size(e, at))
                if o is not padded:
                    o = _over(padded, o.storage_offset(), list(o.shape), list(o.stride()))
                    setattr(o, _PADDED_BASE, padded)
                    if k in self.merged:
                        lay = self.merged[k]
                        shapes = (
                            [[_size(f, padded_at) for f in d] for d in lay],
                            [[_size(f, at) for f in d] for d in lay],
                        )
                        setattr(o, _COMPACT, (padded, *shapes))
                seq[k] = o
            elif spec is not None and isinstance(seq[k], int):
                seq[k] = _size(spec, at)
        return type(outs)(seq) if isinstance(outs, tuple) else seq


def _over(t: torch.Tensor, offset: int, shape: list[int], stride: list[int]) -> torch.Tensor:
    """A tensor over ``t``'s storage that is not an autograd view of it."""
    with torch.no_grad():
        return torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), offset, shape, stride)


def _covers(padded: torch.Tensor, shape: list[int]) -> bool:
    return padded.dim() == len(shape) and all(p >= n for p, n in zip(padded.shape, shape))


def _front(padded: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """The first ``shape`` of a padded tensor at least that big (a view: a KV
    cache padded to 9 after a ``cat`` of 8 and 1 feeds bucket 8 as it is)."""
    if list(padded.shape) == shape:
        return padded
    return padded[tuple(slice(0, n) for n in shape)]


def _contiguous_strides(shape: list[int]) -> list[int]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return strides[::-1]


def compact(t: Any) -> Any:
    """A saved activation whose dim merges a bucketed symbol with an outer
    one is narrowed only in shape (its padded base is what a bucketed
    backward reads); any other consumer gets its actual values, gathered
    from the padded base on the host."""
    recipe = getattr(t, _COMPACT, None)
    if recipe is None:
        return t
    padded, padded_factors, actual_factors = recipe
    host = padded.detach().to("cpu").reshape([f for d in padded_factors for f in d])
    host = host[tuple(slice(0, f) for d in actual_factors for f in d)]
    return host.reshape([math.prod(d) for d in actual_factors]).to(t.device)


def _viewed_input(node: fx.Node) -> fx.Node | None:
    """The graph input ``node`` is a view of (through view ops only), if any."""
    while isinstance(node, fx.Node) and node.op == "call_function":
        t = node.target
        if not isinstance(t, torch._ops.OpOverload) or not t.is_view:
            return None
        node = node.args[0]  # type: ignore[assignment]
    return node if isinstance(node, fx.Node) and node.op == "placeholder" else None


def forward_layouts(gm: fx.GraphModule) -> None:
    """Leaves a forward graph's output layouts in its meta, for its
    backward's planning before the forward itself is planned."""
    _keep_output_layouts(gm, layouts(gm)[0])


def _keep_output_layouts(gm: fx.GraphModule, lays: dict[fx.Node, Any]) -> list[Any]:
    """The graph's results; their layouts, by name, left in its meta."""
    (result,) = [n.args[0] for n in gm.graph.nodes if n.op == "output"]
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    gm.meta[_OUTPUT_LAYOUTS] = {o.name: lays[o] for o in results if isinstance(o, fx.Node) and o in lays}
    return results


def plan_buckets(gm: fx.GraphModule, rewrite: bool = True) -> tuple[Bucketing | None, dict[str, str]]:
    """The graph's bucketing, or None; and, per symbol kept exact, why.
    ``rewrite=False``: only the analysis (the graph is left as it is)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    symbols: set[Any] = set()
    upper: dict[Any, int] = {}
    for p in placeholders:
        v = p.meta.get("val")
        sizes = list(v.shape) if isinstance(v, torch.Tensor) else [v] if isinstance(v, torch.SymInt) else []
        for size in sizes:
            e = expr_of(size)
            symbols |= set(getattr(e, "free_symbols", ()))
            if isinstance(size, torch.SymInt) and isinstance(e, sympy.Symbol):
                top = size.node.shape_env.var_to_range.get(e)
                if top is not None and isinstance(top.upper, sympy.Integer):
                    upper[e] = int(top.upper)
    if not symbols:
        return None, {}
    exact: dict[str, str] = {}
    nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
    # A backward graph's saved activations: their layouts (and buckets' bounds) as its forward made them.
    forward = gm.meta.get(FORWARD_META, {})
    lays, broken = layouts(gm, forward.get(_OUTPUT_LAYOUTS))
    for s, top in forward.get(_UPPER, {}).items():
        upper[s] = min(upper.get(s, top), top)
    masks: dict[Any, list[Spec]] = {}
    for n in nodes:  # x[:s] of a static table: s's bucket must fit in the table
        for s in symbols:
            if op_name(n) == "slice" and prefix_slice(n, s):
                rows = int(dims_of(val_of(n.args[0]))[int(n.args[1]) if len(n.args) > 1 else 0])  # type: ignore[index]
                upper[s] = min(upper.get(s, rows), rows)
    # Per symbol, an input dim that is exactly it: the graph reads its padded size there.
    where_sized: dict[Any, tuple[fx.Node, int | None]] = {}
    for p in placeholders:
        v = p.meta.get("val")
        if isinstance(v, torch.SymInt):  # a size passed as an int: the padded run gets it padded
            where_sized.setdefault(expr_of(v), (p, None))
        for k, e in enumerate(dims_of(v) or []):
            where_sized.setdefault(e, (p, k))
    for s in sorted(symbols, key=str):
        specs: list[Spec] = []
        for n in nodes:
            # Padded rows of an index tensor hold any value: zeros first, whatever else the op needs.
            index = index_masks(n, s, lays, set(where_sized))
            if index is None:
                exact[str(s)] = f"{op_name(n)} reads an index padded along the dynamic dim"
                break
            specs.extend(index)
            why = why_rows_mix(n, s, broken)
            if why is None:
                continue
            fix = mask_specs(n, s, lays, set(where_sized))
            if fix is None:
                exact[str(s)] = why
                break
            specs.extend(fix)
        else:
            if specs:
                masks[s] = specs
    for s in list(masks):  # a masked symbol's actual size is read from an input dim
        if s not in where_sized:
            exact[str(s)] = "its size is not a dim of an input"
            del masks[s]
    bucketed = [s for s in symbols if str(s) not in exact]
    if not bucketed:
        return None, exact
    inputs: list[Any] = []
    for p in placeholders:
        v = p.meta.get("val")
        inputs.append(
            dims_of(v) if isinstance(v, torch.Tensor) else expr_of(v) if isinstance(v, torch.SymInt) else None
        )
    index = {p: k for k, p in enumerate(placeholders)}
    factored = {
        k: lays[p] for k, p in enumerate(placeholders) if p in lays and any(not merged_ok(lays[p], s) for s in bucketed)
    }
    (result,) = [n.args[0] for n in gm.graph.nodes if n.op == "output"]
    outputs: list[Any] = []
    results = _keep_output_layouts(gm, lays)
    merged: dict[int, Any] = {}
    user_outputs = gm.meta.get(USER_OUTPUTS, len(results))
    for k, o in enumerate(results):
        v = val_of(o)
        if isinstance(o, fx.Node) and o.op == "placeholder":
            outputs.append(f"input {index[o]}")
        elif isinstance(v, torch.Tensor):
            viewed = _viewed_input(o)  # type: ignore[arg-type]
            dims = dims_of(val_of(viewed)) or []
            if k < user_outputs and any(has_sym(e, s) for e in dims for s in bucketed):
                # The view would be of the padded copy, not of the caller's tensor.
                why = "an output is a view of a padded input"
                return None, {**exact, **{str(s): why for s in bucketed}}
            for s in bucketed:
                if not merged_ok(lays.get(o), s):  # type: ignore[arg-type]
                    if k < user_outputs:
                        exact[str(s)] = "an output merges the dynamic dim with another"
                    elif str(s) in gm.meta.get(BACKWARD_EXACT, ()):
                        exact[str(s)] = "the backward keeps it exact, and a saved activation merges it"
                    else:  # saved for backward, which takes its padded base
                        merged[k] = lays[o]  # type: ignore[index]
            outputs.append(dims_of(v))
        else:
            outputs.append(expr_of(v) if isinstance(v, torch.SymInt) else None)
    bucketed = [s for s in bucketed if str(s) not in exact]
    if not bucketed:
        return None, exact
    mutates = any(isinstance(n.target, torch._ops.OpOverload) and n.target._schema.is_mutable for n in nodes)
    masked = sorted((s for s in bucketed if s in masks), key=str)
    # User outputs padded along an inner dim come back packed (contiguous, as on CPU).
    packed = [
        k
        for k, spec in enumerate(outputs)
        if k < user_outputs
        and isinstance(result, (list, tuple))
        and isinstance(spec, list)
        and any(has_sym(e, s) for e in spec[1:] for s in bucketed)
    ]
    need = {sym for k in packed for e in outputs[k] for sym in getattr(e, "free_symbols", ())}
    if any(not packable(e, need) for k in packed for e in outputs[k]) or not need <= set(where_sized):
        why = "an output is padded along an inner dim its sizes cannot be rebuilt for"
        return None, {**exact, **{str(s): why for s in bucketed}}
    # Rewrites (a cat, x[-k], a mean) read the actual sizes of every symbol they name.
    joins = {f for s in masked for m in masks[s] if not isinstance(m, MaskSpec) for f in m.factors}
    if not joins <= set(where_sized):
        return None, {**exact, **{str(s): "a rewrite reads sizes no input holds" for s in bucketed}}
    sized = sorted(set(masked) | need | joins, key=str)
    gm.meta[_UPPER] = {s: upper[s] for s in bucketed if s in upper}
    if sized and rewrite:
        specs = [m for s in masked for m in masks[s]]
        factor_sizes = {
            f: where_sized[f] for m in specs if isinstance(m, MaskSpec) for f in m.factors if f in where_sized
        }
        inputs_for = insert_masks(gm, specs, sized, factor_sizes)
        if packed:
            pack_outputs(gm, packed, dict(zip(sized, inputs_for)))
    return Bucketing(
        sorted(bucketed, key=str),
        inputs,
        outputs,
        exact,
        mutates,
        masked=masked,
        sized=sized,
        packed=packed,
        merged=merged,
        upper=upper,
        factored=factored,
    ), exact
