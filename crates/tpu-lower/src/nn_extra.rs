//! More nn functions and their backward ops: hardshrink, softshrink,
//! hardsigmoid, hardswish, mish, glu, log_sigmoid, huber and smooth-L1 losses,
//! prelu, binary cross-entropy, channel_shuffle. Half types compute in f32.

use crate::operands::{bin, cmp, cmp_k, done, grad_and_x, isnan, k, opmath, result_type, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind, UnaryKind as U, ValueId};

/// `hardshrink(x, l)`: `|x| <= l ? 0 : x`.
fn hardshrink(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let l = a.float_or(1, 0.5)?;
    let ax = un(c, U::Abs, x)?;
    let small = cmp_k(c, CmpDir::Le, ax, l)?;
    let zero = k(c, x, 0.0);
    Ok(vec![c.g.select(small, zero, x)?])
}

/// `softshrink(x, l)`: `x - l` above l, `x + l` below -l, else 0.
fn softshrink(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let l = a.float_or(1, 0.5)?;
    let lo = k(c, x, l);
    let above = cmp(c, CmpDir::Gt, x, lo)?;
    let below = cmp_k(c, CmpDir::Lt, x, -l)?;
    let minus = bin(c, B::Sub, x, lo)?;
    let plus = bin(c, B::Add, x, lo)?;
    let zero = k(c, x, 0.0);
    let r = c.g.select(below, plus, zero)?;
    let r = c.g.select(above, minus, r)?;
    let nan = isnan(c, x)?;
    Ok(vec![c.g.select(nan, x, r)?])
}

/// `clamp(x / 6 + 0.5, 0, 1)` in opmath.
fn hardsigmoid_of(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let s = c.g.mul_const(x, 1.0 / 6.0)?;
    let half = k(c, x, 0.5);
    let s = bin(c, B::Add, s, half)?;
    let (lo, hi) = (k(c, x, 0.0), k(c, x, 1.0));
    Ok(c.g.clamp(lo, s, hi)?)
}
fn hardsigmoid(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let (xu, d) = (c.g.convert(x, opmath(c.g.dtype(x))), c.g.dtype(x));
    let r = hardsigmoid_of(c, xu)?;
    done(c, r, d)
}
fn hardswish(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let (xu, d) = (c.g.convert(x, opmath(c.g.dtype(x))), c.g.dtype(x));
    let h = hardsigmoid_of(c, xu)?;
    let r = bin(c, B::Mul, xu, h)?;
    done(c, r, d)
}

/// `log1p(exp(x))`, linear above 20 as PyTorch's softplus.
fn softplus_of(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let e = un(c, U::Exp, x)?;
    let l = un(c, U::Log1p, e)?;
    let big = cmp_k(c, CmpDir::Gt, x, 20.0)?;
    Ok(c.g.select(big, x, l)?)
}
fn mish(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let (xu, d) = (c.g.convert(x, opmath(c.g.dtype(x))), c.g.dtype(x));
    let sp = softplus_of(c, xu)?;
    let t = un(c, U::Tanh, sp)?;
    let r = bin(c, B::Mul, xu, t)?;
    done(c, r, d)
}

/// `glu(x, dim)`: first half times the sigmoid of the second.
fn glu(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    let dim = crate::operands::wrap_dim(a.int_or(1, -1)?, r)?;
    let n = c.g.shape(x)[dim];
    if n % 2 != 0 {
        bail!("glu: Halving dimension must be even, but dimension {dim} is size {n}");
    }
    let first = c.g.slice_dim(x, dim, 0, n / 2)?;
    let second = c.g.slice_dim(x, dim, n / 2, n)?;
    let s = un(c, U::Logistic, second)?;
    Ok(vec![bin(c, B::Mul, first, s)?])
}

/// `log_sigmoid_forward(x) -> (out, buffer)`: `min(x, 0) - log1p(exp(-|x|))`; the buffer is unused.
fn log_sigmoid_forward(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let xu = c.g.convert(x, opmath(d));
    let zero = k(c, xu, 0.0);
    let m = bin(c, B::Min, xu, zero)?;
    let ax = un(c, U::Abs, xu)?;
    let n = un(c, U::Neg, ax)?;
    let e = un(c, U::Exp, n)?;
    let l = un(c, U::Log1p, e)?;
    let r = bin(c, B::Sub, m, l)?;
    let nan = isnan(c, xu)?;
    let r = c.g.select(nan, xu, r)?;
    let buffer = c.g.constant(tpu_graph::ConstVal::Int(0), d, &[0]);
    Ok(vec![c.g.convert(r, d), buffer])
}

