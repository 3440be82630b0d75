//! Small reductions, searches and composites: trace, nansum, count_nonzero,
//! aminmax, isin, bucketize / searchsorted (with sorter), kthvalue, take,
//! logcumsumexp, addbmm, logspace, linalg_cross, index_fill.
//! Searches compare against every boundary (O(n m)), which suits the sizes
//! these ops see.

use crate::args::Arg;
use crate::operands::{bin, cmp, cmp_k, done, isnan, k, operand, opmath, result_type, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind, UnaryKind as U, ValueId};

/// `trace(x)`: the sum of the diagonal (int64 for integer inputs).
fn trace(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.rank(x) != 2 {
        bail!(
            "trace: expected a matrix, but got tensor with dim {}",
            c.g.rank(x)
        );
    }
    let shape = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let out = if d.is_float() { d } else { DType::I64 };
    let row = c.g.iota(DType::I64, &shape, 0)?;
    let col = c.g.iota(DType::I64, &shape, 1)?;
    let on = cmp(c, CmpDir::Eq, row, col)?;
    let xo = c.g.convert(x, opmath(out));
    let zero = k(c, xo, 0.0);
    let m = c.g.select(on, xo, zero)?;
    let s = c.g.reduce_keep(ReduceKind::Sum, m, &[0, 1], false)?;
    done(c, s, out)
}

/// `nansum(x, dim, keepdim, dtype)`: NaN counts as zero.
fn nansum(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = a.opt_dtype(3)?.unwrap_or_else(|| {
        let d = c.g.dtype(x);
        if d.is_float() {
            d
        } else {
            DType::I64
        }
    });
    let dims = c.g.reduce_dims(x, &a.ints_or_empty(1)?)?;
    let xw = c.g.convert(x, opmath(d));
    let nan = isnan(c, xw)?;
    let zero = k(c, xw, 0.0);
    let v = c.g.select(nan, zero, xw)?;
    let s =
        c.g.reduce_keep(ReduceKind::Sum, v, &dims, a.bool_or(2, false)?)?;
    done(c, s, d)
}

/// `count_nonzero(x, dims)`: int64 counts.
fn count_nonzero(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dims = match a.arg(1) {
        Arg::None => vec![],
        _ => a.ints(1)?,
    };
    let dims = c.g.reduce_dims(x, &dims)?;
    let zero = k(c, x, 0.0);
    let nz = cmp(c, CmpDir::Ne, x, zero)?;
    let n = c.g.convert(nz, DType::I64);
    Ok(vec![c.g.reduce_keep(ReduceKind::Sum, n, &dims, false)?])
}

/// `aminmax(x, dim=None, keepdim=False) -> (min, max)`.
fn aminmax(c: &mut LowerCtx, a: &Args) -> Out {
    let mut x = a.t(0)?;
    let keep = a.bool_or(2, false)?;
    let dims = match a.opt_int(1)? {
        Some(dim) => vec![crate::operands::wrap_dim(dim, c.g.rank(x).max(1))?],
        None => {
            if keep {
                (0..c.g.rank(x)).collect()
            } else {
                let n = c.g.ty(x).numel();
                x = c.g.reshape(x, &[n])?;
                vec![0]
            }
        }
    };
    if c.g.rank(x) == 0 {
        return Ok(vec![x, x]);
    }
    let lo = c.g.reduce_keep(ReduceKind::Min, x, &dims, keep)?;
    let hi = c.g.reduce_keep(ReduceKind::Max, x, &dims, keep)?;
    Ok(vec![lo, hi])
}

/// `isin(elements, test_elements, assume_unique, invert)`.
fn isin(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let e = operand(c, a, 0, d)?;
    let t = operand(c, a, 1, d)?;
    let invert = a.bool_or(3, false)?;
    let shape = c.g.shape(e).to_vec();
    let n = c.g.ty(t).numel();
    let t = c.g.reshape(t, &[n])?;
    let r = shape.len();
    let mut full = shape.clone();
    full.push(n);
    let eb =
        c.g.broadcast_in_dim(e, &full, &(0..r as i64).collect::<Vec<_>>())?;
    let tb = c.g.broadcast_in_dim(t, &full, &[r as i64])?;
    let eq = cmp(c, CmpDir::Eq, eb, tb)?;
    let any = c.g.reduce(ReduceKind::Or, eq, &[r as i64])?;
    Ok(vec![if invert { un(c, U::Not, any)? } else { any }])
}

