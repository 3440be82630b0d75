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

from torch_tpu._bucket_rewrites import IndexSpec, JoinSpec, MeanSpec, TailSpec, ValueSpec, packable, rewrite, size_node
from torch_tpu._bucket_rewrites import static as _static
from torch_tpu._bucket_rows import expr_of, op_name, val_of

__all__ = ["MaskSpec", "Spec", "index_masks", "insert_masks", "layouts", "mask_specs", "merged_ok", "pack_outputs"]


aten = torch.ops.aten

# A dim as its factors, outermost first: a merged [b*s] is (b, s).
Layout = list[tuple[Any, ...]]

_RESHAPES = {"view", "_unsafe_view", "reshape"}
_SAME_LAYOUT = {"clone", "contiguous", "alias", "detach", "_to_copy", "lift_fresh_copy"}
# Reductions along ``args[1]`` whose padded entries must hold ``fill`` first.
_NEG_FILL = {"_softmax", "_safe_softmax", "_log_softmax", "logsumexp", "amax", "max", "argmax"}
_POS_FILL = {"amin", "min", "argmin"}
_ZERO_FILL = {"sum", "any"}


def _plain(dims: list[Any]) -> Layout:
    return [(e,) for e in dims]


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
        al, av = out.get(a), val_of(a)
        if al is None or not isinstance(av, torch.Tensor) or av.dim() != len(dims):
            continue
        for k, e in enumerate(dims):
            if len(al[k]) > 1 and sympy.simplify(expr_of(av.shape[k]) - e) == 0:
                lay[k] = al[k]
    return lay


def layouts(gm: fx.GraphModule, given: dict[str, Layout] | None = None) -> tuple[dict[fx.Node, Layout], set[fx.Node]]:
    """Per tensor-valued node, each dim's factors; and the reshapes that split
    a symbolic factor (their outputs' dims count as plain factors).
    ``given``: inputs' layouts by name (a backward graph's saved activations,
    as the forward graph made them)."""
    out: dict[fx.Node, Layout] = {}
    broken: set[fx.Node] = set()
    for n in gm.graph.nodes:
        v = val_of(n)
        lay = (given or {}).get(n.name) if n.op == "placeholder" else None
        if lay is not None and isinstance(v, torch.Tensor) and len(lay) == v.dim():
            out[n] = lay
            continue
        if n.op == "call_function" and n.target is operator.getitem:
            src = n.args[0]
            if isinstance(v, torch.Tensor) and isinstance(src, fx.Node):
                out[n] = _rowwise_layout([expr_of(e) for e in v.shape], src.all_input_nodes, out)
            continue
        if not isinstance(v, torch.Tensor):
            continue
        dims = [expr_of(s) for s in v.shape]
        name = op_name(n) if n.op == "call_function" else None
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
    """Mask argument ``arg`` of ``node`` (its result when ``arg`` is -1) along
    ``dim`` with ``fill`` where the index reaches the actual size of ``sym``.
    ``factors``: the dim's factors (a merged ``[b*s]`` is ``(b, s)``), of
    which ``sym`` is one."""

    node: fx.Node
    arg: int
    dim: int
    fill: float | int | bool
    sym: Any
    factors: tuple[Any, ...]
    # For an argument that is a list (``index``'s indices): which entry.
    item: int = -1

    def target(self) -> fx.Node:
        """The masked value."""
        if self.arg < 0:
            return self.node
        a = self.node.args[self.arg]
        return a[self.item] if self.item >= 0 else a  # type: ignore[index,return-value]


# What makes one op exact on padded inputs: a mask, or a rewrite (``_bucket_rewrites``).
Spec = MaskSpec | JoinSpec | TailSpec | MeanSpec | IndexSpec | ValueSpec


def _fill_for(dtype: torch.dtype, low: bool) -> float | int | bool:
    if dtype.is_floating_point:
        return -math.inf if low else math.inf
    if dtype == torch.bool:
        return not low
    info = torch.iinfo(dtype)
    return info.min if low else info.max


