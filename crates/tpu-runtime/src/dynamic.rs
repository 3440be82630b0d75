//! Ops whose result shape depends on values (`nonzero`, `masked_select`,
//! `unique`, indexing with a bool mask) or that answer on the host (`equal`):
//! the number of selected elements is read to the host first (a sync), then a
//! program of that size compacts the elements on the device.

use crate::error::Result;
use crate::op::{self, ArgIn, CallArg, Outcome, Ret, RuntimeOp, TensorIn};
use crate::trace::Trace;
use crate::{exec, record, storage};
use tpu_graph::{CmpDir, DType, ReduceKind, ScatterAttrs, ValueId};

/// The runtime ops of this module, for the op table (`dispatch.rs`).
pub const OPS: &[(&str, RuntimeOp)] = &[
    ("nonzero", |a| done(a, nonzero)),
    ("masked_select", |a| done(a, masked_select)),
    ("equal", |a| done(a, equal)),
    ("_unique2", |a| done(a, |a| unique(a, true))),
    // `_unique(self, sorted, return_inverse)`: the values always come
    // sorted (allowed for `sorted=False`); no counts.
    ("_unique", |a| {
        done(a, |a| Ok(unique(a, true)?.into_iter().take(2).collect()))
    }),
    ("unique_consecutive", |a| done(a, |a| unique(a, false))),
];

/// Runs `f`, a program of its own: pending inputs are computed first.
fn done(args: &[CallArg], f: fn(&[CallArg]) -> Result<Vec<Ret>>) -> Result<Outcome> {
    for a in args {
        if let ArgIn::Tensor(TensorIn::Tpu { storage, .. }) = &a.arg {
            crate::fused::ensure_computed(storage, "data-dependent shape")?;
        }
    }
    f(args).map(Outcome::Done)
}

/// Row-major flat truth values of `x != 0`, as int64.
fn flat_mask(t: &mut Trace, x: ValueId) -> Result<ValueId> {
    let g = &mut t.g;
    let n: i64 = g.shape(x).iter().product();
    let zero = g.full_like(x, 0.0, g.dtype(x));
    let m = g.compare(CmpDir::Ne, x, zero)?;
    let m = g.convert(m, DType::I64);
    Ok(g.reshape(m, &[n])?)
}

/// Number of true elements: runs now and reads one int64 back.
fn count(device: usize, build: impl FnOnce(&mut Trace) -> Result<ValueId>) -> Result<i64> {
    let ((), mut out) = exec::now(device, "data-dependent shape", &[], |t| {
        let m = build(t)?;
        let total = t.g.reduce(ReduceKind::Sum, m, &[0])?;
        t.extra_outputs.push(total);
        t.note_op("count_nonzero");
        Ok(())
    })?;
    let buf = out.pop().expect("one output");
    let mut bytes = [0u8; 8];
    buf.to_host(&mut bytes)?;
    Ok(i64::from_le_bytes(bytes))
}

/// Scatters rows of `updates` (`[N, ..]`) whose flat mask is set into `[count, ..]`, in order.
fn compact(t: &mut Trace, mask: ValueId, updates: ValueId, count: i64) -> Result<ValueId> {
    let g = &mut t.g;
    let n = g.shape(mask)[0];
    let pos = g.cumulative(ReduceKind::Sum, mask, 0)?;
    let one = g.full_like(pos, 1.0, DType::I64);
    let pos = g.binary(tpu_graph::BinaryKind::Sub, pos, one)?;
    // Unselected rows go out of bounds, which scatter drops.
    let oob = g.full_like(pos, count as f64, DType::I64);
    let zero = g.full_like(mask, 0.0, DType::I64);
    let sel = g.compare(CmpDir::Ne, mask, zero)?;
    let idx = g.select(sel, pos, oob)?;
    let idx = g.reshape(idx, &[n, 1])?;
    let mut shape = g.shape(updates).to_vec();
    shape[0] = count;
    let dtype = g.dtype(updates);
    let base = g.constant(tpu_graph::ConstVal::Int(0), dtype, &shape);
    let window: Vec<i64> = (1..shape.len() as i64).collect();
    let attrs = ScatterAttrs {
        update_window_dims: window,
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: 1,
        combine: None,
    };
    Ok(g.scatter(base, idx, updates, attrs)?)
}

fn new_result(t: &mut Trace, v: ValueId) -> Result<Ret> {
    let ty = t.g.ty(v).clone();
    let s = storage::new_storage(ty.numel() as usize * ty.dtype.size(), t.device)?;
    let flat = t.g.reshape(v, &[ty.numel()])?;
    t.write_storage(&s, flat);
    Ok(Ret::New {
        storage: s,
        sizes: ty.shape,
        dtype: ty.dtype,
    })
}

/// `nonzero(self)`: int64 `[count, ndim]` coordinates, row-major order.
fn nonzero(args: &[CallArg]) -> Result<Vec<Ret>> {
    let x = op::tensor_at(args, 0)?;
    let device = op::device_of(args)?;
    Ok(vec![nonzero_of(x, device)?])
}

