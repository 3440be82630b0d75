//! `torch.fft` (and `stft`/`istft`, which PyTorch builds on it): the three
//! ATen transforms `_fft_r2c`, `_fft_c2c`, `_fft_c2r` through `stablehlo.fft`.
//!
//! StableHLO transforms the trailing 1 to 3 dims, so each group of at most
//! three requested dims is moved to the end, transformed and moved back (the
//! transform is separable). Inverse transforms are unnormalized here, with
//! PyTorch's `normalization` (0 none, 1 `1/sqrt(n)`, 2 `1/n`) applied once.

use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{DType, FftKind, ValueId};

/// Wrapped, deduplicated dims of the op's `dim` argument.
fn fft_dims(c: &LowerCtx, a: &Args, x: ValueId, what: &str) -> Result<Vec<usize>> {
    let rank = c.g.rank(x);
    let mut dims = Vec::new();
    for d in a.ints(1)? {
        let w = crate::operands::wrap_dim(d, rank)?;
        if dims.contains(&w) {
            bail!("{what}: dims must be unique, got {:?}", a.ints(1)?);
        }
        dims.push(w);
    }
    if dims.is_empty() {
        bail!("{what}: expected at least one dim to transform");
    }
    Ok(dims)
}

/// Applies `kind` over `dims` (at most three) of `x`, whose trailing sizes
/// become `lengths` (the signal sizes, which differ from the input's for
/// `Irfft`).
fn transform(
    c: &mut LowerCtx,
    x: ValueId,
    dims: &[usize],
    kind: FftKind,
    lengths: &[i64],
) -> Result<ValueId> {
    let rank = c.g.rank(x);
    let mut perm: Vec<i64> = (0..rank)
        .filter(|d| !dims.contains(d))
        .map(|d| d as i64)
        .collect();
    perm.extend(dims.iter().map(|&d| d as i64));
    let moved = c.g.transpose(x, &perm)?;
    let y = c.g.fft(moved, kind, lengths)?;
    let mut back = vec![0i64; rank];
    for (i, &p) in perm.iter().enumerate() {
        back[p as usize] = i as i64;
    }
    Ok(c.g.transpose(y, &back)?)
}

/// Complex-to-complex over any number of dims; the inverse is unnormalized:
/// `conj(fft(conj(x)))`.
fn c2c_over(c: &mut LowerCtx, x: ValueId, dims: &[usize], forward: bool) -> Result<ValueId> {
    let mut y = if forward { x } else { c.g.conj(x)? };
    for group in dims.chunks(3) {
        let lengths: Vec<i64> = group.iter().map(|&d| c.g.shape(y)[d]).collect();
        y = transform(c, y, group, FftKind::Fft, &lengths)?;
    }
    if forward {
        Ok(y)
    } else {
        Ok(c.g.conj(y)?)
    }
}

/// Scales by PyTorch's `normalization` for a signal of `n` elements.
fn normalize(c: &mut LowerCtx, y: ValueId, normalization: i64, n: i64) -> Result<ValueId> {
    let scale = match normalization {
        0 => return Ok(y),
        1 => 1.0 / (n as f64).sqrt(),
        2 => 1.0 / n as f64,
        m => bail!("fft: unknown normalization mode {m}"),
    };
    Ok(c.g.mul_const(y, scale)?)
}

fn signal_size(c: &LowerCtx, x: ValueId, dims: &[usize]) -> i64 {
    dims.iter().map(|&d| c.g.shape(x)[d]).product()
}

/// `_fft_c2c(self, dim, normalization, forward)`.
fn fft_c2c(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if !c.g.dtype(x).is_complex() {
        bail!("_fft_c2c: expected a complex input, got {}", c.g.ty(x));
    }
    let dims = fft_dims(c, a, x, "_fft_c2c")?;
    let y = c2c_over(c, x, &dims, a.bool(3)?)?;
    let n = signal_size(c, x, &dims);
    Ok(vec![normalize(c, y, a.int(2)?, n)?])
}

/// `_fft_r2c(self, dim, normalization, onesided)`: the last dim listed keeps
/// its non-redundant half when `onesided`.
fn fft_r2c(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !matches!(d, DType::F32 | DType::F64) {
        bail!(
            "_fft_r2c: expected a float or double input, got {}",
            c.g.ty(x)
        );
    }
    let dims = fft_dims(c, a, x, "_fft_r2c")?;
    let n = signal_size(c, x, &dims);
    let y = if a.bool(3)? {
        let (last, rest) = dims.split_last().expect("at least one dim");
        let len = c.g.shape(x)[*last];
        let half = transform(c, x, &[*last], FftKind::Rfft, &[len])?;
        c2c_over(c, half, rest, true)?
    } else {
        let zero = c.g.full_like(x, 0.0, d);
        let z = c.g.make_complex(x, zero)?;
        c2c_over(c, z, &dims, true)?
    };
    Ok(vec![normalize(c, y, a.int(2)?, n)?])
}

/// `_fft_c2r(self, dim, normalization, last_dim_size)`: the inverse of a
/// one-sided transform, real output whose last listed dim has `last_dim_size`.
fn fft_c2r(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if !c.g.dtype(x).is_complex() {
        bail!("_fft_c2r: expected a complex input, got {}", c.g.ty(x));
    }
    let dims = fft_dims(c, a, x, "_fft_c2r")?;
    let n_last = a.int(3)?;
    let (last, rest) = dims.split_last().expect("at least one dim");
    let half = n_last / 2 + 1;
    if n_last < 1 || c.g.shape(x)[*last] < half {
        bail!(
            "_fft_c2r: last_dim_size {n_last} needs at least {half} input elements along dim {last}, got {}",
            c.g.ty(x)
        );
    }
    let x = c.g.slice_dim(x, *last, 0, half)?;
    let y = c2c_over(c, x, rest, false)?;
    let mut lengths = vec![n_last];
    let real = transform(c, y, &[*last], FftKind::Irfft, &lengths)?;
    // StableHLO's IRFFT divides by n: undo it, PyTorch's normalization follows.
    let real = c.g.mul_const(real, n_last as f64)?;
    lengths.extend(rest.iter().map(|&d| c.g.shape(x)[d]));
    Ok(vec![normalize(
        c,
        real,
        a.int(2)?,
        lengths.iter().product(),
    )?])
}

pub fn register(r: &mut Registry) {
    r.add(&["_fft_c2c", "_fft_c2c.out"], fft_c2c);
    r.add(&["_fft_r2c", "_fft_r2c.out"], fft_r2c);
    r.add(&["_fft_c2r", "_fft_c2r.out"], fft_c2r);
}
