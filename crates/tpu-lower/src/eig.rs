//! General (non-symmetric) eigendecomposition: `linalg_eig` and
//! `_linalg_eigvals`, from the complex Schur form `A = Q T Q^H`
//! ([`crate::schur`]; no LAPACK). The eigenvalues are T's diagonal, in the
//! order the QR iterations deflate them (bottom up, as LAPACK's); for a real
//! input, a complex-conjugate pair found next to each other is listed with
//! the positive imaginary part first, as `dgeev` does. Eigenvectors: back
//! substitution on T (`(T - w_j I) x = 0` with `x_j = 1`, a near-zero pivot
//! raised to `eps |w_j|` as `ztrevc` does), times Q, each column scaled to
//! unit 2-norm with its largest component real and positive (`zgeev`'s
//! normalization; `dgeev` leaves a real eigenvector's sign free).
//! Not done: LAPACK's balancing (`gebal`), and the real driver's
//! double-shift (Francis) steps: complex inputs mostly come out in `zgeev`'s
//! order, real ones in an order that can differ from `dgeev`'s (the same
//! eigenvalues, and each vector stays with its value).

use crate::jacobi::{eye, take_columns};
use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::schur::{at, cabs1, elem, eps_tiny, line, schur, set_line};
use crate::solve::check_square_shape;
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId,
};

/// `[B, n]` broadcast to `[B, n, n]` along rows (`dims` [0, 2]: the same for every row) or columns.
fn spread(g: &mut Graph, v: ValueId, dims: [i64; 2]) -> Result<ValueId> {
    let s = g.shape(v).to_vec();
    Ok(g.broadcast_in_dim(v, &[s[0], s[1], s[1]], &dims)?)
}

/// `a b` for `[B, n, n]` by products and sums (no dot).
fn mm(g: &mut Graph, a: ValueId, b: ValueId) -> Result<ValueId> {
    let s = g.shape(a).to_vec();
    let big = [s[0], s[1], s[1], s[2]];
    let ab = g.broadcast_in_dim(a, &big, &[0, 1, 2])?;
    let bb = g.broadcast_in_dim(b, &big, &[0, 2, 3])?;
    let p = g.binary(B::Mul, ab, bb)?;
    Ok(g.reduce(R::Sum, p, &[2])?)
}

/// The upper triangular `X` with unit diagonal and `T X = X diag(T)`, `[B, n, n]`.
fn triangular_vectors(g: &mut Graph, t: ValueId) -> Result<ValueId> {
    let shape = g.shape(t).to_vec();
    let (b, n) = (shape[0], shape[1]);
    let d = g.dtype(t);
    let x0 = eye(g, &shape, d)?;
    if n < 2 {
        return Ok(x0);
    }
    let (eps, tiny) = eps_tiny(d);
    let start = g.constant(ConstVal::Int(n - 2), DType::I64, &[]);
    let out = g.while_loop(
        &[start, t, x0],
        |g, x| -> Result<ValueId> {
            let z = g.constant(ConstVal::Int(0), DType::I64, &[]);
            Ok(g.compare(CmpDir::Ge, x[0], z)?)
        },
        |g, x| -> Result<Vec<ValueId>> {
            // Row i of X from the rows below it: x_ij = -(T[i, i+1..] X[i+1.., j]) / (t_ii - t_jj).
            let (t, xm) = (x[1], x[2]);
            let i = g.broadcast_to(x[0], &[b])?;
            let right = at(g, &[b, n], 1, i, CmpDir::Gt)?;
            let tr = line(g, t, 1, i)?;
            let tii = elem(g, tr, i)?;
            let z = g.full_like(tr, 0.0, d);
            let trm = g.select(right, tr, z)?;
            let trb = spread(g, trm, [0, 1])?;
            let p = g.binary(B::Mul, trb, xm)?;
            let s = g.reduce(R::Sum, p, &[1])?;
            let rows = g.iota(DType::I64, &shape, 1)?;
            let cols = g.iota(DType::I64, &shape, 2)?;
            let dm = g.compare(CmpDir::Eq, rows, cols)?;
            let zt = g.full_like(t, 0.0, d);
            let lam = g.select(dm, t, zt)?;
            let lam = g.reduce(R::Sum, lam, &[1])?;
            let tb = g.broadcast_in_dim(tii, &[b, n], &[0])?;
            let den = g.binary(B::Sub, tb, lam)?;
            let smin = cabs1(g, lam)?;
            let smin = g.mul_const(smin, eps)?;
            let fl = g.full_like(smin, tiny, g.dtype(smin));
            let smin = g.binary(B::Max, smin, fl)?;
            let da = cabs1(g, den)?;
            let tiny_den = g.compare(CmpDir::Lt, da, smin)?;
            let sminc = g.convert(smin, d);
            let den = g.select(tiny_den, sminc, den)?;
            let q = g.binary(B::Div, s, den)?;
            let q = g.unary(U::Neg, q)?;
            let old = line(g, xm, 1, i)?;
            let row = g.select(right, q, old)?;
            let xm = set_line(g, xm, 1, i, row)?;
            let next = g.binary_const(B::Sub, x[0], 1.0)?;
            Ok(vec![next, t, xm])
        },
    )?;
    Ok(out[2])
}

