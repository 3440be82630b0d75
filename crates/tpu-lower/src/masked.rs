//! Mask-driven ops whose result shape does not depend on the data, so they
//! need no host read: nonzero_static (the first `size` coordinates, padded),
//! masked_scatter (the k-th true position takes the k-th source element),
//! and `_efficientzerotensor` (autograd's zero gradients, as plain zeros).
//! Positions come from a running count of the mask, as `dynamic.rs`
//! compacts for `nonzero`.

use crate::operands::{broadcast_shapes, Out};
use crate::registry::{Args, CheckKind, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, ConstVal, DType, ReduceKind as R, ScatterAttrs, ValueId};

/// Row-major flat `x != 0` as int64, and the 0-based rank of each true
/// element among the true ones (meaningless where false).
fn ranks(c: &mut LowerCtx, x: ValueId) -> Result<(ValueId, ValueId)> {
    let n = c.g.ty(x).numel();
    let zero = c.g.full_like(x, 0.0, c.g.dtype(x));
    let m = c.g.compare(CmpDir::Ne, x, zero)?;
    let m = c.g.reshape(m, &[n])?;
    let mi = c.g.convert(m, DType::I64);
    let pos = c.g.cumulative(R::Sum, mi, 0)?;
    let pos = c.g.binary_const(B::Sub, pos, 1.0)?;
    Ok((m, pos))
}

/// `nonzero_static(self, *, size, fill_value=-1)`: int64 `[size, ndim]`, the
/// first `size` coordinates in row-major order, rows past the count filled.
fn nonzero_static(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let size = a.int(1)?;
    let fill = a.int_or(2, -1)?;
    if size < 0 {
        bail!("nonzero_static: 'size' must be an non-negative integer, got {size}");
    }
    let shape = c.g.shape(x).to_vec();
    let r = shape.len() as i64;
    let total: i64 = shape.iter().product();
    let base = c.g.constant(ConstVal::Int(fill), DType::I64, &[size, r]);
    // A 0-dim input has coordinates of width 0.
    if total == 0 || size == 0 || r == 0 {
        return Ok(vec![base]);
    }
    let (m, pos) = ranks(c, x)?;
    let mut coords = Vec::new();
    let mut stride = 1i64;
    for &s in shape.iter().rev() {
        let k = c.g.iota(DType::I64, &[total], 0)?;
        let q = c.g.binary_const(B::Div, k, stride as f64)?;
        let q = c.g.binary_const(B::Rem, q, s as f64)?;
        coords.push(c.g.reshape(q, &[total, 1])?);
        stride *= s;
    }
    coords.reverse();
    let coords = c.g.concatenate(&coords, 1)?;
    // False elements and those past `size` go out of bounds, which scatter drops.
    let oob = c.g.full_like(pos, size as f64, DType::I64);
    let idx = c.g.select(m, pos, oob)?;
    let idx = c.g.reshape(idx, &[total, 1])?;
    let attrs = ScatterAttrs {
        update_window_dims: vec![1],
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: 1,
        combine: None,
    };
    Ok(vec![c.g.scatter(base, idx, coords, attrs)?])
}

/// `masked_scatter_(self, mask, source)` (and the functional and `out=`
/// forms): where the mask (broadcast to `self`) is true, the next element of
/// `source` in row-major order.
fn masked_scatter(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, mask, src) = (a.t(0)?, a.t(1)?, a.t(2)?);
    if c.g.dtype(mask) != DType::Bool {
        bail!(
            "masked_scatter_ only supports boolean masks, but got mask with dtype {}",
            c.g.dtype(mask)
        );
    }
    let d = c.g.dtype(x);
    if c.g.dtype(src) != d {
        bail!(
            "masked_scatter_: expected self and source to have same dtypes but got {d} and {}",
            c.g.dtype(src)
        );
    }
    let shape = match c.out_types.first() {
        Some(t) => t.shape.clone(),
        None => broadcast_shapes(c.g.shape(x), c.g.shape(mask))?,
    };
    let x = c.g.broadcast_to(x, &shape)?;
    let mask = c.g.broadcast_to(mask, &shape)?;
    let total: i64 = shape.iter().product();
    let ns = c.g.ty(src).numel();
    if total == 0 {
        return Ok(vec![x]);
    }
    let (m, pos) = ranks(c, mask)?;
    let mi = c.g.convert(m, DType::I64);
    let count = c.g.reduce(R::Sum, mi, &[0])?;
    c.check_range(
        count,
        (0, ns + 1),
        CheckKind::Runtime,
        format!("masked_scatter: expected source to have at least as many elements as ones in mask ({{}} ones, {ns} elements)"),
    )?;
    if ns == 0 {
        return Ok(vec![x]);
    }
    let flat = c.g.reshape(src, &[ns])?;
    let lo = c.g.full_like(pos, 0.0, DType::I64);
    let hi = c.g.full_like(pos, (ns - 1) as f64, DType::I64);
    let at = c.g.clamp(lo, pos, hi)?;
    let at = c.g.reshape(at, &[total])?;
    let taken = c.g.take_flat(flat, at)?;
    let taken = c.g.reshape(taken, &shape)?;
    let m = c.g.reshape(m, &shape)?;
    Ok(vec![c.g.select(m, taken, x)?])
}

/// `_efficientzerotensor(size, *, dtype, ..)`: zeros (autograd's gradient of
/// ops like `sgn` that are flat almost everywhere).
fn efficient_zero(c: &mut LowerCtx, a: &Args) -> Out {
    let (size, d) = match c.out_types.first() {
        Some(t) => (t.shape.clone(), t.dtype),
        None => (
            a.ints(0)?,
            a.opt_dtype(1)?.unwrap_or(crate::operands::DEFAULT_FLOAT),
        ),
    };
    if size.iter().any(|&s| s < 0) {
        bail!("_efficientzerotensor: negative dimension in size {size:?}");
    }
    Ok(vec![c.g.constant(ConstVal::Int(0), d, &size)])
}

pub fn register(r: &mut Registry) {
    r.add(&["nonzero_static", "nonzero_static.out"], nonzero_static);
    r.add(
        &["masked_scatter_", "masked_scatter", "masked_scatter.out"],
        masked_scatter,
    );
    r.add(
        &["_efficientzerotensor", "_efficientzerotensor.out"],
        efficient_zero,
    );
}
