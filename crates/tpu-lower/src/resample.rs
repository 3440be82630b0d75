//! Resampling as separable weight matrices applied with `dot`: adaptive
//! average pooling and nearest / nearest-exact / (bi,tri)linear upsampling
//! (1-3 spatial dims), reflection / replication padding, and their backward
//! ops (the transposed weights).

use crate::operands::{bin, cmp, done, k, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ValueId};

/// Adaptive-average-pooling weights `[out, in]`: row `o` averages inputs
/// `floor(o in / out) .. ceil((o + 1) in / out)`.
fn adaptive_weights(c: &mut LowerCtx, n_in: i64, n_out: i64, d: DType) -> Result<ValueId> {
    let shape = [n_out, n_in];
    let o = c.g.iota(DType::I64, &shape, 0)?;
    let i = c.g.iota(DType::I64, &shape, 1)?;
    let (kin, kout) = (k(c, o, n_in as f64), k(c, o, n_out as f64));
    let start = bin(c, B::Mul, o, kin)?;
    let start = bin(c, B::Div, start, kout)?;
    let one = k(c, o, 1.0);
    let o1 = bin(c, B::Add, o, one)?;
    let end = bin(c, B::Mul, o1, kin)?;
    let end = bin(c, B::Add, end, kout)?;
    let end = bin(c, B::Sub, end, one)?;
    let end = bin(c, B::Div, end, kout)?;
    let ge = cmp(c, CmpDir::Ge, i, start)?;
    let lt = cmp(c, CmpDir::Lt, i, end)?;
    let inside = bin(c, B::And, ge, lt)?;
    let cnt = bin(c, B::Sub, end, start)?;
    let cnt = c.g.convert(cnt, d);
    let m = c.g.convert(inside, d);
    bin(c, B::Div, m, cnt)
}

/// Contracts the last dim of `x [.., n]` with `w [m, n]` (or `w [n, m]` if `transposed`).
fn apply_last(c: &mut LowerCtx, x: ValueId, w: ValueId, transposed: bool) -> Result<ValueId> {
    let r = c.g.rank(x) as i64;
    let dims = tpu_graph::DotDims {
        lhs_batch: vec![],
        rhs_batch: vec![],
        lhs_contract: vec![r - 1],
        rhs_contract: vec![if transposed { 0 } else { 1 }],
    };
    Ok(c.g.dot(x, w, dims)?)
}

/// Applies per-spatial-dim weights (`[out, in]` each) to the last `ws.len()` dims of `x`.
pub(crate) fn separable(
    c: &mut LowerCtx,
    x: ValueId,
    ws: &[ValueId],
    transposed: bool,
) -> Result<ValueId> {
    let mut v = x;
    let r = c.g.rank(x);
    let k = ws.len();
    for w in ws {
        // Contract the first remaining spatial dim, which is then appended last.
        let perm: Vec<i64> = (0..r - k)
            .chain(r - k + 1..r)
            .chain([r - k])
            .map(|i| i as i64)
            .collect();
        let t = c.g.transpose(v, &perm)?;
        v = apply_last(c, t, *w, transposed)?;
    }
    Ok(v)
}

/// `_adaptive_avg_pool{2,3}d(self, output_size)`.
fn adaptive_avg_pool(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let out = a.ints(1)?;
    let shape = c.g.shape(x).to_vec();
    let k = out.len();
    if shape.len() < k {
        bail!(
            "adaptive_avg_pool: input of rank {} for {k} spatial dims",
            shape.len()
        );
    }
    let d = c.g.dtype(x);
    let w = opmath(d);
    let mut ws = Vec::with_capacity(k);
    for (j, &o) in out.iter().enumerate() {
        ws.push(adaptive_weights(c, shape[shape.len() - k + j], o, w)?);
    }
    let xu = c.g.convert(x, w);
    let y = separable(c, xu, &ws, false)?;
    done(c, y, d)
}

