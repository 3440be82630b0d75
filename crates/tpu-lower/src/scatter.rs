//! Scatter-based ops on top of `indexing::scatter_dim`: index_add, index_copy,
//! index_reduce, scatter_reduce (sum, prod, mean, amax, amin, with or without
//! `self`), put, and max_unpool (a scatter of the pooled values into zeros).

use crate::indexing::{check_dim_index, scatter_dim};
use crate::operands::{wrap_dim, Out};
use crate::registry::{Args, CheckKind, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, ValueId};

/// A 1-D `index` along `dim`, broadcast to `source`'s shape (for index_* ops).
fn spread_index(c: &mut LowerCtx, index: ValueId, source: ValueId, dim: usize) -> Result<ValueId> {
    let shape = c.g.shape(source).to_vec();
    let n = c.g.ty(index).numel();
    let idx = c.g.reshape(index, &[n])?;
    if shape.is_empty() {
        return Ok(c.g.reshape(idx, &[])?);
    }
    Ok(c.g.broadcast_in_dim(idx, &shape, &[dim as i64])?)
}

/// `(self, dim, index, source)` of index_add/index_copy/index_reduce, with the
/// index range-checked (CPU's message prefix `what`, exception `kind`) and
/// spread over `source`; a 0-d `self`/`source` becomes `[1]` (the caller
/// reshapes the result back with `unscalar`).
fn index_operands(
    c: &mut LowerCtx,
    a: &Args,
    (what, kind): (&str, CheckKind),
) -> Result<(ValueId, usize, ValueId, ValueId)> {
    let (mut x, index, mut src) = (a.t(0)?, a.t(2)?, a.t(3)?);
    if c.g.rank(x) == 0 {
        x = c.g.reshape(x, &[1])?;
    }
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    check_dim_index(c, what, x, dim, index, (false, kind))?;
    if c.g.rank(src) == 0 {
        src = c.g.reshape(src, &[1])?;
    }
    let idx = spread_index(c, index, src, dim)?;
    Ok((x, dim, idx, src))
}

/// The result in the shape of `self` (argument 0).
fn unscalar(c: &mut LowerCtx, a: &Args, v: ValueId) -> Out {
    let shape = c.g.shape(a.t(0)?).to_vec();
    Ok(vec![c.g.reshape(v, &shape)?])
}

/// `index_add(self, dim, index, source, alpha)`.
fn index_add(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, dim, idx, mut src) = index_operands(c, a, ("", CheckKind::Runtime))?;
    if let Some(alpha) = a.opt_scalar(4)? {
        if alpha.as_f64() != 1.0 {
            let d = c.g.dtype(x);
            let s = c.g.convert(src, d);
            let shape = c.g.shape(s).to_vec();
            let k = c.scalar_full(alpha, d, &shape)?;
            src = c.g.binary(B::Mul, s, k)?;
        }
    }
    let v = scatter_dim(c, x, dim, idx, src, Some(R::Sum))?;
    unscalar(c, a, v)
}

/// `index_copy(self, dim, index, source)`.
fn index_copy(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, dim, idx, src) = index_operands(c, a, ("index_copy_(): ", CheckKind::Index))?;
    let v = scatter_dim(c, x, dim, idx, src, None)?;
    unscalar(c, a, v)
}

/// Identity of a scatter reduction in dtype `d`.
fn identity(kind: R, d: DType) -> f64 {
    if d == DType::Bool {
        return if matches!(kind, R::Min | R::Prod | R::And) {
            1.0
        } else {
            0.0
        };
    }
    match kind {
        R::Prod => 1.0,
        R::Max if d.is_float() => f64::NEG_INFINITY,
        R::Min if d.is_float() => f64::INFINITY,
        R::Max => i64::MIN as f64,
        R::Min => i64::MAX as f64,
        _ => 0.0,
    }
}

/// Scatter-reduces `src` into `x` at `idx` along `dim` (`reduce` as PyTorch names it).
fn reduce_into(
    c: &mut LowerCtx,
    x: ValueId,
    dim: usize,
    idx: ValueId,
    src: ValueId,
    reduce: &str,
    include_self: bool,
) -> Result<ValueId> {
    let d = c.g.dtype(x);
    let kind = match reduce {
        "sum" => R::Sum,
        "prod" => R::Prod,
        "mean" => R::Sum,
        "amax" => R::Max,
        "amin" => R::Min,
        m => bail!("reduce argument must be one of sum, prod, mean, amax, amin, got {m}"),
    };
    let kind = match (kind, d) {
        (R::Max | R::Sum, DType::Bool) => R::Or,
        (R::Min | R::Prod, DType::Bool) => R::And,
        (k, _) => k,
    };
    let base = if include_self {
        x
    } else {
        let v = identity(kind, d);
        let v = c.g.scalar(v, d);
        scatter_dim(c, x, dim, idx, v, None)?
    };
    let total = scatter_dim(c, base, dim, idx, src, Some(kind))?;
    if reduce != "mean" {
        return Ok(total);
    }
    // Count the values combined at each position (self counts once if included).
    let ones = c.g.full_like(x, 1.0, d);
    let cnt_base = if include_self {
        ones
    } else {
        let zero = c.g.scalar(0.0, d);
        scatter_dim(c, ones, dim, idx, zero, None)?
    };
    let one = c.g.scalar(1.0, d);
    let cnt = scatter_dim(c, cnt_base, dim, idx, one, Some(R::Sum))?;
    let zero = c.g.full_like(cnt, 0.0, d);
    let none = c.g.compare(CmpDir::Eq, cnt, zero)?;
    let ones = c.g.full_like(cnt, 1.0, d);
    let cnt = c.g.select(none, ones, cnt)?;
    let q = c.g.binary(B::Div, total, cnt)?;
    if d.is_float() {
        return Ok(q);
    }
    // Integer mean rounds toward -inf as PyTorch's `div_(rounding_mode="floor")`.
    let back = c.g.binary(B::Mul, q, cnt)?;
    let inexact = c.g.compare(CmpDir::Ne, back, total)?;
    let neg = c.g.compare(CmpDir::Lt, total, zero)?;
    let fix = c.g.binary(B::And, inexact, neg)?;
    let qm = c.g.binary(B::Sub, q, ones)?;
    Ok(c.g.select(fix, qm, q)?)
}

