//! Symmetric eigendecomposition by cyclic Jacobi ([`crate::jacobi`]):
//! `_linalg_eigh` (linalg.eigh, eigvalsh, hermitian matrix_rank and pinv)
//! and `linalg_matrix_sqrth` built on it. Only the `UPLO` triangle is read;
//! eigenvalues come out ascending, eigenvectors may differ in sign from
//! LAPACK's.

use crate::jacobi::{eye, jacobi, sort_columns};
use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::solve::check_square;
use crate::svd::{check_matrices, mt, scale_columns};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, ConstVal, DType, Graph, UnaryKind as U, ValueId};

/// The symmetric matrix whose `lower` (or upper) triangle is `a`'s.
fn symmetrize(g: &mut Graph, a: ValueId, lower: bool) -> Result<ValueId> {
    let shape = g.shape(a).to_vec();
    let r = shape.len() as i64;
    let row = g.iota(DType::I64, &shape, r - 2)?;
    let col = g.iota(DType::I64, &shape, r - 1)?;
    let keep = g.compare(if lower { CmpDir::Le } else { CmpDir::Ge }, col, row)?;
    let zero = g.full_like(a, 0.0, g.dtype(a));
    let t = g.select(keep, a, zero)?;
    let tt = mt(g, t)?;
    let diag = g.compare(CmpDir::Eq, row, col)?;
    let tt = g.select(diag, zero, tt)?;
    Ok(g.binary(B::Add, t, tt)?)
}

/// Eigenvalues (ascending, `[.., n]`) and eigenvectors (columns, `[.., n, n]`)
/// of the symmetric matrices given by `a`'s `lower` (or upper) triangle.
pub(crate) fn eigh(g: &mut Graph, a: ValueId, lower: bool) -> Result<(ValueId, ValueId)> {
    let shape = g.shape(a).to_vec();
    let d = g.dtype(a);
    if g.ty(a).numel() == 0 {
        let w = g.constant(ConstVal::Int(0), d, &shape[..shape.len() - 1]);
        return Ok((w, eye(g, &shape, d)?));
    }
    let s = symmetrize(g, a, lower)?;
    let j = jacobi(g, s, true)?;
    let (w, v) = sort_columns(g, j.d, j.padded, false, &[j.v])?;
    Ok((w, v[0]))
}

fn uplo(a: &Args, i: usize) -> Result<bool> {
    match a.str(i)?.unwrap_or("L") {
        "L" | "l" => Ok(true),
        "U" | "u" => Ok(false),
        other => bail!("Expected UPLO argument to be 'L' or 'U', but got {other}"),
    }
}

fn square(c: &LowerCtx, what: &str, x: ValueId) -> Result<()> {
    check_matrices(c.g, what, x)?;
    check_square(c, what, x)?;
    Ok(())
}

/// `_linalg_eigh(A, UPLO="L", compute_v=True)` → (eigenvalues, eigenvectors).
fn linalg_eigh(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let lower = uplo(a, 1)?;
    let compute_v = a.bool_or(2, true)?;
    square(c, "linalg.eigh", x)?;
    let (w, v) = eigh(c.g, x, lower)?;
    if !compute_v {
        // Eigenvalues only: the eigenvectors output is empty, as on CPU.
        let e = c.g.constant(ConstVal::Int(0), c.g.dtype(x), &[0]);
        return Ok(vec![w, e]);
    }
    Ok(vec![w, v])
}

/// `linalg_matrix_sqrth(A)`: `V diag(sqrt(w)) V^T` from the lower triangle's
/// eigendecomposition (NaN where an eigenvalue is negative).
fn matrix_sqrth(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    square(c, "linalg.matrix_sqrth", x)?;
    let (w, v) = eigh(c.g, x, true)?;
    let g = &mut *c.g;
    let r = g.unary(U::Sqrt, w)?;
    let vr = scale_columns(g, v, r)?;
    let vt = mt(g, v)?;
    Ok(vec![g.matmul_batched(vr, vt)?])
}

pub fn register(r: &mut Registry) {
    r.add(&["_linalg_eigh", "_linalg_eigh.eigenvalues"], linalg_eigh);
    r.add(
        &["linalg_matrix_sqrth", "linalg_matrix_sqrth.out"],
        matrix_sqrth,
    );
}
