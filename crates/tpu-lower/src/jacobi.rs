//! Jacobi iterations on batches of square matrices, in one `stablehlo.while`:
//! the two-sided SVD (a 2x2 SVD per pair: a rotation that symmetrizes the
//! block, then the symmetric Jacobi rotation) and the symmetric eigenvalue
//! problem (the symmetric rotation on both sides).
//!
//! Pairs are rotated n/2 at a time in the parallel (round-robin) order, as
//! XLA's SVD expander does: the pairs are always positions (2i, 2i+1), and
//! after each step rows and columns are shuffled so that every pair meets
//! once per sweep of n-1 steps. Rotations and shuffles are elementwise ops and
//! slices (no dots), so their rounding does not depend on a backend's matmul
//! precision. An odd n is padded with a zero row and column, which stays
//! decoupled (its 2x2 blocks are diagonal, so its rotations are trivial).
//! The loop stops when the off-diagonal norm of every matrix in the batch is
//! at most `eps * ||A||_F` (the pairs just rotated are set to exactly zero,
//! as classical Jacobi does, which keeps rounding from stalling the test), or
//! after `MAX_SWEEPS` sweeps.

use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId,
};

const MAX_SWEEPS: i64 = 30;

/// Result of [`jacobi`], padded to an even size `np`: the diagonal `d`
/// `[.., np]`, the left and right accumulated rotations `[.., np, np]` (`u`
/// only for the SVD; original index by row, final position by column), and
/// whether the last row is padding.
pub(crate) struct Jacobi {
    pub d: ValueId,
    pub u: Option<ValueId>,
    pub v: ValueId,
    pub padded: bool,
}

/// Splits dim `axis` (size 2k) into (k, 2); returns the even and odd positions, `[.., k, 1, ..]`.
fn halves(g: &mut Graph, x: ValueId, axis: usize) -> Result<(ValueId, ValueId)> {
    let mut s = g.shape(x).to_vec();
    s[axis] /= 2;
    s.insert(axis + 1, 2);
    let y = g.reshape(x, &s)?;
    Ok((
        g.slice_dim(y, axis + 1, 0, 1)?,
        g.slice_dim(y, axis + 1, 1, 2)?,
    ))
}

/// Inverse of [`halves`]: interleaves `p` and `q` back into `shape`.
fn join(g: &mut Graph, p: ValueId, q: ValueId, axis: usize, shape: &[i64]) -> Result<ValueId> {
    let y = g.concatenate(&[p, q], axis as i64 + 1)?;
    Ok(g.reshape(y, shape)?)
}

/// Rotates the pairs (2i, 2i+1) along `axis` by `(c[i], s[i])` (`[.., k]`):
/// `p' = c p - s q`, `q' = s p + c q`. Along rows that is `G^T A`, along
/// columns `A G`, with `G = [[c, s], [-s, c]]`.
fn rotate(g: &mut Graph, x: ValueId, axis: usize, c: ValueId, s: ValueId) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let (p, q) = halves(g, x, axis)?;
    let hs = g.shape(p).to_vec();
    let nb = g.rank(c) - 1;
    let mut dims: Vec<i64> = (0..nb as i64).collect();
    dims.push(axis as i64);
    let cb = g.broadcast_in_dim(c, &hs, &dims)?;
    let sb = g.broadcast_in_dim(s, &hs, &dims)?;
    let (cp, sq) = (g.binary(B::Mul, cb, p)?, g.binary(B::Mul, sb, q)?);
    let np = g.binary(B::Sub, cp, sq)?;
    let (sp, cq) = (g.binary(B::Mul, sb, p)?, g.binary(B::Mul, cb, q)?);
    let nq = g.binary(B::Add, sp, cq)?;
    join(g, np, nq, axis, &shape)
}

