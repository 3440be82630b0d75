//! Indexing family: index_select, gather, scatter / scatter_add, embedding
//! and its dense backward, advanced indexing (`index.Tensor`, `index_put_`)
//! and masked_fill. All lower to XLA gather / scatter / select.
//!
//! XLA gather clamps out-of-range indices and scatter drops them, so every
//! rule taking user indices adds a range check (`LowerCtx::check_range`) that
//! raises CPU PyTorch's error; negative indices of advanced indexing wrap as
//! in PyTorch.

use crate::args::Arg;
use crate::operands::{broadcast_shapes, opmath, wrap_dim, Out};
use crate::registry::{Args, CheckKind, LowerCtx, Registry};
use crate::{bail, LowerError, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, GatherAttrs, ReduceKind as R, ScatterAttrs, ValueId,
};

fn range(n: usize) -> Vec<i64> {
    (0..n as i64).collect()
}

/// Full coordinates `[index.shape.., rank]` for gather/scatter along `dim`:
/// the index value in `dim`, the element's own position elsewhere.
pub(crate) fn dim_coords(c: &mut LowerCtx, index: ValueId, dim: usize) -> Result<ValueId> {
    let shape = c.g.shape(index).to_vec();
    let r = shape.len();
    let mut col = shape.clone();
    col.push(1);
    let mut parts = Vec::with_capacity(r);
    for d in 0..r {
        let v = if d == dim {
            c.g.convert(index, DType::I64)
        } else {
            c.g.iota(DType::I64, &shape, d as i64)?
        };
        parts.push(c.g.reshape(v, &col)?);
    }
    Ok(c.g.concatenate(&parts, r as i64)?)
}

/// Requires every index of `index` along `dim` of `x` in `0..size`, with
/// CPU's "index N is out of bounds for dimension D with size S" (`kind`).
pub(crate) fn check_dim_index(
    c: &mut LowerCtx,
    what: &str,
    x: ValueId,
    dim: usize,
    index: ValueId,
    (lo_wraps, kind): (bool, CheckKind),
) -> Result<()> {
    let size = c.g.shape(x).get(dim).copied().unwrap_or(1);
    let lo = if lo_wraps { -size } else { 0 };
    c.check_range(
        index,
        (lo, size),
        kind,
        format!("{what}index {{}} is out of bounds for dimension {dim} with size {size}"),
    )
}

fn check_same_rank(c: &LowerCtx, what: &str, x: ValueId, index: ValueId) -> Result<()> {
    if c.g.rank(x) != c.g.rank(index) && c.g.ty(index).numel() > 1 {
        bail!(
            "{what}: index {} should have the same number of dimensions as self {}",
            c.g.ty(index),
            c.g.ty(x)
        );
    }
    Ok(())
}

/// `gather(self, dim, index, *, sparse_grad)`.
fn gather(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index) = (a.t(0)?, a.t(2)?);
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int(1)?, r)?;
    if r == 0 {
        return Ok(vec![c
            .g
            .reshape(x, c.g.shape(index).to_vec().as_slice())?]);
    }
    check_same_rank(c, "gather", x, index)?;
    check_dim_index(c, "", x, dim, index, (false, CheckKind::Runtime))?;
    let coords = dim_coords(c, index, dim)?;
    let attrs = GatherAttrs {
        offset_dims: vec![],
        collapsed_slice_dims: range(r),
        start_index_map: range(r),
        index_vector_dim: r as i64,
        slice_sizes: vec![1; r],
    };
    Ok(vec![c.g.gather(x, coords, attrs)?])
}

