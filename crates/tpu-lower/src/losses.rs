//! Margin losses over class scores: `multi_margin_loss` and
//! `multilabel_margin_loss_forward`, and their backward ops. Inputs are
//! `[N, C]` or `[C]`; targets are compared against an iota over classes
//! (one-hot masks), so no gather reaches the plugin with a bad index (target
//! ranges are checked on the device). Half inputs compute in f32.

use crate::operands::{bin, cmp_k, k, opmath, Out};
use crate::registry::{Args, CheckKind, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, ValueId};

/// Scores as `[N, C]` in opmath, with the input dtype and whether it was 1-D.
fn scores(c: &mut LowerCtx, what: &str, x: ValueId) -> Result<(ValueId, DType, bool)> {
    let t = c.g.ty(x).clone();
    let ok = match t.rank() {
        0 => true,
        1 => t.shape[0] > 0,
        2 => t.shape[1] > 0,
        _ => false,
    };
    if !ok {
        bail!("{what}: Expected non-empty vector or matrix with optional 0-dim batch size, but got: {:?}", t.shape);
    }
    if !t.dtype.is_float() {
        bail!("{what}: expected a floating point input, got {}", t.dtype);
    }
    let x = c.g.convert(x, opmath(t.dtype));
    // A 0-dim input is one sample of one class.
    let flat = if t.rank() <= 1 {
        c.g.reshape(x, &[1, t.numel()])?
    } else {
        x
    };
    Ok((flat, t.dtype, t.rank() <= 1))
}

/// Reduction 0 (none: `none_shape`), 1 (mean over samples) or 2 (sum) of per-sample losses `[N]`.
fn reduce(c: &mut LowerCtx, l: ValueId, reduction: i64, none_shape: &[i64]) -> Result<ValueId> {
    match reduction {
        0 => Ok(c.g.reshape(l, none_shape)?),
        1 | 2 => {
            let n = c.g.shape(l)[0];
            let s = c.g.reduce(R::Sum, l, &[0])?;
            if reduction == 1 {
                Ok(c.g.binary_const(B::Div, s, n as f64)?)
            } else {
                Ok(s)
            }
        }
        _ => bail!("{reduction} is not a valid value for reduction"),
    }
}

/// The per-sample scale of a backward op: `grad` (of the reduced loss's
/// shape) as `[N, 1]` broadcast to `shape`, divided by `N` for the mean.
fn grad_scale(
    c: &mut LowerCtx,
    g: ValueId,
    reduction: i64,
    shape: &[i64],
    acc: DType,
) -> Result<ValueId> {
    let n = shape[0];
    let g = c.g.convert(g, acc);
    let g = if reduction == 0 {
        if c.g.ty(g).numel() != n {
            bail!(
                "margin loss backward: grad {} does not have {n} elements",
                c.g.ty(g)
            );
        }
        c.g.reshape(g, &[n, 1])?
    } else {
        let g = c.g.reshape(g, &[1, 1])?;
        if reduction == 1 {
            c.g.binary_const(B::Div, g, n as f64)?
        } else {
            g
        }
    };
    Ok(c.g.broadcast_to(g, shape)?)
}

/// `[N, C]` one-hot of class targets `t [N]` (checked in `0..C`).
fn one_hot(c: &mut LowerCtx, what: &str, t: ValueId, n: i64, cls: i64) -> Result<ValueId> {
    c.require_index_dtype(t, what)?;
    if c.g.ty(t).numel() != n {
        bail!(
            "{what}: inconsistent target size: {:?} for input of {n} samples",
            c.g.shape(t)
        );
    }
    c.check_range(
        t,
        (0, cls),
        CheckKind::Runtime,
        format!("{what}: target {{}} out of range"),
    )?;
    let t = c.g.convert(t, DType::I64);
    let t = c.g.reshape(t, &[n])?;
    let iota = c.g.iota(DType::I64, &[n, cls], 1)?;
    let tb = c.g.broadcast_in_dim(t, &[n, cls], &[0])?;
    Ok(c.g.compare(CmpDir::Eq, iota, tb)?)
}

