//! Special functions and small composite ops that reach the backend as their
//! own ATen ops: logaddexp, xlogy, entr, copysign, heaviside, hypot, sinc,
//! logit, nan_to_num, ndtri, angle, signbit; shrink/hard activations, glu,
//! log_sigmoid, huber/smooth-l1 losses, prelu; trace, nansum, count_nonzero,
//! aminmax, isin, bucketize/searchsorted. Half types compute in f32.

use crate::args::{Arg, ScalarArg};
use crate::promote::{float_dtype, result_type};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::helpers::opmath;
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind, UnaryKind as U, ValueId};

type Out = Result<Vec<ValueId>>;

/// Argument `i` (a tensor or a host scalar) in `dtype`.
fn operand(c: &mut LowerCtx, a: &Args, i: usize, dtype: DType) -> Result<ValueId> {
    match a.arg(i) {
        Arg::Tensor(t) => Ok(c.g.convert(t.v, dtype)),
        _ => {
            let s = a.scalar(i)?;
            Ok(c.scalar(s, dtype))
        }
    }
}

/// Arguments 0 and 1 promoted (to float if `float`), broadcast, in opmath;
/// returns them with the result dtype.
fn pair(c: &mut LowerCtx, a: &Args, float: bool) -> Result<(ValueId, ValueId, DType)> {
    let mut d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    if float {
        d = float_dtype(d);
    }
    let w = opmath(d);
    let x = operand(c, a, 0, w)?;
    let y = operand(c, a, 1, w)?;
    let shape = tpu_graph::helpers::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    Ok((
        c.g.broadcast_to(x, &shape)?,
        c.g.broadcast_to(y, &shape)?,
        d,
    ))
}

/// Argument 0 as float in opmath, with the result dtype.
fn float_arg(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, DType)> {
    let x = a.t(0)?;
    let d = float_dtype(c.g.dtype(x));
    Ok((c.g.convert(x, opmath(d)), d))
}

fn k(c: &mut LowerCtx, like: ValueId, v: f64) -> ValueId {
    c.g.full_like(like, v, c.g.dtype(like))
}

fn un(c: &mut LowerCtx, kind: U, x: ValueId) -> Result<ValueId> {
    Ok(c.g.unary(kind, x)?)
}

fn bin(c: &mut LowerCtx, kind: B, x: ValueId, y: ValueId) -> Result<ValueId> {
    Ok(c.g.binary(kind, x, y)?)
}

fn cmp(c: &mut LowerCtx, dir: CmpDir, x: ValueId, y: ValueId) -> Result<ValueId> {
    Ok(c.g.compare(dir, x, y)?)
}

fn cmp_k(c: &mut LowerCtx, dir: CmpDir, x: ValueId, v: f64) -> Result<ValueId> {
    let kv = k(c, x, v);
    cmp(c, dir, x, kv)
}

fn isnan(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    cmp(c, CmpDir::Ne, x, x)
}

fn done(c: &mut LowerCtx, v: ValueId, d: DType) -> Out {
    Ok(vec![c.g.convert(v, d)])
}

/// `log(exp(x) + exp(y))` (base `e`) or `log2(2^x + 2^y)`, stable; equal infinities pass through.
fn logaddexp_base(c: &mut LowerCtx, a: &Args, ln_base: f64) -> Out {
    let (x, y, d) = pair(c, a, true)?;
    let m = bin(c, B::Max, x, y)?;
    let diff = bin(c, B::Sub, x, y)?;
    let ad = un(c, U::Abs, diff)?;
    let scaled = c.g.mul_const(ad, -ln_base)?;
    let e = un(c, U::Exp, scaled)?;
    let l = un(c, U::Log1p, e)?;
    let l = c.g.mul_const(l, 1.0 / ln_base)?;
    let r = bin(c, B::Add, m, l)?;
    let same = cmp(c, CmpDir::Eq, x, y)?;
    let fin = un(c, U::IsFinite, x)?;
    let inf = un(c, U::Not, fin)?;
    let pass = bin(c, B::And, same, inf)?;
    let r = c.g.select(pass, x, r)?;
    done(c, r, d)
}
fn logaddexp(c: &mut LowerCtx, a: &Args) -> Out {
    logaddexp_base(c, a, 1.0)
}
fn logaddexp2(c: &mut LowerCtx, a: &Args) -> Out {
    logaddexp_base(c, a, std::f64::consts::LN_2)
}

