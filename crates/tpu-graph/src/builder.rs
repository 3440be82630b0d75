//! Node constructors with shape and dtype inference. Each one validates what
//! the plugin would otherwise assert on, so bad input is an error, never an abort.

use crate::dtype::DType;
use crate::ir::*;
use crate::{GraphError, Result};

fn bad<T>(msg: String) -> Result<T> {
    Err(GraphError::Invalid(msg))
}

fn check_dims(what: &str, dims: &[i64], rank: usize) -> Result<()> {
    let mut seen = vec![false; rank];
    for &d in dims {
        if d < 0 || d as usize >= rank || seen[d as usize] {
            return bad(format!(
                "{what}: dimension list {dims:?} is invalid for rank {rank}"
            ));
        }
        seen[d as usize] = true;
    }
    Ok(())
}

impl Graph {
    pub fn constant(&mut self, value: ConstVal, dtype: DType, shape: &[i64]) -> ValueId {
        self.push1(Op::Constant(value), vec![], ValueType::new(dtype, shape))
    }

    /// A 0-dim constant holding `value` converted to `dtype`.
    pub fn scalar(&mut self, value: f64, dtype: DType) -> ValueId {
        let c = match dtype.category() {
            crate::Category::Bool => ConstVal::Bool(value != 0.0),
            crate::Category::Int => ConstVal::Int(value as i64),
            crate::Category::Float => ConstVal::float(value),
            crate::Category::Complex => ConstVal::complex(value, 0.0),
        };
        self.constant(c, dtype, &[])
    }

    pub fn iota(&mut self, dtype: DType, shape: &[i64], dim: i64) -> Result<ValueId> {
        if dim < 0 || dim as usize >= shape.len() {
            return bad(format!(
                "iota: dimension {dim} out of range for shape {shape:?}"
            ));
        }
        Ok(self.push1(Op::Iota(dim), vec![], ValueType::new(dtype, shape)))
    }

    pub fn unary(&mut self, kind: UnaryKind, x: ValueId) -> Result<ValueId> {
        use UnaryKind as K;
        let t = self.ty(x).clone();
        let d = t.dtype;
        let out = match kind {
            K::IsFinite => {
                if !d.is_float() {
                    return bad(format!("isfinite needs a float input, got {d}"));
                }
                t.with_dtype(DType::Bool)
            }
            K::Real | K::Imag => {
                if !d.is_complex() {
                    return bad(format!("{kind:?} needs a complex input, got {d}"));
                }
                t.with_dtype(d.real())
            }
            // |z| of a complex value is real.
            K::Abs if d.is_complex() => t.with_dtype(d.real()),
            K::Not | K::Neg | K::Abs | K::Sign => t,
            _ if d.is_complex() => {
                // The complex math StableHLO and XLA's expanders define.
                let complex_ok = matches!(
                    kind,
                    K::Exp
                        | K::Expm1
                        | K::Log
                        | K::Log1p
                        | K::Sqrt
                        | K::Rsqrt
                        | K::Tanh
                        | K::Logistic
                        | K::Sin
                        | K::Cos
                        | K::Tan
                );
                if !complex_ok {
                    return bad(format!("{kind:?} is not supported for complex input {d}"));
                }
                t
            }
            _ if !d.is_float() => {
                return bad(format!("{kind:?} needs a float input, got {d}"));
            }
            _ => t,
        };
        Ok(self.push1(Op::Unary(kind), vec![x], out))
    }

    /// `what` names the op in the error; `format_args!` defers formatting to
    /// a failure (a `format!` per recorded op showed in the recording profile).
    fn same_type(&self, what: std::fmt::Arguments<'_>, a: ValueId, b: ValueId) -> Result<()> {
        if self.ty(a) != self.ty(b) {
            return bad(format!(
                "{what}: operand types differ: {} vs {}",
                self.ty(a),
                self.ty(b)
            ));
        }
        Ok(())
    }

