//! LDL^T with Bunch-Kaufman pivoting, as LAPACK's unblocked `dsytf2` (lower)
//! computes it (what `sytrf` runs for matrices up to its block size), and
//! the matching solve (`dsytrs`): `linalg_ldl_factor_ex`, `linalg_ldl_solve`.
//!
//! The pivot choice depends on the values and a step takes one or two
//! columns, so every matrix of a batch has its own column `k` (`[..]`); one
//! while loop advances all of them by masks of `k`, finished ones unchanged.
//! The working matrix is kept symmetric (its lower triangle mirrored), so the
//! trailing block's rows and columns are read and swapped alike; operations
//! follow LAPACK's order (reciprocal pivots, `a + x * (-d * y)`) so LD and the
//! pivots match the CPU's.

use crate::operands::Out;
use crate::registry::{Args, Check, CheckKind, LowerCtx, Registry};
use crate::solve::{broadcast_batch, check_square};
use crate::svd::{check_matrices, mt};
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId,
};

/// Broadcasts the per-matrix `x` (`[..]`, batch rank `nb`) to `shape`.
fn per(g: &mut Graph, x: ValueId, shape: &[i64]) -> Result<ValueId> {
    let nb = g.rank(x);
    Ok(g.broadcast_in_dim(x, shape, &(0..nb as i64).collect::<Vec<_>>())?)
}

/// `iota(axis) dir idx` over `shape`, `idx` per matrix.
fn cmp_at(g: &mut Graph, shape: &[i64], axis: usize, idx: ValueId, dir: CmpDir) -> Result<ValueId> {
    let io = g.iota(DType::I64, shape, axis as i64)?;
    let ib = per(g, idx, shape)?;
    Ok(g.compare(dir, io, ib)?)
}

/// Entry `idx` (per matrix) of `x` along `axis`, which is dropped.
fn pick(g: &mut Graph, x: ValueId, axis: usize, idx: ValueId) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let m = cmp_at(g, &shape, axis, idx, CmpDir::Eq)?;
    let zero = g.full_like(x, 0.0, g.dtype(x));
    let y = g.select(m, x, zero)?;
    Ok(g.reduce(R::Sum, y, &[axis as i64])?)
}

/// `v` (`[.., n]`) as every row (`axis = nb`) or column (`nb + 1`) of `[.., n, c]`.
fn spread(g: &mut Graph, v: ValueId, shape: &[i64], keep: usize) -> Result<ValueId> {
    let nb = shape.len() - 2;
    let mut dims: Vec<i64> = (0..nb as i64).collect();
    dims.push(keep as i64);
    Ok(g.broadcast_in_dim(v, shape, &dims)?)
}

fn and(g: &mut Graph, a: ValueId, b: ValueId) -> Result<ValueId> {
    Ok(g.binary(B::And, a, b)?)
}

/// Swaps rows `a` and `b` of `x` (`[.., n, c]`) where `cols` (a mask of `x`'s shape) holds.
fn swap_rows(
    g: &mut Graph,
    x: ValueId,
    a: ValueId,
    b: ValueId,
    cols: Option<ValueId>,
) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let nb = shape.len() - 2;
    let (ra, rb) = (pick(g, x, nb, a)?, pick(g, x, nb, b)?);
    let (ra, rb) = (
        spread(g, ra, &shape, nb + 1)?,
        spread(g, rb, &shape, nb + 1)?,
    );
    let mut at_a = cmp_at(g, &shape, nb, a, CmpDir::Eq)?;
    let mut at_b = cmp_at(g, &shape, nb, b, CmpDir::Eq)?;
    if let Some(m) = cols {
        at_a = and(g, at_a, m)?;
        at_b = and(g, at_b, m)?;
    }
    let y = g.select(at_b, ra, x)?;
    Ok(g.select(at_a, rb, y)?)
}

/// Swaps indices `a` and `b` of the symmetric trailing block (rows and columns >= `k`).
fn sym_swap(g: &mut Graph, m: ValueId, k: ValueId, a: ValueId, b: ValueId) -> Result<ValueId> {
    let shape = g.shape(m).to_vec();
    let nb = shape.len() - 2;
    let cols = cmp_at(g, &shape, nb + 1, k, CmpDir::Ge)?;
    let m = swap_rows(g, m, a, b, Some(cols))?;
    let t = mt(g, m)?;
    let t = swap_rows(g, t, a, b, Some(cols))?;
    mt(g, t)
}

