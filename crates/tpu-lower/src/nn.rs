//! Neural-network family: softmax / log-softmax, nll and mse losses, layer
//! norm, dropout. Activations live in [`crate::activation`], convolution and
//! pooling in [`crate::conv`].
//!
//! Half-precision inputs compute in f32 and round once, as PyTorch's
//! `opmath_type` does.

use crate::args::ScalarArg;
use crate::operands::{bin, opmath, up, wrap_dim, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// Softmax dim and the result dtype (`half_to_float` gives f32 for half inputs).
fn softmax_setup(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, usize, DType)> {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    let out = if a.bool_or(2, false)? && matches!(d, DType::BF16 | DType::F16) {
        DType::F32
    } else {
        d
    };
    if !out.is_float() {
        return Err(crate::LowerError::DtypeNotImplemented(format!(
            "softmax: not implemented for integer input {d} (pass dtype=)"
        )));
    }
    Ok((c.g.convert(x, opmath(d)), dim, out))
}

/// `(x - max, log(sum(exp(x - max))))` along `dim` (kept, broadcast back).
fn shifted_lse(c: &mut LowerCtx, x: ValueId, dim: usize) -> Result<(ValueId, ValueId)> {
    let shape = c.g.shape(x).to_vec();
    let dims: &[usize] = if shape.is_empty() { &[] } else { &[dim] };
    // A NaN already poisons its row through `x - max`, so the plain XLA max suffices.
    let m = c.g.reduce(
        R::Max,
        x,
        &dims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
    )?;
    let m =
        c.g.reshape(m, &crate::reduction::keep_shape(&shape, dims))?;
    let m = c.g.broadcast_to(m, &shape)?;
    let s = bin(c, B::Sub, x, m)?;
    let e = c.g.unary(U::Exp, s)?;
    let sum = c.g.sum_keep_bcast(e, dims)?;
    Ok((s, sum))
}

fn softmax(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, dim, out) = softmax_setup(c, a)?;
    let (s, sum) = shifted_lse(c, x, dim)?;
    let e = c.g.unary(U::Exp, s)?;
    let y = bin(c, B::Div, e, sum)?;
    Ok(vec![c.g.convert(y, out)])
}

fn log_softmax(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, dim, out) = softmax_setup(c, a)?;
    let (s, sum) = shifted_lse(c, x, dim)?;
    let l = c.g.unary(U::Log, sum)?;
    let y = bin(c, B::Sub, s, l)?;
    Ok(vec![c.g.convert(y, out)])
}

/// Backward args `(grad_output, output, dim, input_dtype)`.
fn softmax_bw_setup(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, ValueId, Vec<usize>, DType)> {
    let (g, y) = (a.t(0)?, a.t(1)?);
    let out = a.opt_dtype(3)?.unwrap_or(c.g.dtype(g));
    let acc = opmath(c.g.dtype(g));
    let r = c.g.rank(g);
    let dims = if r == 0 {
        vec![]
    } else {
        vec![wrap_dim(a.int(2)?, r)?]
    };
    Ok((c.g.convert(g, acc), c.g.convert(y, acc), dims, out))
}

/// `grad_input = out * (grad - sum(grad * out))`.
fn softmax_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, y, dims, out) = softmax_bw_setup(c, a)?;
    let gy = bin(c, B::Mul, g, y)?;
    let s = c.g.sum_keep_bcast(gy, &dims)?;
    let t = bin(c, B::Sub, g, s)?;
    let r = bin(c, B::Mul, y, t)?;
    Ok(vec![c.g.convert(r, out)])
}

/// `grad_input = grad - exp(out) * sum(grad)`.
fn log_softmax_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, y, dims, out) = softmax_bw_setup(c, a)?;
    let s = c.g.sum_keep_bcast(g, &dims)?;
    let e = c.g.unary(U::Exp, y)?;
    let t = bin(c, B::Mul, e, s)?;
    let r = bin(c, B::Sub, g, t)?;
    Ok(vec![c.g.convert(r, out)])
}

