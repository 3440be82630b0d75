//! Householder QR in LAPACK's compact form: `geqrf` (R on and above the
//! diagonal, the reflectors' vectors below it with an implicit 1, and their
//! `tau`), `linalg_householder_product` (orgqr: Q's first n columns) and
//! `ormqr` (Q or Q^T times a matrix, from either side). Each is one while
//! loop over the reflectors, with the reflector picked by masks of the loop
//! index, so the program does not grow with the matrix. Conventions of
//! LAPACK's `dlarfg`: `beta = -sign(alpha) ||x||`, `tau = (beta - alpha) /
//! beta`, and no reflection (`tau = 0`) when the part below the diagonal is
//! already zero.

use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::svd::check_matrices;
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId,
};

/// `x` with `i` (a scalar) broadcast to `x`'s shape along `dim`, compared to the iota.
fn at(g: &mut Graph, shape: &[i64], dim: usize, i: ValueId, dir: CmpDir) -> Result<ValueId> {
    let io = g.iota(DType::I64, shape, dim as i64)?;
    let ib = g.broadcast_to(i, shape)?;
    Ok(g.compare(dir, io, ib)?)
}

/// Entry `i` of `x` along `dim` (dropped): a masked sum.
fn pick(g: &mut Graph, x: ValueId, dim: usize, i: ValueId) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let m = at(g, &shape, dim, i, CmpDir::Eq)?;
    let zero = g.full_like(x, 0.0, g.dtype(x));
    let y = g.select(m, x, zero)?;
    Ok(g.reduce(R::Sum, y, &[dim as i64])?)
}

/// The `i`-th reflector of compact `a` (`[.., m, k]`) and `tau` (`[.., k]`):
/// `v` (`[.., m]`: 0 above row i, 1 at it, `a`'s column below) and `tau[i]`.
fn reflector(g: &mut Graph, a: ValueId, tau: ValueId, i: ValueId) -> Result<(ValueId, ValueId)> {
    let r = g.rank(a);
    let col = pick(g, a, r - 1, i)?;
    let vs = g.shape(col).to_vec();
    let one = g.full_like(col, 1.0, g.dtype(a));
    let zero = g.full_like(col, 0.0, g.dtype(a));
    let below = at(g, &vs, r - 2, i, CmpDir::Gt)?;
    let on = at(g, &vs, r - 2, i, CmpDir::Eq)?;
    let v = g.select(below, col, zero)?;
    let v = g.select(on, one, v)?;
    Ok((v, pick(g, tau, r - 2, i)?))
}

/// `[.., m]` times `[.., n]` into `[.., m, n]`.
fn outer(g: &mut Graph, u: ValueId, v: ValueId) -> Result<ValueId> {
    let r = g.rank(u);
    let mut s = g.shape(u).to_vec();
    s.push(g.shape(v)[r - 1]);
    let mut du: Vec<i64> = (0..r as i64).collect();
    let uu = g.broadcast_in_dim(u, &s, &du)?;
    du[r - 1] = r as i64;
    let vv = g.broadcast_in_dim(v, &s, &du)?;
    Ok(g.binary(B::Mul, uu, vv)?)
}

/// `H x` (`left`, `v` `[.., m]` for `x` `[.., m, n]`) or `x H` (`v` `[.., n]`),
/// `H = I - tau v v^T`; elementwise products and sums, as in `qr.rs`.
fn reflect(g: &mut Graph, x: ValueId, v: ValueId, tau: ValueId, left: bool) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let r = shape.len();
    let vd = if left { r - 2 } else { r - 1 };
    let mut dims: Vec<i64> = (0..r as i64 - 2).collect();
    dims.push(vd as i64);
    let vb = g.broadcast_in_dim(v, &shape, &dims)?;
    let p = g.binary(B::Mul, x, vb)?;
    // w = v^T x (left, [.., n]) or x v (right, [.., m]), then scaled by tau.
    let w = g.reduce(R::Sum, p, &[vd as i64])?;
    let ws = g.shape(w).to_vec();
    let tdims: Vec<i64> = (0..r as i64 - 2).collect();
    let tw = g.broadcast_in_dim(tau, &ws, &tdims)?;
    let w = g.binary(B::Mul, w, tw)?;
    let upd = if left {
        outer(g, v, w)?
    } else {
        outer(g, w, v)?
    };
    Ok(g.binary(B::Sub, x, upd)?)
}

