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
fn i0(c: &mut LowerCtx, a: &Args) -> Out {
    i_rule(c, a, false, false)
}
fn i1(c: &mut LowerCtx, a: &Args) -> Out {
    i_rule(c, a, true, false)
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
    r.add(&["i0", "i0.out", "i0_"], i0);
    r.add(&["special_i0e", "special_i0e.out"], |c, a| {
        i_rule(c, a, false, true)
    });
    r.add(&["special_i1", "special_i1.out"], i1);
    r.add(&["special_i1e", "special_i1e.out"], |c, a| {
        i_rule(c, a, true, true)
    });
    r.add(
        &[
            "special_modified_bessel_i0",
            "special_modified_bessel_i0.out",
        ],
        i0,
    );
    r.add(
        &[
            "special_modified_bessel_i1",
            "special_modified_bessel_i1.out",
        ],
        i1,
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

/// Cephes coefficient sets (as in PyTorch's CPU kernels), highest order first.
#[rustfmt::skip]
mod cephes {
    /// Cephes `ndtr.c` erfc: `P/Q` on [1, 8), `R/S` on [8, inf) (leading 1 of Q, S explicit).
    pub const ERFC_P: [f64; 9] = [
        2.461969814735305e-10, 0.5641895648310689, 7.463210564422699, 48.63719709856814,
        196.5208329560771, 526.4451949954773, 934.5285271719576, 1027.5518868951572,
        557.5353353693994,
    ];
    pub const ERFC_Q: [f64; 9] = [
        1.0, 13.228195115474499, 86.70721408859897, 354.9377788878199,
        975.7085017432055, 1823.9091668790973, 2246.3376081871097, 1656.6630919416134,
        557.5353408177277,
    ];
    pub const ERFC_R: [f64; 6] = [
        0.5641895835477551, 1.275366707599781, 5.019050422511805, 6.160210979930536,
        7.4097426995044895, 2.9788666537210022,
    ];
    pub const ERFC_S: [f64; 7] = [
        1.0, 2.2605286322011726, 9.396035249380015, 12.048953980809666,
        17.08144507475659, 9.608968090632859, 3.369076451000815,
    ];
    pub const I0_A: [f64; 30] = [
        -4.4153416464793395e-18, 3.3307945188222384e-17, -2.431279846547955e-16, 1.715391285555133e-15,
        -1.1685332877993451e-14, 7.676185498604936e-14, -4.856446783111929e-13, 2.95505266312964e-12,
        -1.726826291441556e-11, 9.675809035373237e-11, -5.189795601635263e-10, 2.6598237246823866e-09,
        -1.300025009986248e-08, 6.046995022541919e-08, -2.670793853940612e-07, 1.1173875391201037e-06,
        -4.4167383584587505e-06, 1.6448448070728896e-05, -5.754195010082104e-05, 0.00018850288509584165,
        -0.0005763755745385824, 0.0016394756169413357, -0.004324309995050576, 0.010546460394594998,
        -0.02373741480589947, 0.04930528423967071, -0.09490109704804764, 0.17162090152220877,
        -0.3046826723431984, 0.6767952744094761,
    ];
    pub const I0_B: [f64; 25] = [
        -7.233180487874754e-18, -4.830504485944182e-18, 4.46562142029676e-17, 3.461222867697461e-17,
        -2.8276239805165836e-16, -3.425485619677219e-16, 1.7725601330565263e-15, 3.8116806693526224e-15,
        -9.554846698828307e-15, -4.150569347287222e-14, 1.54008621752141e-14, 3.8527783827421426e-13,
        7.180124451383666e-13, -1.7941785315068062e-12, -1.3215811840447713e-11, -3.1499165279632416e-11,
        1.1889147107846439e-11, 4.94060238822497e-10, 3.3962320257083865e-09, 2.266668990498178e-08,
        2.0489185894690638e-07, 2.8913705208347567e-06, 6.889758346916825e-05, 0.0033691164782556943,
        0.8044904110141088,
    ];
    pub const I1_A: [f64; 29] = [
        2.7779141127610464e-18, -2.111421214358166e-17, 1.5536319577362005e-16, -1.1055969477353862e-15,
        7.600684294735408e-15, -5.042185504727912e-14, 3.223793365945575e-13, -1.9839743977649436e-12,
        1.1736186298890901e-11, -6.663489723502027e-11, 3.625590281552117e-10, -1.8872497517228294e-09,
        9.381537386495773e-09, -4.445059128796328e-08, 2.0032947535521353e-07, -8.568720264695455e-07,
        3.4702513081376785e-06, -1.3273163656039436e-05, 4.781565107550054e-05, -0.00016176081582589674,
        0.0005122859561685758, -0.0015135724506312532, 0.004156422944312888, -0.010564084894626197,
        0.024726449030626516, -0.05294598120809499, 0.1026436586898471, -0.17641651835783406,
        0.25258718644363365,
    ];
    pub const I1_B: [f64; 25] = [
        7.517296310842105e-18, 4.414348323071708e-18, -4.6503053684893586e-17, -3.209525921993424e-17,
        2.96262899764595e-16, 3.3082023109209285e-16, -1.8803547755107825e-15, -3.8144030724370075e-15,
        1.0420276984128802e-14, 4.272440016711951e-14, -2.1015418427726643e-14, -4.0835511110921974e-13,
        -7.198551776245908e-13, 2.0356285441470896e-12, 1.4125807436613782e-11, 3.2526035830154884e-11,
        -1.8974958123505413e-11, -5.589743462196584e-10, -3.835380385964237e-09, -2.6314688468895196e-08,
        -2.512236237870209e-07, -3.882564808877691e-06, -0.00011058893876262371, -0.009761097491361469,
        0.7785762350182801,
    ];
    pub const K0_A: [f64; 10] = [
        1.374465435613523e-16, 4.25981614279661e-14, 1.0349695257633842e-11, 1.904516377220209e-09,
        2.5347910790261494e-07, 2.286212103119452e-05, 0.001264615411446926, 0.0359799365153615,
        0.3442898999246285, -0.5353273932339028,
    ];
    pub const K0_B: [f64; 25] = [
        5.300433772686263e-18, -1.6475804301524212e-17, 5.2103915050390274e-17, -1.678231096805412e-16,
        5.512055978524319e-16, -1.848593377343779e-15, 6.3400764774050706e-15, -2.2275133269916698e-14,
        8.032890775363575e-14, -2.9800969231727303e-13, 1.140340588208475e-12, -4.514597883373944e-12,
        1.8559491149547177e-11, -7.957489244477107e-11, 3.577397281400301e-10, -1.69753450938906e-09,
        8.574034017414225e-09, -4.660489897687948e-08, 2.766813639445015e-07, -1.8317555227191195e-06,
        1.39498137188765e-05, -0.00012849549581627802, 0.0015698838857300533, -0.0314481013119645,
        2.4403030820659555,
    ];
    pub const K1_A: [f64; 11] = [
        -7.023863479386288e-18, -2.427449850519366e-15, -6.666901694199329e-13, -1.4114883926335278e-10,
        -2.213387630734726e-08, -2.4334061415659684e-06, -0.0001730288957513052, -0.006975723859639864,
        -0.12261118082265715, -0.3531559607765449, 1.5253002273389478,
    ];
    pub const K1_B: [f64; 25] = [
        -5.756744483665017e-18, 1.7940508731475592e-17, -5.689462558442859e-17, 1.838093544366639e-16,
        -6.057047248373319e-16, 2.038703165624334e-15, -7.019837090418314e-15, 2.4771544244813043e-14,
        -8.976705182324994e-14, 3.3484196660784293e-13, -1.2891739609510289e-12, 5.13963967348173e-12,
        -2.1299678384275683e-11, 9.218315187605006e-11, -4.1903547593418965e-10, 2.015049755197033e-09,
        -1.0345762465678097e-08, 5.7410841254500495e-08, -3.5019606030878126e-07, 2.406484947837217e-06,
        -1.936197974166083e-05, 0.00019521551847135162, -0.002857816859622779, 0.10392373657681724,
        2.7206261904844427,
    ];
    pub const J0_PP: [f64; 7] = [
        0.0007969367292973471, 0.08283523921074408, 1.239533716464143, 5.447250030587687,
        8.74716500199817, 5.303240382353949, 1.0,
    ];
    pub const J0_PQ: [f64; 7] = [
        0.0009244088105588637, 0.08562884743544745, 1.2535274390105895, 5.470977403304171,
        8.761908832370695, 5.306052882353947, 1.0,
    ];
    pub const J0_QP: [f64; 8] = [
        -0.011366383889846916, -1.2825271867050931, -19.553954425773597, -93.20601521237683,
        -177.68116798048806, -147.07750515495118, -51.41053267665993, -6.050143506007285,
    ];
    pub const J0_QQ: [f64; 7] = [
        64.3178256118178, 856.4300259769806, 3882.4018360540163, 7240.467741956525,
        5930.727011873169, 2062.0933166032783, 242.0057402402914,
    ];
    pub const J0_RP: [f64; 4] = [
        -4794432209.782018, 1956174919465.5657, -249248344360967.72, 9708622510473064.0,
    ];
    pub const J0_RQ: [f64; 8] = [
        499.563147152651, 173785.4016763747, 48440965.83399621, 11185553704.535683,
        2112775201154.892, 310518229857422.56, 3.1812195594320496e+16, 1.7108629408104315e+18,
    ];
    pub const J1_PP: [f64; 7] = [
        0.0007621256162081731, 0.07313970569409176, 1.1271960812968493, 5.112079511468076,
        8.424045901417724, 5.214515986823615, 1.0,
    ];
    pub const J1_PQ: [f64; 7] = [
        0.0005713231280725487, 0.06884559087544954, 1.105142326340617, 5.073863861286015,
        8.399855543276042, 5.209828486823619, 1.0,
    ];
    pub const J1_QP: [f64; 8] = [
        0.05108625947501766, 4.982138729512334, 75.82382841325453, 366.7796093601508,
        710.8563049989261, 597.4896124006136, 211.68875710057213, 25.207020585802372,
    ];
    pub const J1_QQ: [f64; 7] = [
        74.23732770356752, 1056.4488603826283, 4986.410583376536, 9562.318924047562,
        7997.041604473507, 2826.1927851763908, 336.0936078106983,
    ];
    pub const J1_RP: [f64; 4] = [
        -899971225.7055594, 452228297998.19403, -72749424522181.83, 3682957328638529.0,
    ];
    pub const J1_RQ: [f64; 8] = [
        620.8364781180543, 256987.25675774884, 83514679.14319493, 22151159547.97925,
        4749141220799.914, 784369607876235.9, 8.952223361846274e+16, 5.322786203326801e+18,
    ];
    pub const Y0_YP: [f64; 8] = [
        15592.436785523574, -14663929.59039716, 5435264770.518765, -982136065717.9115,
        87590639439536.7, -3466283033847297.0, 4.4273326857256984e+16, -1.8495080043698668e+16,
    ];
    pub const Y0_YQ: [f64; 7] = [
        1041.2835366425984, 626107.330137135, 268919633.39381415, 86400248710.3935,
        20297961275010.555, 3171577528429750.5, 2.5059625617265306e+17,
    ];
    pub const Y1_YP: [f64; 6] = [
        1263204747.9017804, -647355876379.1603, 114509511541823.73, -8127702555013251.0,
        2.024394757135949e+17, -7.788771962659501e+17,
    ];
    pub const Y1_YQ: [f64; 8] = [
        594.3015923461282, 235564.09294306856, 73481194.44597217, 18760131610.870617,
        3882312774962.3857, 620557727146953.8, 6.871410873553005e+16, 3.9727060811656064e+18,
    ];
}
