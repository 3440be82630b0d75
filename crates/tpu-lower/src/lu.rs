//! LU family: factorization with partial pivoting (unrolled over the static
//! matrix size, row swaps as one-hot updates so batches pivot independently),
//! and what is built on it: lu_factor, lu_solve, solve, inv, det, slogdet,
//! lu_unpack, lu. Pivots follow LAPACK: the first row of largest magnitude.

use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::solve::{broadcast_batch, check_square, check_square_shape, first_bad_diagonal, tri};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// One factorization: `lu` (in the compute dtype), the row permutation
/// `perm` (`(PA)[i] = A[perm[i]]`), LAPACK pivots and the permutation's sign.
struct Lu {
    lu: ValueId,
    perm: ValueId,
    pivots: ValueId,
    sign: ValueId,
}

/// `x[..., :, k]` (dim -1) or `x[..., k, :]` (dim -2), dropping that dim.
fn take(c: &mut LowerCtx, x: ValueId, dim_from_end: usize, k: i64) -> Result<ValueId> {
    let r = c.g.rank(x);
    let d = r - dim_from_end;
    let s = c.g.slice_dim(x, d, k, k + 1)?;
    Ok(c.g.squeeze_dims(s, &[d])?)
}

/// Outer product of `[.., n]` and `[.., m]` into `[.., n, m]`.
fn outer(c: &mut LowerCtx, u: ValueId, v: ValueId) -> Result<ValueId> {
    let r = c.g.rank(u);
    let uu = c.g.unsqueeze(u, r)?;
    let vv = c.g.unsqueeze(v, r - 1)?;
    let mut shape = c.g.shape(u).to_vec();
    shape.push(c.g.shape(v)[r - 1]);
    let uu = c.g.broadcast_to(uu, &shape)?;
    let vv = c.g.broadcast_to(vv, &shape)?;
    Ok(c.g.binary(B::Mul, uu, vv)?)
}

/// Swaps entries `k` and `p[...]` along the last dim of `v` (`[.., n]`, or rows of `[.., n, m]` when `rows`).
fn swap(c: &mut LowerCtx, v: ValueId, k: i64, p: ValueId, rows: bool) -> Result<ValueId> {
    let d = c.g.dtype(v);
    let r = c.g.rank(v);
    let n = c.g.shape(v)[if rows { r - 2 } else { r - 1 }];
    let mut ishape = c.g.shape(p).to_vec();
    ishape.push(n);
    let iota = c.g.iota(DType::I64, &ishape, ishape.len() as i64 - 1)?;
    let kk = c.g.full_like(iota, k as f64, DType::I64);
    let is_k = c.g.compare(CmpDir::Eq, iota, kk)?;
    let pp = c.g.unsqueeze(p, ishape.len() - 1)?;
    let pp = c.g.broadcast_to(pp, &ishape)?;
    let is_p = c.g.compare(CmpDir::Eq, iota, pp)?;
    let (ek, ep) = (c.g.convert(is_k, d), c.g.convert(is_p, d));
    if !rows {
        let vk = c.g.binary(B::Mul, ek, v)?;
        let vk = c.g.reduce(R::Sum, vk, &[r as i64 - 1])?;
        let vp = c.g.binary(B::Mul, ep, v)?;
        let vp = c.g.reduce(R::Sum, vp, &[r as i64 - 1])?;
        let delta = c.g.binary(B::Sub, vp, vk)?;
        let delta = c.g.unsqueeze(delta, r - 1)?;
        let delta = c.g.broadcast_to(delta, &ishape)?;
        let a = c.g.binary(B::Mul, ek, delta)?;
        let b = c.g.binary(B::Mul, ep, delta)?;
        let v = c.g.binary(B::Add, v, a)?;
        return Ok(c.g.binary(B::Sub, v, b)?);
    }
    let rowk = take(c, v, 2, k)?;
    let shape = c.g.shape(v).to_vec();
    let epm = c.g.unsqueeze(ep, r - 1)?;
    let epm = c.g.broadcast_to(epm, &shape)?;
    let sel = c.g.binary(B::Mul, epm, v)?;
    let rowp = c.g.reduce(R::Sum, sel, &[r as i64 - 2])?;
    let delta = c.g.binary(B::Sub, rowp, rowk)?;
    let a = outer(c, ek, delta)?;
    let b = outer(c, ep, delta)?;
    let v = c.g.binary(B::Add, v, a)?;
    Ok(c.g.binary(B::Sub, v, b)?)
}

