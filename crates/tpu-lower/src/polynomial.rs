//! Orthogonal polynomials `P_n(x)` with a tensor degree `n`: Chebyshev T, U,
//! V, W (plain and shifted to [0, 1]), Hermite H and He, Laguerre L,
//! Legendre P, as PyTorch's CPU kernels compute them (`ATen/native/Math.h`):
//! 0 for n < 0, closed forms at |x| = 1 (and, for Chebyshev, `cos(n acos x)`
//! style forms for large n inside (-1, 1)), otherwise the three-term
//! recurrence. The recurrence runs in one bounded `while` loop over the
//! largest degree that needs it, each element stepping only while its own
//! degree is not reached; the loop also stops once those elements are NaN,
//! as the CPU loop does. Integer and bool inputs promote to the default
//! float dtype, as on the CPU.

use crate::operands::{
    broadcast_shapes, cmp_kc, float_dtype, kc, operand, opmath, result_type, Out,
};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId};

/// One recurrence step `P_{j+1} = step(j, x, P_{j-1}, P_j)`, `j` already in
/// `x`'s dtype and shape.
type Step = fn(&mut Graph, ValueId, ValueId, ValueId, ValueId) -> tpu_graph::Result<ValueId>;

/// `x`, `n` (int64, truncated as `static_cast<int64_t>`, non-finite -> -1)
/// broadcast together, the compute dtype and the result dtype.
struct Operands {
    x: ValueId,
    n: ValueId,
    w: DType,
    d: DType,
}

fn operands(c: &mut LowerCtx, a: &Args) -> Result<Operands> {
    let d = match c.out_types.first() {
        Some(t) => t.dtype,
        None => float_dtype(result_type(c.g, &[a.arg(0), a.arg(1)])),
    };
    if !d.is_float() {
        bail!("polynomial: the result dtype must be floating point, got {d}");
    }
    let w = opmath(d);
    // Both operands take the result dtype first, as the CPU's TensorIterator casts them.
    let x = operand(c, a, 0, d)?;
    let x = c.g.convert(x, w);
    let n = operand(c, a, 1, d)?;
    let n = c.g.convert(n, w);
    let fin = c.g.unary(U::IsFinite, n)?;
    let ni = c.g.convert(n, DType::I64);
    let neg = c.g.full_like(ni, -1.0, DType::I64);
    let n = c.g.select(fin, ni, neg)?;
    let shape = broadcast_shapes(c.g.shape(x), c.g.shape(n))?;
    let x = c.g.broadcast_to(x, &shape)?;
    let n = c.g.broadcast_to(n, &shape)?;
    Ok(Operands { x, n, w, d })
}

/// `a + b * s` for a host constant `s` (affine pieces of the recurrences).
fn add_scaled(g: &mut Graph, a: ValueId, b: ValueId, s: f64) -> tpu_graph::Result<ValueId> {
    let sb = g.mul_const(b, s)?;
    g.binary(B::Add, a, sb)
}

/// The first of `cases` whose condition holds, else `default` (the CPU
/// kernel's early returns, in order).
fn pick(c: &mut LowerCtx, cases: &[(ValueId, ValueId)], default: ValueId) -> Result<ValueId> {
    let mut r = default;
    for &(cond, v) in cases.iter().rev() {
        r = c.g.select(cond, v, r)?;
    }
    Ok(r)
}

