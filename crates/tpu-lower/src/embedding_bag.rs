//! Embedding bags: `_embedding_bag` / `_embedding_bag_forward_only` (sum,
//! mean, max; offsets, per-sample weights, `include_last_offset`,
//! `padding_idx`) and the dense backward ops. Each index's bag is the number
//! of bag starts at or before it, minus one; rows are gathered and then
//! scattered (summed or maxed) into their bags. Indices are range-checked on
//! the device. Half weights accumulate in f32.

use crate::operands::{bin, cmp_k, k, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::rows::{put_rows, sum_rows, take_rows};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, ValueId};

const SUM: i64 = 0;
const MEAN: i64 = 1;
const MAX: i64 = 2;

/// Indices `[I]` as int64 (checked in `0..rows`), and the bag of each index `[I]`.
struct Bags {
    idx: ValueId,
    bag: ValueId,
    /// Indices that take part (not `padding_idx`), `[I]` bool.
    used: ValueId,
    num_bags: i64,
}

fn bags(
    c: &mut LowerCtx,
    idx: ValueId,
    offsets: ValueId,
    rows: i64,
    include_last: bool,
    padding_idx: i64,
) -> Result<Bags> {
    let what = "embedding_bag";
    c.require_index_dtype(idx, what)?;
    c.require_index_dtype(offsets, what)?;
    if c.g.rank(idx) != 1 || c.g.rank(offsets) != 1 {
        bail!(
            "{what}: input {} and offsets {} have to be 1D tensors",
            c.g.ty(idx),
            c.g.ty(offsets)
        );
    }
    let n = c.g.shape(idx)[0];
    let num_bags = c.g.shape(offsets)[0] - include_last as i64;
    if num_bags < 0 {
        bail!("{what}: include_last_offset needs at least one offset");
    }
    c.check_index(idx, rows, what)?;
    let idx = c.g.convert(idx, DType::I64);
    let offsets = c.g.convert(offsets, DType::I64);
    let starts = c.g.slice_dim(offsets, 0, 0, num_bags)?;
    // bag[i] = #{b : starts[b] <= i} - 1.
    let pos = c.g.iota(DType::I64, &[n, num_bags], 0)?;
    let sb = c.g.broadcast_in_dim(starts, &[n, num_bags], &[1])?;
    let le = c.g.compare(CmpDir::Le, sb, pos)?;
    let le = c.g.convert(le, DType::I64);
    let bag = c.g.reduce(R::Sum, le, &[1])?;
    let bag = c.g.binary_const(B::Sub, bag, 1.0)?;
    let used = if padding_idx >= 0 {
        cmp_k(c, CmpDir::Ne, idx, padding_idx as f64)?
    } else {
        c.g.full_like(idx, 1.0, DType::Bool)
    };
    // Indices before the first offset (or with no bag at all) are dropped.
    let in_bag = cmp_k(c, CmpDir::Ge, bag, 0.0)?;
    let used = bin(c, B::And, used, in_bag)?;
    let spare = k(c, bag, num_bags as f64);
    let bag = c.g.select(in_bag, bag, spare)?;
    Ok(Bags {
        idx,
        bag,
        used,
        num_bags,
    })
}

/// Number of used indices per bag, `[num_bags]` int64.
fn bag_sizes(c: &mut LowerCtx, b: &Bags) -> Result<ValueId> {
    let ones = c.g.convert(b.used, DType::I64);
    let s = sum_rows(c, b.num_bags + 1, b.bag, ones, DType::I64)?;
    Ok(c.g.slice_dim(s, 0, 0, b.num_bags)?)
}

/// `[n, 1]` of `v [n]` broadcast to `[n, dim]`.
fn per_row(c: &mut LowerCtx, v: ValueId, dim: i64) -> Result<ValueId> {
    let n = c.g.shape(v)[0];
    Ok(c.g.broadcast_in_dim(v, &[n, dim], &[0])?)
}

