//! Strided reads and writes of a storage's flat value.
//!
//! A storage's value is a rank-1 array; a tensor is a view of it (offset,
//! sizes, strides). Reads and writes use reshape/slice/transpose/broadcast
//! where the strides allow it, and gather/scatter with computed indices
//! otherwise.

use crate::ir::*;
use crate::{DType, GraphError, Result};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct View {
    pub offset: i64,
    pub sizes: Vec<i64>,
    pub strides: Vec<i64>,
}

/// Row-major strides for `sizes`.
pub fn contiguous_strides(sizes: &[i64]) -> Vec<i64> {
    let mut s = vec![1; sizes.len()];
    for i in (0..sizes.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * sizes[i + 1].max(1);
    }
    s
}

/// The layout found for a view whose strides nest: dims sorted by decreasing
/// stride, each stride a multiple of the next.
struct Nested {
    /// Kept dims (size > 1, stride > 0), in decreasing stride order.
    order: Vec<usize>,
    /// Shape of the padded block the span is reshaped into.
    block: Vec<i64>,
    /// Elements spanned from the offset.
    span: i64,
}

impl View {
    pub fn contiguous(sizes: &[i64]) -> View {
        View {
            offset: 0,
            sizes: sizes.to_vec(),
            strides: contiguous_strides(sizes),
        }
    }

    pub fn numel(&self) -> i64 {
        self.sizes.iter().product()
    }

    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for i in (0..self.sizes.len()).rev() {
            if self.sizes[i] != 1 && self.strides[i] != expected {
                return false;
            }
            expected *= self.sizes[i];
        }
        true
    }

    /// True when the view is the whole storage of `len` elements in order.
    pub fn covers(&self, len: i64) -> bool {
        self.offset == 0 && self.numel() == len && self.is_contiguous()
    }

    /// Highest element index the view touches, plus one.
    pub fn extent(&self) -> i64 {
        if self.numel() == 0 {
            return self.offset;
        }
        self.offset
            + self
                .sizes
                .iter()
                .zip(&self.strides)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<i64>()
            + 1
    }

    fn nested(&self) -> Option<Nested> {
        let mut order: Vec<usize> = (0..self.sizes.len())
            .filter(|&i| self.sizes[i] > 1 && self.strides[i] > 0)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.strides[i]));
        if order.is_empty() {
            return None;
        }
        for w in order.windows(2) {
            let (outer, inner) = (w[0], w[1]);
            let (so, si) = (self.strides[outer], self.strides[inner]);
            if so % si != 0 || so < self.sizes[inner] * si {
                return None;
            }
        }
        let first = order[0];
        let mut block = vec![self.sizes[first]];
        for w in order.windows(2) {
            block.push(self.strides[w[0]] / self.strides[w[1]]);
        }
        block.push(self.strides[*order.last().unwrap()]);
        let span = self.sizes[first] * self.strides[first];
        Some(Nested { order, block, span })
    }
}

fn invalid<T>(msg: String) -> Result<T> {
    Err(GraphError::Invalid(msg))
}

impl Graph {
    fn check_view(&self, flat: ValueId, view: &View) -> Result<i64> {
        let t = self.ty(flat);
        if t.rank() != 1 {
            return invalid(format!("storage value must be rank 1, got {t}"));
        }
        let len = t.shape[0];
        if view.sizes.len() != view.strides.len()
            || view.offset < 0
            || view.strides.iter().any(|&s| s < 0)
        {
            return invalid(format!("invalid view {view:?}"));
        }
        if view.numel() > 0 && view.extent() > len {
            return invalid(format!(
                "view with sizes {:?}, strides {:?} and offset {} is out of bounds for a storage of {len} elements",
                view.sizes, view.strides, view.offset
            ));
        }
        Ok(len)
    }

