//! Order statistics and assorted composites: median / nanmedian, mode,
//! cummax / cummin (`_cummax_helper`), bit shifts, gcd / lcm (fixed-length
//! binary GCD, exact), nextafter, renorm, histc.
//! Selections sort a key with NaN canonicalised (largest) and -0 as +0, then
//! gather the original elements, so values keep their bits.

use crate::indexing::dim_coords;
use crate::operands::{bin, cmp, cmp_k, isnan, k, operand, opmath, result_type, un, wrap_dim, Out};
use crate::reduction::vector_norm;
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, DType, GatherAttrs, ReduceKind as R, UnaryKind as U, ValueId,
};

/// `x` gathered along `dim` at `idx` (same rank; `idx` sizes the result).
fn gather_along(c: &mut LowerCtx, x: ValueId, idx: ValueId, dim: usize) -> Result<ValueId> {
    let r = c.g.rank(x);
    let coords = dim_coords(c, idx, dim)?;
    let attrs = GatherAttrs {
        offset_dims: vec![],
        collapsed_slice_dims: (0..r as i64).collect(),
        start_index_map: (0..r as i64).collect(),
        index_vector_dim: r as i64,
        slice_sizes: vec![1; r],
    };
    Ok(c.g.gather(x, coords, attrs)?)
}

/// Sort key: NaN as one (largest) NaN, -0 as +0, bool as u8.
fn sort_key(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let d = c.g.dtype(x);
    if d == DType::Bool {
        return Ok(c.g.convert(x, DType::U8));
    }
    if !d.is_float() {
        return Ok(x);
    }
    let z = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let zero = k(c, x, 0.0);
    let v = c.g.select(z, zero, x)?;
    let nan = isnan(c, x)?;
    let nanv = k(c, x, f64::NAN);
    Ok(c.g.select(nan, nanv, v)?)
}

/// Original positions of the stably sorted slices along `dim` (NaN last).
fn sort_index(c: &mut LowerCtx, x: ValueId, dim: usize) -> Result<ValueId> {
    let key = sort_key(c, x)?;
    let shape = c.g.shape(x).to_vec();
    let iota = c.g.iota(DType::I64, &shape, dim as i64)?;
    Ok(c.g.sort(&[key, iota], dim as i64, false)?[1])
}

/// Drops `dim` (size 1) unless `keep`.
fn finish_dim(c: &mut LowerCtx, v: ValueId, dim: usize, keep: bool) -> Result<ValueId> {
    if keep {
        return Ok(v);
    }
    Ok(c.g.squeeze_dims(v, &[dim])?)
}

/// Median along `dim`: the lower median; NaN wins (first NaN) unless `ignore_nan`.
fn median_along(
    c: &mut LowerCtx,
    x: ValueId,
    dim: usize,
    keep: bool,
    ignore_nan: bool,
) -> Result<(ValueId, ValueId)> {
    let shape = c.g.shape(x).to_vec();
    let n = shape[dim];
    if n == 0 {
        bail!("median(): Expected reduction dim {dim} to have non-zero size.");
    }
    let idx = sort_index(c, x, dim)?;
    let mut kshape = shape.clone();
    kshape[dim] = 1;
    let nan_cnt = if c.g.dtype(x).is_float() {
        let nan = isnan(c, x)?;
        let nan = c.g.convert(nan, DType::I64);
        c.g.reduce_keep(R::Sum, nan, &[dim], true)?
    } else {
        c.g.constant(tpu_graph::ConstVal::Int(0), DType::I64, &kshape)
    };
    let pos = if ignore_nan {
        // (valid - 1) / 2, truncating: an all-NaN slice picks position 0.
        let total = c.g.full_like(nan_cnt, n as f64, DType::I64);
        let valid = bin(c, B::Sub, total, nan_cnt)?;
        let vm1 = c.g.binary_const(B::Sub, valid, 1.0)?;
        let two = k(c, vm1, 2.0);
        bin(c, B::Div, vm1, two)?
    } else {
        let mid = c.g.full_like(nan_cnt, ((n - 1) / 2) as f64, DType::I64);
        let total = c.g.full_like(nan_cnt, n as f64, DType::I64);
        let first_nan = bin(c, B::Sub, total, nan_cnt)?;
        let has = cmp_k(c, CmpDir::Gt, nan_cnt, 0.0)?;
        c.g.select(has, first_nan, mid)?
    };
    let at = gather_along(c, idx, pos, dim)?;
    let v = gather_along(c, x, at, dim)?;
    Ok((finish_dim(c, v, dim, keep)?, finish_dim(c, at, dim, keep)?))
}

