//! Batch normalization: the forward overloads (`native_batch_norm`,
//! `_native_batch_norm_legit*`, `_batch_norm_with_update`, `_batch_norm_no_update`,
//! their `.out` and `_functional` forms) and the two backward ops.
//!
//! Statistics are taken per channel (dim 1) over every other dim, in f32 for
//! half inputs. Training normalizes with the biased batch variance and moves
//! the running stats by `momentum` towards the batch mean and the *unbiased*
//! batch variance, as PyTorch does. In-place running stats (`Tensor(a!)`)
//! come first in a rule's results, then the op's returns.

use crate::args::ScalarArg;
use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, ConstVal, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// The forward results.
struct Fwd {
    out: ValueId,
    save_mean: ValueId,
    save_invstd: ValueId,
    /// Updated running stats (unchanged ones in eval), when given.
    new_mean: Option<ValueId>,
    new_var: Option<ValueId>,
}

/// Input geometry: the reduced dims (all but the channel dim 1), the element count per channel.
fn geometry(c: &LowerCtx, x: ValueId) -> Result<(Vec<i64>, Vec<usize>, i64)> {
    let xs = c.g.shape(x).to_vec();
    if xs.len() < 2 {
        bail!(
            "batch_norm: expected an input with at least 2 dims (N, C, ...), got {}",
            c.g.ty(x)
        );
    }
    let dims: Vec<usize> = (0..xs.len()).filter(|&i| i != 1).collect();
    let n: i64 = dims.iter().map(|&i| xs[i]).product();
    Ok((xs, dims, n))
}

/// Checks that a per-channel tensor has shape `[C]`.
fn check_channel(c: &LowerCtx, v: Option<ValueId>, ch: i64, what: &str) -> Result<()> {
    if let Some(v) = v {
        if c.g.shape(v) != [ch] {
            bail!(
                "batch_norm: expected {what} to have shape [{ch}], got {}",
                c.g.ty(v)
            );
        }
    }
    Ok(())
}

/// `[C]` broadcast along dim 1 of `shape`.
fn chan(c: &mut LowerCtx, v: ValueId, shape: &[i64]) -> Result<ValueId> {
    Ok(c.g.broadcast_in_dim(v, shape, &[1])?)
}

/// A host float broadcast to `[C]` (a parameter: changing it does not recompile).
fn host_vec(c: &mut LowerCtx, v: f64, d: DType, ch: i64) -> Result<ValueId> {
    c.scalar_full(ScalarArg::Float(v), d, &[ch])
}

/// The dtype of saved statistics: that of the parameters (f32 for a half
/// input with f32 parameters), else the input's.
fn stat_dtype(c: &LowerCtx, x: ValueId, params: &[Option<ValueId>]) -> DType {
    params
        .iter()
        .flatten()
        .map(|&p| c.g.dtype(p))
        .next()
        .unwrap_or(c.g.dtype(x))
}