/// Shared part of multi_margin_loss: `(z, hinge mask, one-hot, per-sample weight)`
/// with `z[n, i] = margin - x[n, y] + x[n, i]`, the mask `z > 0 and i != y`.
struct Margins {
    z: ValueId,
    on: ValueId,
    w: Option<ValueId>,
    acc: DType,
    d: DType,
}

/// Arguments `(self, target, p, margin, weight, reduction)` from `at`.
fn margins(c: &mut LowerCtx, a: &Args, at: usize) -> Result<(Margins, i64)> {
    let what = "multi_margin_loss";
    let (x, d, _) = scores(c, what, a.t(at)?)?;
    let acc = c.g.dtype(x);
    let [n, cls] = [c.g.shape(x)[0], c.g.shape(x)[1]];
    let p = a.scalar(at + 2)?.as_f64();
    if p != 1.0 && p != 2.0 {
        bail!("{what}: only p == 1 and p == 2 supported, got {p}");
    }
    let hot = one_hot(c, what, a.t(at + 1)?, n, cls)?;
    let hf = c.g.convert(hot, acc);
    let xy = bin(c, B::Mul, hf, x)?;
    let xy = c.g.reduce(R::Sum, xy, &[1])?;
    let xy = c.g.broadcast_in_dim(xy, &[n, cls], &[0])?;
    let margin = c.scalar_full(a.scalar(at + 3)?, acc, &[n, cls])?;
    let z = bin(c, B::Sub, margin, xy)?;
    let z = bin(c, B::Add, z, x)?;
    let pos = cmp_k(c, CmpDir::Gt, z, 0.0)?;
    let not_hot = c.g.unary(tpu_graph::UnaryKind::Not, hot)?;
    let on = bin(c, B::And, pos, not_hot)?;
    let w = match a.opt_t(at + 4)? {
        Some(w) => {
            if c.g.shape(w) != [cls] {
                bail!("{what}: weight {} should be of shape [{cls}]", c.g.ty(w));
            }
            let w = c.g.convert(w, acc);
            let wb = c.g.broadcast_in_dim(w, &[n, cls], &[1])?;
            let wy = bin(c, B::Mul, wb, hf)?;
            let wy = c.g.reduce(R::Sum, wy, &[1])?;
            Some(c.g.broadcast_in_dim(wy, &[n, cls], &[0])?)
        }
        None => None,
    };
    let m = Margins { z, on, w, acc, d };
    Ok((m, p as i64))
}

/// `multi_margin_loss(self, target, p, margin, weight?, reduction)`:
/// `sum_{i != y} w[y] max(0, margin - x[y] + x[i])^p / C` per sample.
fn multi_margin_loss(c: &mut LowerCtx, a: &Args) -> Out {
    let (m, p) = margins(c, a, 0)?;
    let cls = c.g.shape(m.z)[1];
    let zero = k(c, m.z, 0.0);
    let h = if p == 1 {
        m.z
    } else {
        bin(c, B::Mul, m.z, m.z)?
    };
    let mut h = c.g.select(m.on, h, zero)?;
    if let Some(w) = m.w {
        h = bin(c, B::Mul, h, w)?;
    }
    let l = c.g.reduce(R::Sum, h, &[1])?;
    let l = c.g.binary_const(B::Div, l, cls as f64)?;
    let none_shape = c.g.shape(a.t(1)?).to_vec();
    let r = reduce(c, l, a.int_or(5, 1)?, &none_shape)?;
    Ok(vec![c.g.convert(r, m.d)])
}

