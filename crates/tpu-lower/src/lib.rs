//! The lowering registry: one short rule per ATen overload, mapping the op's
//! arguments (already read as graph values) to graph nodes.
//!
//! Rules live in per-family modules (`unary`, `binary`, `bits`,
//! `elementwise`, `reduction`, `order_stats`, `linalg`, `nn`, `activation`,
//! `conv`, `pool`, `unfold`, `indexing`, `shape`, `random`, `special`,
//! `bessel`, ...); every family builds on the operand helpers in
//! [`operands`] (operands, type promotion, broadcasting, opmath). The
//! registry types are in [`registry`]; [`table`] lists every family's
//! registrations. Where an op is lowered: search this crate for its overload
//! name, e.g. `"add.out"`.

/// Registers the functional, `out=` and in-place overloads of an op.
macro_rules! overloads {
    ($name:literal) => {
        &[$name, concat!($name, ".out"), concat!($name, "_")]
    };
}

pub mod activation;
pub mod airy;
pub mod args;
pub mod asserts;
pub mod attention;
pub mod batch_norm;
pub mod bessel;
pub mod binary;
pub mod bits;
pub mod complex;
pub mod conv;
pub mod ctc;
pub mod distance;
pub mod distributions;
pub mod eig;
pub mod eigh;
pub mod elementwise;
pub mod embedding_bag;
pub mod external;
pub mod fft;
pub mod fractional_pool;
pub mod gamma_inc;
pub mod grid_sample;
pub mod group_norm;
pub mod histogram;
pub mod householder;
pub mod indexing;
pub mod jacobi;
pub mod ldl;
pub mod linalg;
pub mod loops;
pub mod losses;
pub mod lstsq;
pub mod lu;
pub mod masked;
pub mod matfun;
pub mod nn;
pub mod nn_extra;
pub mod operands;
pub mod order_stats;
pub mod polynomial;
pub mod pool;
pub mod qr;
pub mod random;
pub mod reduction;
pub mod registry;
pub mod resample;
pub mod resample_extra;
pub mod rows;
pub mod scatter;
pub mod schur;
pub mod search;
pub mod segment;
pub mod shape;
pub mod solve;
pub mod special;
pub mod svd;
pub mod table;
pub mod unary;
pub mod unfold;

pub use args::{Arg, ScalarArg, TensorArg};
pub use registry::{LowerCtx, Registry, Rule};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LowerError {
    /// No rule for this overload.
    #[error("no lowering for {0}")]
    Unsupported(String),
    /// Arguments the rule cannot take (bad shape, dtype or value).
    #[error("{0}")]
    Invalid(String),
    /// A dimension or index out of range (`IndexError` in Python, as on CPU).
    #[error("{0}")]
    Index(String),
    /// A dtype the op has no kernel for on CPU either (`NotImplementedError`,
    /// as there): `mean` of integers, `softmax` of integers.
    #[error("{0}")]
    DtypeNotImplemented(String),
}

impl From<tpu_graph::GraphError> for LowerError {
    fn from(e: tpu_graph::GraphError) -> Self {
        match e {
            tpu_graph::GraphError::Invalid(m) => LowerError::Invalid(m),
            tpu_graph::GraphError::Index(m) => LowerError::Index(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, LowerError>;

/// Fails with `LowerError::Invalid` and a formatted message.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::LowerError::Invalid(format!($($t)*))) };
}
