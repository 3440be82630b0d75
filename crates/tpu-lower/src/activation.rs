//! Activation functions and their backward ops: relu, threshold, gelu
//! (exact and tanh), silu, sigmoid/tanh backward, leaky_relu, hardtanh, elu.
//! NaN passes through as in PyTorch; half types compute in f32.

use crate::args::ScalarArg;
use crate::operands::{bin, k, opmath, up, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

/// A host scalar broadcast to `like`'s shape and dtype.
fn host(c: &mut LowerCtx, s: ScalarArg, like: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(like).to_vec();
    c.scalar_full(s, c.g.dtype(like), &shape)
}

/// `relu`: `x < 0 ? 0 : x`, so NaN passes through.
fn relu(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x) == DType::Bool {
        bail!("relu: bool tensors are not supported");
    }
    let zero = k(c, x, 0.0);
    let neg = c.g.compare(CmpDir::Lt, x, zero)?;
    Ok(vec![c.g.select(neg, zero, x)?])
}

/// `threshold(self, threshold, value)`: `x <= threshold ? value : x`.
fn threshold(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let th = host(c, a.scalar(1)?, x)?;
    let v = host(c, a.scalar(2)?, x)?;
    let le = c.g.compare(CmpDir::Le, x, th)?;
    Ok(vec![c.g.select(le, v, x)?])
}

/// `threshold_backward(grad, self, threshold)`: `self <= threshold ? 0 : grad`.
fn threshold_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let shape = crate::operands::broadcast_shapes(c.g.shape(g), c.g.shape(x))?;
    let d = c.g.dtype(g);
    let g = c.g.coerce(g, d, &shape)?;
    let x = c.g.coerce(x, d, &shape)?;
    let th = host(c, a.scalar(2)?, x)?;
    let le = c.g.compare(CmpDir::Le, x, th)?;
    let zero = k(c, g, 0.0);
    Ok(vec![c.g.select(le, zero, g)?])
}

const SQRT1_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const GELU_BETA: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)
const GELU_KAPPA: f64 = 0.044715;

fn approximate_tanh(a: &Args, i: usize) -> Result<bool> {
    match a.str(i)? {
        None | Some("none") => Ok(false),
        Some("tanh") => Ok(true),
        Some(m) => bail!("approximate argument must be either none or tanh, got '{m}'"),
    }
}

/// `tanh(sqrt(2/pi) * (x + 0.044715 x^3))`.
fn gelu_inner_tanh(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let x2 = bin(c, B::Mul, x, x)?;
    let x3 = bin(c, B::Mul, x2, x)?;
    let kx3 = c.g.mul_const(x3, GELU_KAPPA)?;
    let s = bin(c, B::Add, x, kx3)?;
    let inner = c.g.mul_const(s, GELU_BETA)?;
    Ok(c.g.unary(U::Tanh, inner)?)
}

fn gelu(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(0)?);
    let t = if approximate_tanh(a, 1)? {
        gelu_inner_tanh(c, x)?
    } else {
        let s = c.g.mul_const(x, SQRT1_2)?;
        c.g.unary(U::Erf, s)?
    };
    let one = k(c, x, 1.0);
    let t1 = bin(c, B::Add, one, t)?;
    let hx = c.g.mul_const(x, 0.5)?;
    let y = bin(c, B::Mul, hx, t1)?;
    Ok(vec![c.g.convert(y, d)])
}

fn gelu_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, _) = up(c, a.t(0)?);
    let (x, d) = up(c, a.t(1)?);
    let one = k(c, x, 1.0);
    let dydx = if approximate_tanh(a, 2)? {
        let t = gelu_inner_tanh(c, x)?;
        let right = bin(c, B::Add, one, t)?;
        let left_d = c.g.mul_const(right, 0.5)?;
        let t2 = bin(c, B::Mul, t, t)?;
        let sech2 = bin(c, B::Sub, one, t2)?;
        let x2 = bin(c, B::Mul, x, x)?;
        let p = c.g.mul_const(x2, 3.0 * GELU_KAPPA)?;
        let p = bin(c, B::Add, one, p)?;
        let p = c.g.mul_const(p, GELU_BETA)?;
        let hx = c.g.mul_const(x, 0.5)?;
        let right_d = bin(c, B::Mul, hx, sech2)?;
        let right_d = bin(c, B::Mul, right_d, p)?;
        bin(c, B::Add, left_d, right_d)?
    } else {
        let s = c.g.mul_const(x, SQRT1_2)?;
        let erf = c.g.unary(U::Erf, s)?;
        let cdf = bin(c, B::Add, one, erf)?;
        let cdf = c.g.mul_const(cdf, 0.5)?;
        let x2 = bin(c, B::Mul, x, x)?;
        let e = c.g.mul_const(x2, -0.5)?;
        let e = c.g.unary(U::Exp, e)?;
        let pdf =
            c.g.mul_const(e, 1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
        let xpdf = bin(c, B::Mul, x, pdf)?;
        bin(c, B::Add, cdf, xpdf)?
    };
    let r = c.g.binary_bcast(B::Mul, g, dydx, opmath(d))?;
    Ok(vec![c.g.convert(r, d)])
}

