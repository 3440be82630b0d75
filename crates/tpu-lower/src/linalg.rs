//! Linear algebra family: mm, bmm, mv, dot and their `add*` forms
//! (`beta * self + alpha * product`). `matmul` and `linear` decompose into
//! these before reaching the backend. Half-precision operands accumulate in
//! f32 (XLA's preferred element type) and round once at the end.

use crate::args::ScalarArg;
use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, DotDims, ValueId};

/// `dot_general` with f32 accumulation for half types; the result stays in the accumulation dtype.
fn dot_acc(c: &mut LowerCtx, a: ValueId, b: ValueId, dims: DotDims) -> Result<ValueId> {
    let (da, db) = (c.g.dtype(a), c.g.dtype(b));
    if da != db {
        bail!("expected both operands to have the same dtype, but got {da} and {db}");
    }
    Ok(c.g.dot_to(a, b, dims, opmath(da))?)
}

fn check_rank(c: &LowerCtx, what: &str, v: ValueId, rank: usize) -> Result<()> {
    if c.g.rank(v) != rank {
        bail!("{what}: expected a {rank}-D tensor, got {}", c.g.ty(v));
    }
    Ok(())
}

/// The product of the two operands for each op kind, in the accumulation dtype.
fn product(c: &mut LowerCtx, kind: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
    let dims = match kind {
        "mm" => {
            check_rank(c, "mm", a, 2)?;
            check_rank(c, "mm", b, 2)?;
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![1],
                rhs_contract: vec![0],
            }
        }
        "bmm" => {
            check_rank(c, "bmm", a, 3)?;
            check_rank(c, "bmm", b, 3)?;
            DotDims {
                lhs_batch: vec![0],
                rhs_batch: vec![0],
                lhs_contract: vec![2],
                rhs_contract: vec![1],
            }
        }
        "mv" => {
            check_rank(c, "mv", a, 2)?;
            check_rank(c, "mv", b, 1)?;
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![1],
                rhs_contract: vec![0],
            }
        }
        _ => {
            check_rank(c, "dot", a, 1)?;
            check_rank(c, "dot", b, 1)?;
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![0],
                rhs_contract: vec![0],
            }
        }
    };
    dot_acc(c, a, b, dims)
}

fn plain(c: &mut LowerCtx, a: &Args, kind: &str) -> Out {
    let (x, y) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let p = product(c, kind, x, y)?;
    Ok(vec![c.g.convert(p, d)])
}
/// `vdot(x, y)`: the dot product with `x` conjugated.
fn vdot(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let xc = c.g.conj(x)?;
    let p = product(c, "dot", xc, y)?;
    Ok(vec![c.g.convert(p, d)])
}

/// Multiplies by a host scalar unless it is 1.
fn scale(c: &mut LowerCtx, v: ValueId, s: ScalarArg) -> Result<ValueId> {
    if s.as_f64() == 1.0 {
        return Ok(v);
    }
    let shape = c.g.shape(v).to_vec();
    let k = c.scalar_full(s, c.g.dtype(v), &shape)?;
    Ok(c.g.binary(B::Mul, v, k)?)
}

/// `beta * self + alpha * (m1 @ m2)`; `beta == 0` ignores `self` (NaN included).
fn add_product(c: &mut LowerCtx, a: &Args, kind: &str) -> Out {
    let (s, m1, m2) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let beta = a.opt_scalar(3)?.unwrap_or(ScalarArg::Int(1));
    let alpha = a.opt_scalar(4)?.unwrap_or(ScalarArg::Int(1));
    let d = c.g.dtype(m1);
    let p = product(c, kind, m1, m2)?;
    let p = scale(c, p, alpha)?;
    if beta.as_f64() == 0.0 {
        return Ok(vec![c.g.convert(p, d)]);
    }
    let shape = c.g.shape(p).to_vec();
    let acc = c.g.dtype(p);
    let s = c.g.coerce(s, acc, &shape)?;
    let s = scale(c, s, beta)?;
    let r = c.g.binary(B::Add, s, p)?;
    Ok(vec![c.g.convert(r, d)])
}

/// `mm.dtype(self, mat2, out_dtype)`: the product in `out_dtype`.
fn mm_dtype(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y) = (a.t(0)?, a.t(1)?);
    let out = a.opt_dtype(2)?.unwrap_or(c.g.dtype(x));
    let p = product(c, if c.g.rank(x) == 3 { "bmm" } else { "mm" }, x, y)?;
    Ok(vec![c.g.convert(p, out)])
}

pub fn register(r: &mut Registry) {
    r.add(&["mm", "mm.out"], |c, a| plain(c, a, "mm"));
    r.add(&["bmm", "bmm.out"], |c, a| plain(c, a, "bmm"));
    r.add(&["mv", "mv.out"], |c, a| plain(c, a, "mv"));
    r.add(&["dot", "dot.out"], |c, a| plain(c, a, "dot"));
    r.add(&["vdot", "vdot.out"], vdot);
    r.add(&["addmm", "addmm.out", "addmm_"], |c, a| {
        add_product(c, a, "mm")
    });
    r.add(&["baddbmm", "baddbmm.out", "baddbmm_"], |c, a| {
        add_product(c, a, "bmm")
    });
    r.add(&["addmv", "addmv.out", "addmv_"], |c, a| {
        add_product(c, a, "mv")
    });
    r.add(
        &["mm.dtype", "mm.dtype_out", "bmm.dtype", "bmm.dtype_out"],
        mm_dtype,
    );
}
