"""Every lowered op family against CPU PyTorch, in every eager mode.

Cases come from tables (op name, callable, dtypes, input specs); each test id
names the op, dtype and input shapes/layouts, and each failure message names
the op again. The CPU reference is computed in the same dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from helpers import (
    ALL,
    BF16,
    BOOL,
    F16,
    F32,
    FLOATS,
    I32,
    I64,
    INTS,
    NUMERIC,
    TPU,
    S,
    Spec,
    assert_same,
    case_id,
    make,
    make_leaf_pair,
    make_pair,
    to_tpu,
)

pytestmark = pytest.mark.usefixtures("mode")


def _run_both(fn: Callable[..., Any], specs: Sequence[Spec], dtypes: Sequence[torch.dtype]) -> tuple[Any, Any]:
    pairs = [make_pair(s, d) for s, d in zip(specs, dtypes)]
    expected = fn(*[p[0] for p in pairs])
    actual = fn(*[p[1] for p in pairs])
    return actual, expected


def _check_grads(
    what: str,
    fn: Callable[..., torch.Tensor],
    specs: Sequence[Spec],
    dtypes: Sequence[torch.dtype],
    grad: Sequence[bool],
    scale: float = 1.0,
    extra: Sequence[torch.Tensor] = (),
) -> None:
    """Runs ``fn`` forward and backward on CPU and tpu; compares the output and the
    gradients of the inputs marked in ``grad``. ``extra`` are CPU tensors passed
    after the inputs without gradients (targets, indices)."""
    cpu_in, tpu_in, cpu_leaves, tpu_leaves = [], [], [], []
    for spec, dtype, g in zip(specs, dtypes, grad):
        if g:
            cl, cv, tl, tv = make_leaf_pair(spec, dtype)
            cpu_leaves.append(cl)
            tpu_leaves.append(tl)
        else:
            cv, tv = make_pair(spec, dtype)
        cpu_in.append(cv)
        tpu_in.append(tv)
    cpu_out = fn(*cpu_in, *extra)
    tpu_out = fn(*tpu_in, *to_tpu(list(extra)))
    assert_same(tpu_out, cpu_out, f"{what} forward", scale)
    weight = make(cpu_out.shape, cpu_out.dtype, -1.0, 1.0)
    (cpu_out * weight).sum().backward()
    (tpu_out * weight.to(TPU)).sum().backward()
    for i, (cl, tl) in enumerate(zip(cpu_leaves, tpu_leaves)):
        assert tl.grad is not None, f"{what}: no gradient for input {i}"
        assert_same(tl.grad, cl.grad, f"{what} grad of input {i}", scale)


# --- elementwise unary --------------------------------------------------------------

POS = {"low": 0.1, "high": 5.0}
UNIT = {"low": -0.9, "high": 0.9}

# name, callable, dtypes, value range
UNARY: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], Sequence[torch.dtype], dict[str, float]]] = [
    ("neg", torch.neg, NUMERIC, {}),
    ("abs", torch.abs, NUMERIC, {}),
    ("exp", torch.exp, FLOATS + (I32,), {}),
    ("exp2", torch.exp2, FLOATS, {}),
    ("expm1", torch.expm1, FLOATS, {"low": -2, "high": 2}),
    ("log", torch.log, FLOATS, POS),
    ("log_int", torch.log, (I64,), {"low": 1, "high": 9}),
    ("log2", torch.log2, FLOATS, POS),
    ("log10", torch.log10, FLOATS, POS),
    ("log1p", torch.log1p, FLOATS, {"low": -0.5, "high": 5}),
    ("sqrt", torch.sqrt, FLOATS, POS),
    ("rsqrt", torch.rsqrt, FLOATS, POS),
    ("sin", torch.sin, FLOATS, {}),
    ("cos", torch.cos, FLOATS, {}),
    ("tan", torch.tan, FLOATS, {"low": -1.2, "high": 1.2}),
    ("tanh", torch.tanh, FLOATS, {}),
    ("sigmoid", torch.sigmoid, FLOATS, {"low": -6, "high": 6}),
    ("erf", torch.erf, FLOATS, {}),
    ("erfinv", torch.erfinv, FLOATS, UNIT),
    ("asin", torch.asin, FLOATS, UNIT),
    ("acos", torch.acos, FLOATS, UNIT),
    ("atan", torch.atan, FLOATS, {}),
    ("sinh", torch.sinh, FLOATS, {}),
    ("cosh", torch.cosh, FLOATS, {}),
    ("asinh", torch.asinh, FLOATS, {}),
    ("acosh", torch.acosh, FLOATS, {"low": 1.1, "high": 5}),
    ("atanh", torch.atanh, FLOATS, UNIT),
    ("lgamma", torch.lgamma, FLOATS, POS),
    ("digamma", torch.digamma, FLOATS, {"low": 0.5, "high": 5}),
    ("reciprocal", torch.reciprocal, FLOATS, {"nonzero": True}),
    ("floor", torch.floor, FLOATS + INTS, {}),
    ("ceil", torch.ceil, FLOATS, {}),
    ("round", torch.round, FLOATS, {}),
    ("round_decimals", lambda x: torch.round(x, decimals=1), (F32,), {}),
    ("trunc", torch.trunc, FLOATS, {}),
    ("frac", torch.frac, FLOATS, {}),
    ("sign", torch.sign, NUMERIC, {}),
    ("square", torch.square, NUMERIC, {}),
    ("bitwise_not", torch.bitwise_not, INTS + (BOOL,), {}),
    ("logical_not", torch.logical_not, ALL, {}),
    ("isnan", torch.isnan, FLOATS, {}),
    ("isfinite", torch.isfinite, FLOATS, {}),
    ("relu", torch.relu, NUMERIC, {}),
    ("gelu", F.gelu, FLOATS, {}),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), FLOATS, {}),
    ("silu", F.silu, FLOATS, {}),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.1), FLOATS, {}),
    ("elu", F.elu, FLOATS, {}),
    ("hardtanh", F.hardtanh, FLOATS, {}),
    ("pow_2", lambda x: x**2, NUMERIC, {}),
    ("pow_half", lambda x: x**0.5, FLOATS, POS),
    ("pow_neg", lambda x: x**-1.5, FLOATS, POS),
    ("rpow", lambda x: 2**x, FLOATS, {}),
]

SHAPES_F32 = [
    S(()),
    S((5,)),
    S((3, 4)),
    S((3, 4), "t"),
    S((2, 3, 4), "step"),
    S((3, 4), "expand"),
    S((2, 3), "offset"),
]
SHAPES_OTHER = [S(()), S((3, 4)), S((2, 3, 4), "step")]


def _unary_cases() -> list[Any]:
    cases = []
    for name, fn, dtypes, rng in UNARY:
        for dtype in dtypes:
            for spec in SHAPES_F32 if dtype == F32 else SHAPES_OTHER:
                spec = Spec(spec.shape, spec.layout, **rng)
                cases.append(pytest.param(name, fn, dtype, spec, id=case_id(name, dtype, spec)))
    return cases


@pytest.mark.parametrize(("name", "fn", "dtype", "spec"), _unary_cases())
def test_unary(name: str, fn: Callable[..., torch.Tensor], dtype: torch.dtype, spec: Spec) -> None:
    actual, expected = _run_both(fn, [spec], [dtype])
    assert_same(actual, expected, f"{name}({dtype}, {spec})", scale=2.0)


INPLACE_UNARY = [
    ("neg_", lambda x: x.neg_()),
    ("exp_", lambda x: x.exp_()),
    ("relu_", lambda x: x.relu_()),
    ("sigmoid_", lambda x: x.sigmoid_()),
    ("clamp_", lambda x: x.clamp_(-1, 1)),
    ("mul_scalar_", lambda x: x.mul_(3)),
    ("add_scalar_", lambda x: x.add_(1.5)),
]


@pytest.mark.parametrize(("name", "fn"), INPLACE_UNARY, ids=[c[0] for c in INPLACE_UNARY])
@pytest.mark.parametrize("layout", ["contig", "t", "step"])
def test_unary_inplace(name: str, fn: Callable[..., torch.Tensor], layout: str) -> None:
    """In-place ops write through views to the base, and return self."""
    spec = S((3, 4), layout)
    cpu, tpu = make_pair(spec, F32)
    cpu_base, tpu_base = cpu._base if cpu._base is not None else cpu, tpu._base if tpu._base is not None else tpu
    r_cpu, r_tpu = fn(cpu), fn(tpu)
    assert r_tpu is tpu, f"{name} did not return self"
    assert r_cpu is cpu
    assert_same(tpu, cpu, f"{name} on {spec}")
    assert_same(tpu_base, cpu_base, f"{name} on {spec}: base")


# --- elementwise binary -------------------------------------------------------------

# name, callable, dtypes, range of a, range of b
BINARY: list[tuple[str, Callable[..., torch.Tensor], Sequence[torch.dtype], dict[str, Any], dict[str, Any]]] = [
    ("add", torch.add, ALL, {}, {}),
    ("add_alpha", lambda a, b: torch.add(a, b, alpha=2), NUMERIC, {}, {}),
    ("sub", torch.sub, NUMERIC, {}, {}),
    ("sub_alpha", lambda a, b: torch.sub(a, b, alpha=0.5), FLOATS, {}, {}),
    ("mul", torch.mul, ALL, {}, {}),
    ("div", torch.div, NUMERIC, {}, {"nonzero": True}),
    ("div_floor", lambda a, b: torch.div(a, b, rounding_mode="floor"), NUMERIC, {}, {"nonzero": True}),
    ("div_trunc", lambda a, b: torch.div(a, b, rounding_mode="trunc"), NUMERIC, {}, {"nonzero": True}),
    ("floor_divide", torch.floor_divide, NUMERIC, {}, {"nonzero": True}),
    ("remainder", torch.remainder, NUMERIC, {}, {"nonzero": True}),
    ("fmod", torch.fmod, NUMERIC, {}, {"nonzero": True}),
    ("pow", torch.pow, FLOATS, {"low": 0.5, "high": 2}, {"low": -2, "high": 2}),
    ("pow_int", torch.pow, INTS, {"low": -3, "high": 3}, {"low": 0, "high": 3}),
    ("maximum", torch.maximum, ALL, {}, {}),
    ("minimum", torch.minimum, ALL, {}, {}),
    ("fmax", torch.fmax, FLOATS, {}, {}),
    ("fmin", torch.fmin, FLOATS, {}, {}),
    ("atan2", torch.atan2, FLOATS, {}, {}),
    ("bitwise_and", torch.bitwise_and, INTS + (BOOL,), {}, {}),
    ("bitwise_or", torch.bitwise_or, INTS + (BOOL,), {}, {}),
    ("bitwise_xor", torch.bitwise_xor, INTS + (BOOL,), {}, {}),
    ("logical_and", torch.logical_and, ALL, {}, {}),
    ("logical_or", torch.logical_or, ALL, {}, {}),
    ("logical_xor", torch.logical_xor, ALL, {}, {}),
    ("eq", torch.eq, ALL, {"low": -2, "high": 2}, {"low": -2, "high": 2}),
    ("ne", torch.ne, ALL, {"low": -2, "high": 2}, {"low": -2, "high": 2}),
    ("lt", torch.lt, ALL, {}, {}),
    ("le", torch.le, ALL, {"low": -2, "high": 2}, {"low": -2, "high": 2}),
    ("gt", torch.gt, ALL, {}, {}),
    ("ge", torch.ge, ALL, {"low": -2, "high": 2}, {"low": -2, "high": 2}),
]

PAIRS_F32 = [
    ((3, 4), "contig", (3, 4), "contig"),
    ((3, 4), "contig", (4,), "contig"),
    ((2, 1, 4), "contig", (3, 1), "contig"),
    ((), "contig", (3, 4), "contig"),
    ((5,), "contig", (), "contig"),
    ((4, 3), "t", (4, 3), "step"),
    ((3, 4), "expand", (3, 4), "offset"),
]
PAIRS_OTHER = [((3, 4), "contig", (4,), "contig"), ((4, 3), "t", (4, 3), "step")]


def _binary_cases() -> list[Any]:
    cases = []
    for name, fn, dtypes, ra, rb in BINARY:
        for dtype in dtypes:
            for sa, la, sb, lb in PAIRS_F32 if dtype == F32 else PAIRS_OTHER:
                a, b = Spec(sa, la, **ra), Spec(sb, lb, **rb)
                cases.append(pytest.param(name, fn, dtype, a, b, id=case_id(name, dtype, a, b)))
    return cases


@pytest.mark.parametrize(("name", "fn", "dtype", "a", "b"), _binary_cases())
def test_binary(name: str, fn: Callable[..., torch.Tensor], dtype: torch.dtype, a: Spec, b: Spec) -> None:
    actual, expected = _run_both(fn, [a, b], [dtype, dtype])
    assert_same(actual, expected, f"{name}({dtype}, {a}, {b})", scale=2.0)


PROMOTION_PAIRS = [(F32, I64), (I32, I64), (BF16, F32), (F16, BF16), (BOOL, I32), (BOOL, F16), (I64, BF16), (I32, F16)]
PROMOTION_OPS: list[tuple[str, Callable[..., torch.Tensor]]] = [
    ("add", torch.add),
    ("mul", torch.mul),
    ("div", torch.div),
    ("gt", torch.gt),
    ("maximum", torch.maximum),
]


@pytest.mark.parametrize(("name", "fn"), PROMOTION_OPS, ids=[n for n, _ in PROMOTION_OPS])
@pytest.mark.parametrize(("da", "db"), PROMOTION_PAIRS, ids=[case_id(a, b) for a, b in PROMOTION_PAIRS])
def test_type_promotion(name: str, fn: Callable[..., torch.Tensor], da: torch.dtype, db: torch.dtype) -> None:
    b_spec = S((4,), nonzero=True) if name == "div" else S((4,))
    actual, expected = _run_both(fn, [S((3, 4)), b_spec], [da, db])
    assert_same(actual, expected, f"{name}({da}, {db})", scale=2.0)


# 0-dim tensors take part in promotion only by category.
ZERO_DIM_PAIRS = [(F16, F32), (I32, I64), (I32, F32), (BF16, F16), (BOOL, I64), (F32, F32)]


@pytest.mark.parametrize(("da", "db"), ZERO_DIM_PAIRS, ids=[case_id(a, b) for a, b in ZERO_DIM_PAIRS])
@pytest.mark.parametrize("scalar_on", ["tpu", "cpu"])
def test_zero_dim_promotion(da: torch.dtype, db: torch.dtype, scalar_on: str) -> None:
    """A tensor with a 0-dim tensor (on tpu, or a CPU scalar tensor, which CUDA also accepts)."""
    x = make((3, 4), da)
    s = make((), db)
    sd = s.to(TPU) if scalar_on == "tpu" else s
    for name, fn in [("add", torch.add), ("mul", torch.mul), ("lt", torch.lt)]:
        assert_same(fn(x.to(TPU), sd), fn(x, s), f"{name}({da} tensor, {db} 0-dim on {scalar_on})", scale=2.0)
        assert_same(fn(sd, x.to(TPU)), fn(s, x), f"{name}({db} 0-dim on {scalar_on}, {da} tensor)", scale=2.0)


# name, callable of (tensor) using a Python scalar, dtypes
SCALAR_OPS: list[tuple[str, Callable[[torch.Tensor], Any], Sequence[torch.dtype]]] = [
    ("add_int", lambda x: x + 2, NUMERIC),
    ("add_float", lambda x: x + 2.5, NUMERIC),
    ("add_bool", lambda x: x + True, NUMERIC + (BOOL,)),
    ("radd_float", lambda x: 1.5 + x, NUMERIC),
    ("rsub_int", lambda x: 3 - x, NUMERIC),
    ("rsub_float", lambda x: 0.5 - x, NUMERIC),
    ("mul_float", lambda x: x * 2.5, ALL),
    ("mul_int", lambda x: x * 3, ALL),
    ("div_int", lambda x: x / 3, NUMERIC),
    ("rdiv_float", lambda x: 2.0 / x, FLOATS),
    ("floordiv_int", lambda x: x // 2, NUMERIC),
    ("mod_int", lambda x: x % 3, NUMERIC),
    ("pow_int", lambda x: x**3, NUMERIC),
    ("rpow_float", lambda x: 1.5**x, FLOATS),
    ("gt_float", lambda x: x > 0.5, NUMERIC),
    ("eq_int", lambda x: x == 1, ALL),
    ("ne_bool", lambda x: x != False, ALL),  # noqa: E712 - the op under test
    ("and_int", lambda x: x & 1, INTS),
    ("or_bool", lambda x: x | True, (BOOL,)),
    ("maximum_scalar", lambda x: torch.clamp_min(x, 0), NUMERIC),
]


def _scalar_cases() -> list[Any]:
    return [
        pytest.param(name, fn, dtype, id=case_id(name, dtype)) for name, fn, dtypes in SCALAR_OPS for dtype in dtypes
    ]


@pytest.mark.parametrize(("name", "fn", "dtype"), _scalar_cases())
def test_python_scalars(name: str, fn: Callable[[torch.Tensor], Any], dtype: torch.dtype) -> None:
    nonzero = name.startswith("rdiv")
    cpu, tpu = make_pair(S((3, 4), nonzero=nonzero), dtype)
    assert_same(fn(tpu), fn(cpu), f"{name}({dtype})", scale=2.0)


@pytest.mark.parametrize("dtype", [F32, BF16, I64])
def test_binary_inplace_and_out(dtype: torch.dtype) -> None:
    a, ta = make_pair(S((3, 4)), dtype)
    b, tb = make_pair(S((4,)), dtype)
    a.add_(b)
    ta.add_(tb)
    assert_same(ta, a, "add_ broadcast")
    a.mul_(b)
    ta.mul_(tb)
    assert_same(ta, a, "mul_")
    out_cpu = torch.empty(3, 4, dtype=dtype)
    out_tpu = torch.empty(3, 4, dtype=dtype, device=TPU)
    torch.sub(a, b, out=out_cpu)
    torch.sub(ta, tb, out=out_tpu)
    assert_same(out_tpu, out_cpu, "sub out=")
    # out= of the wrong size is resized, as on CPU
    out_cpu = torch.empty(0, dtype=dtype)
    out_tpu = torch.empty(0, dtype=dtype, device=TPU)
    torch.mul(a, b, out=out_cpu)
    torch.mul(ta, tb, out=out_tpu)
    assert_same(out_tpu, out_cpu, "mul out= resized from 0 elements")


def test_inplace_promotion_error() -> None:
    """An int tensor cannot hold a float result in place, on CPU and on tpu."""
    x = torch.ones(3, dtype=I64)
    with pytest.raises(RuntimeError) as cpu_err:
        x.add_(1.5 * torch.ones(3))
    with pytest.raises(RuntimeError) as tpu_err:
        x.to(TPU).add_(1.5 * torch.ones(3, device=TPU))
    assert "can't be cast" in str(cpu_err.value)
    assert "can't be cast" in str(tpu_err.value), str(tpu_err.value)


# --- where, clamp, ternary -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL, ids=[case_id(d) for d in ALL])
def test_where(dtype: torch.dtype) -> None:
    cond, tcond = make_pair(S((3, 1)), BOOL)
    a, ta = make_pair(S((3, 4)), dtype)
    b, tb = make_pair(S((4,), "step"), dtype)
    assert_same(torch.where(tcond, ta, tb), torch.where(cond, a, b), f"where({dtype}) broadcast")
    other = True if dtype == BOOL else 2
    assert_same(torch.where(tcond, ta, other), torch.where(cond, a, other), f"where({dtype}, scalar other)")
    assert_same(torch.where(tcond, 0.5, ta), torch.where(cond, 0.5, a), f"where(float scalar self, {dtype})")
    c2, tc2 = make_pair(S((3, 4), "t"), BOOL)
    assert_same(ta.masked_fill(tc2, 1), a.masked_fill(c2, 1), f"masked_fill({dtype})")


def test_where_promotion() -> None:
    cond, tcond = make_pair(S((3, 4)), BOOL)
    a, ta = make_pair(S((3, 4)), F32)
    b, tb = make_pair(S((3, 4)), I64)
    assert_same(torch.where(tcond, ta, tb), torch.where(cond, a, b), "where(f32, i64)")
    c, tc = make_pair(S((3, 4)), BF16)
    assert_same(torch.where(tcond, tc, ta), torch.where(cond, c, a), "where(bf16, f32)")


CLAMPS: list[tuple[str, Callable[..., torch.Tensor], Sequence[torch.dtype]]] = [
    ("clamp", lambda x: torch.clamp(x, -1, 1), NUMERIC),
    ("clamp_min", lambda x: torch.clamp(x, min=-0.5), FLOATS),
    ("clamp_max", lambda x: torch.clamp(x, max=0.5), FLOATS),
    ("clamp_float_bounds_on_int", lambda x: torch.clamp(x, -1.5, 1.5), INTS),
    ("clamp_min_fn", lambda x: torch.clamp_min(x, 1), NUMERIC),
    ("clamp_max_fn", lambda x: torch.clamp_max(x, 1), NUMERIC),
]


@pytest.mark.parametrize(
    ("name", "fn", "dtype"),
    [pytest.param(n, f, d, id=case_id(n, d)) for n, f, ds in CLAMPS for d in ds],
)
def test_clamp(name: str, fn: Callable[..., torch.Tensor], dtype: torch.dtype) -> None:
    for spec in [S((3, 4)), S((4, 3), "t")]:
        actual, expected = _run_both(fn, [spec], [dtype])
        assert_same(actual, expected, f"{name}({dtype}, {spec})")


@pytest.mark.parametrize("dtype", [F32, BF16, I64], ids=case_id)
def test_clamp_tensor_bounds(dtype: torch.dtype) -> None:
    x, tx = make_pair(S((3, 4)), dtype)
    lo, tlo = make_pair(S((4,), low=-2, high=0), dtype)
    hi, thi = make_pair(S((3, 1), low=0, high=2), dtype)
    assert_same(torch.clamp(tx, tlo, thi), torch.clamp(x, lo, hi), f"clamp({dtype}, tensor bounds)")
    assert_same(torch.clamp(tx, min=tlo), torch.clamp(x, min=lo), f"clamp({dtype}, tensor min)")


TERNARY: list[tuple[str, Callable[..., torch.Tensor], list[Spec]]] = [
    ("addcmul", lambda a, b, c: torch.addcmul(a, b, c, value=0.5), [S((3, 4)), S((4,)), S((3, 1))]),
    ("addcdiv", lambda a, b, c: torch.addcdiv(a, b, c, value=2), [S((3, 4)), S((3, 4), "t"), S((4,), nonzero=True)]),
    ("lerp_scalar", lambda a, b, c: torch.lerp(a, b, 0.3), [S((3, 4)), S((3, 4), "step"), S(())]),
    ("lerp_tensor", torch.lerp, [S((3, 4)), S((4,)), S((3, 4), low=0, high=1)]),
]


@pytest.mark.parametrize(
    ("name", "fn", "specs", "dtype"),
    [pytest.param(n, f, s, d, id=case_id(n, d)) for n, f, s in TERNARY for d in FLOATS],
)
def test_ternary(name: str, fn: Callable[..., torch.Tensor], specs: list[Spec], dtype: torch.dtype) -> None:
    actual, expected = _run_both(fn, specs, [dtype] * 3)
    assert_same(actual, expected, f"{name}({dtype})", scale=2.0)


# --- casts, fills, copies, factories -----------------------------------------------------


@pytest.mark.parametrize("src", ALL, ids=case_id)
@pytest.mark.parametrize("dst", ALL, ids=case_id)
def test_cast(src: torch.dtype, dst: torch.dtype) -> None:
    # values in int range with fractions (truncation toward zero) and exact zeros (for bool)
    x = make((3, 4), src, -100, 100)
    if src.is_floating_point:
        x = torch.where(torch.rand(3, 4) < 0.3, torch.zeros((), dtype=src), x)
    tx = x.to(TPU)
    assert_same(tx.to(dst), x.to(dst), f"cast {src} -> {dst}")
    # and from a non-contiguous view
    assert_same(tx.t().to(dst), x.t().to(dst), f"cast {src} -> {dst} of a transposed view")


@pytest.mark.parametrize("dtype", ALL, ids=case_id)
def test_fill_zero(dtype: torch.dtype) -> None:
    value = True if dtype == BOOL else (3 if not dtype.is_floating_point else 2.5)
    x, tx = make_pair(S((3, 4)), dtype)
    assert_same(tx.fill_(value), x.fill_(value), f"fill_({dtype}, {value})")
    x, tx = make_pair(S((3, 4)), dtype)
    assert_same(tx.zero_(), x.zero_(), f"zero_({dtype})")
    x, tx = make_pair(S((3, 4)), dtype)
    v = make((), dtype)
    assert_same(tx.fill_(v.to(TPU)), x.fill_(v), f"fill_({dtype}, 0-dim tpu tensor)")
    assert_same(torch.zeros_like(tx), torch.zeros_like(x), f"zeros_like({dtype})")
    assert_same(torch.ones_like(tx), torch.ones_like(x), f"ones_like({dtype})")
    assert_same(torch.full_like(tx, value), torch.full_like(x, value), f"full_like({dtype})")


COPIES: list[tuple[str, Spec, torch.dtype, Spec, torch.dtype]] = [
    ("same", S((3, 4)), F32, S((3, 4)), F32),
    ("to_bf16", S((3, 4)), BF16, S((3, 4)), F32),
    ("i64_to_f32", S((3, 4)), F32, S((3, 4)), I64),
    ("f32_to_i32", S((3, 4)), I32, S((3, 4)), F32),
    ("broadcast", S((3, 4)), F32, S((4,)), F32),
    ("into_transposed", S((3, 4), "t"), F32, S((3, 4)), F32),
    ("into_step", S((3, 4), "step"), F16, S((3, 4), "t"), F16),
    ("from_expanded", S((3, 4), "offset"), I64, S((3, 4), "expand"), I64),
    ("bool_to_f32", S((3, 4)), F32, S((3, 4)), BOOL),
]


@pytest.mark.parametrize(("name", "dst", "ddt", "src", "sdt"), COPIES, ids=[c[0] for c in COPIES])
def test_copy_(name: str, dst: Spec, ddt: torch.dtype, src: Spec, sdt: torch.dtype) -> None:
    d, td = make_pair(dst, ddt)
    s, ts = make_pair(src, sdt)
    d.copy_(s)
    td.copy_(ts)
    assert_same(td, d, f"copy_ {name}")
    if td._base is not None:
        assert_same(td._base, d._base, f"copy_ {name}: base")


def test_copy_across_devices() -> None:
    d, td = make_pair(S((3, 4), "t"), F32)
    s = make((3, 4), F32)
    td.copy_(s)  # cpu -> tpu view
    d.copy_(s)
    assert_same(td, d, "copy_ cpu -> tpu view")
    out = torch.zeros(4, 3)
    out.t().copy_(td)  # tpu -> cpu view
    torch.testing.assert_close(out, d.t().contiguous(), msg=lambda m: f"copy_ tpu -> cpu view: {m}")
    h = torch.zeros(3, 4, dtype=BF16)
    h.copy_(td)  # tpu -> cpu with a cast
    torch.testing.assert_close(h, d.to(BF16), msg=lambda m: f"copy_ tpu f32 -> cpu bf16: {m}")


@pytest.mark.parametrize("dtype", ALL, ids=case_id)
def test_clone_contiguous(dtype: torch.dtype) -> None:
    for spec in [S((3, 4), "t"), S((2, 3, 4), "step"), S((3, 4), "expand")]:
        x, tx = make_pair(spec, dtype)
        assert_same(tx.clone(), x.clone(), f"clone({dtype}, {spec})")
        assert_same(tx.contiguous(), x.contiguous(), f"contiguous({dtype}, {spec})")
        assert tx.contiguous().is_contiguous()


FACTORIES: list[tuple[str, Callable[..., torch.Tensor]]] = [
    ("arange_end", lambda dev: torch.arange(10, device=dev)),
    ("arange_start_step", lambda dev: torch.arange(1, 20, 3, device=dev)),
    ("arange_negative_step", lambda dev: torch.arange(5, -5, -2, device=dev)),
    ("arange_float", lambda dev: torch.arange(0, 1, 0.1, device=dev)),
    ("arange_f16", lambda dev: torch.arange(0, 8, dtype=F16, device=dev)),
    ("arange_i32", lambda dev: torch.arange(3, 9, dtype=I32, device=dev)),
    ("full_f32", lambda dev: torch.full((2, 3), 7.5, device=dev)),
    ("full_int", lambda dev: torch.full((2, 3), 7, device=dev)),
    ("full_bf16", lambda dev: torch.full((4,), -1.25, dtype=BF16, device=dev)),
    ("full_bool", lambda dev: torch.full((2, 2), True, device=dev)),
    ("zeros", lambda dev: torch.zeros(2, 3, device=dev)),
    ("zeros_i64", lambda dev: torch.zeros(5, dtype=I64, device=dev)),
    ("ones", lambda dev: torch.ones(3, 2, device=dev)),
    ("ones_f16", lambda dev: torch.ones(3, dtype=F16, device=dev)),
    ("ones_bool", lambda dev: torch.ones(3, dtype=BOOL, device=dev)),
    ("zeros_0d", lambda dev: torch.zeros((), device=dev)),
    ("empty_fill", lambda dev: torch.empty(2, 3, device=dev).fill_(4.0)),
    ("tensor_list", lambda dev: torch.tensor([[1.5, 2.0], [3.0, -4.0]], device=dev)),
    ("tensor_int_list", lambda dev: torch.tensor([1, 2, 3], device=dev)),
    ("new_ones", lambda dev: torch.zeros(2, device=dev).new_ones(3, 2)),
    ("new_full", lambda dev: torch.zeros(2, dtype=I32, device=dev).new_full((2, 2), 5)),
]


@pytest.mark.parametrize(("name", "fn"), FACTORIES, ids=[n for n, _ in FACTORIES])
def test_factories(name: str, fn: Callable[[str], torch.Tensor]) -> None:
    assert_same(fn(TPU), fn("cpu"), name)


# --- reductions -------------------------------------------------------------------------

# name, callable(x, dim, keepdim), dtypes, accepts a tuple of dims, accepts dim=None
REDUCTIONS: list[tuple[str, Callable[..., Any], Sequence[torch.dtype], bool, bool]] = [
    ("sum", lambda x, d, k: x.sum() if d is None else x.sum(d, keepdim=k), ALL, True, True),
    (
        "sum_f32",
        lambda x, d, k: x.sum(dtype=F32) if d is None else x.sum(d, keepdim=k, dtype=F32),
        (BF16, I32),
        True,
        True,
    ),
    ("mean", lambda x, d, k: x.mean() if d is None else x.mean(d, keepdim=k), FLOATS, True, True),
    ("amax", lambda x, d, k: x.amax() if d is None else x.amax(d, keepdim=k), NUMERIC, True, True),
    ("amin", lambda x, d, k: x.amin() if d is None else x.amin(d, keepdim=k), NUMERIC, True, True),
    ("max", lambda x, d, k: x.max() if d is None else tuple(x.max(d, keepdim=k)), NUMERIC + (BOOL,), False, True),
    ("min", lambda x, d, k: x.min() if d is None else tuple(x.min(d, keepdim=k)), NUMERIC, False, True),
    ("argmax", lambda x, d, k: x.argmax() if d is None else x.argmax(d, keepdim=k), NUMERIC, False, True),
    ("argmin", lambda x, d, k: x.argmin() if d is None else x.argmin(d, keepdim=k), NUMERIC, False, True),
    ("prod", lambda x, d, k: x.prod() if d is None else x.prod(d, keepdim=k), NUMERIC, False, True),
    ("var", lambda x, d, k: x.var() if d is None else x.var(d, keepdim=k), FLOATS, True, True),
    ("var_biased", lambda x, d, k: x.var(d, keepdim=k, correction=0), (F32,), True, True),
    ("std", lambda x, d, k: x.std() if d is None else x.std(d, keepdim=k), FLOATS, True, True),
    ("std_biased", lambda x, d, k: x.std(d, keepdim=k, unbiased=False), (F32,), True, True),
    ("logsumexp", lambda x, d, k: torch.logsumexp(x, d, keepdim=k), (F32,), True, False),
]

DIMS_3D: list[tuple[Any, bool]] = [(None, False), (0, False), (-1, True), (1, False), ((0, 2), False), ((0, 2), True)]


def _reduction_cases() -> list[Any]:
    cases = []
    for name, fn, dtypes, tuple_dims, none_dim in REDUCTIONS:
        # small ranges so integer max/min/argmax see ties (the first index wins, as on CPU);
        # prod stays small
        rng = {"low": 0.5, "high": 1.5} if name == "prod" else {"low": -3, "high": 3}
        for dtype in dtypes:
            if dtype == F32:
                specs = [S((3, 4, 5), **rng), S((3, 5, 4), "t", **rng), S((2, 3, 4), "step", **rng)]
                dims = DIMS_3D
            else:
                specs = [S((3, 4, 5), **rng)]
                dims = [(None, False), (-1, True), ((0, 2), False)]
            for spec in specs:
                for dim, keep in dims:
                    if (isinstance(dim, tuple) and not tuple_dims) or (dim is None and not none_dim):
                        continue
                    cases.append(
                        pytest.param(
                            name,
                            fn,
                            dtype,
                            spec,
                            dim,
                            keep,
                            id=case_id(name, dtype, spec, f"dim={dim}", f"keep={keep}"),
                        )
                    )
        if F32 in dtypes:
            for spec, dim in [(S((7,)), 0), (S(()), None), (S((), low=1, high=2), 0)]:
                if (dim is None and not none_dim) or (not spec.shape and name.startswith(("var", "std"))):
                    continue
                cases.append(pytest.param(name, fn, F32, spec, dim, False, id=case_id(name, F32, spec, f"dim={dim}")))
    return cases


@pytest.mark.parametrize(("name", "fn", "dtype", "spec", "dim", "keepdim"), _reduction_cases())
def test_reduction(name: str, fn: Callable[..., Any], dtype: torch.dtype, spec: Spec, dim: Any, keepdim: bool) -> None:
    actual, expected = _run_both(lambda x: fn(x, dim, keepdim), [spec], [dtype])
    # bf16/f16 sums of many terms: allow for a different summation order
    assert_same(actual, expected, f"{name}({dtype}, {spec}, dim={dim}, keepdim={keepdim})", scale=4.0)


# --- matmul family --------------------------------------------------------------------------

MATMULS: list[tuple[str, Callable[..., torch.Tensor], list[Spec], Sequence[torch.dtype]]] = [
    ("mm", torch.mm, [S((3, 5)), S((5, 4))], FLOATS + INTS),
    ("mm_t_a", torch.mm, [S((3, 5), "t"), S((5, 4))], (F32, BF16)),
    ("mm_t_b", torch.mm, [S((3, 5)), S((5, 4), "t")], (F32,)),
    ("mm_step", torch.mm, [S((3, 5), "step"), S((5, 4), "offset")], (F32,)),
    ("mm_1x1", torch.mm, [S((1, 1)), S((1, 1))], (F32,)),
    ("bmm", torch.bmm, [S((2, 3, 5)), S((2, 5, 4))], FLOATS),
    ("bmm_t", torch.bmm, [S((2, 3, 5), "t"), S((2, 5, 4), "t")], (F32,)),
    ("addmm", lambda c, a, b: torch.addmm(c, a, b), [S((4,)), S((3, 5)), S((5, 4))], FLOATS),
    (
        "addmm_scaled",
        lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2),
        [S((3, 4)), S((3, 5)), S((5, 4), "t")],
        (F32,),
    ),
    ("matmul_dot", torch.matmul, [S((5,)), S((5,))], (F32, I64)),
    ("matmul_vm", torch.matmul, [S((5,)), S((5, 4))], (F32,)),
    ("matmul_mv", torch.matmul, [S((3, 5)), S((5,))], (F32,)),
    ("matmul_3d_2d", torch.matmul, [S((2, 3, 5)), S((5, 4))], FLOATS),
    ("matmul_batch_broadcast", torch.matmul, [S((2, 1, 3, 4)), S((3, 4, 2))], (F32,)),
    ("matmul_expanded", torch.matmul, [S((2, 3, 5), "expand"), S((5, 4), "t")], (F32,)),
    ("linear", F.linear, [S((2, 3, 5)), S((4, 5)), S((4,))], FLOATS),
    ("einsum", lambda a, b: torch.einsum("bij,bjk->bik", a, b), [S((2, 3, 5)), S((2, 5, 4))], (F32,)),
]


@pytest.mark.parametrize(
    ("name", "fn", "specs", "dtype"),
    [pytest.param(n, f, s, d, id=case_id(n, d)) for n, f, s, ds in MATMULS for d in ds],
)
def test_matmul(name: str, fn: Callable[..., torch.Tensor], specs: list[Spec], dtype: torch.dtype) -> None:
    actual, expected = _run_both(fn, specs, [dtype] * len(specs))
    assert_same(actual, expected, f"{name}({dtype})", scale=10.0)


@pytest.mark.parametrize(
    ("name", "fn", "specs"),
    [
        pytest.param(n, f, s, id=n)
        for n, f, s, _ in MATMULS
        if n in ("mm_t_a", "bmm", "addmm", "matmul_batch_broadcast", "linear")
    ],
)
def test_matmul_backward(name: str, fn: Callable[..., torch.Tensor], specs: list[Spec]) -> None:
    _check_grads(name, fn, specs, [F32] * len(specs), [True] * len(specs), scale=10.0)


# --- softmax, losses ----------------------------------------------------------------------

SOFTMAX_CASES = [(S((4, 7)), -1), (S((4, 7)), 0), (S((2, 3, 5), "t"), 1), (S((2, 3, 9), "step"), -1), (S((6,)), 0)]


@pytest.mark.parametrize("fname", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS, ids=case_id)
@pytest.mark.parametrize(("spec", "dim"), SOFTMAX_CASES, ids=[case_id(s, d) for s, d in SOFTMAX_CASES])
def test_softmax(fname: str, dtype: torch.dtype, spec: Spec, dim: int) -> None:
    fn = getattr(F, fname)
    actual, expected = _run_both(lambda x: fn(x, dim), [spec], [dtype])
    assert_same(actual, expected, f"{fname}({dtype}, {spec}, dim={dim})", scale=2.0)


@pytest.mark.parametrize("fname", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("spec", "dim"), SOFTMAX_CASES, ids=[case_id(s, d) for s, d in SOFTMAX_CASES])
def test_softmax_backward(fname: str, spec: Spec, dim: int) -> None:
    fn = getattr(F, fname)
    _check_grads(f"{fname} dim={dim}", lambda x: fn(x, dim), [spec], [F32], [True], scale=2.0)


def test_softmax_dtype_arg() -> None:
    x, tx = make_pair(S((3, 5)), BF16)
    assert_same(F.softmax(tx, -1, dtype=F32), F.softmax(x, -1, dtype=F32), "softmax(bf16, dtype=f32)")
    assert_same(F.log_softmax(tx, 0, dtype=F32), F.log_softmax(x, 0, dtype=F32), "log_softmax(bf16, dtype=f32)")


def _targets(n: int, c: int, with_ignored: bool = False) -> torch.Tensor:
    t = torch.randint(0, c, (n,))
    if with_ignored:
        t[::3] = 2
    return t


LOSSES: list[tuple[str, Callable[..., torch.Tensor], Spec, Callable[[], list[torch.Tensor]]]] = [
    ("nll_mean", lambda x, t: F.nll_loss(x, t), S((6, 5)), lambda: [_targets(6, 5)]),
    ("nll_sum", lambda x, t: F.nll_loss(x, t, reduction="sum"), S((6, 5)), lambda: [_targets(6, 5)]),
    ("nll_none", lambda x, t: F.nll_loss(x, t, reduction="none"), S((6, 5)), lambda: [_targets(6, 5)]),
    (
        "nll_weight",
        lambda x, t, w: F.nll_loss(x, t, weight=w),
        S((6, 5)),
        lambda: [_targets(6, 5), torch.rand(5) + 0.5],
    ),
    ("nll_ignore_index", lambda x, t: F.nll_loss(x, t, ignore_index=2), S((6, 5)), lambda: [_targets(6, 5, True)]),
    ("nll_1d", lambda x, t: F.nll_loss(x, t), S((5,)), lambda: [torch.tensor(3)]),
    ("nll_log_softmax_t", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), S((6, 5), "t"), lambda: [_targets(6, 5)]),
    ("cross_entropy", lambda x, t: F.cross_entropy(x, t), S((6, 5)), lambda: [_targets(6, 5)]),
    ("cross_entropy_sum", lambda x, t: F.cross_entropy(x, t, reduction="sum"), S((8, 3)), lambda: [_targets(8, 3)]),
    (
        "cross_entropy_smoothing",
        lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
        S((6, 5)),
        lambda: [_targets(6, 5)],
    ),
    (
        "cross_entropy_ignore",
        lambda x, t: F.cross_entropy(x, t, ignore_index=2),
        S((6, 5)),
        lambda: [_targets(6, 5, True)],
    ),
    (
        "cross_entropy_probs",
        lambda x, p: F.cross_entropy(x, p),
        S((6, 5)),
        lambda: [torch.softmax(torch.randn(6, 5), 1)],
    ),
]


@pytest.mark.parametrize(("name", "fn", "spec", "extra"), LOSSES, ids=[c[0] for c in LOSSES])
def test_loss(name: str, fn: Callable[..., torch.Tensor], spec: Spec, extra: Callable[[], list[torch.Tensor]]) -> None:
    _check_grads(name, fn, [spec], [F32], [True], scale=2.0, extra=extra())


# --- shape ops: cat, stack, index_select, gather, scatter, embedding ---------------------------------

CATS: list[tuple[str, Callable[..., torch.Tensor], list[Spec]]] = [
    ("cat0", lambda *xs: torch.cat(xs, 0), [S((2, 3)), S((4, 3)), S((1, 3))]),
    ("cat1", lambda *xs: torch.cat(xs, 1), [S((2, 3)), S((2, 1)), S((2, 2), "t")]),
    ("cat_neg", lambda *xs: torch.cat(xs, -1), [S((2, 2, 3), "step"), S((2, 2, 2))]),
    ("cat_1d", lambda *xs: torch.cat(xs), [S((3,)), S((5,)), S(())]),
    ("stack0", lambda *xs: torch.stack(xs, 0), [S((2, 3)), S((2, 3), "offset"), S((2, 3), "expand")]),
    ("stack_last", lambda *xs: torch.stack(xs, -1), [S((2, 3)), S((2, 3), "t")]),
]


@pytest.mark.parametrize(
    ("name", "fn", "specs", "dtype"),
    [
        pytest.param(n, f, s, d, id=case_id(n, d))
        for n, f, s in CATS
        for d in (ALL if n in ("cat0", "stack0") else (F32,))
    ],
)
def test_cat_stack(name: str, fn: Callable[..., torch.Tensor], specs: list[Spec], dtype: torch.dtype) -> None:
    if name == "cat_1d":
        specs = [s for s in specs if s.shape]  # a 0-dim tensor cannot be concatenated
    actual, expected = _run_both(fn, specs, [dtype] * len(specs))
    assert_same(actual, expected, f"{name}({dtype})")


def test_cat_promotion_and_backward() -> None:
    a, ta = make_pair(S((2, 3)), F32)
    b, tb = make_pair(S((2, 3)), BF16)
    c, tc = make_pair(S((2, 3)), I64)
    assert_same(torch.cat([ta, tb, tc]), torch.cat([a, b, c]), "cat(f32, bf16, i64)")
    _check_grads(
        "cat backward", lambda x, y: torch.cat([x, y], 1), [S((2, 3)), S((2, 2), "t")], [F32, F32], [True, True]
    )
    _check_grads(
        "stack backward", lambda x, y: torch.stack([x, y]), [S((2, 3)), S((2, 3), "step")], [F32, F32], [True, True]
    )


@pytest.mark.parametrize("dtype", [F32, BF16, I64, BOOL], ids=case_id)
@pytest.mark.parametrize("index_dtype", [I64, I32], ids=case_id)
def test_index_select(dtype: torch.dtype, index_dtype: torch.dtype) -> None:
    for spec, dim, idx in [
        (S((5, 3)), 0, [4, 0, 0, 2]),
        (S((3, 5), "t"), 1, [1, 1, 0]),
        (S((2, 3, 4), "step"), -1, [3, 0]),
        (S((6,)), 0, [5]),
    ]:
        x, tx = make_pair(spec, dtype)
        i = torch.tensor(idx, dtype=index_dtype)
        what = f"index_select({dtype}, {spec}, dim={dim}, index {index_dtype})"
        assert_same(torch.index_select(tx, dim, i.to(TPU)), torch.index_select(x, dim, i), what)


GATHERS = [(S((3, 4)), 0, (2, 4)), (S((3, 4)), 1, (3, 2)), (S((4, 3), "t"), 1, (3, 5)), (S((2, 3, 4)), -1, (2, 3, 2))]


@pytest.mark.parametrize("dtype", [F32, BF16, I32], ids=case_id)
@pytest.mark.parametrize(("spec", "dim", "ishape"), GATHERS, ids=[case_id(s, d) for s, d, _ in GATHERS])
def test_gather(dtype: torch.dtype, spec: Spec, dim: int, ishape: tuple[int, ...]) -> None:
    x, tx = make_pair(spec, dtype)
    idx = torch.randint(0, spec.shape[dim], ishape)
    assert_same(torch.gather(tx, dim, idx.to(TPU)), torch.gather(x, dim, idx), f"gather({dtype}, {spec}, dim={dim})")
    if dtype == F32:
        _check_grads(
            f"gather backward dim={dim}", lambda a, i: torch.gather(a, dim, i), [spec], [F32], [True], extra=[idx]
        )


def _unique_index(shape: tuple[int, ...], dim: int, size: int) -> torch.Tensor:
    """An index of ``shape`` whose entries along ``dim`` are distinct values in [0, size)."""
    full = list(shape)
    full[dim] = size
    perm = torch.argsort(torch.rand(full), dim=dim)
    return perm.narrow(dim, 0, shape[dim])


@pytest.mark.parametrize("dtype", [F32, BF16, I64], ids=case_id)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scatter(dtype: torch.dtype, dim: int) -> None:
    x, tx = make_pair(S((3, 4)), dtype)
    d = dim % 2
    ishape = (2, 4) if d == 0 else (3, 2)
    idx = _unique_index(ishape, d, x.shape[d])
    src, tsrc = make_pair(S(ishape), dtype)
    ti = idx.to(TPU)
    assert_same(tx.scatter(dim, ti, tsrc), x.scatter(dim, idx, src), f"scatter({dtype}, dim={dim})")
    assert_same(tx.scatter(dim, ti, 2), x.scatter(dim, idx, 2), f"scatter({dtype}, dim={dim}, value)")
    # scatter_add: repeated indices accumulate
    ridx = torch.randint(0, x.shape[d], ishape)
    assert_same(
        tx.scatter_add(dim, ridx.to(TPU), tsrc),
        x.scatter_add(dim, ridx, src),
        f"scatter_add({dtype}, dim={dim})",
        scale=2.0,
    )
    # in place, on a view
    y, ty = make_pair(S((3, 4), "t"), dtype)
    y.scatter_add_(dim, ridx, src)
    ty.scatter_add_(dim, ridx.to(TPU), tsrc)
    assert_same(ty, y, f"scatter_add_({dtype}, dim={dim}) on a transposed view", scale=2.0)


@pytest.mark.parametrize("index_dtype", [I64, I32], ids=case_id)
def test_embedding(index_dtype: torch.dtype) -> None:
    idx = torch.tensor([[1, 3, 3], [0, 9, 1]], dtype=index_dtype)
    for dtype in (F32, BF16):
        w, tw = make_pair(S((10, 4)), dtype)
        assert_same(F.embedding(idx.to(TPU), tw), F.embedding(idx, w), f"embedding({dtype}, {index_dtype})")
    _check_grads("embedding backward", lambda w, i: F.embedding(i, w), [S((10, 4))], [F32], [True], extra=[idx])
    _check_grads(
        "embedding backward padding_idx",
        lambda w, i: F.embedding(i, w, padding_idx=3),
        [S((10, 4))],
        [F32],
        [True],
        extra=[idx],
    )
    _check_grads(
        "nn.Embedding on a view", lambda w, i: F.embedding(i, w), [S((10, 4), "t")], [F32], [True], extra=[idx]
    )


# --- nn layers -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F32, BF16], ids=case_id)
def test_relu_threshold_backward(dtype: torch.dtype) -> None:
    x = make((4, 5), dtype)
    x[0] = 0  # relu'(0) is 0, as on CPU
    cl, tl = x.clone().requires_grad_(), x.to(TPU).requires_grad_()
    g = make((4, 5), dtype)
    torch.relu(cl).backward(g)
    torch.relu(tl).backward(g.to(TPU))
    assert_same(tl.grad, cl.grad, f"relu backward (threshold_backward) {dtype}")


ACTIVATION_GRADS = [
    ("tanh", torch.tanh),
    ("sigmoid", torch.sigmoid),
    ("gelu", F.gelu),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("silu", F.silu),
    ("exp", torch.exp),
    ("log", lambda x: torch.log(x.abs() + 0.5)),
    ("sqrt", lambda x: torch.sqrt(x.abs() + 0.5)),
    ("pow", lambda x: x**3),
    ("div", lambda x: 1 / (x.abs() + 0.5)),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2)),
    ("clamp", lambda x: x.clamp(-1, 1)),
    ("abs", torch.abs),
    ("mean_var", lambda x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + 1e-5).sqrt()),
    ("amax", lambda x: x.amax(-1)),
    ("where", lambda x: torch.where(x > 0, x, 0.1 * x)),
    ("prod", lambda x: x.prod(-1)),
]


@pytest.mark.parametrize(("name", "fn"), ACTIVATION_GRADS, ids=[n for n, _ in ACTIVATION_GRADS])
def test_elementwise_backward(name: str, fn: Callable[..., torch.Tensor]) -> None:
    _check_grads(name, fn, [S((3, 5), "t")], [F32], [True], scale=2.0)


LAYER_NORMS: list[tuple[str, Spec, tuple[int, ...], bool]] = [
    ("last", S((4, 8)), (8,), True),
    ("two_dims", S((2, 3, 8)), (3, 8), True),
    ("no_affine", S((2, 3, 8)), (8,), False),
    ("transposed", S((6, 4), "t"), (4,), True),
]


@pytest.mark.parametrize(("name", "spec", "nshape", "affine"), LAYER_NORMS, ids=[c[0] for c in LAYER_NORMS])
def test_layer_norm(name: str, spec: Spec, nshape: tuple[int, ...], affine: bool) -> None:
    if affine:
        specs = [spec, S(nshape, low=0.5, high=1.5), S(nshape)]
        fn = lambda x, w, b: F.layer_norm(x, nshape, w, b, eps=1e-5)
    else:
        specs = [spec]
        fn = lambda x: F.layer_norm(x, nshape)
    _check_grads(f"layer_norm {name}", fn, specs, [F32] * len(specs), [True] * len(specs), scale=10.0)
    # bf16 forward
    actual, expected = _run_both(fn, specs, [BF16] * len(specs))
    assert_same(actual, expected, f"layer_norm {name} bf16", scale=2.0)


CONVS: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any], bool, str]] = [
    # name, input shape, weight shape, kwargs, bias, input layout
    ("basic", (2, 3, 8, 8), (4, 3, 3, 3), {}, True, "contig"),
    ("stride2_pad1", (2, 3, 9, 9), (4, 3, 3, 3), {"stride": 2, "padding": 1}, True, "contig"),
    ("groups2", (1, 4, 6, 6), (6, 2, 3, 3), {"groups": 2, "padding": 1}, True, "contig"),
    ("depthwise", (2, 4, 5, 5), (4, 1, 3, 3), {"groups": 4}, False, "contig"),
    ("dilation", (1, 2, 9, 9), (3, 2, 3, 3), {"dilation": 2}, True, "contig"),
    ("1x1_nobias", (2, 3, 4, 4), (5, 3, 1, 1), {}, False, "contig"),
    ("rect_stride", (1, 2, 7, 10), (3, 2, 2, 3), {"stride": (2, 1), "padding": (1, 0)}, True, "contig"),
    ("input_view", (2, 3, 8, 8), (4, 3, 3, 3), {"padding": 1}, True, "t"),
]


@pytest.mark.parametrize(("name", "ishape", "wshape", "kw", "bias", "layout"), CONVS, ids=[c[0] for c in CONVS])
def test_conv2d(
    name: str, ishape: tuple[int, ...], wshape: tuple[int, ...], kw: dict[str, Any], bias: bool, layout: str
) -> None:
    specs = [S(ishape, layout), S(wshape, low=-0.5, high=0.5)] + ([S((wshape[0],))] if bias else [])
    fn = lambda x, w, b=None: F.conv2d(x, w, b, **kw)
    _check_grads(f"conv2d {name}", fn, specs, [F32] * len(specs), [True] * len(specs), scale=20.0)


def test_conv2d_bf16() -> None:
    actual, expected = _run_both(
        lambda x, w: F.conv2d(x, w, padding=1), [S((1, 3, 6, 6)), S((4, 3, 3, 3))], [BF16, BF16]
    )
    assert_same(actual, expected, "conv2d bf16", scale=4.0)


POOLS: list[tuple[str, tuple[int, ...], dict[str, Any], str]] = [
    ("k2", (2, 3, 8, 8), {"kernel_size": 2}, "contig"),
    ("k3_s2_p1", (1, 2, 9, 9), {"kernel_size": 3, "stride": 2, "padding": 1}, "contig"),
    ("k2_s1", (1, 2, 5, 6), {"kernel_size": 2, "stride": 1}, "contig"),
    ("ceil_mode", (1, 1, 7, 7), {"kernel_size": 2, "ceil_mode": True}, "contig"),
    ("dilation", (1, 2, 8, 8), {"kernel_size": 2, "dilation": 2}, "contig"),
    ("3d_input", (3, 6, 6), {"kernel_size": 2}, "contig"),
    ("view", (2, 3, 8, 8), {"kernel_size": 2}, "t"),
]


@pytest.mark.parametrize(("name", "shape", "kw", "layout"), POOLS, ids=[c[0] for c in POOLS])
def test_max_pool2d(name: str, shape: tuple[int, ...], kw: dict[str, Any], layout: str) -> None:
    _check_grads(f"max_pool2d {name}", lambda x: F.max_pool2d(x, **kw), [S(shape, layout)], [F32], [True])
    actual, expected = _run_both(lambda x: F.max_pool2d(x, return_indices=True, **kw), [S(shape, layout)], [F32])
    assert_same(actual, expected, f"max_pool2d {name} with indices")


def test_max_pool2d_dtypes() -> None:
    for dtype in (BF16, F16):
        actual, expected = _run_both(lambda x: F.max_pool2d(x, 2), [S((1, 2, 4, 4))], [dtype])
        assert_same(actual, expected, f"max_pool2d {dtype}")


# --- random ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_statistics(p: float) -> None:
    x = torch.ones(200, 500, device=TPU)
    y = F.dropout(x, p=p, training=True).cpu()
    kept = (y != 0).float()
    assert abs(kept.mean().item() - (1 - p)) < 0.01, f"dropout(p={p}): kept fraction {kept.mean().item()}"
    values = y[y != 0]
    torch.testing.assert_close(values, torch.full_like(values, 1 / (1 - p)), msg=lambda m: f"dropout scaling: {m}")
    # the mask is not the same pattern in every row
    assert kept.std(0).mean() > 0.1, "dropout mask repeats across rows"
    assert torch.equal(F.dropout(x, p=p, training=False).cpu(), x.cpu()), "dropout in eval mode changed values"


def test_dropout_seeded() -> None:
    x = torch.randn(64, 64).to(TPU)
    torch.manual_seed(123)
    a = F.dropout(x, 0.5).cpu()
    b = F.dropout(x, 0.5).cpu()
    torch.manual_seed(123)
    a2 = F.dropout(x, 0.5).cpu()
    b2 = F.dropout(x, 0.5).cpu()
    assert torch.equal(a, a2), "same seed gave a different dropout mask"
    assert torch.equal(b, b2), "same seed gave a different second dropout mask"
    assert not torch.equal(a, b), "two dropout calls gave the same mask"


def test_dropout_backward() -> None:
    x = torch.randn(32, 32).to(TPU).requires_grad_()
    y = F.dropout(x, 0.3)
    y.sum().backward()
    mask = (y != 0).cpu()
    expected = mask.float() / 0.7
    torch.testing.assert_close(x.grad.cpu(), expected, msg=lambda m: f"dropout backward: {m}")


@pytest.mark.parametrize("dtype", [F32, BF16], ids=case_id)
def test_uniform_normal_statistics(dtype: torch.dtype) -> None:
    n = 100_000
    u = torch.empty(n, dtype=dtype, device=TPU).uniform_(2, 5).float().cpu()
    assert u.min() >= 2 and u.max() <= 5, f"uniform_({dtype}) out of range: [{u.min()}, {u.max()}]"
    assert abs(u.mean().item() - 3.5) < 0.03, f"uniform_({dtype}) mean {u.mean().item()}"
    assert abs(u.var().item() - 0.75) < 0.03, f"uniform_({dtype}) var {u.var().item()}"
    z = torch.empty(n, dtype=dtype, device=TPU).normal_(1, 2).float().cpu()
    assert abs(z.mean().item() - 1) < 0.05, f"normal_({dtype}) mean {z.mean().item()}"
    assert abs(z.std().item() - 2) < 0.05, f"normal_({dtype}) std {z.std().item()}"
    r = torch.rand(n, device=TPU, dtype=dtype).float().cpu()
    assert r.min() >= 0 and r.max() < 1 and abs(r.mean().item() - 0.5) < 0.01, f"rand({dtype})"
    g = torch.randn(n, device=TPU, dtype=dtype).float().cpu()
    assert abs(g.mean().item()) < 0.02 and abs(g.std().item() - 1) < 0.02, f"randn({dtype})"
    assert len(torch.unique(r)) > n // 2 or dtype != F32, "rand repeats values"


def test_bernoulli() -> None:
    p = torch.full((400, 250), 0.3, device=TPU)
    b = torch.bernoulli(p).cpu()
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert abs(b.mean().item() - 0.3) < 0.01, f"bernoulli(p tensor) mean {b.mean().item()}"
    x = torch.empty(100_000, device=TPU).bernoulli_(0.75).cpu()
    assert abs(x.mean().item() - 0.75) < 0.01, f"bernoulli_(0.75) mean {x.mean().item()}"
    probs = torch.tensor([0.0, 1.0, 0.0, 1.0], device=TPU)
    assert torch.bernoulli(probs).cpu().tolist() == [0.0, 1.0, 0.0, 1.0], "bernoulli of 0/1 probabilities"


def test_generator_argument() -> None:
    g = torch.Generator(device=TPU)
    g.manual_seed(7)
    a = torch.rand(100, device=TPU, generator=g).cpu()
    g.manual_seed(7)
    b = torch.rand(100, device=TPU, generator=g).cpu()
    assert torch.equal(a, b), "an explicit tpu generator with the same seed gave different numbers"