/// `P_n(x)` by the recurrence from `P_0 = 1`, `P_1 = q1`, where `active`
/// (and n >= 2); other elements keep `q1`.
fn recurrence(
    c: &mut LowerCtx,
    x: ValueId,
    n: ValueId,
    q1: ValueId,
    active: ValueId,
    step: Step,
) -> Result<ValueId> {
    let zero = c.g.full_like(n, 0.0, DType::I64);
    let n_eff = c.g.select(active, n, zero)?;
    let dims: Vec<i64> = (0..c.g.rank(n) as i64).collect();
    let max_n = c.g.reduce(R::Max, n_eff, &dims)?;
    let j0 = c.g.scalar(1.0, DType::I64);
    let p0 = kc(c.g, x, 1.0);
    let state = [j0, max_n, p0, q1, x, n_eff];
    let out = c.g.while_loop(
        &state,
        |g, s| {
            let more = g.compare(CmpDir::Lt, s[0], s[1])?;
            // Elements still stepping whose value is not NaN yet.
            let shape = g.shape(s[5]).to_owned();
            let j = g.broadcast_to(s[0], &shape)?;
            let stepping = g.compare(CmpDir::Lt, j, s[5])?;
            let num = g.compare(CmpDir::Eq, s[3], s[3])?;
            let live = g.binary(B::And, stepping, num)?;
            let dims: Vec<i64> = (0..g.rank(live) as i64).collect();
            let any = g.reduce(R::Or, live, &dims)?;
            g.binary(B::And, more, any)
        },
        |g, s| {
            let shape = g.shape(s[5]).to_vec();
            let j = g.broadcast_to(s[0], &shape)?;
            let stepping = g.compare(CmpDir::Lt, j, s[5])?;
            let jw = g.convert(j, g.dtype(s[4]));
            let r = step(g, jw, s[4], s[2], s[3])?;
            let p = g.select(stepping, s[3], s[2])?;
            let q = g.select(stepping, r, s[3])?;
            let one = g.scalar(1.0, DType::I64);
            let j = g.binary(B::Add, s[0], one)?;
            Ok(vec![j, s[1], p, q, s[4], s[5]])
        },
    )?;
    Ok(out[3])
}

// --- Chebyshev (plain on x, shifted on y = 2x - 1) -----------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    T,
    U,
    V,
    W,
}

/// `2y q - p`, shared by all Chebyshev kinds.
fn chebyshev_step(
    g: &mut Graph,
    _j: ValueId,
    y: ValueId,
    p: ValueId,
    q: ValueId,
) -> tpu_graph::Result<ValueId> {
    let y2 = g.binary(B::Add, y, y)?;
    let t = g.binary(B::Mul, y2, q)?;
    g.binary(B::Sub, t, p)
}

/// `sign * v` where `sign` is +1 if `pos` else -1 (values of the edge cases).
fn signed(c: &mut LowerCtx, pos: ValueId, v: ValueId) -> Result<ValueId> {
    let neg = c.g.unary(U::Neg, v)?;
    Ok(c.g.select(pos, v, neg)?)
}

/// Values at |y| = 1: `up` says y > 0 (or, for T and U, that n is even too).
fn chebyshev_edge(
    c: &mut LowerCtx,
    kind: Kind,
    y: ValueId,
    nw: ValueId,
    even: ValueId,
) -> Result<ValueId> {
    let pos = cmp_kc(c.g, CmpDir::Gt, y, 0.0)?;
    let one = kc(c.g, y, 1.0);
    let n1 = c.g.binary_const(B::Add, nw, 1.0)?;
    let n21 = add_scaled(c.g, one, nw, 2.0)?;
    Ok(match kind {
        Kind::T | Kind::U => {
            let up = c.g.binary(B::Or, pos, even)?;
            signed(c, up, if kind == Kind::T { one } else { n1 })?
        }
        Kind::V => {
            let alt = signed(c, even, n21)?;
            c.g.select(pos, one, alt)?
        }
        Kind::W => {
            let alt = signed(c, even, one)?;
            c.g.select(pos, n21, alt)?
        }
    })
}

/// The closed forms for large n inside (-1, 1).
fn chebyshev_closed(c: &mut LowerCtx, kind: Kind, y: ValueId, n: ValueId) -> Result<ValueId> {
    let yf = y;
    let nf = c.g.convert(n, c.g.dtype(y));
    let t = c.g.unary(U::Acos, yf)?;
    let half = 0.5;
    let mul = |c: &mut LowerCtx, a: ValueId, b: ValueId| -> Result<ValueId> {
        Ok(c.g.binary(B::Mul, a, b)?)
    };
    Ok(match kind {
        Kind::T => {
            let a = mul(c, nf, t)?;
            c.g.unary(U::Cos, a)?
        }
        Kind::U => {
            let n1 = c.g.binary_const(B::Add, nf, 1.0)?;
            let a = mul(c, n1, t)?;
            let s = c.g.unary(U::Sin, t)?;
            let sa = c.g.unary(U::Sin, a)?;
            let main = c.g.binary(B::Div, sa, s)?;
            let ca = c.g.unary(U::Cos, a)?;
            let alt = mul(c, n1, ca)?;
            let alt = c.g.binary(B::Div, alt, yf)?;
            let nz = cmp_kc(c.g, CmpDir::Ne, s, 0.0)?;
            c.g.select(nz, main, alt)?
        }
        Kind::V | Kind::W => {
            let nh = c.g.binary_const(B::Add, nf, half)?;
            let a = mul(c, nh, t)?;
            let t2 = c.g.mul_const(t, 0.5)?;
            let (num, den) = if kind == Kind::V {
                (c.g.unary(U::Cos, a)?, c.g.unary(U::Cos, t2)?)
            } else {
                (c.g.unary(U::Sin, a)?, c.g.unary(U::Sin, t2)?)
            };
            c.g.binary(B::Div, num, den)?
        }
    })
}