/// The lower triangle mirrored into the upper one.
fn mirror(g: &mut Graph, m: ValueId) -> Result<ValueId> {
    let shape = g.shape(m).to_vec();
    let nb = shape.len() - 2;
    let i = g.iota(DType::I64, &shape, nb as i64)?;
    let j = g.iota(DType::I64, &shape, nb as i64 + 1)?;
    let lower = g.compare(CmpDir::Ge, i, j)?;
    let t = mt(g, m)?;
    Ok(g.select(lower, m, t)?)
}

/// `m + u v^T` with `u`, `v` `[.., n]` (LAPACK's `a + x * y`, y already scaled).
fn plus_outer(g: &mut Graph, m: ValueId, u: ValueId, v: ValueId) -> Result<ValueId> {
    let shape = g.shape(m).to_vec();
    let nb = shape.len() - 2;
    let ub = spread(g, u, &shape, nb)?;
    let vb = spread(g, v, &shape, nb + 1)?;
    let p = g.binary(B::Mul, ub, vb)?;
    Ok(g.binary(B::Add, m, p)?)
}

/// The masked vector `x` where `keep`, else 0.
fn only(g: &mut Graph, keep: ValueId, x: ValueId) -> Result<ValueId> {
    let zero = g.full_like(x, 0.0, g.dtype(x));
    Ok(g.select(keep, x, zero)?)
}

/// `M[i, col] = v[i]` for rows where `rows` holds.
fn put_col(g: &mut Graph, m: ValueId, col: ValueId, rows: ValueId, v: ValueId) -> Result<ValueId> {
    let shape = g.shape(m).to_vec();
    let nb = shape.len() - 2;
    let at = cmp_at(g, &shape, nb + 1, col, CmpDir::Eq)?;
    let rb = spread(g, rows, &shape, nb)?;
    let at = and(g, at, rb)?;
    let vb = spread(g, v, &shape, nb)?;
    Ok(g.select(at, vb, m)?)
}

/// A 1x1 pivot at `k`: `dsyr` on the trailing block, then the column scaled by `1/d`.
fn update1(g: &mut Graph, m: ValueId, k: ValueId) -> Result<ValueId> {
    let nb = g.rank(m) - 2;
    let col = pick(g, m, nb + 1, k)?;
    let vs = g.shape(col).to_vec();
    let d = pick(g, col, nb, k)?;
    let one = g.full_like(d, 1.0, g.dtype(d));
    let d11 = g.binary(B::Div, one, d)?;
    let below = cmp_at(g, &vs, nb, k, CmpDir::Gt)?;
    let x = only(g, below, col)?;
    let nd = g.unary(U::Neg, d11)?;
    let nd = per(g, nd, &vs)?;
    let temp = g.binary(B::Mul, nd, x)?;
    let upd = plus_outer(g, m, x, temp)?;
    let shape = g.shape(m).to_vec();
    let r = cmp_at(g, &shape, nb, k, CmpDir::Gt)?;
    let c = cmp_at(g, &shape, nb + 1, k, CmpDir::Gt)?;
    let trail = and(g, r, c)?;
    let m = g.select(trail, upd, m)?;
    let db = per(g, d11, &vs)?;
    let l = g.binary(B::Mul, col, db)?;
    put_col(g, m, k, below, l)
}