/// `log_sigmoid_backward(grad, x, buffer)`: `grad * sigmoid(-x)`.
fn log_sigmoid_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(g);
    let xu = c.g.convert(x, opmath(d));
    let n = un(c, U::Neg, xu)?;
    let s = un(c, U::Logistic, n)?;
    let gu = c.g.convert(g, opmath(d));
    let r = c.g.binary_bcast(B::Mul, gu, s, opmath(d))?;
    done(c, r, d)
}

/// Applies a loss reduction (0 none, 1 mean, 2 sum).
fn reduce_loss(c: &mut LowerCtx, l: ValueId, reduction: i64) -> Result<ValueId> {
    let dims: Vec<usize> = (0..c.g.rank(l)).collect();
    match reduction {
        0 => Ok(l),
        1 => {
            let s = c.g.reduce_keep(ReduceKind::Sum, l, &dims, false)?;
            let n = c.g.count_over(l, &dims, c.g.dtype(l));
            Ok(c.g.binary(B::Div, s, n)?)
        }
        2 => Ok(c.g.reduce_keep(ReduceKind::Sum, l, &dims, false)?),
        r => bail!("invalid reduction {r}"),
    }
}

/// Huber (`scale_quadratic = 0.5`, linear `delta (|e| - delta/2)`) and smooth L1
/// (`0.5 e^2 / beta`, linear `|e| - beta/2`) losses.
fn piecewise_loss(c: &mut LowerCtx, a: &Args, huber: bool) -> Out {
    let (x, y) = (a.t(0)?, a.t(1)?);
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let w = opmath(d);
    let reduction = a.int_or(2, 1)?;
    let p = a.float_or(3, 1.0)?;
    let e = c.g.binary_bcast(B::Sub, x, y, w)?;
    let ae = un(c, U::Abs, e)?;
    let sq = bin(c, B::Mul, e, e)?;
    let (quad, lin) = if huber {
        let q = c.g.mul_const(sq, 0.5)?;
        let h = k(c, ae, 0.5 * p);
        let l = bin(c, B::Sub, ae, h)?;
        (q, c.g.mul_const(l, p)?)
    } else {
        if p == 0.0 {
            let r = reduce_loss(c, ae, reduction)?;
            return done(c, r, d);
        }
        let q = c.g.mul_const(sq, 0.5 / p)?;
        let h = k(c, ae, 0.5 * p);
        (q, bin(c, B::Sub, ae, h)?)
    };
    let small = cmp_k(c, CmpDir::Lt, ae, p)?;
    let l = c.g.select(small, quad, lin)?;
    let r = reduce_loss(c, l, reduction)?;
    done(c, r, d)
}

/// `_prelu_kernel(x, weight)`: `x > 0 ? x : weight * x`, weight broadcast.
fn prelu_kernel(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, w) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let wx = c.g.binary_bcast(B::Mul, w, x, d)?;
    let shape = c.g.shape(wx).to_vec();
    let x = c.g.broadcast_to(x, &shape)?;
    let pos = cmp_k(c, CmpDir::Gt, x, 0.0)?;
    Ok(vec![c.g.select(pos, x, wx)?])
}

/// `grad` where `keep`, else 0.
pub(crate) fn grad_where(c: &mut LowerCtx, keep: ValueId, g: ValueId, d: DType) -> Out {
    let zero = k(c, g, 0.0);
    let r = c.g.select(keep, g, zero)?;
    done(c, r, d)
}

/// hardshrink/softshrink backward: `|x| <= lambd ? 0 : grad`.
fn shrink_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x, d) = grad_and_x(c, a)?;
    let ax = un(c, U::Abs, x)?;
    let keep = cmp_k(c, CmpDir::Gt, ax, a.float_or(2, 0.5)?)?;
    grad_where(c, keep, g, d)
}

fn hardsigmoid_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x, d) = grad_and_x(c, a)?;
    let lo = cmp_k(c, CmpDir::Gt, x, -3.0)?;
    let hi = cmp_k(c, CmpDir::Lt, x, 3.0)?;
    let keep = bin(c, B::And, lo, hi)?;
    let g6 = c.g.mul_const(g, 1.0 / 6.0)?;
    grad_where(c, keep, g6, d)
}

