//! Pairwise distances: `_cdist_forward` / `_cdist_backward` (batched,
//! batch dims broadcast) and `_pdist_forward` / `_pdist_backward` (the upper
//! triangle of `cdist(x, x)`, row-major). Distances are computed from the
//! `[B, P, R, M]` differences, so `p = 2` is exact (no `|a|^2 + |b|^2 - 2ab`
//! cancellation). `p` = 0, 1, 2 and inf have their own formulas; any other
//! `p` is a host parameter.

use crate::args::ScalarArg;
use crate::operands::{bin, broadcast_shapes, cmp_k, k, opmath, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::rows::{put_rows, take_rows};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// The norm order, with its special cases.
#[derive(Clone, Copy, PartialEq)]
enum P {
    Zero,
    One,
    Two,
    Inf,
    Other(f64),
}

fn order(what: &str, p: f64) -> Result<P> {
    if p.is_nan() || p < 0.0 {
        bail!("{what} only supports non-negative p values, got {p}");
    }
    Ok(match p {
        0.0 => P::Zero,
        1.0 => P::One,
        2.0 => P::Two,
        _ if p.is_infinite() => P::Inf,
        _ => P::Other(p),
    })
}

/// `x1 [.., P, M]` and `x2 [.., R, M]` checked, in opmath, batch dims
/// broadcast and flattened: `([B, P, M], [B, R, M], batch shape, dtype)`.
fn operands(
    c: &mut LowerCtx,
    x1: ValueId,
    x2: ValueId,
) -> Result<(ValueId, ValueId, Vec<i64>, DType)> {
    let (s1, s2) = (c.g.shape(x1).to_vec(), c.g.shape(x2).to_vec());
    if s1.len() < 2 || s2.len() < 2 {
        bail!(
            "cdist only supports at least 2D tensors, X1 got: {}D, X2 got: {}D",
            s1.len(),
            s2.len()
        );
    }
    let (m1, m2) = (s1[s1.len() - 1], s2[s2.len() - 1]);
    if m1 != m2 {
        bail!("X1 and X2 must have the same number of columns. X1: {m1} X2: {m2}");
    }
    let d = c.g.dtype(x1);
    if !d.is_float() || c.g.dtype(x2) != d {
        bail!(
            "cdist only supports floating-point dtypes of equal type, X1 got: {d}, X2 got: {}",
            c.g.dtype(x2)
        );
    }
    let batch = broadcast_shapes(&s1[..s1.len() - 2], &s2[..s2.len() - 2])?;
    let b: i64 = batch.iter().product();
    let flat = |c: &mut LowerCtx, x: ValueId, s: &[i64]| -> Result<ValueId> {
        let mut full = batch.clone();
        full.extend_from_slice(&s[s.len() - 2..]);
        let x = c.g.convert(x, opmath(d));
        let x = c.g.broadcast_to(x, &full)?;
        Ok(c.g.reshape(x, &[b, s[s.len() - 2], m1])?)
    };
    Ok((flat(c, x1, &s1)?, flat(c, x2, &s2)?, batch, d))
}

/// `x1[:, :, None] - x2[:, None]`: `[B, P, R, M]`.
fn differences(c: &mut LowerCtx, x1: ValueId, x2: ValueId) -> Result<ValueId> {
    let (s1, s2) = (c.g.shape(x1).to_vec(), c.g.shape(x2).to_vec());
    let full = [s1[0], s1[1], s2[1], s1[2]];
    let a = c.g.broadcast_in_dim(x1, &full, &[0, 1, 3])?;
    let b = c.g.broadcast_in_dim(x2, &full, &[0, 2, 3])?;
    bin(c, B::Sub, a, b)
}

/// The p-norm of `diff` over its last dim.
fn norm_last(c: &mut LowerCtx, diff: ValueId, p: P) -> Result<ValueId> {
    let last = c.g.rank(diff) as i64 - 1;
    let ad = un(c, U::Abs, diff)?;
    let d = c.g.dtype(diff);
    Ok(match p {
        P::Zero => {
            let nz = cmp_k(c, CmpDir::Ne, diff, 0.0)?;
            let nz = c.g.convert(nz, d);
            c.g.reduce(R::Sum, nz, &[last])?
        }
        P::One => c.g.reduce(R::Sum, ad, &[last])?,
        P::Two => {
            let sq = bin(c, B::Mul, diff, diff)?;
            let s = c.g.reduce(R::Sum, sq, &[last])?;
            un(c, U::Sqrt, s)?
        }
        P::Inf => c.g.reduce(R::Max, ad, &[last])?,
        P::Other(v) => {
            let sh = c.g.shape(ad).to_vec();
            let pv = c.scalar_full(ScalarArg::Float(v), d, &sh)?;
            let pw = bin(c, B::Pow, ad, pv)?;
            let s = c.g.reduce(R::Sum, pw, &[last])?;
            let sh = c.g.shape(s).to_vec();
            let inv = c.scalar_full(ScalarArg::Float(1.0 / v), d, &sh)?;
            bin(c, B::Pow, s, inv)?
        }
    })
}

/// `d dist / d x1` times `grad`, summed over the second point set:
/// `diff [B, P, R, M]`, `dist` and `grad` `[B, P, R]` → `[B, P, M]`.
/// Pairs at distance 0 contribute nothing (as on CPU).
fn norm_grad(
    c: &mut LowerCtx,
    diff: ValueId,
    dist: ValueId,
    grad: ValueId,
    p: P,
) -> Result<ValueId> {
    let shape = c.g.shape(diff).to_vec();
    let gb = c.g.broadcast_in_dim(grad, &shape, &[0, 1, 2])?;
    let db = c.g.broadcast_in_dim(dist, &shape, &[0, 1, 2])?;
    let zero = k(c, diff, 0.0);
    let sign = un(c, U::Sign, diff)?;
    let ad = un(c, U::Abs, diff)?;
    let t = match p {
        P::Zero => zero,
        P::One => sign,
        P::Two => bin(c, B::Div, diff, db)?,
        P::Inf => {
            let at_max = c.g.compare(CmpDir::Eq, ad, db)?;
            c.g.select(at_max, sign, zero)?
        }
        P::Other(v) => {
            let pm1 = c.scalar_full(ScalarArg::Float(v - 1.0), c.g.dtype(diff), &shape)?;
            let num = bin(c, B::Pow, ad, pm1)?;
            let den = bin(c, B::Pow, db, pm1)?;
            let t = bin(c, B::Mul, sign, num)?;
            let t = bin(c, B::Div, t, den)?;
            let dz = cmp_k(c, CmpDir::Eq, diff, 0.0)?;
            c.g.select(dz, zero, t)?
        }
    };
    let dist0 = cmp_k(c, CmpDir::Eq, db, 0.0)?;
    let t = c.g.select(dist0, zero, t)?;
    let t = bin(c, B::Mul, t, gb)?;
    Ok(c.g.reduce(R::Sum, t, &[2])?)
}

/// `_cdist_forward(x1, x2, p, compute_mode)`.
fn cdist_forward(c: &mut LowerCtx, a: &Args) -> Out {
    let p = order("cdist", a.float(2)?)?;
    let (x1, x2, batch, d) = operands(c, a.t(0)?, a.t(1)?)?;
    let (np, nr) = (c.g.shape(x1)[1], c.g.shape(x2)[1]);
    let diff = differences(c, x1, x2)?;
    let dist = norm_last(c, diff, p)?;
    let mut shape = batch;
    shape.extend([np, nr]);
    let dist = c.g.reshape(dist, &shape)?;
    Ok(vec![c.g.convert(dist, d)])
}

/// `_cdist_backward(grad, x1, x2, p, cdist)` → the gradient for `x1`
/// (autograd swaps the operands for `x2`); broadcast batch dims are summed.
fn cdist_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let p = order("cdist", a.float(3)?)?;
    let x1_in = a.t(1)?;
    let (x1, x2, batch, d) = operands(c, x1_in, a.t(2)?)?;
    let (b, np, nr) = (c.g.shape(x1)[0], c.g.shape(x1)[1], c.g.shape(x2)[1]);
    let acc = c.g.dtype(x1);
    let mut out_shape = batch.clone();
    out_shape.extend([np, nr]);
    let flat = |c: &mut LowerCtx, v: ValueId, what: &str| -> Result<ValueId> {
        if c.g.shape(v) != out_shape.as_slice() {
            bail!(
                "_cdist_backward: {what} {} should have shape {out_shape:?}",
                c.g.ty(v)
            );
        }
        let v = c.g.convert(v, acc);
        Ok(c.g.reshape(v, &[b, np, nr])?)
    };
    let grad = flat(c, a.t(0)?, "grad")?;
    let dist = flat(c, a.t(4)?, "cdist")?;
    let diff = differences(c, x1, x2)?;
    let gx = norm_grad(c, diff, dist, grad, p)?;
    let m = c.g.shape(x1)[2];
    let mut full = batch;
    full.extend([np, m]);
    let gx = c.g.reshape(gx, &full)?;
    // Sum over the batch dims `x1` was broadcast along.
    let x1s = c.g.shape(x1_in).to_vec();
    let lead = full.len() - x1s.len();
    let dims: Vec<usize> = (0..full.len())
        .filter(|&i| i < lead || (x1s[i - lead] == 1 && full[i] != 1))
        .collect();
    let gx = c.g.reduce_keep(R::Sum, gx, &dims, true)?;
    let gx = c.g.reshape(gx, &x1s)?;
    Ok(vec![c.g.convert(gx, d)])
}