/// Insertion points of `x` in the sorted last dim of `seq` (1-D `seq` applies to every element).
fn insertion(c: &mut LowerCtx, seq: ValueId, x: ValueId, right: bool, int32: bool) -> Out {
    let d = DType::promote(c.g.dtype(seq), c.g.dtype(x));
    let (seq, x) = (c.g.convert(seq, d), c.g.convert(x, d));
    let xs = c.g.shape(x).to_vec();
    let r = xs.len();
    let m = *c.g.shape(seq).last().unwrap_or(&1);
    let mut full = xs.clone();
    full.push(m);
    let xb =
        c.g.broadcast_in_dim(x, &full, &(0..r as i64).collect::<Vec<_>>())?;
    let sb = if c.g.rank(seq) == 1 {
        c.g.broadcast_in_dim(seq, &full, &[r as i64])?
    } else {
        if r == 0 || c.g.rank(seq) != r || c.g.shape(seq)[..r - 1] != xs[..r - 1] {
            bail!("searchsorted: boundaries and input must have the same leading dims");
        }
        let dims: Vec<i64> = (0..r as i64 - 1).chain([r as i64]).collect();
        c.g.broadcast_in_dim(seq, &full, &dims)?
    };
    let below = cmp(c, if right { CmpDir::Le } else { CmpDir::Lt }, sb, xb)?;
    let out = if int32 { DType::I32 } else { DType::I64 };
    let n = c.g.convert(below, out);
    Ok(vec![c.g.reduce(ReduceKind::Sum, n, &[r as i64])?])
}
/// `seq` gathered along its last dim by `sorter` (`seq[..., sorter[..., i]]`).
fn sorted_by(c: &mut LowerCtx, seq: ValueId, sorter: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(seq).to_vec();
    let r = shape.len();
    if r == 0 {
        return Ok(seq);
    }
    let m = shape[r - 1];
    let mut full = shape.clone();
    full.push(m);
    let lead: Vec<i64> = (0..r as i64 - 1).collect();
    let s_dims: Vec<i64> = lead.iter().copied().chain([r as i64 - 1]).collect();
    let v_dims: Vec<i64> = lead.iter().copied().chain([r as i64]).collect();
    let sorter = c.g.convert(sorter, DType::I64);
    let sb = c.g.broadcast_in_dim(sorter, &full, &s_dims)?;
    let j = c.g.iota(DType::I64, &full, r as i64)?;
    let pick = cmp(c, CmpDir::Eq, sb, j)?;
    let vb = c.g.broadcast_in_dim(seq, &full, &v_dims)?;
    let zero = k(c, vb, 0.0);
    let picked = c.g.select(pick, vb, zero)?;
    let picked = if c.g.dtype(picked) == DType::Bool {
        c.g.reduce(ReduceKind::Or, picked, &[r as i64])?
    } else {
        c.g.reduce(ReduceKind::Sum, picked, &[r as i64])?
    };
    Ok(picked)
}

fn bucketize(c: &mut LowerCtx, a: &Args) -> Out {
    let x = operand(c, a, 0, c.g.dtype(a.t(1)?))?;
    insertion(c, a.t(1)?, x, a.bool_or(3, false)?, a.bool_or(2, false)?)
}
fn searchsorted(c: &mut LowerCtx, a: &Args) -> Out {
    let mut seq = a.t(0)?;
    if let Some(sorter) = a.opt_t(5)? {
        seq = sorted_by(c, seq, sorter)?;
    }
    let x = operand(c, a, 1, c.g.dtype(seq))?;
    let right = a.bool_or(3, false)? || a.str(4)? == Some("right");
    insertion(c, seq, x, right, a.bool_or(2, false)?)
}

/// `index_fill(self, dim, index, value)`: `value` in the slices of `dim` named by `index`.
fn index_fill(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let shape = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let r = shape.len();
    let dim = crate::operands::wrap_dim(a.int(1)?, r.max(1))?;
    let idx = a.t(2)?;
    let size = shape.get(dim).copied().unwrap_or(1);
    c.check_range(
        idx,
        (-size, size),
        crate::registry::CheckKind::Index,
        format!("index {{}} is out of bounds for dimension {dim} with size {size}"),
    )?;
    let n = c.g.ty(idx).numel();
    let idx = c.g.reshape(idx, &[n])?;
    let idx = c.g.convert(idx, DType::I64);
    if r == 0 {
        let v = operand(c, a, 3, d)?;
        let eq = cmp_k(c, CmpDir::Eq, idx, 0.0)?;
        let hit = c.g.reduce(ReduceKind::Or, eq, &[0])?;
        return Ok(vec![c.g.select(hit, v, x)?]);
    }
    let size = shape[dim];
    let pos = c.g.iota(DType::I64, &[size, n], 0)?;
    let ib = c.g.broadcast_in_dim(idx, &[size, n], &[1])?;
    let sz = c.g.full_like(ib, size as f64, DType::I64);
    let wrapped = c.g.binary(B::Add, ib, sz)?;
    let neg = cmp_k(c, CmpDir::Lt, ib, 0.0)?;
    let ib = c.g.select(neg, wrapped, ib)?;
    let eq = cmp(c, CmpDir::Eq, pos, ib)?;
    let hit = c.g.reduce(ReduceKind::Or, eq, &[1])?;
    let hit = c.g.broadcast_in_dim(hit, &shape, &[dim as i64])?;
    let v = operand(c, a, 3, d)?;
    let v = c.g.broadcast_to(v, &shape)?;
    Ok(vec![c.g.select(hit, v, x)?])
}

