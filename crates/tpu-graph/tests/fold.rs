//! Transposes feeding a dot are folded into its dimension numbers: the dot reads
//! the untransposed value, and the results equal a hand computation.

mod common;

use common::run;
use tpu_graph::{DType, DotDims, Graph, Op, ValueType};

fn mm_dims() -> DotDims {
    DotDims {
        lhs_batch: vec![],
        rhs_batch: vec![],
        lhs_contract: vec![1],
        rhs_contract: vec![0],
    }
}

#[test]
fn linear_weight_transpose_folds_into_dot() {
    // x [2, 3] @ w^T, w [4, 3] (nn.Linear's layout).
    let mut g = Graph::new();
    let x = g.parameter(ValueType::new(DType::F32, &[2, 3]));
    let w = g.parameter(ValueType::new(DType::F32, &[4, 3]));
    let wt = g.transpose(w, &[1, 0]).unwrap();
    let y = g.dot(x, wt, mm_dims()).unwrap();
    g.outputs = vec![y];
    let node = g.node_of(y);
    assert!(matches!(node.op, Op::Dot(_)));
    assert_eq!(
        node.inputs,
        vec![x, w],
        "the dot should read the weight itself"
    );
    assert_eq!(g.shape(y), &[2, 4]);
    let xs: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let ws: Vec<f32> = (0..12).map(|i| (i as f32) * 0.5 - 2.0).collect();
    let want: Vec<f32> = (0..2)
        .flat_map(|i| {
            let (xs, ws) = (&xs, &ws);
            (0..4).map(move |j| (0..3).map(|k| xs[i * 3 + k] * ws[j * 3 + k]).sum())
        })
        .collect();
    assert_eq!(run(&g, &[xs, ws]), want);
}

#[test]
fn transpose_that_reorders_free_dims_is_kept() {
    // lhs = transpose of [3, 2, 5] by [1, 0, 2] contracted over its last dim:
    // folding would swap the result's free dims, so the transpose stays.
    let mut g = Graph::new();
    let a = g.parameter(ValueType::new(DType::F32, &[3, 2, 5]));
    let b = g.parameter(ValueType::new(DType::F32, &[5, 4]));
    let at = g.transpose(a, &[1, 0, 2]).unwrap();
    let dims = DotDims {
        lhs_batch: vec![],
        rhs_batch: vec![],
        lhs_contract: vec![2],
        rhs_contract: vec![0],
    };
    let y = g.dot(at, b, dims).unwrap();
    assert_eq!(g.node_of(y).inputs, vec![at, b]);
    assert_eq!(g.shape(y), &[2, 3, 4]);
}
