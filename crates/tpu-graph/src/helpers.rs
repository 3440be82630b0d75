//! Helper families shared by lowering rules: broadcasting, dtype promotion,
//! keepdim reductions, dimension wrapping.

use crate::ir::*;
use crate::{DType, GraphError, Result};

/// Wraps a possibly negative dimension index into `0..rank` (rank 0 accepts -1 and 0).
pub fn wrap_dim(dim: i64, rank: usize) -> Result<usize> {
    let r = rank.max(1) as i64;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(GraphError::Index(format!(
            "Dimension out of range (expected to be in range of [{}, {}], but got {dim})",
            -r,
            r - 1
        )));
    }
    Ok(d as usize)
}

/// NumPy/PyTorch broadcast of two shapes.
pub fn broadcast_shapes(a: &[i64], b: &[i64]) -> Result<Vec<i64>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(GraphError::Invalid(format!(
                    "The size of tensor a ({da}) must match the size of tensor b ({db}) at non-singleton dimension {i}"
                )))
            }
        };
    }
    Ok(out)
}

impl Graph {
    /// Broadcasts `x` to `shape`, aligning trailing dimensions.
    pub fn broadcast_to(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        let r = self.rank(x);
        if r > shape.len() {
            return Err(GraphError::Invalid(format!(
                "cannot broadcast {} to {shape:?}",
                self.ty(x)
            )));
        }
        let dims: Vec<i64> = (0..r).map(|i| (shape.len() - r + i) as i64).collect();
        self.broadcast_in_dim(x, shape, &dims)
    }

    /// Converts to `dtype` and broadcasts to `shape`.
    pub fn coerce(&mut self, x: ValueId, dtype: DType, shape: &[i64]) -> Result<ValueId> {
        let c = self.convert(x, dtype);
        self.broadcast_to(c, shape)
    }

    /// Both operands converted to `dtype` and broadcast to their common shape.
    pub fn coerce_pair(
        &mut self,
        a: ValueId,
        b: ValueId,
        dtype: DType,
    ) -> Result<(ValueId, ValueId)> {
        let shape = broadcast_shapes(self.shape(a), self.shape(b))?;
        Ok((
            self.coerce(a, dtype, &shape)?,
            self.coerce(b, dtype, &shape)?,
        ))
    }

    /// A binary op with broadcasting; both operands are converted to `dtype` first.
    pub fn binary_bcast(
        &mut self,
        kind: BinaryKind,
        a: ValueId,
        b: ValueId,
        dtype: DType,
    ) -> Result<ValueId> {
        let (a, b) = self.coerce_pair(a, b, dtype)?;
        self.binary(kind, a, b)
    }

    /// A comparison with broadcasting, computed in `dtype`.
    pub fn compare_bcast(
        &mut self,
        dir: CmpDir,
        a: ValueId,
        b: ValueId,
        dtype: DType,
    ) -> Result<ValueId> {
        let (a, b) = self.coerce_pair(a, b, dtype)?;
        self.compare(dir, a, b)
    }

    /// `select` with broadcasting of all three operands.
    pub fn select_bcast(
        &mut self,
        pred: ValueId,
        a: ValueId,
        b: ValueId,
        dtype: DType,
    ) -> Result<ValueId> {
        let s = broadcast_shapes(self.shape(a), self.shape(b))?;
        let s = broadcast_shapes(&s, self.shape(pred))?;
        let p = self.coerce(pred, DType::Bool, &s)?;
        let a = self.coerce(a, dtype, &s)?;
        let b = self.coerce(b, dtype, &s)?;
        self.select(p, a, b)
    }

    /// A constant of `x`'s shape and the given dtype.
    pub fn full_like(&mut self, x: ValueId, value: f64, dtype: DType) -> ValueId {
        let shape = self.shape(x).to_vec();
        let s = self.scalar(value, dtype);
        self.broadcast_to(s, &shape)
            .expect("scalar broadcasts to any shape")
    }

    /// Reduction over `dims`, keeping reduced dims as 1 if `keepdim`. Float
    /// max/min propagate NaN as PyTorch does (XLA's CPU reduce drops it).
    pub fn reduce_keep(
        &mut self,
        kind: ReduceKind,
        x: ValueId,
        dims: &[usize],
        keepdim: bool,
    ) -> Result<ValueId> {
        let shape = self.shape(x).to_vec();
        let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let mut r = self.reduce(kind, x, &d)?;
        if matches!(kind, ReduceKind::Max | ReduceKind::Min)
            && self.dtype(x).is_float()
            && !dims.is_empty()
        {
            let nan = self.compare(CmpDir::Ne, x, x)?;
            let any = self.reduce(ReduceKind::Or, nan, &d)?;
            let nanc = self.full_like(r, f64::NAN, self.dtype(r));
            r = self.select(any, nanc, r)?;
        }
        if !keepdim {
            return Ok(r);
        }
        let kept: Vec<i64> = shape
            .iter()
            .enumerate()
            .map(|(i, &s)| if dims.contains(&i) { 1 } else { s })
            .collect();
        self.reshape(r, &kept)
    }