/// `x * f(y)`, 0 where `x == 0`, NaN where `y` is NaN (xlogy, xlog1py).
fn x_times(c: &mut LowerCtx, a: &Args, f: U) -> Out {
    let (x, y, d) = pair(c, a, true)?;
    let fy = un(c, f, y)?;
    let p = bin(c, B::Mul, x, fy)?;
    let zero = k(c, x, 0.0);
    let xz = cmp(c, CmpDir::Eq, x, zero)?;
    let r = c.g.select(xz, zero, p)?;
    let ynan = isnan(c, y)?;
    let r = c.g.select(ynan, y, r)?;
    done(c, r, d)
}
fn xlogy(c: &mut LowerCtx, a: &Args) -> Out {
    x_times(c, a, U::Log)
}
fn xlog1py(c: &mut LowerCtx, a: &Args) -> Out {
    x_times(c, a, U::Log1p)
}

/// `entr(x)`: `-x log x` for x > 0, 0 at 0, -inf below; NaN passes.
fn entr(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let l = un(c, U::Log, x)?;
    let p = bin(c, B::Mul, x, l)?;
    let r = un(c, U::Neg, p)?;
    let zero = k(c, x, 0.0);
    let is0 = cmp(c, CmpDir::Eq, x, zero)?;
    let r = c.g.select(is0, zero, r)?;
    let ninf = k(c, x, f64::NEG_INFINITY);
    let neg = cmp(c, CmpDir::Lt, x, zero)?;
    let r = c.g.select(neg, ninf, r)?;
    done(c, r, d)
}

/// True where the sign bit is set (also for -0.0 and negative NaN).
fn sign_bit(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let d = c.g.dtype(x);
    if d == DType::Bool {
        return Ok(c.g.full_like(x, 0.0, DType::Bool));
    }
    if !d.is_float() {
        return cmp_k(c, CmpDir::Lt, x, 0.0);
    }
    let int = match d.size() {
        2 => DType::I16,
        4 => DType::I32,
        _ => DType::I64,
    };
    let bits = c.g.bitcast(x, int)?;
    cmp_k(c, CmpDir::Lt, bits, 0.0)
}
fn signbit(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    Ok(vec![sign_bit(c, x)?])
}

fn copysign(c: &mut LowerCtx, a: &Args) -> Out {
    let d = float_dtype(result_type(c.g, &[a.arg(0), a.arg(1)]));
    let x = operand(c, a, 0, d)?;
    let y = operand(c, a, 1, d)?;
    let shape = tpu_graph::helpers::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    let x = c.g.broadcast_to(x, &shape)?;
    let y = c.g.broadcast_to(y, &shape)?;
    let m = un(c, U::Abs, x)?;
    let n = un(c, U::Neg, m)?;
    let s = sign_bit(c, y)?;
    Ok(vec![c.g.select(s, n, m)?])
}

/// `heaviside(x, values)`: `values` where x == 0, else `x > 0`.
fn heaviside(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let x = operand(c, a, 0, d)?;
    let v = operand(c, a, 1, d)?;
    let shape = tpu_graph::helpers::broadcast_shapes(c.g.shape(x), c.g.shape(v))?;
    let x = c.g.broadcast_to(x, &shape)?;
    let v = c.g.broadcast_to(v, &shape)?;
    let is0 = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let pos = cmp_k(c, CmpDir::Gt, x, 0.0)?;
    let pos = c.g.convert(pos, d);
    Ok(vec![c.g.select(is0, v, pos)?])
}

fn hypot(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = pair(c, a, true)?;
    let x2 = bin(c, B::Mul, x, x)?;
    let y2 = bin(c, B::Mul, y, y)?;
    let s = bin(c, B::Add, x2, y2)?;
    let r = un(c, U::Sqrt, s)?;
    done(c, r, d)
}

fn erfc(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let e = un(c, U::Erf, x)?;
    let one = k(c, x, 1.0);
    let r = bin(c, B::Sub, one, e)?;
    done(c, r, d)
}

