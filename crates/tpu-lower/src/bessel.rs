//! Bessel functions and relatives as their own ATen ops: bessel_j0/j1/y0/y1,
//! i0/i0e/i1/i1e (and modified_bessel_i0/i1), modified_bessel_k0/k1 and their
//! exponentially scaled forms, erfcx and log_ndtr.
//! Each evaluates the classic Cephes rational / Chebyshev approximations
//! piecewise in |x| (the coefficient sets and polynomial forms PyTorch's CPU
//! kernels use), in the input's opmath dtype; integers promote to the default
//! float dtype. Branches not taken may be inf/NaN; `select` discards them.

use crate::operands::{bin, cmp_k, done, float_arg, k, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::Result;
use cephes::*;
use tpu_graph::{BinaryKind as B, CmpDir, UnaryKind as U, ValueId};

/// Cephes coefficient sets (as in PyTorch's CPU kernels), highest order first.
#[rustfmt::skip]
mod cephes;

const FRAC_2_PI: f64 = std::f64::consts::FRAC_2_PI;
/// sqrt(2 / pi).
const SQ2OPI: f64 = 0.797_884_560_802_865_4;
/// 1 / sqrt(pi).
const ISPI: f64 = 0.564_189_583_547_756_3;

/// `c[0] x^(n-1) + ... + c[n-1]` by Horner.
fn poly(c: &mut LowerCtx, x: ValueId, coefs: &[f64]) -> Result<ValueId> {
    let mut r = k(c, x, coefs[0]);
    for &a in &coefs[1..] {
        r = bin(c, B::Mul, r, x)?;
        r = c.g.binary_const(B::Add, r, a)?;
    }
    Ok(r)
}

/// `poly(num) / poly(den)` at `x`.
pub(crate) fn ratio(c: &mut LowerCtx, x: ValueId, num: &[f64], den: &[f64]) -> Result<ValueId> {
    let p = poly(c, x, num)?;
    let q = poly(c, x, den)?;
    bin(c, B::Div, p, q)
}

/// Cephes `chbevl`: a Chebyshev series at `x` (in [-2, 2]) by Clenshaw's recurrence.
fn cheb(c: &mut LowerCtx, x: ValueId, coefs: &[f64]) -> Result<ValueId> {
    let mut b0 = k(c, x, coefs[0]);
    let mut b1 = k(c, x, 0.0);
    let mut b2 = b1;
    for &a in &coefs[1..] {
        b2 = b1;
        b1 = b0;
        let t = bin(c, B::Mul, x, b1)?;
        let t = bin(c, B::Sub, t, b2)?;
        b0 = c.g.binary_const(B::Add, t, a)?;
    }
    let d = bin(c, B::Sub, b0, b2)?;
    c.g.mul_const(d, 0.5).map_err(Into::into)
}

/// The Chebyshev series at `s * x + o`.
fn cheb_at(c: &mut LowerCtx, x: ValueId, s: f64, o: f64, coefs: &[f64]) -> Result<ValueId> {
    let t = c.g.mul_const(x, s)?;
    let t = c.g.binary_const(B::Add, t, o)?;
    cheb(c, t, coefs)
}

/// `cond ? a : b`.
fn sel(c: &mut LowerCtx, cond: ValueId, a: ValueId, b: ValueId) -> Result<ValueId> {
    Ok(c.g.select(cond, a, b)?)
}

/// `v` replaced by `fill` where `x < lo`.
fn fill_below(c: &mut LowerCtx, x: ValueId, lo: f64, v: ValueId, fill: f64) -> Result<ValueId> {
    let m = cmp_k(c, CmpDir::Lt, x, lo)?;
    let f = k(c, v, fill);
    sel(c, m, f, v)
}

/// `-v` where `x < 0` (odd functions evaluated at |x|).
fn odd(c: &mut LowerCtx, x: ValueId, v: ValueId) -> Result<ValueId> {
    let neg = cmp_k(c, CmpDir::Lt, x, 0.0)?;
    let n = un(c, U::Neg, v)?;
    sel(c, neg, n, v)
}

/// Hankel asymptotic coefficients for x > 5 (`P = pp/pq`, `Q = qp/qq` in 25/x^2).
struct Hankel<'t> {
    pp: &'t [f64],
    pq: &'t [f64],
    qp: &'t [f64],
    qq: &'t [f64],
    phase: f64,
}