fn median_all_of(c: &mut LowerCtx, a: &Args, ignore_nan: bool) -> Out {
    let x = a.t(0)?;
    let n = c.g.ty(x).numel();
    if n == 0 {
        let d = c.g.dtype(x);
        return Ok(vec![c.g.scalar(f64::NAN, d)]);
    }
    let flat = c.g.reshape(x, &[n])?;
    Ok(vec![median_along(c, flat, 0, false, ignore_nan)?.0])
}

fn median_dim_of(c: &mut LowerCtx, a: &Args, ignore_nan: bool) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int(1)?, r.max(1))?;
    let keep = a.bool_or(2, false)?;
    if r == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    let (v, i) = median_along(c, x, dim, keep, ignore_nan)?;
    Ok(vec![v, i])
}

/// `mode(self, dim, keepdim) -> (values, indices)`: the most frequent value
/// (ties: the smallest), with the last index holding it.
fn mode(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int_or(1, -1)?, r.max(1))?;
    let keep = a.bool_or(2, false)?;
    if r == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    let shape = c.g.shape(x).to_vec();
    let n = shape[dim];
    if n == 0 {
        bail!("mode(): Expected reduction dim {dim} to have non-zero size.");
    }
    let idx = sort_index(c, x, dim)?;
    let s = gather_along(c, x, idx, dim)?;
    let s = sort_key(c, s)?;
    let pos = c.g.iota(DType::I64, &shape, dim as i64)?;
    let best = if n == 1 {
        c.g.full_like(pos, 0.0, DType::I64)
    } else {
        let prev = c.g.slice_dim(s, dim, 0, n - 1)?;
        let cur = c.g.slice_dim(s, dim, 1, n)?;
        let ne = cmp(c, CmpDir::Ne, cur, prev)?;
        let mut one = shape.clone();
        one[dim] = 1;
        let t =
            c.g.constant(tpu_graph::ConstVal::Bool(true), DType::Bool, &one);
        let starts = c.g.concatenate(&[t, ne], dim as i64)?;
        let ends = c.g.concatenate(&[ne, t], dim as i64)?;
        let zero = k(c, pos, 0.0);
        let sp = c.g.select(starts, pos, zero)?;
        let start = c.g.cumulative(R::Max, sp, dim)?;
        let len = bin(c, B::Sub, pos, start)?;
        let len = c.g.binary_const(B::Add, len, 1.0)?;
        let score = c.g.select(ends, len, zero)?;
        let b = c.g.arg_reduce(true, score, dim as i64)?;
        c.g.unsqueeze(b, dim)?
    };
    let best = if n == 1 {
        c.g.slice_dim(best, dim, 0, 1)?
    } else {
        best
    };
    let at = gather_along(c, idx, best, dim)?;
    let v = gather_along(c, x, at, dim)?;
    Ok(vec![
        finish_dim(c, v, dim, keep)?,
        finish_dim(c, at, dim, keep)?,
    ])
}

/// `_cummax_helper` / `_cummin_helper(self, values, indices, dim)`: running
/// extreme with the last index reaching it; a NaN sticks (index of the last NaN).
fn cum_extreme(c: &mut LowerCtx, a: &Args, max: bool) -> Out {
    let x = a.t(0)?;
    let r = c.g.rank(x);
    if r == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    let dim = wrap_dim(a.int(3)?, r)?;
    let shape = c.g.shape(x).to_vec();
    let d = c.g.dtype(x);
    let xw = if d == DType::Bool {
        c.g.convert(x, DType::I32)
    } else {
        x
    };
    let kind = if max { R::Max } else { R::Min };
    let v = c.g.cumulative(kind, xw, dim)?;
    let hit = cmp(c, CmpDir::Eq, xw, v)?;
    let rec = if d.is_float() {
        let nan = isnan(c, xw)?;
        let nan_i = c.g.convert(nan, DType::I32);
        let seen = c.g.cumulative(R::Max, nan_i, dim)?;
        let clean = cmp_k(c, CmpDir::Eq, seen, 0.0)?;
        let hit = bin(c, B::And, hit, clean)?;
        bin(c, B::Or, hit, nan)?
    } else {
        hit
    };
    let pos = c.g.iota(DType::I64, &shape, dim as i64)?;
    let zero = k(c, pos, 0.0);
    let rp = c.g.select(rec, pos, zero)?;
    let idx = c.g.cumulative(R::Max, rp, dim)?;
    let vals = gather_along(c, x, idx, dim)?;
    Ok(vec![vals, idx])
}