/// A 2x2 pivot at (k, k+1): LAPACK's explicit update of the trailing block.
fn update2(g: &mut Graph, m: ValueId, k: ValueId) -> Result<ValueId> {
    let nb = g.rank(m) - 2;
    let k1 = g.binary_const(B::Add, k, 1.0)?;
    let (a, b) = (pick(g, m, nb + 1, k)?, pick(g, m, nb + 1, k1)?);
    let vs = g.shape(a).to_vec();
    let d21 = pick(g, a, nb, k1)?;
    let b11 = pick(g, b, nb, k1)?;
    let a00 = pick(g, a, nb, k)?;
    let d11 = g.binary(B::Div, b11, d21)?;
    let d22 = g.binary(B::Div, a00, d21)?;
    let p = g.binary(B::Mul, d11, d22)?;
    let p = g.binary_const(B::Sub, p, 1.0)?;
    let one = g.full_like(p, 1.0, g.dtype(p));
    let t = g.binary(B::Div, one, p)?;
    let d21 = g.binary(B::Div, t, d21)?;
    let (d11, d22, d21) = (per(g, d11, &vs)?, per(g, d22, &vs)?, per(g, d21, &vs)?);
    let lin = |g: &mut Graph, s: ValueId, x: ValueId, y: ValueId| -> Result<ValueId> {
        let sx = g.binary(B::Mul, s, x)?;
        let d = g.binary(B::Sub, sx, y)?;
        Ok(g.binary(B::Mul, d21, d)?)
    };
    let wk = lin(g, d11, a, b)?;
    let wk1 = lin(g, d22, b, a)?;
    let rest = cmp_at(g, &vs, nb, k1, CmpDir::Gt)?;
    let (wk, wk1) = (only(g, rest, wk)?, only(g, rest, wk1)?);
    let (na, nbv) = (g.unary(U::Neg, a)?, g.unary(U::Neg, b)?);
    let (na, nbv) = (only(g, rest, na)?, only(g, rest, nbv)?);
    let upd = plus_outer(g, m, na, wk)?;
    let upd = plus_outer(g, upd, nbv, wk1)?;
    let shape = g.shape(m).to_vec();
    let r = cmp_at(g, &shape, nb, k1, CmpDir::Gt)?;
    let c = cmp_at(g, &shape, nb + 1, k1, CmpDir::Gt)?;
    let trail = and(g, r, c)?;
    let m = g.select(trail, upd, m)?;
    let m = put_col(g, m, k, rest, wk)?;
    put_col(g, m, k1, rest, wk1)
}

