//! Group norm: `native_group_norm` and its backward. The input `[N, C, *]` is
//! viewed as `[N, G, C/G, HxW]`; statistics are per `(n, g)`. Half inputs
//! compute in f32 and round once (as CPU's kernel does).

use crate::args::ScalarArg;
use crate::operands::{bin, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// `(N, C, HxW, group)` at arguments `at..at+4`, checked against `x`.
fn geometry(c: &LowerCtx, a: &Args, x: ValueId, at: usize) -> Result<[i64; 4]> {
    let (n, ch, hw, g) = (a.int(at)?, a.int(at + 1)?, a.int(at + 2)?, a.int(at + 3)?);
    let t = c.g.ty(x);
    if t.rank() < 2 || t.shape[0] != n || t.shape[1] != ch || t.numel() != n * ch * hw {
        bail!("group_norm: input {t} does not match N = {n}, C = {ch}, HxW = {hw}");
    }
    if g <= 0 || ch % g != 0 {
        bail!("group_norm: Expected number of channels in input to be divisible by num_groups, but got input of shape {:?} and num_groups={g}", t.shape);
    }
    Ok([n, ch, hw, g])
}

/// A per-channel `[C]` tensor broadcast over `[N, G, C/G, HxW]`.
fn per_channel(c: &mut LowerCtx, w: ValueId, shape4: &[i64], acc: DType) -> Result<ValueId> {
    let ch = shape4[1] * shape4[2];
    if c.g.shape(w) != [ch] {
        bail!(
            "group_norm: weight/bias {} should be of shape [{ch}]",
            c.g.ty(w)
        );
    }
    let w = c.g.convert(w, acc);
    let w = c.g.reshape(w, &[shape4[1], shape4[2]])?;
    Ok(c.g.broadcast_in_dim(w, shape4, &[1, 2])?)
}

/// Dtype of mean/rstd: f32 when a half input has f32 parameters, else the input's.
fn stat_dtype(c: &LowerCtx, x: ValueId, w: Option<ValueId>) -> DType {
    let d = c.g.dtype(x);
    match w.map(|w| c.g.dtype(w)) {
        Some(wd) if wd != d && opmath(d) == wd => wd,
        _ => d,
    }
}

/// `native_group_norm(input, weight?, bias?, N, C, HxW, group, eps)` → (out, mean, rstd).
fn native_group_norm(c: &mut LowerCtx, a: &Args) -> Out {
    let x0 = a.t(0)?;
    let [n, ch, hw, g] = geometry(c, a, x0, 3)?;
    let d = c.g.dtype(x0);
    if !d.is_float() {
        bail!("group_norm: expected a floating point input, got {d}");
    }
    let acc = opmath(d);
    let (w, b) = (a.opt_t(1)?, a.opt_t(2)?);
    let sd = stat_dtype(c, x0, w);
    let shape = c.g.shape(x0).to_vec();
    let s4 = [n, g, ch / g, hw];
    let x = c.g.convert(x0, acc);
    let x = c.g.reshape(x, &s4)?;
    let mean = crate::reduction::mean_of(c, x, &[2, 3], true, acc)?;
    let mb = c.g.broadcast_to(mean, &s4)?;
    let xc = bin(c, B::Sub, x, mb)?;
    let sq = bin(c, B::Mul, xc, xc)?;
    let var = crate::reduction::mean_of(c, sq, &[2, 3], true, acc)?;
    let vshape = c.g.shape(var).to_vec();
    let eps = c.scalar_full(ScalarArg::Float(a.float(7)?), acc, &vshape)?;
    let ve = bin(c, B::Add, var, eps)?;
    let rstd = c.g.unary(U::Rsqrt, ve)?;
    let rb = c.g.broadcast_to(rstd, &s4)?;
    let mut y = bin(c, B::Mul, xc, rb)?;
    if let Some(w) = w {
        let wb = per_channel(c, w, &s4, acc)?;
        y = bin(c, B::Mul, y, wb)?;
    }
    if let Some(b) = b {
        let bb = per_channel(c, b, &s4, acc)?;
        y = bin(c, B::Add, y, bb)?;
    }
    let y = c.g.reshape(y, &shape)?;
    let mean = c.g.reshape(mean, &[n, g])?;
    let rstd = c.g.reshape(rstd, &[n, g])?;
    Ok(vec![
        c.g.convert(y, d),
        c.g.convert(mean, sd),
        c.g.convert(rstd, sd),
    ])
}

/// `native_group_norm_backward(grad_out, input, mean, rstd, weight?, N, C, HxW, group, output_mask)`:
/// `dx = rstd (g - mean(g) - xhat mean(g xhat))` with `g = grad_out weight`,
/// `dweight = sum(grad_out xhat)`, `dbias = sum(grad_out)` over N and HxW.
fn native_group_norm_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go0, x0) = (a.t(0)?, a.t(1)?);
    let [n, ch, hw, g] = geometry(c, a, x0, 5)?;
    if c.g.shape(go0) != c.g.shape(x0) {
        bail!(
            "native_group_norm_backward: grad {} does not match input {}",
            c.g.ty(go0),
            c.g.ty(x0)
        );
    }
    let (mean, rstd) = (a.t(2)?, a.t(3)?);
    for (what, v) in [("mean", mean), ("rstd", rstd)] {
        if c.g.ty(v).numel() != n * g {
            bail!(
                "native_group_norm_backward: {what} {} should have N * group = {} elements",
                c.g.ty(v),
                n * g
            );
        }
    }
    let d = c.g.dtype(x0);
    let acc = opmath(d);
    let w = a.opt_t(4)?;
    let mask = a.bools(9).unwrap_or_else(|_| vec![true; 3]);
    let shape = c.g.shape(x0).to_vec();
    let s4 = [n, g, ch / g, hw];
    let go = c.g.convert(go0, acc);
    let go = c.g.reshape(go, &s4)?;
    let x = c.g.convert(x0, acc);
    let x = c.g.reshape(x, &s4)?;
    let stat = |c: &mut LowerCtx, v: ValueId| -> Result<ValueId> {
        let v = c.g.convert(v, acc);
        let v = c.g.reshape(v, &[n, g])?;
        Ok(c.g.broadcast_in_dim(v, &s4, &[0, 1])?)
    };
    let mb = stat(c, mean)?;
    let rb = stat(c, rstd)?;
    let xc = bin(c, B::Sub, x, mb)?;
    let xhat = bin(c, B::Mul, xc, rb)?;
    let wd = w.map(|w| c.g.dtype(w)).unwrap_or(d);
    let gi = if mask[0] {
        let gw = match w {
            Some(w) => {
                let wb = per_channel(c, w, &s4, acc)?;
                bin(c, B::Mul, go, wb)?
            }
            None => go,
        };
        let m = (ch / g * hw).max(1) as f64;
        let mg = c.g.sum_keep_bcast(gw, &[2, 3])?;
        let mg = c.g.mul_const(mg, 1.0 / m)?;
        let gx = bin(c, B::Mul, gw, xhat)?;
        let mgx = c.g.sum_keep_bcast(gx, &[2, 3])?;
        let mgx = c.g.mul_const(mgx, 1.0 / m)?;
        let t = bin(c, B::Sub, gw, mg)?;
        let u = bin(c, B::Mul, xhat, mgx)?;
        let t = bin(c, B::Sub, t, u)?;
        let r = bin(c, B::Mul, rb, t)?;
        let r = c.g.reshape(r, &shape)?;
        c.g.convert(r, d)
    } else {
        c.g.full_like(x0, 0.0, d)
    };
    // Per-channel sums over N and HxW, as `[C]`.
    let channel_sum = |c: &mut LowerCtx, v: ValueId, out: DType| -> Result<ValueId> {
        let s = c.g.reduce(R::Sum, v, &[0, 3])?;
        let s = c.g.reshape(s, &[ch])?;
        Ok(c.g.convert(s, out))
    };
    let gw = if mask[1] {
        let p = bin(c, B::Mul, go, xhat)?;
        channel_sum(c, p, wd)?
    } else {
        let z = c.g.scalar(0.0, wd);
        c.g.broadcast_to(z, &[ch])?
    };
    let gb = if mask[2] {
        channel_sum(c, go, wd)?
    } else {
        let z = c.g.scalar(0.0, wd);
        c.g.broadcast_to(z, &[ch])?
    };
    Ok(vec![gi, gw, gb])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["native_group_norm", "native_group_norm.out"],
        native_group_norm,
    );
    r.add(
        &[
            "native_group_norm_backward",
            "native_group_norm_backward.out",
        ],
        native_group_norm_backward,
    );
}
