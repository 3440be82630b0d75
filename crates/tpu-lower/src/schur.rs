//! Complex Schur decomposition `A = Q T Q^H` of batches of square matrices
//! (`[B, n, n]`, complex), for `linalg_eig` ([`crate::eig`]). Two while
//! loops, both made of complex Givens rotations applied as similarities
//! (rows and columns of the whole matrix, so T is the full Schur form):
//!
//! 1. Hessenberg reduction: column by column, the entries below the
//!    subdiagonal are rotated away from the bottom up.
//! 2. Single-shift QR iterations on the Hessenberg form, as LAPACK's
//!    `zlahqr`: a per-matrix state machine that, in each loop step, either
//!    looks for a negligible subdiagonal entry (deflation: the bottom
//!    eigenvalue of the active window `[l, i]` has converged when `l == i`,
//!    else a sweep starts on `[l, i]` with the Wilkinson shift, or an
//!    exceptional shift after 10 and 20 sweeps) or applies one rotation of
//!    the implicit bulge chase. A matrix whose window is empty idles with
//!    identity rotations while the rest of the batch converges; the loop
//!    stops when every matrix is done, or after a bound on the steps.
//!
//! Rows and entries are picked and written with masks of per-matrix indices
//! (elementwise selects and sums, no dots), so the program does not grow
//! with `n` and rounding does not depend on a backend's matmul precision.

use crate::jacobi::{eye, hypot};
use crate::Result;
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId,
};

/// Exceptional shifts after this many sweeps on one window (and twice it).
const EXCEPTIONAL: i64 = 10;

/// The part dtype's epsilon and a safe minimum.
pub(crate) fn eps_tiny(d: DType) -> (f64, f64) {
    match d.real() {
        DType::F64 => (f64::EPSILON, f64::MIN_POSITIVE / f64::EPSILON),
        _ => (
            f32::EPSILON as f64,
            f32::MIN_POSITIVE as f64 / f32::EPSILON as f64,
        ),
    }
}

/// `|re z| + |im z|` (LAPACK's `cabs1`), real.
pub(crate) fn cabs1(g: &mut Graph, z: ValueId) -> Result<ValueId> {
    let re = g.real_part(z)?;
    let im = g.imag_part(z)?;
    let (re, im) = (g.unary(U::Abs, re)?, g.unary(U::Abs, im)?);
    Ok(g.binary(B::Add, re, im)?)
}

/// `iota(dim) dir idx` over `shape` (`[B, ..]`), `idx` `[B]` broadcast along dim 0.
pub(crate) fn at(
    g: &mut Graph,
    shape: &[i64],
    dim: i64,
    idx: ValueId,
    dir: CmpDir,
) -> Result<ValueId> {
    let io = g.iota(DType::I64, shape, dim)?;
    let ib = g.broadcast_in_dim(idx, shape, &[0])?;
    Ok(g.compare(dir, io, ib)?)
}

/// Row (`dim` 1) or column (`dim` 2) `idx[b]` of `[B, n, n]`, `[B, n]`.
pub(crate) fn line(g: &mut Graph, x: ValueId, dim: i64, idx: ValueId) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let m = at(g, &shape, dim, idx, CmpDir::Eq)?;
    let zero = g.full_like(x, 0.0, g.dtype(x));
    let y = g.select(m, x, zero)?;
    Ok(g.reduce(R::Sum, y, &[dim])?)
}

/// Entry `v[b, idx[b]]` of `[B, n]`, `[B]`.
pub(crate) fn elem(g: &mut Graph, v: ValueId, idx: ValueId) -> Result<ValueId> {
    let shape = g.shape(v).to_vec();
    let m = at(g, &shape, 1, idx, CmpDir::Eq)?;
    let zero = g.full_like(v, 0.0, g.dtype(v));
    let y = g.select(m, v, zero)?;
    Ok(g.reduce(R::Sum, y, &[1])?)
}

/// Entry `x[b, r[b], c[b]]` of `[B, n, n]`, `[B]`.
fn entry(g: &mut Graph, x: ValueId, r: ValueId, c: ValueId) -> Result<ValueId> {
    let row = line(g, x, 1, r)?;
    elem(g, row, c)
}