/// One Bunch-Kaufman step for every unfinished matrix: state (k, M, pivots, info).
fn factor_step(g: &mut Graph, n: i64, s: &[ValueId]) -> Result<Vec<ValueId>> {
    let (k0, m0, piv0, info0) = (s[0], s[1], s[2], s[3]);
    let nb = g.rank(m0) - 2;
    let dt = g.dtype(m0);
    let alpha = if dt == DType::F64 {
        (1.0 + 17f64.sqrt()) / 8.0
    } else {
        ((1.0f32 + 17f32.sqrt()) / 8.0f32) as f64
    };
    let last = g.full_like(k0, (n - 1) as f64, DType::I64);
    let lim = g.full_like(k0, n as f64, DType::I64);
    let active = g.compare(CmpDir::Lt, k0, lim)?;
    let k = g.binary(B::Min, k0, last)?;
    let col = pick(g, m0, nb + 1, k)?;
    let vs = g.shape(col).to_vec();
    let ac = g.unary(U::Abs, col)?;
    let absakk = pick(g, ac, nb, k)?;
    let below = cmp_at(g, &vs, nb, k, CmpDir::Gt)?;
    let minus = g.full_like(ac, -1.0, dt);
    let cand = g.select(below, ac, minus)?;
    let imax = g.arg_reduce(true, cand, nb as i64)?;
    let colmax = g.reduce(R::Max, cand, &[nb as i64])?;
    let zero = g.full_like(colmax, 0.0, dt);
    let colmax = g.binary(B::Max, colmax, zero)?;
    let row = pick(g, m0, nb, imax)?;
    let ar = g.unary(U::Abs, row)?;
    let ge = cmp_at(g, &vs, nb, k, CmpDir::Ge)?;
    let ne = cmp_at(g, &vs, nb, imax, CmpDir::Ne)?;
    let rm = and(g, ge, ne)?;
    let rcand = g.select(rm, ar, minus)?;
    let rowmax = g.reduce(R::Max, rcand, &[nb as i64])?;
    let aimax = pick(g, ar, nb, imax)?;
    // The decisions, in dsytf2's order.
    let big = g.binary(B::Max, absakk, colmax)?;
    let nan = g.compare(CmpDir::Ne, absakk, absakk)?;
    let none = g.compare(CmpDir::Eq, big, zero)?;
    let none = g.binary(B::Or, none, nan)?;
    let ac_ = g.binary_const(B::Mul, colmax, alpha)?;
    let c1 = g.compare(CmpDir::Ge, absakk, ac_)?;
    let ratio = g.binary(B::Div, colmax, rowmax)?;
    let t2 = g.binary(B::Mul, ac_, ratio)?;
    let c2 = g.compare(CmpDir::Ge, absakk, t2)?;
    let ar_ = g.binary_const(B::Mul, rowmax, alpha)?;
    let c3 = g.compare(CmpDir::Ge, aimax, ar_)?;
    let stay = g.binary(B::Or, none, c1)?;
    let stay = g.binary(B::Or, stay, c2)?;
    let kp = g.select(stay, k, imax)?;
    let one_step = g.binary(B::Or, stay, c3)?;
    let two = g.unary(U::Not, one_step)?;
    let two_i = g.convert(two, DType::I64);
    let kk = g.binary(B::Add, k, two_i)?;
    let m = sym_swap(g, m0, k, kk, kp)?;
    let m1 = update1(g, m, k)?;
    let m2 = update2(g, m, k)?;
    let shape = g.shape(m).to_vec();
    let twob = per(g, two, &shape)?;
    let upd = g.select(twob, m2, m1)?;
    let noneb = per(g, none, &shape)?;
    let upd = g.select(noneb, m, upd)?;
    let upd = mirror(g, upd)?;
    let actb = per(g, active, &shape)?;
    let m = g.select(actb, upd, m0)?;
    // Pivots: kp + 1, or -(kp + 1) on both columns of a 2x2 block.
    let p1 = g.binary_const(B::Add, kp, 1.0)?;
    let pn = g.unary(U::Neg, p1)?;
    let pv = g.select(two, pn, p1)?;
    let at_k = cmp_at(g, &vs, nb, k, CmpDir::Eq)?;
    let at_k1 = cmp_at(g, &vs, nb, kk, CmpDir::Eq)?;
    let at = g.binary(B::Or, at_k, at_k1)?;
    let actv = per(g, active, &vs)?;
    let at = and(g, at, actv)?;
    let pvb = per(g, pv, &vs)?;
    let piv = g.select(at, pvb, piv0)?;
    let z = g.full_like(info0, 0.0, DType::I64);
    let fresh = g.compare(CmpDir::Eq, info0, z)?;
    let set = and(g, fresh, none)?;
    let set = and(g, set, active)?;
    let k1 = g.binary_const(B::Add, k, 1.0)?;
    let info = g.select(set, k1, info0)?;
    let next = g.binary(B::Add, k1, two_i)?;
    let next = g.select(active, next, k0)?;
    Ok(vec![next, m, piv, info])
}

/// Runs `step` while any matrix's `k` (state 0) satisfies `dir limit`.
fn per_matrix_loop(
    g: &mut Graph,
    init: &[ValueId],
    dir: CmpDir,
    limit: i64,
    step: impl FnOnce(&mut Graph, &[ValueId]) -> Result<Vec<ValueId>>,
) -> Result<Vec<ValueId>> {
    g.while_loop(
        init,
        |g, x| -> Result<ValueId> {
            let l = g.full_like(x[0], limit as f64, DType::I64);
            let open = g.compare(dir, x[0], l)?;
            let n = g.ty(open).numel();
            let open = g.reshape(open, &[n])?;
            Ok(g.reduce(R::Or, open, &[0])?)
        },
        |g, x| step(g, x),
    )
}

