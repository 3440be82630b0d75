//! Order statistics: median / nanmedian, mode, cummax / cummin
//! (`_cummax_helper`). Selections sort a key with NaN canonicalised
//! (largest) and -0 as +0, then gather the original elements, so values keep
//! their bits.

use crate::indexing::dim_coords;
use crate::operands::{bin, cmp, cmp_k, isnan, k, wrap_dim, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, GatherAttrs, ReduceKind as R, ValueId};

/// `x` gathered along `dim` at `idx` (same rank; `idx` sizes the result).
fn gather_along(c: &mut LowerCtx, x: ValueId, idx: ValueId, dim: usize) -> Result<ValueId> {
    let r = c.g.rank(x);
    let coords = dim_coords(c, idx, dim)?;
    let attrs = GatherAttrs {
        offset_dims: vec![],
        collapsed_slice_dims: (0..r as i64).collect(),
        start_index_map: (0..r as i64).collect(),
        index_vector_dim: r as i64,
        slice_sizes: vec![1; r],
    };
    Ok(c.g.gather(x, coords, attrs)?)
}

/// Sort key: NaN as one (largest) NaN, -0 as +0, bool as u8.
fn sort_key(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let d = c.g.dtype(x);
    if d == DType::Bool {
        return Ok(c.g.convert(x, DType::U8));
    }
    if !d.is_float() {
        return Ok(x);
    }
    let z = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let zero = k(c, x, 0.0);
    let v = c.g.select(z, zero, x)?;
    let nan = isnan(c, x)?;
    let nanv = k(c, x, f64::NAN);
    Ok(c.g.select(nan, nanv, v)?)
}

/// Original positions of the stably sorted slices along `dim` (NaN last).
fn sort_index(c: &mut LowerCtx, x: ValueId, dim: usize) -> Result<ValueId> {
    let key = sort_key(c, x)?;
    let shape = c.g.shape(x).to_vec();
    let iota = c.g.iota(DType::I64, &shape, dim as i64)?;
    Ok(c.g.sort(&[key, iota], dim as i64, false)?[1])
}

/// Drops `dim` (size 1) unless `keep`.
fn finish_dim(c: &mut LowerCtx, v: ValueId, dim: usize, keep: bool) -> Result<ValueId> {
    if keep {
        return Ok(v);
    }
    Ok(c.g.squeeze_dims(v, &[dim])?)
}

/// Median along `dim`: the lower median; NaN wins (first NaN) unless `ignore_nan`.
fn median_along(
    c: &mut LowerCtx,
    x: ValueId,
    dim: usize,
    keep: bool,
    ignore_nan: bool,
) -> Result<(ValueId, ValueId)> {
    let shape = c.g.shape(x).to_vec();
    let n = shape[dim];
    if n == 0 {
        bail!("median(): Expected reduction dim {dim} to have non-zero size.");
    }
    let idx = sort_index(c, x, dim)?;
    let mut kshape = shape.clone();
    kshape[dim] = 1;
    let nan_cnt = if c.g.dtype(x).is_float() {
        let nan = isnan(c, x)?;
        let nan = c.g.convert(nan, DType::I64);
        c.g.reduce_keep(R::Sum, nan, &[dim], true)?
    } else {
        c.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &kshape)
    };
    let pos = if ignore_nan {
        // (valid - 1) / 2, truncating: an all-NaN slice picks position 0.
        let total = c.g.full_like(nan_cnt, n as f64, DType::I64);
        let valid = bin(c, B::Sub, total, nan_cnt)?;
        let vm1 = c.g.binary_const(B::Sub, valid, 1.0)?;
        let two = k(c, vm1, 2.0);
        bin(c, B::Div, vm1, two)?
    } else {
        let mid = c.g.full_like(nan_cnt, ((n - 1) / 2) as f64, DType::I64);
        let total = c.g.full_like(nan_cnt, n as f64, DType::I64);
        let first_nan = bin(c, B::Sub, total, nan_cnt)?;
        let has = cmp_k(c, CmpDir::Gt, nan_cnt, 0.0)?;
        c.g.select(has, first_nan, mid)?
    };
    let at = gather_along(c, idx, pos, dim)?;
    let v = gather_along(c, x, at, dim)?;
    Ok((finish_dim(c, v, dim, keep)?, finish_dim(c, at, dim, keep)?))
}

fn median_all_of(c: &mut LowerCtx, a: &Args, ignore_nan: bool) -> Out {
    let x = a.t(0)?;
    let n = c.g.ty(x).numel();
    if n == 0 {
        let d = c.g.dtype(x);
        return Ok(vec![c.g.scalar(f64::NAN, d)]);
    }
    let flat = c.g.reshape(x, &[n])?;
    Ok(vec![median_along(c, flat, 0, false, ignore_nan)?.0])
}