/// Batch norm forward. `training` normalizes with batch statistics (and
/// updates the running stats if given); otherwise the running stats are used.
#[allow(clippy::too_many_arguments)]
fn forward(
    c: &mut LowerCtx,
    x: ValueId,
    w: Option<ValueId>,
    b: Option<ValueId>,
    rm: Option<ValueId>,
    rv: Option<ValueId>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Fwd> {
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("batch_norm: expected a floating point input, got {d}");
    }
    let (xs, dims, n) = geometry(c, x)?;
    let ch = xs[1];
    for (v, what) in [
        (w, "weight"),
        (b, "bias"),
        (rm, "running_mean"),
        (rv, "running_var"),
    ] {
        check_channel(c, v, ch, what)?;
    }
    let acc = opmath(d);
    let sd = stat_dtype(c, x, &[rm, rv, w, b]);
    let xa = c.g.convert(x, acc);
    let epsv = host_vec(c, eps, acc, ch)?;
    let (mean, invstd, batch_var) = if training {
        let s = c.g.reduce_keep(R::Sum, xa, &dims, false)?;
        let mean = c.g.binary_const(B::Div, s, n as f64)?;
        let mb = chan(c, mean, &xs)?;
        let xc = c.g.binary(B::Sub, xa, mb)?;
        let sq = c.g.binary(B::Mul, xc, xc)?;
        let ss = c.g.reduce_keep(R::Sum, sq, &dims, false)?;
        let var = c.g.binary_const(B::Div, ss, n as f64)?;
        let ve = c.g.binary(B::Add, var, epsv)?;
        (mean, c.g.unary(U::Rsqrt, ve)?, Some(var))
    } else {
        let (Some(rm), Some(rv)) = (rm, rv) else {
            bail!("batch_norm: running_mean and running_var must be defined in evaluation mode");
        };
        let mean = c.g.convert(rm, acc);
        let var = c.g.convert(rv, acc);
        let ve = c.g.binary(B::Add, var, epsv)?;
        (mean, c.g.unary(U::Rsqrt, ve)?, None)
    };
    // y = (x - mean) * (invstd * w) + b, with the per-channel factors folded first.
    let mut scale = invstd;
    if let Some(w) = w {
        let w = c.g.convert(w, acc);
        scale = c.g.binary(B::Mul, scale, w)?;
    }
    let mb = chan(c, mean, &xs)?;
    let xc = c.g.binary(B::Sub, xa, mb)?;
    let sb = chan(c, scale, &xs)?;
    let mut y = c.g.binary(B::Mul, xc, sb)?;
    if let Some(b) = b {
        let b = c.g.convert(b, acc);
        let bb = chan(c, b, &xs)?;
        y = c.g.binary(B::Add, y, bb)?;
    }
    let out = c.g.convert(y, d);
    let (save_mean, save_invstd) = if training {
        (c.g.convert(mean, sd), c.g.convert(invstd, sd))
    } else {
        let e = c.g.constant(ConstVal::Int(0), sd, &[0]);
        (e, e)
    };
    let update =
        |c: &mut LowerCtx, run: Option<ValueId>, batch: ValueId| -> Result<Option<ValueId>> {
            let Some(run) = run else { return Ok(None) };
            let rd = c.g.dtype(run);
            let ra = opmath(rd);
            let r = c.g.convert(run, ra);
            let bt = c.g.convert(batch, ra);
            let keep = host_vec(c, 1.0 - momentum, ra, ch)?;
            let m = host_vec(c, momentum, ra, ch)?;
            let r = c.g.binary(B::Mul, r, keep)?;
            let bt = c.g.binary(B::Mul, bt, m)?;
            let s = c.g.binary(B::Add, r, bt)?;
            Ok(Some(c.g.convert(s, rd)))
        };
    let (new_mean, new_var) = match batch_var {
        Some(var) => {
            let unbiased = c.g.binary_const(B::Mul, var, n as f64 / (n - 1) as f64)?;
            (update(c, rm, mean)?, update(c, rv, unbiased)?)
        }
        None => (rm, rv),
    };
    Ok(Fwd {
        out,
        save_mean,
        save_invstd,
        new_mean,
        new_var,
    })
}

/// The in-place running stats that are present, in schema order.
fn stats(f: &Fwd) -> Vec<ValueId> {
    f.new_mean.into_iter().chain(f.new_var).collect()
}

fn reserve(c: &mut LowerCtx) -> ValueId {
    c.g.constant(ConstVal::Int(0), DType::U8, &[0])
}

/// `(input, weight?, bias?, running_mean?, running_var?)` at 0..5.
type Inputs = (
    ValueId,
    Option<ValueId>,
    Option<ValueId>,
    Option<ValueId>,
    Option<ValueId>,
);
fn inputs(a: &Args) -> Result<Inputs> {
    Ok((a.t(0)?, a.opt_t(1)?, a.opt_t(2)?, a.opt_t(3)?, a.opt_t(4)?))
}

/// `_batch_norm_with_update(input, weight?, bias?, running_mean!, running_var!, momentum, eps)`
/// → running stats, then (out, save_mean, save_invstd, reserve).
fn batch_norm_with_update(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let f = forward(c, x, w, b, rm, rv, true, a.float(5)?, a.float(6)?)?;
    let mut r = stats(&f);
    let res = reserve(c);
    r.extend([f.out, f.save_mean, f.save_invstd, res]);
    Ok(r)
}

/// `_batch_norm_with_update_functional`: (out, save_mean, save_invstd, reserve, new running_mean, new running_var).
fn batch_norm_with_update_functional(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let f = forward(c, x, w, b, rm, rv, true, a.float(5)?, a.float(6)?)?;
    let res = reserve(c);
    let mut r = vec![f.out, f.save_mean, f.save_invstd, res];
    r.extend(stats(&f));
    Ok(r)
}