/// For nll losses: the one-hot mask of `target` over the class dim of `x`
/// (dim 1, or 0 for an unbatched input) times the per-element weight,
/// with `ignore_index` targets weighted 0. Returns `(weighted one-hot, w_t)`
/// where `w_t` has the target's shape.
fn nll_weights(
    c: &mut LowerCtx,
    x: ValueId,
    t: ValueId,
    w: Option<ValueId>,
    ignore: i64,
) -> Result<(ValueId, ValueId)> {
    let xs = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let cdim = if xs.len() == 1 { 0 } else { 1 };
    let mut expect = xs.clone();
    expect.remove(cdim);
    if c.g.shape(t) != expect.as_slice() {
        bail!(
            "nll_loss: target {} does not match input {}",
            c.g.ty(t),
            c.g.ty(x)
        );
    }
    let t = c.g.convert(t, DType::I64);
    let dims: Vec<i64> = (0..xs.len() as i64).filter(|&i| i != cdim as i64).collect();
    let tb = c.g.broadcast_in_dim(t, &xs, &dims)?;
    let classes = c.g.iota(DType::I64, &xs, cdim as i64)?;
    let hit = c.g.compare(CmpDir::Eq, tb, classes)?;
    let ig =
        c.g.constant(tpu_graph::ConstVal::Int(ignore), DType::I64, &xs);
    let keep = c.g.compare(CmpDir::Ne, tb, ig)?;
    let hit = bin(c, B::And, hit, keep)?;
    let one = c.g.full_like(x, 1.0, d);
    let zero = c.g.full_like(x, 0.0, d);
    let mut oh = c.g.select(hit, one, zero)?;
    if let Some(w) = w {
        let w = c.g.convert(w, d);
        let wb = c.g.broadcast_in_dim(w, &xs, &[cdim as i64])?;
        oh = bin(c, B::Mul, oh, wb)?;
    }
    let wt = c.g.reduce_keep(R::Sum, oh, &[cdim], false)?;
    Ok((oh, wt))
}

/// Every target other than `ignore` names a class of `x` (CPU's `IndexError`).
fn check_targets(c: &mut LowerCtx, x: ValueId, t: ValueId, ignore: i64) -> Result<()> {
    let xs = c.g.shape(x);
    let classes = if xs.len() == 1 { xs[0] } else { xs[1] };
    c.require_index_dtype(t, "nll_loss")?;
    let t = c.g.convert(t, DType::I64);
    let ig = c.g.full_like(t, ignore as f64, DType::I64);
    let ignored = c.g.compare(CmpDir::Eq, t, ig)?;
    let zero = c.g.full_like(t, 0.0, DType::I64);
    let t = c.g.select(ignored, zero, t)?;
    c.check_range(
        t,
        (0, classes),
        crate::registry::CheckKind::Index,
        "Target {} is out of bounds.".into(),
    )
}

/// `nll_loss_forward(self, target, weight?, reduction, ignore_index)` → (output, total_weight).
fn nll_loss_forward(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, t, w) = (a.t(0)?, a.t(1)?, a.opt_t(2)?);
    let (red, ignore) = (a.int(3)?, a.int(4)?);
    let (xa, d) = up(c, x);
    check_targets(c, x, t, ignore)?;
    let w = w.map(|w| c.g.convert(w, c.g.dtype(xa)));
    let (oh, wt) = nll_weights(c, xa, t, w, ignore)?;
    let cdim = if c.g.rank(x) == 1 { 0 } else { 1 };
    let picked = bin(c, B::Mul, oh, xa)?;
    let picked = c.g.reduce_keep(R::Sum, picked, &[cdim], false)?;
    let loss = c.g.unary(U::Neg, picked)?;
    let all: Vec<usize> = (0..c.g.rank(loss)).collect();
    let total = c.g.reduce_keep(R::Sum, wt, &all, false)?;
    let out = match red {
        0 => {
            let z = c.g.scalar(0.0, d);
            return Ok(vec![c.g.convert(loss, d), z]);
        }
        1 => {
            let s = c.g.reduce_keep(R::Sum, loss, &all, false)?;
            bin(c, B::Div, s, total)?
        }
        2 => c.g.reduce_keep(R::Sum, loss, &all, false)?,
        r => bail!("nll_loss: invalid reduction {r}"),
    };
    Ok(vec![c.g.convert(out, d), c.g.convert(total, d)])
}

