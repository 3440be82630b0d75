//! Neural-network family, part 2: convolution (regular and transposed, any
//! number of spatial dims, groups) with its backward, and 2-D max / average
//! pooling with their backward ops.
//!
//! Pooling windows are taken as strided slices of the padded input, one per
//! kernel offset, so max pooling gets PyTorch's indices (flat into each H*W
//! plane) from an argmax over the offsets, and the backward ops place each
//! offset's gradient back with an interior pad: no scatter.

use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, ConvAttrs, DType, ReduceKind as R, ValueId, WindowAttrs};

/// An `int[]` argument expanded to `n` entries (a single entry repeats; empty gives `default`).
fn expand(v: Vec<i64>, n: usize, default: i64, what: &str) -> Result<Vec<i64>> {
    match v.len() {
        0 => Ok(vec![default; n]),
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v),
        l => bail!("expected {what} to have 1 or {n} elements, got {l}"),
    }
}

#[derive(Clone)]
struct ConvParams {
    stride: Vec<i64>,
    padding: Vec<i64>,
    dilation: Vec<i64>,
    transposed: bool,
    output_padding: Vec<i64>,
    groups: i64,
}

/// Reads `stride, padding, dilation, transposed, output_padding, groups` starting at `i`.
fn conv_params(a: &Args, i: usize, nsp: usize) -> Result<ConvParams> {
    Ok(ConvParams {
        stride: expand(a.ints(i)?, nsp, 1, "stride")?,
        padding: expand(a.ints(i + 1)?, nsp, 0, "padding")?,
        dilation: expand(a.ints(i + 2)?, nsp, 1, "dilation")?,
        transposed: a.bool(i + 3)?,
        output_padding: expand(a.ints_or_empty(i + 4)?, nsp, 0, "output_padding")?,
        groups: a.int_or(i + 5, 1)?,
    })
}

/// Regular convolution, result in the accumulation dtype.
fn conv_regular(
    c: &mut LowerCtx,
    x: ValueId,
    w: ValueId,
    stride: &[i64],
    pad: &[i64],
    dil: &[i64],
    groups: i64,
) -> Result<ValueId> {
    let n = stride.len();
    let attrs = ConvAttrs {
        strides: stride.to_vec(),
        padding: pad.iter().map(|&p| (p, p)).collect(),
        lhs_dilation: vec![1; n],
        rhs_dilation: dil.to_vec(),
        feature_groups: groups,
        batch_groups: 1,
    };
    let acc = opmath(c.g.dtype(x));
    Ok(c.g.convolution_to(x, w, attrs, acc)?)
}

/// Transposed convolution with weight `[Cin, Cout/groups, k..]`, result in the accumulation dtype.
fn conv_transposed(c: &mut LowerCtx, x: ValueId, w: ValueId, p: &ConvParams) -> Result<ValueId> {
    let ws = c.g.shape(w).to_vec();
    let g = p.groups;
    let (cin, cog, ks) = (ws[0], ws[1], ws[2..].to_vec());
    if cin % g != 0 {
        bail!(
            "conv_transpose: weight {} does not fit groups={g}",
            c.g.ty(w)
        );
    }
    let nsp = ks.len();
    let mut split = vec![g, cin / g, cog];
    split.extend(&ks);
    let wr = c.g.reshape(w, &split)?;
    let mut perm = vec![0, 2, 1];
    perm.extend((3..3 + nsp as i64).collect::<Vec<_>>());
    let wt = c.g.transpose(wr, &perm)?;
    let mut merged = vec![g * cog, cin / g];
    merged.extend(&ks);
    let wm = c.g.reshape(wt, &merged)?;
    let sp: Vec<i64> = (2..2 + nsp as i64).collect();
    let wf = c.g.reverse(wm, &sp)?;
    let padding = (0..nsp)
        .map(|i| {
            let e = p.dilation[i] * (ks[i] - 1) - p.padding[i];
            (e, e + p.output_padding[i])
        })
        .collect();
    let attrs = ConvAttrs {
        strides: vec![1; nsp],
        padding,
        lhs_dilation: p.stride.clone(),
        rhs_dilation: p.dilation.clone(),
        feature_groups: g,
        batch_groups: 1,
    };
    let acc = opmath(c.g.dtype(x));
    Ok(c.g.convolution_to(x, wf, attrs, acc)?)
}