/// `_batch_norm_no_update(input, weight?, bias?, running_mean?, running_var?, momentum, eps)`:
/// eval with running stats, batch statistics without them; nothing is updated.
fn batch_norm_no_update(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let training = rm.is_none() || rv.is_none();
    let f = forward(c, x, w, b, rm, rv, training, a.float(5)?, a.float(6)?)?;
    let res = reserve(c);
    Ok(vec![f.out, f.save_mean, f.save_invstd, res])
}

/// `_native_batch_norm_legit(input, weight?, bias?, running_mean!, running_var!, training, momentum, eps)`.
fn native_batch_norm_legit(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let f = forward(c, x, w, b, rm, rv, a.bool(5)?, a.float(6)?, a.float(7)?)?;
    let mut r = stats(&f);
    r.extend([f.out, f.save_mean, f.save_invstd]);
    Ok(r)
}

/// `_native_batch_norm_legit_functional`: (out, save_mean, save_invstd, new running_mean, new running_var).
fn native_batch_norm_legit_functional(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let f = forward(c, x, w, b, rm, rv, a.bool(5)?, a.float(6)?, a.float(7)?)?;
    let mut r = vec![f.out, f.save_mean, f.save_invstd];
    r.extend(stats(&f));
    Ok(r)
}

/// `_native_batch_norm_legit.no_stats(input, weight?, bias?, training, momentum, eps)`.
fn native_batch_norm_legit_no_stats(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b) = (a.t(0)?, a.opt_t(1)?, a.opt_t(2)?);
    let f = forward(c, x, w, b, None, None, a.bool(3)?, a.float(4)?, a.float(5)?)?;
    Ok(vec![f.out, f.save_mean, f.save_invstd])
}

/// `_native_batch_norm_legit_no_training(input, weight?, bias?, running_mean, running_var, momentum, eps)`.
fn native_batch_norm_legit_no_training(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let f = forward(c, x, w, b, rm, rv, false, a.float(5)?, a.float(6)?)?;
    Ok(vec![f.out, f.save_mean, f.save_invstd])
}

/// `native_batch_norm(input, weight?, bias?, running_mean?, running_var?, training, momentum, eps)`
/// with `n_out` `out=` tensors. Its schema does not mark the running stats as
/// written although CPU and CUDA update them in training; when the caller
/// treats them as written (more written tensors than `out=` ones), the new
/// stats come first, as for `_native_batch_norm_legit`.
fn native_batch_norm_at(c: &mut LowerCtx, a: &Args, n_out: usize) -> Out {
    let (x, w, b, rm, rv) = inputs(a)?;
    let f = forward(c, x, w, b, rm, rv, a.bool(5)?, a.float(6)?, a.float(7)?)?;
    let st = stats(&f);
    let mut r = if c.out_types.len() == n_out + st.len() {
        st
    } else {
        vec![]
    };
    r.extend([f.out, f.save_mean, f.save_invstd]);
    Ok(r)
}

