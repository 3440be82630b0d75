//! The canonical form of a graph: the nodes a program needs, in an order that
//! depends on the program, not on the order its ops were recorded in.
//!
//! Parameters come first, by position (they are the program's interface and
//! stay even when unused). Then, depth-first from the roots, each node after
//! its inputs (visited in operand order): the nodes with effects, in recorded
//! order (their order is part of the program), then the outputs, in order.
//! Nodes reached from no root are dead and left out.
//!
//! Emission (`emit.rs`) writes this order with names numbered in it, and the
//! structural hash serializes the same sequence, so two graphs with one key
//! emit one text: an executable cached (in memory or on disk) for one serves
//! the other, with the same parameters and outputs.

use crate::cse::has_effects;
use crate::ir::{Graph, Op};
use crate::GraphKey;
use std::hash::{Hash, Hasher};

/// Value numbers of dead values.
pub const DEAD: u32 = u32::MAX;

pub struct Canonical {
    /// Indices of the live nodes, in canonical order.
    pub nodes: Vec<u32>,
    /// For every value (by `ValueId`), its number in canonical order, or [`DEAD`].
    pub value_number: Vec<u32>,
}

impl Graph {
    /// The live nodes in canonical order (see the module documentation).
    pub fn canonical(&self) -> Canonical {
        let mut seen = vec![false; self.nodes.len()];
        let mut order = Vec::with_capacity(self.nodes.len());
        for &p in &self.params {
            let n = self.producers[p.0 as usize].0;
            seen[n as usize] = true;
            order.push(n);
        }
        let mut stack = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if has_effects(&node.op) {
                self.visit(i as u32, &mut seen, &mut stack, &mut order);
            }
        }
        for &v in &self.outputs {
            self.visit(
                self.producers[v.0 as usize].0,
                &mut seen,
                &mut stack,
                &mut order,
            );
        }
        let mut value_number = vec![DEAD; self.types.len()];
        let mut next = 0;
        for &n in &order {
            for v in &self.nodes[n as usize].outputs {
                value_number[v.0 as usize] = next;
                next += 1;
            }
        }
        Canonical {
            nodes: order,
            value_number,
        }
    }

    /// Post-order from `root`, iterative: fused graphs are deep chains.
    fn visit(
        &self,
        root: u32,
        seen: &mut [bool],
        stack: &mut Vec<(u32, usize)>,
        out: &mut Vec<u32>,
    ) {
        if std::mem::replace(&mut seen[root as usize], true) {
            return;
        }
        stack.push((root, 0));
        while let Some((n, k)) = stack.last_mut() {
            let inputs = &self.nodes[*n as usize].inputs;
            if let Some(v) = inputs.get(*k) {
                *k += 1;
                let m = self.producers[v.0 as usize].0;
                // In a DAG a node still on the stack is never met again, so
                // marking at push keeps the order topological.
                if !std::mem::replace(&mut seen[m as usize], true) {
                    stack.push((m, 0));
                }
            } else {
                out.push(*n);
                stack.pop();
            }
        }
    }

    /// A 128-bit key of the live program: ops, attributes, result types,
    /// wiring (by canonical number), outputs, parameters and aliases; not the
    /// recording order, dead nodes, buffer identities or host scalar values.
    pub fn structural_hash(&self) -> GraphKey {
        let mut bytes = Bytes(Vec::with_capacity(64 * self.nodes.len()));
        self.serialize(&mut bytes);
        let mut halves = [0u64; 2];
        for (salt, half) in halves.iter_mut().enumerate() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            salt.hash(&mut h);
            h.write(&bytes.0);
            *half = h.finish();
        }
        GraphKey(halves[0], halves[1])
    }

    /// The canonical sequence, written to `h`: one record per live node, then
    /// the outputs and aliases. Regions are written the same way, nested.
    fn serialize(&self, h: &mut Bytes) {
        let c = self.canonical();
        h.write_usize(self.params.len());
        h.write_usize(c.nodes.len());
        for &n in &c.nodes {
            let node = &self.nodes[n as usize];
            match &node.op {
                // Regions by their canonical form, like the graph itself.
                Op::While(l) => {
                    h.write_u8(1);
                    l.cond.serialize(h);
                    l.body.serialize(h);
                }
                op => {
                    h.write_u8(0);
                    op.hash(h);
                }
            }
            h.write_usize(node.inputs.len());
            for v in &node.inputs {
                h.write_u32(c.value_number[v.0 as usize]);
            }
            h.write_usize(node.outputs.len());
            for &v in &node.outputs {
                self.ty(v).hash(h);
            }
        }
        h.write_usize(self.outputs.len());
        for v in &self.outputs {
            h.write_u32(c.value_number[v.0 as usize]);
        }
        self.aliases.hash(h);
        self.packs.hash(h);
    }
}

/// Collects what is hashed, so the two salted halves of the key hash one
/// buffer instead of walking the graph twice.
struct Bytes(Vec<u8>);

impl Hasher for Bytes {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only collects bytes")
    }
}
