//! Layout folding at construction: a transpose feeding a `dot_general` becomes
//! the dot's dimension numbers. `nn.Linear` reaches the lowering as a dot with
//! a transposed weight view; emitted as `transpose` + `dot_general`, XLA's CPU
//! backend copies the weight on every call (a batch-1 MLP forward took 5.7 ms
//! instead of 0.15 ms).

use crate::ir::{DotDims, Graph, Op, ValueId};

/// `v`'s transpose input and the dims remapped through it, when `v` is a
/// transpose whose free (non-batch, non-contracting) dims keep their relative
/// order: then the dot's result layout is unchanged.
fn through_transpose(
    g: &Graph,
    v: ValueId,
    batch: &[i64],
    contract: &[i64],
) -> Option<(ValueId, Vec<i64>, Vec<i64>)> {
    let node = g.node_of(v);
    let Op::Transpose(perm) = &node.op else {
        return None;
    };
    let free: Vec<i64> = (0..perm.len() as i64)
        .filter(|d| !batch.contains(d) && !contract.contains(d))
        .map(|d| perm[d as usize])
        .collect();
    if free.windows(2).any(|w| w[0] > w[1]) {
        return None;
    }
    let remap = |dims: &[i64]| dims.iter().map(|&d| perm[d as usize]).collect::<Vec<_>>();
    Some((node.inputs[0], remap(batch), remap(contract)))
}

/// The operands and dimension numbers of a dot with transposed operands folded in.
pub fn dot_operands(
    g: &Graph,
    a: ValueId,
    b: ValueId,
    mut dims: DotDims,
) -> (ValueId, ValueId, DotDims) {
    let (mut a, mut b) = (a, b);
    if let Some((x, batch, contract)) = through_transpose(g, a, &dims.lhs_batch, &dims.lhs_contract)
    {
        (a, dims.lhs_batch, dims.lhs_contract) = (x, batch, contract);
    }
    if let Some((x, batch, contract)) = through_transpose(g, b, &dims.rhs_batch, &dims.rhs_contract)
    {
        (b, dims.rhs_batch, dims.rhs_contract) = (x, batch, contract);
    }
    (a, b, dims)
}
