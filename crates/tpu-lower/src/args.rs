//! Arguments of one op call, as the runtime hands them to a rule.

use tpu_graph::{DType, ValueId};

/// A tensor argument, already read through its view into a graph value.
#[derive(Clone, Copy, Debug)]
pub struct TensorArg {
    pub v: ValueId,
    /// A Python number wrapped into a 0-dim CPU tensor (`x * 3`): it takes
    /// part in type promotion only by category.
    pub wrapped_number: bool,
}

/// A `Scalar` argument's host value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarArg {
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A Python `complex`: real and imaginary parts.
    Complex(f64, f64),
}

impl ScalarArg {
    /// The value as a real number (a complex number's real part).
    pub fn as_f64(self) -> f64 {
        match self {
            ScalarArg::Bool(b) => b as i64 as f64,
            ScalarArg::Int(i) => i as f64,
            ScalarArg::Float(f) | ScalarArg::Complex(f, _) => f,
        }
    }
    /// The imaginary part (0 for real numbers).
    pub fn imag(self) -> f64 {
        match self {
            ScalarArg::Complex(_, im) => im,
            _ => 0.0,
        }
    }
    /// The dtype a wrapped Python number of this kind promotes as.
    pub fn dtype(self) -> DType {
        match self {
            ScalarArg::Bool(_) => DType::Bool,
            ScalarArg::Int(_) => DType::I64,
            ScalarArg::Float(_) => DType::F64,
            ScalarArg::Complex(..) => DType::C128,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Arg {
    None,
    Tensor(TensorArg),
    /// `Tensor[]` and `Tensor?[]`.
    Tensors(Vec<Option<TensorArg>>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    Scalar(ScalarArg),
    Str(String),
    DType(DType),
    /// A generator: the seed the shim drew from it for this call.
    Seed(u64),
    /// Layout, device, memory format: nothing a lowering needs.
    Other,
}

impl Arg {
    pub fn is_none(&self) -> bool {
        matches!(self, Arg::None)
    }
}