/// Scatter of `src` (sliced to the index's shape) into `self` along `dim`.
pub(crate) fn scatter_dim(
    c: &mut LowerCtx,
    x: ValueId,
    dim: usize,
    index: ValueId,
    src: ValueId,
    combine: Option<R>,
) -> Result<ValueId> {
    let r = c.g.rank(x);
    let d = c.g.dtype(x);
    let ishape = c.g.shape(index).to_vec();
    if r == 0 {
        let s = c.g.convert(src, d);
        return Ok(c.g.reshape(s, &[])?);
    }
    let src = c.g.convert(src, d);
    let src = if c.g.rank(src) == 0 {
        c.g.broadcast_to(src, &ishape)?
    } else {
        let zeros = vec![0; r];
        c.g.slice(src, &zeros, &ishape, &vec![1; r])?
    };
    let coords = dim_coords(c, index, dim)?;
    let attrs = ScatterAttrs {
        update_window_dims: vec![],
        inserted_window_dims: range(r),
        scatter_dims_to_operand_dims: range(r),
        index_vector_dim: r as i64,
        combine,
    };
    Ok(c.g.scatter(x, coords, src, attrs)?)
}

/// The `src`/`value` operand (argument 3) of scatter ops.
fn scatter_src(c: &mut LowerCtx, a: &Args, x: ValueId) -> Result<ValueId> {
    match a.arg(3) {
        Arg::Tensor(t) => Ok(t.v),
        _ => {
            let s = a.scalar(3)?;
            Ok(c.scalar(s, c.g.dtype(x)))
        }
    }
}

/// `scatter(self, dim, index, src|value)`.
fn scatter(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index) = (a.t(0)?, a.t(2)?);
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    check_same_rank(c, "scatter", x, index)?;
    check_dim_index(c, "", x, dim, index, (false, CheckKind::Runtime))?;
    let src = scatter_src(c, a, x)?;
    Ok(vec![scatter_dim(c, x, dim, index, src, None)?])
}

/// `scatter_add(self, dim, index, src)`.
fn scatter_add(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index) = (a.t(0)?, a.t(2)?);
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    check_same_rank(c, "scatter_add", x, index)?;
    check_dim_index(c, "", x, dim, index, (false, CheckKind::Runtime))?;
    let src = scatter_src(c, a, x)?;
    Ok(vec![scatter_dim(c, x, dim, index, src, Some(R::Sum))?])
}

/// `scatter(self, dim, index, src|value, *, reduce)` with reduce `add` or `multiply`.
fn scatter_reduce_legacy(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index) = (a.t(0)?, a.t(2)?);
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    let kind = match a.str(4)? {
        Some("add") => R::Sum,
        Some("multiply") => R::Prod,
        m => bail!("reduce argument must be either add or multiply, got {m:?}"),
    };
    check_dim_index(c, "", x, dim, index, (false, CheckKind::Runtime))?;
    let src = scatter_src(c, a, x)?;
    Ok(vec![scatter_dim(c, x, dim, index, src, Some(kind))?])
}

/// `index_select(self, dim, index)`.
fn index_select(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index) = (a.t(0)?, a.t(2)?);
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int(1)?, r)?;
    if c.g.rank(index) > 1 {
        bail!(
            "index_select(): Index is supposed to be a vector, got {}",
            c.g.ty(index)
        );
    }
    if r == 0 {
        return Ok(vec![x]);
    }
    c.check_index(index, c.g.shape(x)[dim], "index_select()")?;
    let m = c.g.ty(index).numel();
    let idx = c.g.convert(index, DType::I64);
    let idx = c.g.reshape(idx, &[m, 1])?;
    let mut sizes = c.g.shape(x).to_vec();
    sizes[dim] = 1;
    let attrs = GatherAttrs {
        offset_dims: (0..r as i64).filter(|&i| i != dim as i64).collect(),
        collapsed_slice_dims: vec![dim as i64],
        start_index_map: vec![dim as i64],
        index_vector_dim: 1,
        slice_sizes: sizes,
    };
    Ok(vec![c.g.gather(x, idx, attrs)?])
}

/// Rows of a 2-D `weight` for every index: result `indices.shape + [D]`.
fn take_rows(c: &mut LowerCtx, w: ValueId, indices: ValueId) -> Result<ValueId> {
    if c.g.rank(w) != 2 {
        bail!("embedding: weight must be 2-D, got {}", c.g.ty(w));
    }
    let mut s = c.g.shape(indices).to_vec();
    let n = s.len();
    s.push(1);
    let idx = c.g.convert(indices, DType::I64);
    let idx = c.g.reshape(idx, &s)?;
    let attrs = GatherAttrs {
        offset_dims: vec![n as i64],
        collapsed_slice_dims: vec![0],
        start_index_map: vec![0],
        index_vector_dim: n as i64,
        slice_sizes: vec![1, c.g.shape(w)[1]],
    };
    Ok(c.g.gather(w, idx, attrs)?)
}