/// The round-robin move along `axis`: with pairs (top[i], bottom[i]), top[0]
/// stays, the others move one place around the ring.
fn shuffle(g: &mut Graph, x: ValueId, axis: usize) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let k = shape[axis] / 2;
    if k == 1 {
        return Ok(x);
    }
    let (t, b) = halves(g, x, axis)?;
    let mut top = vec![g.slice_dim(t, axis, 0, 1)?, g.slice_dim(b, axis, 0, 1)?];
    if k > 2 {
        top.push(g.slice_dim(t, axis, 1, k - 1)?);
    }
    let top = g.concatenate(&top, axis as i64)?;
    let b1 = g.slice_dim(b, axis, 1, k)?;
    let tl = g.slice_dim(t, axis, k - 1, k)?;
    let bottom = g.concatenate(&[b1, tl], axis as i64)?;
    join(g, top, bottom, axis, &shape)
}

/// `sqrt(a^2 + b^2)` without overflow.
pub(crate) fn hypot(g: &mut Graph, a: ValueId, b: ValueId) -> Result<ValueId> {
    let (aa, ab) = (g.unary(U::Abs, a)?, g.unary(U::Abs, b)?);
    let hi = g.binary(B::Max, aa, ab)?;
    let lo = g.binary(B::Min, aa, ab)?;
    let r = g.binary(B::Div, lo, hi)?;
    let r2 = g.binary(B::Mul, r, r)?;
    let r2 = g.binary_const(B::Add, r2, 1.0)?;
    let h = g.unary(U::Sqrt, r2)?;
    let h = g.binary(B::Mul, hi, h)?;
    let zero = g.full_like(hi, 0.0, g.dtype(hi));
    let none = g.compare(CmpDir::Eq, hi, zero)?;
    Ok(g.select(none, zero, h)?)
}

/// `(x / h, y / h)` for `h = hypot(x, y)`, or `(1, 0)` where both are zero.
fn unit(g: &mut Graph, x: ValueId, y: ValueId) -> Result<(ValueId, ValueId)> {
    let h = hypot(g, x, y)?;
    let d = g.dtype(x);
    let zero = g.full_like(h, 0.0, d);
    let none = g.compare(CmpDir::Eq, h, zero)?;
    let one = g.full_like(h, 1.0, d);
    let (cx, cy) = (g.binary(B::Div, x, h)?, g.binary(B::Div, y, h)?);
    Ok((g.select(none, one, cx)?, g.select(none, zero, cy)?))
}

/// The rotation `(c, s)` that diagonalizes `[[a, b], [b, d]]` by `J^T M J`
/// (the smaller of the two angles); identity where `b == 0`.
fn symmetric_rotation(
    g: &mut Graph,
    a: ValueId,
    b: ValueId,
    d: ValueId,
) -> Result<(ValueId, ValueId)> {
    let dt = g.dtype(a);
    let zero = g.full_like(b, 0.0, dt);
    let one = g.full_like(b, 1.0, dt);
    let diff = g.binary(B::Sub, d, a)?;
    let b2 = g.binary_const(B::Mul, b, 2.0)?;
    let zeta = g.binary(B::Div, diff, b2)?;
    let az = g.unary(U::Abs, zeta)?;
    let h = hypot(g, one, zeta)?;
    let den = g.binary(B::Add, az, h)?;
    let neg = g.compare(CmpDir::Lt, zeta, zero)?;
    let minus = g.full_like(b, -1.0, dt);
    let sgn = g.select(neg, minus, one)?;
    let t = g.binary(B::Div, sgn, den)?;
    let none = g.compare(CmpDir::Eq, b, zero)?;
    let t = g.select(none, zero, t)?;
    let t2 = g.binary(B::Mul, t, t)?;
    let t2 = g.binary_const(B::Add, t2, 1.0)?;
    let c = g.unary(U::Rsqrt, t2)?;
    let s = g.binary(B::Mul, t, c)?;
    Ok((c, s))
}

