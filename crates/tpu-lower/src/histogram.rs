//! Histograms with static shapes: `histc`, `histogram` (a bin count or an edge
//! tensor) and the pieces `histogramdd` is made of (`_histogramdd_bin_edges`,
//! `_histogramdd_from_bin_cts`, `_histogramdd_from_bin_tensors`). Edges of
//! a bin count span the range (the data's min and max without one, widened
//! by 1/2 each side when they meet, `[0, 1]` for no data) evenly; a value
//! falls in the bin whose left edge is the last one `<= value`, the last
//! bin also taking its right edge, values outside (and NaN) in none. Counts
//! are a scatter-add of the weights into the bins.

use crate::args::{Arg, ScalarArg};
use crate::operands::{bin, cmp, cmp_k, k, opmath, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, ReduceKind as R, ScatterAttrs, UnaryKind as U,
    ValueId,
};

/// The samples as `[N, D]` in the compute dtype (`D = 1` for `histogram`, the last dim for histogramdd).
fn samples(c: &mut LowerCtx, x: ValueId, dd: bool, what: &str) -> Result<(ValueId, DType)> {
    let t = c.g.ty(x).clone();
    if !t.dtype.is_float() {
        bail!("{what}: expected a floating point input, got {}", t.dtype);
    }
    let d = if dd {
        match t.shape.last() {
            Some(&d) => d,
            None => bail!("{what}: expected an input of at least one dimension, got {t}"),
        }
    } else {
        1
    };
    let n = if d == 0 { 0 } else { t.numel() / d };
    let w = opmath(t.dtype);
    let xs = c.g.convert(x, w);
    Ok((c.g.reshape(xs, &[n, d])?, t.dtype))
}

/// `bins + 1` evenly spaced edges of column `k` of `xs` over `range` (a
/// pair per dim) or the column's min and max.
fn linear_edges(
    c: &mut LowerCtx,
    xs: ValueId,
    k: i64,
    bins: i64,
    range: Option<(f64, f64)>,
) -> Result<ValueId> {
    let w = c.g.dtype(xs);
    let n = c.g.shape(xs)[0];
    let (lo, hi) = match range {
        Some((lo, hi)) => {
            if lo > hi || !lo.is_finite() || !hi.is_finite() {
                bail!("histogram: range of [{lo}, {hi}] is not finite or min > max");
            }
            (
                c.scalar(ScalarArg::Float(lo), w),
                c.scalar(ScalarArg::Float(hi), w),
            )
        }
        None if n == 0 => (c.g.scalar(0.0, w), c.g.scalar(1.0, w)),
        None => {
            let col = c.g.slice_dim(xs, 1, k, k + 1)?;
            let col = c.g.reshape(col, &[n])?;
            (
                c.g.reduce_keep(R::Min, col, &[0], false)?,
                c.g.reduce_keep(R::Max, col, &[0], false)?,
            )
        }
    };
    // Equal ends are widened by 1/2 each side, as on the CPU.
    let same = c.g.compare(CmpDir::Eq, lo, hi)?;
    let half = c.g.scalar(0.5, w);
    let zero = c.g.scalar(0.0, w);
    let widen = c.g.select(same, half, zero)?;
    let lo = c.g.binary(B::Sub, lo, widen)?;
    let hi = c.g.binary(B::Add, hi, widen)?;
    let i = c.g.iota(w, &[bins + 1], 0)?;
    let span = c.g.binary(B::Sub, hi, lo)?;
    let step = c.g.binary_const(B::Div, span, bins as f64)?;
    let step = c.g.broadcast_to(step, &[bins + 1])?;
    let e = c.g.binary(B::Mul, i, step)?;
    let lo_b = c.g.broadcast_to(lo, &[bins + 1])?;
    let e = c.g.binary(B::Add, e, lo_b)?;
    // The last edge is the range's end exactly.
    let hi_b = c.g.broadcast_to(hi, &[bins + 1])?;
    let last = c.g.iota(DType::I64, &[bins + 1], 0)?;
    let last = c.g.binary_const(B::Sub, last, bins as f64)?;
    let zero_i = c.g.full_like(last, 0.0, DType::I64);
    let is_last = c.g.compare(CmpDir::Eq, last, zero_i)?;
    Ok(c.g.select(is_last, hi_b, e)?)
}