/// `sin(pi x) / (pi x)`, 1 at 0.
fn sinc(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let px = c.g.mul_const(x, std::f64::consts::PI)?;
    let s = un(c, U::Sin, px)?;
    let q = bin(c, B::Div, s, px)?;
    let is0 = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let one = k(c, x, 1.0);
    let r = c.g.select(is0, one, q)?;
    done(c, r, d)
}

/// `logit(x, eps)`: `log(z / (1 - z))` with z = x clamped to [eps, 1 - eps] if eps is given.
fn logit(c: &mut LowerCtx, a: &Args) -> Out {
    let (mut x, d) = float_arg(c, a)?;
    if a.has(1) {
        let eps = a.float(1)?;
        let lo = k(c, x, eps);
        let hi = k(c, x, 1.0 - eps);
        let nan = isnan(c, x)?;
        let cl = c.g.clamp(lo, x, hi)?;
        x = c.g.select(nan, x, cl)?;
    }
    let one = k(c, x, 1.0);
    let den = bin(c, B::Sub, one, x)?;
    let q = bin(c, B::Div, x, den)?;
    let r = un(c, U::Log, q)?;
    done(c, r, d)
}

/// Largest finite value of a float dtype.
fn finite_max(d: DType) -> f64 {
    match d {
        DType::F16 => 65504.0,
        DType::BF16 => 3.389_531_389_251_535_5e38,
        DType::F32 => f32::MAX as f64,
        _ => f64::MAX,
    }
}

/// `nan_to_num(x, nan=0, posinf=max, neginf=min)`.
fn nan_to_num(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        return Ok(vec![x]);
    }
    let nan_v = a.float_or(1, 0.0)?;
    let pos_v = a.float_or(2, finite_max(d))?;
    let neg_v = a.float_or(3, -finite_max(d))?;
    let nan = isnan(c, x)?;
    let pinf = cmp_k(c, CmpDir::Eq, x, f64::INFINITY)?;
    let ninf = cmp_k(c, CmpDir::Eq, x, f64::NEG_INFINITY)?;
    let shape = c.g.shape(x).to_vec();
    let nv = c.scalar_full(ScalarArg::Float(nan_v), d, &shape)?;
    let pv = c.scalar_full(ScalarArg::Float(pos_v), d, &shape)?;
    let mv = c.scalar_full(ScalarArg::Float(neg_v), d, &shape)?;
    let r = c.g.select(nan, nv, x)?;
    let r = c.g.select(pinf, pv, r)?;
    Ok(vec![c.g.select(ninf, mv, r)?])
}

/// `ndtri(p) = sqrt(2) * erfinv(2p - 1)`.
fn ndtri(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let t = c.g.mul_const(x, 2.0)?;
    let one = k(c, x, 1.0);
    let t = bin(c, B::Sub, t, one)?;
    let e = un(c, U::Erfinv, t)?;
    let r = c.g.mul_const(e, std::f64::consts::SQRT_2)?;
    done(c, r, d)
}

