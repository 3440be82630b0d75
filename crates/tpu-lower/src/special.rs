//! Special functions and elementwise math that reach the backend as their own
//! ATen ops: logaddexp(2), xlogy, xlog1py, entr, signbit, copysign, heaviside,
//! hypot, erfc, sinc, logit (and its backward), nan_to_num, ndtri, angle,
//! Hurwitz zeta and polygamma, frexp, spherical_bessel_j0.
//! Half types compute in f32.

use crate::args::ScalarArg;
use crate::operands::{
    bin, cmp, cmp_k, done, float_arg, float_dtype, grad_and_x, isnan, k, operand, opmath, pair,
    result_type, un, Out,
};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

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
    let shape = crate::operands::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
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
    let shape = crate::operands::broadcast_shapes(c.g.shape(x), c.g.shape(v))?;
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
    if c.g.dtype(a.t(0)?).is_complex() {
        return Ok(vec![crate::complex::complex_angle(c, a.t(0)?)?]);
    }
    let (x, d) = float_arg(c, a)?;
    let neg = cmp_k(c, CmpDir::Lt, x, 0.0)?;
    let pi = k(c, x, std::f64::consts::PI);
    let zero = k(c, x, 0.0);
    let r = c.g.select(neg, pi, zero)?;
    let nan = isnan(c, x)?;
    let r = c.g.select(nan, x, r)?;
    done(c, r, d)
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

/// `(2k)! / B_2k` for k = 1..12: the Euler-Maclaurin tail of Cephes' `zeta`.
const ZETA_A: [f64; 12] = [
    12.0,
    -720.0,
    30240.0,
    -1209600.0,
    47900160.0,
    -1.892_437_580_318_379_2e9,
    7.472_424_96e10,
    -2.950_130_727_918_164e12,
    1.164_678_281_435_006_7e14,
    -4.597_978_722_407_473e15,
    1.815_210_540_194_354_6e17,
    -7.166_165_256_175_667e18,
];
/// Direct terms summed before the tail (Cephes sums at least 9, and up to `q + j > 9`).
const ZETA_TERMS: i64 = 30;

/// Hurwitz zeta `sum_j (q + j)^-x` as Cephes computes it (PyTorch's `zeta`),
/// with the direct sum unrolled to `ZETA_TERMS` terms (exact for q >= -20).
fn hurwitz_zeta(c: &mut LowerCtx, x: ValueId, q: ValueId) -> Result<ValueId> {
    let nx = un(c, U::Neg, x)?;
    let mut s = bin(c, B::Pow, q, nx)?;
    let zero = k(c, q, 0.0);
    // Terms j = 1.. while j <= 9 or q + j <= 10; `w` is the first point left out.
    let ten = k(c, q, 10.0);
    for j in 1..=ZETA_TERMS {
        let a = c.g.binary_const(B::Add, q, j as f64)?;
        let b = bin(c, B::Pow, a, nx)?;
        let b = if j <= 9 {
            b
        } else {
            let take = cmp(c, CmpDir::Le, a, ten)?;
            c.g.select(take, b, zero)?
        };
        s = bin(c, B::Add, s, b)?;
    }
    // i_end = max(9, floor(9 - q) + 1), so w = q + i_end.
    let nine = k(c, q, 9.0);
    let t = bin(c, B::Sub, nine, q)?;
    let t = un(c, U::Floor, t)?;
    let t = c.g.binary_const(B::Add, t, 1.0)?;
    let t = bin(c, B::Max, t, nine)?;
    let lim = k(c, q, ZETA_TERMS as f64);
    let t = bin(c, B::Min, t, lim)?;
    let w = bin(c, B::Add, q, t)?;
    let mut b = bin(c, B::Pow, w, nx)?;
    let one = k(c, q, 1.0);
    let xm1 = bin(c, B::Sub, x, one)?;
    let bw = bin(c, B::Mul, b, w)?;
    let tail = bin(c, B::Div, bw, xm1)?;
    s = bin(c, B::Add, s, tail)?;
    let hb = c.g.mul_const(b, 0.5)?;
    s = bin(c, B::Sub, s, hb)?;
    let mut a = one;
    let mut kk = 0.0;
    for coef in ZETA_A {
        let xk = c.g.binary_const(B::Add, x, kk)?;
        a = bin(c, B::Mul, a, xk)?;
        b = bin(c, B::Div, b, w)?;
        let t = bin(c, B::Mul, a, b)?;
        let t = c.g.mul_const(t, 1.0 / coef)?;
        s = bin(c, B::Add, s, t)?;
        kk += 1.0;
        let xk = c.g.binary_const(B::Add, x, kk)?;
        a = bin(c, B::Mul, a, xk)?;
        b = bin(c, B::Div, b, w)?;
        kk += 1.0;
    }
    // Domain: x == 1 -> inf, x < 1 -> nan; q a non-positive integer -> inf.
    let inf = k(c, q, f64::INFINITY);
    let nan = k(c, q, f64::NAN);
    let x_is_1 = cmp(c, CmpDir::Eq, x, one)?;
    let x_lt_1 = cmp(c, CmpDir::Lt, x, one)?;
    let fq = un(c, U::Floor, q)?;
    let q_int = cmp(c, CmpDir::Eq, fq, q)?;
    let q_np = cmp(c, CmpDir::Le, q, zero)?;
    let pole = bin(c, B::And, q_int, q_np)?;
    let s = c.g.select(pole, inf, s)?;
    let s = c.g.select(x_lt_1, nan, s)?;
    Ok(c.g.select(x_is_1, inf, s)?)
}