/// `native_batch_norm_backward(grad_out, input, weight?, running_mean?, running_var?,
/// save_mean?, save_invstd?, train, eps, output_mask)`; `batch_norm_backward` takes
/// the same arguments (its `save_var` holds the saved invstd) plus `reserve`.
fn batch_norm_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go, x, w) = (a.t(0)?, a.t(1)?, a.opt_t(2)?);
    let (rm, rv, sm, si) = (a.opt_t(3)?, a.opt_t(4)?, a.opt_t(5)?, a.opt_t(6)?);
    let train = a.bool(7)?;
    let eps = a.float(8)?;
    let mask = a.bools(9).unwrap_or_else(|_| vec![true; 3]);
    let d = c.g.dtype(x);
    let (xs, dims, n) = geometry(c, x)?;
    let ch = xs[1];
    if c.g.shape(go) != xs.as_slice() {
        bail!(
            "batch_norm_backward: grad {} does not match input {}",
            c.g.ty(go),
            c.g.ty(x)
        );
    }
    // Saved statistics are empty in eval mode, where the running ones are used.
    let saved = if train {
        [(sm, "save_mean"), (si, "save_invstd")]
    } else {
        [(None, ""), (None, "")]
    };
    for (v, what) in [(w, "weight"), (rm, "running_mean"), (rv, "running_var")]
        .into_iter()
        .chain(saved)
    {
        check_channel(c, v, ch, what)?;
    }
    let acc = opmath(d);
    let (mean, invstd) = if train {
        let (Some(sm), Some(si)) = (sm, si) else {
            bail!("batch_norm_backward: save_mean and save_invstd are needed in training mode");
        };
        (c.g.convert(sm, acc), c.g.convert(si, acc))
    } else {
        let (Some(rm), Some(rv)) = (rm, rv) else {
            bail!(
                "batch_norm_backward: running_mean and running_var are needed in evaluation mode"
            );
        };
        let var = c.g.convert(rv, acc);
        let e = host_vec(c, eps, acc, ch)?;
        let ve = c.g.binary(B::Add, var, e)?;
        (c.g.convert(rm, acc), c.g.unary(U::Rsqrt, ve)?)
    };
    let g = c.g.convert(go, acc);
    let xa = c.g.convert(x, acc);
    let mb = chan(c, mean, &xs)?;
    let ib = chan(c, invstd, &xs)?;
    let xc = c.g.binary(B::Sub, xa, mb)?;
    let xhat = c.g.binary(B::Mul, xc, ib)?;
    let sum_g = c.g.reduce_keep(R::Sum, g, &dims, false)?;
    let gx = c.g.binary(B::Mul, g, xhat)?;
    let sum_gx = c.g.reduce_keep(R::Sum, gx, &dims, false)?;
    // Parameter grads take the parameters' dtype (f32 for a half input with f32 stats).
    let wd = stat_dtype(c, x, &[w, rm, rv, sm, si]);
    let gi = if mask.first().copied().unwrap_or(true) {
        // Per-channel factor invstd * w.
        let mut k = invstd;
        if let Some(w) = w {
            let w = c.g.convert(w, acc);
            k = c.g.binary(B::Mul, k, w)?;
        }
        let kb = chan(c, k, &xs)?;
        let t = if train {
            let mg = c.g.binary_const(B::Div, sum_g, n as f64)?;
            let mgx = c.g.binary_const(B::Div, sum_gx, n as f64)?;
            let mgb = chan(c, mg, &xs)?;
            let mgxb = chan(c, mgx, &xs)?;
            let t = c.g.binary(B::Sub, g, mgb)?;
            let u = c.g.binary(B::Mul, xhat, mgxb)?;
            c.g.binary(B::Sub, t, u)?
        } else {
            g
        };
        let r = c.g.binary(B::Mul, t, kb)?;
        c.g.convert(r, d)
    } else {
        c.g.constant(ConstVal::Int(0), d, &xs)
    };
    let gw = if mask.get(1).copied().unwrap_or(true) {
        c.g.convert(sum_gx, wd)
    } else {
        c.g.constant(ConstVal::Int(0), wd, &[ch])
    };
    let gb = if mask.get(2).copied().unwrap_or(true) {
        c.g.convert(sum_g, wd)
    } else {
        c.g.constant(ConstVal::Int(0), wd, &[ch])
    };
    Ok(vec![gi, gw, gb])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["_batch_norm_with_update", "_batch_norm_with_update.out"],
        batch_norm_with_update,
    );
    r.add(
        &["_batch_norm_with_update_functional"],
        batch_norm_with_update_functional,
    );
    r.add(
        &["_batch_norm_no_update", "_batch_norm_no_update.out"],
        batch_norm_no_update,
    );
    r.add(
        &["_native_batch_norm_legit", "_native_batch_norm_legit.out"],
        native_batch_norm_legit,
    );
    r.add(
        &["_native_batch_norm_legit_functional"],
        native_batch_norm_legit_functional,
    );
    r.add(
        &[
            "_native_batch_norm_legit.no_stats",
            "_native_batch_norm_legit.no_stats_out",
        ],
        native_batch_norm_legit_no_stats,
    );
    r.add(
        &[
            "_native_batch_norm_legit_no_training",
            "_native_batch_norm_legit_no_training.out",
        ],
        native_batch_norm_legit_no_training,
    );
    r.add(&["native_batch_norm"], |c, a| native_batch_norm_at(c, a, 0));
    r.add(&["native_batch_norm.out"], |c, a| {
        native_batch_norm_at(c, a, 3)
    });
    r.add(
        &[
            "native_batch_norm_backward",
            "native_batch_norm_backward.out",
            "batch_norm_backward",
        ],
        batch_norm_backward,
    );
}
