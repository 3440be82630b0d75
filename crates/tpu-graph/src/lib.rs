//! Typed graph IR for torch-tpu.
//!
//! - [`ir`]: values, nodes and graphs; [`builder`]: node constructors with
//!   shape inference; [`helpers`]: families shared by lowering rules
//!   (broadcasting, promotion, keepdim reductions); [`views`]: strided reads
//!   and writes of flat storage values; [`emit`]: StableHLO text;
//!   [`control`]: while loops; [`pack`]: host scalars packed into one
//!   argument per dtype.
//! - [`cse`]: pure nodes are hash-consed as they are added; [`canon`]: the
//!   live nodes in an order independent of recording, which emission writes
//!   and [`Graph::structural_hash`] (the key of every executable cache) hashes.

pub mod builder;
pub mod canon;
pub mod complex;
pub mod control;
pub mod cse;
pub mod dtype;
pub mod emit;
pub mod fold;
pub mod helpers;
pub mod ir;
pub mod pack;
pub mod views;

pub use dtype::{Category, DType};
pub use ir::*;
pub use pack::ArgSlot;
pub use views::View;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GraphError {
    /// Shapes, dtypes or attributes that do not fit the op.
    #[error("{0}")]
    Invalid(String),
    /// A dimension out of range (`IndexError` in Python, as on CPU).
    #[error("{0}")]
    Index(String),
}

pub type Result<T> = std::result::Result<T, GraphError>;

/// A 128-bit structural key: ops, attributes, shapes, dtypes, wiring and
/// aliasing, never buffer identities or host scalar values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GraphKey(pub u64, pub u64);