/// `_adaptive_avg_pool{k}d_backward(grad_output, self)`: the transposed weights.
fn adaptive_avg_pool_backward(c: &mut LowerCtx, a: &Args, k: usize) -> Out {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let gs = c.g.shape(g).to_vec();
    let xs = c.g.shape(x).to_vec();
    if gs.len() < k || xs.len() != gs.len() {
        bail!("adaptive_avg_pool{k}d_backward: grad {gs:?} and input {xs:?} do not match");
    }
    let d = c.g.dtype(x);
    let w = opmath(d);
    let mut ws = Vec::with_capacity(k);
    for j in 0..k {
        let (n_in, n_out) = (xs[xs.len() - k + j], gs[gs.len() - k + j]);
        ws.push(adaptive_weights(c, n_in, n_out, w)?);
    }
    let gu = c.g.convert(g, w);
    let y = separable(c, gu, &ws, true)?;
    done(c, y, d)
}

/// PyTorch's `area_pixel_compute_scale`: input pixels per output pixel.
pub(crate) fn pixel_scale(n_in: i64, n_out: i64, align: bool, scale: Option<f64>) -> f64 {
    if align {
        return if n_out > 1 {
            (n_in - 1) as f64 / (n_out - 1) as f64
        } else {
            0.0
        };
    }
    match scale {
        Some(s) if s > 0.0 => 1.0 / s,
        _ => n_in as f64 / n_out as f64,
    }
}

/// How an output pixel picks its inputs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    NearestExact,
    Linear { align: bool },
}

/// Interpolation weights `[out, in]` (index math in f32, as PyTorch's kernels).
fn resample_weights(
    c: &mut LowerCtx,
    n_in: i64,
    n_out: i64,
    mode: Mode,
    scale: Option<f64>,
    d: DType,
) -> Result<ValueId> {
    let shape = [n_out, n_in];
    let o = c.g.iota(DType::F32, &shape, 0)?;
    let i = c.g.iota(DType::F32, &shape, 1)?;
    let align = matches!(mode, Mode::Linear { align: true });
    let s = k(c, o, pixel_scale(n_in, n_out, align, scale));
    let last = k(c, o, (n_in - 1) as f64);
    let half = k(c, o, 0.5);
    if !matches!(mode, Mode::Linear { .. }) {
        let src = if n_out == n_in {
            o
        } else if mode == Mode::NearestExact {
            let oh = bin(c, B::Add, o, half)?;
            bin(c, B::Mul, oh, s)?
        } else {
            bin(c, B::Mul, o, s)?
        };
        let idx = c.g.unary(tpu_graph::UnaryKind::Floor, src)?;
        let idx = bin(c, B::Min, idx, last)?;
        let hit = cmp(c, CmpDir::Eq, i, idx)?;
        return Ok(c.g.convert(hit, d));
    }
    let src = if align {
        bin(c, B::Mul, o, s)?
    } else {
        let oh = bin(c, B::Add, o, half)?;
        let v = bin(c, B::Mul, oh, s)?;
        let v = bin(c, B::Sub, v, half)?;
        let zero = k(c, o, 0.0);
        bin(c, B::Max, v, zero)?
    };
    let i0 = c.g.unary(tpu_graph::UnaryKind::Floor, src)?;
    let i0 = bin(c, B::Min, i0, last)?;
    let one = k(c, o, 1.0);
    let i1 = bin(c, B::Add, i0, one)?;
    let i1 = bin(c, B::Min, i1, last)?;
    let l1 = bin(c, B::Sub, src, i0)?;
    let l0 = bin(c, B::Sub, one, l1)?;
    let zero = k(c, o, 0.0);
    let at0 = cmp(c, CmpDir::Eq, i, i0)?;
    let at1 = cmp(c, CmpDir::Eq, i, i1)?;
    let w0 = c.g.select(at0, l0, zero)?;
    let w1 = c.g.select(at1, l1, zero)?;
    let w = bin(c, B::Add, w0, w1)?;
    Ok(c.g.convert(w, d))
}