/// `[n, n]` positions of the condensed vector: pair `(i, j)`, `i < j`, sits at
/// `i n - i (i + 1) / 2 + j - i - 1`; the diagonal and lower triangle get
/// `n (n - 1) / 2` (one past the end) unless `symmetric` mirrors them.
fn condensed_index(c: &mut LowerCtx, n: i64, symmetric: bool) -> Result<ValueId> {
    let shape = [n, n];
    let i0 = c.g.iota(DType::I64, &shape, 0)?;
    let j0 = c.g.iota(DType::I64, &shape, 1)?;
    let (i, j) = if symmetric {
        (bin(c, B::Min, i0, j0)?, bin(c, B::Max, i0, j0)?)
    } else {
        (i0, j0)
    };
    let t = c.g.binary_const(B::Add, i, 1.0)?;
    let t = bin(c, B::Mul, i, t)?;
    let t = c.g.binary_const(B::Div, t, 2.0)?;
    let base = c.g.mul_const(i, n as f64)?;
    let base = bin(c, B::Sub, base, t)?;
    let off = bin(c, B::Sub, j, i)?;
    let off = c.g.binary_const(B::Sub, off, 1.0)?;
    let idx = bin(c, B::Add, base, off)?;
    let upper = c.g.compare(CmpDir::Lt, i, j)?;
    let past = k(c, idx, (n * (n - 1) / 2) as f64);
    Ok(c.g.select(upper, idx, past)?)
}

