//! Pooling over the last `n` spatial dims (2-d and 3-d share one
//! implementation): max pooling with indices, average pooling, adaptive max
//! pooling, each with its backward.
//!
//! Windows are taken as strided slices of the padded input, one per kernel
//! offset, so max pooling gets PyTorch's indices (flat into each spatial
//! plane: the first maximum, or the last NaN) from a reduction over the
//! offsets, and the backward ops place each offset's gradient back with an
//! interior pad: no scatter.

use crate::operands::{bin, cmp, cmp_k, isnan, k, opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, ValueId, WindowAttrs};

/// An int list argument expanded to `n` values (one value repeats; empty gives `default`).
fn expand_n(v: Vec<i64>, n: usize, default: Option<&[i64]>, what: &str) -> Result<Vec<i64>> {
    match v.len() {
        0 => match default {
            Some(d) => Ok(d.to_vec()),
            None => bail!("{what} must not be empty"),
        },
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v),
        _ => bail!("{what} must be a single int or a tuple of {n} ints, got {v:?}"),
    }
}

/// Geometry of a pooling over the last `n` dims: kernel, stride, padding,
/// dilation, input and output sizes, and the high padding `ceil_mode` needs.
struct PoolNd {
    k: Vec<i64>,
    s: Vec<i64>,
    p: Vec<i64>,
    d: Vec<i64>,
    inp: Vec<i64>,
    out: Vec<i64>,
    hi: Vec<i64>,
}

