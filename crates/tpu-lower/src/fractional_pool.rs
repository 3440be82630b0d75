//! Fractional max pooling: `fractional_max_pool{2,3}d` (the random samples
//! come as a tensor argument) and their backward ops. Window starts per
//! plane follow CPU's interval sequence `int((o + u) alpha) - int(u alpha)`,
//! `alpha = (in - pool) / (out - 1)`, the last window ending at the edge.
//! Each kernel offset is one gather from the flattened input; the running
//! maximum keeps the first maximum (the last NaN), as CPU's loop does.
//! Indices are flat within each plane (`h W + w`, `(t H + h) W + w`).

use crate::operands::{bin, isnan, k, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::rows::{sum_rows, take_rows};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ValueId};

/// Input `[P, S..]` (planes flattened), its spatial sizes, pool and output sizes.
struct Geometry {
    batch: bool,
    planes: [i64; 2],
    spatial: Vec<i64>,
    pool: Vec<i64>,
    out: Vec<i64>,
}

fn geometry(
    c: &LowerCtx,
    what: &str,
    x: ValueId,
    a: &Args,
    at: usize,
    ks: usize,
) -> Result<Geometry> {
    let xs = c.g.shape(x).to_vec();
    let (pool, out) = (a.ints(at)?, a.ints(at + 1)?);
    if !(xs.len() == ks + 1 || xs.len() == ks + 2) || pool.len() != ks || out.len() != ks {
        bail!("{what}: expected {}D or {}D input with {ks} kernel and output sizes, got input {xs:?}, kernel_size {pool:?}, output_size {out:?}", ks + 1, ks + 2);
    }
    let batch = xs.len() == ks + 2;
    let spatial = xs[xs.len() - ks..].to_vec();
    for q in 0..ks {
        if pool[q] <= 0 || out[q] <= 0 || out[q] + pool[q] - 1 > spatial[q] {
            bail!(
                "{what}: pool size {} too large relative to input size {} and output size {} (dim {q})",
                pool[q],
                spatial[q],
                out[q]
            );
        }
    }
    let planes = if batch { [xs[0], xs[1]] } else { [1, xs[0]] };
    Ok(Geometry {
        batch,
        planes,
        spatial,
        pool,
        out,
    })
}

/// Window starts `[N, C, out]` (int64) of one spatial dim from samples `u [N, C]`.
fn starts(c: &mut LowerCtx, u: ValueId, n_in: i64, n_out: i64, pool: i64) -> Result<ValueId> {
    let [n, ch] = [c.g.shape(u)[0], c.g.shape(u)[1]];
    let shape = [n, ch, n_out];
    let last = c.g.scalar((n_in - pool) as f64, DType::I64);
    let last = c.g.broadcast_to(last, &shape)?;
    if n_out == 1 {
        return Ok(last);
    }
    let d = c.g.dtype(u);
    let alpha = (n_in - pool) as f64 / (n_out - 1) as f64;
    let ub = c.g.broadcast_in_dim(u, &shape, &[0, 1])?;
    let o = c.g.iota(d, &shape, 2)?;
    let t = bin(c, B::Add, o, ub)?;
    let t = c.g.mul_const(t, alpha)?;
    let t = c.g.convert(t, DType::I64);
    let s0 = c.g.mul_const(ub, alpha)?;
    let s0 = c.g.convert(s0, DType::I64);
    let s = bin(c, B::Sub, t, s0)?;
    let o = c.g.iota(DType::I64, &shape, 2)?;
    let end = k(c, o, (n_out - 1) as f64);
    let at_end = c.g.compare(CmpDir::Eq, o, end)?;
    Ok(c.g.select(at_end, last, s)?)
}

