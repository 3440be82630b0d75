//! Shape family: cat, stack, flip, roll, tril/triu, repeat, constant_pad_nd,
//! full, eye, linspace, one_hot, sort and topk. (Views such as `view` and
//! `_unsafe_view` are metadata handled by the runtime.)

use crate::args::{Arg, ScalarArg};
use crate::operands::{result_type, wrap_dim, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ValueId};

/// The tensors of a `Tensor[]` argument with their promoted dtype.
fn promoted_list(c: &LowerCtx, a: &Args, i: usize) -> Result<(Vec<ValueId>, DType)> {
    let ts = a.tensors(i)?;
    if ts.is_empty() {
        bail!("expected a non-empty list of Tensors");
    }
    let args: Vec<Arg> = match a.arg(i) {
        Arg::Tensors(list) => list.iter().flatten().map(|t| Arg::Tensor(*t)).collect(),
        _ => vec![],
    };
    let refs: Vec<&Arg> = args.iter().collect();
    Ok((ts, result_type(c.g, &refs)))
}

/// `cat(tensors, dim)`: legacy empty 1-D tensors are skipped, as in PyTorch.
fn cat(c: &mut LowerCtx, a: &Args) -> Out {
    let (ts, d) = promoted_list(c, a, 0)?;
    let kept: Vec<ValueId> = ts
        .iter()
        .copied()
        .filter(|&t| c.g.shape(t) != [0])
        .collect();
    if kept.is_empty() {
        return Ok(vec![c.g.convert(ts[0], d)]);
    }
    let r = c.g.rank(kept[0]);
    if r == 0 {
        bail!("zero-dimensional tensor cannot be concatenated");
    }
    let dim = wrap_dim(a.int_or(1, 0)?, r)?;
    let parts: Vec<ValueId> = kept.iter().map(|&t| c.g.convert(t, d)).collect();
    Ok(vec![c.g.concatenate(&parts, dim as i64)?])
}

/// `stack(tensors, dim)`: all tensors gain a size-1 dim at `dim`, then cat.
fn stack(c: &mut LowerCtx, a: &Args) -> Out {
    let (ts, d) = promoted_list(c, a, 0)?;
    let shape0 = c.g.shape(ts[0]).to_vec();
    let dim = wrap_dim(a.int_or(1, 0)?, shape0.len() + 1)?;
    let mut parts = Vec::with_capacity(ts.len());
    for &t in &ts {
        if c.g.shape(t) != shape0.as_slice() {
            bail!(
                "stack expects each tensor to be equal size, but got {} and {}",
                c.g.ty(ts[0]),
                c.g.ty(t)
            );
        }
        let t = c.g.convert(t, d);
        parts.push(c.g.unsqueeze(t, dim)?);
    }
    Ok(vec![c.g.concatenate(&parts, dim as i64)?])
}

fn flip(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    if r == 0 {
        return Ok(vec![x]);
    }
    let mut dims = Vec::new();
    for d in a.ints(1)? {
        let w = wrap_dim(d, r)? as i64;
        if dims.contains(&w) {
            bail!(
                "dims has duplicates, original flip dims size={}",
                dims.len() + 1
            );
        }
        dims.push(w);
    }
    dims.sort_unstable();
    Ok(vec![c.g.reverse(x, &dims)?])
}

/// Rolls `x` by `shift` along `dim`: `out[i] = x[(i - shift) mod n]`.
fn roll_dim(c: &mut LowerCtx, x: ValueId, shift: i64, dim: usize) -> Result<ValueId> {
    let n = c.g.shape(x)[dim];
    if n == 0 {
        return Ok(x);
    }
    let s = shift.rem_euclid(n);
    if s == 0 {
        return Ok(x);
    }
    let tail = c.g.slice_dim(x, dim, n - s, n)?;
    let head = c.g.slice_dim(x, dim, 0, n - s)?;
    Ok(c.g.concatenate(&[tail, head], dim as i64)?)
}

/// `roll(self, shifts, dims)`: no dims rolls the flattened tensor.
fn roll(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let shifts = a.ints(1)?;
    let dims = a.ints_or_empty(2)?;
    if dims.is_empty() {
        if shifts.len() != 1 {
            bail!("roll: shifts must be a single value when dims is empty, got {shifts:?}");
        }
        let shape = c.g.shape(x).to_vec();
        let flat = c.g.reshape(x, &[c.g.ty(x).numel()])?;
        let r = roll_dim(c, flat, shifts[0], 0)?;
        return Ok(vec![c.g.reshape(r, &shape)?]);
    }
    if shifts.len() != dims.len() {
        bail!(
            "shifts and dimensions must align. shifts: {}, dims: {}",
            shifts.len(),
            dims.len()
        );
    }
    let mut y = x;
    for (&s, &d) in shifts.iter().zip(&dims) {
        let d = wrap_dim(d, c.g.rank(x))?;
        y = roll_dim(c, y, s, d)?;
    }
    Ok(vec![y])
}