/// `multi_margin_loss_backward(grad, self, target, p, margin, weight?, reduction)`.
fn multi_margin_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (m, p) = margins(c, a, 1)?;
    let shape = c.g.shape(m.z).to_vec();
    let zero = k(c, m.z, 0.0);
    let dh = if p == 1 {
        k(c, m.z, 1.0)
    } else {
        c.g.mul_const(m.z, 2.0)?
    };
    let mut dh = c.g.select(m.on, dh, zero)?;
    if let Some(w) = m.w {
        dh = bin(c, B::Mul, dh, w)?;
    }
    let dh = c.g.binary_const(B::Div, dh, shape[1] as f64)?;
    // The target class gets minus the sum of the others.
    let tot = c.g.reduce(R::Sum, dh, &[1])?;
    let tot = c.g.broadcast_in_dim(tot, &shape, &[0])?;
    let hot = one_hot(c, "multi_margin_loss", a.t(2)?, shape[0], shape[1])?;
    let neg = c.g.unary(tpu_graph::UnaryKind::Neg, tot)?;
    let gx = c.g.select(hot, neg, dh)?;
    let g = grad_scale(c, a.t(0)?, a.int_or(6, 1)?, &shape, m.acc)?;
    let gx = bin(c, B::Mul, gx, g)?;
    let xs = c.g.shape(a.t(1)?).to_vec();
    let gx = c.g.reshape(gx, &xs)?;
    Ok(vec![c.g.convert(gx, m.d)])
}

/// Shared part of multilabel_margin_loss: targets `[N, C]` list class
/// labels up to the first negative one. Returns `(hinge mask [N, C(j), C(i)],
/// labels one-hot [N, C(j), C(c)] (valid slots only), is_target [N, C], z)`.
struct Labels {
    on: ValueId,
    hot: ValueId,
    is_target: ValueId,
    z: ValueId,
}

fn labels(c: &mut LowerCtx, x: ValueId, t: ValueId, one_d: bool) -> Result<Labels> {
    let what = "multilabel_margin_loss";
    let [n, cls] = [c.g.shape(x)[0], c.g.shape(x)[1]];
    c.require_index_dtype(t, what)?;
    let want: Vec<i64> = if one_d { vec![cls] } else { vec![n, cls] };
    let fits = if one_d {
        c.g.rank(t) <= 1 && c.g.ty(t).numel() == cls
    } else {
        c.g.shape(t) == want.as_slice()
    };
    if !fits {
        bail!(
            "{what}: inconsistent target size: {:?} for input of size: {:?}",
            c.g.shape(t),
            want
        );
    }
    let acc = c.g.dtype(x);
    let t = c.g.convert(t, DType::I64);
    let t = c.g.reshape(t, &[n, cls])?;
    // A slot is valid while no earlier (or this) label was negative; only
    // valid labels are checked, as on CPU.
    let nonneg = cmp_k(c, CmpDir::Ge, t, 0.0)?;
    let nonneg = c.g.convert(nonneg, DType::I64);
    let valid = c.g.cumulative(R::Min, nonneg, 1)?;
    let valid = cmp_k(c, CmpDir::Eq, valid, 1.0)?;
    let zero = k(c, t, 0.0);
    let checked = c.g.select(valid, t, zero)?;
    c.check_range(
        checked,
        (0, cls),
        CheckKind::Runtime,
        format!("{what}: target {{}} out of range"),
    )?;
    let s3 = [n, cls, cls];
    let iota = c.g.iota(DType::I64, &s3, 2)?;
    let tb = c.g.broadcast_in_dim(t, &s3, &[0, 1])?;
    let eq = c.g.compare(CmpDir::Eq, iota, tb)?;
    let vb = c.g.broadcast_in_dim(valid, &s3, &[0, 1])?;
    let hot = bin(c, B::And, eq, vb)?;
    let is_target = c.g.reduce(R::Or, hot, &[1])?;
    let hf = c.g.convert(hot, acc);
    let xb = c.g.broadcast_in_dim(x, &s3, &[0, 2])?;
    let xy = bin(c, B::Mul, hf, xb)?;
    let xy = c.g.reduce(R::Sum, xy, &[2])?;
    let xy = c.g.broadcast_in_dim(xy, &s3, &[0, 1])?;
    // z[n, j, i] = 1 - x[y_j] + x[i], counted for valid j and non-target i.
    let one = k(c, xb, 1.0);
    let z = bin(c, B::Sub, one, xy)?;
    let z = bin(c, B::Add, z, xb)?;
    let pos = cmp_k(c, CmpDir::Gt, z, 0.0)?;
    let not_t = c.g.unary(tpu_graph::UnaryKind::Not, is_target)?;
    let not_t = c.g.broadcast_in_dim(not_t, &s3, &[0, 2])?;
    let on = bin(c, B::And, pos, not_t)?;
    let on = bin(c, B::And, on, vb)?;
    Ok(Labels {
        on,
        hot: hf,
        is_target,
        z,
    })
}