/// `fractional_max_pool{k}d(self, kernel_size, output_size, random_samples)` → (out, indices).
fn fractional_max_pool(c: &mut LowerCtx, a: &Args, ks: usize) -> Out {
    let what = format!("fractional_max_pool{ks}d");
    let x = a.t(0)?;
    let g = geometry(c, &what, x, a, 1, ks)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("{what}: expected a floating point input, got {d}");
    }
    let samples = a.t(3)?;
    let want = [g.planes[0], g.planes[1], ks as i64];
    if c.g.shape(samples) != want {
        bail!(
            "{what}: random_samples {} should have shape {want:?}",
            c.g.ty(samples)
        );
    }
    let acc = opmath(d);
    let samples = c.g.convert(samples, opmath(c.g.dtype(samples)));
    let plane: i64 = g.spatial.iter().product();
    let np = g.planes[0] * g.planes[1];
    let flat = c.g.convert(x, acc);
    let flat = c.g.reshape(flat, &[np * plane])?;
    // Output shape [N, C, out..]; each dim's starts broadcast along it.
    let mut oshape = vec![g.planes[0], g.planes[1]];
    oshape.extend(&g.out);
    let mut st = Vec::with_capacity(ks);
    for q in 0..ks {
        // 2d samples list (w, h); 3d samples list (t, h, w).
        let j = if ks == 2 { 1 - q } else { q } as i64;
        let u = c.g.slice_dim(samples, 2, j, j + 1)?;
        let u = c.g.reshape(u, &g.planes)?;
        let s = starts(c, u, g.spatial[q], g.out[q], g.pool[q])?;
        st.push(c.g.broadcast_in_dim(s, &oshape, &[0, 1, 2 + q as i64])?);
    }
    let n_idx = c.g.iota(DType::I64, &oshape, 0)?;
    let c_idx = c.g.iota(DType::I64, &oshape, 1)?;
    let base = c.g.mul_const(n_idx, g.planes[1] as f64)?;
    let base = bin(c, B::Add, base, c_idx)?;
    let base = c.g.mul_const(base, plane as f64)?;
    let offsets: usize = g.pool.iter().product::<i64>() as usize;
    let mut best: Option<(ValueId, ValueId)> = None;
    for off in 0..offsets {
        // Offsets in row-major order of the kernel (last dim fastest).
        let mut rem = off as i64;
        let mut local: Option<ValueId> = None;
        let mut stride = plane;
        for (q, &start) in st.iter().enumerate() {
            let inner: i64 = g.pool[q + 1..].iter().product();
            let o = rem / inner;
            rem %= inner;
            stride /= g.spatial[q];
            let p = c.g.binary_const(B::Add, start, o as f64)?;
            let p = c.g.mul_const(p, stride as f64)?;
            local = Some(match local {
                Some(l) => bin(c, B::Add, l, p)?,
                None => p,
            });
        }
        let local = local.expect("at least one spatial dim");
        let gidx = bin(c, B::Add, base, local)?;
        let v = take_rows(c, flat, gidx)?;
        best = Some(match best {
            None => (v, local),
            Some((m, mi)) => {
                let gt = c.g.compare(CmpDir::Gt, v, m)?;
                let nan = isnan(c, v)?;
                let take = bin(c, B::Or, gt, nan)?;
                (c.g.select(take, v, m)?, c.g.select(take, local, mi)?)
            }
        });
    }
    let (m, mi) = best.expect("a non-empty kernel");
    let mut rshape = oshape.clone();
    if !g.batch {
        rshape.remove(0);
    }
    let m = c.g.reshape(m, &rshape)?;
    let mi = c.g.reshape(mi, &rshape)?;
    Ok(vec![c.g.convert(m, d), mi])
}

/// `fractional_max_pool{k}d_backward(grad_output, self, kernel_size, output_size, indices)`:
/// gradients summed at the (plane-local) indices.
fn fractional_max_pool_backward(c: &mut LowerCtx, a: &Args, ks: usize) -> Out {
    let what = format!("fractional_max_pool{ks}d_backward");
    let (g0, x) = (a.t(0)?, a.t(1)?);
    let g = geometry(c, &what, x, a, 2, ks)?;
    let idx = a.t(4)?;
    let mut oshape = vec![g.planes[0], g.planes[1]];
    oshape.extend(&g.out);
    let n_out: i64 = oshape.iter().product();
    if c.g.ty(g0).numel() != n_out || c.g.ty(idx).numel() != n_out {
        bail!(
            "{what}: grad_output {} and indices {} should have shape {oshape:?}",
            c.g.ty(g0),
            c.g.ty(idx)
        );
    }
    c.require_index_dtype(idx, &what)?;
    let plane: i64 = g.spatial.iter().product();
    c.check_index(idx, plane, &what)?;
    let d = c.g.dtype(x);
    let acc = opmath(d);
    let idx = c.g.convert(idx, DType::I64);
    let idx = c.g.reshape(idx, &oshape)?;
    let n_idx = c.g.iota(DType::I64, &oshape, 0)?;
    let c_idx = c.g.iota(DType::I64, &oshape, 1)?;
    let base = c.g.mul_const(n_idx, g.planes[1] as f64)?;
    let base = bin(c, B::Add, base, c_idx)?;
    let base = c.g.mul_const(base, plane as f64)?;
    let gidx = bin(c, B::Add, base, idx)?;
    let gidx = c.g.reshape(gidx, &[n_out])?;
    let gv = c.g.convert(g0, acc);
    let gv = c.g.reshape(gv, &[n_out])?;
    let np = g.planes[0] * g.planes[1];
    let gi = sum_rows(c, np * plane, gidx, gv, acc)?;
    let xs = c.g.shape(x).to_vec();
    let gi = c.g.reshape(gi, &xs)?;
    Ok(vec![c.g.convert(gi, d)])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["fractional_max_pool2d", "fractional_max_pool2d.output"],
        |c, a| fractional_max_pool(c, a, 2),
    );
    r.add(
        &["fractional_max_pool3d", "fractional_max_pool3d.output"],
        |c, a| fractional_max_pool(c, a, 3),
    );
    r.add(
        &[
            "fractional_max_pool2d_backward",
            "fractional_max_pool2d_backward.grad_input",
        ],
        |c, a| fractional_max_pool_backward(c, a, 2),
    );
    r.add(
        &[
            "fractional_max_pool3d_backward",
            "fractional_max_pool3d_backward.grad_input",
        ],
        |c, a| fractional_max_pool_backward(c, a, 3),
    );
}