/// `x` with row (`dim` 1) or column (`dim` 2) `idx[b]` replaced by `v` (`[B, n]`).
pub(crate) fn set_line(
    g: &mut Graph,
    x: ValueId,
    dim: i64,
    idx: ValueId,
    v: ValueId,
) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let m = at(g, &shape, dim, idx, CmpDir::Eq)?;
    let keep = if dim == 1 { [0, 2] } else { [0, 1] };
    let vb = g.broadcast_in_dim(v, &shape, &keep)?;
    Ok(g.select(m, vb, x)?)
}

/// `x` with entry `(r[b], c[b])` set to zero where `on[b]`.
fn zero_at(g: &mut Graph, x: ValueId, r: ValueId, c: ValueId, on: ValueId) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let mr = at(g, &shape, 1, r, CmpDir::Eq)?;
    let mc = at(g, &shape, 2, c, CmpDir::Eq)?;
    let ob = g.broadcast_in_dim(on, &shape, &[0])?;
    let m = g.binary(B::And, mr, mc)?;
    let m = g.binary(B::And, m, ob)?;
    let zero = g.full_like(x, 0.0, g.dtype(x));
    Ok(g.select(m, zero, x)?)
}

/// `[B]` broadcast to `[B, n]`.
fn per_row(g: &mut Graph, x: ValueId, n: i64) -> Result<ValueId> {
    let b = g.shape(x)[0];
    Ok(g.broadcast_in_dim(x, &[b, n], &[0])?)
}

/// The rotation `M = [[c, s], [-conj(s), c]]` (c real, as complex) with
/// `M [x; y] = [r; 0]`; the identity where `off[b]` or `x = y = 0`.
fn givens(g: &mut Graph, x: ValueId, y: ValueId, off: ValueId) -> Result<(ValueId, ValueId)> {
    let d = g.dtype(x);
    let (ax, ay) = (g.unary(U::Abs, x)?, g.unary(U::Abs, y)?);
    let r = hypot(g, ax, ay)?;
    let rd = g.dtype(r);
    let zr = g.full_like(r, 0.0, rd);
    let none = g.compare(CmpDir::Eq, r, zr)?;
    let none = g.binary(B::Or, none, off)?;
    let axz = g.compare(CmpDir::Eq, ax, zr)?;
    let one = g.full_like(x, 1.0, d);
    let zero = g.full_like(x, 0.0, d);
    let axc = g.convert(ax, d);
    let phase = g.binary(B::Div, x, axc)?;
    let phase = g.select(axz, one, phase)?;
    let rc = g.convert(r, d);
    let c = g.binary(B::Div, axc, rc)?;
    let yc = g.conj(y)?;
    let s = g.binary(B::Mul, phase, yc)?;
    let s = g.binary(B::Div, s, rc)?;
    Ok((g.select(none, one, c)?, g.select(none, zero, s)?))
}

/// Rows `k, k+1` of `x` times `M` from the left (`rows`), or columns `k, k+1` times `M^H` from the right.
fn rotate(
    g: &mut Graph,
    x: ValueId,
    k: ValueId,
    c: ValueId,
    s: ValueId,
    rows: bool,
) -> Result<ValueId> {
    let n = g.shape(x)[1];
    let dim = if rows { 1 } else { 2 };
    let k1 = g.binary_const(B::Add, k, 1.0)?;
    let (p, q) = (line(g, x, dim, k)?, line(g, x, dim, k1)?);
    let cb = per_row(g, c, n)?;
    let s = if rows { s } else { g.conj(s)? };
    let sb = per_row(g, s, n)?;
    let sc = g.conj(sb)?;
    // rows: p' = c p + s q, q' = -conj(s) p + c q; columns: the same with conj(s).
    let (cp, sq) = (g.binary(B::Mul, cb, p)?, g.binary(B::Mul, sb, q)?);
    let np = g.binary(B::Add, cp, sq)?;
    let (scp, cq) = (g.binary(B::Mul, sc, p)?, g.binary(B::Mul, cb, q)?);
    let nq = g.binary(B::Sub, cq, scp)?;
    let x = set_line(g, x, dim, k, np)?;
    set_line(g, x, dim, k1, nq)
}