/// `x < -3 ? 0 : x <= 3 ? grad (x / 3 + 0.5) : grad`.
fn hardswish_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x, d) = grad_and_x(c, a)?;
    let t = c.g.mul_const(x, 1.0 / 3.0)?;
    let half = k(c, x, 0.5);
    let t = bin(c, B::Add, t, half)?;
    let mid = bin(c, B::Mul, g, t)?;
    let le3 = cmp_k(c, CmpDir::Le, x, 3.0)?;
    let r = c.g.select(le3, mid, g)?;
    let keep = cmp_k(c, CmpDir::Ge, x, -3.0)?;
    grad_where(c, keep, r, d)
}

/// `glu_backward(grad, x, dim)`: `[grad sigmoid(b), grad a sigmoid(b) (1 - sigmoid(b))]`.
fn glu_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let dim = crate::operands::wrap_dim(a.int(2)?, c.g.rank(x))?;
    let n = c.g.shape(x)[dim];
    let first = c.g.slice_dim(x, dim, 0, n / 2)?;
    let second = c.g.slice_dim(x, dim, n / 2, n)?;
    let s = un(c, U::Logistic, second)?;
    let ga = bin(c, B::Mul, g, s)?;
    let one = k(c, s, 1.0);
    let oms = bin(c, B::Sub, one, s)?;
    let gb = bin(c, B::Mul, ga, first)?;
    let gb = bin(c, B::Mul, gb, oms)?;
    Ok(vec![c.g.concatenate(&[ga, gb], dim as i64)?])
}

/// Huber / smooth L1 backward `(grad, self, target, reduction, delta|beta)`.
fn piecewise_loss_backward(c: &mut LowerCtx, a: &Args, huber: bool) -> Out {
    let (x, t) = (a.t(1)?, a.t(2)?);
    let d = c.g.dtype(x);
    let w = opmath(d);
    let e = c.g.binary_bcast(B::Sub, x, t, w)?;
    let shape = c.g.shape(e).to_vec();
    let mut g = c.g.coerce(a.t(0)?, w, &shape)?;
    if a.int_or(3, 1)? == 1 {
        let n = shape.iter().product::<i64>().max(1);
        g = c.g.mul_const(g, 1.0 / n as f64)?;
    }
    let p = a.float_or(4, 1.0)?;
    let sign = un(c, U::Sign, e)?;
    let ae = un(c, U::Abs, e)?;
    let inner = if huber {
        e
    } else if p == 0.0 {
        sign
    } else {
        c.g.mul_const(e, 1.0 / p)?
    };
    let outer = if huber { c.g.mul_const(sign, p)? } else { sign };
    let small = cmp_k(c, CmpDir::Lt, ae, p)?;
    let small = if huber {
        cmp_k(c, CmpDir::Le, ae, p)?
    } else {
        small
    };
    let dl = c.g.select(small, inner, outer)?;
    let r = bin(c, B::Mul, dl, g)?;
    done(c, r, d)
}

/// `_prelu_kernel_backward(grad, x, weight) -> (grad_input, grad_weight)`; the weight
/// gradient keeps the broadcast shape (autograd sums it to the weight's shape).
fn prelu_kernel_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x, w) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let d = c.g.dtype(x);
    let wg = c.g.binary_bcast(B::Mul, w, g, d)?;
    let shape = c.g.shape(wg).to_vec();
    let x = c.g.broadcast_to(x, &shape)?;
    let g = c.g.coerce(g, d, &shape)?;
    let pos = cmp_k(c, CmpDir::Gt, x, 0.0)?;
    let gi = c.g.select(pos, g, wg)?;
    let xg = bin(c, B::Mul, x, g)?;
    let zero = k(c, xg, 0.0);
    let gw = c.g.select(pos, zero, xg)?;
    Ok(vec![gi, gw])
}

/// `binary_cross_entropy(self, target, weight, reduction)`: logs clamped at -100.
fn binary_cross_entropy(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, t) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let w = opmath(d);
    let (xu, tu) = (c.g.convert(x, w), c.g.convert(t, w));
    // CPU's check (NaN fails it too): a probability outside [0, 1] raises.
    let (zero, one) = (k(c, xu, 0.0), k(c, xu, 1.0));
    let above = c.g.compare(CmpDir::Ge, xu, zero)?;
    let below = c.g.compare(CmpDir::Le, xu, one)?;
    let in_range = bin(c, B::And, above, below)?;
    c.check_all_nonzero(
        in_range,
        "binary_cross_entropy: all elements of input should be between 0 and 1".into(),
    )?;
    let floor = k(c, xu, -100.0);
    let lx = un(c, U::Log, xu)?;
    let lx = bin(c, B::Max, lx, floor)?;
    let one = k(c, xu, 1.0);
    let omx = bin(c, B::Sub, one, xu)?;
    let l1x = un(c, U::Log, omx)?;
    let l1x = bin(c, B::Max, l1x, floor)?;
    let omt = bin(c, B::Sub, one, tu)?;
    let p1 = bin(c, B::Mul, tu, lx)?;
    let p2 = bin(c, B::Mul, omt, l1x)?;
    let s = bin(c, B::Add, p1, p2)?;
    let mut l = un(c, U::Neg, s)?;
    if let Some(wt) = a.opt_t(2)? {
        l = c.g.binary_bcast(B::Mul, l, wt, w)?;
    }
    let r = reduce_loss(c, l, a.int_or(3, 1)?)?;
    done(c, r, d)
}