/// `embedding(weight, indices, padding_idx, scale_grad_by_freq, sparse)`.
fn embedding(c: &mut LowerCtx, a: &Args) -> Out {
    let (w, idx) = (a.t(0)?, a.t(1)?);
    let rows = c.g.shape(w).first().copied().unwrap_or(0);
    c.check_index(idx, rows, "embedding")?;
    Ok(vec![take_rows(c, w, idx)?])
}

/// Adds `updates [M, ..]` into rows `idx [M, 1]` of `base [W, ..]`.
fn scatter_add_rows(
    c: &mut LowerCtx,
    base: ValueId,
    idx: ValueId,
    updates: ValueId,
) -> Result<ValueId> {
    let r = c.g.rank(base);
    let attrs = ScatterAttrs {
        update_window_dims: (1..r as i64).collect(),
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: 1,
        combine: Some(R::Sum),
    };
    Ok(c.g.scatter(base, idx, updates, attrs)?)
}

/// `embedding_dense_backward(grad_output, indices, num_weights, padding_idx, scale_grad_by_freq)`.
fn embedding_dense_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go, indices) = (a.t(0)?, a.t(1)?);
    let (nw, pad, scale) = (a.int(2)?, a.int(3)?, a.bool_or(4, false)?);
    let d = c.g.dtype(go);
    let acc = opmath(d);
    let dim = *c.g.shape(go).last().unwrap_or(&1);
    let m = c.g.ty(indices).numel();
    let g = c.g.convert(go, acc);
    let mut g = c.g.reshape(g, &[m, dim])?;
    let idx = c.g.convert(indices, DType::I64);
    let idx = c.g.reshape(idx, &[m, 1])?;
    if pad >= 0 {
        let p = c.g.full_like(idx, pad as f64, DType::I64);
        let keep = c.g.compare(CmpDir::Ne, idx, p)?;
        let keep = c.g.broadcast_in_dim(keep, &[m, dim], &[0, 1])?;
        let zero = c.g.full_like(g, 0.0, acc);
        g = c.g.select(keep, g, zero)?;
    }
    if scale {
        let zeros = c.g.constant(ConstVal::Int(0), acc, &[nw]);
        let ones = c.g.constant(ConstVal::Int(1), acc, &[m]);
        let counts = scatter_add_rows(c, zeros, idx, ones)?;
        let counts = c.g.reshape(counts, &[nw, 1])?;
        let per = take_rows(c, counts, idx)?;
        let per = c.g.reshape(per, &[m, 1])?;
        let per = c.g.broadcast_in_dim(per, &[m, dim], &[0, 1])?;
        g = c.g.binary(B::Div, g, per)?;
    }
    let zeros = c.g.constant(ConstVal::Int(0), acc, &[nw, dim]);
    let r = scatter_add_rows(c, zeros, idx, g)?;
    Ok(vec![c.g.convert(r, d)])
}

/// Advanced indexing plan: broadcast int64 indices stacked as `[B.., k]`, the
/// indexed dims, and where the result's non-indexed dims go.
struct Plan {
    stacked: ValueId,
    dims: Vec<i64>,
    offset_dims: Vec<i64>,
    out_shape: Vec<i64>,
}