/// `x[.., i, r, i, s]` for the 2x2 diagonal blocks of `[.., 2k, 2k]`, each `[.., k]`.
fn blocks(g: &mut Graph, x: ValueId) -> Result<[ValueId; 4]> {
    let s = g.shape(x).to_vec();
    let nb = s.len() - 2;
    let k = s[nb] / 2;
    let mut bs = s[..nb].to_vec();
    bs.extend([k, 2, k, 2]);
    let y = g.reshape(x, &bs)?;
    let i = g.iota(DType::I64, &bs, nb as i64)?;
    let j = g.iota(DType::I64, &bs, nb as i64 + 2)?;
    let diag = g.compare(CmpDir::Eq, i, j)?;
    let zero = g.full_like(y, 0.0, g.dtype(y));
    let y = g.select(diag, y, zero)?;
    let y = g.reduce(R::Sum, y, &[nb as i64 + 2])?;
    let mut out = [y; 4];
    for (n, (r, c)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
        let e = g.slice_dim(y, nb + 1, r, r + 1)?;
        let e = g.slice_dim(e, nb + 2, c, c + 1)?;
        out[n] = g.squeeze_dims(e, &[nb + 1, nb + 2])?;
    }
    Ok(out)
}

/// Masks of `[.., n, n]`: off the diagonal, and inside a (2i, 2i+1) block off the diagonal.
fn masks(g: &mut Graph, shape: &[i64]) -> Result<(ValueId, ValueId)> {
    let r = shape.len();
    let row = g.iota(DType::I64, shape, r as i64 - 2)?;
    let col = g.iota(DType::I64, shape, r as i64 - 1)?;
    let off = g.compare(CmpDir::Ne, row, col)?;
    let (rb, cb) = (
        g.binary_const(B::Div, row, 2.0)?,
        g.binary_const(B::Div, col, 2.0)?,
    );
    let same = g.compare(CmpDir::Eq, rb, cb)?;
    Ok((off, g.binary(B::And, off, same)?))
}

/// Sum of squares of the off-diagonal entries of each matrix, `[..]`.
fn off_norm2(g: &mut Graph, a: ValueId) -> Result<ValueId> {
    let shape = g.shape(a).to_vec();
    let r = shape.len() as i64;
    let (off, _) = masks(g, &shape)?;
    let zero = g.full_like(a, 0.0, g.dtype(a));
    let o = g.select(off, a, zero)?;
    let o2 = g.binary(B::Mul, o, o)?;
    Ok(g.reduce(R::Sum, o2, &[r - 2, r - 1])?)
}

/// `[.., n, n]` identity of dtype `d`.
pub(crate) fn eye(g: &mut Graph, shape: &[i64], d: DType) -> Result<ValueId> {
    let r = shape.len() as i64;
    let i = g.iota(DType::I64, shape, r - 2)?;
    let j = g.iota(DType::I64, shape, r - 1)?;
    let e = g.compare(CmpDir::Eq, i, j)?;
    Ok(g.convert(e, d))
}

/// The diagonal of `[.., n, n]`, `[.., n]`.
pub(crate) fn diagonal(g: &mut Graph, a: ValueId) -> Result<ValueId> {
    let shape = g.shape(a).to_vec();
    let r = shape.len() as i64;
    let i = g.iota(DType::I64, &shape, r - 2)?;
    let j = g.iota(DType::I64, &shape, r - 1)?;
    let e = g.compare(CmpDir::Eq, i, j)?;
    let zero = g.full_like(a, 0.0, g.dtype(a));
    let x = g.select(e, a, zero)?;
    Ok(g.reduce(R::Sum, x, &[r - 1])?)
}