/// `linalg_ldl_factor_ex(A, *, hermitian=False, check_errors=False)` → (LD, pivots, info).
fn ldl_factor_ex(c: &mut LowerCtx, a: &Args) -> Out {
    let what = "torch.linalg.ldl_factor_ex";
    let x = a.t(0)?;
    check_matrices(c.g, what, x)?;
    let n = check_square(c, what, x)?;
    let check = a.bool_or(2, false)?;
    let shape = c.g.shape(x).to_vec();
    let batch = shape[..shape.len() - 2].to_vec();
    let mut ps = batch.clone();
    ps.push(n);
    let g = &mut *c.g;
    let info0 = g.constant(ConstVal::Int(0), DType::I64, &batch);
    if g.ty(x).numel() == 0 {
        let piv = g.constant(ConstVal::Int(0), DType::I32, &ps);
        let info = g.convert(info0, DType::I32);
        return Ok(vec![x, piv, info]);
    }
    let m = mirror(g, x)?;
    let piv0 = g.constant(ConstVal::Int(0), DType::I64, &ps);
    let out = per_matrix_loop(g, &[info0, m, piv0, info0], CmpDir::Lt, n, |g, s| {
        factor_step(g, n, s)
    })?;
    let ld = crate::solve::tri(c, out[1], true)?;
    let g = &mut *c.g;
    let piv = g.convert(out[2], DType::I32);
    let info = g.convert(out[3], DType::I32);
    if check && !batch.contains(&0) {
        let z = g.full_like(out[3], 0.0, DType::I64);
        let ok = g.compare(CmpDir::Eq, out[3], z)?;
        let n = g.ty(ok).numel();
        let ok = g.reshape(ok, &[n])?;
        let all = g.reduce(R::And, ok, &[0])?;
        let flat = g.reshape(out[3], &[n])?;
        let value = g.reduce(R::Max, flat, &[0])?;
        c.checks.push(Check {
            ok: all,
            value,
            kind: CheckKind::Runtime,
            message: format!("{what}: The factorization could not be completed because the input is not invertible (the {{}}-th diagonal block of D is zero)"),
        });
    }
    Ok(vec![ld, piv, info])
}

/// Forward step of `dsytrs`: `L D Y = P B` one (or two) rows at `k`.
fn solve_fwd(
    g: &mut Graph,
    n: i64,
    ld: ValueId,
    piv: ValueId,
    s: &[ValueId],
) -> Result<Vec<ValueId>> {
    let (k0, x0) = (s[0], s[1]);
    let nb = g.rank(x0) - 2;
    let dt = g.dtype(x0);
    let lim = g.full_like(k0, n as f64, DType::I64);
    let active = g.compare(CmpDir::Lt, k0, lim)?;
    let last = g.full_like(k0, (n - 1) as f64, DType::I64);
    let k = g.binary(B::Min, k0, last)?;
    let p = pick(g, piv, nb, k)?;
    let zero_i = g.full_like(p, 0.0, DType::I64);
    let two = g.compare(CmpDir::Lt, p, zero_i)?;
    let two_i = g.convert(two, DType::I64);
    let kk = g.binary(B::Add, k, two_i)?;
    let kp = g.unary(U::Abs, p)?;
    let kp = g.binary_const(B::Sub, kp, 1.0)?;
    let x = swap_rows(g, x0, kk, kp, None)?;
    let k1 = g.binary_const(B::Add, k, 1.0)?;
    let (a, b) = (pick(g, ld, nb + 1, k)?, pick(g, ld, nb + 1, k1)?);
    let vs = g.shape(a).to_vec();
    let (xk, xk1) = (pick(g, x, nb, k)?, pick(g, x, nb, k1)?);
    let (nxk, nxk1) = (g.unary(U::Neg, xk)?, g.unary(U::Neg, xk1)?);
    // 1x1: rows below k minus L[:, k] x_k, then x_k / d.
    let below = cmp_at(g, &vs, nb, k, CmpDir::Gt)?;
    let l = only(g, below, a)?;
    let y1 = plus_outer(g, x, l, nxk)?;
    let d = pick(g, a, nb, k)?;
    let one = g.full_like(d, 1.0, dt);
    let rd = g.binary(B::Div, one, d)?;
    let rs = g.shape(xk).to_vec();
    let rdb = per(g, rd, &rs)?;
    let yk = g.binary(B::Mul, xk, rdb)?;
    let shape = g.shape(x).to_vec();
    let y1 = put_rows(g, y1, &[(k, yk)], &shape)?;
    // 2x2: rows below k+1 minus both columns, then the 2x2 block solved.
    let below2 = cmp_at(g, &vs, nb, k1, CmpDir::Gt)?;
    let (l0, l1) = (only(g, below2, a)?, only(g, below2, b)?);
    let y2 = plus_outer(g, x, l0, nxk)?;
    let y2 = plus_outer(g, y2, l1, nxk1)?;
    let akm1k = pick(g, a, nb, k1)?;
    let a00 = pick(g, a, nb, k)?;
    let b11 = pick(g, b, nb, k1)?;
    let akm1 = g.binary(B::Div, a00, akm1k)?;
    let ak = g.binary(B::Div, b11, akm1k)?;
    let den = g.binary(B::Mul, akm1, ak)?;
    let den = g.binary_const(B::Sub, den, 1.0)?;
    let (akm1k, akm1, ak, den) = (
        per(g, akm1k, &rs)?,
        per(g, akm1, &rs)?,
        per(g, ak, &rs)?,
        per(g, den, &rs)?,
    );
    let bkm1 = g.binary(B::Div, xk, akm1k)?;
    let bk = g.binary(B::Div, xk1, akm1k)?;
    let comb = |g: &mut Graph, s: ValueId, u: ValueId, v: ValueId| -> Result<ValueId> {
        let su = g.binary(B::Mul, s, u)?;
        let d = g.binary(B::Sub, su, v)?;
        Ok(g.binary(B::Div, d, den)?)
    };
    let yk = comb(g, ak, bkm1, bk)?;
    let yk1 = comb(g, akm1, bk, bkm1)?;
    let y2 = put_rows(g, y2, &[(k, yk), (k1, yk1)], &shape)?;
    let twob = per(g, two, &shape)?;
    let y = g.select(twob, y2, y1)?;
    let actb = per(g, active, &shape)?;
    let y = g.select(actb, y, x0)?;
    let next = g.binary(B::Add, k1, two_i)?;
    let next = g.select(active, next, k0)?;
    Ok(vec![next, y])
}