fn swap01(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    let r = c.g.rank(x) as i64;
    let mut perm = vec![1, 0];
    perm.extend(2..r);
    Ok(c.g.transpose(x, &perm)?)
}

/// Gradient of a regular convolution's weight: input `x [N, Cx, ..]`, output
/// gradient `dy [N, Cy, ..]`, result `[Cy, Cx/groups, k..]` in the accumulation dtype.
#[allow(clippy::too_many_arguments)]
fn weight_grad(
    c: &mut LowerCtx,
    x: ValueId,
    dy: ValueId,
    ks: &[i64],
    stride: &[i64],
    pad: &[i64],
    dil: &[i64],
    groups: i64,
) -> Result<ValueId> {
    let (xs, ys) = (c.g.shape(x).to_vec(), c.g.shape(dy).to_vec());
    let nsp = ks.len();
    let lhs = swap01(c, x)?;
    let rhs = swap01(c, dy)?;
    let padding = (0..nsp)
        .map(|i| {
            let hi = (ks[i] - 1) * dil[i] + (ys[2 + i] - 1) * stride[i] + 1 - xs[2 + i] - pad[i];
            (pad[i], hi)
        })
        .collect();
    let attrs = ConvAttrs {
        strides: dil.to_vec(),
        padding,
        lhs_dilation: vec![1; nsp],
        rhs_dilation: stride.to_vec(),
        feature_groups: 1,
        batch_groups: groups,
    };
    let acc = opmath(c.g.dtype(x));
    let r = c.g.convolution_to(lhs, rhs, attrs, acc)?;
    swap01(c, r)
}

/// `convolution(input, weight, bias?, stride, padding, dilation, transposed, output_padding, groups)`.
fn convolution(c: &mut LowerCtx, a: &Args) -> Out {
    let (mut x, w, bias) = (a.t(0)?, a.t(1)?, a.opt_t(2)?);
    let d = c.g.dtype(x);
    let unbatched = c.g.rank(x) + 1 == c.g.rank(w);
    if unbatched {
        x = c.g.unsqueeze(x, 0)?;
    }
    if c.g.rank(x) < 3 || c.g.rank(x) != c.g.rank(w) {
        bail!(
            "convolution: input {} and weight {} ranks do not fit",
            c.g.ty(x),
            c.g.ty(w)
        );
    }
    let nsp = c.g.rank(x) - 2;
    let p = conv_params(a, 3, nsp)?;
    let mut y = if p.transposed {
        conv_transposed(c, x, w, &p)?
    } else {
        conv_regular(c, x, w, &p.stride, &p.padding, &p.dilation, p.groups)?
    };
    if let Some(b) = bias {
        let shape = c.g.shape(y).to_vec();
        let b = c.g.convert(b, c.g.dtype(y));
        let b = c.g.broadcast_in_dim(b, &shape, &[1])?;
        y = c.g.binary(B::Add, y, b)?;
    }
    let y = c.g.convert(y, d);
    if unbatched {
        return Ok(vec![c.g.squeeze_dims(y, &[0])?]);
    }
    Ok(vec![y])
}