    /// Normalises a dim list (negative allowed, empty = all dims) to sorted unique dims.
    pub fn reduce_dims(&self, x: ValueId, dims: &[i64]) -> Result<Vec<usize>> {
        let r = self.rank(x);
        if dims.is_empty() {
            return Ok((0..r).collect());
        }
        let mut out = Vec::with_capacity(dims.len());
        for &d in dims {
            let w = wrap_dim(d, r)?;
            if r == 0 {
                continue;
            }
            if out.contains(&w) {
                return Err(GraphError::Invalid(format!(
                    "dim {w} appears multiple times in the list of dims"
                )));
            }
            out.push(w);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Number of elements over `dims`, as a scalar constant of `dtype`.
    pub fn count_over(&mut self, x: ValueId, dims: &[usize], dtype: DType) -> ValueId {
        let n: i64 = dims.iter().map(|&d| self.shape(x)[d]).product();
        self.scalar(n as f64, dtype)
    }

    /// Multiplies by a host constant, broadcasting it.
    pub fn mul_const(&mut self, x: ValueId, c: f64) -> Result<ValueId> {
        let k = self.full_like(x, c, self.dtype(x));
        self.binary(BinaryKind::Mul, x, k)
    }

    /// `dot` of matrices `[.., m, k] x [.., k, n]` with equal batch dims.
    pub fn matmul_batched(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        let r = self.rank(a) as i64;
        if r < 2 || self.rank(b) as i64 != r {
            return Err(GraphError::Invalid(format!(
                "matmul: {} and {} need equal rank >= 2",
                self.ty(a),
                self.ty(b)
            )));
        }
        let batch: Vec<i64> = (0..r - 2).collect();
        let dims = DotDims {
            lhs_batch: batch.clone(),
            rhs_batch: batch,
            lhs_contract: vec![r - 1],
            rhs_contract: vec![r - 2],
        };
        self.dot(a, b, dims)
    }
}

/// The dtype float math on `d` runs in: half types compute in f32, as PyTorch's
/// `opmath_type` does; everything else keeps its dtype.
pub fn opmath(d: DType) -> DType {
    match d {
        DType::BF16 | DType::F16 => DType::F32,
        _ => d,
    }
}

impl Graph {
    /// `dot` whose result has dtype `out` (XLA's preferred element type), e.g.
    /// bf16 operands accumulated into f32.
    pub fn dot_to(&mut self, a: ValueId, b: ValueId, dims: DotDims, out: DType) -> Result<ValueId> {
        let v = self.dot(a, b, dims)?;
        self.types[v.0 as usize].dtype = out;
        Ok(v)
    }

    /// `convolution` whose result has dtype `out` (accumulation type).
    pub fn convolution_to(
        &mut self,
        x: ValueId,
        w: ValueId,
        attrs: ConvAttrs,
        out: DType,
    ) -> Result<ValueId> {
        let v = self.convolution(x, w, attrs)?;
        self.types[v.0 as usize].dtype = out;
        Ok(v)
    }

    /// Inserts a size-1 dimension at `dim` (`0..=rank`).
    pub fn unsqueeze(&mut self, x: ValueId, dim: usize) -> Result<ValueId> {
        let mut s = self.shape(x).to_vec();
        s.insert(dim, 1);
        self.reshape(x, &s)
    }

    /// `iota` along `dim` broadcast to `shape`, as int64.
    pub fn iota_i64(&mut self, shape: &[i64], dim: usize) -> Result<ValueId> {
        self.iota(DType::I64, shape, dim as i64)
    }

    /// A scalar host constant of `x`'s dtype combined elementwise with `x`.
    pub fn binary_const(&mut self, kind: BinaryKind, x: ValueId, c: f64) -> Result<ValueId> {
        let k = self.full_like(x, c, self.dtype(x));
        self.binary(kind, x, k)
    }

    /// Sum over `dims`, keeping them as size 1, then broadcast back to `x`'s shape.
    pub fn sum_keep_bcast(&mut self, x: ValueId, dims: &[usize]) -> Result<ValueId> {
        let shape = self.shape(x).to_vec();
        let r = self.reduce_keep(ReduceKind::Sum, x, dims, true)?;
        self.broadcast_to(r, &shape)
    }
}

impl Graph {
    /// Removes the listed dimensions, which must have size 1.
    pub fn squeeze_dims(&mut self, x: ValueId, dims: &[usize]) -> Result<ValueId> {
        let shape: Vec<i64> = self
            .shape(x)
            .iter()
            .enumerate()
            .filter(|(i, _)| !dims.contains(i))
            .map(|(_, &s)| s)
            .collect();
        self.reshape(x, &shape)
    }

    /// Inclusive prefix reduction along `dim` (cumsum, cumprod): a reduce_window over the full length.
    pub fn cumulative(&mut self, kind: ReduceKind, x: ValueId, dim: usize) -> Result<ValueId> {
        let r = self.rank(x);
        let n = self.shape(x)[dim];
        if n <= 1 {
            return Ok(x);
        }
        let mut dims = vec![1; r];
        dims[dim] = n;
        let mut padding = vec![(0, 0); r];
        padding[dim] = (n - 1, 0);
        let window = WindowAttrs {
            dims,
            strides: vec![1; r],
            padding,
            base_dilation: vec![1; r],
            window_dilation: vec![1; r],
        };
        self.reduce_window(kind, x, window)
    }
}