/// `(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights?, include_last_offset, padding_idx)`
/// → (output, offset2bag, bag_size, max_indices).
fn embedding_bag(c: &mut LowerCtx, a: &Args) -> Out {
    let w0 = a.t(0)?;
    let wt = c.g.ty(w0).clone();
    if wt.rank() != 2 || !wt.dtype.is_float() {
        bail!("embedding_bag: weight has to be a 2D floating point tensor, got {wt}");
    }
    let (rows, dim) = (wt.shape[0], wt.shape[1]);
    let mode = a.int_or(4, SUM)?;
    let psw = a.opt_t(6)?;
    if !(SUM..=MAX).contains(&mode) {
        bail!("embedding_bag: unknown mode {mode}");
    }
    if psw.is_some() && mode != SUM {
        bail!("embedding_bag: per_sample_weights was not None. per_sample_weights is only supported for mode='sum' (got mode={mode})");
    }
    let b = bags(
        c,
        a.t(1)?,
        a.t(2)?,
        rows,
        a.bool_or(7, false)?,
        a.int_or(8, -1)?,
    )?;
    let n = c.g.shape(b.idx)[0];
    let acc = opmath(wt.dtype);
    let w = c.g.convert(w0, acc);
    let vals = take_rows(c, w, b.idx)?;
    let used = per_row(c, b.used, dim)?;
    let sizes = bag_sizes(c, &b)?;
    let nb = b.num_bags;
    let (out, max_idx) = if mode == MAX {
        let low = k(c, vals, f64::NEG_INFINITY);
        let v = c.g.select(used, vals, low)?;
        let init = c.g.scalar(f64::NEG_INFINITY, acc);
        let init = c.g.broadcast_to(init, &[nb + 1, dim])?;
        let m = put_rows(c, init, b.bag, v, Some(R::Max))?;
        // The first position holding each bag's maximum, then its weight row.
        let mb = take_rows(c, m, b.bag)?;
        let hit = c.g.compare(CmpDir::Eq, v, mb)?;
        let hit = bin(c, B::And, hit, used)?;
        let p = c.g.iota(DType::I64, &[n, dim], 0)?;
        let none = k(c, p, n as f64);
        let p = c.g.select(hit, p, none)?;
        let first = c.g.scalar(n as f64, DType::I64);
        let first = c.g.broadcast_to(first, &[nb + 1, dim])?;
        let first = if n == 0 {
            first
        } else {
            put_rows(c, first, b.bag, p, Some(R::Min))?
        };
        let first = c.g.slice_dim(first, 0, 0, nb)?;
        let m = c.g.slice_dim(m, 0, 0, nb)?;
        let m1 = c.g.constant(tpu_graph::ConstVal::Int(-1), DType::I64, &[]);
        let ip = c.g.pad(b.idx, m1, &[0], &[1], &[0])?;
        let mi = take_rows(c, ip, first)?;
        let empty = cmp_k(c, CmpDir::Eq, sizes, 0.0)?;
        let empty = per_row(c, empty, dim)?;
        let zero = k(c, m, 0.0);
        (c.g.select(empty, zero, m)?, mi)
    } else {
        let zero = k(c, vals, 0.0);
        let mut v = c.g.select(used, vals, zero)?;
        if let Some(p) = psw {
            if c.g.shape(p) != [n] {
                bail!(
                    "embedding_bag: per_sample_weights {} should have shape [{n}]",
                    c.g.ty(p)
                );
            }
            let p = c.g.convert(p, acc);
            let p = per_row(c, p, dim)?;
            v = bin(c, B::Mul, v, p)?;
        }
        let s = sum_rows(c, nb + 1, b.bag, v, acc)?;
        let mut s = c.g.slice_dim(s, 0, 0, nb)?;
        if mode == MEAN {
            let cnt = c.g.convert(sizes, acc);
            let one = k(c, cnt, 1.0);
            let cnt = bin(c, B::Max, cnt, one)?;
            let cnt = per_row(c, cnt, dim)?;
            s = bin(c, B::Div, s, cnt)?;
        }
        let z = c.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &[nb]);
        (s, z)
    };
    Ok(vec![c.g.convert(out, wt.dtype), b.bag, sizes, max_idx])
}

/// Dense weight gradient `[num_weights, D]` from `grad [B, D]`; arguments
/// (indices, offset2bag, bag_size, maximum_indices, num_weights,
/// scale_grad_by_freq, mode, per_sample_weights?, padding_idx) at the given positions.
struct Dense {
    idx: usize,
    bag: usize,
    size: usize,
    maxi: usize,
    nw: usize,
    freq: usize,
    mode: usize,
    psw: usize,
    pad: usize,
}