/// `(P cos(x - phase) - (5/x) Q sin(x - phase)) sqrt(2/(pi x))` (J), or
/// `(P sin(x - phase) + (5/x) Q cos(x - phase)) sqrt(2/(pi x))` for `y` (Y).
fn hankel(c: &mut LowerCtx, x: ValueId, h: &Hankel, y: bool) -> Result<ValueId> {
    let x2 = bin(c, B::Mul, x, x)?;
    let n = k(c, x, 25.0);
    let u = bin(c, B::Div, n, x2)?;
    let p = ratio(c, u, h.pp, h.pq)?;
    let q = ratio(c, u, h.qp, h.qq)?;
    let five = k(c, x, 5.0);
    let w = bin(c, B::Div, five, x)?;
    let q = bin(c, B::Mul, w, q)?;
    let xn = c.g.binary_const(B::Sub, x, h.phase)?;
    let cs = un(c, U::Cos, xn)?;
    let sn = un(c, U::Sin, xn)?;
    let r = if y {
        let a = bin(c, B::Mul, p, sn)?;
        let b = bin(c, B::Mul, q, cs)?;
        bin(c, B::Add, a, b)?
    } else {
        let a = bin(c, B::Mul, p, cs)?;
        let b = bin(c, B::Mul, q, sn)?;
        bin(c, B::Sub, a, b)?
    };
    let s = un(c, U::Sqrt, x)?;
    let r = bin(c, B::Div, r, s)?;
    c.g.mul_const(r, SQ2OPI).map_err(Into::into)
}

const H0: Hankel = Hankel {
    pp: &J0_PP,
    pq: &J0_PQ,
    qp: &J0_QP,
    qq: &J0_QQ,
    phase: std::f64::consts::FRAC_PI_4,
};
const H1: Hankel = Hankel {
    pp: &J1_PP,
    pq: &J1_PQ,
    qp: &J1_QP,
    qq: &J1_QQ,
    phase: 3.0 * std::f64::consts::FRAC_PI_4,
};

/// J0 at `x` (even).
fn j0_of(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let a = un(c, U::Abs, x)?;
    let z = bin(c, B::Mul, a, a)?;
    let r = ratio(c, z, &J0_RP, &J0_RQ)?;
    let d1 = c.g.binary_const(B::Sub, z, 5.783_185_962_946_784)?;
    let d2 = c.g.binary_const(B::Sub, z, 30.471_262_343_662_087)?;
    let s = bin(c, B::Mul, d1, d2)?;
    let small = bin(c, B::Mul, s, r)?;
    let large = hankel(c, a, &H0, false)?;
    let m = cmp_k(c, CmpDir::Le, a, 5.0)?;
    sel(c, m, small, large)
}

/// J1 at `x` (odd).
fn j1_of(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let a = un(c, U::Abs, x)?;
    let z = bin(c, B::Mul, a, a)?;
    let r = ratio(c, z, &J1_RP, &J1_RQ)?;
    let r = bin(c, B::Mul, r, a)?;
    let d1 = c.g.binary_const(B::Sub, z, 14.681_970_642_123_893)?;
    let d2 = c.g.binary_const(B::Sub, z, 49.218_456_321_694_6)?;
    let s = bin(c, B::Mul, d1, d2)?;
    let small = bin(c, B::Mul, r, s)?;
    let large = hankel(c, a, &H1, false)?;
    let m = cmp_k(c, CmpDir::Le, a, 5.0)?;
    let v = sel(c, m, small, large)?;
    odd(c, x, v)
}

