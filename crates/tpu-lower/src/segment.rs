//! `segment_reduce` and its backward: reductions (sum, mean, max, min, prod)
//! over consecutive segments of `data` along `axis`, the segments given by
//! `lengths` or `offsets` of shape `data.shape[:axis] + [S]` (`[S + 1]` for
//! offsets). Every segment is a mask over the axis positions (`[.., S, N]`),
//! so the reduction is a masked reduce and the backward a masked broadcast;
//! `initial` joins each segment's reduction, as on the CPU.

use crate::args::Arg;
use crate::operands::{opmath, wrap_dim, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

#[derive(Clone, Copy, PartialEq)]
enum Red {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

fn reduction(a: &Args, i: usize) -> Result<Red> {
    Ok(match a.str(i)? {
        Some("sum") => Red::Sum,
        Some("mean") => Red::Mean,
        Some("max") => Red::Max,
        Some("min") => Red::Min,
        Some("prod") => Red::Prod,
        r => bail!("segment_reduce: reduction {r:?} is not supported (sum, mean, max, min, prod)"),
    })
}

/// The segments of one call: the axis, the mask `[B.., S, N]` broadcast to
/// `[B.., S, N, T..]`, and the lengths `[B.., S, 1.., ]` in the compute dtype.
struct Segments {
    axis: usize,
    mask: ValueId,
    lengths: ValueId,
    /// `[B.., S, N, T..]`.
    full: Vec<i64>,
}

fn segments(
    c: &mut LowerCtx,
    data: ValueId,
    lengths: Option<ValueId>,
    offsets: Option<ValueId>,
    axis: i64,
    w: DType,
) -> Result<Segments> {
    let shape = c.g.shape(data).to_vec();
    let axis = wrap_dim(axis, shape.len())?;
    let offsets = match (lengths, offsets) {
        (Some(l), _) => {
            c.require_index_dtype(l, "segment_reduce: lengths")?;
            let l = c.g.convert(l, DType::I64);
            let r = c.g.rank(l);
            let cum = c.g.cumulative(R::Sum, l, r.saturating_sub(1))?;
            let mut zshape = c.g.shape(l).to_vec();
            if let Some(last) = zshape.last_mut() {
                *last = 1;
            }
            let z =
                c.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &zshape);
            c.g.concatenate(&[z, cum], r as i64 - 1)?
        }
        (None, Some(o)) => {
            c.require_index_dtype(o, "segment_reduce: offsets")?;
            c.g.convert(o, DType::I64)
        }
        (None, None) => bail!("segment_reduce: either lengths or offsets must be given"),
    };
    let ot = c.g.ty(offsets).clone();
    if ot.rank() != axis + 1 || ot.shape[..axis] != shape[..axis] || ot.shape[axis] < 1 {
        bail!(
            "segment_reduce: segments {ot} do not fit data {} along axis {axis} (expected the axis to be the last dimension of lengths/offsets)",
            c.g.ty(data)
        );
    }
    let s = ot.shape[axis] - 1;
    let n = shape[axis];
    let lo = c.g.slice_dim(offsets, axis, 0, s)?;
    let hi = c.g.slice_dim(offsets, axis, 1, s + 1)?;
    let mut bsn = shape[..axis].to_vec();
    bsn.extend([s, n]);
    let bs: Vec<i64> = (0..=axis as i64).collect();
    let lo3 = c.g.broadcast_in_dim(lo, &bsn, &bs)?;
    let hi3 = c.g.broadcast_in_dim(hi, &bsn, &bs)?;
    let p = c.g.iota(DType::I64, &bsn, axis as i64 + 1)?;
    let ge = c.g.compare(CmpDir::Ge, p, lo3)?;
    let lt = c.g.compare(CmpDir::Lt, p, hi3)?;
    let mask = c.g.binary(B::And, ge, lt)?;
    let mut full = bsn.clone();
    full.extend_from_slice(&shape[axis + 1..]);
    let md: Vec<i64> = (0..bsn.len() as i64).collect();
    let mask = c.g.broadcast_in_dim(mask, &full, &md)?;
    let len = c.g.binary(B::Sub, hi, lo)?;
    let len = c.g.convert(len, w);
    let mut lshape = shape[..axis].to_vec();
    lshape.push(s);
    lshape.extend(vec![1; shape.len() - axis - 1]);
    let lengths = c.g.reshape(len, &lshape)?;
    Ok(Segments {
        axis,
        mask,
        lengths,
        full,
    })
}

/// `x` (`[B.., N, T..]`) broadcast to `[B.., S, N, T..]`.
fn spread(c: &mut LowerCtx, x: ValueId, sg: &Segments) -> Result<ValueId> {
    let r = c.g.rank(x) as i64;
    let dims: Vec<i64> = (0..r)
        .map(|d| if d < sg.axis as i64 { d } else { d + 1 })
        .collect();
    Ok(c.g.broadcast_in_dim(x, &sg.full, &dims)?)
}

/// `y` (`[B.., S, T..]`) broadcast to `[B.., S, N, T..]`.
fn per_position(c: &mut LowerCtx, y: ValueId, sg: &Segments) -> Result<ValueId> {
    let r = c.g.rank(y) as i64;
    let dims: Vec<i64> = (0..r)
        .map(|d| if d <= sg.axis as i64 { d } else { d + 1 })
        .collect();
    Ok(c.g.broadcast_in_dim(y, &sg.full, &dims)?)
}

fn identity(red: Red) -> f64 {
    match red {
        Red::Sum | Red::Mean => 0.0,
        Red::Prod => 1.0,
        Red::Max => f64::NEG_INFINITY,
        Red::Min => f64::INFINITY,
    }
}

/// `segment_reduce(data, reduce, *, lengths, indices, offsets, axis, unsafe, initial)`.
fn segment_reduce(c: &mut LowerCtx, a: &Args) -> Out {
    let data = a.t(0)?;
    let red = reduction(a, 1)?;
    if a.has(3) {
        bail!("segment_reduce: indices are not supported yet (as on the CPU)");
    }
    let d = c.g.dtype(data);
    if !d.is_float() {
        bail!("segment_reduce: expected a floating point data tensor, got {d}");
    }
    let w = opmath(d);
    let x = c.g.convert(data, w);
    let sg = segments(c, x, a.opt_t(2)?, a.opt_t(4)?, a.int_or(5, 0)?, w)?;
    let initial = a.opt_scalar(7)?;
    let init = initial.map_or(identity(red), |s| s.as_f64());
    let xs = spread(c, x, &sg)?;
    let fill = c.g.full_like(xs, identity(red), w);
    let masked = c.g.select(sg.mask, xs, fill)?;
    let kind = match red {
        Red::Sum | Red::Mean => R::Sum,
        Red::Prod => R::Prod,
        Red::Max => R::Max,
        Red::Min => R::Min,
    };
    let r = c.g.reduce_keep(kind, masked, &[sg.axis + 1], false)?;
    let rshape = c.g.shape(r).to_owned();
    let k = c.scalar_full(crate::ScalarArg::Float(init), w, &rshape)?;
    let combine = match red {
        Red::Sum | Red::Mean => B::Add,
        Red::Prod => B::Mul,
        Red::Max => B::Max,
        Red::Min => B::Min,
    };
    let mut r = c.g.binary(combine, r, k)?;
    if red == Red::Mean {
        let shape = c.g.shape(r).to_vec();
        let len = c.g.broadcast_to(sg.lengths, &shape)?;
        let mean = c.g.binary(B::Div, r, len)?;
        let empty = c.g.full_like(len, 0.0, w);
        let empty = c.g.compare(CmpDir::Eq, len, empty)?;
        // An empty segment is `initial`, or NaN without one.
        let at_empty = match initial {
            Some(_) => k,
            None => c.g.full_like(r, f64::NAN, w),
        };
        r = c.g.select(empty, at_empty, mean)?;
    }
    Ok(vec![c.g.convert(r, d)])
}

/// `_segment_reduce_backward(grad, output, data, reduce, *, lengths, offsets, axis, initial)`.
fn segment_reduce_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (grad, out, data) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let red = reduction(a, 3)?;
    let d = c.g.dtype(data);
    let w = opmath(d);
    let x = c.g.convert(data, w);
    let (gw, ow) = (c.g.convert(grad, w), c.g.convert(out, w));
    let sg = segments(c, x, a.opt_t(4)?, a.opt_t(5)?, a.int_or(6, 0)?, w)?;
    if c.g.shape(gw) != c.g.shape(ow) {
        bail!(
            "_segment_reduce_backward: grad {} and output {} differ",
            c.g.ty(grad),
            c.g.ty(out)
        );
    }
    let g = per_position(c, gw, &sg)?;
    let xs = spread(c, x, &sg)?;
    let zero = c.g.full_like(xs, 0.0, w);
    let contrib = match red {
        Red::Sum => g,
        Red::Mean => {
            let len = per_position(c, sg.lengths, &sg)?;
            c.g.binary(B::Div, g, len)?
        }
        Red::Max | Red::Min => {
            // Ties share the gradient (a NaN output passes it everywhere).
            // The CPU kernel finds the entries to divide by `> 0`, so a
            // negative gradient reaches every tie undivided: matched here.
            let o = per_position(c, ow, &sg)?;
            let eq = c.g.compare(CmpDir::Eq, xs, o)?;
            let nan = c.g.compare(CmpDir::Ne, o, o)?;
            let hit = c.g.binary(B::Or, eq, nan)?;
            let hit = c.g.binary(B::And, hit, sg.mask)?;
            let hf = c.g.convert(hit, w);
            let cnt = c.g.reduce_keep(R::Sum, hf, &[sg.axis + 1], true)?;
            let cnt = c.g.broadcast_to(cnt, &sg.full)?;
            let share = c.g.binary(B::Div, g, cnt)?;
            let up = c.g.compare(CmpDir::Gt, g, zero)?;
            let share = c.g.select(up, share, g)?;
            c.g.select(hit, share, zero)?
        }
        Red::Prod => {
            let o = per_position(c, ow, &sg)?;
            let q = c.g.binary(B::Div, o, xs)?;
            let is0 = c.g.compare(CmpDir::Eq, xs, zero)?;
            // A single zero's share is the product of the others (with `initial`).
            let z = c.g.binary(B::And, is0, sg.mask)?;
            let zc = c.g.convert(z, w);
            let zeros = c.g.reduce_keep(R::Sum, zc, &[sg.axis + 1], true)?;
            let zeros = c.g.broadcast_to(zeros, &sg.full)?;
            let one = c.g.full_like(xs, 1.0, w);
            let nz = c.g.unary(U::Not, is0)?;
            let keep = c.g.binary(B::And, nz, sg.mask)?;
            let f = c.g.select(keep, xs, one)?;
            let others = c.g.reduce_keep(R::Prod, f, &[sg.axis + 1], true)?;
            let others = c.g.broadcast_to(others, &sg.full)?;
            let init = match a.arg(7) {
                Arg::None => 1.0,
                _ => a.float(7)?,
            };
            let others = c.g.mul_const(others, init)?;
            let single = c.g.compare(CmpDir::Eq, zeros, one)?;
            let only = c.g.binary(B::And, single, is0)?;
            let share = c.g.select(is0, zero, q)?;
            let share = c.g.select(only, others, share)?;
            c.g.binary(B::Mul, g, share)?
        }
    };
    let contrib = c.g.select(sg.mask, contrib, zero)?;
    let r = c.g.reduce_keep(R::Sum, contrib, &[sg.axis], false)?;
    Ok(vec![c.g.convert(r, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["segment_reduce", "segment_reduce.out"], segment_reduce);
    r.add(
        &["_segment_reduce_backward", "_segment_reduce_backward.out"],
        segment_reduce_backward,
    );
}
