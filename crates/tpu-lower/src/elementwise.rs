//! Elementwise family: unary math, binary arithmetic with broadcasting and
//! type promotion, comparisons, logical ops, where, clamp, fills and casts.

use crate::args::{Arg, ScalarArg};
use crate::operands::{float_dtype, operand, operands, opmath, promoted, result_type, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

/// Registers the functional, `out=` and in-place overloads of an op.
macro_rules! overloads {
    ($name:literal) => {
        &[$name, concat!($name, ".out"), concat!($name, "_")]
    };
}

/// Applies a unary kind in `dtype` (converting the input first).
fn unary_in(c: &mut LowerCtx, kind: U, x: ValueId, dtype: DType) -> Result<ValueId> {
    let x = c.g.convert(x, dtype);
    Ok(c.g.unary(kind, x)?)
}

/// Rules for float math (`exp`, `sin`, ...): integer inputs compute in the default float dtype.
macro_rules! float_unary {
    ($($f:ident => $kind:expr),* $(,)?) => {
        $(fn $f(c: &mut LowerCtx, a: &Args) -> Out {
            let x = a.t(0)?;
            let d = float_dtype(c.g.dtype(x));
            Ok(vec![unary_in(c, $kind, x, d)?])
        })*
    };
}

float_unary! {
    exp => U::Exp, expm1 => U::Expm1, log => U::Log, log1p => U::Log1p, sqrt => U::Sqrt,
    rsqrt => U::Rsqrt, sin => U::Sin, cos => U::Cos, tan => U::Tan, tanh => U::Tanh,
    sigmoid => U::Logistic, erf => U::Erf, erfinv => U::Erfinv, asin => U::Asin, acos => U::Acos,
    atan => U::Atan, sinh => U::Sinh, cosh => U::Cosh, asinh => U::Asinh, acosh => U::Acosh,
    atanh => U::Atanh, lgamma => U::Lgamma,
}

/// `digamma`, with PyTorch's poles: -inf at +0 and +inf at -0 (XLA gives NaN there).
pub(crate) fn digamma(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_dtype(c.g.dtype(x));
    let x = c.g.convert(x, d);
    let y = c.g.unary(U::Digamma, x)?;
    let zero = c.g.full_like(x, 0.0, d);
    let is0 = c.g.compare(CmpDir::Eq, x, zero)?;
    let inf = c.g.full_like(x, f64::INFINITY, d);
    let bits = c.g.bitcast(
        x,
        if d.size() == 2 {
            DType::I16
        } else if d.size() == 4 {
            DType::I32
        } else {
            DType::I64
        },
    )?;
    let izero = c.g.full_like(bits, 0.0, c.g.dtype(bits));
    let neg_zero = c.g.compare(CmpDir::Lt, bits, izero)?;
    let ninf = c.g.unary(U::Neg, inf)?;
    let pole = c.g.select(neg_zero, inf, ninf)?;
    Ok(vec![c.g.select(is0, pole, y)?])
}

/// `log2`, `log10`, `exp2`: a float op scaled by a constant.
fn scaled_log(c: &mut LowerCtx, a: &Args, base: f64) -> Out {
    let x = a.t(0)?;
    let d = float_dtype(c.g.dtype(x));
    let l = unary_in(c, U::Log, x, d)?;
    Ok(vec![c.g.mul_const(l, 1.0 / base.ln())?])
}

fn exp2(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_dtype(c.g.dtype(x));
    // In opmath: x ln 2 rounded to bfloat16 would be far off for larger x.
    let x = c.g.convert(x, opmath(d));
    let s = c.g.mul_const(x, std::f64::consts::LN_2)?;
    let y = c.g.unary(U::Exp, s)?;
    Ok(vec![c.g.convert(y, d)])
}

fn reciprocal(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_dtype(c.g.dtype(x));
    let x = c.g.convert(x, d);
    let one = c.g.full_like(x, 1.0, d);
    Ok(vec![c.g.binary(B::Div, one, x)?])
}

/// Ops that keep the dtype; rounding ops are the identity on integers.
fn same_dtype(c: &mut LowerCtx, a: &Args, kind: U) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let rounding = matches!(kind, U::Floor | U::Ceil | U::RoundEven);
    if rounding && !d.is_float() {
        return Ok(vec![x]);
    }
    if d == DType::Bool && matches!(kind, U::Neg) {
        bail!("Negation, the `-` operator, on a bool tensor is not supported.");
    }
    Ok(vec![c.g.unary(kind, x)?])
}