/// `special_zeta(x, q)`.
fn zeta(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, q, d) = pair(c, a, true)?;
    let r = hurwitz_zeta(c, x, q)?;
    done(c, r, d)
}

/// `polygamma(n, x) = (-1)^(n+1) n! zeta(n + 1, x)`; digamma for n = 0.
fn polygamma(c: &mut LowerCtx, a: &Args) -> Out {
    let n = a.int(0)?;
    let x = a.t(1)?;
    let d = float_dtype(c.g.dtype(x));
    let xu = c.g.convert(x, opmath(d));
    if n < 0 {
        bail!("polygamma(n, x) does not support negative n.");
    }
    if n == 0 {
        return crate::unary::digamma(c, &Args(&[a.arg(1).clone()]));
    }
    let order = k(c, xu, (n + 1) as f64);
    let z = hurwitz_zeta(c, order, xu)?;
    let fact: f64 = (1..=n).map(|i| i as f64).product();
    let sign = if n % 2 == 1 { 1.0 } else { -1.0 };
    let r = c.g.mul_const(z, sign * fact)?;
    done(c, r, d)
}

/// `frexp(x) -> (mantissa, exponent)`: `x = m 2^e`, `0.5 <= |m| < 1`; 0, inf
/// and NaN give `(x, 0)`.
fn frexp(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("torch.frexp() only supports floating-point dtypes");
    }
    let xu = c.g.convert(x, opmath(d));
    let ax = un(c, U::Abs, xu)?;
    let l = un(c, U::Log, ax)?;
    let l = c.g.mul_const(l, 1.0 / std::f64::consts::LN_2)?;
    let e = un(c, U::Floor, l)?;
    let mut e = c.g.binary_const(B::Add, e, 1.0)?;
    let two = k(c, xu, 2.0);
    let p2 = bin(c, B::Pow, two, e)?;
    let mut m = bin(c, B::Div, xu, p2)?;
    // Correct a log2 rounded across a power of two.
    for (dir, bound, scale, step) in [(CmpDir::Ge, 1.0, 0.5, 1.0), (CmpDir::Lt, 0.5, 2.0, -1.0)] {
        let am = un(c, U::Abs, m)?;
        let off = cmp_k(c, dir, am, bound)?;
        let m2 = c.g.mul_const(m, scale)?;
        let e2 = c.g.binary_const(B::Add, e, step)?;
        m = c.g.select(off, m2, m)?;
        e = c.g.select(off, e2, e)?;
    }
    let fin = un(c, U::IsFinite, xu)?;
    let nz = cmp_k(c, CmpDir::Ne, xu, 0.0)?;
    let regular = bin(c, B::And, fin, nz)?;
    let zero = k(c, e, 0.0);
    let m = c.g.select(regular, m, xu)?;
    let e = c.g.select(regular, e, zero)?;
    Ok(vec![c.g.convert(m, d), c.g.convert(e, DType::I32)])
}

/// `spherical_bessel_j0(x) = sin(x) / x`, 1 at 0.
fn spherical_bessel_j0(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let s = un(c, U::Sin, x)?;
    let q = bin(c, B::Div, s, x)?;
    let is0 = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let one = k(c, x, 1.0);
    let r = c.g.select(is0, one, q)?;
    done(c, r, d)
}

pub fn register(r: &mut Registry) {
    r.add(&["frexp.Tensor", "frexp.Tensor_out"], frexp);
    r.add(
        &[
            "special_spherical_bessel_j0",
            "special_spherical_bessel_j0.out",
        ],
        spherical_bessel_j0,
    );
    r.add(
        &[
            "special_zeta",
            "special_zeta.out",
            "special_zeta.self_scalar",
            "special_zeta.other_scalar",
            "special_zeta.self_scalar_out",
            "special_zeta.other_scalar_out",
        ],
        zeta,
    );
    r.add(&["polygamma", "polygamma.out"], polygamma);
    r.add(
        &["logit_backward", "logit_backward.grad_input"],
        logit_backward,
    );
    r.add(&["logaddexp", "logaddexp.out"], |c, a| {
        logaddexp_base(c, a, 1.0)
    });
    r.add(&["logaddexp2", "logaddexp2.out"], |c, a| {
        logaddexp_base(c, a, std::f64::consts::LN_2)
    });
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
        |c, a| x_times(c, a, U::Log),
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
        |c, a| x_times(c, a, U::Log1p),
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
}