/// A Chebyshev polynomial of `kind`, on `2x - 1` if `shifted`; the closed
/// forms take over above degree `threshold` inside (-1, 1).
fn chebyshev(c: &mut LowerCtx, a: &Args, kind: Kind, shifted: bool, threshold: f64) -> Out {
    let Operands { x, n, w, d } = operands(c, a)?;
    let y = if shifted {
        let x2 = c.g.binary(B::Add, x, x)?;
        c.g.binary_const(B::Sub, x2, 1.0)?
    } else {
        x
    };
    let nw = c.g.convert(n, w);
    let two = c.g.full_like(n, 2.0, DType::I64);
    let rem = c.g.binary(B::Rem, n, two)?;
    let even = cmp_kc(c.g, CmpDir::Eq, rem, 0.0)?;
    let negative = cmp_kc(c.g, CmpDir::Lt, n, 0.0)?;
    let ay = c.g.unary(U::Abs, y)?;
    let edge = cmp_kc(c.g, CmpDir::Eq, ay, 1.0)?;
    let inside = cmp_kc(c.g, CmpDir::Lt, ay, 1.0)?;
    let big = cmp_kc(c.g, CmpDir::Gt, n, threshold)?;
    let closed_here = c.g.binary(B::And, big, inside)?;
    let n0 = cmp_kc(c.g, CmpDir::Eq, n, 0.0)?;
    let n1 = cmp_kc(c.g, CmpDir::Eq, n, 1.0)?;
    let edge_v = chebyshev_edge(c, kind, y, nw, even)?;
    let mut closed = chebyshev_closed(c, kind, y, n)?;
    if kind != Kind::U {
        // sin(acos(y)/2) == 1 (V) or cos(acos(y)/2) == 1 (W), and 0/0 in T:
        // only at the edges, where the CPU returns the edge values.
        let fin = c.g.unary(U::IsFinite, closed)?;
        closed = c.g.select(fin, closed, edge_v)?;
    }
    let y2 = c.g.binary(B::Add, y, y)?;
    let q1 = match kind {
        Kind::T => y,
        Kind::U => y2,
        Kind::V => c.g.binary_const(B::Sub, y2, 1.0)?,
        Kind::W => c.g.binary_const(B::Add, y2, 1.0)?,
    };
    let zero = kc(c.g, y, 0.0);
    let one = kc(c.g, y, 1.0);
    let special = [negative, edge, closed_here, n0];
    let active = none_of(c, &special)?;
    let rec = recurrence(c, y, n, q1, active, chebyshev_step)?;
    let r = pick(
        c,
        &[
            (negative, zero),
            (edge, edge_v),
            (closed_here, closed),
            (n0, one),
            (n1, q1),
        ],
        rec,
    )?;
    Ok(vec![c.g.convert(r, d)])
}

/// Elements where none of `conds` holds.
fn none_of(c: &mut LowerCtx, conds: &[ValueId]) -> Result<ValueId> {
    let mut any = conds[0];
    for &k in &conds[1..] {
        any = c.g.binary(B::Or, any, k)?;
    }
    Ok(c.g.unary(U::Not, any)?)
}