fn abs(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x) == DType::Bool {
        return Ok(vec![x]);
    }
    same_dtype(c, a, U::Abs)
}
fn round(c: &mut LowerCtx, a: &Args) -> Out {
    if a.int_or(1, 0)? != 0 {
        let x = a.t(0)?;
        let scale = 10f64.powi(a.int(1)? as i32);
        let y = c.g.mul_const(x, scale)?;
        let r = c.g.unary(U::RoundEven, y)?;
        return Ok(vec![c.g.mul_const(r, 1.0 / scale)?]);
    }
    same_dtype(c, a, U::RoundEven)
}
fn sign(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x) == DType::Bool {
        return Ok(vec![x]);
    }
    same_dtype(c, a, U::Sign)
}

/// `trunc`: round toward zero.
fn trunc(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if !c.g.dtype(x).is_float() {
        return Ok(vec![x]);
    }
    let s = c.g.unary(U::Sign, x)?;
    let m = c.g.unary(U::Abs, x)?;
    let f = c.g.unary(U::Floor, m)?;
    Ok(vec![c.g.binary(B::Mul, s, f)?])
}

fn frac(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let t = trunc(c, a)?[0];
    Ok(vec![c.g.binary(B::Sub, x, t)?])
}

fn bitwise_not(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x).is_inexact() {
        bail!(
            "bitwise_not is only supported for integer and boolean tensors, got {}",
            c.g.dtype(x)
        );
    }
    Ok(vec![c.g.unary(U::Not, x)?])
}

fn logical_not(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let zero = c.g.full_like(x, 0.0, c.g.dtype(x));
    Ok(vec![c.g.compare(CmpDir::Eq, x, zero)?])
}

fn isnan(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x).is_complex() {
        return Ok(vec![crate::complex::complex_isnan(c, x)?]);
    }
    Ok(vec![c.g.compare(CmpDir::Ne, x, x)?])
}

/// `isposinf` / `isneginf`: equal to +inf / -inf (never for integers).
fn is_inf_signed(c: &mut LowerCtx, a: &Args, sign: f64) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        return Ok(vec![c.g.full_like(x, 0.0, DType::Bool)]);
    }
    let inf = c.g.full_like(x, sign * f64::INFINITY, d);
    Ok(vec![c.g.compare(CmpDir::Eq, x, inf)?])
}

fn isfinite(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x).is_complex() {
        return Ok(vec![crate::complex::complex_isfinite(c, x)?]);
    }
    if !c.g.dtype(x).is_float() {
        return Ok(vec![c.g.full_like(x, 1.0, DType::Bool)]);
    }
    Ok(vec![c.g.unary(U::IsFinite, x)?])
}

/// `self op alpha * other` for add/sub; alpha of 1 adds no multiply.
fn add_sub(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let d = promoted(c, a);
    let (x, mut y) = operands(c, a, d)?;
    if let Some(alpha) = a.opt_scalar(2)? {
        if alpha.as_f64() != 1.0 {
            let shape = c.g.shape(y).to_vec();
            let k = c.scalar_full(alpha, d, &shape)?;
            y = c.g.binary(B::Mul, y, k)?;
        }
    }
    if d == DType::Bool {
        let kind = if kind == B::Add {
            B::Or
        } else {
            bail!("Subtraction, the `-` operator, with two bool tensors is not supported.")
        };
        return Ok(vec![c.g.binary(kind, x, y)?]);
    }
    Ok(vec![c.g.binary(kind, x, y)?])
}

fn rsub(c: &mut LowerCtx, a: &Args) -> Out {
    let swapped = [a.arg(1).clone(), a.arg(0).clone(), a.arg(2).clone()];
    add_sub(c, &Args(&swapped), B::Sub)
}