fn nonzero_of(x: &TensorIn, device: usize) -> Result<Ret> {
    let n = count(device, |t| {
        let v = record::read_arg(t, x)?.v;
        flat_mask(t, v)
    })?;
    let sizes = x.sizes().to_vec();
    let (ret, _) = exec::now(device, "nonzero", &[], |t| {
        let v = record::read_arg(t, x)?.v;
        let mask = flat_mask(t, v)?;
        let total: i64 = sizes.iter().product();
        let r = sizes.len().max(1) as i64;
        let mut coords = Vec::new();
        let mut stride = 1i64;
        for &s in sizes.iter().rev() {
            let k = t.g.iota(DType::I64, &[total], 0)?;
            let q =
                t.g.binary_const(tpu_graph::BinaryKind::Div, k, stride as f64)?;
            let c =
                t.g.binary_const(tpu_graph::BinaryKind::Rem, q, s.max(1) as f64)?;
            coords.push(t.g.reshape(c, &[total, 1])?);
            stride *= s;
        }
        coords.reverse();
        let coords = if coords.is_empty() {
            t.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &[total, 0])
        } else {
            t.g.concatenate(&coords, 1)?
        };
        let _ = r;
        let out = compact(t, mask, coords, n)?;
        let ret = new_result(t, out)?;
        t.note_op("nonzero");
        Ok(ret)
    })?;
    Ok(ret)
}

/// `masked_select(self, mask)`: the elements where the broadcast mask is true.
fn masked_select(args: &[CallArg]) -> Result<Vec<Ret>> {
    let (x, m) = (op::tensor_at(args, 0)?, op::tensor_at(args, 1)?);
    let device = op::device_of(args)?;
    let shape = tpu_graph::helpers::broadcast_shapes(x.sizes(), m.sizes())?;
    let read_both = |t: &mut Trace| -> Result<(ValueId, ValueId)> {
        let xv = record::read_arg(t, x)?.v;
        let mv = record::read_arg(t, m)?.v;
        Ok((t.g.broadcast_to(xv, &shape)?, t.g.broadcast_to(mv, &shape)?))
    };
    let n = count(device, |t| {
        let (_, mv) = read_both(t)?;
        flat_mask(t, mv)
    })?;
    let (ret, _) = exec::now(device, "masked_select", &[], |t| {
        let (xv, mv) = read_both(t)?;
        let mask = flat_mask(t, mv)?;
        let total: i64 = shape.iter().product();
        let values = t.g.reshape(xv, &[total])?;
        let out = compact(t, mask, values, n)?;
        let ret = new_result(t, out)?;
        t.note_op("masked_select");
        Ok(ret)
    })?;
    Ok(vec![ret])
}

/// Index lists with bool masks (`x[mask]`, `x[mask] = v`) become int64 index
/// tensors: each k-dim mask is replaced by the k columns of its `nonzero`, as
/// PyTorch's own indexing does. Returns the rewritten arguments, if any.
pub fn expand_bool_indices<'a>(op: &str, args: &[CallArg<'a>]) -> Result<Option<Vec<CallArg<'a>>>> {
    if !(op.starts_with("index.Tensor")
        || op.starts_with("index_put")
        || op.starts_with("_index_put_impl"))
    {
        return Ok(None);
    }
    let Some(pos) = args.iter().position(|a| matches!(&a.arg, ArgIn::Tensors(ts) if ts.iter().flatten().any(|t| t.dtype() == DType::Bool)))
    else {
        return Ok(None);
    };
    let ArgIn::Tensors(list) = &args[pos].arg else {
        unreachable!()
    };
    let device = op::device_of(args)?;
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        match entry {
            Some(mask) if mask.dtype() == DType::Bool => {
                if let TensorIn::Tpu { storage, .. } = mask {
                    crate::fused::ensure_computed(storage, "data-dependent shape")?;
                }
                let Ret::New { storage, sizes, .. } = nonzero_of(mask, device)? else {
                    unreachable!()
                };
                let (n, k) = (sizes[0], sizes[1]);
                for j in 0..k {
                    let view = tpu_graph::View {
                        offset: j,
                        sizes: vec![n],
                        strides: vec![k],
                    };
                    out.push(Some(TensorIn::Tpu {
                        storage: storage.clone(),
                        view,
                        dtype: DType::I64,
                        device,
                        bits: Default::default(),
                    }));
                }
            }
            other => out.push(other.clone()),
        }
    }
    let mut rewritten = args.to_vec();
    rewritten[pos] = CallArg {
        arg: ArgIn::Tensors(out),
        is_write: args[pos].is_write,
        is_out: args[pos].is_out,
    };
    Ok(Some(rewritten))
}