impl PoolNd {
    /// From `kernel, stride, padding, dilation?, ceil_mode` at argument `i`.
    fn new(
        c: &LowerCtx,
        a: &Args,
        x: ValueId,
        i: usize,
        has_dilation: bool,
        n: usize,
    ) -> Result<Self> {
        let xs = c.g.shape(x).to_vec();
        let r = xs.len();
        if !(r == n + 1 || r == n + 2) {
            bail!(
                "pool{n}d: expected a {}-D or {}-D input, got {}",
                n + 1,
                n + 2,
                c.g.ty(x)
            );
        }
        let k = expand_n(a.ints(i)?, n, None, "kernel_size")?;
        let s = expand_n(a.ints_or_empty(i + 1)?, n, Some(&k), "stride")?;
        let p = expand_n(a.ints_or_empty(i + 2)?, n, Some(&vec![0; n]), "padding")?;
        let (d, ceil_at) = if has_dilation {
            (
                expand_n(a.ints_or_empty(i + 3)?, n, Some(&vec![1; n]), "dilation")?,
                i + 4,
            )
        } else {
            (vec![1; n], i + 3)
        };
        let ceil = a.bool_or(ceil_at, false)?;
        let inp = xs[r - n..].to_vec();
        let (mut out, mut hi) = (vec![0; n], vec![0; n]);
        for j in 0..n {
            if k[j] <= 0 || s[j] <= 0 || d[j] <= 0 || p[j] < 0 {
                bail!(
                    "pool{n}d: kernel, stride and dilation must be positive, padding non-negative"
                );
            }
            if p[j] * 2 > k[j] {
                bail!("pad should be at most half of effective kernel size, but got pad={}, kernel_size={}", p[j], k[j]);
            }
            let span = inp[j] + 2 * p[j] - d[j] * (k[j] - 1) - 1;
            if span < 0 {
                bail!("pool{n}d: output size is too small for input {}", c.g.ty(x));
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
        Ok(PoolNd {
            k,
            s,
            p,
            d,
            inp,
            out,
            hi,
        })
    }

    fn n(&self) -> usize {
        self.k.len()
    }

    /// Every kernel offset, row-major.
    fn offsets(&self) -> Vec<Vec<i64>> {
        let mut all = vec![vec![]];
        for &kq in &self.k {
            all = all
                .into_iter()
                .flat_map(|o| {
                    (0..kq).map(move |i| {
                        let mut o = o.clone();
                        o.push(i);
                        o
                    })
                })
                .collect();
        }
        all
    }

    fn pad_input(&self, c: &mut LowerCtx, x: ValueId, value: f64) -> Result<ValueId> {
        let (r, n) = (c.g.rank(x), self.n());
        let (mut low, mut high) = (vec![0; r], vec![0; r]);
        for q in 0..n {
            low[r - n + q] = self.p[q];
            high[r - n + q] = self.hi[q];
        }
        let v = c.g.scalar(value, c.g.dtype(x));
        Ok(c.g.pad(x, v, &low, &high, &vec![0; r])?)
    }

    /// The window element at kernel offset `off` for every output position.
    fn offset_slice(&self, c: &mut LowerCtx, xp: ValueId, off: &[i64]) -> Result<ValueId> {
        let shape = c.g.shape(xp).to_vec();
        let (r, n) = (shape.len(), self.n());
        let (mut start, mut limit, mut stride) = (vec![0; r], shape.clone(), vec![1; r]);
        for (q, &o) in off.iter().enumerate().take(n) {
            let dim = r - n + q;
            start[dim] = o * self.d[q];
            limit[dim] = start[dim] + (self.out[q] - 1) * self.s[q] + 1;
            stride[dim] = self.s[q];
        }
        Ok(c.g.slice(xp, &start, &limit, &stride)?)
    }

    /// Inverse of `offset_slice` (zeros elsewhere), cropped to the unpadded input.
    fn place(&self, c: &mut LowerCtx, v: ValueId, off: &[i64]) -> Result<ValueId> {
        let (r, n) = (c.g.rank(v), self.n());
        let (mut low, mut high, mut interior) = (vec![0; r], vec![0; r], vec![0; r]);
        for (q, &o) in off.iter().enumerate().take(n) {
            let dim = r - n + q;
            let padded = self.inp[q] + self.p[q] + self.hi[q];
            low[dim] = o * self.d[q] - self.p[q];
            interior[dim] = self.s[q] - 1;
            let end = o * self.d[q] + (self.out[q] - 1) * self.s[q] + 1;
            high[dim] = padded - end - self.hi[q];
        }
        let zero = c.g.scalar(0.0, c.g.dtype(v));
        Ok(c.g.pad(v, zero, &low, &high, &interior)?)
    }

    /// Flat input index of kernel offset `off` per output position (shaped like
    /// `like`), and whether it lies inside the input.
    fn flat_index(
        &self,
        c: &mut LowerCtx,
        like: ValueId,
        off: &[i64],
    ) -> Result<(ValueId, ValueId)> {
        let shape = c.g.shape(like).to_vec();
        let (r, n) = (shape.len(), self.n());
        let mut idx = c.g.full_like(like, 0.0, DType::I64);
        let mut valid = c.g.full_like(like, 1.0, DType::Bool);
        for (q, &kq) in off.iter().enumerate().take(n) {
            let o = c.g.iota(DType::I64, &shape, (r - n + q) as i64)?;
            let o = c.g.mul_const(o, self.s[q] as f64)?;
            let v =
                c.g.binary_const(B::Add, o, (kq * self.d[q] - self.p[q]) as f64)?;
            let ge = cmp_k(c, CmpDir::Ge, v, 0.0)?;
            let lt = cmp_k(c, CmpDir::Lt, v, self.inp[q] as f64)?;
            let ok = bin(c, B::And, ge, lt)?;
            valid = bin(c, B::And, valid, ok)?;
            idx = c.g.mul_const(idx, self.inp[q] as f64)?;
            idx = bin(c, B::Add, idx, v)?;
        }
        Ok((idx, valid))
    }
}

/// `max_pool{2,3}d_with_indices(self, kernel, stride, padding, dilation, ceil_mode)` →
/// (out, int64 indices flat into each spatial plane).
fn max_pool_with_indices(c: &mut LowerCtx, a: &Args, n: usize) -> Out {
    let x = a.t(0)?;
    let lowest = match c.g.dtype(x) {
        DType::Bool => bail!("\"max_pool{n}d\" not implemented for 'Bool'"),
        d if d.is_float() => f64::NEG_INFINITY,
        DType::I8 => i8::MIN as f64,
        DType::I16 => i16::MIN as f64,
        DType::I32 => i32::MIN as f64,
        DType::I64 => i64::MIN as f64,
        _ => 0.0,
    };
    let pool = PoolNd::new(c, a, x, 1, true, n)?;
    let xp = pool.pad_input(c, x, lowest)?;
    let offs = pool.offsets();
    let mut cands = Vec::with_capacity(offs.len());
    for off in &offs {
        let v = pool.offset_slice(c, xp, off)?;
        cands.push(c.g.unsqueeze(v, 0)?);
    }
    let stacked = c.g.concatenate(&cands, 0)?;
    let vals = c.g.reduce_keep(R::Max, stacked, &[0], false)?;
    // The first maximum, or the last NaN (CPU: `val > max || isnan(val)`).
    let sshape = c.g.shape(stacked).to_vec();
    let rest: Vec<i64> = (1..sshape.len() as i64).collect();
    let vb = c.g.broadcast_in_dim(vals, &sshape, &rest)?;
    let eq = cmp(c, CmpDir::Eq, stacked, vb)?;
    let pos = c.g.iota(DType::I64, &sshape, 0)?;
    let big = k(c, pos, offs.len() as f64);
    let first = c.g.select(eq, pos, big)?;
    let first = c.g.reduce(R::Min, first, &[0])?;
    let nan = isnan(c, stacked)?;
    let none = k(c, pos, -1.0);
    let last_nan = c.g.select(nan, pos, none)?;
    let last_nan = c.g.reduce(R::Max, last_nan, &[0])?;
    let has_nan = cmp_k(c, CmpDir::Ge, last_nan, 0.0)?;
    let arg = c.g.select(has_nan, last_nan, first)?;
    let mut idx = c.g.full_like(arg, 0.0, DType::I64);
    for (i, off) in offs.iter().enumerate() {
        let (fi, _) = pool.flat_index(c, arg, off)?;
        let is = cmp_k(c, CmpDir::Eq, arg, i as f64)?;
        idx = c.g.select(is, fi, idx)?;
    }
    Ok(vec![vals, idx])
}

/// `max_pool{2,3}d_with_indices_backward(grad, self, kernel, stride, padding, dilation, ceil_mode, indices)`.
fn max_pool_with_indices_backward(c: &mut LowerCtx, a: &Args, n: usize) -> Out {
    let (go, x, ind) = (a.t(0)?, a.t(1)?, a.t(7)?);
    let pool = PoolNd::new(c, a, x, 2, true, n)?;
    let d = c.g.dtype(x);
    let g = c.g.convert(go, opmath(d));
    let ind = c.g.convert(ind, DType::I64);
    let zero = k(c, g, 0.0);
    let mut total: Option<ValueId> = None;
    for off in pool.offsets() {
        let (idx, valid) = pool.flat_index(c, ind, &off)?;
        let hit = cmp(c, CmpDir::Eq, ind, idx)?;
        let hit = bin(c, B::And, hit, valid)?;
        let contrib = c.g.select(hit, g, zero)?;
        let placed = pool.place(c, contrib, &off)?;
        total = Some(match total {
            Some(t) => bin(c, B::Add, t, placed)?,
            None => placed,
        });
    }
    let t = total.expect("kernel has at least one element");
    Ok(vec![c.g.convert(t, d)])
}

/// Divisor of each average-pooling window (`count_include_pad` at `at`,
/// `divisor_override` after it), broadcast to `like`.
fn avg_divisor(
    c: &mut LowerCtx,
    a: &Args,
    pool: &PoolNd,
    at: usize,
    like: ValueId,
) -> Result<ValueId> {
    let acc = c.g.dtype(like);
    let shape = c.g.shape(like).to_vec();
    if let Some(div) = a.opt_int(at + 1)? {
        return Ok(c.g.full_like(like, div as f64, acc));
    }
    let n = pool.n();
    let include_pad = a.bool_or(at, true)?;
    let ones = c.g.constant(tpu_graph::ConstVal::Int(1), acc, &pool.inp);
    let zero = c.g.scalar(0.0, acc);
    let one = c.g.scalar(1.0, acc);
    let (lo, mid) = if include_pad {
        (one, pool.p.clone())
    } else {
        (zero, vec![0; n])
    };
    let inner = c.g.pad(ones, lo, &mid, &mid, &vec![0; n])?;
    let outer: Vec<i64> = (0..n).map(|q| pool.p[q] - mid[q]).collect();
    let extra: Vec<i64> = (0..n).map(|q| pool.hi[q] - mid[q]).collect();
    let padded = c.g.pad(inner, zero, &outer, &extra, &vec![0; n])?;
    let window = WindowAttrs {
        dims: pool.k.clone(),
        strides: pool.s.clone(),
        padding: vec![(0, 0); n],
        base_dilation: vec![1; n],
        window_dilation: vec![1; n],
    };
    let counts = c.g.reduce_window(R::Sum, padded, window)?;
    let r = shape.len();
    let dims: Vec<i64> = (r - n..r).map(|q| q as i64).collect();
    Ok(c.g.broadcast_in_dim(counts, &shape, &dims)?)
}

/// `avg_pool{2,3}d(self, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override?)`.
fn avg_pool(c: &mut LowerCtx, a: &Args, n: usize) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let pool = PoolNd::new(c, a, x, 1, false, n)?;
    let xa = c.g.convert(x, opmath(d));
    let xp = pool.pad_input(c, xa, 0.0)?;
    let r = c.g.rank(x);
    let (mut dims, mut strides) = (vec![1; r], vec![1; r]);
    dims[r - n..].copy_from_slice(&pool.k);
    strides[r - n..].copy_from_slice(&pool.s);
    let window = WindowAttrs {
        dims,
        strides,
        padding: vec![(0, 0); r],
        base_dilation: vec![1; r],
        window_dilation: vec![1; r],
    };
    let sum = c.g.reduce_window(R::Sum, xp, window)?;
    let div = avg_divisor(c, a, &pool, 5, sum)?;
    let y = bin(c, B::Div, sum, div)?;
    Ok(vec![c.g.convert(y, d)])
}

/// `avg_pool{2,3}d_backward(grad, self, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override?)`.
fn avg_pool_backward(c: &mut LowerCtx, a: &Args, n: usize) -> Out {
    let (go, x) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let pool = PoolNd::new(c, a, x, 2, false, n)?;
    let g = c.g.convert(go, opmath(d));
    let div = avg_divisor(c, a, &pool, 6, g)?;
    let g = bin(c, B::Div, g, div)?;
    let mut total: Option<ValueId> = None;
    for off in pool.offsets() {
        let placed = pool.place(c, g, &off)?;
        total = Some(match total {
            Some(t) => bin(c, B::Add, t, placed)?,
            None => placed,
        });
    }
    let t = total.expect("kernel has at least one element");
    Ok(vec![c.g.convert(t, d)])
}

/// Window masks of adaptive pooling, `[n_out, n_in]`: `floor(o n / m) <= i < ceil((o + 1) n / m)`.
fn adaptive_mask(c: &mut LowerCtx, n_in: i64, n_out: i64) -> Result<ValueId> {
    let o = c.g.iota(DType::I64, &[n_out, n_in], 0)?;
    let i = c.g.iota(DType::I64, &[n_out, n_in], 1)?;
    let m = k(c, o, n_out as f64);
    let on = c.g.mul_const(o, n_in as f64)?;
    let start = bin(c, B::Div, on, m)?;
    let end = c.g.binary_const(B::Add, on, (n_in + n_out - 1) as f64)?;
    let end = bin(c, B::Div, end, m)?;
    let ge = cmp(c, CmpDir::Ge, i, start)?;
    let lt = cmp(c, CmpDir::Lt, i, end)?;
    bin(c, B::And, ge, lt)
}

/// `adaptive_max_pool{2,3}d(self, output_size) -> (out, indices)` over the
/// last `k` dims: the flat (row-major) index of the first maximum in each
/// window (the last NaN if any), via a dense `[.., out.., in..]` mask.
fn adaptive_max_pool(c: &mut LowerCtx, a: &Args, k_sp: usize) -> Out {
    let x = a.t(0)?;
    let os = a.ints(1)?;
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    if !(r == k_sp + 1 || r == k_sp + 2) || os.len() != k_sp {
        bail!(
            "adaptive_max_pool{k_sp}d(): Expected {}D or {}D tensor, but got {shape:?}",
            k_sp + 1,
            k_sp + 2
        );
    }
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("\"adaptive_max_pool{k_sp}d\" not implemented for '{d}'");
    }
    let sp = &shape[r - k_sp..];
    let lead = &shape[..r - k_sp];
    let nl = lead.len() as i64;
    let ks = k_sp as i64;
    let mut full = lead.to_vec();
    full.extend(&os);
    full.extend(sp);
    let mut xdims: Vec<i64> = (0..nl).collect();
    xdims.extend((0..ks).map(|q| nl + ks + q));
    let xb = c.g.broadcast_in_dim(x, &full, &xdims)?;
    let mut mask: Option<ValueId> = None;
    for q in 0..k_sp {
        let m = adaptive_mask(c, sp[q], os[q])?;
        let m =
            c.g.broadcast_in_dim(m, &full, &[nl + q as i64, nl + ks + q as i64])?;
        mask = Some(match mask {
            Some(p) => bin(c, B::And, p, m)?,
            None => m,
        });
    }
    let mask = mask.expect("at least one spatial dim");
    let low = k(c, xb, f64::NEG_INFINITY);
    let masked = c.g.select(mask, xb, low)?;
    let red: Vec<usize> = (0..k_sp).map(|q| r + q).collect();
    let vals = c.g.reduce_keep(R::Max, masked, &red, false)?;
    let vb =
        c.g.broadcast_in_dim(vals, &full, &(0..nl + ks).collect::<Vec<_>>())?;
    let mut flat = c.g.iota(DType::I64, &full, nl + ks)?;
    for (q, &size) in sp.iter().enumerate().skip(1) {
        flat = c.g.mul_const(flat, size as f64)?;
        let iq = c.g.iota(DType::I64, &full, nl + ks + q as i64)?;
        flat = bin(c, B::Add, flat, iq)?;
    }
    let eq = cmp(c, CmpDir::Eq, xb, vb)?;
    let first = bin(c, B::And, eq, mask)?;
    let big = k(c, flat, sp.iter().product::<i64>() as f64);
    let fc = c.g.select(first, flat, big)?;
    let fi = c.g.reduce_keep(R::Min, fc, &red, false)?;
    let nan = isnan(c, xb)?;
    let nan = bin(c, B::And, nan, mask)?;
    let neg = k(c, flat, -1.0);
    let nc = c.g.select(nan, flat, neg)?;
    let ni = c.g.reduce_keep(R::Max, nc, &red, false)?;
    let has_nan = cmp_k(c, CmpDir::Ge, ni, 0.0)?;
    let idx = c.g.select(has_nan, ni, fi)?;
    Ok(vec![vals, idx])
}

