//! Structured control flow: `stablehlo.while` over loop-carried values.
//!
//! The condition and the body are graphs of their own whose parameters are
//! the carried values, in order; they refer to nothing outside themselves
//! (a value the body needs from outside is carried unchanged), so a loop is
//! hashed, compared and emitted like any other node.

use crate::ir::{Graph, Loop, Op, ValueId, ValueType};
use crate::{DType, GraphError, Result};
use std::sync::Arc;

/// A region graph with one parameter per carried type.
fn region(types: &[ValueType]) -> (Graph, Vec<ValueId>) {
    let mut g = Graph::new();
    let params = types.iter().map(|t| g.parameter(t.clone())).collect();
    (g, params)
}

impl Graph {
    /// `while cond(x) { x = body(x) }` from `init`; returns the final values.
    /// `cond` and `body` build their regions on fresh graphs, given the
    /// carried values there; they must not add parameters.
    pub fn while_loop<E: From<GraphError>>(
        &mut self,
        init: &[ValueId],
        cond: impl FnOnce(&mut Graph, &[ValueId]) -> std::result::Result<ValueId, E>,
        body: impl FnOnce(&mut Graph, &[ValueId]) -> std::result::Result<Vec<ValueId>, E>,
    ) -> std::result::Result<Vec<ValueId>, E> {
        let types: Vec<ValueType> = init.iter().map(|&v| self.ty(v).clone()).collect();
        let (mut cg, cp) = region(&types);
        let c = cond(&mut cg, &cp)?;
        cg.outputs = vec![c];
        let (mut bg, bp) = region(&types);
        bg.outputs = body(&mut bg, &bp)?;
        check_regions(&types, &cg, &bg)?;
        let l = Arc::new(Loop { cond: cg, body: bg });
        Ok(self.push(Op::While(l), init.to_vec(), types))
    }
}

fn check_regions(types: &[ValueType], cond: &Graph, body: &Graph) -> Result<()> {
    let bad = |m: String| Err(GraphError::Invalid(format!("while: {m}")));
    if cond.params.len() != types.len() || body.params.len() != types.len() {
        return bad("a region added parameters of its own".into());
    }
    if *cond.ty(cond.outputs[0]) != ValueType::new(DType::Bool, &[]) {
        return bad(format!(
            "the condition is {}, expected tensor<i1>",
            cond.ty(cond.outputs[0])
        ));
    }
    let out: Vec<&ValueType> = body.outputs.iter().map(|&v| body.ty(v)).collect();
    if out.len() != types.len() || out.iter().zip(types).any(|(a, b)| *a != b) {
        return bad(format!(
            "the body returns {} values that do not match the {} carried ones",
            out.len(),
            types.len()
        ));
    }
    Ok(())
}
