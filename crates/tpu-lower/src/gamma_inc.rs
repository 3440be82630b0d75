//! Regularized incomplete gamma functions `igamma(a, x) = P(a, x)` and
//! `igammac(a, x) = Q(a, x) = 1 - P`, the Cephes way PyTorch's CPU kernel
//! builds on: the power series of P where `x < 1` or `x < a`, the continued
//! fraction of Q elsewhere, each the complement of the other. Both run in
//! bounded `while` loops (at most 2000 steps, as Cephes) until every element
//! has converged to the dtype's epsilon; elements at the boundary of the
//! domain (0, inf, negative, NaN) take the CPU's fixed values.

use crate::operands::{
    broadcast_shapes, cmp_kc, float_dtype, kc, operand, opmath, result_type, Out,
};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId};

type GResult<T> = tpu_graph::Result<T>;

const MAXITER: f64 = 2000.0;

/// Cephes' MACHEP and BIG for the compute dtype.
fn limits(w: DType) -> (f64, f64) {
    if w == DType::F64 {
        (1.110_223_024_625_156_5e-16, 4.503_599_627_370_496e15)
    } else {
        (5.960_464_477_539_063e-8, 16_777_216.0)
    }
}

/// Loop condition: fewer than MAXITER steps and some element not done
/// (state[0] is the step counter, state[last] the done mask).
fn not_finished(g: &mut Graph, s: &[ValueId]) -> GResult<ValueId> {
    let lim = g.scalar(MAXITER, DType::I64);
    let more = g.compare(CmpDir::Lt, s[0], lim)?;
    let done = s[s.len() - 1];
    let dims: Vec<i64> = (0..g.rank(done) as i64).collect();
    let all = g.reduce(R::And, done, &dims)?;
    let open = g.unary(U::Not, all)?;
    g.binary(B::And, more, open)
}

/// The next state: `new` where not yet `done`, else the old values; the
/// step counter goes up and `done` takes in `converged`.
fn advance(
    g: &mut Graph,
    s: &[ValueId],
    new: &[ValueId],
    converged: ValueId,
) -> GResult<Vec<ValueId>> {
    let done = s[s.len() - 1];
    let one = g.scalar(1.0, DType::I64);
    let mut out = vec![g.binary(B::Add, s[0], one)?];
    for (i, &v) in new.iter().enumerate() {
        out.push(g.select(done, s[i + 1], v)?);
    }
    out.push(g.binary(B::Or, done, converged)?);
    Ok(out)
}

/// `!(v > eps)`: converged, or NaN (which would never converge).
fn small(g: &mut Graph, v: ValueId, eps: f64) -> GResult<ValueId> {
    let a = g.unary(U::Abs, v)?;
    let big = cmp_kc(g, CmpDir::Gt, a, eps)?;
    g.unary(U::Not, big)
}

/// `x^a e^-x / Gamma(a)`, the factor both expansions share.
fn prefactor(c: &mut LowerCtx, a: ValueId, x: ValueId) -> Result<ValueId> {
    let lx = c.g.unary(U::Log, x)?;
    let t = c.g.binary(B::Mul, a, lx)?;
    let t = c.g.binary(B::Sub, t, x)?;
    let lg = c.g.unary(U::Lgamma, a)?;
    let t = c.g.binary(B::Sub, t, lg)?;
    Ok(c.g.unary(U::Exp, t)?)
}

/// P(a, x) by its power series `ax / a * sum_k x^k / ((a+1)..(a+k))`,
/// stepping only where `!skip`.
fn series(c: &mut LowerCtx, a: ValueId, x: ValueId, skip: ValueId) -> Result<ValueId> {
    let (eps, _) = limits(c.g.dtype(x));
    let i0 = c.g.scalar(0.0, DType::I64);
    let one = kc(c.g, x, 1.0);
    let st = [i0, a, one, one, a, x, skip];
    let out = c.g.while_loop(&st, not_finished, |g, s| {
        let (r, cc, ans, x) = (s[1], s[2], s[3], s[5]);
        let one = kc(g, r, 1.0);
        let r = g.binary(B::Add, r, one)?;
        let q = g.binary(B::Div, x, r)?;
        let cc = g.binary(B::Mul, cc, q)?;
        let ans = g.binary(B::Add, ans, cc)?;
        let ratio = g.binary(B::Div, cc, ans)?;
        let conv = small(g, ratio, eps)?;
        advance(g, s, &[r, cc, ans, s[4], x], conv)
    })?;
    let ax = prefactor(c, a, x)?;
    let v = c.g.binary(B::Mul, out[3], ax)?;
    Ok(c.g.binary(B::Div, v, a)?)
}