/// Y0 / Y1 at `x`: -inf at 0, NaN below.
fn y_of(c: &mut LowerCtx, x: ValueId, order1: bool) -> Result<ValueId> {
    let z = bin(c, B::Mul, x, x)?;
    let l = un(c, U::Log, x)?;
    let small = if order1 {
        let r = ratio(c, z, &Y1_YP, &Y1_YQ)?;
        let r = bin(c, B::Mul, x, r)?;
        let j = j1_of(c, x)?;
        let jl = bin(c, B::Mul, j, l)?;
        let one = k(c, x, 1.0);
        let inv = bin(c, B::Div, one, x)?;
        let t = bin(c, B::Sub, jl, inv)?;
        let t = c.g.mul_const(t, FRAC_2_PI)?;
        bin(c, B::Add, r, t)?
    } else {
        let r = ratio(c, z, &Y0_YP, &Y0_YQ)?;
        let j = j0_of(c, x)?;
        let t = bin(c, B::Mul, l, j)?;
        let t = c.g.mul_const(t, FRAC_2_PI)?;
        bin(c, B::Add, r, t)?
    };
    let large = hankel(c, x, if order1 { &H1 } else { &H0 }, true)?;
    let m = cmp_k(c, CmpDir::Le, x, 5.0)?;
    let v = sel(c, m, small, large)?;
    let z0 = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let ninf = k(c, x, f64::NEG_INFINITY);
    let v = sel(c, z0, ninf, v)?;
    fill_below(c, x, 0.0, v, f64::NAN)
}

/// `exp(-|x|) I0(|x|)` (or `exp(-|x|) I1(|x|)` for `order1`, not yet signed).
fn ie_of(c: &mut LowerCtx, a: ValueId, order1: bool) -> Result<ValueId> {
    let (ca, cb) = if order1 {
        (&I1_A[..], &I1_B[..])
    } else {
        (&I0_A[..], &I0_B[..])
    };
    let mut small = cheb_at(c, a, 0.5, -2.0, ca)?;
    if order1 {
        small = bin(c, B::Mul, small, a)?;
    }
    let t = k(c, a, 32.0);
    let t = bin(c, B::Div, t, a)?;
    let t = c.g.binary_const(B::Sub, t, 2.0)?;
    let large = cheb(c, t, cb)?;
    let s = un(c, U::Sqrt, a)?;
    let large = bin(c, B::Div, large, s)?;
    let m = cmp_k(c, CmpDir::Le, a, 8.0)?;
    sel(c, m, small, large)
}

/// I0 / I1 at `x`, scaled by `exp(-|x|)` if `scaled`.
fn i_of(c: &mut LowerCtx, x: ValueId, order1: bool, scaled: bool) -> Result<ValueId> {
    let a = un(c, U::Abs, x)?;
    let mut v = ie_of(c, a, order1)?;
    if !scaled {
        let e = un(c, U::Exp, a)?;
        v = bin(c, B::Mul, e, v)?;
    }
    if order1 {
        v = odd(c, x, v)?;
    }
    Ok(v)
}

/// K0 / K1 at `x`, scaled by `exp(x)` if `scaled`: inf at 0, NaN below.
fn k_of(c: &mut LowerCtx, x: ValueId, order1: bool, scaled: bool) -> Result<ValueId> {
    let (ca, cb) = if order1 {
        (&K1_A[..], &K1_B[..])
    } else {
        (&K0_A[..], &K0_B[..])
    };
    let z = bin(c, B::Mul, x, x)?;
    let t = c.g.binary_const(B::Sub, z, 2.0)?;
    let ch = cheb(c, t, ca)?;
    let hx = c.g.mul_const(x, 0.5)?;
    let l = un(c, U::Log, hx)?;
    let i = i_of(c, x, order1, false)?;
    let li = bin(c, B::Mul, l, i)?;
    let mut small = if order1 {
        let q = bin(c, B::Div, ch, x)?;
        bin(c, B::Add, li, q)?
    } else {
        bin(c, B::Sub, ch, li)?
    };
    let e = un(c, U::Exp, x)?;
    if scaled {
        small = bin(c, B::Mul, small, e)?;
    }
    let t = k(c, x, 8.0);
    let t = bin(c, B::Div, t, x)?;
    let t = c.g.binary_const(B::Sub, t, 2.0)?;
    let large = cheb(c, t, cb)?;
    let s = un(c, U::Sqrt, x)?;
    let mut large = bin(c, B::Div, large, s)?;
    if !scaled {
        large = bin(c, B::Div, large, e)?;
    }
    let m = cmp_k(c, CmpDir::Le, x, 2.0)?;
    let v = sel(c, m, small, large)?;
    let z0 = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let inf = k(c, x, f64::INFINITY);
    let v = sel(c, z0, inf, v)?;
    fill_below(c, x, 0.0, v, f64::NAN)
}

