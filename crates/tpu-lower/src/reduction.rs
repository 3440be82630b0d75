//! Reduction family: sum, mean, prod, amax/amin, max/min with indices,
//! argmax/argmin, var/std (with `correction`), any/all, logsumexp, cumsum,
//! vector norms and renorm.
//!
//! Conventions as in PyTorch: `dim=None` or `[]` reduces every dimension,
//! integer and bool sums and products give int64, half types accumulate in
//! f32, max/min propagate NaN and argmax/argmin pick the first extreme (a NaN
//! counts as the extreme).

use crate::operands::{bin, cmp_k, k, opmath, wrap_dim, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// Dims of an `int[1]? dim` argument; None and `[]` mean every dim.
fn dims_at(c: &LowerCtx, a: &Args, x: ValueId, i: usize) -> Result<Vec<usize>> {
    Ok(c.g.reduce_dims(x, &a.ints_or_empty(i)?)?)
}

/// Dtype of sum/prod/cumsum/cumprod: the `dtype` argument, else the tensor
/// written (`out=`, or `self` in place: CPU computes in its dtype, so
/// `cumsum(float, out=long)` is allowed), else int64 for integer and bool
/// inputs.
fn sum_dtype(c: &LowerCtx, x: ValueId, dtype: Option<DType>) -> DType {
    dtype
        .or_else(|| c.out_types.first().map(|t| t.dtype))
        .unwrap_or(default_sum_dtype(c.g.dtype(x)))
}

fn default_sum_dtype(x: DType) -> DType {
    if x.is_inexact() {
        x
    } else {
        DType::I64
    }
}

/// Dtype of `sum.out`/`prod.out` (no dim): unlike the dim forms, CPU wants
/// `out=` to have exactly the result's dtype.
fn sum_all_dtype(c: &LowerCtx, x: ValueId, dtype: Option<DType>) -> Result<DType> {
    let d = dtype.unwrap_or(default_sum_dtype(c.g.dtype(x)));
    match c.out_types.first() {
        Some(o) if o.dtype != d => bail!(
            "Expected out tensor to have dtype {d}, but got {} instead",
            o.dtype
        ),
        _ => Ok(d),
    }
}

/// Sum or product of `x` converted to `out`, accumulated in `opmath(out)`.
pub(crate) fn accumulate(
    c: &mut LowerCtx,
    kind: R,
    x: ValueId,
    dims: &[usize],
    keepdim: bool,
    out: DType,
) -> Result<ValueId> {
    let x = c.g.convert(x, out);
    let x = c.g.convert(x, opmath(out));
    let r = c.g.reduce_keep(kind, x, dims, keepdim)?;
    Ok(c.g.convert(r, out))
}

/// `sum(self, *, dtype)` and `sum.out`.
fn sum_all(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = sum_all_dtype(c, x, a.opt_dtype(1)?)?;
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![accumulate(c, R::Sum, x, &dims, false, d)?])
}

/// `sum.dim_IntList(self, dim, keepdim, *, dtype)`.
fn sum_dim(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dims = dims_at(c, a, x, 1)?;
    let d = sum_dtype(c, x, a.opt_dtype(3)?);
    Ok(vec![accumulate(
        c,
        R::Sum,
        x,
        &dims,
        a.bool_or(2, false)?,
        d,
    )?])
}

/// Mean over `dims` in `out` (a float dtype), accumulated in opmath.
pub(crate) fn mean_of(
    c: &mut LowerCtx,
    x: ValueId,
    dims: &[usize],
    keepdim: bool,
    out: DType,
) -> Result<ValueId> {
    let acc = opmath(out);
    let x = c.g.convert(x, out);
    let x = c.g.convert(x, acc);
    let s = c.g.reduce_keep(R::Sum, x, dims, keepdim)?;
    let n: i64 = dims.iter().map(|&d| c.g.shape(x)[d]).product();
    let m = c.g.binary_const(B::Div, s, n as f64)?;
    Ok(c.g.convert(m, out))
}

fn mean_dtype(c: &LowerCtx, x: ValueId, dtype: Option<DType>) -> Result<DType> {
    let d = dtype.unwrap_or(c.g.dtype(x));
    if !d.is_inexact() {
        return Err(crate::LowerError::DtypeNotImplemented(format!(
            "mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: {}",
            c.g.dtype(x)
        )));
    }
    Ok(d)
}

/// `mean(self, *, dtype)` and `mean.dtype_out`.
fn mean_all(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = mean_dtype(c, x, a.opt_dtype(1)?)?;
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![mean_of(c, x, &dims, false, d)?])
}