/// int64 bin of each value `v` (`[N]`) among `edges` (`[B + 1]`); `B` (out of
/// bounds, dropped by the scatter) for values outside.
fn bin_of(c: &mut LowerCtx, v: ValueId, edges: ValueId) -> Result<ValueId> {
    let n = c.g.shape(v)[0];
    let nb = c.g.shape(edges)[0] - 1;
    let v2 = c.g.broadcast_in_dim(v, &[n, nb + 1], &[0])?;
    let e2 = c.g.broadcast_in_dim(edges, &[n, nb + 1], &[1])?;
    let le = c.g.compare(CmpDir::Le, e2, v2)?;
    let cnt = c.g.convert(le, DType::I64);
    let cnt = c.g.reduce(R::Sum, cnt, &[1])?;
    let pos = c.g.binary_const(B::Sub, cnt, 1.0)?;
    let top = c.g.full_like(pos, (nb - 1) as f64, DType::I64);
    let pos = c.g.binary(B::Min, pos, top)?;
    let first = c.g.slice(edges, &[0], &[1], &[1])?;
    let last = c.g.slice(edges, &[nb], &[nb + 1], &[1])?;
    let first = c.g.broadcast_to(first, &[n])?;
    let last = c.g.broadcast_to(last, &[n])?;
    let ge = c.g.compare(CmpDir::Ge, v, first)?;
    let le = c.g.compare(CmpDir::Le, v, last)?;
    let inside = c.g.binary(B::And, ge, le)?;
    let oob = c.g.full_like(pos, nb as f64, DType::I64);
    Ok(c.g.select(inside, pos, oob)?)
}

/// The histogram of `xs` (`[N, D]`) over `edges` (one `[B_d + 1]` per dim),
/// weighted, normalized to a density if asked; in `d`.
fn histogram_of(
    c: &mut LowerCtx,
    xs: ValueId,
    edges: &[ValueId],
    weight: Option<ValueId>,
    density: bool,
    d: DType,
) -> Result<ValueId> {
    let w = c.g.dtype(xs);
    let n = c.g.shape(xs)[0];
    let bins: Vec<i64> = edges.iter().map(|&e| c.g.shape(e)[0] - 1).collect();
    let mut idx = Vec::new();
    for (k, &e) in edges.iter().enumerate() {
        let col = c.g.slice_dim(xs, 1, k as i64, k as i64 + 1)?;
        let col = c.g.reshape(col, &[n])?;
        let e = c.g.convert(e, w);
        let b = bin_of(c, col, e)?;
        idx.push(c.g.reshape(b, &[n, 1])?);
    }
    let idx = c.g.concatenate(&idx, 1)?;
    let upd = match weight {
        Some(wt) => {
            if c.g.ty(wt).numel() != n {
                bail!(
                    "histogram: weight {} does not match the input's {n} samples",
                    c.g.ty(wt)
                );
            }
            let wt = c.g.convert(wt, w);
            c.g.reshape(wt, &[n])?
        }
        None => c.g.constant(ConstVal::float(1.0), w, &[n]),
    };
    let base = c.g.constant(ConstVal::float(0.0), w, &bins);
    let dims: Vec<i64> = (0..bins.len() as i64).collect();
    let attrs = ScatterAttrs {
        update_window_dims: vec![],
        inserted_window_dims: dims.clone(),
        scatter_dims_to_operand_dims: dims,
        index_vector_dim: 1,
        combine: Some(R::Sum),
    };
    let mut h = c.g.scatter(base, idx, upd, attrs)?;
    if density {
        // Divide by the total and by each bin's volume (the product of its widths).
        let all: Vec<i64> = (0..bins.len() as i64).collect();
        let total = c.g.reduce(R::Sum, h, &all)?;
        let total = c.g.broadcast_to(total, &bins)?;
        h = c.g.binary(B::Div, h, total)?;
        for (k, &e) in edges.iter().enumerate() {
            let e = c.g.convert(e, w);
            let nb = bins[k];
            let hi = c.g.slice(e, &[1], &[nb + 1], &[1])?;
            let lo = c.g.slice(e, &[0], &[nb], &[1])?;
            let width = c.g.binary(B::Sub, hi, lo)?;
            let width = c.g.broadcast_in_dim(width, &bins, &[k as i64])?;
            h = c.g.binary(B::Div, h, width)?;
        }
    }
    Ok(c.g.convert(h, d))
}

/// `range` (argument `i`): `None` or `2 * dims` floats.
fn range_arg(a: &Args, i: usize, dims: usize, what: &str) -> Result<Option<Vec<(f64, f64)>>> {
    match a.arg(i) {
        Arg::None => Ok(None),
        Arg::Floats(v) if v.len() == 2 * dims => {
            Ok(Some(v.chunks(2).map(|p| (p[0], p[1])).collect()))
        }
        Arg::Floats(v) => bail!(
            "{what}: expected {} range values, got {}",
            2 * dims,
            v.len()
        ),
        other => bail!("{what}: range must be a list of floats, got {other:?}"),
    }
}

