//! The operand dialect every lowering family builds on: reading arguments as
//! operands (tensors or host scalars), PyTorch's type promotion, broadcasting,
//! opmath widening and the short node builders (`k`, `un`, `bin`, `cmp`, ...).
//! Families import these from here, not from each other.
//!
//! Type promotion follows `at::native::result_type`: dimensioned tensors
//! decide first, then 0-dim tensors, then Python numbers, each lower group
//! only able to raise the category (bool < int < float).

use crate::args::Arg;
use crate::registry::{Args, LowerCtx};
use crate::Result;
use tpu_graph::{BinaryKind as B, CmpDir, DType, Graph, UnaryKind as U, ValueId};

pub use tpu_graph::helpers::{broadcast_shapes, opmath, wrap_dim};

/// What a rule returns: its result values.
pub type Out = Result<Vec<ValueId>>;
/// The default floating dtype (`torch.get_default_dtype()`).
pub const DEFAULT_FLOAT: DType = DType::F32;

#[derive(Default, Clone, Copy)]
struct Groups {
    dim: Option<DType>,
    zero: Option<DType>,
    wrapped: Option<DType>,
}

fn merge(acc: &mut Option<DType>, d: DType) {
    *acc = Some(match *acc {
        Some(a) => DType::promote(a, d),
        None => d,
    });
}

/// The dtype a Python number of `d`'s kind takes part in promotion as.
fn wrapped_dtype(d: DType) -> DType {
    match d.category() {
        tpu_graph::Category::Float => DEFAULT_FLOAT,
        tpu_graph::Category::Int => DType::I64,
        tpu_graph::Category::Bool => DType::Bool,
        tpu_graph::Category::Complex => DEFAULT_FLOAT.to_complex(),
    }
}

/// `combine_categories(higher, lower)` from ATen.
fn combine(higher: Option<DType>, lower: Option<DType>) -> Option<DType> {
    match (higher, lower) {
        (None, l) => l,
        (h, None) => h,
        (Some(h), Some(l)) => {
            if h.is_complex() {
                Some(h)
            } else if l.is_complex() {
                // A complex number keeps a float tensor's precision.
                Some(if h.is_float() { h.to_complex() } else { l })
            } else if h.is_float() {
                Some(h)
            } else if h == DType::Bool || l.is_float() {
                Some(DType::promote(h, l))
            } else {
                Some(h)
            }
        }
    }
}

/// Result dtype of the tensor and scalar arguments among `args`.
pub fn result_type(g: &Graph, args: &[&Arg]) -> DType {
    let mut s = Groups::default();
    for a in args {
        match a {
            Arg::Tensor(t) if t.wrapped_number => {
                merge(&mut s.wrapped, wrapped_dtype(g.dtype(t.v)))
            }
            Arg::Tensor(t) if g.rank(t.v) == 0 => merge(&mut s.zero, g.dtype(t.v)),
            Arg::Tensor(t) => merge(&mut s.dim, g.dtype(t.v)),
            Arg::Scalar(sc) => merge(&mut s.wrapped, wrapped_dtype(sc.dtype())),
            Arg::Int(_) => merge(&mut s.wrapped, DType::I64),
            Arg::Float(_) => merge(&mut s.wrapped, DEFAULT_FLOAT),
            Arg::Bool(_) => merge(&mut s.wrapped, DType::Bool),
            _ => {}
        }
    }
    combine(s.dim, combine(s.zero, s.wrapped)).unwrap_or(DEFAULT_FLOAT)
}

/// The dtype float-valued math computes in: float and complex inputs keep
/// their dtype, integer and bool inputs go to the default float dtype.
pub fn float_dtype(d: DType) -> DType {
    if d.is_inexact() {
        d
    } else {
        DEFAULT_FLOAT
    }
}

/// Argument `i` (a tensor or a host scalar fed as a parameter) in `dtype`.
pub fn operand(c: &mut LowerCtx, a: &Args, i: usize, dtype: DType) -> Result<ValueId> {
    match a.arg(i) {
        Arg::Tensor(t) => Ok(c.g.convert(t.v, dtype)),
        _ => {
            let s = a.scalar(i)?;
            Ok(c.scalar(s, dtype))
        }
    }
}

/// `x` and `y` broadcast to their common shape.
pub fn broadcast_pair(c: &mut LowerCtx, x: ValueId, y: ValueId) -> Result<(ValueId, ValueId)> {
    let shape = broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    Ok((c.g.broadcast_to(x, &shape)?, c.g.broadcast_to(y, &shape)?))
}