def _zero(dtype: torch.dtype) -> float | int | bool:
    return False if dtype == torch.bool else 0


class _Masker:
    """Finds the masks of one symbol, given the graph's layouts."""

    def __init__(self, lays: dict[fx.Node, Layout], sym: Any, sized: set[Any]) -> None:
        self.lays, self.sym, self.sized = lays, sym, sized

    def factors(self, arg: Any, dim: int) -> tuple[Any, ...] | None:
        """The factors of ``arg``'s dim when ``sym`` is one of them and every
        symbolic factor is a bare symbol whose padded size an input holds."""
        lay = self.lays.get(arg) if isinstance(arg, fx.Node) else None
        if lay is None or not -len(lay) <= dim < len(lay):
            return None
        fs = tuple(f for f in lay[dim] if f != 1) or (sympy.Integer(1),)  # size-1 factors hold no rows
        if len(fs) == 1 and isinstance(fs[0], sympy.Add) and fs[0].free_symbols == {self.sym}:
            # A dim of s + k (after a cat along s): its actual size is s's plus k.
            return fs if all(_static(a) or a == self.sym for a in fs[0].args) else None
        if sum(1 for f in fs if f == self.sym) != 1:
            return None
        if any(not _static(f) and f not in self.sized for f in fs):
            return None
        return fs

    def carries(self, arg: Any, dim: int) -> bool:
        v = val_of(arg)
        return isinstance(v, torch.Tensor) and self.sym in getattr(expr_of(v.shape[dim]), "free_symbols", ())

    def spec(self, node: fx.Node, arg: int, dim: int, fill: Any) -> MaskSpec | None:
        target = node if arg < 0 else node.args[arg]
        v = val_of(target)
        if not isinstance(v, torch.Tensor):
            return None
        dim %= max(v.dim(), 1)
        fs = self.factors(target, dim)
        return None if fs is None else MaskSpec(node, arg, dim, fill, self.sym, fs)

    def specs(self, node: fx.Node) -> list[Spec] | None:
        name = op_name(node)
        if name is None or not node.args:
            return None
        values = self._values(node)
        if values:
            return values
        if name == "cat":
            return self._join(node)
        if name in ("select", "slice"):
            return self._tail(node, name)
        if name == "index":
            return self._index(node)
        if name == "index_put":
            return self._index_put(node)
        if name in ("mm", "bmm", "addmm", "baddbmm"):
            return self._matmul(node, name)
        if name in ("nll_loss_forward", "nll_loss_backward"):
            return self._nll(node, name)
        if name in ("_softmax_backward_data", "_log_softmax_backward_data"):
            grad, out = val_of(node.args[0]), val_of(node.args[1])
            dim = int(node.args[2])  # type: ignore[call-overload]
            if not isinstance(grad, torch.Tensor) or not self.carries(node.args[0], dim):
                return None
            masks = [self.spec(node, 0, dim, 0)]
            if name == "_softmax_backward_data" and isinstance(out, torch.Tensor):
                masks.append(self.spec(node, 1, dim, 0))
            return None if None in masks else masks  # type: ignore[return-value]
        if name == "constant_pad_nd":
            return self._pad(node)
        if name == "native_layer_norm_backward":
            return self._layer_norm_backward(node)
        if name == "embedding_dense_backward":
            return self._embedding_backward(node)
        return self._reduction(node, name)

    def _embedding_backward(self, node: fx.Node) -> list[MaskSpec] | None:
        """Rows of the gradient are summed into the rows their indices name:
        a padded row adds zeros to row 0."""
        ids = val_of(node.args[1])
        if not isinstance(ids, torch.Tensor):
            return None
        masks = []
        for d in range(ids.dim()):
            if self.carries(node.args[1], d):
                for arg in (0, 1):
                    m = self.spec(node, arg, d, 0)
                    if m is None:
                        return None
                    masks.append(m)
        return masks

    def _layer_norm_backward(self, node: fx.Node) -> list[MaskSpec] | None:
        """The weight and bias gradients sum over the rows: padded rows get
        zeros in the gradient, the input, the mean and the rstd (so the
        normalised input is 0 there, whatever the padding held)."""
        x = val_of(node.args[1])
        norm = len(node.args[2])  # type: ignore[arg-type]
        if not isinstance(x, torch.Tensor):
            return None
        if any(self.carries(node.args[1], d) for d in range(x.dim() - norm, x.dim())):
            return None  # normalised along the symbol
        masks = []
        for d in range(x.dim() - norm):
            if not self.carries(node.args[1], d):
                continue
            for arg in (0, 1, 3, 4):
                m = self.spec(node, arg, d, 0)
                if m is None:
                    return None
                masks.append(m)
        return masks

    def _join(self, node: fx.Node) -> list[Spec] | None:
        out = val_of(node)
        if not isinstance(out, torch.Tensor):
            return None
        dim = int(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % out.dim()  # type: ignore[call-overload]
        exprs = []
        for part in node.args[0]:  # type: ignore[union-attr]
            v = val_of(part)
            if not isinstance(v, torch.Tensor) or v.dim() != out.dim():
                return None
            exprs.append(expr_of(v.shape[dim]))
        syms = {f for e in exprs for f in getattr(e, "free_symbols", ())}
        if not all(packable(e, self.sized) for e in exprs):
            return None
        return [JoinSpec(node, dim, tuple(sorted(syms, key=str)))]

    def _values(self, node: fx.Node) -> list[Spec] | None:
        """An elementwise op reading a size of the symbol as a value."""
        if torch.Tag.pointwise not in node.target.tags:  # type: ignore[union-attr]
            return None
        specs: list[Spec] = []
        for k, a in enumerate(node.args):
            v = val_of(a)
            if isinstance(v, torch.SymInt) and self.sym in getattr(expr_of(v), "free_symbols", ()):
                e = expr_of(v)
                if not packable(e, self.sized) or not hasattr(node.target.overloadpacket, "Tensor"):  # type: ignore[union-attr]
                    return None
                specs.append(ValueSpec(node, k, tuple(sorted(e.free_symbols, key=str))))
        return specs

    def _index(self, node: fx.Node) -> list[Spec] | None:
        """``x[..., ix]`` along the symbol's own dim of ``x``: integer indices only."""
        specs: list[Spec] = []
        for d, ix in enumerate(node.args[1]):  # type: ignore[arg-type]
            if ix is None or not self.carries(node.args[0], d):
                continue
            v = val_of(ix)
            if not isinstance(v, torch.Tensor) or v.dtype in (torch.bool, torch.uint8):
                return None
            if self.factors(node.args[0], d) != (self.sym,):
                return None
            specs.append(IndexSpec(node, d, (self.sym,)))
        return specs or None

    def _index_put(self, node: fx.Node) -> list[Spec] | None:
        """``out[..., ix] = v`` into a tensor padded along the symbol (the
        backward of ``x[..., ix]``): the indices count from the actual size.
        Indices or values padded themselves would write their padded rows
        somewhere real, so they must not carry the symbol."""
        for a in [node.args[2], *[ix for ix in node.args[1] if ix is not None]]:  # type: ignore[union-attr]
            v = val_of(a)
            if not isinstance(v, torch.Tensor) or any(self.carries(a, d) for d in range(v.dim())):
                return None
        return self._index(node)

    def _tail(self, node: fx.Node, name: str) -> list[Spec] | None:
        """``x[:, -k]`` and ``x[:, -k:]`` along the symbol's own dim."""
        x, out = val_of(node.args[0]), val_of(node)
        dim, start, end, step = ([*node.args[1:], None, None, None])[:4]
        if not isinstance(x, torch.Tensor) or not isinstance(dim, int) or not isinstance(start, int) or start >= 0:
            return None
        dim %= x.dim()
        if self.factors(node.args[0], dim) != (self.sym,):
            return None
        if name == "slice":
            tail = end is None or (isinstance(end, int) and end >= 2**62)
            if not tail or step not in (None, 1) or expr_of(out.shape[dim]) != -start:
                return None
        return [TailSpec(node, dim, start, (self.sym,))]

    def _matmul(self, node: fx.Node, name: str) -> list[MaskSpec] | None:
        i, j = (1, 2) if name in ("addmm", "baddbmm") else (0, 1)
        a, b = val_of(node.args[i]), val_of(node.args[j])
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return None
        if name in ("addmm", "baddbmm") and isinstance(val_of(node.args[0]), torch.Tensor):
            bias = val_of(node.args[0])
            if any(self.sym in getattr(expr_of(s), "free_symbols", ()) for s in bias.shape[-1:]):
                return None  # the bias varies along an output dim, not the contracted one
        fa, fb = self.factors(node.args[i], a.dim() - 1), self.factors(node.args[j], b.dim() - 2)
        if fa is None or fb is None or fa != fb:
            return None
        return [MaskSpec(node, i, a.dim() - 1, 0, self.sym, fa), MaskSpec(node, j, b.dim() - 2, 0, self.sym, fb)]

    def _nll(self, node: fx.Node, name: str) -> list[MaskSpec] | None:
        """Padded rows get ``ignore_index`` as their target: they drop out of
        the mean and get no gradient. Padding along the classes is read only
        where a real target points, so it needs no mask."""
        t = 1 if name == "nll_loss_forward" else 2
        weight, ignore = node.args[t + 1], node.args[t + 3]
        if weight is not None and self.carries(weight, 0):
            return None
        if not self.carries(node.args[t], 0):
            return []
        m = self.spec(node, t, 0, int(ignore))  # type: ignore[call-overload]
        return None if m is None else [m]

    def _pad(self, node: fx.Node) -> list[MaskSpec] | None:
        """``pad(x, (0, k), value)`` along the symbol: padding only at the
        high end, so ``value`` belongs from the actual size on."""
        x = val_of(node.args[0])
        pads = list(node.args[1])  # type: ignore[call-overload]
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
        if not isinstance(x, torch.Tensor):
            return None
        masks = []
        for k in range(len(pads) // 2):
            dim = x.dim() - 1 - k
            if not self.carries(node.args[0], dim):
                continue
            if pads[2 * k] != 0 or self.factors(node.args[0], dim) != (self.sym,):
                return None
            masks.append(MaskSpec(node, -1, dim, value, self.sym, (self.sym,)))
        return masks

    def _reduction(self, node: fx.Node, name: str) -> list[Spec] | None:
        x = val_of(node.args[0])
        reducing = _NEG_FILL | _POS_FILL | _ZERO_FILL | {"mean"}
        if name not in reducing or not isinstance(x, torch.Tensor) or x.dim() == 0:
            return None
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dim] if isinstance(dim, int) else list(dim) if isinstance(dim, (list, tuple)) else []
        if not dims or not all(isinstance(d, int) for d in dims):
            return None  # a full reduction, or a reduction against another tensor
        along = [d % x.dim() for d in dims if self.carries(node.args[0], d % x.dim())]
        if len(along) != 1:
            return None
        if name in _NEG_FILL:
            fill = _fill_for(x.dtype, True)
        elif name in _POS_FILL:
            fill = _fill_for(x.dtype, False)
        else:
            fill = _zero(x.dtype)
        m = self.spec(node, 0, along[0], fill)
        if m is None:
            return None
        if name != "mean":
            return [m]
        counted = [expr_of(x.shape[d % x.dim()]) for d in dims]
        syms = {f for e in counted for f in getattr(e, "free_symbols", ())}
        if not all(packable(e, self.sized) for e in counted):
            return None
        return [m, MeanSpec(node, tuple(sorted(syms, key=str)))]  # zeros in the padding, then sum / count


# Ops that read rows at the values of an index argument (its position).
_INDEXED = {"index": 1, "embedding": 1, "index_select": 2, "gather": 2}


def index_masks(node: fx.Node, sym: Any, lays: dict[fx.Node, Layout], sized: set[Any]) -> list[MaskSpec] | None:
    """Zeros in the padded rows of an index tensor padded along ``sym``: a
    padded ``arange(s)`` holds positions past a table, or past a dim kept
    exact, which the index check would refuse. Row 0 is read there instead
    (padded rows are never read back). None when a mask cannot be built."""
    pos = _INDEXED.get(op_name(node) or "")
    if pos is None or len(node.args) <= pos:
        return []
    masker = _Masker(lays, sym, sized)
    arg = node.args[pos]
    entries = list(enumerate(arg)) if isinstance(arg, (list, tuple)) else [(-1, arg)]
    masks = []
    for item, ix in entries:
        v = val_of(ix)
        if not isinstance(v, torch.Tensor) or v.dtype == torch.bool:
            continue
        for d in range(v.dim()):
            if masker.carries(ix, d):
                fs = masker.factors(ix, d)
                if fs is None:
                    return None
                masks.append(MaskSpec(node, pos, d, 0, sym, fs, item))
    return masks


def mask_specs(node: fx.Node, sym: Any, lays: dict[fx.Node, Layout], sized: set[Any]) -> list[Spec] | None:
    """The masks that make ``node`` exact on inputs padded along ``sym``, or
    None when no mask does (the symbol then stays exact). ``sized``: the
    symbols whose padded size an input's dim holds."""
    return _Masker(lays, sym, sized).specs(node)


def _valid(g: fx.Graph, spec: MaskSpec, n: Any, sizes: dict[Any, fx.Node], padded: dict[Any, Any], rank: int) -> Any:
    """``arange(n) < actual`` along the spec's dim, for a merged dim per
    factor, shaped to broadcast against a tensor of ``rank`` dims."""
    fs = spec.factors
    device = val_of(spec.target()).device
    if len(fs) == 1:
        idx = g.call_function(aten.arange.default, (n,), {"dtype": torch.int64, "device": device})
        valid = g.call_function(aten.lt.Tensor, (idx, size_node(g, fs[0], sizes)))
    else:
        dims = [int(f) if _static(f) else padded[f] for f in fs]
        k = fs.index(spec.sym)
        idx = g.call_function(aten.arange.default, (dims[k],), {"dtype": torch.int64, "device": device})
        idx = g.call_function(aten.view.default, (idx, [1] * k + [dims[k]] + [1] * (len(fs) - 1 - k)))
        valid = g.call_function(aten.lt.Tensor, (idx, sizes[spec.sym]))
        valid = g.call_function(aten.expand.default, (valid, dims))
        valid = g.call_function(aten.clone.default, (valid,))
        valid = g.call_function(aten.view.default, (valid, [n]))
    return g.call_function(aten.view.default, (valid, [n] + [1] * (rank - 1 - spec.dim)))


def insert_masks(
    gm: fx.GraphModule,
    specs: list[Spec],
    syms: list[Any],
    where_sized: dict[Any, tuple[fx.Node, int | None]],
) -> list[fx.Node]:
    """Puts each mask in front of its op (or behind it, for its result),
    reading one new 0-d int64 input per symbol (appended after the graph's
    inputs, in ``syms``'s order); returns those inputs. ``where_sized``: an
    input and dim whose padded size is the symbol's bucket (no dim: an int
    input that is that size)."""
    g = gm.graph
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    sizes: dict[Any, fx.Node] = {}
    with g.inserting_after(placeholders[-1]):
        # Each lands right after the last input, before the one made before it: make them in reverse.
        for k, s in enumerate(reversed(syms)):
            sizes[s] = g.placeholder(f"actual_size_{len(syms) - 1 - k}")
    first_op = next(n for n in g.nodes if n.op != "placeholder")
    padded: dict[Any, Any] = {}
    with g.inserting_before(first_op):
        for s, (node, dim) in where_sized.items():
            padded[s] = node if dim is None else g.call_function(aten.sym_size.int, (node, dim))
    for spec in specs:
        if not isinstance(spec, MaskSpec):
            continue
        node = spec.node
        x = spec.target()
        xv = val_of(x)
        assert isinstance(x, fx.Node) and isinstance(xv, torch.Tensor)
        point = g.inserting_before(node.next) if spec.arg < 0 else g.inserting_before(node)
        with point:
            n = g.call_function(aten.sym_size.int, (x, spec.dim))
            valid = _valid(g, spec, n, sizes, padded, xv.dim())
            fill = g.call_function(aten.scalar_tensor.default, (spec.fill,), {"dtype": xv.dtype, "device": xv.device})
            masked = g.call_function(aten.where.self, (valid, x, fill))
        masked.meta["val"] = xv  # same shape and dtype: a second mask of the same op reads it
        if spec.arg < 0:
            # Every use but the mask's own (its size read and its where).
            keep = {masked, n}
            node.replace_all_uses_with(masked, delete_user_cb=lambda u, keep=keep: u not in keep)
        else:
            args = list(node.args)
            if spec.item >= 0:
                args[spec.arg] = [masked if k == spec.item else a for k, a in enumerate(args[spec.arg])]  # type: ignore[arg-type]
            else:
                args[spec.arg] = masked
            node.args = tuple(args)
    # After the masks: a mean's sum reads its masked input.
    rewrite(g, [spec for spec in specs if not isinstance(spec, MaskSpec)], sizes)
    g.lint()
    gm.recompile()
    return [sizes[s] for s in syms]


def pack_outputs(gm: fx.GraphModule, which: list[int], sizes: dict[Any, fx.Node]) -> None:
    """Replaces each of these outputs by its actual elements packed row-major
    at the front of a flat buffer of the padded size (a gather with indices
    computed from the actual sizes: one program per bucket still), so the
    caller gets a contiguous tensor of the actual shape over it, as CPU
    PyTorch would give, instead of a strided view into the padding. The
    padded results are returned too, after the graph's own outputs, in
    ``which``'s order."""
    g = gm.graph
    out_node = next(n for n in g.nodes if n.op == "output")
    results = list(out_node.args[0])
    for k in which:
        o = results[k]
        v = val_of(o)
        with g.inserting_before(out_node):
            total = g.call_function(aten.sym_numel.default, (o,))
            idx = g.call_function(aten.arange.default, (total,), {"dtype": torch.int64, "device": v.device})
            rem, src, stride = idx, None, None
            for d in reversed(range(v.dim())):
                actual = size_node(g, expr_of(v.shape[d]), sizes)
                if d > 0:
                    # Indices are never negative: truncating division (plain integer division in
                    # XLA) is floor division, and the remainder follows from it.
                    q = g.call_function(aten.div.Tensor_mode, (rem, actual), {"rounding_mode": "trunc"})
                    coord = g.call_function(aten.sub.Tensor, (rem, g.call_function(aten.mul.Tensor, (q, actual))))
                    rem = q
                else:
                    coord = rem
                term = coord if stride is None else g.call_function(aten.mul.Tensor, (coord, stride))
                src = term if src is None else g.call_function(aten.add.Tensor, (src, term))
                padded_dim = g.call_function(aten.sym_size.int, (o, d))
                stride = padded_dim if stride is None else g.call_function(operator.mul, (stride, padded_dim))
            top = g.call_function(operator.sub, (total, 1))
            src = g.call_function(aten.clamp.default, (src, 0, top))  # past the actual elements: any
            # reshape, not view: an output may be a transposed view (attention's per-head layout).
            flat = g.call_function(aten.reshape.default, (o, [-1]))
            results[k] = g.call_function(aten.index.Tensor, (flat, [src]))
    # The padded results too, after the graph's own: a bucketed graph fed one takes it as it is.
    results.extend(o for k, o in enumerate(list(out_node.args[0])) if k in which)
    out_node.args = (tuple(results),)
    g.lint()
    gm.recompile()