macro_rules! chebyshev_rule {
    ($name:ident, $kind:expr, $shifted:expr, $threshold:expr) => {
        fn $name(c: &mut LowerCtx, a: &Args) -> Out {
            chebyshev(c, a, $kind, $shifted, $threshold)
        }
    };
}
chebyshev_rule!(chebyshev_t, Kind::T, false, 6.0);
chebyshev_rule!(chebyshev_u, Kind::U, false, 8.0);
chebyshev_rule!(chebyshev_v, Kind::V, false, 8.0);
chebyshev_rule!(chebyshev_w, Kind::W, false, 8.0);
chebyshev_rule!(shifted_t, Kind::T, true, 6.0);
chebyshev_rule!(shifted_u, Kind::U, true, 6.0);
chebyshev_rule!(shifted_v, Kind::V, true, 6.0);
chebyshev_rule!(shifted_w, Kind::W, true, 4.0);

// --- Hermite, Laguerre, Legendre ---------------------------------------------

/// Physicists' Hermite: `2x q - 2j p`.
fn hermite_h_step(
    g: &mut Graph,
    j: ValueId,
    x: ValueId,
    p: ValueId,
    q: ValueId,
) -> tpu_graph::Result<ValueId> {
    let x2 = g.binary(B::Add, x, x)?;
    let t = g.binary(B::Mul, x2, q)?;
    let jp = g.binary(B::Mul, j, p)?;
    let jp = g.binary(B::Add, jp, jp)?;
    g.binary(B::Sub, t, jp)
}

/// Probabilists' Hermite: `x q - j p`.
fn hermite_he_step(
    g: &mut Graph,
    j: ValueId,
    x: ValueId,
    p: ValueId,
    q: ValueId,
) -> tpu_graph::Result<ValueId> {
    let t = g.binary(B::Mul, x, q)?;
    let jp = g.binary(B::Mul, j, p)?;
    g.binary(B::Sub, t, jp)
}

/// Laguerre: `((2j + 1 - x) q - j p) / (j + 1)`.
fn laguerre_step(
    g: &mut Graph,
    j: ValueId,
    x: ValueId,
    p: ValueId,
    q: ValueId,
) -> tpu_graph::Result<ValueId> {
    let one = g.full_like(x, 1.0, g.dtype(x));
    let omx = g.binary(B::Sub, one, x)?;
    let j2 = g.binary(B::Add, j, j)?;
    let a = g.binary(B::Add, j2, omx)?;
    let t = g.binary(B::Mul, a, q)?;
    let jp = g.binary(B::Mul, j, p)?;
    let t = g.binary(B::Sub, t, jp)?;
    let j1 = g.binary(B::Add, j, one)?;
    g.binary(B::Div, t, j1)
}

/// Legendre: `((2j + 1) x q - j p) / (j + 1)`.
fn legendre_step(
    g: &mut Graph,
    j: ValueId,
    x: ValueId,
    p: ValueId,
    q: ValueId,
) -> tpu_graph::Result<ValueId> {
    let one = g.full_like(x, 1.0, g.dtype(x));
    let j2 = g.binary(B::Add, j, j)?;
    let a = g.binary(B::Add, j2, one)?;
    let t = g.binary(B::Mul, a, x)?;
    let t = g.binary(B::Mul, t, q)?;
    let jp = g.binary(B::Mul, j, p)?;
    let t = g.binary(B::Sub, t, jp)?;
    let j1 = g.binary(B::Add, j, one)?;
    g.binary(B::Div, t, j1)
}

/// The common shape of the other families: 0 for n < 0, then `extra` early
/// returns, 1 at n = 0, `q1` at n = 1, else the recurrence.
fn three_term(
    c: &mut LowerCtx,
    o: &Operands,
    q1: ValueId,
    extra: &[(ValueId, ValueId)],
    step: Step,
) -> Out {
    let (x, n) = (o.x, o.n);
    let negative = cmp_kc(c.g, CmpDir::Lt, n, 0.0)?;
    let n0 = cmp_kc(c.g, CmpDir::Eq, n, 0.0)?;
    let n1 = cmp_kc(c.g, CmpDir::Eq, n, 1.0)?;
    let mut special = vec![negative, n0, n1];
    special.extend(extra.iter().map(|e| e.0));
    let active = none_of(c, &special)?;
    let rec = recurrence(c, x, n, q1, active, step)?;
    let zero = kc(c.g, x, 0.0);
    let one = kc(c.g, x, 1.0);
    let mut cases = vec![(negative, zero)];
    cases.extend_from_slice(extra);
    cases.extend([(n0, one), (n1, q1)]);
    let r = pick(c, &cases, rec)?;
    Ok(vec![c.g.convert(r, o.d)])
}