fn dense_backward(c: &mut LowerCtx, a: &Args, p: Dense) -> Out {
    let g0 = a.t(0)?;
    let gt = c.g.ty(g0).clone();
    if gt.rank() != 2 || !gt.dtype.is_float() {
        bail!("embedding_bag_backward: grad has to be a 2D floating point tensor, got {gt}");
    }
    let (nb, dim) = (gt.shape[0], gt.shape[1]);
    let nw = a.int(p.nw)?;
    let mode = a.int(p.mode)?;
    let acc = opmath(gt.dtype);
    let g = c.g.convert(g0, acc);
    let idx = a.t(p.idx)?;
    c.require_index_dtype(idx, "embedding_bag_backward")?;
    let idx = c.g.convert(idx, DType::I64);
    let n = c.g.ty(idx).numel();
    let idx = c.g.reshape(idx, &[n])?;
    let zero_grad = |c: &mut LowerCtx| -> Result<ValueId> {
        let z = c.g.scalar(0.0, gt.dtype);
        Ok(c.g.broadcast_to(z, &[nw, dim])?)
    };
    if mode == MAX {
        let mi = c.g.convert(a.t(p.maxi)?, DType::I64);
        if c.g.shape(mi) != [nb, dim] {
            bail!(
                "embedding_bag_backward: max_indices {} should have shape [{nb}, {dim}]",
                c.g.ty(mi)
            );
        }
        // Flat targets `mi * D + d`; empty bags (-1) go to a spare slot.
        let col = c.g.iota(DType::I64, &[nb, dim], 1)?;
        let flat = c.g.mul_const(mi, dim as f64)?;
        let flat = bin(c, B::Add, flat, col)?;
        let valid = cmp_k(c, CmpDir::Ge, mi, 0.0)?;
        let spare = k(c, flat, (nw * dim) as f64);
        let flat = c.g.select(valid, flat, spare)?;
        let flat = c.g.reshape(flat, &[nb * dim])?;
        let gf = c.g.reshape(g, &[nb * dim])?;
        let s = sum_rows(c, nw * dim + 1, flat, gf, acc)?;
        let s = c.g.slice_dim(s, 0, 0, nw * dim)?;
        let s = c.g.reshape(s, &[nw, dim])?;
        return Ok(vec![c.g.convert(s, gt.dtype)]);
    }
    if n == 0 || nb == 0 {
        return Ok(vec![zero_grad(c)?]);
    }
    let bag = c.g.convert(a.t(p.bag)?, DType::I64);
    if c.g.ty(bag).numel() != n {
        bail!(
            "embedding_bag_backward: offset2bag {} should have {n} entries",
            c.g.ty(bag)
        );
    }
    let bag = c.g.reshape(bag, &[n])?;
    // Rows of `grad` for each index; the spare bag (indices outside any bag) reads zeros.
    let z = c.g.scalar(0.0, acc);
    let gp = c.g.pad(g, z, &[0, 0], &[1, 0], &[0, 0])?;
    let mut rows = take_rows(c, gp, bag)?;
    if mode == MEAN {
        let sizes = c.g.convert(a.t(p.size)?, acc);
        if c.g.shape(sizes) != [nb] {
            bail!(
                "embedding_bag_backward: bag_size {} should have shape [{nb}]",
                c.g.ty(sizes)
            );
        }
        let one = c.g.scalar(1.0, acc);
        let sizes = c.g.pad(sizes, one, &[0], &[1], &[0])?;
        let sz = take_rows(c, sizes, bag)?;
        let one = k(c, sz, 1.0);
        let sz = bin(c, B::Max, sz, one)?;
        let sz = per_row(c, sz, dim)?;
        rows = bin(c, B::Div, rows, sz)?;
    }
    if let Some(pw) = a.opt_t(p.psw)? {
        let pw = c.g.convert(pw, acc);
        let pw = c.g.reshape(pw, &[n])?;
        let pw = per_row(c, pw, dim)?;
        rows = bin(c, B::Mul, rows, pw)?;
    }
    let pad = a.int_or(p.pad, -1)?;
    let mut keep = if pad >= 0 {
        cmp_k(c, CmpDir::Ne, idx, pad as f64)?
    } else {
        c.g.full_like(idx, 1.0, DType::Bool)
    };
    let in_bag = cmp_k(c, CmpDir::Lt, bag, nb as f64)?;
    keep = bin(c, B::And, keep, in_bag)?;
    let keep = per_row(c, keep, dim)?;
    let zero = k(c, rows, 0.0);
    rows = c.g.select(keep, rows, zero)?;
    if a.bool(p.freq)? {
        let ones = c.g.full_like(idx, 1.0, acc);
        let counts = sum_rows(c, nw, idx, ones, acc)?;
        let cnt = take_rows(c, counts, idx)?;
        let cnt = per_row(c, cnt, dim)?;
        rows = bin(c, B::Div, rows, cnt)?;
    }
    let s = sum_rows(c, nw, idx, rows, acc)?;
    Ok(vec![c.g.convert(s, gt.dtype)])
}