/// `erfcx(a) = exp(a^2) erfc(a)` for `a >= 1` (Cephes' erfc rationals, then the
/// continued fraction past 50 and `1 / (a sqrt(pi))` past 5e7).
fn erfcx_ge1(c: &mut LowerCtx, a: ValueId) -> Result<ValueId> {
    let mid = ratio(c, a, &ERFC_P, &ERFC_Q)?;
    let hi = ratio(c, a, &ERFC_R, &ERFC_S)?;
    let m = cmp_k(c, CmpDir::Lt, a, 8.0)?;
    let v = sel(c, m, mid, hi)?;
    // ispi (x^2 (x^2 + 4.5) + 2) / (x (x^2 (x^2 + 5) + 3.75))
    let z = bin(c, B::Mul, a, a)?;
    let n = c.g.binary_const(B::Add, z, 4.5)?;
    let n = bin(c, B::Mul, z, n)?;
    let n = c.g.binary_const(B::Add, n, 2.0)?;
    let d = c.g.binary_const(B::Add, z, 5.0)?;
    let d = bin(c, B::Mul, z, d)?;
    let d = c.g.binary_const(B::Add, d, 3.75)?;
    let d = bin(c, B::Mul, a, d)?;
    let cf = bin(c, B::Div, n, d)?;
    let cf = c.g.mul_const(cf, ISPI)?;
    let m = cmp_k(c, CmpDir::Gt, a, 50.0)?;
    let v = sel(c, m, cf, v)?;
    let ispi = k(c, a, ISPI);
    let one = bin(c, B::Div, ispi, a)?;
    let m = cmp_k(c, CmpDir::Gt, a, 5e7)?;
    sel(c, m, one, v)
}

/// `(erfcx(x), erfc(x))` for all x.
fn erfcx_erfc(c: &mut LowerCtx, x: ValueId) -> Result<(ValueId, ValueId)> {
    let a = un(c, U::Abs, x)?;
    let p = erfcx_ge1(c, a)?;
    let z = bin(c, B::Mul, x, x)?;
    let ez = un(c, U::Exp, z)?;
    let nz = un(c, U::Neg, z)?;
    let emz = un(c, U::Exp, nz)?;
    // |x| < 1: erfc = 1 - erf(x).
    let erf = un(c, U::Erf, x)?;
    let one = k(c, x, 1.0);
    let ec_mid = bin(c, B::Sub, one, erf)?;
    let cx_mid = bin(c, B::Mul, ez, ec_mid)?;
    // |x| >= 1: erfc(|x|) = exp(-x^2) p; below -1 reflect: erfc(x) = 2 - erfc(-x).
    let ec_pos = bin(c, B::Mul, emz, p)?;
    let two = k(c, x, 2.0);
    let ec_neg = bin(c, B::Sub, two, ec_pos)?;
    let e2 = c.g.mul_const(ez, 2.0)?;
    let cx_neg = bin(c, B::Sub, e2, p)?;
    let big = cmp_k(c, CmpDir::Ge, a, 1.0)?;
    let neg = cmp_k(c, CmpDir::Lt, x, 0.0)?;
    let ec_out = sel(c, neg, ec_neg, ec_pos)?;
    let cx_out = sel(c, neg, cx_neg, p)?;
    let ec = sel(c, big, ec_out, ec_mid)?;
    let cx = sel(c, big, cx_out, cx_mid)?;
    // Below -26.7 exp(x^2) overflows (and p may be NaN at -inf).
    let cx = fill_below(c, x, -26.7, cx, f64::INFINITY)?;
    Ok((cx, ec))
}