/// LU with partial pivoting of `[.., m, n]` matrices (`square` requires m == n).
fn factor(c: &mut LowerCtx, a: ValueId, what: &str) -> Result<Lu> {
    factor_any(c, a, what, true, false)
}

/// As [`factor`]; `complex` also accepts complex matrices (linalg.solve only:
/// linalg_eig's backward solves with `V^H`).
fn factor_any(c: &mut LowerCtx, a: ValueId, what: &str, square: bool, complex: bool) -> Result<Lu> {
    if square && complex && c.g.dtype(a).is_complex() {
        check_square_shape(c, what, a)?;
    } else if square {
        check_square(c, what, a)?;
    } else if c.g.rank(a) < 2 || !c.g.dtype(a).is_float() {
        bail!(
            "{what}: expected a floating point tensor of matrices, got {}",
            c.g.ty(a)
        );
    }
    let acc = opmath(c.g.dtype(a));
    let mut m = c.g.convert(a, acc);
    let shape = c.g.shape(m).to_vec();
    let r = shape.len();
    let (rows_n, cols_n) = (shape[r - 2], shape[r - 1]);
    let batch = shape[..r - 2].to_vec();
    let mut vshape = batch.clone();
    vshape.push(rows_n);
    let mut cshape = batch.clone();
    cshape.push(cols_n);
    let mut perm = c.g.iota(DType::I64, &vshape, r as i64 - 2)?;
    let one = c.g.scalar(1.0, acc);
    let mut sign = c.g.broadcast_to(one, &batch)?;
    let mut pivots = Vec::new();
    let row_iota = c.g.iota(DType::I64, &vshape, r as i64 - 2)?;
    let col_iota = c.g.iota(DType::I64, &cshape, r as i64 - 2)?;
    let rows = c.g.iota(DType::I64, &shape, r as i64 - 2)?;
    let cols = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    for k in 0..rows_n.min(cols_n) {
        // Pivot: the first row >= k with the largest magnitude in column k.
        let col = take(c, m, 1, k)?;
        let mag = c.g.unary(U::Abs, col)?;
        let kk = c.g.full_like(row_iota, k as f64, DType::I64);
        let below = c.g.compare(CmpDir::Ge, row_iota, kk)?;
        let minus = c.g.full_like(mag, -1.0, c.g.dtype(mag));
        let mag = c.g.select(below, mag, minus)?;
        let p = c.g.arg_reduce(true, mag, r as i64 - 2)?;
        pivots.push(p);
        m = swap(c, m, k, p, true)?;
        perm = swap(c, perm, k, p, false)?;
        let kb = c.g.full_like(p, k as f64, DType::I64);
        let moved = c.g.compare(CmpDir::Ne, p, kb)?;
        let neg = c.g.unary(U::Neg, sign)?;
        sign = c.g.select(moved, neg, sign)?;
        // Eliminate below the pivot.
        let urow = take(c, m, 2, k)?;
        let pivot = take(c, urow, 1, k)?;
        // A zero pivot (column k is zero from row k down) leaves the column
        // as it is, as LAPACK does: no 0/0, and the zero stays on U's diagonal
        // for `pivot_info`.
        let no_pivot = c.g.full_like(pivot, 0.0, acc);
        let no_pivot = c.g.compare(CmpDir::Eq, pivot, no_pivot)?;
        let one = c.g.full_like(pivot, 1.0, acc);
        let pivot = c.g.select(no_pivot, one, pivot)?;
        let col = take(c, m, 1, k)?;
        let pv = c.g.unsqueeze(pivot, r - 2)?;
        let pv = c.g.broadcast_to(pv, &vshape)?;
        let l = c.g.binary(B::Div, col, pv)?;
        let zero_v = c.g.full_like(l, 0.0, acc);
        let after = c.g.compare(CmpDir::Gt, row_iota, kk)?;
        let l = c.g.select(after, l, zero_v)?;
        let kc = c.g.full_like(col_iota, k as f64, DType::I64);
        let right = c.g.compare(CmpDir::Gt, col_iota, kc)?;
        let zero_c = c.g.full_like(urow, 0.0, acc);
        let urow = c.g.select(right, urow, zero_c)?;
        let update = outer(c, l, urow)?;
        m = c.g.binary(B::Sub, m, update)?;
        // Store the multipliers in column k below the diagonal.
        let km = c.g.full_like(rows, k as f64, DType::I64);
        let in_col = c.g.compare(CmpDir::Eq, cols, km)?;
        let in_rows = c.g.compare(CmpDir::Gt, rows, km)?;
        let at = c.g.binary(B::And, in_col, in_rows)?;
        let lm = c.g.unsqueeze(l, r - 1)?;
        let lm = c.g.broadcast_to(lm, &shape)?;
        m = c.g.select(at, lm, m)?;
    }
    let piv: Vec<ValueId> = pivots
        .iter()
        .map(|&p| c.g.unsqueeze(p, r - 2))
        .collect::<tpu_graph::Result<_>>()?;
    let piv = if piv.is_empty() {
        let mut pshape = batch.clone();
        pshape.push(0);
        c.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &pshape)
    } else {
        c.g.concatenate(&piv, r as i64 - 2)?
    };
    let one = c.g.full_like(piv, 1.0, DType::I64);
    let piv = c.g.binary(B::Add, piv, one)?;
    let pivots = c.g.convert(piv, DType::I32);
    Ok(Lu {
        lu: m,
        perm,
        pivots,
        sign,
    })
}