/// The columns of `v` (`[B, n, n]`) at unit 2-norm, each with its largest
/// component (the first of equals) real and positive.
fn normalize(g: &mut Graph, v: ValueId) -> Result<ValueId> {
    let shape = g.shape(v).to_vec();
    let n = shape[1];
    let d = g.dtype(v);
    let (re, im) = (g.real_part(v)?, g.imag_part(v)?);
    let (r2, i2) = (g.binary(B::Mul, re, re)?, g.binary(B::Mul, im, im)?);
    let a2 = g.binary(B::Add, r2, i2)?;
    let mx = g.reduce(R::Max, a2, &[1])?;
    let mxb = spread(g, mx, [0, 2])?;
    let hit = g.compare(CmpDir::Eq, a2, mxb)?;
    let rows = g.iota(DType::I64, &shape, 1)?;
    let far = g.full_like(rows, n as f64, DType::I64);
    let idx = g.select(hit, rows, far)?;
    let idx = g.reduce(R::Min, idx, &[1])?;
    let ib = spread(g, idx, [0, 2])?;
    let on = g.compare(CmpDir::Eq, rows, ib)?;
    let zero = g.full_like(v, 0.0, d);
    let piv = g.select(on, v, zero)?;
    let piv = g.reduce(R::Sum, piv, &[1])?;
    let pa = g.unary(U::Abs, piv)?;
    let nrm = g.reduce(R::Sum, a2, &[1])?;
    let nrm = g.unary(U::Sqrt, nrm)?;
    // v * conj(piv) / (|piv| ||v||); a zero column stays zero.
    let den = g.binary(B::Mul, pa, nrm)?;
    let zr = g.full_like(den, 0.0, g.dtype(den));
    let none = g.compare(CmpDir::Eq, den, zr)?;
    let pc = g.conj(piv)?;
    let denc = g.convert(den, d);
    let f = g.binary(B::Div, pc, denc)?;
    let zf = g.full_like(f, 0.0, d);
    let f = g.select(none, zf, f)?;
    let fb = spread(g, f, [0, 2])?;
    Ok(g.binary(B::Mul, v, fb)?)
}