/// `tril`/`triu(self, diagonal)` on the last two dims.
fn triangle(c: &mut LowerCtx, a: &Args, lower: bool) -> Out {
    let x = a.t(0)?;
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    if r < 2 {
        bail!("tril/triu: input tensor must have at least 2 dimensions");
    }
    let diag = a.int_or(1, 0)?;
    let row = c.g.iota(DType::I64, &shape, (r - 2) as i64)?;
    let col = c.g.iota(DType::I64, &shape, (r - 1) as i64)?;
    let delta = c.g.binary(B::Sub, col, row)?;
    let k = c.g.full_like(delta, diag as f64, DType::I64);
    let keep =
        c.g.compare(if lower { CmpDir::Le } else { CmpDir::Ge }, delta, k)?;
    let zero = c.g.full_like(x, 0.0, c.g.dtype(x));
    Ok(vec![c.g.select(keep, x, zero)?])
}

/// `repeat(self, repeats)`: tile, with leading new dims when `repeats` is longer.
fn repeat(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let reps = a.ints(1)?;
    let xs = c.g.shape(x).to_vec();
    if reps.len() < xs.len() {
        bail!("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor");
    }
    let mut padded = vec![1; reps.len() - xs.len()];
    padded.extend(&xs);
    let mut wide = Vec::new();
    let mut dims = Vec::new();
    for (i, (&r, &s)) in reps.iter().zip(&padded).enumerate() {
        wide.push(r);
        wide.push(s);
        dims.push(2 * i as i64 + 1);
    }
    let xr = c.g.reshape(x, &padded)?;
    let b = c.g.broadcast_in_dim(xr, &wide, &dims)?;
    let out: Vec<i64> = reps.iter().zip(&padded).map(|(r, s)| r * s).collect();
    Ok(vec![c.g.reshape(b, &out)?])
}

/// `constant_pad_nd(self, pad, value)`: pairs from the last dim backwards; negative pads crop.
fn constant_pad_nd(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let pad = a.ints(1)?;
    let r = c.g.rank(x);
    if pad.len() % 2 != 0 || pad.len() / 2 > r {
        bail!("Padding length must be divisible by 2 and at most twice the number of dimensions, got {}", pad.len());
    }
    let (mut low, mut high) = (vec![0; r], vec![0; r]);
    for (i, pair) in pad.chunks(2).enumerate() {
        low[r - 1 - i] = pair[0];
        high[r - 1 - i] = pair[1];
    }
    let v = a.opt_scalar(2)?.unwrap_or(ScalarArg::Int(0));
    let v = c.scalar(v, c.g.dtype(x));
    Ok(vec![c.g.pad(x, v, &low, &high, &vec![0; r])?])
}

/// `full.out(size, fill_value, *, out)`.
fn full_out(c: &mut LowerCtx, a: &Args) -> Out {
    let t = c.out_type(0)?.clone();
    let s = a.scalar(1)?;
    Ok(vec![c.scalar_full(s, t.dtype, &t.shape)?])
}

/// `full(size, fill_value, *, dtype, ..)`: dtype defaults from the value's kind.
fn full(c: &mut LowerCtx, a: &Args) -> Out {
    let size = a.ints(0)?;
    let s = a.scalar(1)?;
    let d = match a.opt_dtype(2)? {
        Some(d) => d,
        None => match s {
            ScalarArg::Bool(_) => DType::Bool,
            ScalarArg::Int(_) => DType::I64,
            ScalarArg::Float(_) => crate::operands::DEFAULT_FLOAT,
            ScalarArg::Complex(..) => crate::operands::DEFAULT_FLOAT.to_complex(),
        },
    };
    Ok(vec![c.scalar_full(s, d, &size)?])
}

/// `eye.out(n)` / `eye.m_out(n, m)`: shape from the arguments (`out` may not
/// be resized yet), dtype from `out`.
fn eye_out(c: &mut LowerCtx, a: &Args) -> Out {
    let t = c.out_type(0)?.clone();
    let n = a.int(0)?;
    let m = if a.has(1) { a.int(1)? } else { n };
    if n < 0 || m < 0 {
        bail!("eye: n and m must be non-negative, got {n} and {m}");
    }
    let shape = [n, m];
    let row = c.g.iota(DType::I64, &shape, 0)?;
    let col = c.g.iota(DType::I64, &shape, 1)?;
    let on = c.g.compare(CmpDir::Eq, row, col)?;
    Ok(vec![c.g.convert(on, t.dtype)])
}