/// Rows `idx` of `x` replaced by the given `[.., c]` rows.
fn put_rows(
    g: &mut Graph,
    x: ValueId,
    rows: &[(ValueId, ValueId)],
    shape: &[i64],
) -> Result<ValueId> {
    let nb = shape.len() - 2;
    let mut x = x;
    for &(i, r) in rows {
        let at = cmp_at(g, shape, nb, i, CmpDir::Eq)?;
        let rb = spread(g, r, shape, nb + 1)?;
        x = g.select(at, rb, x)?;
    }
    Ok(x)
}

/// Backward step of `dsytrs`: `L^T X = Y` at `k` (a 2x2 block ends at `k`), then the interchange.
fn solve_bwd(g: &mut Graph, ld: ValueId, piv: ValueId, s: &[ValueId]) -> Result<Vec<ValueId>> {
    let (k0, x0) = (s[0], s[1]);
    let nb = g.rank(x0) - 2;
    let zero_k = g.full_like(k0, 0.0, DType::I64);
    let active = g.compare(CmpDir::Ge, k0, zero_k)?;
    let k = g.binary(B::Max, k0, zero_k)?;
    let p = pick(g, piv, nb, k)?;
    let z = g.full_like(p, 0.0, DType::I64);
    let two = g.compare(CmpDir::Lt, p, z)?;
    let two_i = g.convert(two, DType::I64);
    let kp = g.unary(U::Abs, p)?;
    let kp = g.binary_const(B::Sub, kp, 1.0)?;
    let km1 = g.binary_const(B::Sub, k, 1.0)?;
    let (a, b) = (pick(g, ld, nb + 1, k)?, pick(g, ld, nb + 1, km1)?);
    let vs = g.shape(a).to_vec();
    let below = cmp_at(g, &vs, nb, k, CmpDir::Gt)?;
    let (a, b) = (only(g, below, a)?, only(g, below, b)?);
    let shape = g.shape(x0).to_vec();
    // x_k -= L[>k, k]^T x[>k] (and x_{k-1} with column k-1 for a 2x2 block).
    let dot = |g: &mut Graph, l: ValueId| -> Result<ValueId> {
        let lb = spread(g, l, &shape, nb)?;
        let p = g.binary(B::Mul, lb, x0)?;
        Ok(g.reduce(R::Sum, p, &[nb as i64])?)
    };
    let (ta, tb) = (dot(g, a)?, dot(g, b)?);
    let (xk, xkm1) = (pick(g, x0, nb, k)?, pick(g, x0, nb, km1)?);
    let yk = g.binary(B::Sub, xk, ta)?;
    let ykm1 = g.binary(B::Sub, xkm1, tb)?;
    let y1 = put_rows(g, x0, &[(k, yk)], &shape)?;
    let y2 = put_rows(g, x0, &[(k, yk), (km1, ykm1)], &shape)?;
    let twob = per(g, two, &shape)?;
    let y = g.select(twob, y2, y1)?;
    let y = swap_rows(g, y, k, kp, None)?;
    let actb = per(g, active, &shape)?;
    let y = g.select(actb, y, x0)?;
    let next = g.binary(B::Sub, km1, two_i)?;
    let next = g.select(active, next, k0)?;
    Ok(vec![next, y])
}