/// `multilabel_margin_loss_forward(self, target, reduction)` → (loss, is_target).
fn multilabel_margin_loss_forward(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d, one_d) = scores(c, "multilabel_margin_loss", a.t(0)?)?;
    let l = labels(c, x, a.t(1)?, one_d)?;
    let [n, cls] = [c.g.shape(x)[0], c.g.shape(x)[1]];
    let zero = k(c, l.z, 0.0);
    let h = c.g.select(l.on, l.z, zero)?;
    let s = c.g.reduce(R::Sum, h, &[1, 2])?;
    let s = c.g.binary_const(B::Div, s, cls as f64)?;
    let none_shape: Vec<i64> = if one_d { vec![] } else { vec![n] };
    let r = reduce(c, s, a.int(2)?, &none_shape)?;
    let it = c.g.convert(l.is_target, d);
    let ts = c.g.shape(a.t(1)?).to_vec();
    let it = c.g.reshape(it, &ts)?;
    Ok(vec![c.g.convert(r, d), it])
}

/// `multilabel_margin_loss_backward(grad, self, target, reduction, is_target)`.
fn multilabel_margin_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d, one_d) = scores(c, "multilabel_margin_loss", a.t(1)?)?;
    let acc = c.g.dtype(x);
    let l = labels(c, x, a.t(2)?, one_d)?;
    let shape = c.g.shape(x).to_vec();
    let on = c.g.convert(l.on, acc);
    // +1/C at each counted non-target i, -count_j/C at the label of slot j.
    let plus = c.g.reduce(R::Sum, on, &[1])?;
    let cnt = c.g.reduce(R::Sum, on, &[2])?;
    let s3 = c.g.shape(l.hot).to_vec();
    let cnt = c.g.broadcast_in_dim(cnt, &s3, &[0, 1])?;
    let minus = bin(c, B::Mul, cnt, l.hot)?;
    let minus = c.g.reduce(R::Sum, minus, &[1])?;
    let gx = bin(c, B::Sub, plus, minus)?;
    let gx = c.g.binary_const(B::Div, gx, shape[1] as f64)?;
    let g = grad_scale(c, a.t(0)?, a.int(3)?, &shape, acc)?;
    let gx = bin(c, B::Mul, gx, g)?;
    let xs = c.g.shape(a.t(1)?).to_vec();
    let gx = c.g.reshape(gx, &xs)?;
    Ok(vec![c.g.convert(gx, d)])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["multi_margin_loss", "multi_margin_loss.out"],
        multi_margin_loss,
    );
    r.add(
        &[
            "multi_margin_loss_backward",
            "multi_margin_loss_backward.grad_input",
        ],
        multi_margin_loss_backward,
    );
    r.add(
        &[
            "multilabel_margin_loss_forward",
            "multilabel_margin_loss_forward.output",
        ],
        multilabel_margin_loss_forward,
    );
    r.add(
        &[
            "multilabel_margin_loss_backward",
            "multilabel_margin_loss_backward.grad_input",
        ],
        multilabel_margin_loss_backward,
    );
}
