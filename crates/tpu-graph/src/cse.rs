//! Hash-consing: a pure node equal to one already in the graph (same op,
//! attributes, inputs and result types) is not appended again; its values
//! are handed back. Lowering rules build the same constants, broadcasts and
//! views over and over (every `x * 2` makes its own splat `2`), and a fused
//! trace repeats them per op; merging them at insertion keeps graphs, hashes
//! and compiles smaller, and costs one FxHash lookup per node.
//!
//! Only nodes whose values depend on nothing but their inputs are merged.
//! Parameters are never merged (each is a slot of the program's interface),
//! nor anything with effects XLA may not drop or duplicate.

use crate::ir::{Graph, Node, Op, ValueId, ValueType};
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};

/// Whether a node with this op may have effects beyond its results, or its
/// results may not be a function of its inputs alone. Such nodes are neither
/// merged nor dropped when dead (`canon.rs`). Every variant is listed, so a
/// new op has to be decided here.
pub fn has_effects(op: &Op) -> bool {
    match op {
        // Code from elsewhere (JAX/Pallas): it may hold custom calls with
        // effects; we cannot see inside, so it is kept as recorded.
        Op::Call(_) => true,
        // A loop is as pure as its regions; they cannot refer to values outside.
        Op::While(l) => region_has_effects(&l.cond) || region_has_effects(&l.body),
        // `rng_bit_generator` is a deterministic function of its explicit
        // state operand (StableHLO spec); the graph holds no hidden RNG state.
        Op::RngBitGenerator => false,
        Op::Parameter(_)
        | Op::Constant(_)
        | Op::Iota(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Clamp
        | Op::Convert
        | Op::BitcastConvert
        | Op::Reshape
        | Op::Transpose(_)
        | Op::BroadcastInDim(_)
        | Op::Slice { .. }
        | Op::DynamicUpdateSlice
        | Op::DynamicSlice(_)
        | Op::Concatenate(_)
        | Op::Pad { .. }
        | Op::Reverse(_)
        | Op::Reduce { .. }
        | Op::ArgReduce { .. }
        | Op::Dot(_)
        | Op::Convolution(_)
        | Op::ReduceWindow { .. }
        | Op::Gather(_)
        | Op::Scatter(_)
        | Op::Sort { .. }
        | Op::Cholesky { .. }
        | Op::TriangularSolve { .. }
        | Op::Fft { .. } => false,
    }
}

fn region_has_effects(g: &Graph) -> bool {
    g.nodes.iter().any(|n| has_effects(&n.op))
}

/// Whether two nodes of this op with equal inputs and types may be one node.
pub fn mergeable(op: &Op) -> bool {
    !matches!(op, Op::Parameter(_)) && !has_effects(op)
}

fn content_hash(op: &Op, inputs: &[ValueId], out_types: &[ValueType]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    op.hash(&mut h);
    inputs.hash(&mut h);
    out_types.hash(&mut h);
    h.finish()
}

impl Graph {
    /// Adds a node whose result types were already inferred, or, for a pure
    /// node equal to an existing one, returns that node's values instead.
    pub fn push(
        &mut self,
        op: Op,
        inputs: Vec<ValueId>,
        out_types: Vec<ValueType>,
    ) -> Vec<ValueId> {
        if !mergeable(&op) {
            return self.append(op, inputs, out_types);
        }
        let key = content_hash(&op, &inputs, &out_types);
        let index = self.nodes.len() as u32;
        // One probe for both the lookup and the insertion.
        match self.cse.0.entry(key) {
            Entry::Occupied(mut e) => {
                let (nodes, types) = (&self.nodes, &self.types);
                if let Some(found) = same_node(nodes, types, *e.get(), &op, &inputs, &out_types) {
                    return found;
                }
                // A colliding or stale entry is replaced: only the newest
                // node of a hash is found, which loses a merge, never
                // correctness.
                e.insert(index);
            }
            Entry::Vacant(e) => {
                e.insert(index);
            }
        }
        self.append(op, inputs, out_types)
    }
}

/// Node `i`'s values if it is (still) a node with exactly this content.
fn same_node(
    nodes: &[Node],
    types: &[ValueType],
    i: u32,
    op: &Op,
    inputs: &[ValueId],
    out_types: &[ValueType],
) -> Option<Vec<ValueId>> {
    let n = nodes.get(i as usize)?;
    let same = n.op == *op
        && n.inputs == inputs
        && n.outputs.len() == out_types.len()
        && n.outputs
            .iter()
            .zip(out_types)
            .all(|(v, t)| types.get(v.0 as usize) == Some(t));
    same.then(|| n.outputs.clone())
}
