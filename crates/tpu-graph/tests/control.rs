//! `while_loop`: regions are checked when built and emitted with names of their own.

use tpu_graph::{BinaryKind, CmpDir, ConstVal, DType, Graph, GraphError, ValueType};

#[test]
fn while_loop_emits_both_regions() {
    let mut g = Graph::new();
    let x = g.parameter(ValueType::new(DType::F32, &[3]));
    let i0 = g.constant(ConstVal::Int(0), DType::I64, &[]);
    let out = g
        .while_loop(
            &[i0, x],
            |g, v| -> Result<_, GraphError> {
                let n = g.constant(ConstVal::Int(4), DType::I64, &[]);
                g.compare(CmpDir::Lt, v[0], n)
            },
            |g, v| -> Result<_, GraphError> {
                let one = g.constant(ConstVal::Int(1), DType::I64, &[]);
                let two = g.full_like(v[1], 2.0, DType::F32);
                Ok(vec![
                    g.binary(BinaryKind::Add, v[0], one)?,
                    g.binary(BinaryKind::Mul, v[1], two)?,
                ])
            },
        )
        .unwrap();
    assert_eq!(g.ty(out[1]), &ValueType::new(DType::F32, &[3]));
    g.outputs = vec![out[1]];
    let text = g.to_stablehlo();
    assert!(text.contains("\"stablehlo.while\"(%v"), "{text}");
    assert!(
        text.contains("^bb0(%n2carg0: tensor<i64>, %n2carg1: tensor<3xf32>)"),
        "{text}"
    );
    assert!(
        text.contains("^bb0(%n2barg0: tensor<i64>, %n2barg1: tensor<3xf32>)"),
        "{text}"
    );
    assert_eq!(text.matches("\"stablehlo.return\"").count(), 2, "{text}");
    // The same loop hashes the same; another body does not.
    let mut h = Graph::new();
    let x = h.parameter(ValueType::new(DType::F32, &[3]));
    let i0 = h.constant(ConstVal::Int(0), DType::I64, &[]);
    let out = h
        .while_loop(
            &[i0, x],
            |g, v| -> Result<_, GraphError> {
                let n = g.constant(ConstVal::Int(5), DType::I64, &[]);
                g.compare(CmpDir::Lt, v[0], n)
            },
            |_, v| -> Result<_, GraphError> { Ok(v.to_vec()) },
        )
        .unwrap();
    h.outputs = vec![out[1]];
    assert_ne!(g.structural_hash(), h.structural_hash());
}

#[test]
fn while_loop_rejects_bad_regions() {
    let mut g = Graph::new();
    let x = g.parameter(ValueType::new(DType::F32, &[2]));
    // A condition that is not a boolean scalar.
    let e = g.while_loop(
        &[x],
        |_, v| -> Result<_, GraphError> { Ok(v[0]) },
        |_, v| Ok(v.to_vec()),
    );
    assert!(matches!(e, Err(GraphError::Invalid(m)) if m.contains("expected tensor<i1>")));
    // A body that changes a carried type.
    let e = g.while_loop(
        &[x],
        |g, _| -> Result<_, GraphError> { Ok(g.constant(ConstVal::Bool(false), DType::Bool, &[])) },
        |g, v| Ok(vec![g.convert(v[0], DType::F64)]),
    );
    assert!(matches!(e, Err(GraphError::Invalid(m)) if m.contains("do not match")));
    // A body that adds a parameter (a value from outside the loop).
    let e = g.while_loop(
        &[x],
        |g, _| -> Result<_, GraphError> { Ok(g.constant(ConstVal::Bool(false), DType::Bool, &[])) },
        |g, v| {
            let p = g.parameter(ValueType::new(DType::F32, &[2]));
            Ok(vec![g.binary(BinaryKind::Add, v[0], p)?])
        },
    );
    assert!(matches!(e, Err(GraphError::Invalid(m)) if m.contains("parameters")));
}