/// `for i in 0..n` (or reversed) over carried `state`; `body(g, i, state)` returns the next state.
fn for_each(
    g: &mut Graph,
    n: i64,
    reverse: bool,
    state: &[ValueId],
    body: impl FnOnce(&mut Graph, ValueId, &[ValueId]) -> Result<Vec<ValueId>>,
) -> Result<Vec<ValueId>> {
    let start = g.constant(
        ConstVal::Int(if reverse { n - 1 } else { 0 }),
        DType::I64,
        &[],
    );
    let mut init = vec![start];
    init.extend(state);
    let out = g.while_loop(
        &init,
        |g, x| -> Result<ValueId> {
            let (dir, lim) = if reverse {
                (CmpDir::Ge, 0)
            } else {
                (CmpDir::Lt, n)
            };
            let l = g.constant(ConstVal::Int(lim), DType::I64, &[]);
            Ok(g.compare(dir, x[0], l)?)
        },
        |g, x| -> Result<Vec<ValueId>> {
            let next = g.binary_const(B::Add, x[0], if reverse { -1.0 } else { 1.0 })?;
            let mut out = vec![next];
            out.extend(body(g, x[0], &x[1..])?);
            Ok(out)
        },
    )?;
    Ok(out[1..].to_vec())
}

/// One `geqrf` step on column `k` of `a` (`[.., m, n]`), updating `tau` (`[.., K]`).
fn qr_step(g: &mut Graph, k: ValueId, a: ValueId, tau: ValueId) -> Result<Vec<ValueId>> {
    let shape = g.shape(a).to_vec();
    let r = shape.len();
    let d = g.dtype(a);
    let col = pick(g, a, r - 1, k)?;
    let vs = g.shape(col).to_vec();
    let on = at(g, &vs, r - 2, k, CmpDir::Eq)?;
    let below = at(g, &vs, r - 2, k, CmpDir::Gt)?;
    let zero_v = g.full_like(col, 0.0, d);
    let alpha = g.select(on, col, zero_v)?;
    let alpha = g.reduce(R::Sum, alpha, &[r as i64 - 2])?;
    let tail = g.select(below, col, zero_v)?;
    let t2 = g.binary(B::Mul, tail, tail)?;
    let xn2 = g.reduce(R::Sum, t2, &[r as i64 - 2])?;
    let xn = g.unary(U::Sqrt, xn2)?;
    let norm = crate::jacobi::hypot(g, alpha, xn)?;
    let zero = g.full_like(alpha, 0.0, d);
    let nonneg = g.compare(CmpDir::Ge, alpha, zero)?;
    let neg_norm = g.unary(U::Neg, norm)?;
    let beta = g.select(nonneg, neg_norm, norm)?;
    let refl = g.compare(CmpDir::Gt, xn2, zero)?;
    let ba = g.binary(B::Sub, beta, alpha)?;
    let t = g.binary(B::Div, ba, beta)?;
    let t = g.select(refl, t, zero)?;
    let one = g.full_like(alpha, 1.0, d);
    let ab = g.binary(B::Sub, alpha, beta)?;
    let sc = g.binary(B::Div, one, ab)?;
    let sc = g.select(refl, sc, zero)?;
    let sb = g.broadcast_in_dim(sc, &vs, &(0..r as i64 - 2).collect::<Vec<_>>())?;
    let vt = g.binary(B::Mul, tail, sb)?;
    let ones = g.full_like(col, 1.0, d);
    let v = g.select(on, ones, vt)?;
    // H applied to the columns right of k only.
    let right = at(g, &shape, r - 1, k, CmpDir::Gt)?;
    let zero_m = g.full_like(a, 0.0, d);
    let rest = g.select(right, a, zero_m)?;
    let upd = reflect(g, rest, v, t, true)?;
    let upd = g.binary(B::Sub, rest, upd)?;
    let a2 = g.binary(B::Sub, a, upd)?;
    // Column k: rows above kept, beta on the diagonal (alpha if no reflection), v below.
    let diag = g.select(refl, beta, alpha)?;
    let db = g.broadcast_in_dim(diag, &vs, &(0..r as i64 - 2).collect::<Vec<_>>())?;
    let newc = g.select(below, v, col)?;
    let newc = g.select(on, db, newc)?;
    let mut cd: Vec<i64> = (0..r as i64 - 2).collect();
    cd.push(r as i64 - 2);
    let cb = g.broadcast_in_dim(newc, &shape, &cd)?;
    let is_k = at(g, &shape, r - 1, k, CmpDir::Eq)?;
    let a2 = g.select(is_k, cb, a2)?;
    let ts = g.shape(tau).to_vec();
    let tk = at(g, &ts, r - 2, k, CmpDir::Eq)?;
    let tb = g.broadcast_in_dim(t, &ts, &(0..r as i64 - 2).collect::<Vec<_>>())?;
    let tau = g.select(tk, tb, tau)?;
    Ok(vec![a2, tau])
}

/// `geqrf(A)` → (a, tau).
fn geqrf(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    check_matrices(c.g, "geqrf", x)?;
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    let k = shape[r - 2].min(shape[r - 1]);
    let mut ts = shape[..r - 2].to_vec();
    ts.push(k);
    let tau = c.g.constant(ConstVal::Int(0), c.g.dtype(x), &ts);
    if c.g.ty(x).numel() == 0 {
        return Ok(vec![x, tau]);
    }
    let out = for_each(c.g, k, false, &[x, tau], |g, i, s| {
        qr_step(g, i, s[0], s[1])
    })?;
    Ok(out)
}

