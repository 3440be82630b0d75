//! Binary arithmetic with broadcasting and type promotion: add/sub/rsub
//! (with alpha), mul, div (rounding modes), floor_divide, remainder, fmod,
//! pow, maximum/minimum, fmax/fmin, atan2, comparisons and logical ops.

use crate::args::{Arg, ScalarArg};
use crate::operands::{
    broadcast_shapes, float_dtype, operand, operands, promoted, promoted_binary, Out,
};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

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
    let fix = floors_differently(c, r, y, d)?;
    let shifted = c.g.binary(B::Add, r, y)?;
    Ok(vec![c.g.select(fix, shifted, r)?])
}

/// Where truncating division differs from flooring: the remainder `r` (of
/// a truncating division by `y`) is nonzero and its sign differs from `y`'s.
fn floors_differently(c: &mut LowerCtx, r: ValueId, y: ValueId, d: DType) -> Result<ValueId> {
    let zero = c.g.full_like(r, 0.0, d);
    let r_nz = c.g.compare(CmpDir::Ne, r, zero)?;
    let r_neg = c.g.compare(CmpDir::Lt, r, zero)?;
    let y_neg = c.g.compare(CmpDir::Lt, y, zero)?;
    let differ = c.g.binary(B::Xor, r_neg, y_neg)?;
    Ok(c.g.binary(B::And, r_nz, differ)?)
}

/// Floor division, exact for integers (truncating division corrected toward -inf).
fn floor_div(c: &mut LowerCtx, x: ValueId, y: ValueId, d: DType) -> Result<ValueId> {
    if d.is_float() {
        let q = c.g.binary(B::Div, x, y)?;
        return Ok(c.g.unary(U::Floor, q)?);
    }
    let q = c.g.binary(B::Div, x, y)?;
    let r = c.g.binary(B::Rem, x, y)?;
    let fix = floors_differently(c, r, y, d)?;
    let one = c.g.full_like(r, 1.0, d);
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
    let shape = broadcast_shapes(c.g.shape(bools[0]), c.g.shape(bools[1]))?;
    let x = c.g.broadcast_to(bools[0], &shape)?;
    let y = c.g.broadcast_to(bools[1], &shape)?;
    Ok(vec![c.g.binary(kind, x, y)?])
}

pub fn register(r: &mut Registry) {
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
}