/// `binary_cross_entropy_backward(grad, self, target, weight, reduction)`:
/// `grad (x - t) / max((1 - x) x, 1e-12)`.
fn binary_cross_entropy_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, t) = (a.t(1)?, a.t(2)?);
    let d = c.g.dtype(x);
    let w = opmath(d);
    let shape = c.g.shape(x).to_vec();
    let (xu, tu) = (c.g.convert(x, w), c.g.coerce(t, w, &shape)?);
    let mut g = c.g.coerce(a.t(0)?, w, &shape)?;
    if a.int_or(4, 1)? == 1 {
        let n = shape.iter().product::<i64>().max(1);
        g = c.g.mul_const(g, 1.0 / n as f64)?;
    }
    let one = k(c, xu, 1.0);
    let omx = bin(c, B::Sub, one, xu)?;
    let den = bin(c, B::Mul, omx, xu)?;
    let eps = k(c, xu, 1e-12);
    let den = bin(c, B::Max, den, eps)?;
    let num = bin(c, B::Sub, xu, tu)?;
    let q = bin(c, B::Div, num, den)?;
    let mut r = bin(c, B::Mul, q, g)?;
    if let Some(wt) = a.opt_t(3)? {
        r = c.g.binary_bcast(B::Mul, r, wt, w)?;
    }
    done(c, r, d)
}

/// `channel_shuffle(self, groups)`: `[N, g, C/g, ..] -> [N, C/g, g, ..]`.
fn channel_shuffle(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let g = a.int(1)?;
    let shape = c.g.shape(x).to_vec();
    if shape.len() < 3 || g <= 0 || shape[1] % g != 0 {
        bail!(
            "channel_shuffle: {} channels are not divisible into {g} groups",
            shape.get(1).unwrap_or(&0)
        );
    }
    let mut split = vec![shape[0], g, shape[1] / g];
    split.extend_from_slice(&shape[2..]);
    let v = c.g.reshape(x, &split)?;
    let mut perm: Vec<i64> = (0..split.len() as i64).collect();
    perm.swap(1, 2);
    let v = c.g.transpose(v, &perm)?;
    Ok(vec![c.g.reshape(v, &shape)?])
}

/// The dims `norm_except_dim(v, 2, dim)` reduces: every dim of `v` but `dim`.
fn except_dim(c: &LowerCtx, v: ValueId, dim: i64) -> Result<Vec<usize>> {
    let rank = c.g.rank(v);
    let dim = crate::operands::wrap_dim(dim, rank.max(1))?;
    Ok((0..rank).filter(|&i| i != dim).collect())
}

/// `v` in opmath and its norms over every dim but `dim`.
fn weight_norm_parts(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, ValueId, DType)> {
    let v = a.t(0)?;
    let d = c.g.dtype(v);
    let dims = except_dim(c, v, a.int_or(2, 0)?)?;
    let vu = c.g.convert(v, opmath(d));
    let sq = bin(c, B::Mul, vu, vu)?;
    let ss = c.g.reduce_keep(ReduceKind::Sum, sq, &dims, true)?;
    let norms = un(c, U::Sqrt, ss)?;
    Ok((vu, norms, d))
}

/// `_weight_norm_interface(v, g, dim)`: `(v * g / ||v||, ||v||)`, the norm over every dim but `dim`.
fn weight_norm_interface(c: &mut LowerCtx, a: &Args) -> Out {
    let (vu, norms, d) = weight_norm_parts(c, a)?;
    let m = opmath(d);
    let g = a.t(1)?;
    let gu = c.g.convert(g, m);
    let scale = c.g.binary_bcast(B::Div, gu, norms, m)?;
    let w = c.g.binary_bcast(B::Mul, vu, scale, m)?;
    let norm_dtype = c.out_type(1).map(|t| t.dtype).unwrap_or(c.g.dtype(g));
    Ok(vec![c.g.convert(w, d), c.g.convert(norms, norm_dtype)])
}