/// One Jacobi step: rotate every pair, zero the rotated blocks' off-diagonal, shuffle.
fn step(g: &mut Graph, a: ValueId, u: Option<ValueId>, v: ValueId) -> Result<Vec<ValueId>> {
    let nb = g.rank(a) - 2;
    let [w, x, y, z] = blocks(g, a)?;
    let ((cl, sl), (cr, sr)) = if u.is_none() {
        let xy = g.binary(B::Add, x, y)?;
        let m01 = g.binary_const(B::Mul, xy, 0.5)?;
        let r = symmetric_rotation(g, w, m01, z)?;
        (r, r)
    } else {
        // G1 = [[c1, s1], [-s1, c1]] makes G1^T B symmetric: c1 (x - y) = s1 (w + z).
        let (t, r) = (g.binary(B::Add, w, z)?, g.binary(B::Sub, x, y)?);
        let (c1, s1) = unit(g, t, r)?;
        let lin = |g: &mut Graph, ca: ValueId, a: ValueId, cb: ValueId, b: ValueId, sub: bool| {
            let (p, q) = (g.binary(B::Mul, ca, a)?, g.binary(B::Mul, cb, b)?);
            g.binary(if sub { B::Sub } else { B::Add }, p, q)
        };
        let m00 = lin(g, c1, w, s1, y, true)?;
        let m01 = lin(g, c1, x, s1, z, true)?;
        let m11 = lin(g, s1, x, c1, z, false)?;
        let (c2, s2) = symmetric_rotation(g, m00, m01, m11)?;
        // Left rotation G1 J: the angles add.
        let cl = lin(g, c1, c2, s1, s2, true)?;
        let sl = lin(g, c1, s2, s1, c2, false)?;
        ((cl, sl), (c2, s2))
    };
    let a = rotate(g, a, nb, cl, sl)?;
    let a = rotate(g, a, nb + 1, cr, sr)?;
    let shape = g.shape(a).to_vec();
    let (_, block_off) = masks(g, &shape)?;
    let zero = g.full_like(a, 0.0, g.dtype(a));
    let a = g.select(block_off, zero, a)?;
    let a = shuffle(g, a, nb)?;
    let mut out = vec![shuffle(g, a, nb + 1)?];
    if let Some(u) = u {
        let u = rotate(g, u, nb + 1, cl, sl)?;
        out.push(shuffle(g, u, nb + 1)?);
    }
    let v = rotate(g, v, nb + 1, cr, sr)?;
    out.push(shuffle(g, v, nb + 1)?);
    Ok(out)
}

/// Jacobi on `[.., n, n]` (n >= 1, float, no empty batch): `symmetric` for
/// the eigenvalue problem (`A = V diag(d) V^T`), else the SVD (`A = U diag(d) V^T`, d of any sign).
pub(crate) fn jacobi(g: &mut Graph, a: ValueId, symmetric: bool) -> Result<Jacobi> {
    let shape = g.shape(a).to_vec();
    let nb = shape.len() - 2;
    let n = shape[nb];
    let dt = g.dtype(a);
    if n == 0 || shape[nb + 1] != n || !dt.is_float() {
        bail!(
            "jacobi: expected non-empty square float matrices, got {}",
            g.ty(a)
        );
    }
    let padded = n % 2 == 1;
    let a = if padded {
        let z = g.scalar(0.0, dt);
        let mut high = vec![0; nb + 2];
        high[nb] = 1;
        high[nb + 1] = 1;
        g.pad(a, z, &vec![0; nb + 2], &high, &vec![0; nb + 2])?
    } else {
        a
    };
    let np = n + padded as i64;
    let mut full = shape[..nb].to_vec();
    full.extend([np, np]);
    let eps = match dt {
        DType::F64 => f64::EPSILON,
        _ => f32::EPSILON as f64,
    };
    let a2 = g.binary(B::Mul, a, a)?;
    let norm2 = g.reduce(R::Sum, a2, &[nb as i64, nb as i64 + 1])?;
    let tol2 = g.binary_const(B::Mul, norm2, eps * eps)?;
    let id = eye(g, &full, dt)?;
    let step0 = g.constant(ConstVal::Int(0), DType::I64, &[]);
    let mut init = vec![step0, tol2, a];
    if !symmetric {
        init.push(id);
    }
    init.push(id);
    let max_steps = MAX_SWEEPS * (np - 1);
    let out = g.while_loop(
        &init,
        |g, x| -> Result<ValueId> {
            let limit = g.constant(ConstVal::Int(max_steps), DType::I64, &[]);
            let more = g.compare(CmpDir::Lt, x[0], limit)?;
            let off = off_norm2(g, x[2])?;
            let open = g.compare(CmpDir::Gt, off, x[1])?;
            let n = g.ty(open).numel();
            let open = g.reshape(open, &[n])?;
            let any = g.reduce(R::Or, open, &[0])?;
            Ok(g.binary(B::And, more, any)?)
        },
        |g, x| -> Result<Vec<ValueId>> {
            let next = g.binary_const(B::Add, x[0], 1.0)?;
            let u = (!symmetric).then(|| x[3]);
            let rest = step(g, x[2], u, *x.last().expect("v"))?;
            let mut out = vec![next, x[1]];
            out.extend(rest);
            Ok(out)
        },
    )?;
    Ok(Jacobi {
        d: diagonal(g, out[2])?,
        u: (!symmetric).then(|| out[3]),
        v: *out.last().expect("v"),
        padded,
    })
}