/// The permutation matrix `P` with `(P @ x)[i] = x[perm[i]]`, in `d`.
fn perm_matrix(c: &mut LowerCtx, perm: ValueId, d: DType) -> Result<ValueId> {
    let mut shape = c.g.shape(perm).to_vec();
    let n = *shape.last().expect("vector");
    shape.push(n);
    let r = shape.len();
    let p = c.g.unsqueeze(perm, r - 1)?;
    let p = c.g.broadcast_to(p, &shape)?;
    let j = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    let eq = c.g.compare(CmpDir::Eq, p, j)?;
    Ok(c.g.convert(eq, d))
}

/// The permutation of `rows` rows given by LAPACK pivots (1-based, applied in order).
fn perm_from_pivots(c: &mut LowerCtx, pivots: ValueId, rows: i64) -> Result<ValueId> {
    let mut shape = c.g.shape(pivots).to_vec();
    let r = shape.len();
    let n = shape[r - 1];
    let piv = c.g.convert(pivots, DType::I64);
    shape[r - 1] = rows;
    let mut perm = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    for k in 0..n {
        let p = take(c, piv, 1, k)?;
        let one = c.g.full_like(p, 1.0, DType::I64);
        let p = c.g.binary(B::Sub, p, one)?;
        perm = swap(c, perm, k, p, false)?;
    }
    Ok(perm)
}

/// Solves `A X = B` (or `A^T X = B` when `adjoint`) from `P A = L U`.
fn lu_solve_left(
    c: &mut LowerCtx,
    lu: ValueId,
    perm: ValueId,
    b: ValueId,
    adjoint: bool,
) -> Result<ValueId> {
    let acc = c.g.dtype(lu);
    let pm = perm_matrix(c, perm, acc)?;
    let l = tri(c, lu, true)?;
    let u = tri(c, lu, false)?;
    if !adjoint {
        let pb = c.g.matmul_batched(pm, b)?;
        let y = c.g.triangular_solve(l, pb, true, true, true, false)?;
        return Ok(c.g.triangular_solve(u, y, true, false, false, false)?);
    }
    let z = c.g.triangular_solve(u, b, true, false, false, true)?;
    let w = c.g.triangular_solve(l, z, true, true, true, true)?;
    let r = c.g.rank(pm) as i64;
    let mut perm_t: Vec<i64> = (0..r).collect();
    perm_t.swap(r as usize - 1, r as usize - 2);
    let pt = c.g.transpose(pm, &perm_t)?;
    Ok(c.g.matmul_batched(pt, w)?)
}

fn transpose_last(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let r = c.g.rank(x);
    let mut p: Vec<i64> = (0..r as i64).collect();
    p.swap(r - 1, r - 2);
    Ok(c.g.transpose(x, &p)?)
}

/// `A X = B` (`left`) or `X A = B`, with optional adjoint, from a factorization.
fn lu_solve_any(
    c: &mut LowerCtx,
    lu: ValueId,
    perm: ValueId,
    b: ValueId,
    left: bool,
    adjoint: bool,
) -> Result<ValueId> {
    let acc = c.g.dtype(lu);
    let b = c.g.convert(b, acc);
    let (lu, b) = broadcast_batch(c, lu, b)?;
    let mut pshape = c.g.shape(lu).to_vec();
    pshape.pop();
    let perm = c.g.broadcast_to(perm, &pshape)?;
    if left {
        return lu_solve_left(c, lu, perm, b, adjoint);
    }
    // X A = B  <=>  A^T X^T = B^T.
    let bt = transpose_last(c, b)?;
    let xt = lu_solve_left(c, lu, perm, bt, !adjoint)?;
    transpose_last(c, xt)
}

