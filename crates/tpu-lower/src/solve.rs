//! Triangular solves and Cholesky: `linalg_solve_triangular`,
//! `triangular_solve`, `linalg_cholesky_ex`, `cholesky_solve` (and its
//! `_cholesky_solve_helper`), `cholesky_inverse`, on StableHLO's `cholesky`
//! and `triangular_solve`. Matrices are the last two dims; leading (batch)
//! dims broadcast between operands. Half inputs compute in f32.

use crate::operands::{broadcast_shapes, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, ReduceKind as R, UnaryKind as U, ValueId,
};

/// Requires `[.., n, n]` float matrices.
pub(crate) fn check_square(c: &LowerCtx, what: &str, a: ValueId) -> Result<i64> {
    let n = check_square_shape(c, what, a)?;
    if !c.g.dtype(a).is_float() {
        bail!(
            "{what}: expected a floating point tensor, got {}",
            c.g.dtype(a)
        );
    }
    Ok(n)
}

/// Requires `[.., n, n]` matrices (of any dtype); returns n.
pub(crate) fn check_square_shape(c: &LowerCtx, what: &str, a: ValueId) -> Result<i64> {
    let s = c.g.shape(a);
    let r = s.len();
    if r < 2 || s[r - 1] != s[r - 2] {
        bail!(
            "{what}: A must be batches of square matrices, but they are {} by {} matrices",
            s.get(r.wrapping_sub(2)).copied().unwrap_or(0),
            s.last().copied().unwrap_or(0)
        );
    }
    Ok(s[r - 1])
}