    /// Flat element indices of a view, as an int64 array of the view's shape.
    fn view_indices(&mut self, view: &View) -> Result<ValueId> {
        let mut idx = self.constant(ConstVal::Int(view.offset), DType::I64, &view.sizes);
        for d in 0..view.sizes.len() {
            if view.strides[d] == 0 || view.sizes[d] == 1 {
                continue;
            }
            let iota = self.iota(DType::I64, &view.sizes, d as i64)?;
            let step = self.mul_const(iota, view.strides[d] as f64)?;
            idx = self.binary(BinaryKind::Add, idx, step)?;
        }
        Ok(idx)
    }

    /// The span `[offset, offset + span)` of `flat`, zero-padded past its end, reshaped to `block`.
    fn padded_block(
        &mut self,
        flat: ValueId,
        len: i64,
        offset: i64,
        n: &Nested,
    ) -> Result<ValueId> {
        let end = (offset + n.span).min(len);
        let part = self.slice(flat, &[offset], &[end], &[1])?;
        let part = if end - offset < n.span {
            let zero = self.scalar(0.0, self.dtype(flat));
            self.pad(part, zero, &[0], &[n.span - (end - offset)], &[0])?
        } else {
            part
        };
        self.reshape(part, &n.block)
    }

    pub fn strided_read(&mut self, flat: ValueId, view: &View) -> Result<ValueId> {
        let len = self.check_view(flat, view)?;
        let dtype = self.dtype(flat);
        let numel = view.numel();
        if numel == 0 {
            return Ok(self.constant(ConstVal::Int(0), dtype, &view.sizes));
        }
        if view.is_contiguous() {
            let part = self.slice(flat, &[view.offset], &[view.offset + numel], &[1])?;
            return self.reshape(part, &view.sizes);
        }
        if let Some(n) = view.nested() {
            let block = self.padded_block(flat, len, view.offset, &n)?;
            let limit: Vec<i64> = n.order.iter().map(|&d| view.sizes[d]).chain([1]).collect();
            let zeros = vec![0; limit.len()];
            let sliced = self.slice(block, &zeros, &limit, &vec![1; limit.len()])?;
            let kept = self.reshape(sliced, &limit[..limit.len() - 1])?;
            // Back to the view's dim order, then broadcast over size-1 and stride-0 dims.
            let mut by_dim = n.order.clone();
            by_dim.sort_unstable();
            let perm: Vec<i64> = by_dim
                .iter()
                .map(|d| n.order.iter().position(|o| o == d).unwrap() as i64)
                .collect();
            let ordered = self.transpose(kept, &perm)?;
            let dims: Vec<i64> = by_dim.iter().map(|&d| d as i64).collect();
            return self.broadcast_in_dim(ordered, &view.sizes, &dims);
        }
        let idx = self.view_indices(view)?;
        let idx = self.reshape(idx, &[numel])?;
        let g = self.take_flat(flat, idx)?;
        self.reshape(g, &view.sizes)
    }

    /// The elements of the 1-d `flat` at the int64 positions `idx` (of any
    /// shape, in range), in `idx`'s shape.
    pub fn take_flat(&mut self, flat: ValueId, idx: ValueId) -> Result<ValueId> {
        let mut col = self.shape(idx).to_vec();
        let rank = col.len() as i64;
        col.push(1);
        let idx = self.reshape(idx, &col)?;
        let attrs = GatherAttrs {
            offset_dims: vec![],
            collapsed_slice_dims: vec![0],
            start_index_map: vec![0],
            index_vector_dim: rank,
            slice_sizes: vec![1],
        };
        self.gather(flat, idx, attrs)
    }

