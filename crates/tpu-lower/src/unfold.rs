//! Patch ops: unfold_backward, im2col / col2im. Windows are strided slices
//! of the padded input (one per kernel offset); gradients and columns are
//! placed back with interior padding.

use crate::operands::{bin, opmath, wrap_dim, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::BinaryKind as B;

/// `unfold_backward(grad_in, input_sizes, dim, size, step)`: each window
/// offset's slice added back at its strided positions along `dim`.
fn unfold_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let gi = a.t(0)?;
    let sizes = a.ints(1)?;
    let r = sizes.len();
    let dim = wrap_dim(a.int(2)?, r.max(1))?;
    let (size, step) = (a.int(3)?, a.int(4)?);
    let d = c.g.dtype(gi);
    if r == 0 {
        return Ok(vec![c.g.reshape(gi, &[])?]);
    }
    let gs = c.g.shape(gi).to_vec();
    if gs.len() != r + 1 || gs[r] != size || step <= 0 {
        bail!("unfold_backward: grad_in {gs:?} does not match input_sizes {sizes:?}");
    }
    let nw = gs[dim];
    let len = sizes[dim];
    let w = opmath(d);
    let gi = c.g.convert(gi, w);
    let mut acc = c.g.constant(tpu_graph::ConstVal::Int(0), w, &sizes);
    if nw == 0 {
        return Ok(vec![c.g.convert(acc, d)]);
    }
    let zero = c.g.scalar(0.0, w);
    let mut bshape = gs.clone();
    bshape.pop();
    for j in 0..size {
        let b = c.g.slice_dim(gi, r, j, j + 1)?;
        let b = c.g.reshape(b, &bshape)?;
        let (mut lo, mut hi, mut inner) = (vec![0; r], vec![0; r], vec![0; r]);
        lo[dim] = j;
        hi[dim] = len - (j + (nw - 1) * step + 1);
        inner[dim] = step - 1;
        let placed = c.g.pad(b, zero, &lo, &hi, &inner)?;
        acc = bin(c, B::Add, acc, placed)?;
    }
    Ok(vec![c.g.convert(acc, d)])
}

/// Four int pairs (kernel, dilation, padding, stride) starting at argument `at`.
fn unfold_params(a: &Args, at: usize) -> Result<[[i64; 2]; 4]> {
    let mut out = [[0; 2]; 4];
    for (q, o) in out.iter_mut().enumerate() {
        let v = a.ints(at + q)?;
        *o = match v.len() {
            1 => [v[0], v[0]],
            2 => [v[0], v[1]],
            _ => bail!("im2col/col2im: expected 2 values, got {v:?}"),
        };
    }
    let [kk, dl, pd, st] = out;
    if kk.iter().chain(&dl).chain(&st).any(|&v| v <= 0) || pd.iter().any(|&v| v < 0) {
        bail!("im2col/col2im: kernel, dilation and stride must be positive, padding non-negative");
    }
    Ok(out)
}

/// `im2col(self, kernel_size, dilation, padding, stride)`: `[N, C kh kw, L]` by strided slices.
fn im2col(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let [kk, dl, pd, st] = unfold_params(a, 1)?;
    let unbatched = c.g.rank(x) == 3;
    let x = if unbatched { c.g.unsqueeze(x, 0)? } else { x };
    if c.g.rank(x) != 4 {
        bail!("im2col: expected 3D or 4D input, got {}", c.g.ty(x));
    }
    let s = c.g.shape(x).to_vec();
    let (n, ch) = (s[0], s[1]);
    let hp = [s[2] + 2 * pd[0], s[3] + 2 * pd[1]];
    let mut o = [0; 2];
    for q in 0..2 {
        o[q] = (hp[q] - (dl[q] * (kk[q] - 1) + 1)) / st[q] + 1;
        if o[q] <= 0 {
            bail!(
                "im2col: given input with spatial size {s:?}, the calculated output is too small"
            );
        }
    }
    let zero = c.g.scalar(0.0, c.g.dtype(x));
    let xp = c.g.pad(
        x,
        zero,
        &[0, 0, pd[0], pd[1]],
        &[0, 0, pd[0], pd[1]],
        &[0; 4],
    )?;
    let mut parts = Vec::new();
    for i in 0..kk[0] {
        for j in 0..kk[1] {
            let (h0, w0) = (i * dl[0], j * dl[1]);
            let v = c.g.slice(
                xp,
                &[0, 0, h0, w0],
                &[
                    n,
                    ch,
                    h0 + (o[0] - 1) * st[0] + 1,
                    w0 + (o[1] - 1) * st[1] + 1,
                ],
                &[1, 1, st[0], st[1]],
            )?;
            parts.push(c.g.unsqueeze(v, 2)?);
        }
    }
    let y = c.g.concatenate(&parts, 2)?;
    let out = if unbatched {
        vec![ch * kk[0] * kk[1], o[0] * o[1]]
    } else {
        vec![n, ch * kk[0] * kk[1], o[0] * o[1]]
    };
    Ok(vec![c.g.reshape(y, &out)?])
}