/// `angle` of a real number: pi below zero, 0 otherwise, NaN passes.
fn angle(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let neg = cmp_k(c, CmpDir::Lt, x, 0.0)?;
    let pi = k(c, x, std::f64::consts::PI);
    let zero = k(c, x, 0.0);
    let r = c.g.select(neg, pi, zero)?;
    let nan = isnan(c, x)?;
    let r = c.g.select(nan, x, r)?;
    done(c, r, d)
}

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
    let dim = tpu_graph::helpers::wrap_dim(a.int_or(1, -1)?, r)?;
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
fn huber_loss(c: &mut LowerCtx, a: &Args) -> Out {
    piecewise_loss(c, a, true)
}
fn smooth_l1_loss(c: &mut LowerCtx, a: &Args) -> Out {
    piecewise_loss(c, a, false)
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

/// `trace(x)`: the sum of the diagonal (int64 for integer inputs).
fn trace(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.rank(x) != 2 {
        bail!(
            "trace: expected a matrix, but got tensor with dim {}",
            c.g.rank(x)
        );
    }
    let shape = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let out = if d.is_float() { d } else { DType::I64 };
    let row = c.g.iota(DType::I64, &shape, 0)?;
    let col = c.g.iota(DType::I64, &shape, 1)?;
    let on = cmp(c, CmpDir::Eq, row, col)?;
    let xo = c.g.convert(x, opmath(out));
    let zero = k(c, xo, 0.0);
    let m = c.g.select(on, xo, zero)?;
    let s = c.g.reduce_keep(ReduceKind::Sum, m, &[0, 1], false)?;
    done(c, s, out)
}

/// `nansum(x, dim, keepdim, dtype)`: NaN counts as zero.
fn nansum(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = a.opt_dtype(3)?.unwrap_or_else(|| {
        let d = c.g.dtype(x);
        if d.is_float() {
            d
        } else {
            DType::I64
        }
    });
    let dims = c.g.reduce_dims(x, &a.ints_or_empty(1)?)?;
    let xw = c.g.convert(x, opmath(d));
    let nan = isnan(c, xw)?;
    let zero = k(c, xw, 0.0);
    let v = c.g.select(nan, zero, xw)?;
    let s =
        c.g.reduce_keep(ReduceKind::Sum, v, &dims, a.bool_or(2, false)?)?;
    done(c, s, d)
}

/// `count_nonzero(x, dims)`: int64 counts.
fn count_nonzero(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dims = match a.arg(1) {
        Arg::None => vec![],
        _ => a.ints(1)?,
    };
    let dims = c.g.reduce_dims(x, &dims)?;
    let zero = k(c, x, 0.0);
    let nz = cmp(c, CmpDir::Ne, x, zero)?;
    let n = c.g.convert(nz, DType::I64);
    Ok(vec![c.g.reduce_keep(ReduceKind::Sum, n, &dims, false)?])
}

/// `aminmax(x, dim=None, keepdim=False) -> (min, max)`.
fn aminmax(c: &mut LowerCtx, a: &Args) -> Out {
    let mut x = a.t(0)?;
    let keep = a.bool_or(2, false)?;
    let dims = match a.opt_int(1)? {
        Some(dim) => vec![tpu_graph::helpers::wrap_dim(dim, c.g.rank(x).max(1))?],
        None => {
            if keep {
                (0..c.g.rank(x)).collect()
            } else {
                let n = c.g.ty(x).numel();
                x = c.g.reshape(x, &[n])?;
                vec![0]
            }
        }
    };
    if c.g.rank(x) == 0 {
        return Ok(vec![x, x]);
    }
    let lo = c.g.reduce_keep(ReduceKind::Min, x, &dims, keep)?;
    let hi = c.g.reduce_keep(ReduceKind::Max, x, &dims, keep)?;
    Ok(vec![lo, hi])
}

/// `isin(elements, test_elements, assume_unique, invert)`.
fn isin(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let e = operand(c, a, 0, d)?;
    let t = operand(c, a, 1, d)?;
    let invert = a.bool_or(3, false)?;
    let shape = c.g.shape(e).to_vec();
    let n = c.g.ty(t).numel();
    let t = c.g.reshape(t, &[n])?;
    let r = shape.len();
    let mut full = shape.clone();
    full.push(n);
    let eb =
        c.g.broadcast_in_dim(e, &full, &(0..r as i64).collect::<Vec<_>>())?;
    let tb = c.g.broadcast_in_dim(t, &full, &[r as i64])?;
    let eq = cmp(c, CmpDir::Eq, eb, tb)?;
    let any = c.g.reduce(ReduceKind::Or, eq, &[r as i64])?;
    Ok(vec![if invert { un(c, U::Not, any)? } else { any }])
}

/// Insertion points of `x` in the sorted last dim of `seq` (1-D `seq` applies to every element).
fn insertion(c: &mut LowerCtx, seq: ValueId, x: ValueId, right: bool, int32: bool) -> Out {
    let d = DType::promote(c.g.dtype(seq), c.g.dtype(x));
    let (seq, x) = (c.g.convert(seq, d), c.g.convert(x, d));
    let xs = c.g.shape(x).to_vec();
    let r = xs.len();
    let m = *c.g.shape(seq).last().unwrap_or(&1);
    let mut full = xs.clone();
    full.push(m);
    let xb =
        c.g.broadcast_in_dim(x, &full, &(0..r as i64).collect::<Vec<_>>())?;
    let sb = if c.g.rank(seq) == 1 {
        c.g.broadcast_in_dim(seq, &full, &[r as i64])?
    } else {
        if r == 0 || c.g.rank(seq) != r || c.g.shape(seq)[..r - 1] != xs[..r - 1] {
            bail!("searchsorted: boundaries and input must have the same leading dims");
        }
        let dims: Vec<i64> = (0..r as i64 - 1).chain([r as i64]).collect();
        c.g.broadcast_in_dim(seq, &full, &dims)?
    };
    let below = cmp(c, if right { CmpDir::Le } else { CmpDir::Lt }, sb, xb)?;
    let out = if int32 { DType::I32 } else { DType::I64 };
    let n = c.g.convert(below, out);
    Ok(vec![c.g.reduce(ReduceKind::Sum, n, &[r as i64])?])
}
/// `seq` gathered along its last dim by `sorter` (`seq[..., sorter[..., i]]`).
fn sorted_by(c: &mut LowerCtx, seq: ValueId, sorter: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(seq).to_vec();
    let r = shape.len();
    if r == 0 {
        return Ok(seq);
    }
    let m = shape[r - 1];
    let mut full = shape.clone();
    full.push(m);
    let lead: Vec<i64> = (0..r as i64 - 1).collect();
    let s_dims: Vec<i64> = lead.iter().copied().chain([r as i64 - 1]).collect();
    let v_dims: Vec<i64> = lead.iter().copied().chain([r as i64]).collect();
    let sorter = c.g.convert(sorter, DType::I64);
    let sb = c.g.broadcast_in_dim(sorter, &full, &s_dims)?;
    let j = c.g.iota(DType::I64, &full, r as i64)?;
    let pick = cmp(c, CmpDir::Eq, sb, j)?;
    let vb = c.g.broadcast_in_dim(seq, &full, &v_dims)?;
    let zero = k(c, vb, 0.0);
    let picked = c.g.select(pick, vb, zero)?;
    let picked = if c.g.dtype(picked) == DType::Bool {
        c.g.reduce(ReduceKind::Or, picked, &[r as i64])?
    } else {
        c.g.reduce(ReduceKind::Sum, picked, &[r as i64])?
    };
    Ok(picked)
}

fn bucketize(c: &mut LowerCtx, a: &Args) -> Out {
    let x = operand(c, a, 0, c.g.dtype(a.t(1)?))?;
    insertion(c, a.t(1)?, x, a.bool_or(3, false)?, a.bool_or(2, false)?)
}
fn searchsorted(c: &mut LowerCtx, a: &Args) -> Out {
    let mut seq = a.t(0)?;
    if let Some(sorter) = a.opt_t(5)? {
        seq = sorted_by(c, seq, sorter)?;
    }
    let x = operand(c, a, 1, c.g.dtype(seq))?;
    let right = a.bool_or(3, false)? || a.str(4)? == Some("right");
    insertion(c, seq, x, right, a.bool_or(2, false)?)
}

/// `grad` (in `x`'s opmath dtype, broadcast to `x`) and `x` of a backward op `(grad, self, ...)`.
fn grad_and_x(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, ValueId, DType)> {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let shape = c.g.shape(x).to_vec();
    let g = c.g.coerce(g, opmath(d), &shape)?;
    Ok((g, c.g.convert(x, opmath(d)), d))
}

/// `grad` where `keep`, else 0.
fn grad_where(c: &mut LowerCtx, keep: ValueId, g: ValueId, d: DType) -> Out {
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

/// `logit_backward(grad, x, eps)`: `grad / (x (1 - x))`, 0 outside [eps, 1 - eps]
/// (NaN outside [0, 1] without eps).
fn logit_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x, d) = grad_and_x(c, a)?;
    let one = k(c, x, 1.0);
    let omx = bin(c, B::Sub, one, x)?;
    let den = bin(c, B::Mul, x, omx)?;
    let q = bin(c, B::Div, g, den)?;
    let (lo, hi, fill) = match a.opt_scalar(2)? {
        Some(e) => (e.as_f64(), 1.0 - e.as_f64(), 0.0),
        None => (0.0, 1.0, f64::NAN),
    };
    let below = cmp_k(c, CmpDir::Lt, x, lo)?;
    let above = cmp_k(c, CmpDir::Gt, x, hi)?;
    let out = bin(c, B::Or, below, above)?;
    let f = k(c, q, fill);
    let r = c.g.select(out, f, q)?;
    done(c, r, d)
}