/// A binary op computed in the promoted dtype.
fn promoted_binary(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let d = promoted(c, a);
    let (x, y) = operands(c, a, d)?;
    let kind = match (kind, d) {
        (B::Mul, DType::Bool) => B::And,
        (B::Max, DType::Bool) => B::Or,
        (B::Min, DType::Bool) => B::And,
        (k, _) => k,
    };
    Ok(vec![c.g.binary(kind, x, y)?])
}

/// `maximum`/`minimum`: a NaN in either operand gives NaN (XLA:CPU only
/// propagates a NaN from its first operand).
fn nan_max_min(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let m = promoted_binary(c, a, kind)?[0];
    if !c.g.dtype(m).is_float() {
        return Ok(vec![m]);
    }
    let (x, y) = (c.g.node_of(m).inputs[0], c.g.node_of(m).inputs[1]);
    let xnan = c.g.compare(CmpDir::Ne, x, x)?;
    let m = c.g.select(xnan, x, m)?;
    let ynan = c.g.compare(CmpDir::Ne, y, y)?;
    Ok(vec![c.g.select(ynan, y, m)?])
}
/// Operands of a division in dtype `d`; an integer divisor must not be 0
/// (XLA gives garbage, CPU raises `ZeroDivisionError`).
fn division_operands(c: &mut LowerCtx, a: &Args, d: DType) -> Result<(ValueId, ValueId)> {
    let (x, y) = operands(c, a, d)?;
    if d.is_int() {
        c.check_nonzero_divisor(y)?;
    }
    Ok((x, y))
}

fn fmod(c: &mut LowerCtx, a: &Args) -> Out {
    let d = promoted(c, a);
    let (x, y) = division_operands(c, a, d)?;
    Ok(vec![c.g.binary(B::Rem, x, y)?])
}
fn bitwise(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let d = promoted(c, a);
    if d.is_inexact() {
        bail!("bitwise ops are only supported for integer and boolean tensors, got {d}");
    }
    promoted_binary(c, a, kind)
}

/// `fmax`/`fmin`: like maximum/minimum but a NaN loses to a number.
fn fmax_fmin(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let d = promoted(c, a);
    let (x, y) = operands(c, a, d)?;
    let m = c.g.binary(kind, x, y)?;
    if !d.is_float() {
        return Ok(vec![m]);
    }
    let xnan = c.g.compare(CmpDir::Ne, x, x)?;
    let ynan = c.g.compare(CmpDir::Ne, y, y)?;
    let m = c.g.select(xnan, y, m)?;
    Ok(vec![c.g.select(ynan, x, m)?])
}

fn atan2(c: &mut LowerCtx, a: &Args) -> Out {
    let d = float_dtype(promoted(c, a));
    let (x, y) = operands(c, a, d)?;
    Ok(vec![c.g.binary(B::Atan2, x, y)?])
}

/// Python-style modulo: the result takes the divisor's sign.
fn remainder(c: &mut LowerCtx, a: &Args) -> Out {
    let d = promoted(c, a);
    let (x, y) = division_operands(c, a, d)?;
    let r = c.g.binary(B::Rem, x, y)?;
    let zero = c.g.full_like(r, 0.0, d);
    let r_neg = c.g.compare(CmpDir::Lt, r, zero)?;
    let y_neg = c.g.compare(CmpDir::Lt, y, zero)?;
    let signs_differ = c.g.binary(B::Xor, r_neg, y_neg)?;
    let nonzero = c.g.compare(CmpDir::Ne, r, zero)?;
    let fix = c.g.binary(B::And, signs_differ, nonzero)?;
    let shifted = c.g.binary(B::Add, r, y)?;
    Ok(vec![c.g.select(fix, shifted, r)?])
}