/// `linspace.out(start, end, steps, *, out)`: symmetric from both ends as PyTorch.
fn linspace_out(c: &mut LowerCtx, a: &Args) -> Out {
    let t = c.out_type(0)?.clone();
    let steps = a.int(2)?;
    let (start, end) = (a.scalar(0)?.as_f64(), a.scalar(1)?.as_f64());
    let n = t.shape.first().copied().unwrap_or(0);
    if n == 0 {
        return Ok(vec![c.g.constant(
            tpu_graph::ConstVal::Int(0),
            t.dtype,
            &[0],
        )]);
    }
    let wd = if t.dtype.is_float() {
        t.dtype
    } else {
        DType::F64
    };
    let wd = crate::operands::opmath(wd);
    if steps == 1 {
        let v = c.scalar_full(ScalarArg::Float(start), wd, &[n])?;
        return Ok(vec![c.g.convert(v, t.dtype)]);
    }
    let step = if steps > 1 {
        (end - start) / (steps - 1) as f64
    } else {
        0.0
    };
    let i = c.g.iota(wd, &[n], 0)?;
    let s0 = c.scalar_full(ScalarArg::Float(start), wd, &[n])?;
    let e0 = c.scalar_full(ScalarArg::Float(end), wd, &[n])?;
    let st = c.scalar_full(ScalarArg::Float(step), wd, &[n])?;
    let fwd = c.g.binary(B::Mul, i, st)?;
    let fwd = c.g.binary(B::Add, s0, fwd)?;
    let last = c.g.full_like(i, (steps - 1) as f64, wd);
    let back = c.g.binary(B::Sub, last, i)?;
    let back = c.g.binary(B::Mul, back, st)?;
    let back = c.g.binary(B::Sub, e0, back)?;
    let half = c.g.full_like(i, (steps / 2) as f64, wd);
    let first_half = c.g.compare(CmpDir::Lt, i, half)?;
    let v = c.g.select(first_half, fwd, back)?;
    Ok(vec![c.g.convert(v, t.dtype)])
}

/// `one_hot(self, num_classes)`: int64 result; `num_classes=-1` is data dependent.
fn one_hot(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let n = a.int_or(1, -1)?;
    if n < 0 {
        bail!("one_hot: num_classes=-1 depends on the data; pass num_classes explicitly on tpu");
    }
    let mut shape = c.g.shape(x).to_vec();
    let r = shape.len();
    shape.push(n);
    let xi = c.g.convert(x, DType::I64);
    let xb =
        c.g.broadcast_in_dim(xi, &shape, &(0..r as i64).collect::<Vec<_>>())?;
    let classes = c.g.iota(DType::I64, &shape, r as i64)?;
    let hit = c.g.compare(CmpDir::Eq, xb, classes)?;
    Ok(vec![c.g.convert(hit, DType::I64)])
}

/// Stable sort along `dim` → (values, int64 indices). NaN sorts as the largest value.
fn sort_along(
    c: &mut LowerCtx,
    x: ValueId,
    dim: usize,
    descending: bool,
) -> Result<(ValueId, ValueId)> {
    if c.g.rank(x) == 0 {
        let z = c.g.scalar(0.0, DType::I64);
        return Ok((x, z));
    }
    let shape = c.g.shape(x).to_vec();
    let iota = c.g.iota(DType::I64, &shape, dim as i64)?;
    let out = c.g.sort(&[x, iota], dim as i64, descending)?;
    Ok((out[0], out[1]))
}

/// `sort(self, dim, descending)`.
fn sort(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dim = wrap_dim(a.int_or(1, -1)?, c.g.rank(x))?;
    let (v, i) = sort_along(c, x, dim, a.bool_or(2, false)?)?;
    Ok(vec![v, i])
}

/// `sort.stable(self, *, stable, dim, descending)`.
fn sort_stable(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dim = wrap_dim(a.int_or(2, -1)?, c.g.rank(x))?;
    let (v, i) = sort_along(c, x, dim, a.bool_or(3, false)?)?;
    Ok(vec![v, i])
}

/// `topk(self, k, dim, largest, sorted)`: the first `k` of a stable sort.
fn topk(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let k = a.int(1)?;
    let dim = wrap_dim(a.int_or(2, -1)?, c.g.rank(x))?;
    let largest = a.bool_or(3, true)?;
    let n = if c.g.rank(x) == 0 {
        1
    } else {
        c.g.shape(x)[dim]
    };
    if k < 0 || k > n {
        bail!("selected index k out of range");
    }
    let (v, i) = sort_along(c, x, dim, largest)?;
    if c.g.rank(x) == 0 {
        return Ok(vec![v, i]);
    }
    Ok(vec![
        c.g.slice_dim(v, dim, 0, k)?,
        c.g.slice_dim(i, dim, 0, k)?,
    ])
}

pub fn register(r: &mut Registry) {
    r.add(&["cat", "cat.out"], cat);
    r.add(&["stack", "stack.out"], stack);
    r.add(&["flip", "flip.out"], flip);
    r.add(&["roll", "roll.out"], roll);
    r.add(&["tril", "tril.out", "tril_"], |c, a| triangle(c, a, true));
    r.add(&["triu", "triu.out", "triu_"], |c, a| triangle(c, a, false));
    r.add(&["repeat", "repeat.out"], repeat);
    r.add(&["constant_pad_nd", "constant_pad_nd.out"], constant_pad_nd);
    r.add(&["full.out"], full_out);
    r.add(&["full"], full);
    r.add(&["eye.out", "eye.m_out"], eye_out);
    r.add(&["linspace.out"], linspace_out);
    r.add(&["one_hot"], one_hot);
    r.add(&["sort", "sort.values"], sort);
    r.add(&["sort.stable", "sort.values_stable"], sort_stable);
    r.add(&["topk", "topk.values"], topk);
}