/// Broadcasts the batch dims of `a` and `b` (each `[.., r, c]`) against each other.
pub(crate) fn broadcast_batch(
    c: &mut LowerCtx,
    a: ValueId,
    b: ValueId,
) -> Result<(ValueId, ValueId)> {
    let (sa, sb) = (c.g.shape(a).to_vec(), c.g.shape(b).to_vec());
    if sb.len() < 2 {
        bail!(
            "linalg: the right-hand side must have at least 2 dimensions, got {}",
            c.g.ty(b)
        );
    }
    let batch = broadcast_shapes(&sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let mut ta = batch.clone();
    ta.extend(&sa[sa.len() - 2..]);
    let mut tb = batch;
    tb.extend(&sb[sb.len() - 2..]);
    Ok((c.g.broadcast_to(a, &ta)?, c.g.broadcast_to(b, &tb)?))
}

/// Zeroes the triangle that `lower` (or upper) excludes.
pub(crate) fn tri(c: &mut LowerCtx, a: ValueId, lower: bool) -> Result<ValueId> {
    let shape = c.g.shape(a).to_vec();
    let r = shape.len();
    let row = c.g.iota(DType::I64, &shape, (r - 2) as i64)?;
    let col = c.g.iota(DType::I64, &shape, (r - 1) as i64)?;
    let keep = if lower {
        c.g.compare(CmpDir::Le, col, row)?
    } else {
        c.g.compare(CmpDir::Ge, col, row)?
    };
    let zero = c.g.full_like(a, 0.0, c.g.dtype(a));
    Ok(c.g.select(keep, a, zero)?)
}

/// The common float dtype of two operands, and the dtype to compute in.
fn dtypes(c: &LowerCtx, what: &str, a: ValueId, b: ValueId) -> Result<(DType, DType)> {
    let (da, db) = (c.g.dtype(a), c.g.dtype(b));
    if da != db {
        bail!("{what}: Expected A and B to have the same dtype, but found A of type {da} and B of type {db} instead");
    }
    if !da.is_float() {
        bail!("{what}: expected a floating point tensor, got {da}");
    }
    Ok((da, opmath(da)))
}

/// Triangular solve with broadcasting, in the compute dtype; returns the
/// solution and the broadcast matrix.
#[allow(clippy::too_many_arguments)]
fn solve(
    c: &mut LowerCtx,
    what: &str,
    a: ValueId,
    b: ValueId,
    left: bool,
    lower: bool,
    unit: bool,
    transpose: bool,
) -> Result<(ValueId, ValueId)> {
    let n = check_square(c, what, a)?;
    let (d, acc) = dtypes(c, what, a, b)?;
    let (a, b) = broadcast_batch(c, a, b)?;
    let sb = c.g.shape(b).to_vec();
    let k = if left {
        sb[sb.len() - 2]
    } else {
        sb[sb.len() - 1]
    };
    if k != n {
        bail!(
            "{what}: incompatible shapes of A and B for the equation {} ({} and {})",
            if left { "AX = B" } else { "XA = B" },
            c.g.ty(a),
            c.g.ty(b)
        );
    }
    let (aa, ba) = (c.g.convert(a, acc), c.g.convert(b, acc));
    let am = tri(c, aa, lower)?;
    let x = c.g.triangular_solve(am, ba, left, lower, unit, transpose)?;
    Ok((c.g.convert(x, d), a))
}

/// `linalg_solve_triangular(A, B, *, upper, left=True, unitriangular=False)`.
fn linalg_solve_triangular(c: &mut LowerCtx, a: &Args) -> Out {
    let (m, b) = (a.t(0)?, a.t(1)?);
    let upper = a.bool(2)?;
    let left = a.bool_or(3, true)?;
    let unit = a.bool_or(4, false)?;
    let (x, _) = solve(
        c,
        "linalg.solve_triangular",
        m,
        b,
        left,
        !upper,
        unit,
        false,
    )?;
    Ok(vec![x])
}

/// `triangular_solve(self=B, A, upper=True, transpose=False, unitriangular=False)` → (X, A broadcast).
fn triangular_solve(c: &mut LowerCtx, a: &Args) -> Out {
    let (b, m) = (a.t(0)?, a.t(1)?);
    let upper = a.bool_or(2, true)?;
    let transpose = a.bool_or(3, false)?;
    let unit = a.bool_or(4, false)?;
    let (x, mb) = solve(c, "triangular_solve", m, b, true, !upper, unit, transpose)?;
    Ok(vec![x, mb])
}

/// `linalg_cholesky_ex(self, *, upper=False, check_errors=False)` → (L, info).
/// `info` is 0 for a factorized matrix; where the factor has a non-finite
/// diagonal entry (the matrix is not positive definite), it is the 1-based
/// index of the first such entry.
fn linalg_cholesky_ex(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let upper = a.bool_or(1, false)?;
    check_square(c, "linalg.cholesky", x)?;
    let d = c.g.dtype(x);
    let xa = c.g.convert(x, opmath(d));
    let l = c.g.cholesky(xa, !upper)?;
    let l = tri(c, l, !upper)?;
    // info: the first non-finite diagonal entry.
    let finite = c.g.unary(U::IsFinite, l)?;
    let bad = c.g.unary(U::Not, finite)?;
    let info = first_bad_diagonal(c, bad)?;
    Ok(vec![c.g.convert(l, d), info])
}

/// LAPACK's `info` of a factorization: the 1-based index of the first
/// diagonal entry of `bad` (bool `[.., m, n]`) that is set, else 0; int32 of
/// the batch shape.
pub(crate) fn first_bad_diagonal(c: &mut LowerCtx, bad: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(bad).to_vec();
    let r = shape.len();
    let k = shape[r - 2].min(shape[r - 1]);
    let row = c.g.iota(DType::I64, &shape, r as i64 - 2)?;
    let col = c.g.iota(DType::I64, &shape, r as i64 - 1)?;
    let on_diagonal = c.g.compare(CmpDir::Eq, row, col)?;
    let bad = c.g.binary(B::And, bad, on_diagonal)?;
    let position = c.g.binary_const(B::Add, row, 1.0)?;
    let none = c.g.full_like(position, (k + 1) as f64, DType::I64);
    let at = c.g.select(bad, position, none)?;
    let first = c.g.reduce(R::Min, at, &[r as i64 - 2, r as i64 - 1])?;
    // `<`: an empty matrix reduces to the identity of min, past k too.
    let none = c.g.full_like(first, (k + 1) as f64, DType::I64);
    let found = c.g.compare(CmpDir::Lt, first, none)?;
    let zero = c.g.full_like(first, 0.0, DType::I64);
    let info = c.g.select(found, first, zero)?;
    Ok(c.g.convert(info, DType::I32))
}

/// `linalg_cholesky(self, *, upper=False)`.
fn linalg_cholesky(c: &mut LowerCtx, a: &Args) -> Out {
    let r = linalg_cholesky_ex(c, a)?;
    Ok(vec![r[0]])
}

/// Solves `A X = B` for `A = L L^T` (or `U^T U`), given the factor.
fn chol_solve(c: &mut LowerCtx, b: ValueId, f: ValueId, upper: bool) -> Result<ValueId> {
    let what = "cholesky_solve";
    // lower: L Y = B, L^T X = Y; upper: U^T Y = B, U X = Y.
    let (y, _) = solve(c, what, f, b, true, !upper, false, upper)?;
    let (x, _) = solve(c, what, f, y, true, !upper, false, !upper)?;
    Ok(x)
}

/// `cholesky_solve(self=B, input2=L, upper=False)` and `_cholesky_solve_helper(self, A, upper)`.
fn cholesky_solve(c: &mut LowerCtx, a: &Args) -> Out {
    let (b, f) = (a.t(0)?, a.t(1)?);
    Ok(vec![chol_solve(c, b, f, a.bool_or(2, false)?)?])
}

/// `cholesky_inverse(self=L, upper=False)`: `(L L^T)^-1`.
fn cholesky_inverse(c: &mut LowerCtx, a: &Args) -> Out {
    let f = a.t(0)?;
    check_square(c, "cholesky_inverse", f)?;
    let d = c.g.dtype(f);
    let shape = c.g.shape(f).to_vec();
    let r = shape.len();
    let row = c.g.iota(DType::I64, &shape, (r - 2) as i64)?;
    let col = c.g.iota(DType::I64, &shape, (r - 1) as i64)?;
    let diag = c.g.compare(CmpDir::Eq, row, col)?;
    let one = c.g.constant(ConstVal::Int(1), d, &shape);
    let zero = c.g.constant(ConstVal::Int(0), d, &shape);
    let eye = c.g.select(diag, one, zero)?;
    Ok(vec![chol_solve(c, eye, f, a.bool_or(1, false)?)?])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["linalg_solve_triangular", "linalg_solve_triangular.out"],
        linalg_solve_triangular,
    );
    r.add(
        &["triangular_solve", "triangular_solve.X"],
        triangular_solve,
    );
    r.add(
        &["linalg_cholesky_ex", "linalg_cholesky_ex.L"],
        linalg_cholesky_ex,
    );
    r.add(&["linalg_cholesky", "linalg_cholesky.out"], linalg_cholesky);
    r.add(
        &[
            "cholesky_solve",
            "cholesky_solve.out",
            "_cholesky_solve_helper",
            "_cholesky_solve_helper.out",
        ],
        cholesky_solve,
    );
    r.add(
        &["cholesky_inverse", "cholesky_inverse.out"],
        cholesky_inverse,
    );
}