/// `_embedding_bag_backward(grad, indices, offsets, offset2bag, bag_size, maximum_indices,
/// num_weights, scale_grad_by_freq, mode, sparse, per_sample_weights?, padding_idx)`.
fn embedding_bag_backward(c: &mut LowerCtx, a: &Args) -> Out {
    if a.bool(9)? {
        bail!("embedding_bag_backward: sparse gradients are not supported on the tpu device");
    }
    let p = Dense {
        idx: 1,
        bag: 3,
        size: 4,
        maxi: 5,
        nw: 6,
        freq: 7,
        mode: 8,
        psw: 10,
        pad: 11,
    };
    dense_backward(c, a, p)
}

/// `_embedding_bag_dense_backward(grad, indices, offset2bag, bag_size, maximum_indices,
/// num_weights, scale_grad_by_freq, mode, per_sample_weights?, padding_idx)`.
fn embedding_bag_dense_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let p = Dense {
        idx: 1,
        bag: 2,
        size: 3,
        maxi: 4,
        nw: 5,
        freq: 6,
        mode: 7,
        psw: 8,
        pad: 9,
    };
    dense_backward(c, a, p)
}

/// `_embedding_bag_per_sample_weights_backward(grad, weight, indices, offsets, offset2bag, mode, padding_idx)`:
/// `grad[bag[i]] . weight[indices[i]]`, 0 at `padding_idx`.
fn per_sample_weights_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (g0, w0) = (a.t(0)?, a.t(1)?);
    if a.int(5)? != SUM {
        bail!("embedding_bag_backward: per_sample_weights only supported for mode='sum'");
    }
    let (gs, ws) = (c.g.shape(g0).to_vec(), c.g.shape(w0).to_vec());
    if gs.len() != 2 || ws.len() != 2 || gs[1] != ws[1] {
        bail!("embedding_bag_backward: grad {gs:?} and weight {ws:?} should be [B, D] and [V, D]");
    }
    let d = c.g.dtype(g0);
    let acc = opmath(d);
    let idx = c.g.convert(a.t(2)?, DType::I64);
    let n = c.g.ty(idx).numel();
    let idx = c.g.reshape(idx, &[n])?;
    c.check_index(idx, ws[0], "embedding_bag")?;
    let bag = c.g.convert(a.t(4)?, DType::I64);
    let bag = c.g.reshape(bag, &[n])?;
    let g = c.g.convert(g0, acc);
    let z = c.g.scalar(0.0, acc);
    let g = c.g.pad(g, z, &[0, 0], &[1, 0], &[0, 0])?;
    let gr = take_rows(c, g, bag)?;
    let w = c.g.convert(w0, acc);
    let wr = take_rows(c, w, idx)?;
    let p = bin(c, B::Mul, gr, wr)?;
    let mut s = c.g.reduce(R::Sum, p, &[1])?;
    let pad = a.int_or(6, -1)?;
    if pad >= 0 {
        let keep = cmp_k(c, CmpDir::Ne, idx, pad as f64)?;
        let zero = k(c, s, 0.0);
        s = c.g.select(keep, s, zero)?;
    }
    Ok(vec![c.g.convert(s, d)])
}

pub fn register(r: &mut Registry) {
    r.add(
        &[
            "_embedding_bag",
            "_embedding_bag.out",
            "_embedding_bag_forward_only",
            "_embedding_bag_forward_only.out",
        ],
        embedding_bag,
    );
    r.add(&["_embedding_bag_backward"], embedding_bag_backward);
    r.add(
        &[
            "_embedding_bag_dense_backward",
            "_embedding_bag_dense_backward.out",
        ],
        embedding_bag_dense_backward,
    );
    r.add(
        &[
            "_embedding_bag_per_sample_weights_backward",
            "_embedding_bag_per_sample_weights_backward.out",
        ],
        per_sample_weights_backward,
    );
}
