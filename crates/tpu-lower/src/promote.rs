//! PyTorch's type promotion (`at::native::result_type`): dimensioned tensors
//! decide first, then 0-dim tensors, then Python numbers, each lower group
//! only able to raise the category (bool < int < float).

use crate::args::Arg;
use tpu_graph::{DType, Graph};

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