/// `col2im(self, output_size, kernel_size, dilation, padding, stride)`: the
/// columns added back in kernel order (as CPU accumulates), padding cropped.
fn col2im(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let os = a.ints(1)?;
    let [kk, dl, pd, st] = unfold_params(a, 2)?;
    let unbatched = c.g.rank(x) == 2;
    let x = if unbatched { c.g.unsqueeze(x, 0)? } else { x };
    if c.g.rank(x) != 3 || os.len() != 2 {
        bail!("col2im: expected 2D or 3D input, got {}", c.g.ty(x));
    }
    let s = c.g.shape(x).to_vec();
    let kn = kk[0] * kk[1];
    if s[1] % kn != 0 {
        bail!("col2im: expected size of input's dimension 1 to be divisible by the product of kernel_size, got {}", s[1]);
    }
    let (n, ch) = (s[0], s[1] / kn);
    let hp = [os[0] + 2 * pd[0], os[1] + 2 * pd[1]];
    let mut o = [0; 2];
    for q in 0..2 {
        o[q] = (hp[q] - (dl[q] * (kk[q] - 1) + 1)) / st[q] + 1;
    }
    if o[0] <= 0 || o[1] <= 0 || o[0] * o[1] != s[2] {
        bail!(
            "col2im: given output_size={os:?}, expected size of input's dimension 2 to match the calculated number of sliding blocks {}, but got {}",
            o[0].max(0) * o[1].max(0),
            s[2]
        );
    }
    let d = c.g.dtype(x);
    let cols = c.g.reshape(x, &[n, ch, kk[0], kk[1], o[0], o[1]])?;
    let zero = c.g.scalar(0.0, d);
    let mut acc =
        c.g.constant(tpu_graph::ConstVal::Int(0), d, &[n, ch, hp[0], hp[1]]);
    for i in 0..kk[0] {
        for j in 0..kk[1] {
            let b = c.g.slice(
                cols,
                &[0, 0, i, j, 0, 0],
                &[n, ch, i + 1, j + 1, o[0], o[1]],
                &[1; 6],
            )?;
            let b = c.g.reshape(b, &[n, ch, o[0], o[1]])?;
            let (h0, w0) = (i * dl[0], j * dl[1]);
            let hh = hp[0] - (h0 + (o[0] - 1) * st[0] + 1);
            let wh = hp[1] - (w0 + (o[1] - 1) * st[1] + 1);
            let placed = c.g.pad(
                b,
                zero,
                &[0, 0, h0, w0],
                &[0, 0, hh, wh],
                &[0, 0, st[0] - 1, st[1] - 1],
            )?;
            acc = bin(c, B::Add, acc, placed)?;
        }
    }
    let y = c.g.slice(
        acc,
        &[0, 0, pd[0], pd[1]],
        &[n, ch, pd[0] + os[0], pd[1] + os[1]],
        &[1; 4],
    )?;
    if unbatched {
        return Ok(vec![c.g.reshape(y, &[ch, os[0], os[1]])?]);
    }
    Ok(vec![y])
}

pub fn register(r: &mut Registry) {
    r.add(&["unfold_backward", "unfold_backward.out"], unfold_backward);
    r.add(&["im2col", "im2col.out"], im2col);
    r.add(&["col2im", "col2im.out"], col2im);
}