fn median_dim_of(c: &mut LowerCtx, a: &Args, ignore_nan: bool) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int(1)?, r.max(1))?;
    let keep = a.bool_or(2, false)?;
    if r == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    let (v, i) = median_along(c, x, dim, keep, ignore_nan)?;
    Ok(vec![v, i])
}

/// `mode(self, dim, keepdim) -> (values, indices)`: the most frequent value
/// (ties: the smallest), with the last index holding it.
fn mode(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int_or(1, -1)?, r.max(1))?;
    let keep = a.bool_or(2, false)?;
    if r == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    let shape = c.g.shape(x).to_vec();
    let n = shape[dim];
    if n == 0 {
        bail!("mode(): Expected reduction dim {dim} to have non-zero size.");
    }
    let idx = sort_index(c, x, dim)?;
    let s = gather_along(c, x, idx, dim)?;
    let s = sort_key(c, s)?;
    let pos = c.g.iota(DType::I64, &shape, dim as i64)?;
    let best = if n == 1 {
        c.g.full_like(pos, 0.0, DType::I64)
    } else {
        let prev = c.g.slice_dim(s, dim, 0, n - 1)?;
        let cur = c.g.slice_dim(s, dim, 1, n)?;
        let ne = cmp(c, CmpDir::Ne, cur, prev)?;
        let mut one = shape.clone();
        one[dim] = 1;
        let t =
            c.g.constant(tpu_graph::ConstVal::Bool(true), DType::Bool, &one);
        let starts = c.g.concatenate(&[t, ne], dim as i64)?;
        let ends = c.g.concatenate(&[ne, t], dim as i64)?;
        let zero = k(c, pos, 0.0);
        let sp = c.g.select(starts, pos, zero)?;
        let start = c.g.cumulative(R::Max, sp, dim)?;
        let len = bin(c, B::Sub, pos, start)?;
        let len = c.g.binary_const(B::Add, len, 1.0)?;
        let score = c.g.select(ends, len, zero)?;
        let b = c.g.arg_reduce(true, score, dim as i64)?;
        c.g.unsqueeze(b, dim)?
    };
    let best = if n == 1 {
        c.g.slice_dim(best, dim, 0, 1)?
    } else {
        best
    };
    let at = gather_along(c, idx, best, dim)?;
    let v = gather_along(c, x, at, dim)?;
    Ok(vec![
        finish_dim(c, v, dim, keep)?,
        finish_dim(c, at, dim, keep)?,
    ])
}

/// `_cummax_helper` / `_cummin_helper(self, values, indices, dim)`: running
/// extreme with the last index reaching it; a NaN sticks (index of the last NaN).
fn cum_extreme(c: &mut LowerCtx, a: &Args, max: bool) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    if r == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    let dim = wrap_dim(a.int(3)?, r)?;
    let shape = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let xw = if d == DType::Bool {
        c.g.convert(x, DType::I32)
    } else {
        x
    };
    let kind = if max { R::Max } else { R::Min };
    let v = c.g.cumulative(kind, xw, dim)?;
    let hit = cmp(c, CmpDir::Eq, xw, v)?;
    let rec = if d.is_float() {
        let nan = isnan(c, xw)?;
        let nan_i = c.g.convert(nan, DType::I32);
        let seen = c.g.cumulative(R::Max, nan_i, dim)?;
        let clean = cmp_k(c, CmpDir::Eq, seen, 0.0)?;
        let hit = bin(c, B::And, hit, clean)?;
        bin(c, B::Or, hit, nan)?
    } else {
        hit
    };
    let pos = c.g.iota(DType::I64, &shape, dim as i64)?;
    let zero = k(c, pos, 0.0);
    let rp = c.g.select(rec, pos, zero)?;
    let idx = c.g.cumulative(R::Max, rp, dim)?;
    let vals = gather_along(c, x, idx, dim)?;
    Ok(vec![vals, idx])
}

pub fn register(r: &mut Registry) {
    r.add(&["median", "median.out"], |c, a| median_all_of(c, a, false));
    r.add(&["nanmedian", "nanmedian.out"], |c, a| {
        median_all_of(c, a, true)
    });
    r.add(&["median.dim", "median.dim_values"], |c, a| {
        median_dim_of(c, a, false)
    });
    r.add(&["nanmedian.dim", "nanmedian.dim_values"], |c, a| {
        median_dim_of(c, a, true)
    });
    r.add(&["mode", "mode.values"], mode);
    r.add(&["_cummax_helper"], |c, a| cum_extreme(c, a, true));
    r.add(&["_cummin_helper"], |c, a| cum_extreme(c, a, false));
}