/// Arguments 0 and 1 as integers of their promoted dtype, broadcast.
fn int_pair(c: &mut LowerCtx, a: &Args, what: &str) -> Result<(ValueId, ValueId, DType)> {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    if !d.is_int() {
        bail!("\"{what}\" not implemented for '{d}'");
    }
    let x = operand(c, a, 0, d)?;
    let y = operand(c, a, 1, d)?;
    let shape = crate::operands::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    Ok((
        c.g.broadcast_to(x, &shape)?,
        c.g.broadcast_to(y, &shape)?,
        d,
    ))
}

fn bits(d: DType) -> f64 {
    (d.size() * 8) as f64
}

/// `x << y`; shifts outside `0..bits` give 0.
fn left_shift(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "lshift_cpu")?;
    let neg = cmp_k(c, CmpDir::Lt, y, 0.0)?;
    let big = cmp_k(c, CmpDir::Ge, y, bits(d))?;
    let oob = bin(c, B::Or, neg, big)?;
    let zero = k(c, y, 0.0);
    let ys = c.g.select(oob, zero, y)?;
    let s = bin(c, B::ShiftLeft, x, ys)?;
    let zx = k(c, s, 0.0);
    Ok(vec![c.g.select(oob, zx, s)?])
}

/// `x >> y` (arithmetic for signed); shifts outside the range fill with the sign.
fn right_shift(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "rshift_cpu")?;
    let neg = cmp_k(c, CmpDir::Lt, y, 0.0)?;
    if d.is_unsigned() {
        let big = cmp_k(c, CmpDir::Ge, y, bits(d))?;
        let oob = bin(c, B::Or, neg, big)?;
        let zero = k(c, y, 0.0);
        let ys = c.g.select(oob, zero, y)?;
        let s = bin(c, B::ShiftRightLogical, x, ys)?;
        let zx = k(c, s, 0.0);
        return Ok(vec![c.g.select(oob, zx, s)?]);
    }
    let max_shift = bits(d) - 1.0;
    let big = cmp_k(c, CmpDir::Ge, y, max_shift)?;
    let oob = bin(c, B::Or, neg, big)?;
    let m = k(c, y, max_shift);
    let ys = c.g.select(oob, m, y)?;
    Ok(vec![bin(c, B::ShiftRightArithmetic, x, ys)?])
}

/// gcd of integer tensors (non-negative, as CPU's Euclid): binary GCD on
/// `|x|`, `|y|` as u64, unrolled `2 * bits` steps (each step drops a bit of
/// `a * b` until `b` is 0, after which the state is fixed), so it is exact.
fn gcd_of(c: &mut LowerCtx, x: ValueId, y: ValueId, d: DType) -> Result<ValueId> {
    let to_u = |c: &mut LowerCtx, v: ValueId| -> Result<ValueId> {
        let w = c.g.convert(v, DType::I64);
        let w = un(c, U::Abs, w)?;
        Ok(c.g.bitcast(w, DType::U64)?)
    };
    let (ua, ub) = (to_u(c, x)?, to_u(c, y)?);
    let za = cmp_k(c, CmpDir::Eq, ua, 0.0)?;
    let zb = cmp_k(c, CmpDir::Eq, ub, 0.0)?;
    let one = k(c, ua, 1.0);
    let mut av = c.g.select(za, one, ua)?;
    let mut bv = c.g.select(zb, one, ub)?;
    let mut kv = k(c, ua, 0.0);
    for _ in 0..2 * d.size() * 8 {
        let a1 = bin(c, B::And, av, one)?;
        let b1 = bin(c, B::And, bv, one)?;
        let ea = cmp_k(c, CmpDir::Eq, a1, 0.0)?;
        let eb = cmp_k(c, CmpDir::Eq, b1, 0.0)?;
        let ah = bin(c, B::ShiftRightLogical, av, one)?;
        let bh = bin(c, B::ShiftRightLogical, bv, one)?;
        let mn = bin(c, B::Min, av, bv)?;
        let mx = bin(c, B::Max, av, bv)?;
        let df = bin(c, B::Sub, mx, mn)?;
        let df = bin(c, B::ShiftRightLogical, df, one)?;
        let both = bin(c, B::And, ea, eb)?;
        let a_odd = c.g.select(eb, av, mn)?;
        let na = c.g.select(ea, ah, a_odd)?;
        let b_odd = c.g.select(ea, bv, df)?;
        let nb = c.g.select(eb, bh, b_odd)?;
        let kp = bin(c, B::Add, kv, one)?;
        kv = c.g.select(both, kp, kv)?;
        av = na;
        bv = nb;
    }
    let g = bin(c, B::ShiftLeft, av, kv)?;
    let g = c.g.select(zb, ua, g)?;
    let g = c.g.select(za, ub, g)?;
    let g = c.g.bitcast(g, DType::I64)?;
    Ok(c.g.convert(g, d))
}