/// `linalg_cross(self, other, dim)`: the cross product of size-3 vectors along `dim`.
fn linalg_cross(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let (x, y) = (a.t(0)?, a.t(1)?);
    let shape = crate::operands::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    let x = c.g.coerce(x, d, &shape)?;
    let y = c.g.coerce(y, d, &shape)?;
    let dim = crate::operands::wrap_dim(a.int_or(2, -1)?, shape.len())?;
    if shape[dim] != 3 {
        bail!(
            "linalg.cross: inputs dimension {dim} must have length 3, got {}",
            shape[dim]
        );
    }
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..3 {
        xs.push(c.g.slice_dim(x, dim, i, i + 1)?);
        ys.push(c.g.slice_dim(y, dim, i, i + 1)?);
    }
    let mut parts = Vec::new();
    for i in 0..3 {
        let (j, l) = ((i + 1) % 3, (i + 2) % 3);
        let p = bin(c, B::Mul, xs[j], ys[l])?;
        let q = bin(c, B::Mul, xs[l], ys[j])?;
        parts.push(bin(c, B::Sub, p, q)?);
    }
    Ok(vec![c.g.concatenate(&parts, dim as i64)?])
}

/// `take(self, index)`: elements of the flattened input (negative indices wrap).
fn take(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, index) = (a.t(0)?, a.t(1)?);
    let n = c.g.ty(x).numel();
    c.check_range(
        index,
        (-n, n),
        crate::registry::CheckKind::Index,
        format!("out of range: tried to access index {{}} on a tensor of {n} elements."),
    )?;
    let flat = c.g.reshape(x, &[n])?;
    let idx = c.g.convert(index, DType::I64);
    let neg = cmp_k(c, CmpDir::Lt, idx, 0.0)?;
    let wrapped = c.g.binary_const(B::Add, idx, n as f64)?;
    let idx = c.g.select(neg, wrapped, idx)?;
    Ok(vec![c.g.take_flat(flat, idx)?])
}

/// `kthvalue(self, k, dim, keepdim) -> (values, indices)`: the k-th smallest (NaN largest).
fn kthvalue(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let kth = a.int(1)?;
    let r = c.g.rank(x);
    let dim = crate::operands::wrap_dim(a.int_or(2, -1)?, r.max(1))?;
    let keep = a.bool_or(3, false)?;
    let x1 = if r == 0 { c.g.reshape(x, &[1])? } else { x };
    let shape = c.g.shape(x1).to_vec();
    if kth < 1 || kth > shape[dim] {
        bail!("kthvalue(): selected number k out of range for dimension {dim}");
    }
    let iota = c.g.iota(DType::I64, &shape, dim as i64)?;
    let sorted = c.g.sort(&[x1, iota], dim as i64, false)?;
    let mut outs = Vec::with_capacity(2);
    for v in sorted {
        let s = c.g.slice_dim(v, dim, kth - 1, kth)?;
        let mut out = shape.clone();
        if keep || r == 0 {
            out[dim] = 1;
            if r == 0 {
                out.clear();
            }
        } else {
            out.remove(dim);
        }
        outs.push(c.g.reshape(s, &out)?);
    }
    Ok(outs)
}

/// `_logcumsumexp(self, dim)`: `m + log(cumsum(exp(x - m)))` with `m` the slice max.
fn logcumsumexp(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let r = c.g.rank(x);
    if r == 0 {
        return Ok(vec![x]);
    }
    let dim = crate::operands::wrap_dim(a.int(1)?, r)?;
    let xu = c.g.convert(x, opmath(d));
    let m = c.g.reduce_keep(ReduceKind::Max, xu, &[dim], true)?;
    let fin = un(c, U::IsFinite, m)?;
    let zero = k(c, m, 0.0);
    let m = c.g.select(fin, m, zero)?;
    let m = c.g.broadcast_to(m, c.g.shape(xu).to_vec().as_slice())?;
    let sh = bin(c, B::Sub, xu, m)?;
    let e = un(c, U::Exp, sh)?;
    let cs = c.g.cumulative(ReduceKind::Sum, e, dim)?;
    let l = un(c, U::Log, cs)?;
    let y = bin(c, B::Add, l, m)?;
    done(c, y, d)
}

