//! Graph hygiene: pure nodes are hash-consed at insertion, dead nodes are not
//! emitted, and the structural hash is a key of the live program, whatever
//! order it was recorded in. Programs run on the CPU plugin against hand
//! computations.

mod common;

use common::{run, run_all};
use std::sync::Arc;
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, ExternalFunctions, Graph, GraphError, GraphKey, Op,
    ReduceKind as R, UnaryKind as U, ValueId, ValueType,
};

fn f32t(shape: &[i64]) -> ValueType {
    ValueType::new(DType::F32, shape)
}

#[test]
fn duplicate_pure_ops_are_one_node() {
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let a = g.unary(U::Exp, x).unwrap();
    let before = g.nodes.len();
    assert_eq!(g.unary(U::Exp, x).unwrap(), a);
    // Constants, broadcasts and multi-result ops too.
    let c = g.constant(ConstVal::float(2.0), DType::F32, &[3]);
    assert_eq!(g.constant(ConstVal::float(2.0), DType::F32, &[3]), c);
    let s1 = g.sort(&[x, a], 0, false).unwrap();
    assert_eq!(g.sort(&[x, a], 0, false).unwrap(), s1);
    assert_eq!(g.nodes.len(), before + 2);
    // Different attributes, inputs or result types are different nodes.
    assert_ne!(g.unary(U::Log, x).unwrap(), a);
    assert_ne!(g.unary(U::Exp, a).unwrap(), a);
    assert_ne!(g.constant(ConstVal::float(3.0), DType::F32, &[3]), c);
    assert_ne!(g.constant(ConstVal::float(2.0), DType::F64, &[3]), c);
    assert_ne!(g.constant(ConstVal::float(2.0), DType::F32, &[4]), c);
    assert_ne!(g.sort(&[x, a], 0, true).unwrap(), s1);
    let m = g.reshape(x, &[3, 1]).unwrap();
    assert_ne!(g.reshape(x, &[1, 3]).unwrap(), m);
    assert_eq!(g.reshape(x, &[3, 1]).unwrap(), m);
}

#[test]
fn parameters_and_calls_are_never_merged() {
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let y = g.parameter(f32t(&[3]));
    assert_ne!(x, y);
    assert_eq!(g.params, vec![x, y]);
    let f = kernel();
    let c1 = g.call(f.clone(), &[x], vec![f32t(&[3])]).unwrap();
    let c2 = g.call(f, &[x], vec![f32t(&[3])]).unwrap();
    assert_ne!(c1, c2, "a call may have effects: each one is kept");
}

/// A private function negating a `tensor<3xf32>`.
fn kernel() -> Arc<ExternalFunctions> {
    Arc::new(ExternalFunctions {
        symbol: "hygiene_neg".into(),
        text: "  func.func private @hygiene_neg(%a: tensor<3xf32>) -> tensor<3xf32> {\n    %0 = \"stablehlo.negate\"(%a) : (tensor<3xf32>) -> tensor<3xf32>\n    \"func.return\"(%0) : (tensor<3xf32>) -> ()\n  }".into(),
    })
}

/// `while i < 3 { i += 1; x *= 2 }` from `(0, x)`, with a call in the body if `call`.
fn doubling_loop(g: &mut Graph, x: ValueId, call: bool) -> Vec<ValueId> {
    let i0 = g.constant(ConstVal::Int(0), DType::I64, &[]);
    g.while_loop(
        &[i0, x],
        |g, v| -> Result<_, GraphError> {
            let n = g.constant(ConstVal::Int(3), DType::I64, &[]);
            g.compare(CmpDir::Lt, v[0], n)
        },
        |g, v| -> Result<_, GraphError> {
            let one = g.constant(ConstVal::Int(1), DType::I64, &[]);
            let two = g.full_like(v[1], 2.0, DType::F32);
            let mut y = g.binary(B::Mul, v[1], two)?;
            if call {
                let n = g.call(kernel(), &[y], vec![f32t(&[3])])?[0];
                y = g.call(kernel(), &[n], vec![f32t(&[3])])?[0];
            }
            Ok(vec![g.binary(B::Add, v[0], one)?, y])
        },
    )
    .unwrap()
}

#[test]
fn loops_merge_only_when_their_regions_are_pure() {
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let pure = doubling_loop(&mut g, x, false);
    assert_eq!(doubling_loop(&mut g, x, false), pure);
    let effect = doubling_loop(&mut g, x, true);
    assert_ne!(doubling_loop(&mut g, x, true), effect);
    // Dead, the pure loop goes; the one with calls stays.
    g.outputs = vec![x];
    let text = g.to_stablehlo();
    assert_eq!(text.matches("\"stablehlo.while\"").count(), 2, "{text}");
    assert_eq!(
        text.matches("@hygiene_neg(").count(),
        1,
        "one definition: {text}"
    );
    assert_eq!(run(&g, &[vec![1.0, 2.0, 3.0]]), vec![1.0, 2.0, 3.0]);
}

