//! `special_airy_ai`: the Airy function Ai by Cephes' piecewise scheme (the
//! coefficient sets PyTorch's CPU kernel uses): for `x < -2.09` the
//! oscillatory asymptotic form in `1/zeta^2`, for `x >= 2.09` the decaying
//! asymptotic form in `1/zeta` (`zeta = 2/3 |x|^(3/2)`), between them the
//! Maclaurin series `Ai = c1 f(x) - c2 g(x)` summed to a fixed number of
//! terms (enough for float64 on `|x| < 2.09`). `±inf` gives NaN, as on CPU;
//! `x > 103.892` gives 0. Integers promote to the default float dtype. The
//! rational forms are evaluated as PyTorch's kernel does: every coefficient
//! listed, none implied (Cephes' `p1evl` denominators carry a leading 1).

use crate::bessel::ratio;
use crate::operands::{bin, cmp_k, done, float_arg, k, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::Result;
use tpu_graph::{BinaryKind as B, CmpDir, UnaryKind as U, ValueId};

/// 1 / sqrt(pi).
const ISPI: f64 = 0.564_189_583_547_756_3;
/// Ai(0) and -Ai'(0).
const C1: f64 = 0.355_028_053_887_817_2;
const C2: f64 = 0.258_819_403_792_806_8;
/// Series terms: the k-th term of f and g shrinks like |x|^(3k) / (3k)!.
const TERMS: usize = 16;

const AN: [f64; 8] = [
    0.346538101525629,
    12.007595273964581,
    76.27960536152345,
    168.08922493463058,
    159.75639135016442,
    70.53609068404442,
    14.026469116338967,
    1.0,
];
const AD: [f64; 8] = [
    0.5675945326387702,
    14.75625625848472,
    84.51389701414746,
    177.31808814540045,
    164.2346928715297,
    71.47784008255756,
    14.095913560783403,
    1.0,
];
const AFN: [f64; 9] = [
    -0.1316963234183318,
    -0.6264565444319123,
    -0.6931580360369335,
    -0.2797799815451191,
    -0.04919001326095003,
    -0.004062659235948854,
    -0.0001592764962392621,
    -2.776491081552329e-06,
    -1.6778769848911465e-08,
];
const AFD: [f64; 9] = [
    13.356042070655324,
    32.682503279522464,
    26.736704094149957,
    9.187074029072596,
    1.4752914677166642,
    0.11568717379518804,
    0.004402916416152112,
    7.547203482874142e-05,
    4.5185009297058035e-07,
];
const AGN: [f64; 11] = [
    0.01973399320916857,
    0.39110302961568827,
    1.0657989759959559,
    0.9391692298166502,
    0.35146565610554764,
    0.06338889196289255,
    0.005858041130483885,
    0.000282851600836737,
    6.98793669997261e-06,
    8.117892395543892e-08,
    3.415517847659236e-10,
];
const AGD: [f64; 10] = [
    9.30892908077442,
    19.835292871831214,
    15.564662893286462,
    5.476860694229755,
    0.9542936116189619,
    0.08645808263523921,
    0.004126565238242226,
    0.00010125908511650914,
    1.1716673321441352e-06,
    4.9183457006293e-09,
];

/// `x < -2.09`: `(sin t (1 + z^2 F(z^2)) - cos t z G(z^2)) / (sqrt(pi) (-x)^(1/4))`,
/// `z = 1/zeta`, `t = zeta + pi/4`.
fn oscillating(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let nx = un(c, U::Neg, x)?;
    let s = un(c, U::Sqrt, nx)?;
    let zeta = bin(c, B::Mul, nx, s)?;
    let zeta = c.g.mul_const(zeta, 2.0 / 3.0)?;
    let one = k(c, x, 1.0);
    let z = bin(c, B::Div, one, zeta)?;
    let zz = bin(c, B::Mul, z, z)?;
    let f = ratio(c, zz, &AFN, &AFD)?;
    let f = bin(c, B::Mul, zz, f)?;
    let f = c.g.binary_const(B::Add, f, 1.0)?;
    let gq = ratio(c, zz, &AGN, &AGD)?;
    let gq = bin(c, B::Mul, z, gq)?;
    let t =
        c.g.binary_const(B::Add, zeta, std::f64::consts::FRAC_PI_4)?;
    let (sn, cs) = (un(c, U::Sin, t)?, un(c, U::Cos, t)?);
    let a = bin(c, B::Mul, sn, f)?;
    let b = bin(c, B::Mul, cs, gq)?;
    let r = bin(c, B::Sub, a, b)?;
    let q = un(c, U::Sqrt, s)?;
    let r = bin(c, B::Div, r, q)?;
    Ok(c.g.mul_const(r, ISPI)?)
}

/// `x >= 2.09`: `A(1/zeta) / (2 sqrt(pi) x^(1/4) exp(zeta))`.
fn decaying(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let s = un(c, U::Sqrt, x)?;
    let zeta = bin(c, B::Mul, x, s)?;
    let zeta = c.g.mul_const(zeta, 2.0 / 3.0)?;
    let one = k(c, x, 1.0);
    let z = bin(c, B::Div, one, zeta)?;
    let a = ratio(c, z, &AN, &AD)?;
    let q = un(c, U::Sqrt, s)?;
    let e = un(c, U::Exp, zeta)?;
    let den = bin(c, B::Mul, q, e)?;
    let r = bin(c, B::Div, a, den)?;
    Ok(c.g.mul_const(r, 0.5 * ISPI)?)
}

/// `|x| < 2.09`: `c1 f - c2 g` with `f = sum x^(3k) / ((2·3)(5·6)..)`, `g = sum x^(3k+1) / ((3·4)(6·7)..)`.
fn series(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let x2 = bin(c, B::Mul, x, x)?;
    let z = bin(c, B::Mul, x2, x)?;
    let (mut m, mut n) = (k(c, x, 1.0), x);
    let (mut f, mut g) = (m, x);
    for j in 1..=TERMS {
        let kk = 3.0 * j as f64;
        m = bin(c, B::Mul, m, z)?;
        m = c.g.mul_const(m, 1.0 / ((kk - 1.0) * kk))?;
        n = bin(c, B::Mul, n, z)?;
        n = c.g.mul_const(n, 1.0 / (kk * (kk + 1.0)))?;
        f = bin(c, B::Add, f, m)?;
        g = bin(c, B::Add, g, n)?;
    }
    let f = c.g.mul_const(f, C1)?;
    let g = c.g.mul_const(g, C2)?;
    bin(c, B::Sub, f, g)
}

/// `special_airy_ai(x)`.
fn airy_ai(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, d) = float_arg(c, a)?;
    let lo = oscillating(c, x)?;
    let hi = decaying(c, x)?;
    let mid = series(c, x)?;
    let is_hi = cmp_k(c, CmpDir::Ge, x, 2.09)?;
    let r = c.g.select(is_hi, hi, mid)?;
    let is_lo = cmp_k(c, CmpDir::Lt, x, -2.09)?;
    let r = c.g.select(is_lo, lo, r)?;
    let far = cmp_k(c, CmpDir::Gt, x, 103.892)?;
    let zero = k(c, x, 0.0);
    let r = c.g.select(far, zero, r)?;
    let ax = un(c, U::Abs, x)?;
    let inf = cmp_k(c, CmpDir::Eq, ax, f64::INFINITY)?;
    let nan = k(c, x, f64::NAN);
    let r = c.g.select(inf, nan, r)?;
    done(c, r, d)
}

pub fn register(r: &mut Registry) {
    r.add(&["special_airy_ai", "special_airy_ai.out"], airy_ai);
}