/// `upsample_*(self, output_size, [align_corners,] scales...)` and, with
/// `backward`, `upsample_*_backward(grad_output, output_size, input_size, [align_corners,] scales...)`.
fn upsample(c: &mut LowerCtx, a: &Args, mode: Mode, backward: bool) -> Out {
    let x = a.t(0)?;
    let out = a.ints(1)?;
    let k_dims = out.len();
    let full_in = if backward {
        a.ints(2)?
    } else {
        c.g.shape(x).to_vec()
    };
    if full_in.len() < k_dims {
        bail!(
            "upsample: input of rank {} for {k_dims} spatial dims",
            full_in.len()
        );
    }
    let linear = matches!(mode, Mode::Linear { .. });
    let first_scale = 2 + backward as usize + linear as usize;
    let d = c.g.dtype(x);
    let w = opmath(d);
    let mut ws = Vec::with_capacity(k_dims);
    for (j, &n_out) in out.iter().enumerate() {
        let n_in = full_in[full_in.len() - k_dims + j];
        let i = first_scale + j;
        let scale = if a.has(i) { Some(a.float(i)?) } else { None };
        ws.push(resample_weights(c, n_in, n_out, mode, scale, w)?);
    }
    let xu = c.g.convert(x, w);
    let y = separable(c, xu, &ws, backward)?;
    done(c, y, d)
}

fn linear_mode(a: &Args, backward: bool) -> Result<Mode> {
    Ok(Mode::Linear {
        align: a.bool(2 + backward as usize)?,
    })
}
fn upsample_linear(c: &mut LowerCtx, a: &Args) -> Out {
    let mode = linear_mode(a, false)?;
    upsample(c, a, mode, false)
}
fn upsample_linear_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let mode = linear_mode(a, true)?;
    upsample(c, a, mode, true)
}

/// Selection weights `[n + lo + hi, n]` of a padded dim: reflection mirrors
/// around the edges, replication repeats them (negative pads crop).
fn pad_weights(
    c: &mut LowerCtx,
    n: i64,
    lo: i64,
    hi: i64,
    reflect: bool,
    d: DType,
) -> Result<ValueId> {
    let n_out = n + lo + hi;
    if reflect && (lo >= n || hi >= n) {
        bail!("reflection_pad: padding ({lo}, {hi}) should be smaller than the input size {n}");
    }
    let shape = [n_out, n];
    let o = c.g.iota(DType::I64, &shape, 0)?;
    let i = c.g.iota(DType::I64, &shape, 1)?;
    let src = c.g.binary_const(B::Sub, o, lo as f64)?;
    let last = k(c, o, (n - 1) as f64);
    let src = if reflect {
        let a = c.g.unary(tpu_graph::UnaryKind::Abs, src)?;
        let t = bin(c, B::Sub, last, a)?;
        let t = c.g.unary(tpu_graph::UnaryKind::Abs, t)?;
        bin(c, B::Sub, last, t)?
    } else {
        let zero = k(c, o, 0.0);
        c.g.clamp(zero, src, last)?
    };
    let hit = cmp(c, CmpDir::Eq, i, src)?;
    Ok(c.g.convert(hit, d))
}

/// `{reflection,replication}_pad{k}d(self, padding)`, or with `backward`
/// `..._backward(grad_output, self, padding)`; `padding` pairs start at the last dim.
fn pad(c: &mut LowerCtx, a: &Args, reflect: bool, backward: bool) -> Out {
    let x = a.t(0)?;
    let p = a.ints(1 + backward as usize)?;
    let k_dims = p.len() / 2;
    let in_shape = c.g.shape(if backward { a.t(1)? } else { x }).to_vec();
    if p.len() % 2 != 0 || in_shape.len() < k_dims {
        bail!("pad: padding {p:?} does not fit an input of shape {in_shape:?}");
    }
    let d = c.g.dtype(x);
    // Complex values are padded in their own dtype (one-hot weights, exact).
    let w = if d.is_float() || d.is_complex() {
        opmath(d)
    } else {
        DType::F64
    };
    let mut ws = Vec::with_capacity(k_dims);
    for j in 0..k_dims {
        // Spatial dim j (of the last k) is padded by the pair for dim k - 1 - j from the end.
        let pair = k_dims - 1 - j;
        let n = in_shape[in_shape.len() - k_dims + j];
        ws.push(pad_weights(c, n, p[2 * pair], p[2 * pair + 1], reflect, w)?);
    }
    let xu = c.g.convert(x, w);
    let y = separable(c, xu, &ws, backward)?;
    done(c, y, d)
}