#[test]
fn a_rolled_back_node_is_not_found_again() {
    // The runtime takes a failed op back out by truncating the graph; the
    // next node at that index must not be mistaken for the old one.
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let (n, t) = (g.nodes.len(), g.types.len());
    let e = g.unary(U::Exp, x).unwrap();
    g.nodes.truncate(n);
    g.types.truncate(t);
    g.producers.truncate(t);
    let l = g.unary(U::Log, x).unwrap();
    assert_eq!(l, e, "the same index, reused");
    let e2 = g.unary(U::Exp, x).unwrap();
    assert_ne!(e2, l);
    assert_eq!(g.node_of(e2).op, Op::Unary(U::Exp));
    assert_eq!(g.unary(U::Log, x).unwrap(), l);
}

#[test]
fn dead_nodes_are_not_emitted_and_parameters_stay() {
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let unused = g.parameter(f32t(&[2]));
    let dead = g.unary(U::Sin, x).unwrap();
    let _dead_too = g.unary(U::Cosh, dead).unwrap();
    let _dead_param_use = g.unary(U::Tanh, unused).unwrap();
    let two = g.full_like(x, 2.0, DType::F32);
    let a = g.binary(B::Mul, x, two).unwrap();
    // Recorded twice, as two lowering rules would: one node.
    let two_again = g.full_like(x, 2.0, DType::F32);
    let b = g.binary(B::Mul, x, two_again).unwrap();
    assert_eq!(a, b);
    let y = g.binary(B::Add, a, b).unwrap();
    g.outputs = vec![y];
    let text = g.to_stablehlo();
    for op in ["sine", "cosh", "tanh"] {
        assert!(!text.contains(op), "{op} is dead: {text}");
    }
    assert_eq!(text.matches("stablehlo.multiply").count(), 1, "{text}");
    assert!(
        text.contains("@main(%arg0: tensor<3xf32>, %arg1: tensor<2xf32>)"),
        "{text}"
    );
    let got = run(&g, &[vec![1.0, -2.0, 0.5], vec![7.0, 8.0]]);
    assert_eq!(got, vec![4.0, -8.0, 2.0]);
}

/// Two independent chains, `exp(x) * 3 - x` and `sum(tanh(y))`, recorded one
/// after the other or interleaved; outputs in the given order.
fn two_chains(interleaved: bool, swap_outputs: bool) -> Graph {
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let y = g.parameter(f32t(&[3]));
    let a = |g: &mut Graph, step: usize, v: ValueId| match step {
        0 => g.unary(U::Exp, v).unwrap(),
        1 => g.binary_const(B::Mul, v, 3.0).unwrap(),
        _ => g.binary(B::Sub, v, x).unwrap(),
    };
    let b = |g: &mut Graph, step: usize, v: ValueId| match step {
        0 => g.unary(U::Tanh, v).unwrap(),
        1 => g.reduce(R::Sum, v, &[0]).unwrap(),
        _ => g.reshape(v, &[1]).unwrap(),
    };
    let (mut va, mut vb) = (x, y);
    if interleaved {
        for step in 0..3 {
            vb = b(&mut g, step, vb);
            let _dead = g.unary(U::Sqrt, vb).unwrap();
            va = a(&mut g, step, va);
        }
    } else {
        for step in 0..3 {
            va = a(&mut g, step, va);
        }
        for step in 0..3 {
            vb = b(&mut g, step, vb);
        }
    }
    g.outputs = if swap_outputs {
        vec![vb, va]
    } else {
        vec![va, vb]
    };
    g
}