/// Edges for bin counts `bins` (one per dim of `xs`).
fn count_edges(
    c: &mut LowerCtx,
    xs: ValueId,
    bins: &[i64],
    range: Option<Vec<(f64, f64)>>,
    what: &str,
) -> Result<Vec<ValueId>> {
    let dims = c.g.shape(xs)[1] as usize;
    if bins.len() != dims || bins.iter().any(|&b| b <= 0) {
        bail!("{what}: expected {dims} positive bin counts, got {bins:?}");
    }
    (0..dims)
        .map(|k| linear_edges(c, xs, k as i64, bins[k], range.as_ref().map(|r| r[k])))
        .collect()
}

/// `histogram.bin_ct(self, bins=100, *, range, weight, density)` -> (hist, bin_edges).
fn histogram_bin_ct(c: &mut LowerCtx, a: &Args) -> Out {
    let (xs, d) = samples(c, a.t(0)?, false, "histogram")?;
    let bins = a.int_or(1, 100)?;
    let range = range_arg(a, 2, 1, "histogram")?;
    let edges = count_edges(c, xs, &[bins], range, "histogram")?;
    let h = histogram_of(c, xs, &edges, a.opt_t(3)?, a.bool_or(4, false)?, d)?;
    Ok(vec![h, c.g.convert(edges[0], d)])
}

/// `histogram.bins_tensor(self, bins, *, weight, density)` -> (hist, bin_edges).
fn histogram_bins_tensor(c: &mut LowerCtx, a: &Args) -> Out {
    let (xs, d) = samples(c, a.t(0)?, false, "histogram")?;
    let e = a.t(1)?;
    if c.g.rank(e) != 1 || c.g.shape(e)[0] < 2 {
        bail!(
            "histogram: bins must be a 1D tensor of at least 2 edges, got {}",
            c.g.ty(e)
        );
    }
    let h = histogram_of(c, xs, &[e], a.opt_t(2)?, a.bool_or(3, false)?, d)?;
    Ok(vec![h, c.g.convert(e, d)])
}

/// `_histogramdd_bin_edges(self, bins, *, range, weight, density)` -> Tensor[].
fn histogramdd_bin_edges(c: &mut LowerCtx, a: &Args) -> Out {
    let (xs, d) = samples(c, a.t(0)?, true, "histogramdd")?;
    let bins = a.ints(1)?;
    let range = range_arg(a, 2, bins.len(), "histogramdd")?;
    let edges = count_edges(c, xs, &bins, range, "histogramdd")?;
    Ok(edges.into_iter().map(|e| c.g.convert(e, d)).collect())
}

/// `_histogramdd_from_bin_cts(self, bins, *, range, weight, density)`.
fn histogramdd_from_bin_cts(c: &mut LowerCtx, a: &Args) -> Out {
    let (xs, d) = samples(c, a.t(0)?, true, "histogramdd")?;
    let bins = a.ints(1)?;
    let range = range_arg(a, 2, bins.len(), "histogramdd")?;
    let edges = count_edges(c, xs, &bins, range, "histogramdd")?;
    Ok(vec![histogram_of(
        c,
        xs,
        &edges,
        a.opt_t(3)?,
        a.bool_or(4, false)?,
        d,
    )?])
}

/// `_histogramdd_from_bin_tensors(self, bins, *, weight, density)`.
fn histogramdd_from_bin_tensors(c: &mut LowerCtx, a: &Args) -> Out {
    let (xs, d) = samples(c, a.t(0)?, true, "histogramdd")?;
    let edges = a.tensors(1)?;
    let dims = c.g.shape(xs)[1] as usize;
    if edges.len() != dims
        || edges
            .iter()
            .any(|&e| c.g.rank(e) != 1 || c.g.shape(e)[0] < 2)
    {
        bail!("histogramdd: expected {dims} 1D bin edge tensors of at least 2 edges");
    }
    Ok(vec![histogram_of(
        c,
        xs,
        &edges,
        a.opt_t(2)?,
        a.bool_or(3, false)?,
        d,
    )?])
}

