//! Grid sampling: `grid_sampler_2d` / `grid_sampler_3d` (bilinear, nearest,
//! bicubic in 2d; zeros, border, reflection padding; `align_corners`) and
//! their backward ops. Each output point reads a few taps per spatial dim
//! (index, weight, weight's derivative); the taps' product set is gathered
//! from the input as rows `[N * spatial, C]` (out-of-range taps weigh 0 and
//! read row 0). The backward scatters the weighted gradient back into those
//! rows and chains the weights' derivatives through the coordinate mapping.

use crate::operands::{bin, cmp, cmp_k, k, opmath, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::resample_extra::{cubic, cubic_grad};
use crate::rows::{put_rows, take_rows};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

#[derive(Clone, Copy, PartialEq)]
enum Interp {
    Bilinear,
    Nearest,
    Bicubic,
}

#[derive(Clone, Copy, PartialEq)]
enum Pad {
    Zeros,
    Border,
    Reflection,
}

/// One tap of one spatial dim: float index, weight, d weight / d coordinate, in range.
struct Tap {
    idx: ValueId,
    w: ValueId,
    dw: ValueId,
    ok: ValueId,
}

/// `clamp(x, 0, n - 1)` and its derivative (1 strictly inside, as CPU).
fn clip(c: &mut LowerCtx, x: ValueId, n: i64) -> Result<(ValueId, ValueId)> {
    let (lo, hi) = (k(c, x, 0.0), k(c, x, (n - 1) as f64));
    let y = c.g.clamp(lo, x, hi)?;
    let gt = cmp(c, CmpDir::Gt, x, lo)?;
    let lt = cmp(c, CmpDir::Lt, x, hi)?;
    let inside = bin(c, B::And, gt, lt)?;
    let d = c.g.convert(inside, c.g.dtype(x));
    Ok((y, d))
}

/// Reflects `x` into `[lo2 / 2, hi2 / 2]` (bounds given doubled), with the derivative's sign.
fn reflect(c: &mut LowerCtx, x: ValueId, lo2: f64, hi2: f64) -> Result<(ValueId, ValueId)> {
    if lo2 == hi2 {
        return Ok((k(c, x, 0.0), k(c, x, 0.0)));
    }
    let (min, span) = (lo2 / 2.0, (hi2 - lo2) / 2.0);
    let t = c.g.binary_const(B::Sub, x, min)?;
    let neg = cmp_k(c, CmpDir::Lt, t, 0.0)?;
    let t = un(c, U::Abs, t)?;
    let sp = k(c, t, span);
    let extra = bin(c, B::Rem, t, sp)?;
    let flips = bin(c, B::Div, t, sp)?;
    let flips = un(c, U::Floor, flips)?;
    let half = c.g.mul_const(flips, 0.5)?;
    let half_f = un(c, U::Floor, half)?;
    let odd = cmp(c, CmpDir::Ne, half, half_f)?;
    let fwd = c.g.binary_const(B::Add, extra, min)?;
    let back = bin(c, B::Sub, sp, extra)?;
    let back = c.g.binary_const(B::Add, back, min)?;
    let y = c.g.select(odd, back, fwd)?;
    let (one, m1) = (k(c, x, 1.0), k(c, x, -1.0));
    let s = c.g.select(neg, m1, one)?;
    let ms = un(c, U::Neg, s)?;
    let d = c.g.select(odd, ms, s)?;
    Ok((y, d))
}

/// Padding applied to a source coordinate: `(coordinate, derivative)`.
fn pad_coord(
    c: &mut LowerCtx,
    x: ValueId,
    n: i64,
    pad: Pad,
    align: bool,
) -> Result<(ValueId, ValueId)> {
    match pad {
        Pad::Zeros => Ok((x, k(c, x, 1.0))),
        Pad::Border => clip(c, x, n),
        Pad::Reflection => {
            let (lo2, hi2) = if align {
                (0.0, 2.0 * (n - 1) as f64)
            } else {
                (-1.0, 2.0 * n as f64 - 1.0)
            };
            let (r, dr) = reflect(c, x, lo2, hi2)?;
            let (y, dc) = clip(c, r, n)?;
            Ok((y, bin(c, B::Mul, dr, dc)?))
        }
    }
}

/// In-range flag of a float index.
fn in_range(c: &mut LowerCtx, idx: ValueId, n: i64) -> Result<ValueId> {
    let ge = cmp_k(c, CmpDir::Ge, idx, 0.0)?;
    let le = cmp_k(c, CmpDir::Le, idx, (n - 1) as f64)?;
    bin(c, B::And, ge, le)
}

/// Taps of one spatial dim of size `n` for normalized coordinates `g`, with
/// the derivative of the weights w.r.t. `g`.
fn taps(
    c: &mut LowerCtx,
    g: ValueId,
    n: i64,
    interp: Interp,
    pad: Pad,
    align: bool,
) -> Result<Vec<Tap>> {
    // Unnormalize: [-1, 1] to pixel centers (align) or pixel edges.
    let scale = if align {
        (n - 1) as f64 / 2.0
    } else {
        n as f64 / 2.0
    };
    let x = c.g.binary_const(B::Add, g, 1.0)?;
    let x = c.g.mul_const(x, scale)?;
    let x = if align {
        x
    } else {
        c.g.binary_const(B::Sub, x, 0.5)?
    };
    if interp == Interp::Bicubic {
        let x0 = un(c, U::Floor, x)?;
        let t = bin(c, B::Sub, x, x0)?;
        let mut out = Vec::with_capacity(4);
        for j in 0..4 {
            let raw = c.g.binary_const(B::Add, x0, j as f64 - 1.0)?;
            let (idx, _) = pad_coord(c, raw, n, pad, align)?;
            let ok = in_range(c, idx, n)?;
            let w = cubic_tap(c, t, j, false)?;
            let dw = cubic_tap(c, t, j, true)?;
            let dw = c.g.mul_const(dw, scale)?;
            out.push(Tap { idx, w, dw, ok });
        }
        return Ok(out);
    }
    let (x, dx) = pad_coord(c, x, n, pad, align)?;
    let dx = c.g.mul_const(dx, scale)?;
    if interp == Interp::Nearest {
        let idx = un(c, U::RoundEven, x)?;
        let ok = in_range(c, idx, n)?;
        let (w, dw) = (k(c, x, 1.0), k(c, x, 0.0));
        return Ok(vec![Tap { idx, w, dw, ok }]);
    }
    let x0 = un(c, U::Floor, x)?;
    let t = bin(c, B::Sub, x, x0)?;
    let one = k(c, x, 1.0);
    let x1 = bin(c, B::Add, x0, one)?;
    let w0 = bin(c, B::Sub, one, t)?;
    let mdx = un(c, U::Neg, dx)?;
    let ok0 = in_range(c, x0, n)?;
    let ok1 = in_range(c, x1, n)?;
    Ok(vec![
        Tap {
            idx: x0,
            w: w0,
            dw: mdx,
            ok: ok0,
        },
        Tap {
            idx: x1,
            w: t,
            dw: dx,
            ok: ok1,
        },
    ])
}

/// Coefficient (or its derivative in `t`) of bicubic tap `j` (offset `j - 1`).
fn cubic_tap(c: &mut LowerCtx, t: ValueId, j: usize, grad: bool) -> Result<ValueId> {
    let (dist, near, flip) = match j {
        0 => (c.g.binary_const(B::Add, t, 1.0)?, false, false),
        1 => (t, true, false),
        2 => {
            let one = k(c, t, 1.0);
            (bin(c, B::Sub, one, t)?, true, true)
        }
        _ => {
            let two = k(c, t, 2.0);
            (bin(c, B::Sub, two, t)?, false, true)
        }
    };
    if !grad {
        return cubic(c, dist, near);
    }
    let d = cubic_grad(c, dist, near)?;
    Ok(if flip { un(c, U::Neg, d)? } else { d })
}

/// Checked inputs: `x [N, C, S..]` and `grid [N, O.., k]` in opmath.
struct Setup {
    x: ValueId,
    grid: ValueId,
    d: DType,
    interp: Interp,
    pad: Pad,
    align: bool,
}

fn setup(c: &mut LowerCtx, a: &Args, at: usize, ks: usize) -> Result<Setup> {
    let what = format!("grid_sampler_{ks}d");
    let (x, grid) = (a.t(at)?, a.t(at + 1)?);
    let (xs, gs) = (c.g.shape(x).to_vec(), c.g.shape(grid).to_vec());
    if xs.len() != ks + 2 || gs.len() != ks + 2 || gs[0] != xs[0] || gs[ks + 1] != ks as i64 {
        bail!("{what}: expected input [N, C, {ks} spatial dims] and grid [N, {ks} output dims, {ks}] with equal N, got input {xs:?} and grid {gs:?}");
    }
    if xs[2..].iter().any(|&s| s <= 0) {
        bail!("{what}: expected input to have non-empty spatial dimensions, got {xs:?}");
    }
    let d = c.g.dtype(x);
    if !d.is_float() || c.g.dtype(grid) != d {
        bail!(
            "{what}: expected input and grid of one floating dtype, got {d} and {}",
            c.g.dtype(grid)
        );
    }
    let interp = match a.int(at + 2)? {
        0 => Interp::Bilinear,
        1 => Interp::Nearest,
        2 if ks == 2 => Interp::Bicubic,
        m => bail!("{what}: interpolation mode {m} is not supported"),
    };
    let pad = match a.int(at + 3)? {
        0 => Pad::Zeros,
        1 => Pad::Border,
        2 => Pad::Reflection,
        m => bail!("{what}: padding mode {m} is not supported"),
    };
    let w = opmath(d);
    Ok(Setup {
        x: c.g.convert(x, w),
        grid: c.g.convert(grid, w),
        d,
        interp,
        pad,
        align: a.bool(at + 4)?,
    })
}

/// One point of the taps' product set: flat row `[N, O..]`, weight, and each dim's weight derivative.
struct Corner {
    row: ValueId,
    w: ValueId,
    dws: Vec<ValueId>,
}

/// All corners for the grid's points, over spatial dims `S..` of `x`.
fn corners(c: &mut LowerCtx, s: &Setup) -> Result<Vec<Corner>> {
    let xs = c.g.shape(s.x).to_vec();
    let gs = c.g.shape(s.grid).to_vec();
    let ks = xs.len() - 2;
    let pts = &gs[..ks + 1];
    let spatial = &xs[2..];
    let mut per_dim = Vec::with_capacity(ks);
    for (dim, &n) in spatial.iter().enumerate() {
        // Grid coordinates list x (last dim) first.
        let j = (ks - 1 - dim) as i64;
        let g = c.g.slice_dim(s.grid, ks + 1, j, j + 1)?;
        let g = c.g.reshape(g, pts)?;
        per_dim.push(taps(c, g, n, s.interp, s.pad, s.align)?);
    }
    let plane: i64 = spatial.iter().product();
    let nidx = c.g.iota(DType::I64, pts, 0)?;
    let base = c.g.mul_const(nidx, plane as f64)?;
    let mut out = Vec::new();
    let counts: Vec<usize> = per_dim.iter().map(|t| t.len()).collect();
    let total: usize = counts.iter().product();
    for combo in 0..total {
        let mut rem = combo;
        let mut row = base;
        let mut ok: Option<ValueId> = None;
        let mut ws = Vec::with_capacity(ks);
        let mut stride = plane;
        for (dim, tl) in per_dim.iter().enumerate() {
            let t = &tl[rem % counts[dim]];
            rem /= counts[dim];
            stride /= spatial[dim];
            let zero = k(c, t.idx, 0.0);
            let safe = c.g.select(t.ok, t.idx, zero)?;
            let ii = c.g.convert(safe, DType::I64);
            let ii = c.g.mul_const(ii, stride as f64)?;
            row = bin(c, B::Add, row, ii)?;
            ok = Some(match ok {
                Some(o) => bin(c, B::And, o, t.ok)?,
                None => t.ok,
            });
            ws.push((t.w, t.dw));
        }
        let ok = ok.expect("at least one spatial dim");
        let zero = k(c, ws[0].0, 0.0);
        let mut w = ws[0].0;
        for &(wd, _) in &ws[1..] {
            w = bin(c, B::Mul, w, wd)?;
        }
        let w = c.g.select(ok, w, zero)?;
        let mut dws = Vec::with_capacity(ks);
        for dim in 0..ks {
            let mut dw = ws[dim].1;
            for (o, &(wo, _)) in ws.iter().enumerate() {
                if o != dim {
                    dw = bin(c, B::Mul, dw, wo)?;
                }
            }
            dws.push(c.g.select(ok, dw, zero)?);
        }
        out.push(Corner { row, w, dws });
    }
    Ok(out)
}

/// `x [N, C, S..]` as rows `[N * S.., C]`.
fn as_rows(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let xs = c.g.shape(x).to_vec();
    let r = xs.len() as i64;
    let perm: Vec<i64> = [0].into_iter().chain(2..r).chain([1]).collect();
    let t = c.g.transpose(x, &perm)?;
    let n: i64 = xs.iter().product::<i64>() / xs[1].max(1);
    Ok(c.g.reshape(t, &[n, xs[1]])?)
}

/// `w [N, O..]` broadcast over channels last: `[N, O.., C]`.
fn over_channels(c: &mut LowerCtx, w: ValueId, ch: i64) -> Result<ValueId> {
    let mut s = c.g.shape(w).to_vec();
    let dims: Vec<i64> = (0..s.len() as i64).collect();
    s.push(ch);
    Ok(c.g.broadcast_in_dim(w, &s, &dims)?)
}

/// `grid_sampler_{k}d(input, grid, interpolation_mode, padding_mode, align_corners)`.
fn grid_sampler(c: &mut LowerCtx, a: &Args, ks: usize) -> Out {
    let s = setup(c, a, 0, ks)?;
    let ch = c.g.shape(s.x)[1];
    let rows = as_rows(c, s.x)?;
    let mut acc: Option<ValueId> = None;
    for cn in corners(c, &s)? {
        let v = take_rows(c, rows, cn.row)?;
        let w = over_channels(c, cn.w, ch)?;
        let t = bin(c, B::Mul, v, w)?;
        acc = Some(match acc {
            Some(p) => bin(c, B::Add, p, t)?,
            None => t,
        });
    }
    let y = acc.expect("at least one tap");
    let r = c.g.rank(y) as i64;
    let perm: Vec<i64> = [0, r - 1].into_iter().chain(1..r - 1).collect();
    let y = c.g.transpose(y, &perm)?;
    Ok(vec![c.g.convert(y, s.d)])
}

/// `grid_sampler_{k}d_backward(grad_output, input, grid, interpolation_mode, padding_mode,
/// align_corners, output_mask)` → (grad_input, grad_grid).
fn grid_sampler_backward(c: &mut LowerCtx, a: &Args, ks: usize) -> Out {
    let s = setup(c, a, 1, ks)?;
    let xs = c.g.shape(s.x).to_vec();
    let gs = c.g.shape(s.grid).to_vec();
    let ch = xs[1];
    let mut want = vec![xs[0], ch];
    want.extend_from_slice(&gs[1..ks + 1]);
    let g0 = a.t(0)?;
    if c.g.shape(g0) != want.as_slice() {
        bail!(
            "grid_sampler_{ks}d_backward: grad_output {} should have shape {want:?}",
            c.g.ty(g0)
        );
    }
    let mask = a.bools(6).unwrap_or_else(|_| vec![true, true]);
    let acc_t = c.g.dtype(s.x);
    let g = c.g.convert(g0, acc_t);
    let r = want.len() as i64;
    let perm: Vec<i64> = [0].into_iter().chain(2..r).chain([1]).collect();
    let g = c.g.transpose(g, &perm)?;
    let rows = as_rows(c, s.x)?;
    let nrows = c.g.shape(rows)[0];
    let z = c.g.scalar(0.0, acc_t);
    let mut gi = c.g.broadcast_to(z, &[nrows, ch])?;
    let mut gg: Vec<Option<ValueId>> = vec![None; ks];
    for cn in corners(c, &s)? {
        if mask[0] {
            let w = over_channels(c, cn.w, ch)?;
            let upd = bin(c, B::Mul, g, w)?;
            gi = put_rows(c, gi, cn.row, upd, Some(R::Sum))?;
        }
        if mask[1] && s.interp != Interp::Nearest {
            let v = take_rows(c, rows, cn.row)?;
            let gv = bin(c, B::Mul, g, v)?;
            let last = c.g.rank(gv) as i64 - 1;
            let gv = c.g.reduce(R::Sum, gv, &[last])?;
            for (dim, dw) in cn.dws.iter().enumerate() {
                let t = bin(c, B::Mul, gv, *dw)?;
                gg[dim] = Some(match gg[dim] {
                    Some(p) => bin(c, B::Add, p, t)?,
                    None => t,
                });
            }
        }
    }
    // grad_input back to [N, C, S..].
    let mut shp = vec![xs[0]];
    shp.extend_from_slice(&xs[2..]);
    shp.push(ch);
    let gi = c.g.reshape(gi, &shp)?;
    let rr = shp.len() as i64;
    let perm: Vec<i64> = [0, rr - 1].into_iter().chain(1..rr - 1).collect();
    let gi = c.g.transpose(gi, &perm)?;
    // grad_grid: coordinate j of the grid is spatial dim ks - 1 - j.
    let pts = gs[..ks + 1].to_vec();
    let mut col = pts.clone();
    col.push(1);
    let mut parts = Vec::with_capacity(ks);
    for j in 0..ks {
        let v = match gg[ks - 1 - j] {
            Some(v) => v,
            None => {
                let z = c.g.scalar(0.0, acc_t);
                c.g.broadcast_to(z, &pts)?
            }
        };
        parts.push(c.g.reshape(v, &col)?);
    }
    let ggrid = c.g.concatenate(&parts, ks as i64 + 1)?;
    Ok(vec![c.g.convert(gi, s.d), c.g.convert(ggrid, s.d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["grid_sampler_2d", "grid_sampler_2d.out"], |c, a| {
        grid_sampler(c, a, 2)
    });
    r.add(&["grid_sampler_3d", "grid_sampler_3d.out"], |c, a| {
        grid_sampler(c, a, 3)
    });
    r.add(
        &["grid_sampler_2d_backward", "grid_sampler_2d_backward.out"],
        |c, a| grid_sampler_backward(c, a, 2),
    );
    r.add(
        &["grid_sampler_3d_backward", "grid_sampler_3d_backward.out"],
        |c, a| grid_sampler_backward(c, a, 3),
    );
}