/// Floor division, exact for integers (truncating division corrected toward -inf).
fn floor_div(c: &mut LowerCtx, x: ValueId, y: ValueId, d: DType) -> Result<ValueId> {
    if d.is_float() {
        let q = c.g.binary(B::Div, x, y)?;
        return Ok(c.g.unary(U::Floor, q)?);
    }
    let q = c.g.binary(B::Div, x, y)?;
    let r = c.g.binary(B::Rem, x, y)?;
    let zero = c.g.full_like(r, 0.0, d);
    let one = c.g.full_like(r, 1.0, d);
    let r_nz = c.g.compare(CmpDir::Ne, r, zero)?;
    let r_neg = c.g.compare(CmpDir::Lt, r, zero)?;
    let y_neg = c.g.compare(CmpDir::Lt, y, zero)?;
    let differ = c.g.binary(B::Xor, r_neg, y_neg)?;
    let fix = c.g.binary(B::And, r_nz, differ)?;
    let qm = c.g.binary(B::Sub, q, one)?;
    Ok(c.g.select(fix, qm, q)?)
}

fn div(c: &mut LowerCtx, a: &Args) -> Out {
    let mode = a.str(2)?.map(str::to_owned);
    let d = promoted(c, a);
    match mode.as_deref() {
        None => {
            let d = float_dtype(d);
            let (x, y) = operands(c, a, d)?;
            Ok(vec![c.g.binary(B::Div, x, y)?])
        }
        Some("trunc") => {
            let (x, y) = division_operands(c, a, d)?;
            let q = c.g.binary(B::Div, x, y)?;
            if !d.is_float() {
                return Ok(vec![q]);
            }
            let s = c.g.unary(U::Sign, q)?;
            let m = c.g.unary(U::Abs, q)?;
            let f = c.g.unary(U::Floor, m)?;
            Ok(vec![c.g.binary(B::Mul, s, f)?])
        }
        Some("floor") => {
            let (x, y) = division_operands(c, a, d)?;
            Ok(vec![floor_div(c, x, y, d)?])
        }
        Some(m) => bail!(
            "div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '{m}'"
        ),
    }
}

fn floor_divide(c: &mut LowerCtx, a: &Args) -> Out {
    let d = promoted(c, a);
    let (x, y) = division_operands(c, a, d)?;
    Ok(vec![floor_div(c, x, y, d)?])
}

fn pow(c: &mut LowerCtx, a: &Args) -> Out {
    let d = promoted(c, a);
    if let Arg::Scalar(s @ (ScalarArg::Int(_) | ScalarArg::Float(_) | ScalarArg::Bool(_))) =
        a.arg(1)
    {
        let e = s.as_f64();
        let x = operand(c, a, 0, d)?;
        if e == 2.0 {
            return Ok(vec![c.g.binary(B::Mul, x, x)?]);
        }
        if e == 1.0 {
            return Ok(vec![x]);
        }
        if e == 0.5 && d.is_float() {
            return Ok(vec![c.g.unary(U::Sqrt, x)?]);
        }
    }
    let (x, y) = operands(c, a, d)?;
    Ok(vec![c.g.binary(B::Pow, x, y)?])
}

/// Comparisons compute in the promoted dtype and give bool.
fn compare(c: &mut LowerCtx, a: &Args, dir: CmpDir) -> Out {
    let d = promoted(c, a);
    let (x, y) = operands(c, a, d)?;
    Ok(vec![c.g.compare(dir, x, y)?])
}

/// Logical ops: operands are truth values (`!= 0`), result bool.
fn logical(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let mut bools = Vec::with_capacity(2);
    for i in 0..2 {
        let v = a.t(i)?;
        let zero = c.g.full_like(v, 0.0, c.g.dtype(v));
        bools.push(c.g.compare(CmpDir::Ne, v, zero)?);
    }
    let shape = crate::operands::broadcast_shapes(c.g.shape(bools[0]), c.g.shape(bools[1]))?;
    let x = c.g.broadcast_to(bools[0], &shape)?;
    let y = c.g.broadcast_to(bools[1], &shape)?;
    Ok(vec![c.g.binary(kind, x, y)?])
}

/// `where(condition, self, other)`.
fn where_(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(1), a.arg(2)]);
    let cond = a.t(0)?;
    let x = operand(c, a, 1, d)?;
    let y = operand(c, a, 2, d)?;
    Ok(vec![c.g.select_bcast(cond, x, y, d)?])
}