    pub fn binary(&mut self, kind: BinaryKind, a: ValueId, b: ValueId) -> Result<ValueId> {
        use BinaryKind as K;
        self.same_type(format_args!("{kind:?}"), a, b)?;
        let t = self.ty(a).clone();
        let d = t.dtype;
        if matches!(kind, K::And | K::Or | K::Xor) && d.is_inexact() {
            return bad(format!("{kind:?} needs integer or bool operands, got {d}"));
        }
        if kind == K::Complex {
            if !d.is_float() || d.size() < 4 {
                return bad(format!("complex needs float32 or float64 parts, got {d}"));
            }
            let out = t.with_dtype(d.to_complex());
            return Ok(self.push1(Op::Binary(kind), vec![a, b], out));
        }
        if d.is_complex() && !matches!(kind, K::Add | K::Sub | K::Mul | K::Div | K::Pow) {
            return bad(format!(
                "{kind:?} is not supported for complex operands {d}"
            ));
        }
        Ok(self.push1(Op::Binary(kind), vec![a, b], t))
    }

    pub fn compare(&mut self, dir: CmpDir, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.same_type(format_args!("compare"), a, b)?;
        if self.dtype(a).is_complex() && !matches!(dir, CmpDir::Eq | CmpDir::Ne) {
            return bad(format!(
                "{dir:?} comparison is not defined for complex operands {}",
                self.ty(a)
            ));
        }
        let t = self.ty(a).with_dtype(DType::Bool);
        Ok(self.push1(Op::Compare(dir), vec![a, b], t))
    }

    pub fn select(
        &mut self,
        pred: ValueId,
        on_true: ValueId,
        on_false: ValueId,
    ) -> Result<ValueId> {
        self.same_type(format_args!("select"), on_true, on_false)?;
        let p = self.ty(pred);
        if p.dtype != DType::Bool || p.shape != self.ty(on_true).shape {
            return bad(format!(
                "select: predicate {} does not match {}",
                p,
                self.ty(on_true)
            ));
        }
        let t = self.ty(on_true).clone();
        Ok(self.push1(Op::Select, vec![pred, on_true, on_false], t))
    }

    /// Elementwise clamp; `min` and `max` are 0-dim or of `x`'s shape, of `x`'s dtype.
    pub fn clamp(&mut self, min: ValueId, x: ValueId, max: ValueId) -> Result<ValueId> {
        let t = self.ty(x).clone();
        for b in [min, max] {
            let bt = self.ty(b);
            if bt.dtype != t.dtype || (bt.rank() != 0 && bt.shape != t.shape) {
                return bad(format!("clamp: bound {bt} does not fit operand {t}"));
            }
        }
        Ok(self.push1(Op::Clamp, vec![min, x, max], t))
    }

    pub fn convert(&mut self, x: ValueId, dtype: DType) -> ValueId {
        let from = self.dtype(x);
        if from == dtype {
            return x;
        }
        // XLA converts real to complex, not back: complex to real keeps the real part.
        if from.is_complex() && !dtype.is_complex() {
            let re = self.push1(
                Op::Unary(UnaryKind::Real),
                vec![x],
                self.ty(x).with_dtype(from.real()),
            );
            return self.convert(re, dtype);
        }
        let t = self.ty(x).with_dtype(dtype);
        self.push1(Op::Convert, vec![x], t)
    }