    /// Writes `value` (of the view's shape and the storage's dtype) through the
    /// view, returning the storage's new flat value.
    pub fn strided_write(&mut self, flat: ValueId, view: &View, value: ValueId) -> Result<ValueId> {
        let len = self.check_view(flat, view)?;
        let vt = self.ty(value).clone();
        if vt.shape != view.sizes || vt.dtype != self.dtype(flat) {
            return invalid(format!(
                "strided write of {vt} into a view of sizes {:?} of {}",
                view.sizes,
                self.ty(flat)
            ));
        }
        let numel = view.numel();
        if numel == 0 {
            return Ok(flat);
        }
        if view.covers(len) {
            return self.reshape(value, &[len]);
        }
        let at = |g: &mut Graph, i: i64| g.constant(ConstVal::Int(i), DType::I64, &[]);
        if view.is_contiguous() {
            let v = self.reshape(value, &[numel])?;
            let start = at(self, view.offset);
            return self.dynamic_update_slice(flat, v, &[start]);
        }
        let overlapping = view
            .sizes
            .iter()
            .zip(&view.strides)
            .any(|(&n, &s)| n > 1 && s == 0);
        if let (false, Some(n)) = (overlapping, view.nested()) {
            let block = self.padded_block(flat, len, view.offset, &n)?;
            let mut by_dim = n.order.clone();
            by_dim.sort_unstable();
            let kept_sizes: Vec<i64> = by_dim.iter().map(|&d| view.sizes[d]).collect();
            let v = self.reshape(value, &kept_sizes)?;
            let perm: Vec<i64> = n
                .order
                .iter()
                .map(|d| by_dim.iter().position(|b| b == d).unwrap() as i64)
                .collect();
            let v = self.transpose(v, &perm)?;
            let upd_shape: Vec<i64> = n.order.iter().map(|&d| view.sizes[d]).chain([1]).collect();
            let v = self.reshape(v, &upd_shape)?;
            let zeros: Vec<ValueId> = (0..upd_shape.len()).map(|_| at(self, 0)).collect();
            let block = self.dynamic_update_slice(block, v, &zeros)?;
            let block = self.reshape(block, &[n.span])?;
            let keep = n.span.min(len - view.offset);
            let block = self.slice(block, &[0], &[keep], &[1])?;
            let start = at(self, view.offset);
            return self.dynamic_update_slice(flat, block, &[start]);
        }
        let idx = self.view_indices(view)?;
        let idx = self.reshape(idx, &[numel, 1])?;
        let upd = self.reshape(value, &[numel])?;
        let attrs = ScatterAttrs {
            update_window_dims: vec![],
            inserted_window_dims: vec![0],
            scatter_dims_to_operand_dims: vec![0],
            index_vector_dim: 1,
            combine: None,
        };
        self.scatter(flat, idx, upd, attrs)
    }

    /// The bytes of a flat (rank-1) value read as another element type, as
    /// PyTorch's `tensor.view(dtype)` or a byte view of a storage does.
    /// Bool is handled as uint8 (0 or 1).
    pub fn reinterpret_flat(&mut self, flat: ValueId, dtype: DType) -> Result<ValueId> {
        let have = self.dtype(flat);
        if have == dtype {
            return Ok(flat);
        }
        // Complex storage is its parts interleaved (XLA bitcasts no complex types).
        if have.is_complex() {
            let parts = self.complex_to_interleaved(flat)?;
            return self.reinterpret_flat(parts, dtype);
        }
        if dtype.is_complex() {
            let parts = self.reinterpret_flat(flat, dtype.real())?;
            return self.interleaved_to_complex(parts, dtype);
        }
        if have == DType::Bool {
            let bytes = self.convert(flat, DType::U8);
            return self.reinterpret_flat(bytes, dtype);
        }
        if dtype == DType::Bool {
            let bytes = self.reinterpret_flat(flat, DType::U8)?;
            return Ok(self.convert(bytes, DType::Bool));
        }
        let n = self.shape(flat)[0];
        let (from, to) = (have.size() as i64, dtype.size() as i64);
        if from == to {
            return self.bitcast(flat, dtype);
        }
        if from > to {
            // Each element splits into `from / to` narrower ones (little-endian order, as on the host).
            let r = from / to;
            let parts = self.push1(
                Op::BitcastConvert,
                vec![flat],
                ValueType::new(dtype, &[n, r]),
            );
            return self.reshape(parts, &[n * r]);
        }
        let r = to / from;
        if n % r != 0 {
            return invalid(format!(
                "cannot view {n} elements of {have} as {dtype}: the size is not a multiple of {r}"
            ));
        }
        let grouped = self.reshape(flat, &[n / r, r])?;
        Ok(self.push1(
            Op::BitcastConvert,
            vec![grouped],
            ValueType::new(dtype, &[n / r]),
        ))
    }
}