/// Sorts `key` (`[.., np]`) along its last dim and moves the columns of each
/// `mats[i]` (`[.., r, np]`) the same way; a padded last index (see
/// [`Jacobi::padded`]) is sorted last and dropped, with the matrices' last row.
pub(crate) fn sort_columns(
    g: &mut Graph,
    key: ValueId,
    padded: bool,
    descending: bool,
    mats: &[ValueId],
) -> Result<(ValueId, Vec<ValueId>)> {
    let ks = g.shape(key).to_vec();
    let nb = ks.len() - 1;
    let np = ks[nb];
    let n = np - padded as i64;
    let dt = g.dtype(key);
    let idx = g.iota(DType::I32, &ks, nb as i64)?;
    let sort_key = if padded {
        let v = if descending {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        // The padded index sits wherever the shuffles left it: the column whose last row is set.
        let m0 = mats[0];
        let lr = g.slice_dim(m0, nb, np - 1, np)?;
        let lr = g.squeeze_dims(lr, &[nb])?;
        let lr = g.unary(U::Abs, lr)?;
        let half = g.full_like(lr, 0.5, dt);
        let is_pad = g.compare(CmpDir::Gt, lr, half)?;
        let far = g.full_like(key, v, dt);
        g.select(is_pad, far, key)?
    } else {
        key
    };
    let sorted = g.sort(&[sort_key, idx], nb as i64, descending)?;
    let perm = g.slice_dim(sorted[1], nb, 0, n)?;
    let perm = g.convert(perm, DType::I64);
    let key = take_columns(g, key, perm)?;
    let mut out = Vec::new();
    for &m in mats {
        let m = if padded { g.slice_dim(m, nb, 0, n)? } else { m };
        out.push(take_columns(g, m, perm)?);
    }
    Ok((key, out))
}

/// `x[.., perm[j]]` along the last dim (`x` `[.., r, np]` or `[.., np]`; `perm` `[.., n]`), exactly (selects, no products).
pub(crate) fn take_columns(g: &mut Graph, x: ValueId, perm: ValueId) -> Result<ValueId> {
    let xs = g.shape(x).to_vec();
    let ps = g.shape(perm).to_vec();
    let nb = ps.len() - 1;
    let n = ps[nb];
    // [.., (r,) np, n]: select x[.., k] where perm[.., j] == k, sum over k.
    let mut s = xs.clone();
    s.push(n);
    let r = s.len();
    let k = g.iota(DType::I64, &s, r as i64 - 2)?;
    let mut pdims: Vec<i64> = (0..nb as i64).collect();
    pdims.push(r as i64 - 1);
    let pb = g.broadcast_in_dim(perm, &s, &pdims)?;
    let hit = g.compare(CmpDir::Eq, k, pb)?;
    let xdims: Vec<i64> = (0..r as i64 - 1).collect();
    let xb = g.broadcast_in_dim(x, &s, &xdims)?;
    let zero = g.full_like(xb, 0.0, g.dtype(x));
    let y = g.select(hit, xb, zero)?;
    Ok(g.reduce(R::Sum, y, &[r as i64 - 2])?)
}