fn plan(c: &mut LowerCtx, x: ValueId, entries: &[Option<ValueId>]) -> Result<Option<Plan>> {
    let xs = c.g.shape(x).to_vec();
    let r = xs.len();
    if entries.len() > r {
        bail!(
            "index: too many indices for tensor of dimension {r} (got {})",
            entries.len()
        );
    }
    let mut dims = Vec::new();
    let mut idx = Vec::new();
    let mut bshape: Vec<i64> = vec![];
    for (d, e) in entries.iter().enumerate() {
        if let Some(t) = e {
            let dt = c.g.dtype(*t);
            if matches!(dt, DType::Bool | DType::U8) {
                bail!("index: boolean mask indices give a data-dependent shape, which is not supported on tpu; use torch.where or masked_fill instead");
            }
            if !dt.is_int() {
                return Err(LowerError::Index(format!(
                    "index: tensors used as indices must be long, int, byte or bool tensors, got {dt}"
                )));
            }
            bshape = broadcast_shapes(&bshape, c.g.shape(*t))?;
            dims.push(d as i64);
            idx.push(*t);
        }
    }
    if dims.is_empty() {
        return Ok(None);
    }
    let nb = bshape.len();
    let mut col = bshape.clone();
    col.push(1);
    let mut parts = Vec::new();
    for (&d, &t) in dims.iter().zip(&idx) {
        check_dim_index(c, "", x, d as usize, t, (true, CheckKind::Index))?;
        let t = c.g.coerce(t, DType::I64, &bshape)?;
        // Negative indices count from the end.
        let zero = c.g.full_like(t, 0.0, DType::I64);
        let size = c.g.full_like(t, xs[d as usize] as f64, DType::I64);
        let neg = c.g.compare(CmpDir::Lt, t, zero)?;
        let wrapped = c.g.binary(B::Add, t, size)?;
        let t = c.g.select(neg, wrapped, t)?;
        parts.push(c.g.reshape(t, &col)?);
    }
    let stacked = c.g.concatenate(&parts, nb as i64)?;
    let adjacent = dims.windows(2).all(|w| w[1] == w[0] + 1);
    let rest: Vec<i64> = (0..r)
        .filter(|d| !dims.contains(&(*d as i64)))
        .map(|d| xs[d])
        .collect();
    let out_rank = nb + rest.len();
    let first = if adjacent { dims[0] as usize } else { 0 };
    let offset_dims: Vec<i64> = (0..out_rank)
        .filter(|&i| i < first || i >= first + nb)
        .map(|i| i as i64)
        .collect();
    let mut out_shape = rest[..first].to_vec();
    out_shape.extend(&bshape);
    out_shape.extend(&rest[first..]);
    Ok(Some(Plan {
        stacked,
        dims,
        offset_dims,
        out_shape,
    }))
}

/// `index.Tensor(self, Tensor?[] indices)`.
fn index(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let entries = a.opt_tensors(1)?;
    let Some(p) = plan(c, x, &entries)? else {
        return Ok(vec![x]);
    };
    let xs = c.g.shape(x).to_vec();
    let slice_sizes: Vec<i64> = (0..xs.len())
        .map(|d| {
            if p.dims.contains(&(d as i64)) {
                1
            } else {
                xs[d]
            }
        })
        .collect();
    let nb = c.g.rank(p.stacked) - 1;
    let attrs = GatherAttrs {
        offset_dims: p.offset_dims,
        collapsed_slice_dims: p.dims.clone(),
        start_index_map: p.dims,
        index_vector_dim: nb as i64,
        slice_sizes,
    };
    Ok(vec![c.g.gather(x, p.stacked, attrs)?])
}

/// `x[mask] = v` with one bool mask covering dims `at..` and a single value: a select.
fn index_put_mask(
    c: &mut LowerCtx,
    x: ValueId,
    at: usize,
    mask: ValueId,
    v: ValueId,
    accumulate: bool,
) -> Result<ValueId> {
    let xs = c.g.shape(x).to_vec();
    let ms = c.g.shape(mask).to_vec();
    if at + ms.len() > xs.len() || xs[at..at + ms.len()] != ms[..] || c.g.ty(v).numel() != 1 {
        bail!("index_put_: boolean mask indices give a data-dependent shape; only `x[mask] = scalar` is supported on tpu");
    }
    let d = c.g.dtype(x);
    let m = c.g.convert(mask, DType::Bool);
    let dims: Vec<i64> = (at..at + ms.len()).map(|i| i as i64).collect();
    let m = c.g.broadcast_in_dim(m, &xs, &dims)?;
    let v = c.g.reshape(v, &[])?;
    let v = c.g.coerce(v, d, &xs)?;
    let v = if accumulate {
        c.g.binary(B::Add, x, v)?
    } else {
        v
    };
    Ok(c.g.select(m, v, x)?)
}