#[test]
fn reordered_recordings_hash_and_emit_the_same() {
    let (g, h) = (two_chains(false, false), two_chains(true, false));
    assert_ne!(g.nodes.len(), h.nodes.len());
    assert_eq!(g.structural_hash(), h.structural_hash());
    assert_eq!(g.to_stablehlo(), h.to_stablehlo());
    let xs = vec![0.0, 1.0, -1.0];
    let ys = vec![0.5, -0.25, 2.0];
    let want_a: Vec<f32> = xs.iter().map(|&v: &f32| v.exp() * 3.0 - v).collect();
    let want_b = vec![ys.iter().map(|&v: &f32| v.tanh()).sum::<f32>()];
    for graph in [&g, &h] {
        let got = run_all(graph, &[xs.clone(), ys.clone()]);
        close(&got[0], &want_a);
        close(&got[1], &want_b);
    }
    // Output order is part of the key.
    assert_ne!(
        two_chains(false, true).structural_hash(),
        g.structural_hash()
    );
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(want) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

/// `reduce(op(x) + c)` over `dims`: each argument changes one thing.
fn variant(op: U, c: f64, dtype: DType, shape: &[i64], dims: &[i64]) -> GraphKey {
    let mut g = Graph::new();
    let x = g.parameter(ValueType::new(dtype, shape));
    let e = g.unary(op, x).unwrap();
    let e = g.binary_const(B::Add, e, c).unwrap();
    g.outputs = vec![g.reduce(R::Sum, e, dims).unwrap()];
    g.structural_hash()
}

#[test]
fn different_programs_hash_differently() {
    let base = || variant(U::Exp, 1.0, DType::F32, &[2, 3], &[1]);
    let mut keys = vec![
        base(),
        variant(U::Log, 1.0, DType::F32, &[2, 3], &[1]),
        variant(U::Exp, 2.0, DType::F32, &[2, 3], &[1]),
        variant(U::Exp, 1.0, DType::F64, &[2, 3], &[1]),
        variant(U::Exp, 1.0, DType::F32, &[3, 2], &[1]),
        variant(U::Exp, 1.0, DType::F32, &[2, 3], &[0]),
    ];
    // Parameter order: `x - y` with x declared first or second.
    for first in [0, 1] {
        let mut g = Graph::new();
        let p = [g.parameter(f32t(&[3])), g.parameter(f32t(&[3]))];
        g.outputs = vec![g.binary(B::Sub, p[first], p[1 - first]).unwrap()];
        keys.push(g.structural_hash());
        // Aliases: the same program donating its first parameter.
        g.aliases = vec![(0, 0)];
        keys.push(g.structural_hash());
    }
    // Parameters are positions: an unused one still changes the program.
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[2, 3]));
    let _unused = g.parameter(f32t(&[1]));
    let e = g.unary(U::Exp, x).unwrap();
    let e = g.binary_const(B::Add, e, 1.0).unwrap();
    g.outputs = vec![g.reduce(R::Sum, e, &[1]).unwrap()];
    keys.push(g.structural_hash());
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "every variation has a key of its own");
    assert_eq!(base(), base());
}

#[test]
fn loop_regions_are_canonical_too() {
    // The same loop with its body recorded in two orders: one key, one text.
    let build = |swap: bool| {
        let mut g = Graph::new();
        let x = g.parameter(f32t(&[3]));
        let i0 = g.constant(ConstVal::Int(0), DType::I64, &[]);
        let out = g
            .while_loop(
                &[i0, x],
                |g, v| -> Result<_, GraphError> {
                    let n = g.constant(ConstVal::Int(3), DType::I64, &[]);
                    g.compare(CmpDir::Lt, v[0], n)
                },
                |g, v| -> Result<_, GraphError> {
                    let step = |g: &mut Graph| -> Result<ValueId, GraphError> {
                        let one = g.constant(ConstVal::Int(1), DType::I64, &[]);
                        g.binary(B::Add, v[0], one)
                    };
                    let grow = |g: &mut Graph| -> Result<ValueId, GraphError> {
                        let k = g.full_like(v[1], 1.5, DType::F32);
                        g.binary(B::Mul, v[1], k)
                    };
                    Ok(if swap {
                        let y = grow(g)?;
                        vec![step(g)?, y]
                    } else {
                        vec![step(g)?, grow(g)?]
                    })
                },
            )
            .unwrap();
        g.outputs = vec![out[1]];
        g
    };
    let (g, h) = (build(false), build(true));
    assert_eq!(g.structural_hash(), h.structural_hash());
    assert_eq!(g.to_stablehlo(), h.to_stablehlo());
    assert_eq!(run(&h, &[vec![2.0, -4.0, 8.0]]), vec![6.75, -13.5, 27.0]);
}

#[test]
fn calls_are_kept_in_recorded_order_when_dead() {
    let mut g = Graph::new();
    let x = g.parameter(f32t(&[3]));
    let _dead = g.call(kernel(), &[x], vec![f32t(&[3])]).unwrap();
    let y = g.unary(U::Abs, x).unwrap();
    g.outputs = vec![y];
    let text = g.to_stablehlo();
    assert!(text.contains("\"func.call\"(%arg0)"), "{text}");
    assert_eq!(run(&g, &[vec![1.0, -2.0, 3.0]]), vec![1.0, 2.0, 3.0]);
    // A dead call is part of the program, so it is part of the key.
    let mut h = Graph::new();
    let x = h.parameter(f32t(&[3]));
    h.outputs = vec![h.unary(U::Abs, x).unwrap()];
    assert_ne!(g.structural_hash(), h.structural_hash());
}