fn silu(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(0)?);
    let s = c.g.unary(U::Logistic, x)?;
    let y = bin(c, B::Mul, x, s)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `grad * s * (1 + x * (1 - s))` with `s = sigmoid(x)`.
fn silu_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, _) = up(c, a.t(0)?);
    let (x, d) = up(c, a.t(1)?);
    let s = c.g.unary(U::Logistic, x)?;
    let one = k(c, x, 1.0);
    let oms = bin(c, B::Sub, one, s)?;
    let t = bin(c, B::Mul, x, oms)?;
    let t = bin(c, B::Add, one, t)?;
    let t = bin(c, B::Mul, s, t)?;
    let r = c.g.binary_bcast(B::Mul, g, t, opmath(d))?;
    Ok(vec![c.g.convert(r, d)])
}

/// `sigmoid_backward(grad, out)`: `grad * (1 - out) * out`.
fn sigmoid_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, _) = up(c, a.t(0)?);
    let (y, d) = up(c, a.t(1)?);
    let one = k(c, y, 1.0);
    let t = bin(c, B::Sub, one, y)?;
    let t = bin(c, B::Mul, t, y)?;
    let r = c.g.binary_bcast(B::Mul, g, t, opmath(d))?;
    Ok(vec![c.g.convert(r, d)])
}

/// `tanh_backward(grad, out)`: `grad * (1 - out^2)`.
fn tanh_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, _) = up(c, a.t(0)?);
    let (y, d) = up(c, a.t(1)?);
    let one = k(c, y, 1.0);
    let y2 = bin(c, B::Mul, y, y)?;
    let t = bin(c, B::Sub, one, y2)?;
    let r = c.g.binary_bcast(B::Mul, g, t, opmath(d))?;
    Ok(vec![c.g.convert(r, d)])
}

/// `leaky_relu(self, negative_slope)`: `x > 0 ? x : x * slope`.
fn leaky_relu(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let slope = host(c, a.opt_scalar(1)?.unwrap_or(ScalarArg::Float(0.01)), x)?;
    let zero = k(c, x, 0.0);
    let pos = c.g.compare(CmpDir::Gt, x, zero)?;
    let neg = bin(c, B::Mul, x, slope)?;
    Ok(vec![c.g.select(pos, x, neg)?])
}

/// `leaky_relu_backward(grad, self, slope, self_is_result)`: `self > 0 ? grad : grad * slope`.
fn leaky_relu_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let slope = host(c, a.scalar(2)?, g)?;
    let zero = k(c, x, 0.0);
    let pos = c.g.compare(CmpDir::Gt, x, zero)?;
    let neg = bin(c, B::Mul, g, slope)?;
    Ok(vec![c.g.select(pos, g, neg)?])
}

/// `hardtanh(self, min_val, max_val)`: clamp, NaN passes.
fn hardtanh(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let lo = host(c, a.opt_scalar(1)?.unwrap_or(ScalarArg::Int(-1)), x)?;
    let hi = host(c, a.opt_scalar(2)?.unwrap_or(ScalarArg::Int(1)), x)?;
    let below = c.g.compare(CmpDir::Lt, x, lo)?;
    let y = c.g.select(below, lo, x)?;
    let above = c.g.compare(CmpDir::Gt, y, hi)?;
    Ok(vec![c.g.select(above, hi, y)?])
}

/// `hardtanh_backward(grad, self, min, max)`: zero where `self <= min || self >= max`.
fn hardtanh_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let lo = host(c, a.scalar(2)?, x)?;
    let hi = host(c, a.scalar(3)?, x)?;
    let le = c.g.compare(CmpDir::Le, x, lo)?;
    let ge = c.g.compare(CmpDir::Ge, x, hi)?;
    let out = bin(c, B::Or, le, ge)?;
    let zero = k(c, g, 0.0);
    Ok(vec![c.g.select(out, zero, g)?])
}

