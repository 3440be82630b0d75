//! Singular value decomposition by two-sided Jacobi ([`crate::jacobi`]), as
//! XLA's SVD expander does: a tall matrix is first reduced by Householder QR
//! to its square R (U then is Q times R's U), a wide one is decomposed
//! transposed. Singular values come out descending; a column pair of U and V
//! may differ in sign from LAPACK's (any pair of signs is an SVD).
//! Built on it: `_linalg_svd` (linalg.svd, svdvals, pinv, matrix_rank,
//! cond, nuclear norm, lowrank) and `linalg_polar`.

use crate::jacobi::{eye, jacobi, sort_columns};
use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, ConstVal, DType, Graph, UnaryKind as U, ValueId};

/// `A = U diag(S) V^T` of `[.., m, n]`: U `[.., m, m or k]`, S `[.., k]`, V `[.., n, n or k]` (`full` or not).
pub(crate) struct Svd {
    pub u: ValueId,
    pub s: ValueId,
    pub v: ValueId,
}

/// Swaps the last two dims.
pub(crate) fn mt(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    let r = g.rank(x);
    let mut p: Vec<i64> = (0..r as i64).collect();
    p.swap(r - 1, r - 2);
    Ok(g.transpose(x, &p)?)
}

/// Requires float32/float64 matrices (the CPU kernels' dtypes), `what` naming the op.
pub(crate) fn check_matrices(g: &Graph, what: &str, a: ValueId) -> Result<()> {
    if g.rank(a) < 2 {
        bail!("{what}: The input tensor A must have at least 2 dimensions.");
    }
    match g.dtype(a) {
        DType::F32 | DType::F64 => Ok(()),
        d => bail!("{what}: Expected a float32 or float64 tensor as input, got {d} (no low precision or integer kernels, as on CPU)"),
    }
}

/// Scales the columns of `x` (`[.., r, c]`) by `s` (`[.., c]`).
pub(crate) fn scale_columns(g: &mut Graph, x: ValueId, s: ValueId) -> Result<ValueId> {
    let shape = g.shape(x).to_vec();
    let r = shape.len();
    let mut dims: Vec<i64> = (0..r as i64 - 2).collect();
    dims.push(r as i64 - 1);
    let sb = g.broadcast_in_dim(s, &shape, &dims)?;
    Ok(g.binary(B::Mul, x, sb)?)
}

/// The SVD in `a`'s (float) dtype.
pub(crate) fn svd(c: &mut LowerCtx, a: ValueId, full: bool) -> Result<Svd> {
    let shape = c.g.shape(a).to_vec();
    let r = shape.len();
    let (m, n) = (shape[r - 2], shape[r - 1]);
    if m < n {
        let at = mt(c.g, a)?;
        let t = svd(c, at, full)?;
        return Ok(Svd {
            u: t.v,
            s: t.s,
            v: t.u,
        });
    }
    let d = c.g.dtype(a);
    let batch = shape[..r - 2].to_vec();
    let dims = |rows: i64, cols: i64| {
        let mut s = batch.clone();
        s.extend([rows, cols]);
        s
    };
    if c.g.ty(a).numel() == 0 {
        // No values: U and V are identities (as LAPACK leaves them), S is empty.
        let u = eye(c.g, &dims(m, if full { m } else { n }), d)?;
        let v = eye(c.g, &dims(n, n), d)?;
        let mut ss = batch.clone();
        ss.push(n);
        let s = c.g.constant(ConstVal::Int(0), d, &ss);
        return Ok(Svd { u, s, v });
    }
    let (q, square) = if m > n {
        let (q, rr) = crate::qr::householder(c, a)?;
        (Some(q), c.g.slice_dim(rr, r - 2, 0, n)?)
    } else {
        (None, a)
    };
    let g = &mut *c.g;
    let j = jacobi(g, square, false)?;
    let u1 = j.u.expect("the SVD accumulates U");
    // A = U diag(d) V^T with d of either sign: S = |d|, V's columns take the sign.
    let sigma = g.unary(U::Abs, j.d)?;
    let zero = g.full_like(j.d, 0.0, d);
    let neg = g.compare(CmpDir::Lt, j.d, zero)?;
    let one = g.full_like(j.d, 1.0, d);
    let minus = g.full_like(j.d, -1.0, d);
    let sign = g.select(neg, minus, one)?;
    let v = scale_columns(g, j.v, sign)?;
    let (s, mats) = sort_columns(g, sigma, j.padded, true, &[v, u1])?;
    let (v, u1) = (mats[0], mats[1]);
    let u = match q {
        None => u1,
        Some(q) => {
            let qn = g.slice_dim(q, r - 1, 0, n)?;
            let qu = g.matmul_batched(qn, u1)?;
            if full {
                let rest = g.slice_dim(q, r - 1, n, m)?;
                g.concatenate(&[qu, rest], r as i64 - 1)?
            } else {
                qu
            }
        }
    };
    Ok(Svd { u, s, v })
}

/// `_linalg_svd(A, full_matrices=False, compute_uv=True, *, driver=None)` → (U, S, Vh).
fn linalg_svd(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let full = a.bool_or(1, false)?;
    let uv = a.bool_or(2, true)?;
    if a.has(3) {
        bail!("torch.linalg.svd: keyword argument `driver=` is only supported on CUDA inputs with cuSOLVER backend.");
    }
    check_matrices(c.g, "linalg.svd", x)?;
    let f = svd(c, x, full && uv)?;
    if !uv {
        // Only S; U and Vh are empty, as on CPU.
        let d = c.g.dtype(x);
        let e = c.g.constant(ConstVal::Int(0), d, &[0]);
        return Ok(vec![e, f.s, e]);
    }
    let vh = mt(c.g, f.v)?;
    Ok(vec![f.u, f.s, vh])
}

/// `linalg_polar(A)` → (U, H) with `A = U H`, U `[.., m, n]` with orthonormal
/// columns and H `[.., n, n]` symmetric positive semi-definite: from
/// `A = W S V^T`, `U = W V^T` and `H = V S V^T`.
fn linalg_polar(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    check_matrices(c.g, "linalg.polar", x)?;
    let s = c.g.shape(x).to_vec();
    let (m, n) = (s[s.len() - 2], s[s.len() - 1]);
    if m < n {
        bail!("linalg.polar: input must have at least as many rows as columns, but got {m} by {n} matrices");
    }
    let f = svd(c, x, false)?;
    let g = &mut *c.g;
    let vt = mt(g, f.v)?;
    let u = g.matmul_batched(f.u, vt)?;
    let vs = scale_columns(g, f.v, f.s)?;
    let h = g.matmul_batched(vs, vt)?;
    Ok(vec![u, h])
}

pub fn register(r: &mut Registry) {
    r.add(&["_linalg_svd", "_linalg_svd.U"], linalg_svd);
    r.add(&["linalg_polar", "linalg_polar.out"], linalg_polar);
}