/// `convolution_backward(grad_output, input, weight, bias_sizes?, stride, padding,
/// dilation, transposed, output_padding, groups, output_mask)`; the
/// `_overrideable` form has no `bias_sizes`.
fn conv_backward_at(c: &mut LowerCtx, a: &Args, first: usize) -> Out {
    let (go, x, w) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let (xd, wd) = (c.g.dtype(x), c.g.dtype(w));
    if c.g.rank(x) < 3 || c.g.rank(x) != c.g.rank(w) || c.g.rank(go) != c.g.rank(x) {
        bail!(
            "convolution_backward: grad {}, input {}, weight {} do not fit",
            c.g.ty(go),
            c.g.ty(x),
            c.g.ty(w)
        );
    }
    let nsp = c.g.rank(x) - 2;
    let p = conv_params(a, first, nsp)?;
    let mask = a.bools(first + 6)?;
    let (xs, ws) = (c.g.shape(x).to_vec(), c.g.shape(w).to_vec());
    let ks = ws[2..].to_vec();
    let gi = if mask.first().copied().unwrap_or(true) {
        let r = if p.transposed {
            // An output_padding of at least the stride (allowed when the
            // dilation is larger) gives rows the forward never read: crop them.
            let r = conv_regular(c, go, w, &p.stride, &p.padding, &p.dilation, p.groups)?;
            let mut lim = c.g.shape(r).to_vec();
            lim[2..].copy_from_slice(&xs[2..]);
            let n = lim.len();
            c.g.slice(r, &vec![0; n], &lim, &vec![1; n])?
        } else {
            let ys = c.g.shape(go).to_vec();
            let op: Vec<i64> = (0..nsp)
                .map(|i| {
                    xs[2 + i]
                        - ((ys[2 + i] - 1) * p.stride[i] - 2 * p.padding[i]
                            + p.dilation[i] * (ks[i] - 1)
                            + 1)
                })
                .collect();
            let tp = ConvParams {
                output_padding: op,
                transposed: true,
                ..p.clone()
            };
            conv_transposed(c, go, w, &tp)?
        };
        c.g.convert(r, xd)
    } else {
        c.g.constant(tpu_graph::ConstVal::Int(0), xd, &xs)
    };
    let gw = if mask.get(1).copied().unwrap_or(true) {
        let r = if p.transposed {
            weight_grad(c, go, x, &ks, &p.stride, &p.padding, &p.dilation, p.groups)?
        } else {
            weight_grad(c, x, go, &ks, &p.stride, &p.padding, &p.dilation, p.groups)?
        };
        c.g.convert(r, wd)
    } else {
        c.g.constant(tpu_graph::ConstVal::Int(0), wd, &ws)
    };
    let cout = c.g.shape(go)[1];
    let gb = if mask.get(2).copied().unwrap_or(false) {
        let acc = opmath(c.g.dtype(go));
        let g = c.g.convert(go, acc);
        let dims: Vec<usize> = (0..c.g.rank(go)).filter(|&i| i != 1).collect();
        let s = c.g.reduce_keep(R::Sum, g, &dims, false)?;
        c.g.convert(s, c.g.dtype(go))
    } else {
        c.g.constant(tpu_graph::ConstVal::Int(0), c.g.dtype(go), &[cout])
    };
    Ok(vec![gi, gw, gb])
}

/// Geometry of a 2-D pooling window over the last two dims.
struct Pool {
    k: [i64; 2],
    s: [i64; 2],
    p: [i64; 2],
    d: [i64; 2],
    /// Input spatial size.
    inp: [i64; 2],
    out: [i64; 2],
    /// High padding (covers ceil_mode's partial windows).
    hi: [i64; 2],
}

impl Pool {
    /// From `kernel, stride, padding, dilation?, ceil_mode` at argument `i`.
    fn new(c: &LowerCtx, a: &Args, x: ValueId, i: usize, has_dilation: bool) -> Result<Pool> {
        let xs = c.g.shape(x);
        if !(3..=4).contains(&xs.len()) {
            bail!("pool2d: expected a 3-D or 4-D input, got {}", c.g.ty(x));
        }
        let k = expand(a.ints(i)?, 2, 1, "kernel_size")?;
        let s = expand(a.ints_or_empty(i + 1)?, 2, 0, "stride")?;
        let s: Vec<i64> = s
            .iter()
            .zip(&k)
            .map(|(&s, &k)| if s == 0 { k } else { s })
            .collect();
        let p = expand(a.ints_or_empty(i + 2)?, 2, 0, "padding")?;
        let (d, ceil_at) = if has_dilation {
            (expand(a.ints_or_empty(i + 3)?, 2, 1, "dilation")?, i + 4)
        } else {
            (vec![1, 1], i + 3)
        };
        let ceil = a.bool_or(ceil_at, false)?;
        let r = xs.len();
        let inp = [xs[r - 2], xs[r - 1]];
        let (mut out, mut hi) = ([0; 2], [0; 2]);
        for j in 0..2 {
            if p[j] * 2 > k[j] {
                bail!("pad should be at most half of effective kernel size, but got pad={}, kernel_size={}", p[j], k[j]);
            }
            let span = inp[j] + 2 * p[j] - d[j] * (k[j] - 1) - 1;
            if span < 0 {
                bail!("pool2d: output size is too small for input {}", c.g.ty(x));
            }
            let mut o = if ceil {
                (span + s[j] - 1) / s[j] + 1
            } else {
                span / s[j] + 1
            };
            if ceil && (o - 1) * s[j] >= inp[j] + p[j] {
                o -= 1;
            }
            out[j] = o;
            hi[j] = ((o - 1) * s[j] + d[j] * (k[j] - 1) + 1 - inp[j] - p[j]).max(p[j]);
        }
        Ok(Pool {
            k: [k[0], k[1]],
            s: [s[0], s[1]],
            p: [p[0], p[1]],
            d: [d[0], d[1]],
            inp,
            out,
            hi,
        })
    }

