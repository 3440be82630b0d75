//! QR by Householder reflections, unrolled over the static column count, with
//! LAPACK's conventions (`R[k, k] = -sign(x0) * ||x||`, no reflection when the
//! part below the diagonal is already zero), so Q and R match the CPU's.

use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// `[.., m]` times `[.., n]` into `[.., m, n]`.
fn outer(c: &mut LowerCtx, u: ValueId, v: ValueId) -> Result<ValueId> {
    let r = c.g.rank(u);
    let mut shape = c.g.shape(u).to_vec();
    shape.push(c.g.shape(v)[r - 1]);
    let uu = c.g.unsqueeze(u, r)?;
    let uu = c.g.broadcast_to(uu, &shape)?;
    let vv = c.g.unsqueeze(v, r - 1)?;
    let vv = c.g.broadcast_to(vv, &shape)?;
    Ok(c.g.binary(B::Mul, uu, vv)?)
}

/// Sum over `dim` of `x * y` where `y` is broadcast along the other matrix dim.
fn contract(c: &mut LowerCtx, x: ValueId, v: ValueId, over_rows: bool) -> Result<ValueId> {
    let r = c.g.rank(x);
    let shape = c.g.shape(x).to_vec();
    let vv = c.g.unsqueeze(v, if over_rows { r - 1 } else { r - 2 })?;
    let vv = c.g.broadcast_to(vv, &shape)?;
    let p = c.g.binary(B::Mul, x, vv)?;
    Ok(c.g.reduce(
        R::Sum,
        p,
        &[if over_rows {
            r as i64 - 2
        } else {
            r as i64 - 1
        }],
    )?)
}

/// (Q `[.., m, m]`, R `[.., m, n]`) of `[.., m, n]` in the compute dtype.
pub(crate) fn householder(c: &mut LowerCtx, a: ValueId) -> Result<(ValueId, ValueId)> {
    let shape = c.g.shape(a).to_vec();
    let r = shape.len();
    let (m, n) = (shape[r - 2], shape[r - 1]);
    let d = c.g.dtype(a);
    let mut rm = a;
    let mut qshape = shape.clone();
    qshape[r - 1] = m;
    let qi = c.g.iota(DType::I64, &qshape, r as i64 - 2)?;
    let qj = c.g.iota(DType::I64, &qshape, r as i64 - 1)?;
    let eye = c.g.compare(CmpDir::Eq, qi, qj)?;
    let mut q = c.g.convert(eye, d);
    let mut vshape = shape[..r - 2].to_vec();
    vshape.push(m);
    let rows = c.g.iota(DType::I64, &vshape, r as i64 - 2)?;
    for k in 0..m.min(n) {
        let col = c.g.slice_dim(rm, r - 1, k, k + 1)?;
        let col = c.g.squeeze_dims(col, &[r - 1])?;
        let kk = c.g.full_like(rows, k as f64, DType::I64);
        let zero = c.g.full_like(col, 0.0, d);
        let at_k = c.g.compare(CmpDir::Eq, rows, kk)?;
        let below = c.g.compare(CmpDir::Gt, rows, kk)?;
        let tail = c.g.select(below, col, zero)?;
        let x0 = c.g.select(at_k, col, zero)?;
        let x0 = c.g.reduce(R::Sum, x0, &[r as i64 - 2])?;
        let t2 = c.g.binary(B::Mul, tail, tail)?;
        let tail2 = c.g.reduce(R::Sum, t2, &[r as i64 - 2])?;
        let x02 = c.g.binary(B::Mul, x0, x0)?;
        let norm2 = c.g.binary(B::Add, tail2, x02)?;
        let norm = c.g.unary(U::Sqrt, norm2)?;
        let z = c.g.full_like(x0, 0.0, d);
        let nonneg = c.g.compare(CmpDir::Ge, x0, z)?;
        let neg_norm = c.g.unary(U::Neg, norm)?;
        let s_norm = c.g.select(nonneg, norm, neg_norm)?;
        // v = x with v[k] = x0 + sign(x0) * ||x||; H = I - 2 v v^T / (v^T v).
        let vk = c.g.binary(B::Add, x0, s_norm)?;
        let vkb = c.g.unsqueeze(vk, r - 2)?;
        let vkb = c.g.broadcast_to(vkb, &vshape)?;
        let v = c.g.select(at_k, vkb, tail)?;
        let vk2 = c.g.binary(B::Mul, vk, vk)?;
        let vv = c.g.binary(B::Add, vk2, tail2)?;
        let two = c.g.full_like(vv, 2.0, d);
        let f = c.g.binary(B::Div, two, vv)?;
        let reflect = c.g.compare(CmpDir::Gt, tail2, z)?;
        let f = c.g.select(reflect, f, z)?;
        let fb = c.g.unsqueeze(f, r - 2)?;
        let fb = c.g.broadcast_to(fb, &vshape)?;
        let fv = c.g.binary(B::Mul, v, fb)?;
        let w = contract(c, rm, v, true)?;
        let upd = outer(c, fv, w)?;
        rm = c.g.binary(B::Sub, rm, upd)?;
        let qv = contract(c, q, v, false)?;
        let upd = outer(c, qv, fv)?;
        q = c.g.binary(B::Sub, q, upd)?;
    }
    let ri = c.g.iota(DType::I64, &shape, r as i64 - 2)?;
    let rj = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    let upper = c.g.compare(CmpDir::Le, ri, rj)?;
    let zero = c.g.full_like(rm, 0.0, d);
    Ok((q, c.g.select(upper, rm, zero)?))
}

/// `linalg_qr(A, mode='reduced'|'complete'|'r')` → (Q, R).
fn linalg_qr(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() || c.g.rank(x) < 2 {
        bail!(
            "linalg.qr: expected a floating point tensor of matrices, got {}",
            c.g.ty(x)
        );
    }
    let mode = a.str(1)?.unwrap_or("reduced").to_string();
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    let (m, n) = (shape[r - 2], shape[r - 1]);
    let k = m.min(n);
    let xa = c.g.convert(x, opmath(d));
    let (q, rm) = householder(c, xa)?;
    let (q, rm) = match mode.as_str() {
        "complete" => (q, rm),
        "reduced" => (c.g.slice_dim(q, r - 1, 0, k)?, c.g.slice_dim(rm, r - 2, 0, k)?),
        // Only R is computed; Q is an empty tensor, as on CPU.
        "r" => (c.g.constant(tpu_graph::ConstVal::Int(0), opmath(d), &[0]), c.g.slice_dim(rm, r - 2, 0, k)?),
        other => bail!("qr received unrecognized mode '{other}' but expected one of 'reduced' (default), 'r', or 'complete'"),
    };
    Ok(vec![c.g.convert(q, d), c.g.convert(rm, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["linalg_qr", "linalg_qr.out"], linalg_qr);
}