/// Arguments 0 and 1 of a binary op, in `dtype`, broadcast to a common shape.
pub fn operands(c: &mut LowerCtx, a: &Args, dtype: DType) -> Result<(ValueId, ValueId)> {
    let x = operand(c, a, 0, dtype)?;
    let y = operand(c, a, 1, dtype)?;
    broadcast_pair(c, x, y)
}

/// The promoted dtype of arguments 0 and 1.
pub fn promoted(c: &LowerCtx, a: &Args) -> DType {
    result_type(c.g, &[a.arg(0), a.arg(1)])
}

/// Arguments 0 and 1 promoted (to float if `float`), broadcast, in opmath;
/// returns them with the result dtype.
pub fn pair(c: &mut LowerCtx, a: &Args, float: bool) -> Result<(ValueId, ValueId, DType)> {
    let mut d = promoted(c, a);
    if float {
        d = float_dtype(d);
    }
    let (x, y) = operands(c, a, opmath(d))?;
    Ok((x, y, d))
}

/// Argument 0 as float in opmath, with the result dtype.
pub fn float_arg(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, DType)> {
    let x = a.t(0)?;
    let d = float_dtype(c.g.dtype(x));
    Ok((c.g.convert(x, opmath(d)), d))
}

/// `x` converted to its opmath dtype, with the dtype to convert results back to.
pub fn up(c: &mut LowerCtx, x: ValueId) -> (ValueId, DType) {
    let d = c.g.dtype(x);
    (c.g.convert(x, opmath(d)), d)
}

/// A backward op's `grad_output` (argument 0, broadcast to `self`) and
/// `self` (argument 1), both in opmath, with `self`'s dtype.
pub fn grad_and_x(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, ValueId, DType)> {
    let (g, x) = (a.t(0)?, a.t(1)?);
    let d = c.g.dtype(x);
    let shape = c.g.shape(x).to_vec();
    let g = c.g.coerce(g, opmath(d), &shape)?;
    Ok((g, c.g.convert(x, opmath(d)), d))
}

/// The constant `v` in `like`'s shape and dtype.
pub fn k(c: &mut LowerCtx, like: ValueId, v: f64) -> ValueId {
    c.g.full_like(like, v, c.g.dtype(like))
}

pub fn un(c: &mut LowerCtx, kind: U, x: ValueId) -> Result<ValueId> {
    Ok(c.g.unary(kind, x)?)
}

pub fn bin(c: &mut LowerCtx, kind: B, x: ValueId, y: ValueId) -> Result<ValueId> {
    Ok(c.g.binary(kind, x, y)?)
}

pub fn cmp(c: &mut LowerCtx, dir: CmpDir, x: ValueId, y: ValueId) -> Result<ValueId> {
    Ok(c.g.compare(dir, x, y)?)
}

/// `x dir v` for a constant `v`.
pub fn cmp_k(c: &mut LowerCtx, dir: CmpDir, x: ValueId, v: f64) -> Result<ValueId> {
    let kv = k(c, x, v);
    cmp(c, dir, x, kv)
}

pub fn isnan(c: &mut LowerCtx, x: ValueId) -> Result<ValueId> {
    cmp(c, CmpDir::Ne, x, x)
}

/// The single result `v`, converted back to the result dtype `d`.
pub fn done(c: &mut LowerCtx, v: ValueId, d: DType) -> Out {
    Ok(vec![c.g.convert(v, d)])
}

/// A binary op computed in the promoted dtype.
pub fn promoted_binary(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let d = promoted(c, a);
    let (x, y) = operands(c, a, d)?;
    let kind = match (kind, d) {
        (B::Mul, DType::Bool) => B::And,
        (B::Max, DType::Bool) => B::Or,
        (B::Min, DType::Bool) => B::And,
        (k, _) => k,
    };
    Ok(vec![c.g.binary(kind, x, y)?])
}

/// [`k`] for graph-level code (loop bodies) that has a `Graph` but no `LowerCtx`.
pub fn kc(g: &mut Graph, like: ValueId, v: f64) -> ValueId {
    g.full_like(like, v, g.dtype(like))
}

/// [`cmp_k`] for graph-level code.
pub fn cmp_kc(g: &mut Graph, dir: CmpDir, x: ValueId, v: f64) -> tpu_graph::Result<ValueId> {
    let kv = kc(g, x, v);
    g.compare(dir, x, kv)
}