    fn padded(&self) -> [i64; 2] {
        [
            self.inp[0] + self.p[0] + self.hi[0],
            self.inp[1] + self.p[1] + self.hi[1],
        ]
    }

    /// The window element at kernel offset `(i, j)` for every output position.
    fn offset_slice(&self, c: &mut LowerCtx, xp: ValueId, i: i64, j: i64) -> Result<ValueId> {
        let shape = c.g.shape(xp).to_vec();
        let r = shape.len();
        let mut start = vec![0; r];
        let mut limit = shape.clone();
        let mut stride = vec![1; r];
        for (q, off) in [(0, i), (1, j)] {
            let dim = r - 2 + q;
            start[dim] = off * self.d[q];
            limit[dim] = start[dim] + (self.out[q] - 1) * self.s[q] + 1;
            stride[dim] = self.s[q];
        }
        Ok(c.g.slice(xp, &start, &limit, &stride)?)
    }

    /// Inverse of `offset_slice` (zeros elsewhere), cropped back to the unpadded input.
    fn place(&self, c: &mut LowerCtx, v: ValueId, i: i64, j: i64) -> Result<ValueId> {
        let r = c.g.rank(v);
        let pad = self.padded();
        let (mut low, mut high, mut interior) = (vec![0; r], vec![0; r], vec![0; r]);
        for (q, off) in [(0, i), (1, j)] {
            let dim = r - 2 + q;
            low[dim] = off * self.d[q] - self.p[q];
            interior[dim] = self.s[q] - 1;
            let end = off * self.d[q] + (self.out[q] - 1) * self.s[q] + 1;
            high[dim] = pad[q] - end - self.hi[q];
        }
        let zero = c.g.scalar(0.0, c.g.dtype(v));
        Ok(c.g.pad(v, zero, &low, &high, &interior)?)
    }

    /// Flat index `h * W + w` of kernel offset `(i, j)` per output position (`[oh, ow]`),
    /// and whether that position lies inside the input.
    fn flat_index(&self, c: &mut LowerCtx, i: ValueId, j: ValueId) -> Result<(ValueId, ValueId)> {
        let shape = c.g.shape(i).to_vec();
        let r = shape.len();
        let mut coord = Vec::new();
        for (q, off) in [(0, i), (1, j)] {
            let o = c.g.iota(DType::I64, &shape, (r - 2 + q) as i64)?;
            let o = c.g.mul_const(o, self.s[q] as f64)?;
            let o = c.g.binary_const(B::Sub, o, self.p[q] as f64)?;
            let k = c.g.mul_const(off, self.d[q] as f64)?;
            coord.push(c.g.binary(B::Add, o, k)?);
        }
        let row = c.g.mul_const(coord[0], self.inp[1] as f64)?;
        let idx = c.g.binary(B::Add, row, coord[1])?;
        let mut valid = c.g.full_like(idx, 1.0, DType::Bool);
        for (q, &v) in coord.iter().enumerate() {
            let zero = c.g.full_like(v, 0.0, DType::I64);
            let lim = c.g.full_like(v, self.inp[q] as f64, DType::I64);
            let ge = c.g.compare(CmpDir::Ge, v, zero)?;
            let lt = c.g.compare(CmpDir::Lt, v, lim)?;
            let ok = c.g.binary(B::And, ge, lt)?;
            valid = c.g.binary(B::And, valid, ok)?;
        }
        Ok((idx, valid))
    }