fn gcd(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "gcd_cpu")?;
    Ok(vec![gcd_of(c, x, y, d)?])
}

/// `lcm(a, b) = |a / gcd * b|` (0 when the gcd is 0), wrapping as CPU does.
fn lcm(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "lcm_cpu")?;
    let g = gcd_of(c, x, y, d)?;
    // C++ computes types narrower than int in int.
    let w = if d.size() < 4 { DType::I32 } else { d };
    let (x, y, g) = (c.g.convert(x, w), c.g.convert(y, w), c.g.convert(g, w));
    let z = cmp_k(c, CmpDir::Eq, g, 0.0)?;
    let one = k(c, g, 1.0);
    let gs = c.g.select(z, one, g)?;
    let q = bin(c, B::Div, x, gs)?;
    let m = bin(c, B::Mul, q, y)?;
    let m = un(c, U::Abs, m)?;
    let zero = k(c, m, 0.0);
    let m = c.g.select(z, zero, m)?;
    Ok(vec![c.g.convert(m, d)])
}

/// `nextafter(x, y)`: the next representable value after `x` towards `y`.
fn nextafter(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let it = match d {
        DType::F32 => DType::I32,
        DType::F64 => DType::I64,
        DType::F16 | DType::BF16 => DType::I16,
        _ => bail!("\"nextafter_cpu\" not implemented for '{d}'"),
    };
    let x = operand(c, a, 0, d)?;
    let y = operand(c, a, 1, d)?;
    let shape = crate::operands::broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    let (x, y) = (c.g.broadcast_to(x, &shape)?, c.g.broadcast_to(y, &shape)?);
    let xb = c.g.bitcast(x, it)?;
    let one = k(c, xb, 1.0);
    let up = bin(c, B::Add, xb, one)?;
    let down = bin(c, B::Sub, xb, one)?;
    let gt = cmp(c, CmpDir::Gt, y, x)?;
    let pos = cmp_k(c, CmpDir::Gt, x, 0.0)?;
    let same = cmp(c, CmpDir::Eq, gt, pos)?;
    let step = c.g.select(same, up, down)?;
    let step = c.g.bitcast(step, d)?;
    // From zero: the smallest subnormal with y's sign.
    let tiny = c.g.bitcast(one, d)?;
    let ntiny = un(c, U::Neg, tiny)?;
    let yneg = cmp_k(c, CmpDir::Lt, y, 0.0)?;
    let tiny = c.g.select(yneg, ntiny, tiny)?;
    let xz = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let r = c.g.select(xz, tiny, step)?;
    let eq = cmp(c, CmpDir::Eq, x, y)?;
    let r = c.g.select(eq, y, r)?;
    let nx = isnan(c, x)?;
    let ny = isnan(c, y)?;
    let nan = bin(c, B::Or, nx, ny)?;
    let s = bin(c, B::Add, x, y)?;
    Ok(vec![c.g.select(nan, s, r)?])
}