/// Checks compact `a` (`[.., m, n]`) against `tau` (`[.., k]`): same batch, `k <= n`.
fn check_compact(c: &LowerCtx, what: &str, a: ValueId, tau: ValueId) -> Result<i64> {
    check_matrices(c.g, what, a)?;
    let (sa, st) = (c.g.shape(a).to_vec(), c.g.shape(tau).to_vec());
    if st.len() + 1 != sa.len() {
        bail!("{what}: Expected tau to have one dimension less than input, but got tau.ndim equal to {} and input.ndim is equal to {}", st.len(), sa.len());
    }
    if st[..st.len() - 1] != sa[..sa.len() - 2] {
        bail!("{what}: Expected batch dimensions of tau to be equal to input.shape[:-2], got {:?} and {:?}", &st[..st.len() - 1], &sa[..sa.len() - 2]);
    }
    if c.g.dtype(tau) != c.g.dtype(a) {
        bail!(
            "{what}: tau dtype {} does not match input dtype {}",
            c.g.dtype(tau),
            c.g.dtype(a)
        );
    }
    Ok(st[st.len() - 1])
}

/// `linalg_householder_product(A, tau)`: the first n columns of `H_0 ... H_{k-1}`.
fn householder_product(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, tau) = (a.t(0)?, a.t(1)?);
    let what = "torch.linalg.householder_product";
    let k = check_compact(c, what, x, tau)?;
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    let (m, n) = (shape[r - 2], shape[r - 1]);
    if m < n {
        bail!("{what}: input.shape[-2] must be greater than or equal to input.shape[-1]");
    }
    if n < k {
        bail!("{what}: input.shape[-1] must be greater than or equal to tau.shape[-1]");
    }
    let q = crate::jacobi::eye(c.g, &shape, c.g.dtype(x))?;
    if k == 0 || c.g.ty(x).numel() == 0 {
        return Ok(vec![q]);
    }
    let out = for_each(c.g, k, true, &[x, tau, q], |g, i, s| {
        let (v, t) = reflector(g, s[0], s[1], i)?;
        Ok(vec![s[0], s[1], reflect(g, s[2], v, t, true)?])
    })?;
    Ok(vec![out[2]])
}

/// `ormqr(A, tau, C, left=True, transpose=False)`: `op(Q) C` or `C op(Q)`.
fn ormqr(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, tau, other) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let left = a.bool_or(3, true)?;
    let transpose = a.bool_or(4, false)?;
    let what = "torch.ormqr";
    let k = check_compact(c, what, x, tau)?;
    let (sa, so) = (c.g.shape(x).to_vec(), c.g.shape(other).to_vec());
    if so.len() != sa.len() {
        bail!("{what}: Expected other to have the same number of dimensions as input, but got other.ndim equal to {} and input.ndim is equal to {}", so.len(), sa.len());
    }
    let r = sa.len();
    if so[..r - 2] != sa[..r - 2] {
        bail!("{what}: Expected batch dimensions of other to be equal to input.shape[:-2], got {:?} and {:?}", &so[..r - 2], &sa[..r - 2]);
    }
    if c.g.dtype(other) != c.g.dtype(x) {
        bail!(
            "{what}: other dtype {} does not match input dtype {}",
            c.g.dtype(other),
            c.g.dtype(x)
        );
    }
    let dim = if left { r - 2 } else { r - 1 };
    if so[dim] != sa[r - 2] {
        bail!(
            "{what}: other.shape[{}] must be equal to input.shape[-2]",
            dim as i64 - r as i64
        );
    }
    if k > so[dim] || k > sa[r - 1] {
        bail!("{what}: tau.shape[-1] must be less than or equal to min(other.shape[{}], input.shape[-1])", dim as i64 - r as i64);
    }
    if k == 0 || c.g.ty(other).numel() == 0 {
        return Ok(vec![other]);
    }
    // Q = H_0 .. H_{k-1}: Q C applies H_{k-1} first, Q^T C and C Q apply H_0 first.
    let reverse = left != transpose;
    let out = for_each(c.g, k, reverse, &[x, tau, other], |g, i, s| {
        let (v, t) = reflector(g, s[0], s[1], i)?;
        Ok(vec![s[0], s[1], reflect(g, s[2], v, t, left)?])
    })?;
    Ok(vec![out[2]])
}

pub fn register(r: &mut Registry) {
    r.add(&["geqrf", "geqrf.a"], geqrf);
    r.add(
        &[
            "linalg_householder_product",
            "linalg_householder_product.out",
        ],
        householder_product,
    );
    r.add(&["ormqr", "ormqr.out"], ormqr);
}