    /// Pads the input with `value` to the padded extents.
    fn pad_input(&self, c: &mut LowerCtx, x: ValueId, value: f64) -> Result<ValueId> {
        let r = c.g.rank(x);
        let (mut low, mut high) = (vec![0; r], vec![0; r]);
        for q in 0..2 {
            low[r - 2 + q] = self.p[q];
            high[r - 2 + q] = self.hi[q];
        }
        let v = c.g.scalar(value, c.g.dtype(x));
        Ok(c.g.pad(x, v, &low, &high, &vec![0; r])?)
    }
}

/// `max_pool2d_with_indices(self, kernel, stride, padding, dilation, ceil_mode)` → (out, int64 indices).
fn max_pool2d_with_indices(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    // Padding never wins: -inf, or the integer dtype's minimum.
    let lowest = match c.g.dtype(x) {
        DType::Bool => bail!("\"max_pool2d\" not implemented for 'Bool'"),
        d if d.is_float() => f64::NEG_INFINITY,
        DType::I8 => i8::MIN as f64,
        DType::I16 => i16::MIN as f64,
        DType::I32 => i32::MIN as f64,
        DType::I64 => i64::MIN as f64,
        _ => 0.0,
    };
    let pool = Pool::new(c, a, x, 1, true)?;
    let xp = pool.pad_input(c, x, lowest)?;
    let mut cands = Vec::new();
    for i in 0..pool.k[0] {
        for j in 0..pool.k[1] {
            let v = pool.offset_slice(c, xp, i, j)?;
            cands.push(c.g.unsqueeze(v, 0)?);
        }
    }
    let stacked = c.g.concatenate(&cands, 0)?;
    let vals = c.g.reduce_keep(R::Max, stacked, &[0], false)?;
    let arg = c.g.arg_reduce(true, stacked, 0)?;
    let kw = c.g.full_like(arg, pool.k[1] as f64, DType::I64);
    let ki = c.g.binary(B::Div, arg, kw)?;
    let kj = c.g.binary(B::Rem, arg, kw)?;
    let (idx, _) = pool.flat_index(c, ki, kj)?;
    Ok(vec![vals, idx])
}

/// `max_pool2d_with_indices_backward(grad, self, kernel, stride, padding, dilation, ceil_mode, indices)`.
fn max_pool2d_with_indices_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go, x, ind) = (a.t(0)?, a.t(1)?, a.t(7)?);
    let pool = Pool::new(c, a, x, 2, true)?;
    let d = c.g.dtype(x);
    let g = c.g.convert(go, opmath(d));
    let ind = c.g.convert(ind, DType::I64);
    let zero = c.g.full_like(g, 0.0, c.g.dtype(g));
    let mut total: Option<ValueId> = None;
    for i in 0..pool.k[0] {
        for j in 0..pool.k[1] {
            let ki = c.g.full_like(ind, i as f64, DType::I64);
            let kj = c.g.full_like(ind, j as f64, DType::I64);
            let (idx, valid) = pool.flat_index(c, ki, kj)?;
            let hit = c.g.compare(CmpDir::Eq, ind, idx)?;
            let hit = c.g.binary(B::And, hit, valid)?;
            let contrib = c.g.select(hit, g, zero)?;
            let placed = pool.place(c, contrib, i, j)?;
            total = Some(match total {
                Some(t) => c.g.binary(B::Add, t, placed)?,
                None => placed,
            });
        }
    }
    let t = total.expect("kernel has at least one element");
    Ok(vec![c.g.convert(t, d)])
}