/// Q(a, x) by Cephes' continued fraction (DLMF 8.9.2), rescaling the
/// convergents when they grow past BIG; stepping only where `!skip`.
fn continued_fraction(c: &mut LowerCtx, a: ValueId, x: ValueId, skip: ValueId) -> Result<ValueId> {
    let w = c.g.dtype(x);
    let (eps, big) = limits(w);
    let one = kc(c.g, x, 1.0);
    let zero = kc(c.g, x, 0.0);
    let y = c.g.binary(B::Sub, one, a)?;
    let z = c.g.binary(B::Add, x, y)?;
    let z = c.g.binary(B::Add, z, one)?;
    let pkm1 = c.g.binary(B::Add, x, one)?;
    let qkm1 = c.g.binary(B::Mul, z, x)?;
    let ans = c.g.binary(B::Div, pkm1, qkm1)?;
    let i0 = c.g.scalar(0.0, DType::I64);
    // State: i, cc, y, z, pkm2, pkm1, qkm2, qkm1, ans, done.
    let st = [i0, zero, y, z, one, pkm1, x, qkm1, ans, skip];
    let out = c.g.while_loop(&st, not_finished, |g, s| {
        let one = kc(g, s[1], 1.0);
        let two = kc(g, s[1], 2.0);
        let cc = g.binary(B::Add, s[1], one)?;
        let y = g.binary(B::Add, s[2], one)?;
        let z = g.binary(B::Add, s[3], two)?;
        let yc = g.binary(B::Mul, y, cc)?;
        let conv = |g: &mut Graph, km1: ValueId, km2: ValueId| -> GResult<ValueId> {
            let a = g.binary(B::Mul, km1, z)?;
            let b = g.binary(B::Mul, km2, yc)?;
            g.binary(B::Sub, a, b)
        };
        let pk = conv(g, s[5], s[4])?;
        let qk = conv(g, s[7], s[6])?;
        let r = g.binary(B::Div, pk, qk)?;
        let qnz = cmp_kc(g, CmpDir::Ne, qk, 0.0)?;
        let d = g.binary(B::Sub, s[8], r)?;
        let t = g.binary(B::Div, d, r)?;
        let t = g.unary(U::Abs, t)?;
        let t = g.select(qnz, t, one)?;
        let ans = g.select(qnz, r, s[8])?;
        let apk = g.unary(U::Abs, pk)?;
        let rescale = cmp_kc(g, CmpDir::Gt, apk, big)?;
        let inv = kc(g, pk, 1.0 / big);
        let unit = kc(g, pk, 1.0);
        let f = g.select(rescale, inv, unit)?;
        let mut next = vec![cc, y, z];
        for v in [s[5], pk, s[7], qk] {
            next.push(g.binary(B::Mul, v, f)?);
        }
        next.push(ans);
        let conv = small(g, t, eps)?;
        advance(g, s, &next, conv)
    })?;
    let ax = prefactor(c, a, x)?;
    Ok(c.g.binary(B::Mul, out[8], ax)?)
}

