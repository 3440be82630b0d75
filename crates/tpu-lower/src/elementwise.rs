//! Elementwise family, the rest: where, clamp, addcmul/addcdiv, lerp,
//! fills, clone and arange. Unary math is in `unary`, binary arithmetic in
//! `binary`, bit-level ops in `bits`.

use crate::args::{Arg, ScalarArg};
use crate::operands::{broadcast_shapes, float_dtype, operand, operands, opmath, result_type, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

/// `where(condition, self, other)`.
fn where_(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(1), a.arg(2)]);
    let cond = a.t(0)?;
    // uint8 still passes on CPU, with a deprecation warning.
    if !matches!(c.g.dtype(cond), DType::Bool | DType::U8) {
        bail!(
            "where expected condition to be a boolean tensor, but got a tensor with dtype {}",
            c.g.dtype(cond)
        );
    }
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
                let shape = broadcast_shapes(&shape_of(c, x), c.g.shape(b))?;
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
    // CPU wants a weight of `self`'s dtype, except a 0-dim one.
    if let Arg::Tensor(w) = a.arg(2) {
        let (sd, wd) = (c.g.dtype(a.t(0)?), c.g.dtype(w.v));
        if wd != sd && c.g.rank(w.v) > 0 {
            bail!("lerp: expected dtype {sd} for `weight` but got dtype {wd}");
        }
    }
    let w = operand(c, a, 2, m)?;
    let shape = c.g.shape(x).to_vec();
    let shape = broadcast_shapes(&shape, c.g.shape(w))?;
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
