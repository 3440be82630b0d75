//! Bounded loops: a `stablehlo.while` whose condition and body are graphs of
//! their own, with the loop state as their parameters. Iterative math whose
//! step count depends on the data (recurrences over a tensor `n`, series and
//! continued fractions run to convergence) needs one: unrolling would have to
//! guess the count when the graph is built.

use crate::emit::{value_names, Emitter};
use crate::ir::*;
use crate::{GraphError, Result};
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The regions of a [`Op::While`] node: `cond` maps the state to a bool
/// scalar, `body` maps it to the next state (same types, same order).
#[derive(Clone, Debug)]
pub struct LoopRegions {
    pub cond: Graph,
    pub body: Graph,
}

/// What identifies a region graph structurally (as `Graph::structural_hash`).
fn parts(g: &Graph) -> (&[Node], &[ValueType], &[ValueId], &[ValueId]) {
    (&g.nodes, &g.types, &g.params, &g.outputs)
}

impl PartialEq for LoopRegions {
    fn eq(&self, o: &Self) -> bool {
        parts(&self.cond) == parts(&o.cond) && parts(&self.body) == parts(&o.body)
    }
}

impl Eq for LoopRegions {}

impl Hash for LoopRegions {
    fn hash<H: Hasher>(&self, h: &mut H) {
        parts(&self.cond).hash(h);
        parts(&self.body).hash(h);
    }
}

/// A fresh graph with one parameter per type.
fn region(types: &[ValueType]) -> (Graph, Vec<ValueId>) {
    let mut g = Graph::new();
    let ps = types.iter().map(|t| g.parameter(t.clone())).collect();
    (g, ps)
}

impl Graph {
    /// `while cond(state) { state = body(state) }` from `init`; returns the
    /// final state. `cond` and `body` build their regions on graphs of their
    /// own (only their parameters, the state, come from outside), so values
    /// of `self` a loop needs must be part of the state.
    pub fn while_loop(
        &mut self,
        init: &[ValueId],
        cond: impl FnOnce(&mut Graph, &[ValueId]) -> Result<ValueId>,
        body: impl FnOnce(&mut Graph, &[ValueId]) -> Result<Vec<ValueId>>,
    ) -> Result<Vec<ValueId>> {
        let types: Vec<ValueType> = init.iter().map(|&v| self.ty(v).clone()).collect();
        if types.is_empty() {
            return Err(GraphError::Invalid("while: empty loop state".into()));
        }
        let (mut cg, cps) = region(&types);
        let c = cond(&mut cg, &cps)?;
        if *cg.ty(c) != ValueType::new(crate::DType::Bool, &[]) {
            return Err(GraphError::Invalid(format!(
                "while: the condition is {}, expected a bool scalar",
                cg.ty(c)
            )));
        }
        cg.outputs = vec![c];
        let (mut bg, bps) = region(&types);
        let next = body(&mut bg, &bps)?;
        let got: Vec<&ValueType> = next.iter().map(|&v| bg.ty(v)).collect();
        if got.len() != types.len() || got.iter().zip(&types).any(|(a, b)| *a != b) {
            return Err(GraphError::Invalid(format!(
                "while: the body gives {got:?} for a state of {types:?}"
            )));
        }
        bg.outputs = next;
        let regions = Arc::new(LoopRegions { cond: cg, body: bg });
        Ok(self.push(Op::While(regions), init.to_vec(), types))
    }
}

impl Emitter<'_> {
    /// One region: a block taking the state, the region's nodes, a return.
    fn emit_region(&self, g: &Graph, prefix: &str) -> String {
        let mut e = Emitter {
            g,
            names: value_names(g, prefix),
            out: String::new(),
            prefix: prefix.to_string(),
        };
        let args: Vec<String> = g
            .params
            .iter()
            .map(|&p| format!("{}: {}", e.n(p), g.ty(p)))
            .collect();
        let _ = writeln!(e.out, "      ^bb0({}):", args.join(", "));
        for (i, node) in g.nodes.iter().enumerate() {
            e.emit_node(i, node);
        }
        let (outs, types) = e.operands(&g.outputs);
        let _ = writeln!(e.out, "    \"stablehlo.return\"({outs}) : ({types}) -> ()");
        e.out
    }

    pub(crate) fn emit_while(&mut self, tag: &str, node: &Node, r: &LoopRegions) {
        let cond = self.emit_region(&r.cond, &format!("{tag}c_"));
        let body = self.emit_region(&r.body, &format!("{tag}b_"));
        let regions = format!("{cond}    }}, {{\n{body}");
        self.op(node, "stablehlo.while", &regions, "");
    }
}
