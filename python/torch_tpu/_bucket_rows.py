"""Which ops treat the rows along a dynamic dim independently.

``_buckets.plan_buckets`` pads a symbol's dim to its bucket only when every
op of the graph keeps the actual rows first and unmixed (``why_rows_mix`` says
why not, naming the op); ``_bucket_masks`` then fixes the mixing ops it can.
"""

from __future__ import annotations

from typing import Any

import sympy
import torch
from torch import fx

__all__ = ["dims_of", "expr_of", "has_sym", "op_name", "prefix_slice", "val_of", "why_rows_mix"]

aten = torch.ops.aten

# Ops whose only use of a symbolic int is as a size (a padded size gives the
# padded result, whose first rows are the unpadded one).
_SIZE_OPS = {
    "view",
    "_unsafe_view",
    "reshape",
    "expand",
    "new_empty",
    "new_zeros",
    "new_ones",
    "new_full",
    "empty",
    "zeros",
    "ones",
    "full",
    "arange",
    "empty_strided",
}
_LAYOUT_OPS = {
    "t",
    "transpose",
    "permute",
    "unsqueeze",
    "squeeze",
    "alias",
    "detach",
    "clone",
    "contiguous",
    "_to_copy",
    "expand",
    "lift_fresh_copy",
}
_RESHAPES = {"view", "_unsafe_view", "reshape"}
# Size queries: the padded run sees padded sizes, as its shapes do (a use as a
# value is refused at the op that uses it).
_SIZE_QUERIES = {"sym_size", "sym_numel", "sym_stride", "sym_storage_offset"}
# Reductions and scans along the dims named by their ``dim`` argument.
_DIM_REDUCTIONS = {
    "sum",
    "mean",
    "amax",
    "amin",
    "max",
    "min",
    "argmax",
    "argmin",
    "var",
    "std",
    "var_mean",
    "std_mean",
    "_softmax",
    "_log_softmax",
    "_safe_softmax",
    "_softmax_backward_data",
    "_log_softmax_backward_data",
    "logsumexp",
    "any",
    "all",
    "prod",
    "norm",
    "linalg_vector_norm",
}
# Ops that are row-wise along dim 0 (the batch) of their tensors, and mix along the others.
_BATCH_ONLY = {
    "_transformer_encoder_layer_fwd",
    "_native_multi_head_attention",
    "convolution",
    "_native_batch_norm_legit_no_training",
    "max_pool2d_with_indices",
    "avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_avg_pool2d",
    "upsample_nearest2d",
    "upsample_bilinear2d",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_attention_math",
}
_MATMULS = {"mm", "addmm", "bmm", "baddbmm"}
# Ops whose values do not depend on their tensor argument's (only its shape, dtype and device).
_FRESH = {
    "empty_like",
    "zeros_like",
    "ones_like",
    "full_like",
    "new_empty",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_empty_strided",
    "fill",
    "zero",
}
# Scans along ``args[1]``: element i reads elements up to i only, so padding at the end is never read.
_SCANS = {"cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"}
# Elementwise given the element's index (which padding at the end keeps).
_POSITIONAL = {"where", "masked_fill", "threshold_backward", "clamp", "tril", "triu"}
_SELECTS = {"slice", "select", "narrow", "split", "split_with_sizes", "chunk", "unbind", "cat", "gather"}


def expr_of(size: Any) -> Any:
    return size.node.expr if isinstance(size, torch.SymInt) else sympy.Integer(int(size))


def dims_of(val: Any) -> list[Any] | None:
    return [expr_of(s) for s in val.shape] if isinstance(val, torch.Tensor) else None


def has_sym(expr: Any, sym: Any) -> bool:
    return sym in getattr(expr, "free_symbols", ())


def _linear_in(expr: Any, sym: Any) -> bool:
    """``expr`` is ``c * sym`` for a positive integer ``c``."""
    c = sympy.simplify(expr / sym)
    return bool(c.is_Integer and c > 0)


def val_of(arg: Any) -> Any:
    return arg.meta.get("val") if isinstance(arg, fx.Node) else None


def _size_arg(n: Any) -> Any:
    """An entry of a sizes argument (an int, or a node of a symbolic int) as an expression."""
    return expr_of(val_of(n) if isinstance(n, fx.Node) else n)


def _tensor_args(node: fx.Node) -> list[tuple[int, list[Any]]]:
    out = []
    for i, a in enumerate(node.args):
        for item in a if isinstance(a, (list, tuple)) else [a]:
            dims = dims_of(val_of(item))
            if dims is not None:
                out.append((i, dims))
    return out


def _sym_args(node: fx.Node, sym: Any) -> bool:
    """Whether a non-tensor argument is a symbolic int in ``sym``."""
    for a in [*node.args, *node.kwargs.values()]:
        for item in a if isinstance(a, (list, tuple)) else [a]:
            v = val_of(item)
            if isinstance(v, torch.SymInt) and has_sym(expr_of(v), sym):
                return True
    return False