    /// Reinterprets bits; both dtypes must have the same width.
    pub fn bitcast(&mut self, x: ValueId, dtype: DType) -> Result<ValueId> {
        let from = self.dtype(x);
        if from == dtype {
            return Ok(x);
        }
        if from.size() != dtype.size() || from == DType::Bool || dtype == DType::Bool {
            return bad(format!(
                "bitcast from {from} to {dtype} changes the element width"
            ));
        }
        let t = self.ty(x).with_dtype(dtype);
        Ok(self.push1(Op::BitcastConvert, vec![x], t))
    }

    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        let t = self.ty(x);
        if t.shape == shape {
            return Ok(x);
        }
        if shape.iter().any(|&d| d < 0) || t.numel() != shape.iter().product::<i64>() {
            return bad(format!("reshape: cannot reshape {t} to {shape:?}"));
        }
        let nt = ValueType::new(t.dtype, shape);
        Ok(self.push1(Op::Reshape, vec![x], nt))
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[i64]) -> Result<ValueId> {
        let t = self.ty(x);
        check_dims("transpose", perm, t.rank())?;
        if perm.len() != t.rank() {
            return bad(format!(
                "transpose: permutation {perm:?} for rank {}",
                t.rank()
            ));
        }
        if perm.iter().enumerate().all(|(i, &p)| i as i64 == p) {
            return Ok(x);
        }
        let shape: Vec<i64> = perm.iter().map(|&p| t.shape[p as usize]).collect();
        let nt = ValueType::new(t.dtype, &shape);
        Ok(self.push1(Op::Transpose(perm.to_vec()), vec![x], nt))
    }

    /// `dims[i]` is the result dimension that operand dimension `i` maps to.
    pub fn broadcast_in_dim(&mut self, x: ValueId, shape: &[i64], dims: &[i64]) -> Result<ValueId> {
        let t = self.ty(x);
        if dims.len() != t.rank() {
            return bad(format!("broadcast: {} dims for operand {t}", dims.len()));
        }
        check_dims("broadcast", dims, shape.len())?;
        for (i, &d) in dims.iter().enumerate() {
            let s = t.shape[i];
            if s != 1 && s != shape[d as usize] {
                return bad(format!("broadcast: cannot broadcast {t} to {shape:?}"));
            }
        }
        if t.shape == shape {
            return Ok(x);
        }
        let nt = ValueType::new(t.dtype, shape);
        Ok(self.push1(Op::BroadcastInDim(dims.to_vec()), vec![x], nt))
    }

    pub fn slice(
        &mut self,
        x: ValueId,
        start: &[i64],
        limit: &[i64],
        stride: &[i64],
    ) -> Result<ValueId> {
        let t = self.ty(x);
        let r = t.rank();
        if start.len() != r || limit.len() != r || stride.len() != r {
            return bad(format!("slice: rank mismatch for {t}"));
        }
        let mut shape = Vec::with_capacity(r);
        for i in 0..r {
            if start[i] < 0 || limit[i] < start[i] || limit[i] > t.shape[i] || stride[i] < 1 {
                return bad(format!(
                    "slice: [{}:{}:{}] out of range for dim {i} of {t}",
                    start[i], limit[i], stride[i]
                ));
            }
            shape.push((limit[i] - start[i] + stride[i] - 1) / stride[i]);
        }
        if shape == t.shape {
            return Ok(x);
        }
        let nt = ValueType::new(t.dtype, &shape);
        let op = Op::Slice {
            start: start.to_vec(),
            limit: limit.to_vec(),
            stride: stride.to_vec(),
        };
        Ok(self.push1(op, vec![x], nt))
    }

    /// Slice of one dimension with stride 1.
    pub fn slice_dim(&mut self, x: ValueId, dim: usize, start: i64, limit: i64) -> Result<ValueId> {
        let r = self.rank(x);
        let mut s = vec![0; r];
        let mut l = self.shape(x).to_vec();
        s[dim] = start;
        l[dim] = limit;
        self.slice(x, &s, &l, &vec![1; r])
    }

    pub fn dynamic_update_slice(
        &mut self,
        x: ValueId,
        update: ValueId,
        starts: &[ValueId],
    ) -> Result<ValueId> {
        let (t, u) = (self.ty(x).clone(), self.ty(update).clone());
        if t.dtype != u.dtype || t.rank() != u.rank() || starts.len() != t.rank() {
            return bad(format!("dynamic_update_slice: update {u} does not fit {t}"));
        }
        if u.shape.iter().zip(&t.shape).any(|(a, b)| a > b) {
            return bad(format!("dynamic_update_slice: update {u} larger than {t}"));
        }
        let mut inputs = vec![x, update];
        inputs.extend_from_slice(starts);
        Ok(self.push1(Op::DynamicUpdateSlice, inputs, t))
    }

    pub fn dynamic_slice(
        &mut self,
        x: ValueId,
        starts: &[ValueId],
        sizes: &[i64],
    ) -> Result<ValueId> {
        let t = self.ty(x).clone();
        if starts.len() != t.rank()
            || sizes.len() != t.rank()
            || sizes.iter().zip(&t.shape).any(|(a, b)| a > b || *a < 0)
        {
            return bad(format!("dynamic_slice: sizes {sizes:?} do not fit {t}"));
        }
        let mut inputs = vec![x];
        inputs.extend_from_slice(starts);
        Ok(self.push1(
            Op::DynamicSlice(sizes.to_vec()),
            inputs,
            ValueType::new(t.dtype, sizes),
        ))
    }

    pub fn concatenate(&mut self, xs: &[ValueId], dim: i64) -> Result<ValueId> {
        if xs.is_empty() {
            return bad("concatenate: no operands".into());
        }
        if xs.len() == 1 {
            return Ok(xs[0]);
        }
        let first = self.ty(xs[0]).clone();
        if dim < 0 || dim as usize >= first.rank() {
            return bad(format!("concatenate: dim {dim} out of range for {first}"));
        }
        let mut shape = first.shape.clone();
        shape[dim as usize] = 0;
        for &x in xs {
            let t = self.ty(x);
            let same = t.dtype == first.dtype
                && t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == dim as usize || t.shape[i] == first.shape[i]);
            if !same {
                return bad(format!(
                    "concatenate: {t} does not match {first} outside dim {dim}"
                ));
            }
            shape[dim as usize] += t.shape[dim as usize];
        }
        Ok(self.push1(
            Op::Concatenate(dim),
            xs.to_vec(),
            ValueType::new(first.dtype, &shape),
        ))
    }

    pub fn pad(
        &mut self,
        x: ValueId,
        value: ValueId,
        low: &[i64],
        high: &[i64],
        interior: &[i64],
    ) -> Result<ValueId> {
        let t = self.ty(x).clone();
        let r = t.rank();
        if low.len() != r || high.len() != r || interior.len() != r || self.rank(value) != 0 {
            return bad(format!("pad: rank mismatch for {t}"));
        }
        let mut shape = Vec::with_capacity(r);
        for i in 0..r {
            let inner = if t.shape[i] == 0 {
                0
            } else {
                (t.shape[i] - 1) * interior[i]
            };
            let n = low[i] + high[i] + t.shape[i] + inner;
            if n < 0 || interior[i] < 0 {
                return bad(format!("pad: negative size for dim {i} of {t}"));
            }
            shape.push(n);
        }
        let op = Op::Pad {
            low: low.to_vec(),
            high: high.to_vec(),
            interior: interior.to_vec(),
        };
        Ok(self.push1(op, vec![x, value], ValueType::new(t.dtype, &shape)))
    }

    pub fn reverse(&mut self, x: ValueId, dims: &[i64]) -> Result<ValueId> {
        check_dims("reverse", dims, self.rank(x))?;
        if dims.is_empty() {
            return Ok(x);
        }
        let t = self.ty(x).clone();
        Ok(self.push1(Op::Reverse(dims.to_vec()), vec![x], t))
    }

    /// Reduces `dims` away (no keepdim).
    pub fn reduce(&mut self, kind: ReduceKind, x: ValueId, dims: &[i64]) -> Result<ValueId> {
        let t = self.ty(x).clone();
        check_dims("reduce", dims, t.rank())?;
        if matches!(kind, ReduceKind::And | ReduceKind::Or) && t.dtype != DType::Bool {
            return bad(format!("reduce {kind:?} needs bool, got {}", t.dtype));
        }
        let mut d = dims.to_vec();
        d.sort_unstable();
        let shape: Vec<i64> = (0..t.rank())
            .filter(|i| !d.contains(&(*i as i64)))
            .map(|i| t.shape[i])
            .collect();
        Ok(self.push1(
            Op::Reduce { kind, dims: d },
            vec![x],
            ValueType::new(t.dtype, &shape),
        ))
    }

    /// int64 index of the first max/min along `dim`, which is removed.
    pub fn arg_reduce(&mut self, max: bool, x: ValueId, dim: i64) -> Result<ValueId> {
        let t = self.ty(x).clone();
        check_dims("argmax/argmin", &[dim], t.rank())?;
        let shape: Vec<i64> = (0..t.rank())
            .filter(|&i| i as i64 != dim)
            .map(|i| t.shape[i])
            .collect();
        Ok(self.push1(
            Op::ArgReduce { max, dim },
            vec![x],
            ValueType::new(DType::I64, &shape),
        ))
    }

    /// dot_general: result is batch dims, then lhs free dims, then rhs free dims.
    pub fn dot(&mut self, a: ValueId, b: ValueId, dims: DotDims) -> Result<ValueId> {
        let (a, b, dims) = crate::fold::dot_operands(self, a, b, dims);
        let (ta, tb) = (self.ty(a).clone(), self.ty(b).clone());
        if ta.dtype != tb.dtype {
            return bad(format!("dot: dtypes differ: {ta} vs {tb}"));
        }
        check_dims(
            "dot lhs",
            &[dims.lhs_batch.clone(), dims.lhs_contract.clone()].concat(),
            ta.rank(),
        )?;
        check_dims(
            "dot rhs",
            &[dims.rhs_batch.clone(), dims.rhs_contract.clone()].concat(),
            tb.rank(),
        )?;
        let pairs = dims
            .lhs_batch
            .iter()
            .zip(&dims.rhs_batch)
            .chain(dims.lhs_contract.iter().zip(&dims.rhs_contract));
        if dims.lhs_batch.len() != dims.rhs_batch.len()
            || dims.lhs_contract.len() != dims.rhs_contract.len()
        {
            return bad(format!(
                "dot: dimension lists do not pair up for {ta} and {tb}"
            ));
        }
        for (&l, &r) in pairs {
            if ta.shape[l as usize] != tb.shape[r as usize] {
                return bad(format!("dot: size mismatch, {ta} dim {l} vs {tb} dim {r}"));
            }
        }
        let mut shape: Vec<i64> = dims
            .lhs_batch
            .iter()
            .map(|&d| ta.shape[d as usize])
            .collect();
        let free = |t: &ValueType, batch: &[i64], contract: &[i64]| -> Vec<i64> {
            (0..t.rank() as i64)
                .filter(|d| !batch.contains(d) && !contract.contains(d))
                .map(|d| t.shape[d as usize])
                .collect()
        };
        shape.extend(free(&ta, &dims.lhs_batch, &dims.lhs_contract));
        shape.extend(free(&tb, &dims.rhs_batch, &dims.rhs_contract));
        Ok(self.push1(Op::Dot(dims), vec![a, b], ValueType::new(ta.dtype, &shape)))
    }

    /// Convolution with input `[N, C, spatial..]`, kernel `[O, C/groups, spatial..]`.
    pub fn convolution(&mut self, x: ValueId, w: ValueId, attrs: ConvAttrs) -> Result<ValueId> {
        let (tx, tw) = (self.ty(x).clone(), self.ty(w).clone());
        let nsp = tx.rank().saturating_sub(2);
        let fits = tx.rank() >= 3
            && tw.rank() == tx.rank()
            && tx.dtype == tw.dtype
            && [
                attrs.strides.len(),
                attrs.padding.len(),
                attrs.lhs_dilation.len(),
                attrs.rhs_dilation.len(),
            ]
            .iter()
            .all(|&n| n == nsp)
            && attrs.feature_groups >= 1
            && attrs.batch_groups >= 1
            && tx.shape[1] == tw.shape[1] * attrs.feature_groups
            && tw.shape[0] % (attrs.feature_groups * attrs.batch_groups) == 0
            && tx.shape[0] % attrs.batch_groups == 0;
        if !fits {
            return bad(format!(
                "convolution: input {tx} and weight {tw} do not fit {attrs:?}"
            ));
        }
        let mut shape = vec![tx.shape[0] / attrs.batch_groups, tw.shape[0]];
        for i in 0..nsp {
            let input = (tx.shape[2 + i] - 1) * attrs.lhs_dilation[i]
                + 1
                + attrs.padding[i].0
                + attrs.padding[i].1;
            let window = (tw.shape[2 + i] - 1) * attrs.rhs_dilation[i] + 1;
            if input < window || attrs.strides[i] < 1 {
                return bad(format!(
                    "convolution: kernel {tw} larger than padded input {tx}"
                ));
            }
            shape.push((input - window) / attrs.strides[i] + 1);
        }
        Ok(self.push1(
            Op::Convolution(attrs),
            vec![x, w],
            ValueType::new(tx.dtype, &shape),
        ))
    }

    pub fn reduce_window(
        &mut self,
        kind: ReduceKind,
        x: ValueId,
        window: WindowAttrs,
    ) -> Result<ValueId> {
        let t = self.ty(x).clone();
        let r = t.rank();
        let lens = [
            window.dims.len(),
            window.strides.len(),
            window.padding.len(),
            window.base_dilation.len(),
            window.window_dilation.len(),
        ];
        if lens.iter().any(|&n| n != r) {
            return bad(format!("reduce_window: window rank does not match {t}"));
        }
        let mut shape = Vec::with_capacity(r);
        for i in 0..r {
            let input = (t.shape[i] - 1) * window.base_dilation[i]
                + 1
                + window.padding[i].0
                + window.padding[i].1;
            let w = (window.dims[i] - 1) * window.window_dilation[i] + 1;
            if input < w || window.strides[i] < 1 {
                return bad(format!(
                    "reduce_window: window {:?} larger than padded input {t}",
                    window.dims
                ));
            }
            shape.push((input - w) / window.strides[i] + 1);
        }
        Ok(self.push1(
            Op::ReduceWindow { kind, window },
            vec![x],
            ValueType::new(t.dtype, &shape),
        ))
    }

    pub fn gather(&mut self, x: ValueId, indices: ValueId, attrs: GatherAttrs) -> Result<ValueId> {
        let (t, it) = (self.ty(x).clone(), self.ty(indices).clone());
        if !it.dtype.is_int() || attrs.slice_sizes.len() != t.rank() {
            return bad(format!(
                "gather: indices {it} or slice sizes do not fit {t}"
            ));
        }
        // Batch dims are the index dims without index_vector_dim; offset dims are
        // the slice dims that were not collapsed, placed at `offset_dims`.
        let batch: Vec<i64> = it
            .shape
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as i64 != attrs.index_vector_dim)
            .map(|(_, &d)| d)
            .collect();
        let offsets: Vec<i64> = attrs
            .slice_sizes
            .iter()
            .enumerate()
            .filter(|(i, _)| !attrs.collapsed_slice_dims.contains(&(*i as i64)))
            .map(|(_, &d)| d)
            .collect();
        let rank = batch.len() + offsets.len();
        if offsets.len() != attrs.offset_dims.len() {
            return bad(format!(
                "gather: offset_dims {:?} do not fit {t}",
                attrs.offset_dims
            ));
        }
        let (mut bi, mut oi) = (0, 0);
        let mut shape = Vec::with_capacity(rank);
        for d in 0..rank as i64 {
            if attrs.offset_dims.contains(&d) {
                shape.push(offsets[oi]);
                oi += 1;
            } else {
                shape.push(batch[bi]);
                bi += 1;
            }
        }
        Ok(self.push1(
            Op::Gather(attrs),
            vec![x, indices],
            ValueType::new(t.dtype, &shape),
        ))
    }

    pub fn scatter(
        &mut self,
        x: ValueId,
        indices: ValueId,
        updates: ValueId,
        attrs: ScatterAttrs,
    ) -> Result<ValueId> {
        let (t, it, ut) = (
            self.ty(x).clone(),
            self.ty(indices).clone(),
            self.ty(updates).clone(),
        );
        if !it.dtype.is_int() || ut.dtype != t.dtype {
            return bad(format!(
                "scatter: indices {it} or updates {ut} do not fit {t}"
            ));
        }
        Ok(self.push1(Op::Scatter(attrs), vec![x, indices, updates], t))
    }

    /// Returns (new state, bits) where bits has `shape` and an unsigned dtype.
    pub fn rng_bit_generator(
        &mut self,
        state: ValueId,
        dtype: DType,
        shape: &[i64],
    ) -> Result<(ValueId, ValueId)> {
        let st = self.ty(state).clone();
        if st.dtype != DType::U64 || st.shape != [2] || !matches!(dtype, DType::U32 | DType::U64) {
            return bad(format!(
                "rng_bit_generator: state {st} must be tensor<2xui64>"
            ));
        }
        let out = self.push(
            Op::RngBitGenerator,
            vec![state],
            vec![st, ValueType::new(dtype, shape)],
        );
        Ok((out[0], out[1]))
    }

    /// Stable sort along `dim` keyed by the first operand; returns one result per operand.
    pub fn sort(
        &mut self,
        operands: &[ValueId],
        dim: i64,
        descending: bool,
    ) -> Result<Vec<ValueId>> {
        let t0 = self.ty(operands[0]).clone();
        check_dims("sort", &[dim], t0.rank())?;
        let types: Vec<ValueType> = operands.iter().map(|&o| self.ty(o).clone()).collect();
        if types.iter().any(|t| t.shape != t0.shape) {
            return bad("sort: operand shapes differ".into());
        }
        Ok(self.push(Op::Sort { dim, descending }, operands.to_vec(), types))
    }

    /// Cholesky factorization of `[.., n, n]` float matrices (result of the same type).
    /// Calls `f.symbol` (one of `f`'s functions) on `inputs`; its results have `out_types`.
    pub fn call(
        &mut self,
        f: std::sync::Arc<ExternalFunctions>,
        inputs: &[ValueId],
        out_types: Vec<ValueType>,
    ) -> Result<Vec<ValueId>> {
        if !f.text.contains(&format!("@{}(", f.symbol)) {
            return bad(format!(
                "call: @{} is not among the functions given",
                f.symbol
            ));
        }
        Ok(self.push(Op::Call(f), inputs.to_vec(), out_types))
    }

    pub fn cholesky(&mut self, a: ValueId, lower: bool) -> Result<ValueId> {
        let t = self.ty(a).clone();
        let r = t.rank();
        if r < 2 || t.shape[r - 1] != t.shape[r - 2] || !t.dtype.is_float() {
            return bad(format!(
                "cholesky: expected square float matrices [.., n, n], got {t}"
            ));
        }
        Ok(self.push1(Op::Cholesky { lower }, vec![a], t))
    }

    /// Triangular solve with `a: [.., m, m]` and `b: [.., m, k]` (`left_side`)
    /// or `[.., k, m]`; the result has `b`'s type.
    pub fn triangular_solve(
        &mut self,
        a: ValueId,
        b: ValueId,
        left_side: bool,
        lower: bool,
        unit_diagonal: bool,
        transpose_a: bool,
    ) -> Result<ValueId> {
        let (ta, tb) = (self.ty(a).clone(), self.ty(b).clone());
        let r = ta.rank();
        let fits = r >= 2
            && tb.rank() == r
            && ta.dtype == tb.dtype
            && (ta.dtype.is_float() || ta.dtype.is_complex())
            && ta.shape[r - 1] == ta.shape[r - 2]
            && ta.shape[..r - 2] == tb.shape[..r - 2]
            && ta.shape[r - 1] == tb.shape[if left_side { r - 2 } else { r - 1 }];
        if !fits {
            return bad(format!(
                "triangular_solve: matrix {ta} does not fit right-hand side {tb} (left_side = {left_side})"
            ));
        }
        let op = Op::TriangularSolve {
            left_side,
            lower,
            unit_diagonal,
            transpose_a,
        };
        Ok(self.push1(op, vec![a, b], tb))
    }
}
