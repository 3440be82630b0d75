"""Rewrites of the ops that read a padded dim at its actual size.

``_bucket_masks`` puts a neutral element in front of an op that mixes rows
(a softmax, a sum, a contraction). Some ops need more than that: they read
positions counted from the actual end, or divide by the actual count. Each
is replaced by ops over the 0-d actual-size inputs:

- ``cat`` along a padded dim: gathered so each part's actual rows follow the
  previous part's (``JoinSpec``);
- ``x[:, -k]`` and ``x[:, -k:]``: read at the actual size minus k
  (``TailSpec``);
- ``mean`` along a padded dim: a masked sum divided by the actual count
  (``MeanSpec``; the zero mask itself is a ``MaskSpec``);
- ``x[..., ix]`` along a padded dim of ``x`` (Hugging Face reads its padding
  mask so): ``ix`` counted against the actual size (``IndexSpec``);
- a size used as a value by an elementwise op (``kv_idx + past_length``):
  the actual size's value (``ValueSpec``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import sympy
import torch
from torch import fx

from torch_tpu._bucket_rows import expr_of, val_of

__all__ = ["IndexSpec", "JoinSpec", "MeanSpec", "TailSpec", "ValueSpec", "packable", "rewrite", "size_node", "static"]

aten = torch.ops.aten


def static(e: Any) -> bool:
    return not getattr(e, "free_symbols", ())


@dataclass(frozen=True)
class JoinSpec:
    """A ``cat`` along a padded dim: its result is gathered so that each
    part's actual rows follow the previous part's actual rows (in the padded
    run each part starts after the previous part's padding). ``factors``:
    the symbols whose actual sizes that needs."""

    node: fx.Node
    dim: int
    factors: tuple[Any, ...]


def _append_one(g: fx.Graph, spec: JoinSpec, sizes: dict[Any, fx.Node], parts: list[Any]) -> None:
    """``cat([cache, new])`` with one new row (a KV cache's decode step): the
    new row is selected in at the cache's actual length (a select; XLA on
    the CPU compiles a gather ten times slower)."""
    node = spec.node
    out = val_of(node)
    with g.inserting_before(node.next):
        total = g.call_function(aten.sym_size.int, (node, spec.dim))
        i = g.call_function(aten.arange.default, (total,), {"dtype": torch.int64, "device": out.device})
        here = g.call_function(aten.eq.Tensor, (i, size_node(g, expr_of(val_of(parts[0]).shape[spec.dim]), sizes)))
        here = g.call_function(aten.view.default, (here, [total] + [1] * (out.dim() - 1 - spec.dim)))
        joined = g.call_function(aten.where.self, (here, parts[1], node))
    joined.meta["val"] = out
    keep = {joined, total}
    node.replace_all_uses_with(joined, delete_user_cb=lambda u, keep=keep: u not in keep)


def _join(g: fx.Graph, spec: JoinSpec, sizes: dict[Any, fx.Node]) -> None:
    """``cat``'s result gathered so the parts' actual rows are consecutive."""
    node = spec.node
    out = val_of(node)
    parts = list(node.args[0])  # type: ignore[arg-type]
    if len(parts) == 2 and expr_of(val_of(parts[1]).shape[spec.dim]) == 1:
        _append_one(g, spec, sizes, parts)
        return
    with g.inserting_before(node.next):
        total = g.call_function(aten.sym_size.int, (node, spec.dim))
        i = g.call_function(aten.arange.default, (total,), {"dtype": torch.int64, "device": out.device})
        idx: Any = i
        actual: Any = 0
        padded: Any = 0
        for k, part in enumerate(node.args[0]):  # type: ignore[union-attr]
            if k > 0:
                after = g.call_function(aten.ge.Tensor if isinstance(actual, fx.Node) else aten.ge.Scalar, (i, actual))
                moved = g.call_function(aten.add.Tensor, (g.call_function(aten.sub.Tensor, (i, actual)), padded))
                idx = g.call_function(aten.where.self, (after, moved, idx))
            a = size_node(g, expr_of(val_of(part).shape[spec.dim]), sizes)
            actual = a if isinstance(actual, int) and actual == 0 else g.call_function(aten.add.Tensor, (a, actual))
            p = g.call_function(aten.sym_size.int, (part, spec.dim))
            padded = p if isinstance(padded, int) else g.call_function(operator.add, (padded, p))
        top = g.call_function(operator.sub, (total, 1))
        idx = g.call_function(aten.clamp.default, (idx, 0, top))  # past the actual rows: any
        joined = g.call_function(aten.index_select.default, (node, spec.dim, idx))
    joined.meta["val"] = out
    keep = {joined, total}
    node.replace_all_uses_with(joined, delete_user_cb=lambda u, keep=keep: u not in keep)


@dataclass(frozen=True)
class TailSpec:
    """``select(x, dim, start)`` or ``slice(x, dim, start)`` to the end,
    with ``start`` negative: counted from the actual size of ``factors[0]``."""

    node: fx.Node
    dim: int
    start: int
    factors: tuple[Any, ...]


@dataclass(frozen=True)
class MeanSpec:
    """``mean`` over dims of which one is padded: a sum (of the masked input)
    divided by the product of the dims' actual sizes. ``factors``: the
    symbols those sizes need."""

    node: fx.Node
    factors: tuple[Any, ...]


@dataclass(frozen=True)
class IndexSpec:
    """Entry ``item`` of ``index(x, indices)`` indexes a dim of ``x`` padded
    along ``factors[0]``."""

    node: fx.Node
    item: int
    factors: tuple[Any, ...]


@dataclass(frozen=True)
class ValueSpec:
    """Argument ``arg`` of an elementwise ``node`` is a symbolic size (of the
    symbols ``factors``) used as a value."""

    node: fx.Node
    arg: int
    factors: tuple[Any, ...]


def _value(g: fx.Graph, spec: ValueSpec, sizes: dict[Any, fx.Node]) -> None:
    """The size's actual value, a 0-d tensor (so ``add.Scalar`` becomes
    ``add.Tensor``; a 0-d int64 tensor promotes as a Python int does)."""
    node = spec.node
    with g.inserting_before(node):
        actual = size_node(g, expr_of(val_of(node.args[spec.arg])), sizes)
    args = list(node.args)
    args[spec.arg] = actual
    if node.target._overloadname == "Scalar":  # type: ignore[union-attr]
        node.target = node.target.overloadpacket.Tensor  # type: ignore[union-attr]
    node.args = tuple(args)


def _index(g: fx.Graph, spec: IndexSpec, sizes: dict[Any, fx.Node]) -> None:
    """Negative indices wrap at the actual size, not the padded one; an index
    out of the actual range becomes the padded size, which the index check
    refuses as it would have refused the original."""
    node = spec.node
    x, entries = node.args[0], list(node.args[1])  # type: ignore[arg-type]
    ix = entries[spec.item]
    actual = sizes[spec.factors[0]]
    with g.inserting_before(node):
        padded = g.call_function(aten.sym_size.int, (x, spec.item))
        negative = g.call_function(aten.lt.Scalar, (ix, 0))
        wrapped = g.call_function(aten.where.self, (negative, g.call_function(aten.add.Tensor, (ix, actual)), ix))
        below = g.call_function(aten.lt.Scalar, (wrapped, 0))
        past = g.call_function(aten.ge.Tensor, (wrapped, actual))
        bad = g.call_function(aten.bitwise_or.Tensor, (below, past))
        fixed = g.call_function(aten.where.ScalarSelf, (bad, padded, wrapped))
    fixed.meta["val"] = val_of(ix)
    entries[spec.item] = fixed
    node.args = (x, entries, *node.args[2:])


def _tail(g: fx.Graph, spec: TailSpec, sizes: dict[Any, fx.Node]) -> None:
    """An index_select at ``actual + start`` (and the rows after it, for a slice)."""
    node = spec.node
    x = node.args[0]
    out = val_of(node)
    with g.inserting_before(node):
        first = g.call_function(aten.add.Tensor, (sizes[spec.factors[0]], spec.start))
        if node.target is aten.select.int:
            idx = g.call_function(aten.view.default, (first, [1]))
        else:
            rows = g.call_function(aten.arange.default, (-spec.start,), {"dtype": torch.int64, "device": out.device})
            idx = g.call_function(aten.add.Tensor, (rows, first))
        picked = g.call_function(aten.index_select.default, (x, spec.dim, idx))
        if node.target is aten.select.int:
            picked = g.call_function(aten.squeeze.dim, (picked, spec.dim))
    picked.meta["val"] = out
    node.replace_all_uses_with(picked)
    g.erase_node(node)


def _mean(g: fx.Graph, spec: MeanSpec, sizes: dict[Any, fx.Node]) -> None:
    """``mean(x, dims)`` as ``sum(x, dims) / count``, the count at the actual sizes."""
    node = spec.node
    x, dims = node.args[0], node.args[1]
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    xv, out = val_of(x), val_of(node)
    kwargs = {"dtype": node.kwargs["dtype"]} if node.kwargs.get("dtype") is not None else {}
    with g.inserting_before(node):
        total = g.call_function(aten.sum.dim_IntList, (x, dims, keepdim), kwargs)
        count: Any = 1
        for d in dims:  # type: ignore[union-attr]
            n = size_node(g, expr_of(xv.shape[d]), sizes)
            count = n if isinstance(count, int) and count == 1 else g.call_function(aten.mul.Tensor, (count, n))
        quotient = g.call_function(aten.div.Tensor, (total, count))
    quotient.meta["val"] = out
    node.replace_all_uses_with(quotient)
    g.erase_node(node)


def rewrite(g: fx.Graph, specs: list[Any], sizes: dict[Any, fx.Node]) -> None:
    """Each spec's rewrite, once per op (whichever symbols it names)."""
    done: set[Any] = set()
    for spec in specs:
        key = (
            (spec.node, spec.item)
            if isinstance(spec, IndexSpec)
            else (spec.node, spec.arg)
            if isinstance(spec, ValueSpec)
            else spec.node
        )
        if key in done:
            continue
        done.add(key)
        if isinstance(spec, JoinSpec):
            _join(g, spec, sizes)
        elif isinstance(spec, TailSpec):
            _tail(g, spec, sizes)
        elif isinstance(spec, IndexSpec):
            _index(g, spec, sizes)
        elif isinstance(spec, ValueSpec):
            _value(g, spec, sizes)
        else:
            _mean(g, spec, sizes)


def size_node(g: fx.Graph, expr: Any, sizes: dict[Any, fx.Node]) -> Any:
    """``expr`` (sums and products of symbols and integers) at the actual
    sizes, as graph nodes over the 0-d size inputs (or an int)."""
    if static(expr):
        return int(expr)
    if isinstance(expr, sympy.Symbol):
        return sizes[expr]
    parts = [size_node(g, a, sizes) for a in expr.args]
    op = aten.add.Tensor if isinstance(expr, sympy.Add) else aten.mul.Tensor
    # Start from a node (a tensor), so that each op is tensor-first; every other part once.
    first = next(k for k, p in enumerate(parts) if isinstance(p, fx.Node))
    acc = parts[first]
    for k, p in enumerate(parts):
        if k != first:
            acc = g.call_function(op, (acc, p))
    return acc


def packable(expr: Any, syms: set[Any]) -> bool:
    """Whether ``_size_node`` can build ``expr`` from these symbols' sizes."""
    if static(expr):
        return True
    if isinstance(expr, sympy.Symbol):
        return expr in syms
    return isinstance(expr, (sympy.Add, sympy.Mul)) and all(packable(a, syms) for a in expr.args)