/// Clamps `x` (in `d`) to optional bounds, each a host scalar or a tensor.
fn clamp_with(c: &mut LowerCtx, a: &Args, lo: Option<usize>, hi: Option<usize>) -> Out {
    let mut parts: Vec<&Arg> = vec![a.arg(0)];
    parts.extend(lo.map(|i| a.arg(i)).filter(|x| !x.is_none()));
    parts.extend(hi.map(|i| a.arg(i)).filter(|x| !x.is_none()));
    let d = result_type(c.g, &parts);
    let mut x = c.g.convert(a.t(0)?, d);
    let shape_of = |c: &LowerCtx, v: ValueId| c.g.shape(v).to_vec();
    let bound = |c: &mut LowerCtx, i: Option<usize>, x: ValueId, kind: B| -> Result<ValueId> {
        match i {
            Some(i) if a.has(i) => {
                let b = operand(c, a, i, d)?;
                let shape = crate::operands::broadcast_shapes(&shape_of(c, x), c.g.shape(b))?;
                let x = c.g.broadcast_to(x, &shape)?;
                let b = c.g.broadcast_to(b, &shape)?;
                let r = c.g.binary(kind, x, b)?;
                // NaN in x propagates, as in PyTorch.
                if d.is_float() {
                    let nan = c.g.compare(CmpDir::Ne, x, x)?;
                    return Ok(c.g.select(nan, x, r)?);
                }
                Ok(r)
            }
            _ => Ok(x),
        }
    };
    x = bound(c, lo, x, B::Max)?;
    x = bound(c, hi, x, B::Min)?;
    Ok(vec![x])
}