/// `index_put(self, indices, values, accumulate)`, `index_put_`, `_index_put_impl_`.
fn index_put(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, values) = (a.t(0)?, a.t(2)?);
    let accumulate = a.bool_or(3, false)?;
    let entries = a.opt_tensors(1)?;
    let some: Vec<(usize, ValueId)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.map(|t| (i, t)))
        .collect();
    if let [(at, m)] = some[..] {
        if matches!(c.g.dtype(m), DType::Bool | DType::U8) {
            return Ok(vec![index_put_mask(c, x, at, m, values, accumulate)?]);
        }
    }
    let Some(p) = plan(c, x, &entries)? else {
        let t = c.g.ty(x).clone();
        let v = c.g.coerce(values, t.dtype, &t.shape)?;
        return Ok(vec![if accumulate {
            c.g.binary(B::Add, x, v)?
        } else {
            v
        }]);
    };
    let d = c.g.dtype(x);
    let updates = c.g.coerce(values, d, &p.out_shape)?;
    let nb = c.g.rank(p.stacked) - 1;
    let attrs = ScatterAttrs {
        update_window_dims: p.offset_dims,
        inserted_window_dims: p.dims.clone(),
        scatter_dims_to_operand_dims: p.dims,
        index_vector_dim: nb as i64,
        combine: if accumulate { Some(R::Sum) } else { None },
    };
    Ok(vec![c.g.scatter(x, p.stacked, updates, attrs)?])
}

/// `masked_fill(self, mask, value)`: value is a Scalar or a 0-dim tensor.
fn masked_fill(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, mask) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let v = match a.arg(2) {
        Arg::Tensor(t) => {
            if c.g.rank(t.v) != 0 {
                bail!("masked_fill_ only supports a 0-dimensional value tensor, but got tensor with {} dimension(s)", c.g.rank(t.v));
            }
            c.g.convert(t.v, d)
        }
        _ => {
            let s = a.scalar(2)?;
            c.scalar(s, d)
        }
    };
    if c.g.dtype(mask) != DType::Bool {
        bail!(
            "masked_fill_ only supports boolean masks, but got mask with dtype {}",
            c.g.dtype(mask)
        );
    }
    Ok(vec![c.g.select_bcast(mask, v, x, d)?])
}

pub fn register(r: &mut Registry) {
    r.add(&["gather", "gather.out"], gather);
    r.add(
        &[
            "scatter.src",
            "scatter.src_out",
            "scatter_.src",
            "scatter.value",
            "scatter.value_out",
            "scatter_.value",
        ],
        scatter,
    );
    r.add(
        &["scatter_add", "scatter_add.out", "scatter_add_"],
        scatter_add,
    );
    r.add(
        &[
            "scatter.reduce",
            "scatter.reduce_out",
            "scatter_.reduce",
            "scatter.value_reduce",
            "scatter.value_reduce_out",
            "scatter_.value_reduce",
        ],
        scatter_reduce_legacy,
    );
    r.add(&["index_select", "index_select.out"], index_select);
    r.add(&["embedding", "embedding.out"], embedding);
    r.add(
        &["embedding_dense_backward", "embedding_dense_backward.out"],
        embedding_dense_backward,
    );
    r.add(
        &[
            "index.Tensor",
            "index.Tensor_out",
            "index.Tensor_hacked_twin",
        ],
        index,
    );
    r.add(
        &[
            "index_put",
            "index_put.out",
            "index_put.hacked_twin",
            "index_put_",
            "index_put_.hacked_twin",
            "_index_put_impl_",
            "_index_put_impl_.hacked_twin",
            "_index_put_impl",
            "_index_put_impl.out",
        ],
        index_put,
    );
    r.add(
        &[
            "masked_fill.Scalar",
            "masked_fill.Tensor",
            "masked_fill.Scalar_out",
            "masked_fill.Tensor_out",
            "masked_fill_.Scalar",
            "masked_fill_.Tensor",
        ],
        masked_fill,
    );
}