/// `renorm(self, p, dim, maxnorm)`: slices along `dim` with p-norm above
/// `maxnorm` scaled by `maxnorm / (norm + 1e-7)`.
fn renorm(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("renorm: input needs to be floating point, got {d}");
    }
    let p = a.float(1)?;
    let maxnorm = a.float(3)?;
    if p <= 0.0 {
        bail!("renorm: non-positive-norm not supported");
    }
    if maxnorm < 0.0 {
        bail!("renorm: expected maxnorm to be >= 0 but got {maxnorm}");
    }
    let r = c.g.rank(x);
    let dim = wrap_dim(a.int(2)?, r.max(1))?;
    let dims: Vec<usize> = (0..r).filter(|&i| i != dim).collect();
    let w = opmath(d);
    let norm = vector_norm(c, x, p, &dims, true, Some(w))?;
    let big = cmp_k(c, CmpDir::Gt, norm, maxnorm)?;
    let ne = c.g.binary_const(B::Add, norm, 1e-7)?;
    let m = k(c, ne, maxnorm);
    let f = bin(c, B::Div, m, ne)?;
    let one = k(c, f, 1.0);
    let f = c.g.select(big, f, one)?;
    let shape = c.g.shape(x).to_vec();
    let f = c.g.broadcast_to(f, &shape)?;
    let xw = c.g.convert(x, w);
    let y = bin(c, B::Mul, xw, f)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `histc(self, bins, min, max)`: counts over `bins` equal bins of