/// `mean.dim(self, dim, keepdim, *, dtype)` and `mean.out`.
fn mean_dim(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = mean_dtype(c, x, a.opt_dtype(3)?)?;
    let dims = dims_at(c, a, x, 1)?;
    Ok(vec![mean_of(c, x, &dims, a.bool_or(2, false)?, d)?])
}

fn prod_all(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = sum_all_dtype(c, x, a.opt_dtype(1)?)?;
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![accumulate(c, R::Prod, x, &dims, false, d)?])
}

/// `prod.dim_int(self, dim, keepdim, *, dtype)`.
fn prod_dim(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    let dims = if c.g.rank(x) == 0 { vec![] } else { vec![dim] };
    let d = sum_dtype(c, x, a.opt_dtype(3)?);
    Ok(vec![accumulate(
        c,
        R::Prod,
        x,
        &dims,
        a.bool_or(2, false)?,
        d,
    )?])
}

/// A reduction without identity (max, argmax, ...) over `dims` of `x`
/// (`None`: every element) needs something to reduce, as on CPU.
fn require_nonempty(c: &LowerCtx, what: &str, x: ValueId, dims: Option<&[usize]>) -> Result<()> {
    let shape = c.g.shape(x);
    match dims {
        _ if shape.is_empty() => Ok(()),
        None => {
            if shape.contains(&0) {
                bail!("{what}(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
            }
            Ok(())
        }
        Some(dims) => match dims.iter().find(|&&d| shape[d] == 0) {
            Some(d) => Err(crate::LowerError::Index(format!(
                "{what}(): Expected reduction dim {d} to have non-zero size."
            ))),
            None => Ok(()),
        },
    }
}

/// `amax`/`amin(self, dim=[], keepdim)`: NaN propagates.
fn extreme(c: &mut LowerCtx, a: &Args, kind: R) -> Out {
    let x = a.t(0)?;
    let dims = dims_at(c, a, x, 1)?;
    let what = if kind == R::Max { "amax" } else { "amin" };
    let all = dims.len() == c.g.rank(x) && a.ints_or_empty(1)?.is_empty();
    require_nonempty(c, what, x, (!all).then_some(dims.as_slice()))?;
    Ok(vec![c.g.reduce_keep(
        kind,
        x,
        &dims,
        a.bool_or(2, false)?,
    )?])
}

/// Plain `max(self)`/`min(self)`: over every element.
fn max_all(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    require_nonempty(c, "max", x, None)?;
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![c.g.reduce_keep(R::Max, x, &dims, false)?])
}
fn min_all(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    require_nonempty(c, "min", x, None)?;
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![c.g.reduce_keep(R::Min, x, &dims, false)?])
}

/// Index of the first extreme along `dim` (int64), optionally keeping the dim.
fn arg_along(
    c: &mut LowerCtx,
    x: ValueId,
    dim: usize,
    keepdim: bool,
    max: bool,
) -> Result<ValueId> {
    let i = c.g.arg_reduce(max, x, dim as i64)?;
    if keepdim {
        return Ok(c.g.unsqueeze(i, dim)?);
    }
    Ok(i)
}

/// `max.dim`/`min.dim(self, dim, keepdim)` → (values, indices).
fn extreme_dim(c: &mut LowerCtx, a: &Args, max: bool) -> Out {
    let x = a.t(0)?;
    let keep = a.bool_or(2, false)?;
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    if c.g.rank(x) == 0 {
        let zero = c.g.scalar(0.0, DType::I64);
        return Ok(vec![x, zero]);
    }
    require_nonempty(c, if max { "max" } else { "min" }, x, Some(&[dim]))?;
    let kind = if max { R::Max } else { R::Min };
    let v = c.g.reduce_keep(kind, x, &[dim], keep)?;
    let i = arg_along(c, x, dim, keep, max)?;
    Ok(vec![v, i])
}

/// `argmax`/`argmin(self, dim=None, keepdim)`: `dim=None` searches the flattened tensor.
fn arg_extreme(c: &mut LowerCtx, a: &Args, max: bool) -> Out {
    let x = a.t(0)?;
    let keep = a.bool_or(2, false)?;
    let r = c.g.rank(x);
    let what = if max { "argmax" } else { "argmin" };
    match a.opt_int(1)? {
        Some(d) if r > 0 => {
            let dim = wrap_dim(d, r)?;
            require_nonempty(c, what, x, Some(&[dim]))?;
            Ok(vec![arg_along(c, x, dim, keep, max)?])
        }
        _ => {
            if c.g.ty(x).numel() == 0 {
                return Err(crate::LowerError::Index(format!(
                    "{what}(): Expected reduction dim to be specified for input.numel() == 0."
                )));
            }
            let n = c.g.ty(x).numel();
            let flat = c.g.reshape(x, &[n])?;
            let i = c.g.arg_reduce(max, flat, 0)?;
            if keep {
                return Ok(vec![c.g.reshape(i, &vec![1; r])?]);
            }
            Ok(vec![i])
        }
    }
}

