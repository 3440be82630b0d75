//! Unary elementwise math: float functions (integer inputs compute in the
//! default float dtype), digamma, log2/log10/exp2, reciprocal, rounding
//! (identity on integers), sign, trunc/frac, logical_not and the float
//! predicates (isnan, isfinite, isposinf/isneginf).

use crate::operands::{float_dtype, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

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
    r.add(overloads!("logical_not"), logical_not);
    r.add(&["isnan"], isnan);
    r.add(&["isfinite"], isfinite);
    r.add(&["isposinf", "isposinf.out"], |c, a| {
        is_inf_signed(c, a, 1.0)
    });
    r.add(&["isneginf", "isneginf.out"], |c, a| {
        is_inf_signed(c, a, -1.0)
    });
}