/// `histc(self, bins, min, max)`: counts over `bins` equal bins of
/// `linspace(min, max, bins + 1)` (the data's range when `min == max`);
/// values outside the range (and NaN) are ignored.
fn histc(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("\"histogram_cpu\" not implemented for '{d}'");
    }
    let bins = a.int_or(1, 100)?;
    if bins <= 0 {
        bail!("torch.histc: bins must be > 0, but got {bins} for dimension 0");
    }
    let lo = a.float_or(2, 0.0)?;
    let hi = a.float_or(3, 0.0)?;
    let n = c.g.ty(x).numel();
    let flat = c.g.reshape(x, &[n])?;
    let (mut lo_v, mut hi_v) = if lo == hi && n > 0 {
        let mn = c.g.reduce_keep(R::Min, flat, &[0], false)?;
        let mx = c.g.reduce_keep(R::Max, flat, &[0], false)?;
        (mn, mx)
    } else {
        if lo > hi {
            bail!("torch.histc: max must be larger than min");
        }
        if !lo.is_finite() || !hi.is_finite() {
            bail!("torch.histc: range of [{lo}, {hi}] is not finite");
        }
        (c.g.scalar(lo, d), c.g.scalar(hi, d))
    };
    let same = cmp(c, CmpDir::Eq, lo_v, hi_v)?;
    let lo1 = c.g.binary_const(B::Sub, lo_v, 1.0)?;
    let hi1 = c.g.binary_const(B::Add, hi_v, 1.0)?;
    lo_v = c.g.select(same, lo1, lo_v)?;
    hi_v = c.g.select(same, hi1, hi_v)?;
    // Edges as CPU linspace: the front half from `lo`, the back half from `hi`.
    let steps = bins + 1;
    let span = bin(c, B::Sub, hi_v, lo_v)?;
    let nb = k(c, span, bins as f64);
    let step = bin(c, B::Div, span, nb)?;
    let i = c.g.iota(d, &[steps], 0)?;
    let stepb = c.g.broadcast_to(step, &[steps])?;
    let lob = c.g.broadcast_to(lo_v, &[steps])?;
    let hib = c.g.broadcast_to(hi_v, &[steps])?;
    let front = bin(c, B::Mul, stepb, i)?;
    let front = bin(c, B::Add, lob, front)?;
    let ri = c.g.iota(d, &[steps], 0)?;
    let ri = c.g.binary_const(B::Sub, ri, bins as f64)?;
    let ri = un(c, U::Neg, ri)?;
    let back = bin(c, B::Mul, stepb, ri)?;
    let back = bin(c, B::Sub, hib, back)?;
    let ii = c.g.iota(DType::I64, &[steps], 0)?;
    let first = cmp_k(c, CmpDir::Lt, ii, (steps / 2) as f64)?;
    let edges = c.g.select(first, front, back)?;
    if n == 0 {
        return Ok(vec![c.g.constant(
            tpu_graph::ConstVal::float(0.0),
            d,
            &[bins],
        )]);
    }
    // Bin of each element: (#edges <= x) - 1, the last edge closing the last bin.
    let xb = c.g.broadcast_in_dim(flat, &[n, steps], &[0])?;
    let eb = c.g.broadcast_in_dim(edges, &[n, steps], &[1])?;
    let le = cmp(c, CmpDir::Le, eb, xb)?;
    let le = c.g.convert(le, DType::I64);
    let cnt = c.g.reduce(R::Sum, le, &[1])?;
    let pos = c.g.binary_const(B::Sub, cnt, 1.0)?;
    let lastb = k(c, pos, (bins - 1) as f64);
    let pos = bin(c, B::Min, pos, lastb)?;
    let e0 = c.g.slice_dim(edges, 0, 0, 1)?;
    let e0 = c.g.reshape(e0, &[])?;
    let e1 = c.g.slice_dim(edges, 0, bins, steps)?;
    let e1 = c.g.reshape(e1, &[])?;
    let e0 = c.g.broadcast_to(e0, &[n])?;
    let e1 = c.g.broadcast_to(e1, &[n])?;
    let ge = cmp(c, CmpDir::Ge, flat, e0)?;
    let le = cmp(c, CmpDir::Le, flat, e1)?;
    let inside = bin(c, B::And, ge, le)?;
    let pb = c.g.broadcast_in_dim(pos, &[n, bins], &[0])?;
    let ib = c.g.broadcast_in_dim(inside, &[n, bins], &[0])?;
    let j = c.g.iota(DType::I64, &[n, bins], 1)?;
    let hit = cmp(c, CmpDir::Eq, pb, j)?;
    let hit = bin(c, B::And, hit, ib)?;
    let hit = c.g.convert(hit, DType::I64);
    let h = c.g.reduce(R::Sum, hit, &[0])?;
    Ok(vec![c.g.convert(h, d)])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["histogram.bin_ct", "histogram.bin_ct_out"],
        histogram_bin_ct,
    );
    r.add(
        &["histogram.bins_tensor", "histogram.bins_tensor_out"],
        histogram_bins_tensor,
    );
    r.add(&["_histogramdd_bin_edges"], histogramdd_bin_edges);
    r.add(&["_histogramdd_from_bin_cts"], histogramdd_from_bin_cts);
    r.add(
        &["_histogramdd_from_bin_tensors"],
        histogramdd_from_bin_tensors,
    );
    r.add(&["histc", "histc.out"], histc);
}