/// `linalg_ldl_solve(LD, pivots, B, *, hermitian=False)`.
fn ldl_solve(c: &mut LowerCtx, a: &Args) -> Out {
    let what = "torch.linalg.ldl_solve";
    let (ld, piv, b) = (a.t(0)?, a.t(1)?, a.t(2)?);
    check_matrices(c.g, what, ld)?;
    let n = check_square(c, what, ld)?;
    c.require_index_dtype(piv, what)?;
    if c.g.dtype(b) != c.g.dtype(ld) {
        bail!("{what}: Expected LD and B to have the same dtype, but got LD of type {} and B of type {}", c.g.dtype(ld), c.g.dtype(b));
    }
    let (sl, sp) = (c.g.shape(ld).to_vec(), c.g.shape(piv).to_vec());
    if sp.len() + 1 != sl.len() || sp[..] != sl[..sl.len() - 1] {
        bail!(
            "{what}: expected pivots of shape {:?}, got {:?}",
            &sl[..sl.len() - 1],
            sp
        );
    }
    if c.g.rank(b) < 2 || c.g.shape(b)[c.g.rank(b) - 2] != n {
        bail!(
            "{what}: incompatible shapes of LD and B ({} and {})",
            c.g.ty(ld),
            c.g.ty(b)
        );
    }
    // Pivots ride along as an extra column of LD through the batch broadcast.
    let g = &mut *c.g;
    let pf = g.convert(piv, g.dtype(ld));
    let r = sl.len();
    let pc = g.unsqueeze(pf, r - 1)?;
    let lp = g.concatenate(&[ld, pc], r as i64 - 1)?;
    let (lp, b) = broadcast_batch(c, lp, b)?;
    let g = &mut *c.g;
    if g.ty(b).numel() == 0 {
        return Ok(vec![b]);
    }
    let ld = g.slice_dim(lp, r - 1, 0, n)?;
    let pc = g.slice_dim(lp, r - 1, n, n + 1)?;
    let pc = g.squeeze_dims(pc, &[r - 1])?;
    let piv = g.convert(pc, DType::I64);
    let batch = g.shape(piv)[..r - 2].to_vec();
    let k0 = g.constant(ConstVal::Int(0), DType::I64, &batch);
    let fwd = per_matrix_loop(g, &[k0, b, ld, piv], CmpDir::Lt, n, |g, s| {
        let mut o = solve_fwd(g, n, s[2], s[3], s)?;
        o.extend([s[2], s[3]]);
        Ok(o)
    })?;
    let kn = g.constant(ConstVal::Int(n - 1), DType::I64, &batch);
    let bwd = per_matrix_loop(g, &[kn, fwd[1], ld, piv], CmpDir::Ge, 0, |g, s| {
        let mut o = solve_bwd(g, s[2], s[3], s)?;
        o.extend([s[2], s[3]]);
        Ok(o)
    })?;
    Ok(vec![bwd[1]])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["linalg_ldl_factor_ex", "linalg_ldl_factor_ex.out"],
        ldl_factor_ex,
    );
    r.add(&["linalg_ldl_solve", "linalg_ldl_solve.out"], ldl_solve);
}