/// LAPACK `getrf`'s info for the factor `lu`: its first zero pivot `U[i, i]`.
/// PyTorch raises `LinAlgError` from it (`linalg.inv`, `linalg.solve`).
fn pivot_info(c: &mut LowerCtx, lu: ValueId) -> Result<ValueId> {
    let zero = c.g.full_like(lu, 0.0, c.g.dtype(lu));
    let is_zero = c.g.compare(CmpDir::Eq, lu, zero)?;
    first_bad_diagonal(c, is_zero)
}

/// `linalg_lu_factor_ex(A, *, pivot, check_errors)` → (LU, pivots, info).
fn lu_factor_ex(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if !a.bool_or(1, true)? {
        bail!("linalg.lu_factor: LU without pivoting is not implemented on tpu");
    }
    let f = factor_any(c, x, "linalg.lu_factor", false, false)?;
    let lu = c.g.convert(f.lu, c.g.dtype(x));
    let info = pivot_info(c, f.lu)?;
    Ok(vec![lu, f.pivots, info])
}

/// `linalg_lu_solve(LU, pivots, B, *, left, adjoint)`.
fn lu_solve(c: &mut LowerCtx, a: &Args) -> Out {
    let (lu, piv, b) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let d = c.g.dtype(lu);
    let acc = opmath(d);
    let lu_acc = c.g.convert(lu, acc);
    let rows = c.g.shape(lu)[c.g.rank(lu) - 2];
    let perm = perm_from_pivots(c, piv, rows)?;
    let x = lu_solve_any(
        c,
        lu_acc,
        perm,
        b,
        a.bool_or(3, true)?,
        a.bool_or(4, false)?,
    )?;
    Ok(vec![c.g.convert(x, d)])
}

/// `_linalg_solve_ex(A, B, *, left, check_errors)` → (result, LU, pivots, info).
fn solve_ex(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, b) = (a.t(0)?, a.t(1)?);
    let left = a.bool_or(2, true)?;
    let d = c.g.dtype(x);
    let f = factor_any(c, x, "linalg.solve", true, true)?;
    // A batch of vectors when B has one dim less and matches A's rows.
    let (ra, rb) = (c.g.rank(x), c.g.rank(b));
    let vector = rb + 1 == ra && c.g.shape(b)[..] == c.g.shape(x)[..ra - 1];
    let r = if vector {
        // x A = b is A^T x = b for a vector.
        let bm = c.g.unsqueeze(b, rb)?;
        let r = lu_solve_any(c, f.lu, f.perm, bm, true, !left)?;
        c.g.squeeze_dims(r, &[rb])?
    } else {
        lu_solve_any(c, f.lu, f.perm, b, left, false)?
    };
    let info = pivot_info(c, f.lu)?;
    let lu = c.g.convert(f.lu, d);
    Ok(vec![c.g.convert(r, d), lu, f.pivots, info])
}

/// `linalg_inv_ex(A, *, check_errors)` → (inverse, info).
fn inv_ex(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let f = factor(c, x, "linalg.inv")?;
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    let i = c.g.iota(DType::I64, &shape, r as i64 - 2)?;
    let j = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    let eye = c.g.compare(CmpDir::Eq, i, j)?;
    let eye = c.g.convert(eye, opmath(d));
    let inv = lu_solve_left(c, f.lu, f.perm, eye, false)?;
    let info = pivot_info(c, f.lu)?;
    Ok(vec![c.g.convert(inv, d), info])
}

/// The diagonal of `[.., n, n]` as `[.., n]`.
fn diagonal(c: &mut LowerCtx, m: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(m).to_vec();
    let r = shape.len();
    let i = c.g.iota(DType::I64, &shape, r as i64 - 2)?;
    let j = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    let eq = c.g.compare(CmpDir::Eq, i, j)?;
    let zero = c.g.full_like(m, 0.0, c.g.dtype(m));
    let d = c.g.select(eq, m, zero)?;
    Ok(c.g.reduce(R::Sum, d, &[r as i64 - 1])?)
}