/// `nll_loss_backward(grad_output, self, target, weight?, reduction, ignore_index, total_weight)`.
fn nll_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go, x, t, w) = (a.t(0)?, a.t(1)?, a.t(2)?, a.opt_t(3)?);
    let (red, ignore, tw) = (a.int(4)?, a.int(5)?, a.t(6)?);
    let (xa, d) = up(c, x);
    let acc = c.g.dtype(xa);
    let w = w.map(|w| c.g.convert(w, acc));
    let (oh, _) = nll_weights(c, xa, t, w, ignore)?;
    let xs = c.g.shape(x).to_vec();
    let cdim = if xs.len() == 1 { 0 } else { 1 };
    let go = c.g.convert(go, acc);
    let g = match red {
        0 => {
            let dims: Vec<i64> = (0..xs.len() as i64).filter(|&i| i != cdim as i64).collect();
            c.g.broadcast_in_dim(go, &xs, &dims)?
        }
        1 => {
            let tw = c.g.convert(tw, acc);
            let q = bin(c, B::Div, go, tw)?;
            c.g.broadcast_to(q, &xs)?
        }
        _ => c.g.broadcast_to(go, &xs)?,
    };
    let r = bin(c, B::Mul, oh, g)?;
    let r = c.g.unary(U::Neg, r)?;
    Ok(vec![c.g.convert(r, d)])
}

/// Applies a loss reduction (0 none, 1 mean, 2 sum).
fn reduce_loss(c: &mut LowerCtx, v: ValueId, red: i64) -> Result<ValueId> {
    let all: Vec<usize> = (0..c.g.rank(v)).collect();
    match red {
        0 => Ok(v),
        1 => {
            let n = c.g.ty(v).numel();
            let s = c.g.reduce_keep(R::Sum, v, &all, false)?;
            Ok(c.g.binary_const(B::Div, s, n as f64)?)
        }
        2 => Ok(c.g.reduce_keep(R::Sum, v, &all, false)?),
        r => bail!("invalid reduction {r}"),
    }
}

/// `mse_loss(self, target, reduction)`.
fn mse_loss(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(0)?);
    let acc = c.g.dtype(x);
    let diff = c.g.binary_bcast(B::Sub, x, a.t(1)?, acc)?;
    let sq = bin(c, B::Mul, diff, diff)?;
    let r = reduce_loss(c, sq, a.int_or(2, 1)?)?;
    Ok(vec![c.g.convert(r, d)])
}

/// `mse_loss_backward(grad, self, target, reduction)`: `2 (x - t) grad [/ n]`.
fn mse_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(1)?);
    let acc = c.g.dtype(x);
    let diff = c.g.binary_bcast(B::Sub, x, a.t(2)?, acc)?;
    let n = c.g.ty(diff).numel();
    let scale = if a.int(3)? == 1 { 2.0 / n as f64 } else { 2.0 };
    let t = c.g.mul_const(diff, scale)?;
    let r = c.g.binary_bcast(B::Mul, t, a.t(0)?, acc)?;
    Ok(vec![c.g.convert(r, d)])
}

/// Normalized (trailing) dims of layer norm, checked against `normalized_shape`.
fn ln_dims(c: &LowerCtx, x: ValueId, shape: &[i64]) -> Result<Vec<usize>> {
    let xs = c.g.shape(x);
    let r = xs.len();
    if shape.len() > r || xs[r - shape.len()..] != *shape {
        bail!(
            "layer_norm: normalized_shape {shape:?} does not match input {}",
            c.g.ty(x)
        );
    }
    Ok((r - shape.len()..r).collect())
}