/// `adaptive_max_pool{2,3}d_backward(grad_output, self, indices)`: gradients
/// summed at the (flat, last `k` dims) indices.
fn adaptive_max_pool_backward(c: &mut LowerCtx, a: &Args, k_sp: usize) -> Out {
    let (go, x, ind) = (a.t(0)?, a.t(1)?, a.t(2)?);
    let shape = c.g.shape(x).to_vec();
    let r = shape.len();
    let gs = c.g.shape(go).to_vec();
    if r <= k_sp || gs.len() != r {
        bail!(
            "adaptive_max_pool{k_sp}d_backward: expected a {}D or {}D input",
            k_sp + 1,
            k_sp + 2
        );
    }
    let d = c.g.dtype(x);
    let lead = &shape[..r - k_sp];
    let p: i64 = shape[r - k_sp..].iter().product();
    let l: i64 = gs[r - k_sp..].iter().product();
    let mut gl = lead.to_vec();
    gl.push(l);
    let g = c.g.convert(go, opmath(d));
    let g = c.g.reshape(g, &gl)?;
    let ind = c.g.convert(ind, DType::I64);
    let ind = c.g.reshape(ind, &gl)?;
    let mut full = gl.clone();
    full.push(p);
    let nl = lead.len() as i64;
    let dims: Vec<i64> = (0..=nl).collect();
    let gb = c.g.broadcast_in_dim(g, &full, &dims)?;
    let ib = c.g.broadcast_in_dim(ind, &full, &dims)?;
    let pi = c.g.iota(DType::I64, &full, nl + 1)?;
    let hit = cmp(c, CmpDir::Eq, ib, pi)?;
    let zero = k(c, gb, 0.0);
    let contrib = c.g.select(hit, gb, zero)?;
    let s = c.g.reduce(R::Sum, contrib, &[nl])?;
    let s = c.g.reshape(s, &shape)?;
    Ok(vec![c.g.convert(s, d)])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["max_pool2d_with_indices", "max_pool2d_with_indices.out"],
        |c, a| max_pool_with_indices(c, a, 2),
    );
    r.add(
        &[
            "max_pool2d_with_indices_backward",
            "max_pool2d_with_indices_backward.grad_input",
        ],
        |c, a| max_pool_with_indices_backward(c, a, 2),
    );
    r.add(&["avg_pool2d", "avg_pool2d.out"], |c, a| avg_pool(c, a, 2));
    r.add(
        &["avg_pool2d_backward", "avg_pool2d_backward.grad_input"],
        |c, a| avg_pool_backward(c, a, 2),
    );
    r.add(
        &["max_pool3d_with_indices", "max_pool3d_with_indices.out"],
        |c, a| max_pool_with_indices(c, a, 3),
    );
    r.add(
        &[
            "max_pool3d_with_indices_backward",
            "max_pool3d_with_indices_backward.grad_input",
        ],
        |c, a| max_pool_with_indices_backward(c, a, 3),
    );
    r.add(&["avg_pool3d", "avg_pool3d.out"], |c, a| avg_pool(c, a, 3));
    r.add(
        &["avg_pool3d_backward", "avg_pool3d_backward.grad_input"],
        |c, a| avg_pool_backward(c, a, 3),
    );
    r.add(
        &["adaptive_max_pool2d", "adaptive_max_pool2d.out"],
        |c, a| adaptive_max_pool(c, a, 2),
    );
    r.add(
        &[
            "adaptive_max_pool2d_backward",
            "adaptive_max_pool2d_backward.grad_input",
        ],
        |c, a| adaptive_max_pool_backward(c, a, 2),
    );
    r.add(
        &["adaptive_max_pool3d", "adaptive_max_pool3d.out"],
        |c, a| adaptive_max_pool(c, a, 3),
    );
    r.add(
        &[
            "adaptive_max_pool3d_backward",
            "adaptive_max_pool3d_backward.grad_input",
        ],
        |c, a| adaptive_max_pool_backward(c, a, 3),
    );
}