/// `_linalg_det(A)` → (det, LU, pivots).
fn det(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    // PyTorch factors A^T here (its LU is what the backward formula expects).
    let xt = transpose_last(c, x)?;
    let f = factor(c, xt, "linalg.det")?;
    let diag = diagonal(c, f.lu)?;
    let r = c.g.rank(diag) as i64;
    let prod = c.g.reduce(R::Prod, diag, &[r - 1])?;
    let det = c.g.binary(B::Mul, prod, f.sign)?;
    let lu = c.g.convert(f.lu, d);
    Ok(vec![c.g.convert(det, d), lu, f.pivots])
}

/// `_linalg_slogdet(A)` → (sign, logabsdet, LU, pivots).
fn slogdet(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let xt = transpose_last(c, x)?;
    let f = factor(c, xt, "linalg.slogdet")?;
    let diag = diagonal(c, f.lu)?;
    let r = c.g.rank(diag) as i64;
    let signs = c.g.unary(U::Sign, diag)?;
    let sign = c.g.reduce(R::Prod, signs, &[r - 1])?;
    let sign = c.g.binary(B::Mul, sign, f.sign)?;
    let mag = c.g.unary(U::Abs, diag)?;
    let logs = c.g.unary(U::Log, mag)?;
    let logabs = c.g.reduce(R::Sum, logs, &[r - 1])?;
    let lu = c.g.convert(f.lu, d);
    Ok(vec![
        c.g.convert(sign, d),
        c.g.convert(logabs, d),
        lu,
        f.pivots,
    ])
}

/// `P`, unit-lower `L` and upper `U` of a factorization, in `d`.
fn unpack(c: &mut LowerCtx, lu: ValueId, perm: ValueId, d: DType) -> Result<Vec<ValueId>> {
    let acc = c.g.dtype(lu);
    let pm = perm_matrix(c, perm, acc)?;
    let p = transpose_last(c, pm)?;
    let shape = c.g.shape(lu).to_vec();
    let r = shape.len();
    let i = c.g.iota(DType::I64, &shape, r as i64 - 2)?;
    let j = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    let strict_lower = c.g.compare(CmpDir::Gt, i, j)?;
    let diag = c.g.compare(CmpDir::Eq, i, j)?;
    let zero = c.g.full_like(lu, 0.0, acc);
    let one = c.g.full_like(lu, 1.0, acc);
    let l = c.g.select(strict_lower, lu, zero)?;
    let l = c.g.select(diag, one, l)?;
    let upper = c.g.compare(CmpDir::Le, i, j)?;
    let u = c.g.select(upper, lu, zero)?;
    // L is m x k and U is k x n, k = min(m, n).
    let k = shape[r - 2].min(shape[r - 1]);
    let l = c.g.slice_dim(l, r - 1, 0, k)?;
    let u = c.g.slice_dim(u, r - 2, 0, k)?;
    Ok(vec![
        c.g.convert(p, d),
        c.g.convert(l, d),
        c.g.convert(u, d),
    ])
}

/// `lu_unpack(LU_data, LU_pivots, unpack_data, unpack_pivots)` → (P, L, U).
fn lu_unpack(c: &mut LowerCtx, a: &Args) -> Out {
    let (lu, piv) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(lu);
    let lu_acc = c.g.convert(lu, opmath(d));
    let rows = c.g.shape(lu)[c.g.rank(lu) - 2];
    let perm = perm_from_pivots(c, piv, rows)?;
    unpack(c, lu_acc, perm, d)
}

/// `linalg_lu(A, *, pivot)` → (P, L, U).
fn linalg_lu(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if !a.bool_or(1, true)? {
        bail!("linalg.lu: LU without pivoting is not implemented on tpu");
    }
    let d = c.g.dtype(x);
    let f = factor_any(c, x, "linalg.lu", false, false)?;
    unpack(c, f.lu, f.perm, d)
}

pub fn register(r: &mut Registry) {
    r.add(
        &["linalg_lu_factor_ex", "linalg_lu_factor_ex.out"],
        lu_factor_ex,
    );
    r.add(&["linalg_lu_solve", "linalg_lu_solve.out"], lu_solve);
    r.add(&["_linalg_solve_ex", "_linalg_solve_ex.result"], solve_ex);
    r.add(&["linalg_inv_ex", "linalg_inv_ex.inverse"], inv_ex);
    r.add(&["_linalg_det", "_linalg_det.result"], det);
    r.add(&["_linalg_slogdet", "_linalg_slogdet.sign"], slogdet);
    r.add(&["lu_unpack", "lu_unpack.out"], lu_unpack);
    r.add(&["linalg_lu", "linalg_lu.out"], linalg_lu);
}