fn erfcx(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let (r, _) = erfcx_erfc(c, x)?;
    done(c, r, d)
}

/// `log Phi(x)`: `log(erfcx(-t) / 2) - t^2` below -1, else `log1p(-erfc(t) / 2)`, t = x / sqrt 2.
fn log_ndtr(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let t = c.g.mul_const(x, std::f64::consts::FRAC_1_SQRT_2)?;
    let nt = un(c, U::Neg, t)?;
    let (cx, _) = erfcx_erfc(c, nt)?;
    let h = c.g.mul_const(cx, 0.5)?;
    let lo = un(c, U::Log, h)?;
    let t2 = bin(c, B::Mul, t, t)?;
    let lo = bin(c, B::Sub, lo, t2)?;
    let (_, ec) = erfcx_erfc(c, t)?;
    let h = c.g.mul_const(ec, -0.5)?;
    let hi = un(c, U::Log1p, h)?;
    let m = cmp_k(c, CmpDir::Lt, x, -1.0)?;
    let r = sel(c, m, lo, hi)?;
    done(c, r, d)
}

fn j0(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let r = j0_of(c, x)?;
    done(c, r, d)
}
fn j1(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let r = j1_of(c, x)?;
    done(c, r, d)
}
fn y0(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let r = y_of(c, x, false)?;
    done(c, r, d)
}
fn y1(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let r = y_of(c, x, true)?;
    done(c, r, d)
}
fn i_rule(c: &mut LowerCtx, a: &Args, order1: bool, scaled: bool) -> Out {
    let (x, d) = float_arg(c, a)?;
    let r = i_of(c, x, order1, scaled)?;
    done(c, r, d)
}
fn k_rule(c: &mut LowerCtx, a: &Args, order1: bool, scaled: bool) -> Out {
    let (x, d) = float_arg(c, a)?;
    let r = k_of(c, x, order1, scaled)?;
    done(c, r, d)
}

pub fn register(r: &mut Registry) {
    r.add(&["special_bessel_j0", "special_bessel_j0.out"], j0);
    r.add(&["special_bessel_j1", "special_bessel_j1.out"], j1);
    r.add(&["special_bessel_y0", "special_bessel_y0.out"], y0);
    r.add(&["special_bessel_y1", "special_bessel_y1.out"], y1);
    r.add(&["special_i0e", "special_i0e.out"], |c, a| {
        i_rule(c, a, false, true)
    });
    r.add(&["special_i1e", "special_i1e.out"], |c, a| {
        i_rule(c, a, true, true)
    });
    r.add(
        &[
            "i0",
            "i0.out",
            "i0_",
            "special_modified_bessel_i0",
            "special_modified_bessel_i0.out",
        ],
        |c, a| i_rule(c, a, false, false),
    );
    r.add(
        &[
            "special_i1",
            "special_i1.out",
            "special_modified_bessel_i1",
            "special_modified_bessel_i1.out",
        ],
        |c, a| i_rule(c, a, true, false),
    );
    r.add(
        &[
            "special_modified_bessel_k0",
            "special_modified_bessel_k0.out",
        ],
        |c, a| k_rule(c, a, false, false),
    );
    r.add(
        &[
            "special_modified_bessel_k1",
            "special_modified_bessel_k1.out",
        ],
        |c, a| k_rule(c, a, true, false),
    );
    r.add(
        &[
            "special_scaled_modified_bessel_k0",
            "special_scaled_modified_bessel_k0.out",
        ],
        |c, a| k_rule(c, a, false, true),
    );
    r.add(
        &[
            "special_scaled_modified_bessel_k1",
            "special_scaled_modified_bessel_k1.out",
        ],
        |c, a| k_rule(c, a, true, true),
    );
    r.add(&["special_erfcx", "special_erfcx.out"], erfcx);
    r.add(&["special_log_ndtr", "special_log_ndtr.out"], log_ndtr);
}