/// `glu_backward(grad, x, dim)`: `[grad sigmoid(b), grad a sigmoid(b) (1 - sigmoid(b))]`.
fn glu_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let dim = tpu_graph::helpers::wrap_dim(a.int(2)?, c.g.rank(x))?;
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
fn huber_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    piecewise_loss_backward(c, a, true)
}
fn smooth_l1_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    piecewise_loss_backward(c, a, false)
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

/// `index_fill(self, dim, index, value)`: `value` in the slices of `dim` named by `index`.
fn index_fill(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let shape = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let r = shape.len();
    let dim = tpu_graph::helpers::wrap_dim(a.int(1)?, r.max(1))?;
    let idx = a.t(2)?;
    let n = c.g.ty(idx).numel();
    let idx = c.g.reshape(idx, &[n])?;
    let idx = c.g.convert(idx, DType::I64);
    if r == 0 {
        let v = operand(c, a, 3, d)?;
        let eq = cmp_k(c, CmpDir::Eq, idx, 0.0)?;
        let hit = c.g.reduce(ReduceKind::Or, eq, &[0])?;
        return Ok(vec![c.g.select(hit, v, x)?]);
    }
    let size = shape[dim];
    let pos = c.g.iota(DType::I64, &[size, n], 0)?;
    let ib = c.g.broadcast_in_dim(idx, &[size, n], &[1])?;
    let sz = c.g.full_like(ib, size as f64, DType::I64);
    let wrapped = c.g.binary(B::Add, ib, sz)?;
    let neg = cmp_k(c, CmpDir::Lt, ib, 0.0)?;
    let ib = c.g.select(neg, wrapped, ib)?;
    let eq = cmp(c, CmpDir::Eq, pos, ib)?;
    let hit = c.g.reduce(ReduceKind::Or, eq, &[1])?;
    let hit = c.g.broadcast_in_dim(hit, &shape, &[dim as i64])?;
    let v = operand(c, a, 3, d)?;
    let v = c.g.broadcast_to(v, &shape)?;
    Ok(vec![c.g.select(hit, v, x)?])
}