/// The similarity `H <- M H M^H` on rows/columns `k, k+1`, and `Q <- Q M^H`.
fn similarity(
    g: &mut Graph,
    h: ValueId,
    q: ValueId,
    k: ValueId,
    c: ValueId,
    s: ValueId,
) -> Result<(ValueId, ValueId)> {
    let h = rotate(g, h, k, c, s, true)?;
    let h = rotate(g, h, k, c, s, false)?;
    Ok((h, rotate(g, q, k, c, s, false)?))
}

/// Unitary `Q` and upper Hessenberg `H = Q^H A Q` of complex `[B, n, n]`.
fn hessenberg(g: &mut Graph, a: ValueId) -> Result<(ValueId, ValueId)> {
    let shape = g.shape(a).to_vec();
    let (b, n) = (shape[0], shape[1]);
    let q = eye(g, &shape, g.dtype(a))?;
    if n < 3 {
        return Ok((a, q));
    }
    let k0 = g.constant(ConstVal::Int(0), DType::I64, &[]);
    let j0 = g.constant(ConstVal::Int(n - 1), DType::I64, &[]);
    let out = g.while_loop(
        &[k0, j0, a, q],
        |g, x| -> Result<ValueId> {
            let lim = g.constant(ConstVal::Int(n - 2), DType::I64, &[]);
            Ok(g.compare(CmpDir::Lt, x[0], lim)?)
        },
        |g, x| -> Result<Vec<ValueId>> {
            // Zero H[j, k] with the rotation of rows (j-1, j).
            let (kb, jb) = (g.broadcast_to(x[0], &[b])?, g.broadcast_to(x[1], &[b])?);
            let j1 = g.binary_const(B::Sub, jb, 1.0)?;
            let (hx, hy) = (entry(g, x[2], j1, kb)?, entry(g, x[2], jb, kb)?);
            let off = g.constant(ConstVal::Bool(false), DType::Bool, &[b]);
            let (c, s) = givens(g, hx, hy, off)?;
            let (h, q) = similarity(g, x[2], x[3], j1, c, s)?;
            let on = g.constant(ConstVal::Bool(true), DType::Bool, &[b]);
            let h = zero_at(g, h, jb, kb, on)?;
            // Next: j - 1, or the next column from the bottom.
            let jn = g.binary_const(B::Sub, x[1], 1.0)?;
            let kn = g.binary_const(B::Add, x[0], 1.0)?;
            let lo = g.binary_const(B::Add, x[0], 2.0)?;
            let wrap = g.compare(CmpDir::Lt, jn, lo)?;
            let last = g.constant(ConstVal::Int(n - 1), DType::I64, &[]);
            Ok(vec![
                g.select(wrap, kn, x[0])?,
                g.select(wrap, last, jn)?,
                h,
                q,
            ])
        },
    )?;
    Ok((out[2], out[3]))
}

/// The eigenvalue of `[[a, b], [c, d]]` nearer `d` (zlahqr's shift).
fn wilkinson(g: &mut Graph, a: ValueId, b: ValueId, c: ValueId, d: ValueId) -> Result<ValueId> {
    let u2 = g.binary(B::Mul, b, c)?;
    let x = g.binary(B::Sub, a, d)?;
    let x = g.mul_const(x, 0.5)?;
    let x2 = g.binary(B::Mul, x, x)?;
    let disc = g.binary(B::Add, x2, u2)?;
    let y = g.unary(U::Sqrt, disc)?;
    let (xr, xi) = (g.real_part(x)?, g.imag_part(x)?);
    let (yr, yi) = (g.real_part(y)?, g.imag_part(y)?);
    let (p, q) = (g.binary(B::Mul, xr, yr)?, g.binary(B::Mul, xi, yi)?);
    let dotp = g.binary(B::Add, p, q)?;
    let zr = g.full_like(dotp, 0.0, g.dtype(dotp));
    let flip = g.compare(CmpDir::Lt, dotp, zr)?;
    let ny = g.unary(U::Neg, y)?;
    let y = g.select(flip, ny, y)?;
    let den = g.binary(B::Add, x, y)?;
    let f = g.binary(B::Div, u2, den)?;
    let mu = g.binary(B::Sub, d, f)?;
    let dz = cabs1(g, den)?;
    let degenerate = g.compare(CmpDir::Eq, dz, zr)?;
    Ok(g.select(degenerate, d, mu)?)
}