/// `_weight_norm_interface_backward(grad_w, v, g, norms, dim)`:
/// `grad_g = sum(grad_w * v) / n`, `grad_v = g / n * (grad_w - v * grad_g / n)`.
fn weight_norm_interface_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let grad = a.t(0)?;
    let (v, g, n) = (a.t(1)?, a.t(2)?, a.t(3)?);
    let (dv, dg) = (c.g.dtype(v), c.g.dtype(g));
    let dims = except_dim(c, v, a.int_or(4, 0)?)?;
    let m = opmath(dv);
    let (grad, v, g, n) = (
        c.g.convert(grad, m),
        c.g.convert(v, m),
        c.g.convert(g, m),
        c.g.convert(n, m),
    );
    let gv = bin(c, B::Mul, grad, v)?;
    let sums = c.g.reduce_keep(ReduceKind::Sum, gv, &dims, true)?;
    let grad_g = c.g.binary_bcast(B::Div, sums, n, m)?;
    let t = c.g.binary_bcast(B::Div, grad_g, n, m)?;
    let vt = c.g.binary_bcast(B::Mul, v, t, m)?;
    let diff = bin(c, B::Sub, grad, vt)?;
    let scale = c.g.binary_bcast(B::Div, g, n, m)?;
    let grad_v = c.g.binary_bcast(B::Mul, diff, scale, m)?;
    let g_shape = c.g.shape(g).to_vec();
    let grad_g = c.g.reshape(grad_g, &g_shape)?;
    Ok(vec![c.g.convert(grad_v, dv), c.g.convert(grad_g, dg)])
}

pub fn register(r: &mut Registry) {
    r.add(&["_weight_norm_interface"], weight_norm_interface);
    r.add(
        &["_weight_norm_interface_backward"],
        weight_norm_interface_backward,
    );
    r.add(
        &["binary_cross_entropy", "binary_cross_entropy.out"],
        binary_cross_entropy,
    );
    r.add(
        &[
            "binary_cross_entropy_backward",
            "binary_cross_entropy_backward.grad_input",
        ],
        binary_cross_entropy_backward,
    );
    r.add(
        &["channel_shuffle", "native_channel_shuffle"],
        channel_shuffle,
    );
    r.add(
        &[
            "hardshrink_backward",
            "hardshrink_backward.grad_input",
            "softshrink_backward",
            "softshrink_backward.grad_input",
        ],
        shrink_backward,
    );
    r.add(
        &["hardsigmoid_backward", "hardsigmoid_backward.grad_input"],
        hardsigmoid_backward,
    );
    r.add(
        &["hardswish_backward", "hardswish_backward.out"],
        hardswish_backward,
    );
    r.add(&["glu_backward", "glu_backward.grad_input"], glu_backward);
    r.add(
        &["huber_loss_backward", "huber_loss_backward.out"],
        |c, a| piecewise_loss_backward(c, a, true),
    );
    r.add(
        &[
            "smooth_l1_loss_backward",
            "smooth_l1_loss_backward.grad_input",
        ],
        |c, a| piecewise_loss_backward(c, a, false),
    );
    r.add(&["_prelu_kernel_backward"], prelu_kernel_backward);
    r.add(&["hardshrink", "hardshrink.out"], hardshrink);
    r.add(&["softshrink", "softshrink.out"], softshrink);
    r.add(
        &["hardsigmoid", "hardsigmoid.out", "hardsigmoid_"],
        hardsigmoid,
    );
    r.add(&["hardswish", "hardswish.out", "hardswish_"], hardswish);
    r.add(&["mish", "mish.out", "mish_"], mish);
    r.add(&["glu", "glu.out"], glu);
    r.add(
        &["log_sigmoid_forward", "log_sigmoid_forward.output"],
        log_sigmoid_forward,
    );
    r.add(
        &["log_sigmoid_backward", "log_sigmoid_backward.grad_input"],
        log_sigmoid_backward,
    );
    r.add(&["huber_loss", "huber_loss.out"], |c, a| {
        piecewise_loss(c, a, true)
    });
    r.add(&["smooth_l1_loss", "smooth_l1_loss.out"], |c, a| {
        piecewise_loss(c, a, false)
    });
    r.add(&["_prelu_kernel"], prelu_kernel);
}