/// (var, mean) over `dims` with `correction` subtracted from the count.
fn var_mean_of(
    c: &mut LowerCtx,
    x: ValueId,
    dims: &[usize],
    correction: f64,
    keepdim: bool,
) -> Result<(ValueId, ValueId)> {
    let d = c.g.dtype(x);
    if !d.is_float() {
        return Err(crate::LowerError::DtypeNotImplemented(format!(
            "std and var only support floating point and complex dtypes, got {d}"
        )));
    }
    let acc = opmath(d);
    let xa = c.g.convert(x, acc);
    let mean = mean_of(c, xa, dims, true, acc)?;
    let xshape = c.g.shape(xa).to_vec();
    let mean_b = c.g.broadcast_to(mean, &xshape)?;
    let diff = c.g.binary(B::Sub, xa, mean_b)?;
    let sq = c.g.binary(B::Mul, diff, diff)?;
    let ss = c.g.reduce_keep(R::Sum, sq, dims, keepdim)?;
    let n: i64 = dims.iter().map(|&i| c.g.shape(x)[i]).product();
    let denom = (n as f64 - correction).max(0.0);
    let var = c.g.binary_const(B::Div, ss, denom)?;
    let mean = if keepdim {
        mean
    } else {
        c.g.squeeze_dims(mean, dims)?
    };
    Ok((c.g.convert(var, d), c.g.convert(mean, d)))
}

/// Arguments of the `.correction` overloads: (self, dim?, *, correction?, keepdim).
fn var_args(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, ValueId)> {
    let x = a.t(0)?;
    let dims = dims_at(c, a, x, 1)?;
    let corr = a.opt_scalar(2)?.map(|s| s.as_f64()).unwrap_or(1.0);
    var_mean_of(c, x, &dims, corr, a.bool_or(3, false)?)
}

fn sqrt(c: &mut LowerCtx, v: ValueId) -> Result<ValueId> {
    Ok(c.g.unary(U::Sqrt, v)?)
}

fn var(c: &mut LowerCtx, a: &Args) -> Out {
    Ok(vec![var_args(c, a)?.0])
}
fn std(c: &mut LowerCtx, a: &Args) -> Out {
    let v = var_args(c, a)?.0;
    Ok(vec![sqrt(c, v)?])
}
fn var_mean(c: &mut LowerCtx, a: &Args) -> Out {
    let (v, m) = var_args(c, a)?;
    Ok(vec![v, m])
}
fn std_mean(c: &mut LowerCtx, a: &Args) -> Out {
    let (v, m) = var_args(c, a)?;
    Ok(vec![sqrt(c, v)?, m])
}

/// any/all over `dims`: bool result (uint8 for uint8 input, as PyTorch).
fn any_all(
    c: &mut LowerCtx,
    x: ValueId,
    dims: &[usize],
    keepdim: bool,
    any: bool,
) -> Result<ValueId> {
    let d = c.g.dtype(x);
    let zero = c.g.full_like(x, 0.0, d);
    let b = c.g.compare(CmpDir::Ne, x, zero)?;
    let r =
        c.g.reduce_keep(if any { R::Or } else { R::And }, b, dims, keepdim)?;
    Ok(if d == DType::U8 {
        c.g.convert(r, DType::U8)
    } else {
        r
    })
}
fn logical_all(c: &mut LowerCtx, a: &Args, any: bool) -> Out {
    let x = a.t(0)?;
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![any_all(c, x, &dims, false, any)?])
}
/// `.dim(self, int dim, keepdim)` and `.dims(self, int[]? dim, keepdim)`.
fn logical_dims(c: &mut LowerCtx, a: &Args, any: bool) -> Out {
    let x = a.t(0)?;
    let dims = match a.arg(1) {
        crate::Arg::Int(d) => {
            let w = wrap_dim(*d, c.g.rank(x))?;
            if c.g.rank(x) == 0 {
                vec![]
            } else {
                vec![w]
            }
        }
        _ => dims_at(c, a, x, 1)?,
    };
    Ok(vec![any_all(c, x, &dims, a.bool_or(2, false)?, any)?])
}