/// Hermite H (`probabilists` false) or He: NaN above the CPU's degree
/// limit, whose recurrence would overflow.
fn hermite(c: &mut LowerCtx, a: &Args, probabilists: bool) -> Out {
    let o = operands(c, a)?;
    let limit = match o.w {
        DType::F32 => 128.0,
        DType::F64 => 512.0,
        _ => 1024.0,
    };
    let nan = kc(c.g, o.x, f64::NAN);
    let n1 = cmp_kc(c.g, CmpDir::Gt, o.n, 1.0)?;
    let over = cmp_kc(c.g, CmpDir::Gt, o.n, limit)?;
    let over = c.g.binary(B::And, n1, over)?;
    if probabilists {
        three_term(c, &o, o.x, &[(over, nan)], hermite_he_step)
    } else {
        let q1 = c.g.binary(B::Add, o.x, o.x)?;
        three_term(c, &o, q1, &[(over, nan)], hermite_h_step)
    }
}

/// Laguerre L: 1 at x = 0 for every n >= 0.
fn laguerre(c: &mut LowerCtx, a: &Args) -> Out {
    let o = operands(c, a)?;
    let one = kc(c.g, o.x, 1.0);
    let q1 = c.g.binary(B::Sub, one, o.x)?;
    let at0 = cmp_kc(c.g, CmpDir::Eq, o.x, 0.0)?;
    three_term(c, &o, q1, &[(at0, one)], laguerre_step)
}

/// Legendre P: ±1 at |x| = 1.
fn legendre(c: &mut LowerCtx, a: &Args) -> Out {
    let o = operands(c, a)?;
    let ax = c.g.unary(U::Abs, o.x)?;
    let edge = cmp_kc(c.g, CmpDir::Eq, ax, 1.0)?;
    let pos = cmp_kc(c.g, CmpDir::Gt, o.x, 0.0)?;
    let two = c.g.full_like(o.n, 2.0, DType::I64);
    let rem = c.g.binary(B::Rem, o.n, two)?;
    let even = cmp_kc(c.g, CmpDir::Eq, rem, 0.0)?;
    let up = c.g.binary(B::Or, pos, even)?;
    let one = kc(c.g, o.x, 1.0);
    let edge_v = signed(c, up, one)?;
    three_term(c, &o, o.x, &[(edge, edge_v)], legendre_step)
}

/// `base`, `base.out`, and the `x_scalar` / `n_scalar` forms with their `_out`s.
macro_rules! names {
    ($base:literal) => {
        &[
            $base,
            concat!($base, ".out"),
            concat!($base, ".x_scalar"),
            concat!($base, ".x_scalar_out"),
            concat!($base, ".n_scalar"),
            concat!($base, ".n_scalar_out"),
        ]
    };
}

pub fn register(r: &mut Registry) {
    r.add(names!("special_chebyshev_polynomial_t"), chebyshev_t);
    r.add(names!("special_chebyshev_polynomial_u"), chebyshev_u);
    r.add(names!("special_chebyshev_polynomial_v"), chebyshev_v);
    r.add(names!("special_chebyshev_polynomial_w"), chebyshev_w);
    r.add(names!("special_shifted_chebyshev_polynomial_t"), shifted_t);
    r.add(names!("special_shifted_chebyshev_polynomial_u"), shifted_u);
    r.add(names!("special_shifted_chebyshev_polynomial_v"), shifted_v);
    r.add(names!("special_shifted_chebyshev_polynomial_w"), shifted_w);
    r.add(names!("special_hermite_polynomial_h"), |c, a| {
        hermite(c, a, false)
    });
    r.add(names!("special_hermite_polynomial_he"), |c, a| {
        hermite(c, a, true)
    });
    r.add(names!("special_laguerre_polynomial_l"), laguerre);
    r.add(names!("special_legendre_polynomial_p"), legendre);
}