/// `addbmm(self, b1, b2, beta, alpha)`: `beta self + alpha sum_b b1[b] @ b2[b]`.
fn addbmm(c: &mut LowerCtx, a: &Args) -> Out {
    let (s, b1, b2) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let d = c.g.dtype(b1);
    if c.g.rank(b1) != 3 || c.g.rank(b2) != 3 {
        bail!("addbmm: batch1 and batch2 must be 3-D tensors");
    }
    let dims = tpu_graph::DotDims {
        lhs_batch: vec![],
        rhs_batch: vec![],
        lhs_contract: vec![0, 2],
        rhs_contract: vec![0, 1],
    };
    let w = opmath(d);
    let (x1, x2) = (c.g.convert(b1, w), c.g.convert(b2, w));
    let mut p = c.g.dot(x1, x2, dims)?;
    let alpha = a.float_or(4, 1.0)?;
    if alpha != 1.0 {
        p = c.g.mul_const(p, alpha)?;
    }
    let beta = a.float_or(3, 1.0)?;
    let shape = c.g.shape(p).to_vec();
    if beta == 0.0 {
        return done(c, p, d);
    }
    let su = c.g.coerce(s, w, &shape)?;
    let su = if beta != 1.0 {
        c.g.mul_const(su, beta)?
    } else {
        su
    };
    let y = bin(c, B::Add, su, p)?;
    done(c, y, d)
}

/// `logspace.out(start, end, steps, base, *, out)`: `base ** linspace(start, end, steps)`.
fn logspace(c: &mut LowerCtx, a: &Args) -> Out {
    let t = c.out_type(0)?.clone();
    let (start, end) = (a.scalar(0)?.as_f64(), a.scalar(1)?.as_f64());
    let n = a.int(2)?;
    let base = a.float_or(3, 10.0)?;
    let w = DType::F64;
    if n <= 0 {
        return Ok(vec![c.g.constant(
            tpu_graph::ConstVal::Int(0),
            t.dtype,
            &[0],
        )]);
    }
    let step = if n > 1 {
        (end - start) / (n - 1) as f64
    } else {
        0.0
    };
    let i = c.g.iota(w, &[n], 0)?;
    let half = k(c, i, (n / 2) as f64);
    let front = c.g.mul_const(i, step)?;
    let front = c.g.binary_const(B::Add, front, start)?;
    let back = c.g.binary_const(B::Sub, i, (n - 1) as f64)?;
    let back = c.g.mul_const(back, step)?;
    let back = c.g.binary_const(B::Add, back, end)?;
    let first = cmp(c, CmpDir::Lt, i, half)?;
    let e = c.g.select(first, front, back)?;
    let b = k(c, e, base);
    let y = bin(c, B::Pow, b, e)?;
    let y = if t.dtype.is_float() {
        y
    } else {
        un(c, U::Floor, y)?
    };
    Ok(vec![c.g.convert(y, t.dtype)])
}

pub fn register(r: &mut Registry) {
    r.add(&["take", "take.out"], take);
    r.add(&["kthvalue", "kthvalue.values"], kthvalue);
    r.add(&["_logcumsumexp", "_logcumsumexp.out"], logcumsumexp);
    r.add(&["addbmm", "addbmm.out", "addbmm_"], addbmm);
    r.add(&["logspace.out"], logspace);
    r.add(&["linalg_cross", "linalg_cross.out"], linalg_cross);
    r.add(
        &[
            "index_fill.int_Scalar",
            "index_fill.int_Tensor",
            "index_fill_.int_Scalar",
            "index_fill_.int_Tensor",
            "index_fill.int_Scalar_out",
            "index_fill.int_Tensor_out",
        ],
        index_fill,
    );
    r.add(&["trace"], trace);
    r.add(&["nansum", "nansum.out"], nansum);
    r.add(
        &[
            "count_nonzero.dim_IntList",
            "count_nonzero",
            "count_nonzero.dim_IntList_out",
            "count_nonzero.out",
        ],
        count_nonzero,
    );
    r.add(&["aminmax", "aminmax.out"], aminmax);
    r.add(
        &[
            "isin.Tensor_Tensor",
            "isin.Tensor_Tensor_out",
            "isin.Tensor_Scalar",
            "isin.Scalar_Tensor",
        ],
        isin,
    );
    r.add(
        &[
            "bucketize.Tensor",
            "bucketize.Tensor_out",
            "bucketize.Scalar",
        ],
        bucketize,
    );
    r.add(
        &[
            "searchsorted.Tensor",
            "searchsorted.Tensor_out",
            "searchsorted.Scalar",
        ],
        searchsorted,
    );
}