/// `log(sum(exp(x - m))) + m` with `m` the max (0 where it is infinite).
pub(crate) fn logsumexp_of(
    c: &mut LowerCtx,
    x: ValueId,
    dims: &[usize],
    keepdim: bool,
) -> Result<ValueId> {
    let d = crate::operands::float_dtype(c.g.dtype(x));
    let acc = opmath(d);
    let x = c.g.convert(x, acc);
    let shape = c.g.shape(x).to_vec();
    // A NaN already poisons its row through `x - max`, so the plain XLA max suffices.
    let m = c.g.reduce(
        R::Max,
        x,
        &dims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
    )?;
    let m = c.g.reshape(m, &keep_shape(&shape, dims))?;
    let finite = c.g.unary(U::IsFinite, m)?;
    let zero = c.g.full_like(m, 0.0, acc);
    let m = c.g.select(finite, m, zero)?;
    let mb = c.g.broadcast_to(m, &shape)?;
    let shifted = c.g.binary(B::Sub, x, mb)?;
    let e = c.g.unary(U::Exp, shifted)?;
    let s = c.g.reduce_keep(R::Sum, e, dims, true)?;
    let l = c.g.unary(U::Log, s)?;
    let r = c.g.binary(B::Add, l, m)?;
    let r = if keepdim {
        r
    } else {
        c.g.squeeze_dims(r, dims)?
    };
    Ok(c.g.convert(r, d))
}

fn logsumexp(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let dims = dims_at(c, a, x, 1)?;
    Ok(vec![logsumexp_of(c, x, &dims, a.bool_or(2, false)?)?])
}

/// `cumsum(self, dim, *, dtype)`.
fn cumsum(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = sum_dtype(c, x, a.opt_dtype(2)?);
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    let xc = c.g.convert(x, d);
    if c.g.rank(x) == 0 {
        return Ok(vec![xc]);
    }
    let xa = c.g.convert(xc, opmath(d));
    let s = c.g.cumulative(R::Sum, xa, dim)?;
    Ok(vec![c.g.convert(s, d)])
}

/// `cumprod(self, dim, *, dtype)`.
fn cumprod(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = sum_dtype(c, x, a.opt_dtype(2)?);
    let dim = wrap_dim(a.int(1)?, c.g.rank(x))?;
    let xc = c.g.convert(x, d);
    if c.g.rank(x) == 0 {
        return Ok(vec![xc]);
    }
    let xa = c.g.convert(xc, opmath(d));
    let s = c.g.cumulative(R::Prod, xa, dim)?;
    Ok(vec![c.g.convert(s, d)])
}

/// Vector p-norm over `dims`, computed in opmath: `ord` 2, 1, inf, -inf, 0 or any p.
pub(crate) fn vector_norm(
    c: &mut LowerCtx,
    x: ValueId,
    ord: f64,
    dims: &[usize],
    keepdim: bool,
    dtype: Option<DType>,
) -> Result<ValueId> {
    // The norm of complex values is the norm of their magnitudes.
    let x = if c.g.dtype(x).is_complex() {
        c.g.unary(U::Abs, x)?
    } else {
        x
    };
    let d = dtype.map(DType::real).unwrap_or(c.g.dtype(x));
    if !d.is_float() {
        bail!(
            "linalg.vector_norm: expected a floating point input, got {}",
            c.g.dtype(x)
        );
    }
    let acc = opmath(d);
    let x = c.g.convert(x, d);
    let x = c.g.convert(x, acc);
    let ax = c.g.unary(U::Abs, x)?;
    let r = if ord == f64::INFINITY {
        c.g.reduce_keep(R::Max, ax, dims, keepdim)?
    } else if ord == f64::NEG_INFINITY {
        c.g.reduce_keep(R::Min, ax, dims, keepdim)?
    } else if ord == 0.0 {
        let zero = c.g.full_like(ax, 0.0, acc);
        let nz = c.g.compare(CmpDir::Ne, ax, zero)?;
        let nz = c.g.convert(nz, acc);
        c.g.reduce_keep(R::Sum, nz, dims, keepdim)?
    } else if ord == 1.0 {
        c.g.reduce_keep(R::Sum, ax, dims, keepdim)?
    } else if ord == 2.0 {
        let sq = c.g.binary(B::Mul, x, x)?;
        let s = c.g.reduce_keep(R::Sum, sq, dims, keepdim)?;
        c.g.unary(U::Sqrt, s)?
    } else {
        let p = c.g.full_like(ax, ord, acc);
        let powed = c.g.binary(B::Pow, ax, p)?;
        let s = c.g.reduce_keep(R::Sum, powed, dims, keepdim)?;
        let inv = c.g.full_like(s, 1.0 / ord, acc);
        c.g.binary(B::Pow, s, inv)?
    };
    Ok(c.g.convert(r, d))
}