/// `linspace(min, max, bins + 1)` (the data's range when `min == max`);
/// values outside the range (and NaN) are ignored.
fn histc(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("\"histogram_cpu\" not implemented for '{d}'");
    }
    let bins = a.int_or(1, 100)?;
    if bins <= 0 {
        bail!("torch.histc: bins must be > 0, but got {bins} for dimension 0");
    }
    let lo = a.float_or(2, 0.0)?;
    let hi = a.float_or(3, 0.0)?;
    let n = c.g.ty(x).numel();
    let flat = c.g.reshape(x, &[n])?;
    let (mut lo_v, mut hi_v) = if lo == hi && n > 0 {
        let mn = c.g.reduce_keep(R::Min, flat, &[0], false)?;
        let mx = c.g.reduce_keep(R::Max, flat, &[0], false)?;
        (mn, mx)
    } else {
        if lo > hi {
            bail!("torch.histc: max must be larger than min");
        }
        if !lo.is_finite() || !hi.is_finite() {
            bail!("torch.histc: range of [{lo}, {hi}] is not finite");
        }
        (c.g.scalar(lo, d), c.g.scalar(hi, d))
    };
    let same = cmp(c, CmpDir::Eq, lo_v, hi_v)?;
    let lo1 = c.g.binary_const(B::Sub, lo_v, 1.0)?;
    let hi1 = c.g.binary_const(B::Add, hi_v, 1.0)?;
    lo_v = c.g.select(same, lo1, lo_v)?;
    hi_v = c.g.select(same, hi1, hi_v)?;
    // Edges as CPU linspace: the front half from `lo`, the back half from `hi`.
    let steps = bins + 1;
    let span = bin(c, B::Sub, hi_v, lo_v)?;
    let nb = k(c, span, bins as f64);
    let step = bin(c, B::Div, span, nb)?;
    let i = c.g.iota(d, &[steps], 0)?;
    let stepb = c.g.broadcast_to(step, &[steps])?;
    let lob = c.g.broadcast_to(lo_v, &[steps])?;
    let hib = c.g.broadcast_to(hi_v, &[steps])?;
    let front = bin(c, B::Mul, stepb, i)?;
    let front = bin(c, B::Add, lob, front)?;
    let ri = c.g.iota(d, &[steps], 0)?;
    let ri = c.g.binary_const(B::Sub, ri, bins as f64)?;
    let ri = un(c, U::Neg, ri)?;
    let back = bin(c, B::Mul, stepb, ri)?;
    let back = bin(c, B::Sub, hib, back)?;
    let ii = c.g.iota(DType::I64, &[steps], 0)?;
    let first = cmp_k(c, CmpDir::Lt, ii, (steps / 2) as f64)?;
    let edges = c.g.select(first, front, back)?;
    if n == 0 {
        return Ok(vec![c.g.constant(
            tpu_graph::ConstVal::float(0.0),
            d,
            &[bins],
        )]);
    }
    // Bin of each element: (#edges <= x) - 1, the last edge closing the last bin.
    let xb = c.g.broadcast_in_dim(flat, &[n, steps], &[0])?;
    let eb = c.g.broadcast_in_dim(edges, &[n, steps], &[1])?;
    let le = cmp(c, CmpDir::Le, eb, xb)?;
    let le = c.g.convert(le, DType::I64);
    let cnt = c.g.reduce(R::Sum, le, &[1])?;
    let pos = c.g.binary_const(B::Sub, cnt, 1.0)?;
    let lastb = k(c, pos, (bins - 1) as f64);
    let pos = bin(c, B::Min, pos, lastb)?;
    let e0 = c.g.slice_dim(edges, 0, 0, 1)?;
    let e0 = c.g.reshape(e0, &[])?;
    let e1 = c.g.slice_dim(edges, 0, bins, steps)?;
    let e1 = c.g.reshape(e1, &[])?;
    let e0 = c.g.broadcast_to(e0, &[n])?;
    let e1 = c.g.broadcast_to(e1, &[n])?;
    let ge = cmp(c, CmpDir::Ge, flat, e0)?;
    let le = cmp(c, CmpDir::Le, flat, e1)?;
    let inside = bin(c, B::And, ge, le)?;
    let pb = c.g.broadcast_in_dim(pos, &[n, bins], &[0])?;
    let ib = c.g.broadcast_in_dim(inside, &[n, bins], &[0])?;
    let j = c.g.iota(DType::I64, &[n, bins], 1)?;
    let hit = cmp(c, CmpDir::Eq, pb, j)?;
    let hit = bin(c, B::And, hit, ib)?;
    let hit = c.g.convert(hit, DType::I64);
    let h = c.g.reduce(R::Sum, hit, &[0])?;
    Ok(vec![c.g.convert(h, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["median", "median.out"], |c, a| median_all_of(c, a, false));
    r.add(&["nanmedian", "nanmedian.out"], |c, a| {
        median_all_of(c, a, true)
    });
    r.add(&["median.dim", "median.dim_values"], |c, a| {
        median_dim_of(c, a, false)
    });
    r.add(&["nanmedian.dim", "nanmedian.dim_values"], |c, a| {
        median_dim_of(c, a, true)
    });
    r.add(&["mode", "mode.values"], mode);
    r.add(&["_cummax_helper"], |c, a| cum_extreme(c, a, true));
    r.add(&["_cummin_helper"], |c, a| cum_extreme(c, a, false));
    r.add(
        &[
            "bitwise_left_shift.Tensor",
            "bitwise_left_shift.Tensor_Scalar",
            "bitwise_left_shift.Scalar_Tensor",
            "bitwise_left_shift.Tensor_out",
            "bitwise_left_shift.Tensor_Scalar_out",
            "bitwise_left_shift.Scalar_Tensor_out",
            "bitwise_left_shift_.Tensor",
            "bitwise_left_shift_.Tensor_Scalar",
            "__lshift__.Tensor",
            "__lshift__.Scalar",
            "__lshift__.Tensor_out",
            "__lshift__.Scalar_out",
            "__ilshift__.Tensor",
            "__ilshift__.Scalar",
        ],
        left_shift,
    );
    r.add(
        &[
            "bitwise_right_shift.Tensor",
            "bitwise_right_shift.Tensor_Scalar",
            "bitwise_right_shift.Scalar_Tensor",
            "bitwise_right_shift.Tensor_out",
            "bitwise_right_shift.Tensor_Scalar_out",
            "bitwise_right_shift.Scalar_Tensor_out",
            "bitwise_right_shift_.Tensor",
            "bitwise_right_shift_.Tensor_Scalar",
            "__rshift__.Tensor",
            "__rshift__.Scalar",
            "__rshift__.Tensor_out",
            "__rshift__.Scalar_out",
            "__irshift__.Tensor",
            "__irshift__.Scalar",
        ],
        right_shift,
    );
    r.add(&["gcd", "gcd.out", "gcd_"], gcd);
    r.add(&["lcm", "lcm.out", "lcm_"], lcm);
    r.add(&["nextafter", "nextafter.out", "nextafter_"], nextafter);
    r.add(&["renorm", "renorm.out", "renorm_"], renorm);
    r.add(&["histc", "histc.out"], histc);
}