pub fn register(r: &mut Registry) {
    r.add(
        &[
            "reflection_pad1d",
            "reflection_pad1d.out",
            "reflection_pad2d",
            "reflection_pad2d.out",
            "reflection_pad3d",
            "reflection_pad3d.out",
        ],
        |c, a| pad(c, a, true, false),
    );
    r.add(
        &[
            "reflection_pad1d_backward",
            "reflection_pad1d_backward.grad_input",
            "reflection_pad2d_backward",
            "reflection_pad2d_backward.grad_input",
            "reflection_pad3d_backward",
            "reflection_pad3d_backward.grad_input",
        ],
        |c, a| pad(c, a, true, true),
    );
    r.add(
        &[
            "replication_pad1d",
            "replication_pad1d.out",
            "replication_pad2d",
            "replication_pad2d.out",
            "replication_pad3d",
            "replication_pad3d.out",
        ],
        |c, a| pad(c, a, false, false),
    );
    r.add(
        &[
            "replication_pad1d_backward",
            "replication_pad1d_backward.grad_input",
            "replication_pad2d_backward",
            "replication_pad2d_backward.grad_input",
            "replication_pad3d_backward",
            "replication_pad3d_backward.grad_input",
        ],
        |c, a| pad(c, a, false, true),
    );
    r.add(
        &[
            "upsample_nearest1d",
            "upsample_nearest1d.out",
            "upsample_nearest2d",
            "upsample_nearest2d.out",
            "upsample_nearest3d",
            "upsample_nearest3d.out",
        ],
        |c, a| upsample(c, a, Mode::Nearest, false),
    );
    r.add(
        &[
            "upsample_nearest1d_backward",
            "upsample_nearest1d_backward.grad_input",
            "upsample_nearest2d_backward",
            "upsample_nearest2d_backward.grad_input",
            "upsample_nearest3d_backward",
            "upsample_nearest3d_backward.grad_input",
        ],
        |c, a| upsample(c, a, Mode::Nearest, true),
    );
    r.add(
        &[
            "_upsample_nearest_exact1d",
            "_upsample_nearest_exact1d.out",
            "_upsample_nearest_exact2d",
            "_upsample_nearest_exact2d.out",
            "_upsample_nearest_exact3d",
            "_upsample_nearest_exact3d.out",
        ],
        |c, a| upsample(c, a, Mode::NearestExact, false),
    );
    r.add(
        &[
            "_upsample_nearest_exact1d_backward",
            "_upsample_nearest_exact1d_backward.grad_input",
            "_upsample_nearest_exact2d_backward",
            "_upsample_nearest_exact2d_backward.grad_input",
            "_upsample_nearest_exact3d_backward",
            "_upsample_nearest_exact3d_backward.grad_input",
        ],
        |c, a| upsample(c, a, Mode::NearestExact, true),
    );
    r.add(
        &[
            "upsample_linear1d",
            "upsample_linear1d.out",
            "upsample_bilinear2d",
            "upsample_bilinear2d.out",
            "upsample_trilinear3d",
            "upsample_trilinear3d.out",
        ],
        upsample_linear,
    );
    r.add(
        &[
            "upsample_linear1d_backward",
            "upsample_linear1d_backward.grad_input",
            "upsample_bilinear2d_backward",
            "upsample_bilinear2d_backward.grad_input",
            "upsample_trilinear3d_backward",
            "upsample_trilinear3d_backward.grad_input",
        ],
        upsample_linear_backward,
    );
    r.add(
        &[
            "_adaptive_avg_pool2d",
            "_adaptive_avg_pool2d.out",
            "_adaptive_avg_pool3d",
            "_adaptive_avg_pool3d.out",
            "adaptive_avg_pool3d.out",
        ],
        adaptive_avg_pool,
    );
    r.add(
        &[
            "_adaptive_avg_pool2d_backward",
            "_adaptive_avg_pool2d_backward.out",
        ],
        |c, a| adaptive_avg_pool_backward(c, a, 2),
    );
    r.add(
        &[
            "_adaptive_avg_pool3d_backward",
            "_adaptive_avg_pool3d_backward.out",
            "adaptive_avg_pool3d_backward.grad_input",
        ],
        |c, a| adaptive_avg_pool_backward(c, a, 3),
    );
}