/// Divisor of each average-pooling window, `[oh, ow]` broadcast to `like`.
fn avg_divisor(
    c: &mut LowerCtx,
    a: &Args,
    pool: &Pool,
    at: usize,
    like: ValueId,
) -> Result<ValueId> {
    let acc = c.g.dtype(like);
    let shape = c.g.shape(like).to_vec();
    if let Some(div) = a.opt_int(at + 1)? {
        return Ok(c.g.full_like(like, div as f64, acc));
    }
    let include_pad = a.bool_or(at, true)?;
    let ones = c.g.constant(tpu_graph::ConstVal::Int(1), acc, &pool.inp);
    let zero = c.g.scalar(0.0, acc);
    let one = c.g.scalar(1.0, acc);
    let (lo, mid) = if include_pad {
        (one, pool.p)
    } else {
        (zero, [0, 0])
    };
    let inner = c.g.pad(ones, lo, &mid, &mid, &[0, 0])?;
    let outer = [pool.p[0] - mid[0], pool.p[1] - mid[1]];
    let extra = [pool.hi[0] - mid[0], pool.hi[1] - mid[1]];
    let padded = c.g.pad(inner, zero, &outer, &extra, &[0, 0])?;
    let window = WindowAttrs {
        dims: pool.k.to_vec(),
        strides: pool.s.to_vec(),
        padding: vec![(0, 0); 2],
        base_dilation: vec![1, 1],
        window_dilation: vec![1, 1],
    };
    let counts = c.g.reduce_window(R::Sum, padded, window)?;
    let r = shape.len();
    Ok(c.g.broadcast_in_dim(counts, &shape, &[(r - 2) as i64, (r - 1) as i64])?)
}

/// `avg_pool2d(self, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override?)`.
fn avg_pool2d(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let pool = Pool::new(c, a, x, 1, false)?;
    let xa = c.g.convert(x, opmath(d));
    let xp = pool.pad_input(c, xa, 0.0)?;
    let r = c.g.rank(x);
    let mut dims = vec![1; r];
    let mut strides = vec![1; r];
    dims[r - 2..].copy_from_slice(&pool.k);
    strides[r - 2..].copy_from_slice(&pool.s);
    let window = WindowAttrs {
        dims,
        strides,
        padding: vec![(0, 0); r],
        base_dilation: vec![1; r],
        window_dilation: vec![1; r],
    };
    let sum = c.g.reduce_window(R::Sum, xp, window)?;
    let div = avg_divisor(c, a, &pool, 5, sum)?;
    let y = c.g.binary(B::Div, sum, div)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `avg_pool2d_backward(grad, self, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override?)`.
fn avg_pool2d_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let (go, x) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let pool = Pool::new(c, a, x, 2, false)?;
    let g = c.g.convert(go, opmath(d));
    let div = avg_divisor(c, a, &pool, 6, g)?;
    let g = c.g.binary(B::Div, g, div)?;
    let mut total: Option<ValueId> = None;
    for i in 0..pool.k[0] {
        for j in 0..pool.k[1] {
            let placed = pool.place(c, g, i, j)?;
            total = Some(match total {
                Some(t) => c.g.binary(B::Add, t, placed)?,
                None => placed,
            });
        }
    }
    let t = total.expect("kernel has at least one element");
    Ok(vec![c.g.convert(t, d)])
}

pub fn register(r: &mut Registry) {
    r.add(
        &[
            "convolution",
            "convolution.out",
            "convolution_overrideable",
            "convolution_overrideable.out",
        ],
        convolution,
    );
    r.add(
        &["convolution_backward", "convolution_backward.out"],
        |c, a| conv_backward_at(c, a, 4),
    );
    r.add(
        &[
            "convolution_backward_overrideable",
            "convolution_backward_overrideable.out",
        ],
        |c, a| conv_backward_at(c, a, 3),
    );
    r.add(
        &["max_pool2d_with_indices", "max_pool2d_with_indices.out"],
        max_pool2d_with_indices,
    );
    r.add(
        &[
            "max_pool2d_with_indices_backward",
            "max_pool2d_with_indices_backward.grad_input",
        ],
        max_pool2d_with_indices_backward,
    );
    r.add(&["avg_pool2d", "avg_pool2d.out"], avg_pool2d);
    r.add(
        &["avg_pool2d_backward", "avg_pool2d_backward.grad_input"],
        avg_pool2d_backward,
    );
}