/// Adaptive-average-pooling weights `[out, in]`: row `o` averages inputs
/// `floor(o in / out) .. ceil((o + 1) in / out)`.
fn adaptive_weights(c: &mut LowerCtx, n_in: i64, n_out: i64, d: DType) -> Result<ValueId> {
    let shape = [n_out, n_in];
    let o = c.g.iota(DType::I64, &shape, 0)?;
    let i = c.g.iota(DType::I64, &shape, 1)?;
    let (kin, kout) = (k(c, o, n_in as f64), k(c, o, n_out as f64));
    let start = bin(c, B::Mul, o, kin)?;
    let start = bin(c, B::Div, start, kout)?;
    let one = k(c, o, 1.0);
    let o1 = bin(c, B::Add, o, one)?;
    let end = bin(c, B::Mul, o1, kin)?;
    let end = bin(c, B::Add, end, kout)?;
    let end = bin(c, B::Sub, end, one)?;
    let end = bin(c, B::Div, end, kout)?;
    let ge = cmp(c, CmpDir::Ge, i, start)?;
    let lt = cmp(c, CmpDir::Lt, i, end)?;
    let inside = bin(c, B::And, ge, lt)?;
    let cnt = bin(c, B::Sub, end, start)?;
    let cnt = c.g.convert(cnt, d);
    let m = c.g.convert(inside, d);
    bin(c, B::Div, m, cnt)
}

/// Contracts the last dim of `x [.., n]` with `w [m, n]` (or `w [n, m]` if `transposed`).
fn apply_last(c: &mut LowerCtx, x: ValueId, w: ValueId, transposed: bool) -> Result<ValueId> {
    let r = c.g.rank(x) as i64;
    let dims = tpu_graph::DotDims {
        lhs_batch: vec![],
        rhs_batch: vec![],
        lhs_contract: vec![r - 1],
        rhs_contract: vec![if transposed { 0 } else { 1 }],
    };
    Ok(c.g.dot(x, w, dims)?)
}