/// `self + value * t1 * t2` (addcmul) or `self + value * t1 / t2` (addcdiv).
fn addc(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let mut d = result_type(c.g, &[a.arg(0), a.arg(1), a.arg(2)]);
    if kind == B::Div {
        d = float_dtype(d);
    }
    let (s, t1, t2) = (a.t(0)?, a.t(1)?, a.t(2)?);
    // Computed in opmath and rounded once, as PyTorch's kernels.
    let w = opmath(d);
    let prod = c.g.binary_bcast(kind, t1, t2, w)?;
    let value = a.opt_scalar(3)?.unwrap_or(ScalarArg::Int(1));
    let scaled = if value.as_f64() == 1.0 {
        prod
    } else {
        let shape = c.g.shape(prod).to_vec();
        let k = c.scalar_full(value, w, &shape)?;
        c.g.binary(B::Mul, prod, k)?
    };
    let y = c.g.binary_bcast(B::Add, s, scaled, w)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `self + weight * (end - self)` for `|weight| < 0.5`, else
/// `end - (end - self) * (1 - weight)`, in opmath as PyTorch's kernel.
fn lerp(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let m = opmath(d);
    let (x, e) = operands(c, a, m)?;
    let w = operand(c, a, 2, m)?;
    let shape = c.g.shape(x).to_vec();
    let shape = crate::operands::broadcast_shapes(&shape, c.g.shape(w))?;
    let (x, e, w) = (
        c.g.broadcast_to(x, &shape)?,
        c.g.broadcast_to(e, &shape)?,
        c.g.broadcast_to(w, &shape)?,
    );
    let diff = c.g.binary(B::Sub, e, x)?;
    let low = c.g.binary(B::Mul, w, diff)?;
    let low = c.g.binary(B::Add, x, low)?;
    let one = c.g.full_like(w, 1.0, m);
    let omw = c.g.binary(B::Sub, one, w)?;
    let high = c.g.binary(B::Mul, diff, omw)?;
    let high = c.g.binary(B::Sub, e, high)?;
    let aw = c.g.unary(U::Abs, w)?;
    let half = c.g.full_like(w, 0.5, m);
    let small = c.g.compare(CmpDir::Lt, aw, half)?;
    let y = c.g.select(small, low, high)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `fill_(self, value)`: the value broadcast to the written tensor.
fn fill(c: &mut LowerCtx, a: &Args) -> Out {
    let t = c.g.ty(a.t(0)?).clone();
    match a.arg(1) {
        Arg::Tensor(v) => Ok(vec![c.g.coerce(v.v, t.dtype, &t.shape)?]),
        _ => {
            let s = a.scalar(1)?;
            Ok(vec![c.scalar_full(s, t.dtype, &t.shape)?])
        }
    }
}

fn zero(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    Ok(vec![c.g.full_like(x, 0.0, c.g.dtype(x))])
}

/// `clone(self)`: a copy on a new storage (copies across devices go through `_copy_from`).
fn clone(_c: &mut LowerCtx, a: &Args) -> Out {
    Ok(vec![a.t(0)?])
}

/// `arange.start_out(start, end, step, *, out)`: computed in float64/int64, cast to `out`.
fn arange(c: &mut LowerCtx, a: &Args) -> Out {
    let out = c.out_type(0)?.clone();
    let (start, end, step) = (a.scalar(0)?, a.scalar(1)?, a.scalar(2)?);
    let span = (end.as_f64() - start.as_f64()) / step.as_f64();
    if step.as_f64() == 0.0 || !span.is_finite() {
        bail!("arange: step must be nonzero and the range finite");
    }
    // The length PyTorch's arange computes; the out tensor is resized to it.
    let n = match (start, end, step) {
        (ScalarArg::Int(s), ScalarArg::Int(e), ScalarArg::Int(st)) => {
            ((e - s) + st - st.signum()) / st
        }
        _ => span.ceil() as i64,
    }
    .max(0);
    let wide = if out.dtype.is_float()
        || matches!(start, ScalarArg::Float(_))
        || matches!(step, ScalarArg::Float(_))
    {
        DType::F64
    } else {
        DType::I64
    };
    let i = c.g.iota(wide, &[n], 0)?;
    let st = c.scalar_full(step, wide, &[n])?;
    let s0 = c.scalar_full(start, wide, &[n])?;
    let scaled = c.g.binary(B::Mul, i, st)?;
    let v = c.g.binary(B::Add, scaled, s0)?;
    Ok(vec![c.g.convert(v, out.dtype)])
}

pub fn register(r: &mut Registry) {
    r.add(overloads!("exp"), exp);
    r.add(overloads!("exp2"), exp2);
    r.add(overloads!("expm1"), expm1);
    r.add(overloads!("log"), log);
    r.add(overloads!("log2"), |c, a| scaled_log(c, a, 2.0));
    r.add(overloads!("log10"), |c, a| scaled_log(c, a, 10.0));
    r.add(overloads!("log1p"), log1p);
    r.add(overloads!("sqrt"), sqrt);
    r.add(overloads!("rsqrt"), rsqrt);
    r.add(overloads!("sin"), sin);
    r.add(overloads!("cos"), cos);
    r.add(overloads!("tan"), tan);
    r.add(overloads!("tanh"), tanh);
    r.add(overloads!("sigmoid"), sigmoid);
    r.add(overloads!("erf"), erf);
    r.add(overloads!("erfinv"), erfinv);
    r.add(overloads!("asin"), asin);
    r.add(overloads!("acos"), acos);
    r.add(overloads!("atan"), atan);
    r.add(overloads!("sinh"), sinh);
    r.add(overloads!("cosh"), cosh);
    r.add(overloads!("asinh"), asinh);
    r.add(overloads!("acosh"), acosh);
    r.add(overloads!("atanh"), atanh);
    r.add(overloads!("lgamma"), lgamma);
    r.add(overloads!("digamma"), digamma);
    r.add(overloads!("reciprocal"), reciprocal);
    r.add(overloads!("neg"), |c, a| same_dtype(c, a, U::Neg));
    r.add(overloads!("abs"), abs);
    r.add(overloads!("floor"), |c, a| same_dtype(c, a, U::Floor));
    r.add(overloads!("ceil"), |c, a| same_dtype(c, a, U::Ceil));
    r.add(
        &[
            "round",
            "round.out",
            "round_",
            "round.decimals",
            "round.decimals_out",
            "round_.decimals",
        ],
        round,
    );
    r.add(overloads!("sign"), sign);
    r.add(overloads!("sgn"), sign);
    r.add(overloads!("trunc"), trunc);
    r.add(overloads!("frac"), frac);
    r.add(overloads!("bitwise_not"), bitwise_not);
    r.add(overloads!("logical_not"), logical_not);
    r.add(&["isnan"], isnan);
    r.add(&["isfinite"], isfinite);
    r.add(&["isposinf", "isposinf.out"], |c, a| {
        is_inf_signed(c, a, 1.0)
    });
    r.add(&["isneginf", "isneginf.out"], |c, a| {
        is_inf_signed(c, a, -1.0)
    });
    r.add(
        &[
            "add.Tensor",
            "add.out",
            "add_.Tensor",
            "add.Scalar",
            "add_.Scalar",
        ],
        |c, a| add_sub(c, a, B::Add),
    );
    r.add(
        &[
            "sub.Tensor",
            "sub.out",
            "sub_.Tensor",
            "sub.Scalar",
            "sub_.Scalar",
        ],
        |c, a| add_sub(c, a, B::Sub),
    );
    r.add(
        &[
            "rsub.Tensor",
            "rsub.Scalar",
            "rsub.Tensor_out",
            "rsub.Scalar_out",
        ],
        rsub,
    );
    r.add(
        &[
            "mul.Tensor",
            "mul.out",
            "mul_.Tensor",
            "mul.Scalar",
            "mul_.Scalar",
        ],
        |c, a| promoted_binary(c, a, B::Mul),
    );
    r.add(
        &[
            "div.Tensor",
            "div.out",
            "div_.Tensor",
            "div.Scalar",
            "div_.Scalar",
            "div.Tensor_mode",
            "div.out_mode",
            "div_.Tensor_mode",
            "div.Scalar_mode",
            "div_.Scalar_mode",
        ],
        div,
    );
    r.add(
        &[
            "floor_divide",
            "floor_divide.out",
            "floor_divide_.Tensor",
            "floor_divide.Scalar",
        ],
        floor_divide,
    );
    r.add(
        &[
            "remainder.Tensor",
            "remainder.Tensor_out",
            "remainder_.Tensor",
            "remainder.Scalar",
            "remainder_.Scalar",
            "remainder.Scalar_out",
        ],
        remainder,
    );
    r.add(
        &[
            "fmod.Tensor",
            "fmod.Tensor_out",
            "fmod_.Tensor",
            "fmod.Scalar",
            "fmod_.Scalar",
            "fmod.Scalar_out",
        ],
        fmod,
    );
    r.add(
        &[
            "pow.Tensor_Tensor",
            "pow.Tensor_Tensor_out",
            "pow_.Tensor",
            "pow.Tensor_Scalar",
            "pow.Tensor_Scalar_out",
            "pow_.Scalar",
            "pow.Scalar",
            "pow.Scalar_out",
        ],
        pow,
    );
    r.add(
        &["maximum", "maximum.out", "max.other", "max.out"],
        |c, a| nan_max_min(c, a, B::Max),
    );
    r.add(
        &["minimum", "minimum.out", "min.other", "min.out"],
        |c, a| nan_max_min(c, a, B::Min),
    );
    r.add(&["fmax", "fmax.out"], |c, a| fmax_fmin(c, a, B::Max));
    r.add(&["fmin", "fmin.out"], |c, a| fmax_fmin(c, a, B::Min));
    r.add(&["atan2", "atan2.out", "atan2_"], atan2);
    r.add(
        &[
            "bitwise_and.Tensor",
            "bitwise_and.Tensor_out",
            "bitwise_and_.Tensor",
            "bitwise_and.Scalar",
            "bitwise_and.Scalar_out",
        ],
        |c, a| bitwise(c, a, B::And),
    );
    r.add(
        &[
            "bitwise_or.Tensor",
            "bitwise_or.Tensor_out",
            "bitwise_or_.Tensor",
            "bitwise_or.Scalar",
            "bitwise_or.Scalar_out",
        ],
        |c, a| bitwise(c, a, B::Or),
    );
    r.add(
        &[
            "bitwise_xor.Tensor",
            "bitwise_xor.Tensor_out",
            "bitwise_xor_.Tensor",
            "bitwise_xor.Scalar",
            "bitwise_xor.Scalar_out",
        ],
        |c, a| bitwise(c, a, B::Xor),
    );
    r.add(overloads!("logical_and"), |c, a| logical(c, a, B::And));
    r.add(overloads!("logical_or"), |c, a| logical(c, a, B::Or));
    r.add(overloads!("logical_xor"), |c, a| logical(c, a, B::Xor));
    r.add(
        &[
            "eq.Tensor",
            "eq.Tensor_out",
            "eq_.Tensor",
            "eq.Scalar",
            "eq.Scalar_out",
            "eq_.Scalar",
        ],
        |c, a| compare(c, a, CmpDir::Eq),
    );
    r.add(
        &[
            "ne.Tensor",
            "ne.Tensor_out",
            "ne_.Tensor",
            "ne.Scalar",
            "ne.Scalar_out",
            "ne_.Scalar",
        ],
        |c, a| compare(c, a, CmpDir::Ne),
    );
    r.add(
        &[
            "lt.Tensor",
            "lt.Tensor_out",
            "lt_.Tensor",
            "lt.Scalar",
            "lt.Scalar_out",
            "lt_.Scalar",
        ],
        |c, a| compare(c, a, CmpDir::Lt),
    );
    r.add(
        &[
            "le.Tensor",
            "le.Tensor_out",
            "le_.Tensor",
            "le.Scalar",
            "le.Scalar_out",
            "le_.Scalar",
        ],
        |c, a| compare(c, a, CmpDir::Le),
    );
    r.add(
        &[
            "gt.Tensor",
            "gt.Tensor_out",
            "gt_.Tensor",
            "gt.Scalar",
            "gt.Scalar_out",
            "gt_.Scalar",
        ],
        |c, a| compare(c, a, CmpDir::Gt),
    );
    r.add(
        &[
            "ge.Tensor",
            "ge.Tensor_out",
            "ge_.Tensor",
            "ge.Scalar",
            "ge.Scalar_out",
            "ge_.Scalar",
        ],
        |c, a| compare(c, a, CmpDir::Ge),
    );
    r.add(
        &[
            "where.self",
            "where.self_out",
            "where.ScalarOther",
            "where.ScalarSelf",
            "where.Scalar",
        ],
        where_,
    );
    r.add(
        &[
            "clamp",
            "clamp.out",
            "clamp_",
            "clamp.Tensor",
            "clamp.Tensor_out",
            "clamp_.Tensor",
        ],
        |c, a| clamp_with(c, a, Some(1), Some(2)),
    );
    r.add(
        &[
            "clamp_min",
            "clamp_min.out",
            "clamp_min_",
            "clamp_min.Tensor",
            "clamp_min.Tensor_out",
            "clamp_min_.Tensor",
        ],
        |c, a| clamp_with(c, a, Some(1), None),
    );
    r.add(
        &[
            "clamp_max",
            "clamp_max.out",
            "clamp_max_",
            "clamp_max.Tensor",
            "clamp_max.Tensor_out",
            "clamp_max_.Tensor",
        ],
        |c, a| clamp_with(c, a, None, Some(1)),
    );
    r.add(overloads!("addcmul"), |c, a| addc(c, a, B::Mul));
    r.add(overloads!("addcdiv"), |c, a| addc(c, a, B::Div));
    r.add(
        &[
            "lerp.Scalar",
            "lerp.Scalar_out",
            "lerp_.Scalar",
            "lerp.Tensor",
            "lerp.Tensor_out",
            "lerp_.Tensor",
        ],
        lerp,
    );
    r.add(
        &["fill_.Scalar", "fill_.Tensor", "fill.Scalar", "fill.Tensor"],
        fill,
    );
    r.add(&["zero_", "zero", "zeros_like"], zero);
    r.add(&["clone"], clone);
    r.add(&["arange.start_out"], arange);
}