/// `scatter_reduce.two(self, dim, index, src, reduce, *, include_self)`.
fn scatter_reduce(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index, src) = (a.t(0)?, a.t(2)?, a.t(3)?);
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int(1)?, r.max(1))?;
    let reduce = a.str(4)?.unwrap_or("sum").to_owned();
    let include_self = a.bool_or(5, true)?;
    if c.g.ty(index).numel() == 0 {
        return Ok(vec![x]);
    }
    check_dim_index(c, "", x, dim, index, (false, CheckKind::Runtime))?;
    Ok(vec![reduce_into(
        c,
        x,
        dim,
        index,
        src,
        &reduce,
        include_self,
    )?])
}

/// `index_reduce(self, dim, index, source, reduce, *, include_self)`.
fn index_reduce(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, dim, idx, src) = index_operands(c, a, ("index_reduce(): ", CheckKind::Index))?;
    let reduce = a.str(4)?.unwrap_or("prod").to_owned();
    let include_self = a.bool_or(5, true)?;
    let v = reduce_into(c, x, dim, idx, src, &reduce, include_self)?;
    unscalar(c, a, v)
}

/// `max_unpool{2,3}d(self, indices, output_size, ...)`: values scattered into
/// zeros at their flat spatial indices.
fn max_unpool(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, indices) = (a.t(0)?, a.t(1)?);
    let out_size = a.ints(2)?;
    let k = out_size.len();
    let shape = c.g.shape(x).to_vec();
    if shape.len() < k || c.g.shape(indices) != shape.as_slice() {
        bail!("max_unpool: expected indices of the same shape as the input");
    }
    let lead = &shape[..shape.len() - k];
    let n_in: i64 = shape[shape.len() - k..].iter().product();
    let n_out: i64 = out_size.iter().product();
    let sizes: Vec<String> = out_size.iter().map(|d| d.to_string()).collect();
    c.check_range(
        indices,
        (0, n_out),
        CheckKind::Runtime,
        format!(
            "Found an invalid max index: {{}} (output volumes are of size {})",
            sizes.join("x")
        ),
    )?;
    let flat_in: Vec<i64> = lead.iter().copied().chain([n_in]).collect();
    let flat_out: Vec<i64> = lead.iter().copied().chain([n_out]).collect();
    let xv = c.g.reshape(x, &flat_in)?;
    let iv = c.g.reshape(indices, &flat_in)?;
    let z = c.g.scalar(0.0, c.g.dtype(x));
    let base = c.g.broadcast_to(z, &flat_out)?;
    let out = scatter_dim(c, base, lead.len(), iv, xv, None)?;
    let full: Vec<i64> = lead.iter().copied().chain(out_size).collect();
    Ok(vec![c.g.reshape(out, &full)?])
}

/// `put(self, index, source, accumulate)`: writes (or adds) `source` at flat indices.
fn put(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index, src) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let shape = c.g.shape(x).to_vec();
    let n = c.g.ty(x).numel();
    let m = c.g.ty(index).numel();
    c.check_range(
        index,
        (-n, n),
        CheckKind::Index,
        format!("out of range: tried to access index {{}} on a tensor of {n} elements."),
    )?;
    let flat = c.g.reshape(x, &[n])?;
    let idx = c.g.reshape(index, &[m])?;
    let idx = c.g.convert(idx, DType::I64);
    let zero = c.g.full_like(idx, 0.0, DType::I64);
    let neg = c.g.compare(CmpDir::Lt, idx, zero)?;
    let wrapped = c.g.binary_const(B::Add, idx, n as f64)?;
    let idx = c.g.select(neg, wrapped, idx)?;
    let src = c.g.reshape(src, &[m])?;
    let combine = if a.bool_or(3, false)? {
        Some(R::Sum)
    } else {
        None
    };
    let v = scatter_dim(c, flat, 0, idx, src, combine)?;
    Ok(vec![c.g.reshape(v, &shape)?])
}

pub fn register(r: &mut Registry) {
    r.add(&["put", "put_", "put.out"], put);
    r.add(&["index_add", "index_add.out", "index_add_"], index_add);
    r.add(&["index_copy", "index_copy.out", "index_copy_"], index_copy);
    r.add(
        &["index_reduce", "index_reduce.out", "index_reduce_"],
        index_reduce,
    );
    r.add(
        &[
            "scatter_reduce.two",
            "scatter_reduce.two_out",
            "scatter_reduce_.two",
        ],
        scatter_reduce,
    );
    r.add(
        &[
            "max_unpool2d",
            "max_unpool2d.out",
            "max_unpool3d",
            "max_unpool3d.out",
        ],
        max_unpool,
    );
}