def _norm_dims(dim: Any, rank: int) -> list[int] | None:
    if dim is None:
        return None
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims:
        return None  # sum(x, []) reduces every dim
    return [d % rank if rank else 0 for d in dims]


def _prefix(dims: list[Any], upto: int) -> Any:
    return sympy.Mul(*dims[:upto]) if upto else sympy.Integer(1)


def op_name(node: fx.Node) -> str | None:
    t = node.target
    return t._schema.name.split("::", 1)[1].rstrip("_") if isinstance(t, torch._ops.OpOverload) else None


def why_rows_mix(node: fx.Node, sym: Any, broken: set[fx.Node]) -> str | None:
    """Why ``node`` mixes rows along ``sym``, or None when it does not."""
    target = node.target
    if not isinstance(target, torch._ops.OpOverload):
        return None  # arithmetic on symbolic ints: it sees the padded size, as the shapes do
    name = target._schema.name.split("::", 1)[1].rstrip("_")
    label = f"{name}.{target._overloadname}"
    tensors = _tensor_args(node)
    carrying = [(i, d) for i, d in tensors if any(has_sym(e, sym) for e in d)]
    if name == "slice" and (prefix_slice(node, sym) or _whole_symbolic_slice(node)):
        return None
    if name == "slice_backward" and (_tail_slice_backward(node) or _off_dim_backward(node, sym)):
        return None
    if name == "select_backward" and _front_select_backward(node, sym):
        return None
    if _sym_args(node, sym) and name not in _SIZE_OPS:
        return f"{label} uses the size as a value"
    if not carrying or name in _SIZE_QUERIES:
        return None
    if target._schema.is_mutable:
        return f"{label} mutates an input"
    tags = set(target.tags)
    if torch.Tag.nondeterministic_seeded in tags:
        return f"{label} draws random numbers per row"
    if torch.Tag.pointwise in tags or name in _POSITIONAL or name in _FRESH:
        return None
    if name in _SCANS:
        return _scan_rowwise(node, sym, label)
    first = tensors[0][1] if tensors else []
    if name in _RESHAPES:
        # A reshape that only merges or splits whole factors keeps each row's (b, s, ...) index;
        # one that splits a symbolic factor keeps it only for a symbol that stays outermost.
        return None if node not in broken else _reshape_rowwise(first, dims_of(node.meta.get("val")), sym, label)
    if name in _LAYOUT_OPS or (name == "embedding" and carrying[0][0] == 1):
        return None
    if name in _MATMULS:
        a, b = (tensors[1][1], tensors[2][1]) if name.startswith(("addmm", "baddbmm")) else (first, tensors[1][1])
        return f"{label} contracts over the dynamic dim" if has_sym(a[-1], sym) or has_sym(b[-2], sym) else None
    if name in _BATCH_ONLY:
        ok = all(not has_sym(e, sym) for _, d in carrying for e in d[1:])
        return None if ok else f"{label} mixes a dynamic dim other than the batch"
    if name in _DIM_REDUCTIONS or name in _SELECTS or name in ("native_layer_norm", "index"):
        return _along_rowwise(node, name, first, sym, label)
    return f"{label} is not known to be row-wise"


def _reshape_rowwise(src: list[Any], out: list[Any] | None, sym: Any, label: str) -> str | None:
    """A reshape keeps rows when the symbol stays the outermost factor of
    one dim on both sides (batch-major), at the same flat offset."""
    if out is None:
        return f"{label} has no shape"
    i = [k for k, e in enumerate(src) if has_sym(e, sym)]
    j = [k for k, e in enumerate(out) if has_sym(e, sym)]
    if len(i) != 1 or len(j) != 1 or not _linear_in(src[i[0]], sym) or not _linear_in(out[j[0]], sym):
        return f"{label} merges the dynamic dim"
    if sympy.simplify(_prefix(src, i[0]) - _prefix(out, j[0])) != 0:
        return f"{label} moves the dynamic dim"
    return None


