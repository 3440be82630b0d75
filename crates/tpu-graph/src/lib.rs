//! Typed graph IR for torch-tpu.
//!
//! - [`ir`]: values, nodes and graphs; [`builder`]: node constructors with
//!   shape inference; [`helpers`]: families shared by lowering rules
//!   (broadcasting, promotion, keepdim reductions); [`views`]: strided reads
//!   and writes of flat storage values; [`emit`]: StableHLO text; [`loops`]:
//!   bounded `while` loops with graphs as regions.
//! - [`Graph::structural_hash`] keys every executable cache.

pub mod builder;
pub mod dtype;
pub mod emit;
pub mod fold;
pub mod helpers;
pub mod ir;
pub mod loops;
pub mod views;

pub use dtype::{Category, DType};
pub use ir::*;
pub use views::View;

use std::hash::{Hash, Hasher};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GraphError {
    /// Shapes, dtypes or attributes that do not fit the op.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, GraphError>;

/// A 128-bit structural key: ops, attributes, shapes, dtypes, wiring and
/// aliasing, never buffer identities or host scalar values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GraphKey(pub u64, pub u64);

impl Graph {
    pub fn structural_hash(&self) -> GraphKey {
        let mut halves = [0u64; 2];
        for (salt, half) in halves.iter_mut().enumerate() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            salt.hash(&mut h);
            self.nodes.hash(&mut h);
            self.types.hash(&mut h);
            self.outputs.hash(&mut h);
            self.aliases.hash(&mut h);
            *half = h.finish();
        }
        GraphKey(halves[0], halves[1])
    }
}