/// `equal(self, other)`: same sizes and all elements equal, read to the host.
fn equal(args: &[CallArg]) -> Result<Vec<Ret>> {
    let (a, b) = (op::tensor_at(args, 0)?, op::tensor_at(args, 1)?);
    if a.sizes() != b.sizes() {
        return Ok(vec![Ret::Bool(false)]);
    }
    let device = op::device_of(args)?;
    let d = DType::promote(a.dtype(), b.dtype());
    let ((), mut out) = exec::now(device, "read to host", &[], |t| {
        let (x, y) = (record::read_arg(t, a)?.v, record::read_arg(t, b)?.v);
        let (x, y) = (t.g.convert(x, d), t.g.convert(y, d));
        let same = t.g.compare(CmpDir::Eq, x, y)?;
        let n: i64 = a.sizes().iter().product();
        let same = t.g.reshape(same, &[n])?;
        let all = t.g.reduce(ReduceKind::And, same, &[0])?;
        t.extra_outputs.push(all);
        t.note_op("equal");
        Ok(())
    })?;
    let buf = out.pop().expect("one output");
    let mut byte = [0u8; 1];
    buf.to_host(&mut byte)?;
    Ok(vec![Ret::Bool(byte[0] != 0)])
}

/// `_unique2(self, sorted, return_inverse, return_counts)` (`sort` true) and
/// `unique_consecutive(self, return_inverse, return_counts, dim=None)`:
/// (values, inverse, counts), inverse and counts empty unless asked for.
fn unique(args: &[CallArg], sort: bool) -> Result<Vec<Ret>> {
    let x = op::tensor_at(args, 0)?;
    let flag = |i: usize| {
        matches!(
            args.get(i).map(|a| &a.arg),
            Some(ArgIn::Value(tpu_lower::Arg::Bool(true)))
        )
    };
    let (want_inverse, want_counts) = if sort {
        (flag(2), flag(3))
    } else {
        (flag(1), flag(2))
    };
    if !sort
        && !matches!(
            args.get(3).map(|a| &a.arg),
            None | Some(ArgIn::Value(tpu_lower::Arg::None))
        )
    {
        crate::invalid!("unique_consecutive with a dim is not supported on tpu");
    }
    let device = op::device_of(args)?;
    let total: i64 = x.sizes().iter().product();
    // Sorted values, where each came from, and 1 where a new value starts.
    let groups = |t: &mut Trace| -> Result<(ValueId, ValueId, ValueId)> {
        let v = record::read_arg(t, x)?.v;
        let v = t.g.reshape(v, &[total])?;
        let idx = t.g.iota(DType::I64, &[total], 0)?;
        let (sv, perm) = if sort && total > 1 {
            let r = t.g.sort(&[v, idx], 0, false)?;
            (r[0], r[1])
        } else {
            (v, idx)
        };
        let starts = if total > 1 {
            let tail = t.g.slice(sv, &[1], &[total], &[1])?;
            let head = t.g.slice(sv, &[0], &[total - 1], &[1])?;
            let differ = t.g.compare(CmpDir::Ne, tail, head)?;
            let first =
                t.g.constant(tpu_graph::ConstVal::Bool(true), DType::Bool, &[1]);
            t.g.concatenate(&[first, differ], 0)?
        } else {
            t.g.constant(tpu_graph::ConstVal::Bool(true), DType::Bool, &[total])
        };
        Ok((sv, perm, t.g.convert(starts, DType::I64)))
    };
    let n = if total == 0 {
        0
    } else {
        count(device, |t| Ok(groups(t)?.2))?
    };
    let (rets, _) = exec::now(device, "unique", &[], |t| {
        let (sv, perm, starts) = groups(t)?;
        let values = compact(t, starts, sv, n)?;
        let group = t.g.cumulative(ReduceKind::Sum, starts, 0)?;
        let one = t.g.full_like(group, 1.0, DType::I64);
        let group = t.g.binary(tpu_graph::BinaryKind::Sub, group, one)?;
        let scatter_1d =
            |t: &mut Trace, len: i64, at: ValueId, upd: ValueId, combine| -> Result<ValueId> {
                let base =
                    t.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &[len]);
                let at = t.g.reshape(at, &[total, 1])?;
                let attrs = ScatterAttrs {
                    update_window_dims: vec![],
                    inserted_window_dims: vec![0],
                    scatter_dims_to_operand_dims: vec![0],
                    index_vector_dim: 1,
                    combine,
                };
                Ok(t.g.scatter(base, at, upd, attrs)?)
            };
        let mut rets = vec![new_result(t, values)?];
        let inverse = if want_inverse {
            let inv = scatter_1d(t, total, perm, group, None)?;
            t.g.reshape(inv, x.sizes())?
        } else {
            t.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &[0])
        };
        rets.push(new_result(t, inverse)?);
        let counts = if want_counts {
            let ones = t.g.full_like(group, 1.0, DType::I64);
            scatter_1d(t, n, group, ones, Some(ReduceKind::Sum))?
        } else {
            t.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &[0])
        };
        rets.push(new_result(t, counts)?);
        t.note_op("unique");
        Ok(rets)
    })?;
    Ok(rets)
}