fn check_pdist(c: &LowerCtx, x: ValueId) -> Result<(i64, DType)> {
    let t = c.g.ty(x);
    if t.rank() != 2 {
        bail!("pdist only supports 2D tensors, got: {}D", t.rank());
    }
    if !t.dtype.is_float() {
        bail!("pdist only supports floating-point dtypes, got {}", t.dtype);
    }
    Ok((t.shape[0], t.dtype))
}

/// `_pdist_forward(self, p)`: the distances of rows `i < j` in row-major order.
fn pdist_forward(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let (n, d) = check_pdist(c, x)?;
    let p = order("pdist", a.float_or(1, 2.0)?)?;
    let kk = n * (n - 1) / 2;
    if kk == 0 {
        let z = c.g.scalar(0.0, d);
        return Ok(vec![c.g.broadcast_to(z, &[0])?]);
    }
    let xu = c.g.convert(x, opmath(d));
    let xb = c.g.reshape(xu, &[1, n, c.g.shape(x)[1]])?;
    let diff = differences(c, xb, xb)?;
    let dist = norm_last(c, diff, p)?;
    let dist = c.g.reshape(dist, &[n * n])?;
    // Scatter the upper triangle; everything else lands in one spare slot.
    let idx = condensed_index(c, n, false)?;
    let idx = c.g.reshape(idx, &[n * n])?;
    let z = c.g.scalar(0.0, c.g.dtype(dist));
    let dst = c.g.broadcast_to(z, &[kk + 1])?;
    let out = put_rows(c, dst, idx, dist, None)?;
    let out = c.g.slice_dim(out, 0, 0, kk)?;
    Ok(vec![c.g.convert(out, d)])
}

/// `_pdist_backward(grad, self, p, pdist)`: the condensed `grad` and `pdist`
/// mirrored into `[n, n]` matrices, then the cdist gradient of `(x, x)`.
fn pdist_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(1)?;
    let (n, d) = check_pdist(c, x)?;
    let p = order("pdist", a.float(2)?)?;
    let kk = n * (n - 1) / 2;
    let acc = opmath(d);
    let idx = condensed_index(c, n, true)?;
    let square = |c: &mut LowerCtx, v: ValueId, what: &str| -> Result<ValueId> {
        if c.g.shape(v) != [kk] {
            bail!(
                "_pdist_backward: {what} {} should have shape [{kk}]",
                c.g.ty(v)
            );
        }
        let v = c.g.convert(v, acc);
        let z = c.g.scalar(0.0, acc);
        let padded = c.g.pad(v, z, &[0], &[1], &[0])?;
        let m = take_rows(c, padded, idx)?;
        Ok(c.g.reshape(m, &[1, n, n])?)
    };
    let grad = square(c, a.t(0)?, "grad")?;
    let dist = square(c, a.t(3)?, "pdist")?;
    let xu = c.g.convert(x, acc);
    let xb = c.g.reshape(xu, &[1, n, c.g.shape(x)[1]])?;
    let diff = differences(c, xb, xb)?;
    let gx = norm_grad(c, diff, dist, grad, p)?;
    let xs = c.g.shape(x).to_vec();
    let gx = c.g.reshape(gx, &xs)?;
    Ok(vec![c.g.convert(gx, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["_cdist_forward", "_cdist_forward.out"], cdist_forward);
    r.add(&["_cdist_backward", "_cdist_backward.out"], cdist_backward);
    r.add(&["_pdist_forward", "_pdist_forward.out"], pdist_forward);
    r.add(&["_pdist_backward", "_pdist_backward.out"], pdist_backward);
}