/// `native_layer_norm(input, normalized_shape, weight?, bias?, eps)` → (out, mean, rstd).
fn native_layer_norm(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(0)?);
    let acc = c.g.dtype(x);
    let dims = ln_dims(c, x, &a.ints(1)?)?;
    let shape = c.g.shape(x).to_vec();
    let mean = crate::reduction::mean_of(c, x, &dims, true, acc)?;
    let mb = c.g.broadcast_to(mean, &shape)?;
    let xc = bin(c, B::Sub, x, mb)?;
    let sq = bin(c, B::Mul, xc, xc)?;
    let var = crate::reduction::mean_of(c, sq, &dims, true, acc)?;
    let vshape = c.g.shape(var).to_vec();
    let eps = c.scalar_full(ScalarArg::Float(a.float(4)?), acc, &vshape)?;
    let ve = bin(c, B::Add, var, eps)?;
    let rstd = c.g.unary(U::Rsqrt, ve)?;
    let rb = c.g.broadcast_to(rstd, &shape)?;
    let mut y = bin(c, B::Mul, xc, rb)?;
    if let Some(w) = a.opt_t(2)? {
        y = c.g.binary_bcast(B::Mul, y, w, acc)?;
    }
    if let Some(b) = a.opt_t(3)? {
        y = c.g.binary_bcast(B::Add, y, b, acc)?;
    }
    Ok(vec![
        c.g.convert(y, d),
        c.g.convert(mean, d),
        c.g.convert(rstd, d),
    ])
}

/// `native_layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight?, bias?, output_mask)`.
fn native_layer_norm_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go, _) = up(c, a.t(0)?);
    let (x, d) = up(c, a.t(1)?);
    let acc = c.g.dtype(x);
    let nshape = a.ints(2)?;
    let dims = ln_dims(c, x, &nshape)?;
    let shape = c.g.shape(x).to_vec();
    let mean = c.g.coerce(a.t(3)?, acc, &shape)?;
    let rstd = c.g.coerce(a.t(4)?, acc, &shape)?;
    let w = a.opt_t(5)?;
    let mask = a.bools(7).unwrap_or_else(|_| vec![true; 3]);
    let xc = bin(c, B::Sub, x, mean)?;
    let xhat = bin(c, B::Mul, xc, rstd)?;
    let batch: Vec<usize> = (0..shape.len() - dims.len()).collect();
    let wd = w.map(|w| c.g.dtype(w)).unwrap_or(d);
    let gi = if mask[0] {
        let g = match w {
            Some(w) => c.g.binary_bcast(B::Mul, go, w, acc)?,
            None => go,
        };
        let n: i64 = dims.iter().map(|&i| shape[i]).product();
        let mg = c.g.sum_keep_bcast(g, &dims)?;
        let mg = c.g.mul_const(mg, 1.0 / n as f64)?;
        let gx = bin(c, B::Mul, g, xhat)?;
        let mgx = c.g.sum_keep_bcast(gx, &dims)?;
        let mgx = c.g.mul_const(mgx, 1.0 / n as f64)?;
        let t = bin(c, B::Sub, g, mg)?;
        let u = bin(c, B::Mul, xhat, mgx)?;
        let t = bin(c, B::Sub, t, u)?;
        let r = bin(c, B::Mul, rstd, t)?;
        c.g.convert(r, d)
    } else {
        c.g.full_like(x, 0.0, d)
    };
    let gw = if mask[1] && w.is_some() {
        let p = bin(c, B::Mul, go, xhat)?;
        let s = c.g.reduce_keep(R::Sum, p, &batch, false)?;
        c.g.convert(s, wd)
    } else {
        let z = c.g.scalar(0.0, wd);
        c.g.broadcast_to(z, &nshape)?
    };
    let bd = a.opt_t(6)?.map(|b| c.g.dtype(b)).unwrap_or(wd);
    let gb = if mask[2] {
        let s = c.g.reduce_keep(R::Sum, go, &batch, false)?;
        c.g.convert(s, bd)
    } else {
        let z = c.g.scalar(0.0, bd);
        c.g.broadcast_to(z, &nshape)?
    };
    Ok(vec![gi, gw, gb])
}