/// `linalg_vector_norm(self, ord, dim?, keepdim, *, dtype)`; also
/// `norm.ScalarOpt_dim(self, p?, dim, keepdim)` and its dtype / out forms,
/// whose arguments sit at the same positions.
fn linalg_vector_norm(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let ord = a.opt_scalar(1)?.map(|s| s.as_f64()).unwrap_or(2.0);
    let dims = dims_at(c, a, x, 2)?;
    Ok(vec![vector_norm(
        c,
        x,
        ord,
        &dims,
        a.bool_or(3, false)?,
        a.opt_dtype(4)?,
    )?])
}

/// `norm.Scalar(self, p)` and `norm.ScalarOpt_dtype(self, p?, *, dtype)`: over every element.
fn norm_all(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let ord = a.opt_scalar(1)?.map(|s| s.as_f64()).unwrap_or(2.0);
    let dims: Vec<usize> = (0..c.g.rank(x)).collect();
    Ok(vec![vector_norm(c, x, ord, &dims, false, a.opt_dtype(2)?)?])
}

/// `shape` with `dims` set to 1.
pub(crate) fn keep_shape(shape: &[i64], dims: &[usize]) -> Vec<i64> {
    shape
        .iter()
        .enumerate()
        .map(|(i, &s)| if dims.contains(&i) { 1 } else { s })
        .collect()
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

pub fn register(r: &mut Registry) {
    r.add(&["sum", "sum.out"], sum_all);
    r.add(&["sum.dim_IntList", "sum.IntList_out"], sum_dim);
    r.add(&["mean", "mean.dtype_out"], mean_all);
    r.add(&["mean.dim", "mean.out"], mean_dim);
    r.add(&["prod", "prod.out"], prod_all);
    r.add(&["prod.dim_int", "prod.int_out"], prod_dim);
    r.add(&["amax", "amax.out"], |c, a| extreme(c, a, R::Max));
    r.add(&["amin", "amin.out"], |c, a| extreme(c, a, R::Min));
    r.add(&["max", "max.unary_out"], max_all);
    r.add(&["min", "min.unary_out"], min_all);
    r.add(&["max.dim", "max.dim_max"], |c, a| extreme_dim(c, a, true));
    r.add(&["min.dim", "min.dim_min"], |c, a| extreme_dim(c, a, false));
    r.add(&["argmax", "argmax.out"], |c, a| arg_extreme(c, a, true));
    r.add(&["argmin", "argmin.out"], |c, a| arg_extreme(c, a, false));
    r.add(&["var.correction", "var.correction_out"], var);
    r.add(&["std.correction", "std.correction_out"], std);
    r.add(
        &["var_mean.correction", "var_mean.correction_out"],
        var_mean,
    );
    r.add(
        &["std_mean.correction", "std_mean.correction_out"],
        std_mean,
    );
    r.add(&["any", "any.all_out"], |c, a| logical_all(c, a, true));
    r.add(&["all", "all.all_out"], |c, a| logical_all(c, a, false));
    r.add(
        &["any.dim", "any.dims", "any.out", "any.dims_out"],
        |c, a| logical_dims(c, a, true),
    );
    r.add(
        &["all.dim", "all.dims", "all.out", "all.dims_out"],
        |c, a| logical_dims(c, a, false),
    );
    r.add(&["logsumexp", "logsumexp.out"], logsumexp);
    r.add(&["cumsum", "cumsum.out", "cumsum_"], cumsum);
    r.add(&["cumprod", "cumprod.out", "cumprod_"], cumprod);
    r.add(
        &["linalg_vector_norm", "linalg_vector_norm.out"],
        linalg_vector_norm,
    );
    r.add(
        &[
            "norm.ScalarOpt_dim",
            "norm.ScalarOpt_dim_dtype",
            "norm.dtype_out",
            "norm.out",
        ],
        linalg_vector_norm,
    );
    r.add(
        &[
            "norm.Scalar",
            "norm.Scalar_out",
            "norm.ScalarOpt_dtype",
            "norm.ScalarOpt_dtype_out",
        ],
        norm_all,
    );
    r.add(&["renorm", "renorm.out", "renorm_"], renorm);
}
