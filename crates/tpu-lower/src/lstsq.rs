//! `linalg_lstsq` through the SVD ([`crate::svd`]): the minimum-norm
//! solution `V diag(1/s) U^T B` over the singular values above
//! `rcond * s_max` (what gelsy's complete orthogonal factorization and
//! gelsd/gelss compute; gels assumes full rank, where all agree). The other
//! outputs follow the CPU kernel per driver: `rank` for all but gels,
//! `singular_values` for gelsd/gelss, `residuals` (`||A X - B||^2` per
//! column) for m > n except with gelsy. One difference: for a rank-deficient
//! tall A, gelsd/gelss give empty residuals on CPU (a data-dependent shape);
//! here they are computed.

use crate::args::ScalarArg;
use crate::bail;
use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::solve::broadcast_batch;
use crate::svd::{check_matrices, mt, svd};
use tpu_graph::{BinaryKind as B, CmpDir, ConstVal, DType, ReduceKind as R};

/// `linalg_lstsq(A, B, rcond=None, *, driver=None)` → (solution, residuals, rank, singular_values).
fn lstsq(c: &mut LowerCtx, a: &Args) -> Out {
    let what = "torch.linalg.lstsq";
    let (x, b) = (a.t(0)?, a.t(1)?);
    let driver = a.str(3)?.unwrap_or("gelsy").to_string();
    if !["gels", "gelsy", "gelsd", "gelss"].contains(&driver.as_str()) {
        bail!("{what}: parameter `driver` should be one of (gels, gelsy, gelsd, gelss)");
    }
    check_matrices(c.g, what, x)?;
    let d = c.g.dtype(x);
    if c.g.dtype(b) != d {
        bail!("{what}: Expected input and other to have the same dtype, but got input's dtype {d} and other's dtype {}", c.g.dtype(b));
    }
    let (ra, rb) = (c.g.rank(x), c.g.rank(b));
    let vector = rb + 1 == ra;
    if rb < 1 || rb + 1 < ra {
        bail!(
            "{what}: other must have at least {} dimensions, got {}",
            ra - 1,
            c.g.ty(b)
        );
    }
    let b = if vector { c.g.unsqueeze(b, rb)? } else { b };
    let sa = c.g.shape(x).to_vec();
    let (m, n) = (sa[ra - 2], sa[ra - 1]);
    let bm = c.g.shape(b)[c.g.rank(b) - 2];
    if bm != m {
        bail!(
            "{what}: input.size(-2) should match other.size(-2), got {} and {}",
            c.g.ty(x),
            c.g.ty(b)
        );
    }
    let (x, b) = broadcast_batch(c, x, b)?;
    let eps = if d == DType::F64 {
        f64::EPSILON
    } else {
        f32::EPSILON as f64
    };
    let rcond = a.float_or(2, eps * m.max(n) as f64)?;
    // A host number: a parameter, so another rcond does not recompile.
    let rc = c.scalar(ScalarArg::Float(rcond), d);
    let f = svd(c, x, false)?;
    let g = &mut *c.g;
    let r = g.rank(x);
    // Singular values above rcond * s_max count (none when there are none).
    let smax = g.reduce(R::Max, f.s, &[r as i64 - 2])?;
    let sm = g.shape(smax).to_vec();
    let rc = g.broadcast_to(rc, &sm)?;
    let thr = g.binary(B::Mul, smax, rc)?;
    let ss = g.shape(f.s).to_vec();
    let thr = g.broadcast_in_dim(thr, &ss, &(0..r as i64 - 2).collect::<Vec<_>>())?;
    let keep = g.compare(CmpDir::Gt, f.s, thr)?;
    let one = g.full_like(f.s, 1.0, d);
    let zero = g.full_like(f.s, 0.0, d);
    let inv = g.binary(B::Div, one, f.s)?;
    let inv = g.select(keep, inv, zero)?;
    let ut = mt(g, f.u)?;
    let ub = g.matmul_batched(ut, b)?;
    let us = g.shape(ub).to_vec();
    let mut dims: Vec<i64> = (0..r as i64 - 2).collect();
    dims.push(r as i64 - 2);
    let ib = g.broadcast_in_dim(inv, &us, &dims)?;
    let ub = g.binary(B::Mul, ub, ib)?;
    let sol = g.matmul_batched(f.v, ub)?;
    let empty = g.constant(ConstVal::Int(0), d, &[0]);
    let residuals = if m > n && driver != "gelsy" {
        let ax = g.matmul_batched(x, sol)?;
        let e = g.binary(B::Sub, ax, b)?;
        let e2 = g.binary(B::Mul, e, e)?;
        g.reduce(R::Sum, e2, &[r as i64 - 2])?
    } else {
        empty
    };
    let rank = if driver == "gels" {
        g.constant(ConstVal::Int(0), DType::I64, &[0])
    } else {
        let k = g.convert(keep, DType::I64);
        g.reduce(R::Sum, k, &[r as i64 - 2])?
    };
    let sv = if driver == "gelsd" || driver == "gelss" {
        f.s
    } else {
        empty
    };
    let sol = if vector {
        let s = g.shape(sol).to_vec();
        g.reshape(sol, &s[..s.len() - 1])?
    } else {
        sol
    };
    Ok(vec![sol, residuals, rank, sv])
}

pub fn register(r: &mut Registry) {
    r.add(&["linalg_lstsq", "linalg_lstsq.out"], lstsq);
}