/// `native_dropout(input, p, train?)` → (out, bool mask), keep probability `1 - p`.
fn native_dropout(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let p = a.float(1)?;
    let train = if a.has(2) { a.bool(2)? } else { true };
    if !train || c.g.ty(x).numel() == 0 {
        let mask = c.g.full_like(x, 1.0, DType::Bool);
        return Ok(vec![x, mask]);
    }
    let shape = c.g.shape(x).to_vec();
    let ud = if d == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let state = c.default_rng_state();
    let u = crate::random::uniform01(c, state, &shape, ud)?;
    let keep_p = c.scalar_full(ScalarArg::Float(1.0 - p), ud, &shape)?;
    let mask = c.g.compare(CmpDir::Lt, u, keep_p)?;
    let scale = if p >= 1.0 { 0.0 } else { 1.0 / (1.0 - p) };
    let s = c.scalar_full(ScalarArg::Float(scale), d, &shape)?;
    let zero = c.g.full_like(x, 0.0, d);
    let kept = c.g.select(mask, x, zero)?;
    Ok(vec![bin(c, B::Mul, kept, s)?, mask])
}

/// `native_dropout_backward(grad, mask, scale)`: `grad * mask * scale`, of
/// grad's dtype if float, else the default float dtype (as on CPU); half
/// grads compute in f32 and round once.
fn native_dropout_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, m) = (a.t(0)?, a.t(1)?);
    let d = crate::operands::float_dtype(c.g.dtype(g));
    let acc = opmath(d);
    let shape = c.g.shape(g).to_vec();
    let g = c.g.convert(g, acc);
    let m = c.g.coerce(m, acc, &shape)?;
    let s = c.scalar_full(ScalarArg::Float(a.float(2)?), acc, &shape)?;
    let r = bin(c, B::Mul, g, m)?;
    let r = bin(c, B::Mul, r, s)?;
    Ok(vec![c.g.convert(r, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["_softmax", "_softmax.out"], softmax);
    r.add(&["_log_softmax", "_log_softmax.out"], log_softmax);
    r.add(
        &["_softmax_backward_data", "_softmax_backward_data.out"],
        softmax_backward,
    );
    r.add(
        &[
            "_log_softmax_backward_data",
            "_log_softmax_backward_data.out",
        ],
        log_softmax_backward,
    );
    r.add(
        &[
            "nll_loss_forward",
            "nll_loss_forward.output",
            "nll_loss2d_forward",
            "nll_loss2d_forward.output",
        ],
        nll_loss_forward,
    );
    r.add(
        &[
            "nll_loss_backward",
            "nll_loss_backward.grad_input",
            "nll_loss2d_backward",
            "nll_loss2d_backward.grad_input",
        ],
        nll_loss_backward,
    );
    r.add(&["mse_loss", "mse_loss.out"], mse_loss);
    r.add(
        &["mse_loss_backward", "mse_loss_backward.grad_input"],
        mse_loss_backward,
    );
    r.add(
        &["native_layer_norm", "native_layer_norm.out"],
        native_layer_norm,
    );
    r.add(
        &[
            "native_layer_norm_backward",
            "native_layer_norm_backward.out",
        ],
        native_layer_norm_backward,
    );
    r.add(&["native_dropout", "native_dropout.out"], native_dropout);
    r.add(
        &["native_dropout_backward", "native_dropout_backward.out"],
        native_dropout_backward,
    );
}