/// `0.75 |re h| + base` (zlahqr's exceptional shift).
fn exceptional(g: &mut Graph, h: ValueId, base: ValueId) -> Result<ValueId> {
    let re = g.real_part(h)?;
    let re = g.unary(U::Abs, re)?;
    let re = g.mul_const(re, 0.75)?;
    let re = g.convert(re, g.dtype(base));
    Ok(g.binary(B::Add, re, base)?)
}

/// One step of the QR state machine (see the module doc); `x` = [step, H, Q, i, l, k, its, mu].
fn qr_step(g: &mut Graph, x: &[ValueId], eps: f64, tiny: f64) -> Result<Vec<ValueId>> {
    let (h, q, i, l, k, its, mu) = (x[1], x[2], x[3], x[4], x[5], x[6], x[7]);
    let shape = g.shape(h).to_vec();
    let (b, n) = (shape[0], shape[1]);
    let vs = [b, n];
    let zero_i = g.full_like(i, 0.0, DType::I64);
    // Deflation search: the largest j in 1..=i with a negligible H[j, j-1].
    let r = g.iota(DType::I64, &shape, 1)?;
    let cidx = g.iota(DType::I64, &shape, 2)?;
    let c1 = g.binary_const(B::Add, cidx, 1.0)?;
    let subm = g.compare(CmpDir::Eq, r, c1)?;
    let diagm = g.compare(CmpDir::Eq, r, cidx)?;
    let zh = g.full_like(h, 0.0, g.dtype(h));
    let sub = g.select(subm, h, zh)?;
    let sub = g.reduce(R::Sum, sub, &[2])?;
    let dg = g.select(diagm, h, zh)?;
    let dg = g.reduce(R::Sum, dg, &[2])?;
    let z1 = g.constant(ConstVal::Int(0), g.dtype(h), &[b, 1]);
    let head = g.slice_dim(dg, 1, 0, n - 1)?;
    let prev = g.concatenate(&[z1, head], 1)?;
    let (sa, da, pa) = (cabs1(g, sub)?, cabs1(g, dg)?, cabs1(g, prev)?);
    let tst = g.binary(B::Add, da, pa)?;
    let tst = g.mul_const(tst, eps)?;
    let floor = g.full_like(tst, tiny, g.dtype(tst));
    let tst = g.binary(B::Max, tst, floor)?;
    let small = g.compare(CmpDir::Le, sa, tst)?;
    let j = g.iota(DType::I64, &vs, 1)?;
    let ib = per_row(g, i, n)?;
    let within = g.compare(CmpDir::Le, j, ib)?;
    let small = g.binary(B::And, small, within)?;
    let zj = g.full_like(j, 0.0, DType::I64);
    let cand = g.select(small, j, zj)?;
    let lnew = g.reduce(R::Max, cand, &[1])?;
    let idle = g.compare(CmpDir::Lt, k, zero_i)?;
    let open = g.compare(CmpDir::Gt, i, zero_i)?;
    let searching = g.binary(B::And, idle, open)?;
    let found_l = g.compare(CmpDir::Eq, lnew, i)?;
    let found = g.binary(B::And, searching, found_l)?;
    let not_found = g.unary(U::Not, found_l)?;
    let start = g.binary(B::And, searching, not_found)?;
    // The shift for a sweep that starts now on [lnew, i].
    let im1 = g.binary_const(B::Sub, i, 1.0)?;
    let hii = entry(g, h, i, i)?;
    let ha = entry(g, h, im1, im1)?;
    let hb = entry(g, h, im1, i)?;
    let hc = entry(g, h, i, im1)?;
    let l1 = g.binary_const(B::Add, lnew, 1.0)?;
    let hll = entry(g, h, lnew, lnew)?;
    let hl1 = entry(g, h, l1, lnew)?;
    let w = wilkinson(g, ha, hb, hc, hii)?;
    let e1 = exceptional(g, hl1, hll)?;
    let e2 = exceptional(g, hc, hii)?;
    let its1 = g.full_like(its, EXCEPTIONAL as f64, DType::I64);
    let its2 = g.full_like(its, 2.0 * EXCEPTIONAL as f64, DType::I64);
    let at1 = g.compare(CmpDir::Eq, its, its1)?;
    let at2 = g.compare(CmpDir::Eq, its, its2)?;
    let shift = g.select(at1, e1, w)?;
    let shift = g.select(at2, e2, shift)?;
    // One rotation of the chase at k (matrices in a sweep).
    let chasing = g.compare(CmpDir::Ge, k, zero_i)?;
    let first = g.compare(CmpDir::Eq, k, l)?;
    let km1 = g.binary_const(B::Sub, k, 1.0)?;
    let k1 = g.binary_const(B::Add, k, 1.0)?;
    let hkk = entry(g, h, k, k)?;
    let hk1k = entry(g, h, k1, k)?;
    let hkb = entry(g, h, k, km1)?;
    let hk1b = entry(g, h, k1, km1)?;
    let x0 = g.binary(B::Sub, hkk, mu)?;
    let hx = g.select(first, x0, hkb)?;
    let hy = g.select(first, hk1k, hk1b)?;
    let off = g.unary(U::Not, chasing)?;
    let (c, s) = givens(g, hx, hy, off)?;
    let (h2, q2) = similarity(g, h, q, k, c, s)?;
    let not_first = g.unary(U::Not, first)?;
    let bulge = g.binary(B::And, chasing, not_first)?;
    let h2 = zero_at(g, h2, k1, km1, bulge)?;
    let gt0 = g.compare(CmpDir::Gt, lnew, zero_i)?;
    let defl = g.binary(B::And, searching, gt0)?;
    let lm1 = g.binary_const(B::Sub, lnew, 1.0)?;
    let h2 = zero_at(g, h2, lnew, lm1, defl)?;
    // The next state.
    let end = g.compare(CmpDir::Eq, k1, i)?;
    let minus = g.full_like(k, -1.0, DType::I64);
    let kn = g.select(end, minus, k1)?;
    let kn = g.select(chasing, kn, k)?;
    let kn = g.select(start, lnew, kn)?;
    let its_up = g.binary_const(B::Add, its, 1.0)?;
    let itsn = g.select(start, its_up, its)?;
    let itsn = g.select(found, zero_i, itsn)?;
    let step = g.binary_const(B::Add, x[0], 1.0)?;
    Ok(vec![
        step,
        h2,
        q2,
        g.select(found, im1, i)?,
        g.select(start, lnew, l)?,
        kn,
        itsn,
        g.select(start, shift, mu)?,
    ])
}

