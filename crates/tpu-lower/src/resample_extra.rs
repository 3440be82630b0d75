//! Bicubic and antialiased bilinear resampling (`upsample_bicubic2d`,
//! `_upsample_bilinear2d_aa`, and their backward ops) as separable weight
//! matrices `[out, in]`, applied with [`crate::resample::separable`]; the
//! backward ops apply the transposed matrices.

use crate::operands::{bin, cmp, done, k, opmath, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::resample::{pixel_scale, separable};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// The cubic convolution coefficient (Keys, `A = -0.75`) of distance `x`:
/// `((A + 2) x - (A + 3)) x^2 + 1` for `x <= 1`, `((A x - 5A) x + 8A) x - 4A` for `1 < x < 2`.
pub(crate) fn cubic(c: &mut LowerCtx, x: ValueId, near: bool) -> Result<ValueId> {
    const A: f64 = -0.75;
    if near {
        let t = c.g.mul_const(x, A + 2.0)?;
        let t = c.g.binary_const(B::Sub, t, A + 3.0)?;
        let t = bin(c, B::Mul, t, x)?;
        let t = bin(c, B::Mul, t, x)?;
        return Ok(c.g.binary_const(B::Add, t, 1.0)?);
    }
    let t = c.g.mul_const(x, A)?;
    let t = c.g.binary_const(B::Sub, t, 5.0 * A)?;
    let t = bin(c, B::Mul, t, x)?;
    let t = c.g.binary_const(B::Add, t, 8.0 * A)?;
    let t = bin(c, B::Mul, t, x)?;
    Ok(c.g.binary_const(B::Sub, t, 4.0 * A)?)
}

/// Derivative of [`cubic`] in `x`: `3(A + 2) x^2 - 2(A + 3) x`, or `3A x^2 - 10A x + 8A`.
pub(crate) fn cubic_grad(c: &mut LowerCtx, x: ValueId, near: bool) -> Result<ValueId> {
    const A: f64 = -0.75;
    let (a2, a1, a0) = if near {
        (3.0 * (A + 2.0), -2.0 * (A + 3.0), 0.0)
    } else {
        (3.0 * A, -10.0 * A, 8.0 * A)
    };
    let t = c.g.mul_const(x, a2)?;
    let t = c.g.binary_const(B::Add, t, a1)?;
    let t = bin(c, B::Mul, t, x)?;
    Ok(c.g.binary_const(B::Add, t, a0)?)
}

/// Bicubic weights `[out, in]`: taps at `floor(src) - 1 .. floor(src) + 2`,
/// clamped to the edges (clamped taps add up, as CPU reads them bounded).
fn bicubic_weights(
    c: &mut LowerCtx,
    n_in: i64,
    n_out: i64,
    align: bool,
    scale: Option<f64>,
    w: DType,
) -> Result<ValueId> {
    let shape = [n_out, n_in];
    let o = c.g.iota(w, &shape, 0)?;
    let i = c.g.iota(w, &shape, 1)?;
    let s = pixel_scale(n_in, n_out, align, scale);
    let src = if align {
        c.g.mul_const(o, s)?
    } else {
        let v = c.g.binary_const(B::Add, o, 0.5)?;
        let v = c.g.mul_const(v, s)?;
        c.g.binary_const(B::Sub, v, 0.5)?
    };
    let x0 = un(c, U::Floor, src)?;
    let t = bin(c, B::Sub, src, x0)?;
    let one = k(c, o, 1.0);
    let two = k(c, o, 2.0);
    let t1 = bin(c, B::Add, t, one)?;
    let u = bin(c, B::Sub, one, t)?;
    let u1 = bin(c, B::Sub, two, t)?;
    let coeffs = [
        cubic(c, t1, false)?,
        cubic(c, t, true)?,
        cubic(c, u, true)?,
        cubic(c, u1, false)?,
    ];
    let (lo, hi) = (k(c, o, 0.0), k(c, o, (n_in - 1) as f64));
    let zero = k(c, o, 0.0);
    let mut acc = zero;
    for (j, coef) in coeffs.into_iter().enumerate() {
        let tap = c.g.binary_const(B::Add, x0, j as f64 - 1.0)?;
        let tap = c.g.clamp(lo, tap, hi)?;
        let hit = cmp(c, CmpDir::Eq, i, tap)?;
        let wj = c.g.select(hit, coef, zero)?;
        acc = bin(c, B::Add, acc, wj)?;
    }
    Ok(acc)
}

/// Antialiased (triangle filter) weights `[out, in]`, as PIL / PyTorch: the
/// filter widens by the scale when downsampling, taps are the inputs in
/// `[floor(center - support + 0.5), floor(center + support + 0.5))` (at most
/// `2 ceil(support) + 1`), each row normalized to sum 1.
fn aa_weights(
    c: &mut LowerCtx,
    n_in: i64,
    n_out: i64,
    align: bool,
    scale: Option<f64>,
    w: DType,
) -> Result<ValueId> {
    let shape = [n_out, n_in];
    let o = c.g.iota(w, &shape, 0)?;
    let i = c.g.iota(w, &shape, 1)?;
    let s = pixel_scale(n_in, n_out, align, scale);
    let support = if s >= 1.0 { s } else { 1.0 };
    let inv = if s >= 1.0 { 1.0 / s } else { 1.0 };
    let max_taps = 2.0 * support.ceil() + 1.0;
    let center = c.g.binary_const(B::Add, o, 0.5)?;
    let center = c.g.mul_const(center, s)?;
    let lo = c.g.binary_const(B::Add, center, 0.5 - support)?;
    let lo = un(c, U::Floor, lo)?;
    let zero = k(c, o, 0.0);
    let lo = bin(c, B::Max, lo, zero)?;
    let hi = c.g.binary_const(B::Add, center, 0.5 + support)?;
    let hi = un(c, U::Floor, hi)?;
    let n = k(c, o, n_in as f64);
    let hi = bin(c, B::Min, hi, n)?;
    let cap = c.g.binary_const(B::Add, lo, max_taps)?;
    let hi = bin(c, B::Min, hi, cap)?;
    let ge = cmp(c, CmpDir::Ge, i, lo)?;
    let lt = cmp(c, CmpDir::Lt, i, hi)?;
    let inside = bin(c, B::And, ge, lt)?;
    // Triangle filter `max(0, 1 - |x|)` at `(i - center + 0.5) / scale`.
    let x = bin(c, B::Sub, i, center)?;
    let x = c.g.binary_const(B::Add, x, 0.5)?;
    let x = c.g.mul_const(x, inv)?;
    let ax = un(c, U::Abs, x)?;
    let one = k(c, o, 1.0);
    let f = bin(c, B::Sub, one, ax)?;
    let f = bin(c, B::Max, f, zero)?;
    let f = c.g.select(inside, f, zero)?;
    let total = c.g.reduce(R::Sum, f, &[1])?;
    let total = c.g.broadcast_in_dim(total, &shape, &[0])?;
    let nz = cmp(c, CmpDir::Ne, total, zero)?;
    let total = c.g.select(nz, total, one)?;
    bin(c, B::Div, f, total)
}

type Weights = fn(&mut LowerCtx, i64, i64, bool, Option<f64>, DType) -> Result<ValueId>;

/// `op(self, output_size, align_corners, scales_h?, scales_w?)` or, with
/// `backward`, `op_backward(grad_output, output_size, input_size, align_corners, scales_h?, scales_w?)`.
fn resample2d(c: &mut LowerCtx, a: &Args, weights: Weights, backward: bool) -> Out {
    let x = a.t(0)?;
    let out = a.ints(1)?;
    let full_in = if backward {
        a.ints(2)?
    } else {
        c.g.shape(x).to_vec()
    };
    let xs = c.g.shape(x).to_vec();
    if out.len() != 2 || full_in.len() != 4 || xs.len() != 4 {
        bail!("upsample 2d: expected a 4D input and 2 output sizes, got input {xs:?}, output_size {out:?}");
    }
    if backward && (xs[..2] != full_in[..2] || xs[2..] != out[..]) {
        bail!("upsample 2d backward: grad_output {xs:?} does not match input_size {full_in:?} and output_size {out:?}");
    }
    if out.iter().chain(&full_in[2..]).any(|&n| n <= 0) {
        bail!("upsample 2d: input {full_in:?} and output {out:?} sizes should be greater than 0");
    }
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("upsample 2d: expected a floating point input, got {d}");
    }
    let at = 2 + backward as usize;
    let align = a.bool(at)?;
    let w = opmath(d);
    let mut ws = Vec::with_capacity(2);
    for j in 0..2 {
        let i = at + 1 + j;
        let scale = if a.has(i) { Some(a.float(i)?) } else { None };
        ws.push(weights(c, full_in[2 + j], out[j], align, scale, w)?);
    }
    let xu = c.g.convert(x, w);
    let y = separable(c, xu, &ws, backward)?;
    done(c, y, d)
}

pub fn register(r: &mut Registry) {
    r.add(&["upsample_bicubic2d", "upsample_bicubic2d.out"], |c, a| {
        resample2d(c, a, bicubic_weights, false)
    });
    r.add(
        &[
            "upsample_bicubic2d_backward",
            "upsample_bicubic2d_backward.grad_input",
        ],
        |c, a| resample2d(c, a, bicubic_weights, true),
    );
    r.add(
        &["_upsample_bilinear2d_aa", "_upsample_bilinear2d_aa.out"],
        |c, a| resample2d(c, a, aa_weights, false),
    );
    r.add(
        &[
            "_upsample_bilinear2d_aa_backward",
            "_upsample_bilinear2d_aa_backward.grad_input",
        ],
        |c, a| resample2d(c, a, aa_weights, true),
    );
}