/// Applies per-spatial-dim weights (`[out, in]` each) to the last `ws.len()` dims of `x`.
fn separable(c: &mut LowerCtx, x: ValueId, ws: &[ValueId], transposed: bool) -> Result<ValueId> {
    let mut v = x;
    let r = c.g.rank(x);
    let k = ws.len();
    for w in ws {
        // Contract the first remaining spatial dim, which is then appended last.
        let perm: Vec<i64> = (0..r - k)
            .chain(r - k + 1..r)
            .chain([r - k])
            .map(|i| i as i64)
            .collect();
        let t = c.g.transpose(v, &perm)?;
        v = apply_last(c, t, *w, transposed)?;
    }
    Ok(v)
}

/// `_adaptive_avg_pool{2,3}d(self, output_size)`.
fn adaptive_avg_pool(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let out = a.ints(1)?;
    let shape = c.g.shape(x).to_vec();
    let k = out.len();
    if shape.len() < k {
        bail!(
            "adaptive_avg_pool: input of rank {} for {k} spatial dims",
            shape.len()
        );
    }
    let d = c.g.dtype(x);
    let w = opmath(d);
    let mut ws = Vec::with_capacity(k);
    for (j, &o) in out.iter().enumerate() {
        ws.push(adaptive_weights(c, shape[shape.len() - k + j], o, w)?);
    }
    let xu = c.g.convert(x, w);
    let y = separable(c, xu, &ws, false)?;
    done(c, y, d)
}

/// `_adaptive_avg_pool{k}d_backward(grad_output, self)`: the transposed weights.
fn adaptive_avg_pool_backward(c: &mut LowerCtx, a: &Args, k: usize) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let gs = c.g.shape(g).to_vec();
    let xs = c.g.shape(x).to_vec();
    if gs.len() < k || xs.len() != gs.len() {
        bail!("adaptive_avg_pool{k}d_backward: grad {gs:?} and input {xs:?} do not match");
    }
    let d = c.g.dtype(x);
    let w = opmath(d);
    let mut ws = Vec::with_capacity(k);
    for j in 0..k {
        let (n_in, n_out) = (xs[xs.len() - k + j], gs[gs.len() - k + j]);
        ws.push(adaptive_weights(c, n_in, n_out, w)?);
    }
    let gu = c.g.convert(g, w);
    let y = separable(c, gu, &ws, true)?;
    done(c, y, d)
}

fn adaptive_avg_pool2d_backward(c: &mut LowerCtx, a: &Args) -> Out {
    adaptive_avg_pool_backward(c, a, 2)
}
fn adaptive_avg_pool3d_backward(c: &mut LowerCtx, a: &Args) -> Out {
    adaptive_avg_pool_backward(c, a, 3)
}

/// `linalg_cross(self, other, dim)`: the cross product of size-3 vectors along `dim`.
fn linalg_cross(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let (x, y) = (a.t(0)?, a.t(1)?);
    let shape = tpu_graph::helpers::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    let x = c.g.coerce(x, d, &shape)?;
    let y = c.g.coerce(y, d, &shape)?;
    let dim = tpu_graph::helpers::wrap_dim(a.int_or(2, -1)?, shape.len())?;
    if shape[dim] != 3 {
        bail!(
            "linalg.cross: inputs dimension {dim} must have length 3, got {}",
            shape[dim]
        );
    }
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..3 {
        xs.push(c.g.slice_dim(x, dim, i, i + 1)?);
        ys.push(c.g.slice_dim(y, dim, i, i + 1)?);
    }
    let mut parts = Vec::new();
    for i in 0..3 {
        let (j, l) = ((i + 1) % 3, (i + 2) % 3);
        let p = bin(c, B::Mul, xs[j], ys[l])?;
        let q = bin(c, B::Mul, xs[l], ys[j])?;
        parts.push(bin(c, B::Sub, p, q)?);
    }
    Ok(vec![c.g.concatenate(&parts, dim as i64)?])
}

