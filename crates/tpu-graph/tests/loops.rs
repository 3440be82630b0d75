//! `while` loops: emitted, compiled and run on the CPU plugin.

mod common;

use common::run;
use tpu_graph::{BinaryKind as B, CmpDir, DType, Graph, ReduceKind as R, ValueType};

/// `acc = 2 * acc + x`, five times, with a reduce inside the body (its
/// region's names must not clash with the function's).
#[test]
fn while_runs_the_body_until_the_condition_fails() {
    let mut g = Graph::new();
    let x = g.parameter(ValueType::new(DType::F32, &[3]));
    let i0 = g.scalar(0.0, DType::I64);
    let s = g.reduce(R::Sum, x, &[0]).unwrap();
    let out = g
        .while_loop(
            &[i0, x, x, s],
            |g, st| {
                let five = g.scalar(5.0, DType::I64);
                g.compare(CmpDir::Lt, st[0], five)
            },
            |g, st| {
                let one = g.scalar(1.0, DType::I64);
                let i = g.binary(B::Add, st[0], one)?;
                let two = g.full_like(st[1], 2.0, DType::F32);
                let a = g.binary(B::Mul, st[1], two)?;
                let a = g.binary(B::Add, a, st[2])?;
                let s = g.reduce(R::Sum, a, &[0])?;
                Ok(vec![i, a, st[2], s])
            },
        )
        .unwrap();
    g.outputs = vec![out[1]];
    let text = g.to_stablehlo();
    assert!(text.contains("stablehlo.while"), "{text}");
    let got = run(&g, &[vec![1.0, -2.0, 0.5]]);
    // acc_k = (2^(k+1) - 1) x after k steps.
    assert_eq!(got, vec![63.0, -126.0, 31.5]);
}

#[test]
fn while_rejects_a_body_of_other_types() {
    let mut g = Graph::new();
    let x = g.parameter(ValueType::new(DType::F32, &[3]));
    let err: tpu_graph::GraphError = g
        .while_loop(
            &[x],
            |g, _| Ok(g.scalar(1.0, DType::Bool)),
            |g, st| Ok(vec![g.convert(st[0], DType::F64)]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
    let err: tpu_graph::GraphError = g
        .while_loop(&[x], |_, st| Ok(st[0]), |_, st| Ok(st.to_vec()))
        .unwrap_err();
    assert!(err.to_string().contains("expected tensor<i1>"), "{err}");
}
