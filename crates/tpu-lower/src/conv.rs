//! Neural-network family, part 2: convolution (regular and transposed, any
//! number of spatial dims, groups) with its backward. Pooling is in `pool`.

use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, ConvAttrs, ReduceKind as R, ValueId};

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
}