/// `a`, `x` broadcast in the compute dtype, and the result dtype.
fn operands(c: &mut LowerCtx, a: &Args, what: &str) -> Result<(ValueId, ValueId, DType)> {
    let d = match c.out_types.first() {
        Some(t) => t.dtype,
        None => float_dtype(result_type(c.g, &[a.arg(0), a.arg(1)])),
    };
    if !d.is_float() {
        bail!("{what}: the result dtype must be floating point, got {d}");
    }
    let w = opmath(d);
    let av = operand(c, a, 0, d)?;
    let xv = operand(c, a, 1, d)?;
    let (av, xv) = (c.g.convert(av, w), c.g.convert(xv, w));
    let shape = broadcast_shapes(c.g.shape(av), c.g.shape(xv))?;
    Ok((
        c.g.broadcast_to(av, &shape)?,
        c.g.broadcast_to(xv, &shape)?,
        d,
    ))
}

/// P (`upper` false) or Q of arguments 0 (`a`) and 1 (`x`).
fn incomplete_gamma(c: &mut LowerCtx, args: &Args, upper: bool) -> Out {
    let what = if upper { "igammac" } else { "igamma" };
    let (a, x, d) = operands(c, args, what)?;
    let g = &mut *c.g;
    let nan = kc(g, x, f64::NAN);
    let (lo, hi) = if upper { (1.0, 0.0) } else { (0.0, 1.0) };
    let (lo, hi) = (kc(g, x, lo), kc(g, x, hi));
    let xneg = cmp_kc(g, CmpDir::Lt, x, 0.0)?;
    let aneg = cmp_kc(g, CmpDir::Lt, a, 0.0)?;
    let outside = g.binary(B::Or, xneg, aneg)?;
    let a0 = cmp_kc(g, CmpDir::Eq, a, 0.0)?;
    let xpos = cmp_kc(g, CmpDir::Gt, x, 0.0)?;
    let at_a0 = g.select(xpos, hi, nan)?;
    let x0 = cmp_kc(g, CmpDir::Eq, x, 0.0)?;
    let afin = g.unary(U::IsFinite, a)?;
    let anan = g.compare(CmpDir::Ne, a, a)?;
    let ainf = g.binary(B::Or, afin, anan)?;
    let ainf = g.unary(U::Not, ainf)?;
    let xfin = g.unary(U::IsFinite, x)?;
    let xnan = g.compare(CmpDir::Ne, x, x)?;
    let xinf = g.binary(B::Or, xfin, xnan)?;
    let xinf = g.unary(U::Not, xinf)?;
    let at_ainf = g.select(xinf, nan, lo)?;
    let cases = [
        (outside, nan),
        (a0, at_a0),
        (x0, lo),
        (ainf, at_ainf),
        (xinf, hi),
    ];
    let mut fixed = cases[0].0;
    for &(k, _) in &cases[1..] {
        fixed = g.binary(B::Or, fixed, k)?;
    }
    // Fixed elements run the loops on harmless values and are replaced after.
    let one = kc(g, x, 1.0);
    let a = g.select(fixed, one, a)?;
    let x = g.select(fixed, one, x)?;
    let xl1 = cmp_kc(g, CmpDir::Lt, x, 1.0)?;
    let xla = g.compare(CmpDir::Lt, x, a)?;
    let use_series = g.binary(B::Or, xl1, xla)?;
    let use_cf = g.unary(U::Not, use_series)?;
    let skip_s = g.binary(B::Or, fixed, use_cf)?;
    let skip_cf = g.binary(B::Or, fixed, use_series)?;
    let p = series(c, a, x, skip_s)?;
    let q = continued_fraction(c, a, x, skip_cf)?;
    let one = kc(c.g, x, 1.0);
    let (direct, complement) = if upper { (q, p) } else { (p, q) };
    let comp = c.g.binary(B::Sub, one, complement)?;
    let pick_direct = if upper { use_cf } else { use_series };
    let mut r = c.g.select(pick_direct, direct, comp)?;
    for &(k, v) in cases.iter().rev() {
        r = c.g.select(k, v, r)?;
    }
    Ok(vec![c.g.convert(r, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["igamma", "igamma.out", "igamma_"], |c, a| {
        incomplete_gamma(c, a, false)
    });
    r.add(&["igammac", "igammac.out", "igammac_"], |c, a| {
        incomplete_gamma(c, a, true)
    });
}
