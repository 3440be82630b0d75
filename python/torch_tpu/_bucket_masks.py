"""Masks that keep padded rows out of the ops that mix along a dynamic dim.

``_buckets.py`` pads a dynamic dim to its power-of-two bucket when every op
treats the rows along it independently. Attention over a dynamic sequence
does not: its softmax normalises along the keys and its second matmul sums
over them. Such an op is still exact on padded inputs when the padded
entries along that dim are first replaced by the op's neutral element (-inf
before a softmax or a max, 0 before a sum or on both sides of a
contraction): the real rows then never see a padded one, whatever the
padding holds. The graph gets one more input per masked symbol, its actual
size as a 0-d int64 tensor (a buffer, so a new size is not a new program),
and a ``where(arange(n) < size, x, fill)`` in front of each such op.

This module also tracks how dims were merged by reshapes (``layouts``), so
that ``[b, s, d] -> [b*s, d] -> linear -> [b, s, e]`` keeps both symbols
bucketable: the merged dim's rows are (b, s) pairs, which row-wise ops keep.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import sympy
import torch
from torch import fx

__all__ = ["MaskSpec", "insert_masks", "layouts", "mask_specs", "merged_ok"]

aten = torch.ops.aten

# A dim as its factors, outermost first: a merged [b*s] is (b, s).
Layout = list[tuple[Any, ...]]

_RESHAPES = {"view", "_unsafe_view", "reshape"}
_SAME_LAYOUT = {"clone", "contiguous", "alias", "detach", "_to_copy", "lift_fresh_copy"}
# Reductions along ``args[1]`` whose padded entries must hold ``fill`` first.
_NEG_FILL = {"_softmax", "_safe_softmax", "_log_softmax", "logsumexp", "amax", "max", "argmax"}
_POS_FILL = {"amin", "min", "argmin"}
_ZERO_FILL = {"sum", "any"}


def _expr(size: Any) -> Any:
    return size.node.expr if isinstance(size, torch.SymInt) else sympy.Integer(int(size))


def _val(arg: Any) -> Any:
    return arg.meta.get("val") if isinstance(arg, fx.Node) else None


def _name(node: fx.Node) -> str | None:
    t = node.target
    if not isinstance(t, torch._ops.OpOverload):
        return None
    return t._schema.name.split("::", 1)[1].rstrip("_")


def _plain(dims: list[Any]) -> Layout:
    return [(e,) for e in dims]


def _static(e: Any) -> bool:
    return not getattr(e, "free_symbols", ())


def _split_runs(factors: list[Any], dims: list[Any]) -> Layout | None:
    """``factors`` grouped into consecutive runs whose products are ``dims``
    (a static factor may be split where a static part of a dim needs it), or
    None when a symbolic factor would have to be split."""
    rest = list(factors)
    out: Layout = []
    for d in dims:
        run: list[Any] = []
        prod: Any = sympy.Integer(1)
        while sympy.simplify(prod - d) != 0:
            if not rest:
                return None
            f = rest.pop(0)
            ratio = sympy.simplify(d / prod)
            if _static(f) and ratio.is_Integer and f != ratio and int(f) % int(ratio) == 0:
                rest.insert(0, sympy.Integer(int(f) // int(ratio)))
                f = ratio
            run.append(f)
            prod = prod * f
        out.append(tuple(run) if run else (sympy.Integer(1),))
    if any(not _static(f) or f != 1 for f in rest):
        return None
    return out


def _rowwise_layout(dims: list[Any], inputs: list[fx.Node], out: dict[fx.Node, Layout]) -> Layout:
    """Row-wise ops keep the rows of an input dim of the same size at the same place."""
    lay = _plain(dims)
    for a in inputs:
        al, av = out.get(a), _val(a)
        if al is None or not isinstance(av, torch.Tensor) or av.dim() != len(dims):
            continue
        for k, e in enumerate(dims):
            if len(al[k]) > 1 and sympy.simplify(_expr(av.shape[k]) - e) == 0:
                lay[k] = al[k]
    return lay


def layouts(gm: fx.GraphModule) -> tuple[dict[fx.Node, Layout], set[fx.Node]]:
    """Per tensor-valued node, each dim's factors; and the reshapes that split
    a symbolic factor (their outputs' dims count as plain factors)."""
    out: dict[fx.Node, Layout] = {}
    broken: set[fx.Node] = set()
    for n in gm.graph.nodes:
        v = _val(n)
        if n.op == "call_function" and n.target is operator.getitem:
            src = n.args[0]
            if isinstance(v, torch.Tensor) and isinstance(src, fx.Node):
                out[n] = _rowwise_layout([_expr(e) for e in v.shape], src.all_input_nodes, out)
            continue
        if not isinstance(v, torch.Tensor):
            continue
        dims = [_expr(s) for s in v.shape]
        name = _name(n) if n.op == "call_function" else None
        src_node = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
        src = out.get(src_node) if src_node is not None else None
        if name in _RESHAPES and src is not None:
            runs = _split_runs([f for d in src for f in d], dims)
            if runs is None:
                broken.add(n)
            out[n] = runs if runs is not None else _plain(dims)
        elif name in ("transpose", "t", "permute") and src is not None:
            lay = list(src)
            if name == "t" and len(lay) == 2:
                lay = [lay[1], lay[0]]
            elif name == "transpose":
                a, b = (int(x) % max(len(lay), 1) for x in n.args[1:3])  # type: ignore[call-overload]
                lay[a], lay[b] = lay[b], lay[a]
            elif name == "permute":
                lay = [lay[int(p) % len(lay)] for p in n.args[1]]  # type: ignore[union-attr]
            out[n] = lay
        elif name in _SAME_LAYOUT and src is not None:
            out[n] = list(src)
        elif name == "unsqueeze" and src is not None:
            lay = list(src)
            lay.insert(int(n.args[1]) % (len(lay) + 1), (sympy.Integer(1),))  # type: ignore[call-overload]
            out[n] = lay
        else:
            out[n] = _rowwise_layout(dims, n.all_input_nodes, out)
    return out, broken


def merged_ok(lay: Layout | None, sym: Any) -> bool:
    """Whether a tensor of this layout can be narrowed back along ``sym`` with
    plain ``narrow``s: the symbol is a whole dim, or the outermost factor of a
    dim whose other factors are static."""
    if lay is None:
        return False
    for d in lay:
        carrying = [k for k, f in enumerate(d) if sym in getattr(f, "free_symbols", ())]
        if not carrying:
            continue
        if carrying != [0] or any(getattr(f, "free_symbols", ()) for f in d[1:]):
            return False
    return True


@dataclass(frozen=True)
class MaskSpec:
    """Mask argument ``arg`` of ``node`` along ``dim`` with ``fill`` where the
    index reaches the actual size of ``sym``."""

    node: fx.Node
    arg: int
    dim: int
    fill: float | int | bool
    sym: Any


def _is(expr: Any, sym: Any) -> bool:
    return sympy.simplify(expr - sym) == 0


def _fill_for(dtype: torch.dtype, low: bool) -> float | int | bool:
    if dtype.is_floating_point:
        return -math.inf if low else math.inf
    if dtype == torch.bool:
        return not low
    info = torch.iinfo(dtype)
    return info.min if low else info.max


def mask_specs(node: fx.Node, sym: Any) -> list[MaskSpec] | None:
    """The masks that make ``node`` exact on inputs padded along ``sym``, or
    None when no mask does (the symbol then stays exact)."""
    name = _name(node)
    if name is None or not node.args:
        return None
    x = _val(node.args[0])
    if name in ("mm", "bmm", "addmm", "baddbmm"):
        i, j = (1, 2) if name in ("addmm", "baddbmm") else (0, 1)
        a, b = _val(node.args[i]), _val(node.args[j])
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return None
        if not (_is(_expr(a.shape[-1]), sym) and _is(_expr(b.shape[-2]), sym)):
            return None
        if name in ("addmm", "baddbmm") and isinstance(_val(node.args[0]), torch.Tensor):
            bias = _val(node.args[0])
            if any(sym in getattr(_expr(s), "free_symbols", ()) for s in bias.shape[-1:]):
                return None
        return [MaskSpec(node, i, a.dim() - 1, 0, sym), MaskSpec(node, j, b.dim() - 2, 0, sym)]
    if name not in _NEG_FILL | _POS_FILL | _ZERO_FILL or not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = [dim] if isinstance(dim, int) else list(dim) if isinstance(dim, (list, tuple)) else []
    if not dims or not all(isinstance(d, int) for d in dims):
        return None  # a full reduction, or a reduction against another tensor
    dims = [d % x.dim() for d in dims]
    along = [d for d in dims if sym in getattr(_expr(x.shape[d]), "free_symbols", ())]
    if len(along) != 1 or not _is(_expr(x.shape[along[0]]), sym):
        return None
    d = along[0]
    if name in _NEG_FILL:
        fill = _fill_for(x.dtype, True)
    elif name in _POS_FILL:
        fill = _fill_for(x.dtype, False)
    else:
        fill = False if x.dtype == torch.bool else 0
    return [MaskSpec(node, 0, d, fill, sym)]


def insert_masks(gm: fx.GraphModule, specs: list[MaskSpec], syms: list[Any]) -> list[fx.Node]:
    """Puts each mask in front of its op, reading one new 0-d int64 input per
    symbol (appended after the graph's inputs, in ``syms``'s order); returns
    those inputs."""
    g = gm.graph
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    sizes: dict[Any, fx.Node] = {}
    with g.inserting_after(placeholders[-1]):
        for k, s in enumerate(reversed(syms)):
            sizes[s] = g.placeholder(f"actual_size_{len(syms) - 1 - k}")
    # Placeholders inserted after the last one come out reversed; put them in order.
    inputs = [sizes[s] for s in syms]
    for spec in specs:
        node = spec.node
        x = node.args[spec.arg]
        xv = _val(x)
        assert isinstance(x, fx.Node) and isinstance(xv, torch.Tensor)
        with g.inserting_before(node):
            n = g.call_function(aten.sym_size.int, (x, spec.dim))
            idx = g.call_function(aten.arange.default, (n,), {"dtype": torch.int64, "device": xv.device})
            valid = g.call_function(aten.lt.Tensor, (idx, sizes[spec.sym]))
            shape = [n] + [1] * (xv.dim() - 1 - spec.dim)
            valid = g.call_function(aten.view.default, (valid, shape))
            fill = g.call_function(aten.scalar_tensor.default, (spec.fill,), {"dtype": xv.dtype, "device": xv.device})
            masked = g.call_function(aten.where.self, (valid, x, fill))
        masked.meta["val"] = xv  # same shape and dtype: a second mask of the same op reads it
        args = list(node.args)
        args[spec.arg] = masked
        node.args = tuple(args)
    g.lint()
    gm.recompile()
    return inputs