/// For a real input: each adjacent conjugate pair `(a - bi, a + bi)`, `b > 0`,
/// swapped (the pairs cannot overlap: the middle value would need both signs).
fn pair_order(g: &mut Graph, w: ValueId, v: Option<ValueId>) -> Result<(ValueId, Option<ValueId>)> {
    let s = g.shape(w).to_vec();
    let (b, n) = (s[0], s[1]);
    if n < 2 {
        return Ok((w, v));
    }
    let (eps, tiny) = eps_tiny(g.dtype(w));
    let lo = g.slice_dim(w, 1, 0, n - 1)?;
    let hi = g.slice_dim(w, 1, 1, n)?;
    let (lr, li) = (g.real_part(lo)?, g.imag_part(lo)?);
    let (hr, hi_) = (g.real_part(hi)?, g.imag_part(hi)?);
    let z = g.full_like(li, 0.0, g.dtype(li));
    let neg = g.compare(CmpDir::Lt, li, z)?;
    let pos = g.compare(CmpDir::Gt, hi_, z)?;
    let dr = g.binary(B::Sub, lr, hr)?;
    let di = g.binary(B::Add, li, hi_)?;
    let (dr, di) = (g.unary(U::Abs, dr)?, g.unary(U::Abs, di)?);
    let gap = g.binary(B::Add, dr, di)?;
    let size = cabs1(g, lo)?;
    let tol = g.mul_const(size, eps.sqrt())?;
    let fl = g.full_like(tol, tiny, g.dtype(tol));
    let tol = g.binary(B::Max, tol, fl)?;
    let close = g.compare(CmpDir::Le, gap, tol)?;
    let m = g.binary(B::And, neg, pos)?;
    let m = g.binary(B::And, m, close)?;
    let m = g.convert(m, DType::I64);
    let z1 = g.constant(ConstVal::Int(0), DType::I64, &[b, 1]);
    let down = g.concatenate(&[m, z1], 1)?;
    let up = g.concatenate(&[z1, m], 1)?;
    let j = g.iota(DType::I64, &s, 1)?;
    let perm = g.binary(B::Add, j, down)?;
    let perm = g.binary(B::Sub, perm, up)?;
    let w = take_columns(g, w, perm)?;
    let v = match v {
        Some(v) => Some(take_columns(g, v, perm)?),
        None => None,
    };
    Ok((w, v))
}

/// Eigenvalues `[.., n]` and, if `vectors`, eigenvectors `[.., n, n]` (complex) of `[.., n, n]`.
fn eig(
    c: &mut LowerCtx,
    what: &str,
    x: ValueId,
    vectors: bool,
) -> Result<(ValueId, Option<ValueId>)> {
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    if r < 2 {
        bail!("{what}: The input tensor A must have at least 2 dimensions.");
    }
    let d = c.g.dtype(x);
    if !matches!(d, DType::F32 | DType::F64 | DType::C64 | DType::C128) {
        bail!("{what}: Expected a floating point or complex tensor as input. Got {d}");
    }
    check_square_shape(c, what, x)?;
    let g = &mut *c.g;
    let cd = if d.is_complex() { d } else { d.to_complex() };
    let n = shape[r - 1];
    let batch = &shape[..r - 2];
    let bn: i64 = batch.iter().product();
    let mut ws = batch.to_vec();
    ws.push(n);
    if bn == 0 || n == 0 {
        let w = g.constant(ConstVal::Int(0), cd, &ws);
        let v = vectors.then(|| g.constant(ConstVal::Int(0), cd, &shape));
        return Ok((w, v));
    }
    let a = g.convert(x, cd);
    let a = g.reshape(a, &[bn, n, n])?;
    let (t, q) = schur(g, a)?;
    let rows = g.iota(DType::I64, &[bn, n, n], 1)?;
    let cols = g.iota(DType::I64, &[bn, n, n], 2)?;
    let dm = g.compare(CmpDir::Eq, rows, cols)?;
    let zt = g.full_like(t, 0.0, cd);
    let w = g.select(dm, t, zt)?;
    let w = g.reduce(R::Sum, w, &[2])?;
    let v = if vectors {
        let xt = triangular_vectors(g, t)?;
        let v = mm(g, q, xt)?;
        Some(normalize(g, v)?)
    } else {
        None
    };
    let (w, v) = if d.is_complex() {
        (w, v)
    } else {
        pair_order(g, w, v)?
    };
    let w = g.reshape(w, &ws)?;
    let v = match v {
        Some(v) => Some(g.reshape(v, &shape)?),
        None => None,
    };
    Ok((w, v))
}

/// `linalg_eig(A)` → (eigenvalues, eigenvectors).
fn linalg_eig(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let (w, v) = eig(c, "linalg.eig", x, true)?;
    Ok(vec![w, v.expect("eigenvectors")])
}

/// `_linalg_eigvals(A)` → eigenvalues.
fn linalg_eigvals(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let (w, _) = eig(c, "linalg.eigvals", x, false)?;
    Ok(vec![w])
}

pub fn register(r: &mut Registry) {
    r.add(&["linalg_eig", "linalg_eig.out"], linalg_eig);
    r.add(&["_linalg_eigvals"], linalg_eigvals);
}
