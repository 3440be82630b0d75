//! Row gathers and scatters along dim 0 by an index tensor, shared by the nn
//! families that look rows up (embedding bags, grid sampling, fractional
//! pooling, pdist): `x[idx]` and `dst.index_add_(0, idx, updates)`.

use crate::registry::LowerCtx;
use crate::Result;
use tpu_graph::{DType, GatherAttrs, ReduceKind as R, ScatterAttrs, ValueId};

/// `idx` as int64 with a trailing index-vector dim of 1.
fn index_vector(c: &mut LowerCtx, idx: ValueId) -> Result<ValueId> {
    let idx = c.g.convert(idx, DType::I64);
    let mut s = c.g.shape(idx).to_vec();
    s.push(1);
    Ok(c.g.reshape(idx, &s)?)
}

/// `x[idx]`: rows of `x [L, rest..]` at `idx [I..]` (in `0..L`), shape `[I.., rest..]`.
pub(crate) fn take_rows(c: &mut LowerCtx, x: ValueId, idx: ValueId) -> Result<ValueId> {
    let xs = c.g.shape(x).to_vec();
    let q = c.g.rank(idx) as i64;
    let r = xs.len() as i64;
    let iv = index_vector(c, idx)?;
    let mut slice_sizes = xs;
    slice_sizes[0] = 1;
    let attrs = GatherAttrs {
        offset_dims: (q..q + r - 1).collect(),
        collapsed_slice_dims: vec![0],
        start_index_map: vec![0],
        index_vector_dim: q,
        slice_sizes,
    };
    Ok(c.g.gather(x, iv, attrs)?)
}

/// `dst` with `updates [I.., rest..]` combined into its rows `idx [I..]`
/// (`Some(kind)` combines, `None` replaces); indices outside `0..L` are dropped.
pub(crate) fn put_rows(
    c: &mut LowerCtx,
    dst: ValueId,
    idx: ValueId,
    updates: ValueId,
    combine: Option<R>,
) -> Result<ValueId> {
    let q = c.g.rank(idx) as i64;
    let r = c.g.rank(dst) as i64;
    let iv = index_vector(c, idx)?;
    let updates = c.g.convert(updates, c.g.dtype(dst));
    let attrs = ScatterAttrs {
        update_window_dims: (q..q + r - 1).collect(),
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: q,
        combine,
    };
    Ok(c.g.scatter(dst, iv, updates, attrs)?)
}

/// Zeros `[rows, rest..]` of `dtype` with `updates` summed into rows `idx`.
pub(crate) fn sum_rows(
    c: &mut LowerCtx,
    rows: i64,
    idx: ValueId,
    updates: ValueId,
    dtype: DType,
) -> Result<ValueId> {
    let q = c.g.rank(idx);
    let mut shape = vec![rows];
    shape.extend_from_slice(&c.g.shape(updates)[q..]);
    let z = c.g.scalar(0.0, dtype);
    let z = c.g.broadcast_to(z, &shape)?;
    put_rows(c, z, idx, updates, Some(R::Sum))
}