/// `(T, Q)` with `A = Q T Q^H`, T upper triangular, of complex `[B, n, n]` (n >= 1).
pub(crate) fn schur(g: &mut Graph, a: ValueId) -> Result<(ValueId, ValueId)> {
    let shape = g.shape(a).to_vec();
    let (b, n) = (shape[0], shape[1]);
    let d = g.dtype(a);
    let (eps, tiny) = eps_tiny(d);
    let (h, q) = hessenberg(g, a)?;
    let step0 = g.constant(ConstVal::Int(0), DType::I64, &[]);
    let i0 = g.constant(ConstVal::Int(n - 1), DType::I64, &[b]);
    let l0 = g.constant(ConstVal::Int(0), DType::I64, &[b]);
    let k0 = g.constant(ConstVal::Int(-1), DType::I64, &[b]);
    let mu0 = g.constant(ConstVal::Int(0), d, &[b]);
    let limit = 30 * n.max(10) * (n + 1);
    let out = g.while_loop(
        &[step0, h, q, i0, l0, k0, l0, mu0],
        |g, x| -> Result<ValueId> {
            let lim = g.constant(ConstVal::Int(limit), DType::I64, &[]);
            let more = g.compare(CmpDir::Lt, x[0], lim)?;
            let z = g.full_like(x[3], 0.0, DType::I64);
            let open = g.compare(CmpDir::Gt, x[3], z)?;
            let any = g.reduce(R::Or, open, &[0])?;
            Ok(g.binary(B::And, more, any)?)
        },
        |g, x| qr_step(g, x, eps, tiny),
    )?;
    // Only rounding (and unconverged entries) remain below the diagonal.
    let r = g.iota(DType::I64, &shape, 1)?;
    let cix = g.iota(DType::I64, &shape, 2)?;
    let upper = g.compare(CmpDir::Le, r, cix)?;
    let z = g.full_like(out[1], 0.0, d);
    Ok((g.select(upper, out[1], z)?, out[2]))
}