pub fn register(r: &mut Registry) {
    r.add(
        &[
            "_adaptive_avg_pool2d",
            "_adaptive_avg_pool2d.out",
            "_adaptive_avg_pool3d",
            "_adaptive_avg_pool3d.out",
            "adaptive_avg_pool3d.out",
        ],
        adaptive_avg_pool,
    );
    r.add(
        &[
            "_adaptive_avg_pool2d_backward",
            "_adaptive_avg_pool2d_backward.out",
        ],
        adaptive_avg_pool2d_backward,
    );
    r.add(
        &[
            "_adaptive_avg_pool3d_backward",
            "_adaptive_avg_pool3d_backward.out",
            "adaptive_avg_pool3d_backward.grad_input",
        ],
        adaptive_avg_pool3d_backward,
    );
    r.add(&["linalg_cross", "linalg_cross.out"], linalg_cross);
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
    r.add(
        &["logit_backward", "logit_backward.grad_input"],
        logit_backward,
    );
    r.add(&["glu_backward", "glu_backward.grad_input"], glu_backward);
    r.add(
        &["huber_loss_backward", "huber_loss_backward.out"],
        huber_loss_backward,
    );
    r.add(
        &[
            "smooth_l1_loss_backward",
            "smooth_l1_loss_backward.grad_input",
        ],
        smooth_l1_loss_backward,
    );
    r.add(&["_prelu_kernel_backward"], prelu_kernel_backward);
    r.add(
        &[
            "index_fill.int_Scalar",
            "index_fill.int_Tensor",
            "index_fill_.int_Scalar",
            "index_fill_.int_Tensor",
            "index_fill.int_Scalar_out",
            "index_fill.int_Tensor_out",
        ],
        index_fill,
    );
    r.add(&["logaddexp", "logaddexp.out"], logaddexp);
    r.add(&["logaddexp2", "logaddexp2.out"], logaddexp2);
    r.add(
        &[
            "xlogy.Tensor",
            "xlogy.OutTensor",
            "xlogy_.Tensor",
            "xlogy.Scalar_Self",
            "xlogy.Scalar_Other",
            "xlogy.OutScalar_Self",
            "xlogy.OutScalar_Other",
            "xlogy_.Scalar_Other",
            "special_xlogy",
        ],
        xlogy,
    );
    r.add(
        &[
            "special_xlog1py",
            "special_xlog1py.out",
            "special_xlog1py.self_scalar",
            "special_xlog1py.other_scalar",
            "special_xlog1py.self_scalar_out",
            "special_xlog1py.other_scalar_out",
        ],
        xlog1py,
    );
    r.add(&["special_entr", "special_entr.out"], entr);
    r.add(&["signbit", "signbit.out"], signbit);
    r.add(
        &[
            "copysign.Tensor",
            "copysign.out",
            "copysign_.Tensor",
            "copysign.Scalar",
            "copysign.Scalar_out",
            "copysign_.Scalar",
        ],
        copysign,
    );
    r.add(&["heaviside", "heaviside.out", "heaviside_"], heaviside);
    r.add(&["hypot", "hypot.out", "hypot_"], hypot);
    r.add(&["erfc", "erfc.out", "erfc_"], erfc);
    r.add(&["sinc", "sinc.out", "sinc_"], sinc);
    r.add(&["logit", "logit.out", "logit_"], logit);
    r.add(&["nan_to_num", "nan_to_num.out", "nan_to_num_"], nan_to_num);
    r.add(&["special_ndtri", "special_ndtri.out"], ndtri);
    r.add(&["angle", "angle.out"], angle);
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
    r.add(&["huber_loss", "huber_loss.out"], huber_loss);
    r.add(&["smooth_l1_loss", "smooth_l1_loss.out"], smooth_l1_loss);
    r.add(&["_prelu_kernel"], prelu_kernel);
    r.add(&["trace"], trace);
    r.add(&["nansum", "nansum.out"], nansum);
    r.add(
        &[
            "count_nonzero.dim_IntList",
            "count_nonzero",
            "count_nonzero.dim_IntList_out",
            "count_nonzero.out",
        ],
        count_nonzero,
    );
    r.add(&["aminmax", "aminmax.out"], aminmax);
    r.add(
        &[
            "isin.Tensor_Tensor",
            "isin.Tensor_Tensor_out",
            "isin.Tensor_Scalar",
            "isin.Scalar_Tensor",
        ],
        isin,
    );
    r.add(
        &[
            "bucketize.Tensor",
            "bucketize.Tensor_out",
            "bucketize.Scalar",
        ],
        bucketize,
    );
    r.add(
        &[
            "searchsorted.Tensor",
            "searchsorted.Tensor_out",
            "searchsorted.Scalar",
        ],
        searchsorted,
    );
}