/// `elu(self, alpha, scale, input_scale)`.
fn elu(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(0)?);
    let one = ScalarArg::Int(1);
    let alpha = host(c, a.opt_scalar(1)?.unwrap_or(one), x)?;
    let scale = host(c, a.opt_scalar(2)?.unwrap_or(one), x)?;
    let iscale = host(c, a.opt_scalar(3)?.unwrap_or(one), x)?;
    let zero = k(c, x, 0.0);
    let pos = c.g.compare(CmpDir::Gt, x, zero)?;
    let xs = bin(c, B::Mul, x, iscale)?;
    let e = c.g.unary(U::Expm1, xs)?;
    let neg = bin(c, B::Mul, e, alpha)?;
    let y = c.g.select(pos, x, neg)?;
    let y = bin(c, B::Mul, y, scale)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `elu_backward(grad, alpha, scale, input_scale, is_result, self_or_result)`.
fn elu_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, _) = up(c, a.t(0)?);
    let (v, d) = up(c, a.t(5)?);
    let alpha = host(c, a.scalar(1)?, v)?;
    let scale = host(c, a.scalar(2)?, v)?;
    let iscale = host(c, a.scalar(3)?, v)?;
    let zero = k(c, v, 0.0);
    let nonpos = c.g.compare(CmpDir::Le, v, zero)?;
    let neg = if a.bool(4)? {
        // y <= 0: grad * input_scale * (y + alpha * scale)
        let as_ = bin(c, B::Mul, alpha, scale)?;
        let t = bin(c, B::Add, v, as_)?;
        bin(c, B::Mul, t, iscale)?
    } else {
        let xs = bin(c, B::Mul, v, iscale)?;
        let e = c.g.unary(U::Exp, xs)?;
        let t = bin(c, B::Mul, e, iscale)?;
        let t = bin(c, B::Mul, t, alpha)?;
        bin(c, B::Mul, t, scale)?
    };
    let dydx = c.g.select(nonpos, neg, scale)?;
    let r = bin(c, B::Mul, g, dydx)?;
    Ok(vec![c.g.convert(r, d)])
}

/// `softplus(self, beta, threshold)`: `x * beta > threshold ? x : log1p(exp(x * beta)) / beta`.
fn softplus(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = up(c, a.t(0)?);
    let beta = host(c, a.scalar(1)?, x)?;
    let limit = host(c, a.scalar(2)?, x)?;
    let xb = bin(c, B::Mul, x, beta)?;
    let big = c.g.compare(CmpDir::Gt, xb, limit)?;
    let e = c.g.unary(U::Exp, xb)?;
    let l = c.g.unary(U::Log1p, e)?;
    let soft = bin(c, B::Div, l, beta)?;
    let y = c.g.select(big, x, soft)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `softplus_backward(grad, self, beta, threshold)`: `grad * sigmoid(x * beta)` below the threshold.
fn softplus_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g, _) = up(c, a.t(0)?);
    let (x, d) = up(c, a.t(1)?);
    let beta = host(c, a.scalar(2)?, x)?;
    let limit = host(c, a.scalar(3)?, x)?;
    let xb = bin(c, B::Mul, x, beta)?;
    let big = c.g.compare(CmpDir::Gt, xb, limit)?;
    let s = c.g.unary(U::Logistic, xb)?;
    let gs = bin(c, B::Mul, g, s)?;
    let y = c.g.select(big, g, gs)?;
    Ok(vec![c.g.convert(y, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["softplus", "softplus.out"], softplus);
    r.add(
        &["softplus_backward", "softplus_backward.grad_input"],
        softplus_backward,
    );
    r.add(&["relu", "relu.out", "relu_"], relu);
    r.add(&["threshold", "threshold.out", "threshold_"], threshold);
    r.add(
        &["threshold_backward", "threshold_backward.grad_input"],
        threshold_backward,
    );
    r.add(&["gelu", "gelu.out", "gelu_"], gelu);
    r.add(
        &["gelu_backward", "gelu_backward.grad_input"],
        gelu_backward,
    );
    r.add(&["silu", "silu.out", "silu_"], silu);
    r.add(
        &["silu_backward", "silu_backward.grad_input"],
        silu_backward,
    );
    r.add(
        &["sigmoid_backward", "sigmoid_backward.grad_input"],
        sigmoid_backward,
    );
    r.add(
        &["tanh_backward", "tanh_backward.grad_input"],
        tanh_backward,
    );
    r.add(&["leaky_relu", "leaky_relu.out", "leaky_relu_"], leaky_relu);
    r.add(
        &["leaky_relu_backward", "leaky_relu_backward.grad_input"],
        leaky_relu_backward,
    );
    r.add(&["hardtanh", "hardtanh.out", "hardtanh_"], hardtanh);
    r.add(
        &["hardtanh_backward", "hardtanh_backward.grad_input"],
        hardtanh_backward,
    );
    r.add(&["elu", "elu.out", "elu_"], elu);
    r.add(&["elu_backward", "elu_backward.grad_input"], elu_backward);
}