def _along_rowwise(node: fx.Node, name: str, first: list[Any], sym: Any, label: str) -> str | None:
    """Ops that reduce, select or join along named dims: those dims must not
    carry the symbol (nor, for a full reduction, any dim)."""
    rank = len(first)
    if name == "native_layer_norm":
        shape = node.args[1]
        dims = list(range(rank - len(shape), rank))  # type: ignore[arg-type]
        extra = [dims_of(val_of(a)) for a in node.args[2:4]]
        if any(d is not None and any(has_sym(e, sym) for e in d) for d in extra):
            return f"{label} has a dynamic weight"
    elif name == "index":
        dims = [k for k, ix in enumerate(node.args[1]) if ix is not None]  # type: ignore[arg-type]
    elif name == "cat":
        out = dims_of(node.meta.get("val")) or []
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        d = int(dim) % max(len(out), 1)  # type: ignore[call-overload]
        parts = [dims_of(val_of(a)) for a in node.args[0]]  # type: ignore[union-attr]
        # Padding at the end of the last part stays at the end; before any other part it would not.
        joined = [p for p in parts[:-1] if p and len(p) == len(out) and has_sym(p[d], sym)]
        return f"{label} joins along the dynamic dim" if joined else None
    else:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if name in ("split", "split_with_sizes", "chunk"):
            dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        elif name in ("_softmax_backward_data", "_log_softmax_backward_data"):
            dim = node.args[2]
        dims = _norm_dims(dim, rank)  # type: ignore[arg-type]
        if dims is None:
            dims = list(range(rank))
    if any(has_sym(first[d], sym) for d in dims):
        if name == "slice" and _whole_slice(node, first, dims[0]):
            return None
        if name == "select" and isinstance(node.args[2], int) and node.args[2] >= 0:
            return None  # x[:, k]: the same row, padded or not
        return f"{label} works along the dynamic dim"
    return None


def _tail_slice_backward(node: fx.Node) -> bool:
    """The gradient of ``x[k:]`` (k static, at least 0, step 1): ``grad``
    behind k zeros, so the actual rows stay first."""
    sizes, dim, start, end, step = node.args[1:6]
    if not (isinstance(start, int) and start >= 0) or step != 1 or not isinstance(dim, int):
        return False
    if isinstance(end, int):
        return end >= 2**62
    v, n = val_of(end), sizes[dim]  # type: ignore[index]
    return v is not None and sympy.simplify(expr_of(v) - _size_arg(n)) == 0


def _scan_rowwise(node: fx.Node, sym: Any, label: str) -> str | None:
    """A scan along the symbol's own dim (``s`` or ``s + k``, not a merged
    ``b*s``, whose later rows would read earlier rows' padding)."""
    first = dims_of(val_of(node.args[0])) or []
    if not first:
        return None
    e = first[int(node.args[1]) % len(first)]  # type: ignore[call-overload]
    if not has_sym(e, sym) or sympy.simplify(e - sym).is_Integer:
        return None
    return f"{label} scans along a dim that merges the dynamic one"


def _off_dim_backward(node: fx.Node, sym: Any) -> bool:
    """The gradient of a slice along a dim the symbol is not in (Llama's
    ``rotate_half``, along the head dim): the symbol is only a size there."""
    sizes, dim = node.args[1:3]
    if not isinstance(dim, int) or any(isinstance(val_of(a), torch.SymInt) for a in node.args[3:]):
        return False
    n = sizes[dim]  # type: ignore[index]
    return not has_sym(_size_arg(n), sym)


def _front_select_backward(node: fx.Node, sym: Any) -> bool:
    """The gradient of ``x[:, k]``: zeros with ``grad`` at row k. Padded, the
    row is the same when k counts from the front or its dim is static."""
    sizes, dim, index = node.args[1:4]
    if not isinstance(dim, int) or not isinstance(index, int):
        return False
    if index >= 0:
        return True
    n = sizes[dim]  # type: ignore[index]
    return not has_sym(_size_arg(n), sym)


def _whole_symbolic_slice(node: fx.Node) -> bool:
    """``x[:n]`` where ``n`` is ``x``'s own (symbolic) size: all of it."""
    x = dims_of(val_of(node.args[0]))
    dim = node.args[1] if len(node.args) > 1 else 0
    if (
        x is None
        or not isinstance(dim, int)
        or not isinstance(val_of(node.args[3] if len(node.args) > 3 else None), torch.SymInt)
    ):
        return False
    return _whole_slice(node, x, dim % len(x))


def prefix_slice(node: fx.Node, sym: Any) -> bool:
    """``x[:s]`` along a dim of ``x`` that does not carry ``sym`` (a table's
    first rows): the padded run takes the first rows of the bucket, whose
    first are the actual ones (the bucket stays within the guards' bound)."""
    x = dims_of(val_of(node.args[0]))
    dim, start, end, step = ([*node.args[1:], None, None, None, None])[:4]
    dim = 0 if dim is None else dim
    if x is None or start not in (None, 0) or step not in (None, 1) or not isinstance(dim, int):
        return False
    v = val_of(end)
    return isinstance(v, torch.SymInt) and expr_of(v) == sym and x[dim % len(x)].is_Integer


def _whole_slice(node: fx.Node, dims: list[Any], d: int) -> bool:
    """``x[k:]`` along dim ``d`` (k static, at least 0; step 1; the end at or
    past the size): the actual rows stay first, shifted by k."""
    start, end, step = ([*node.args[2:], None, None, None])[:3]
    if not (start is None or (isinstance(start, int) and start >= 0)) or step not in (None, 1):
        return False
    if end is None or (isinstance(end, int) and end >= 2**62):
        return True
    v = val_of(end)
    return v is not None and sympy.simplify(expr_of(v) - dims[d]) == 0
