//! Cholesky and triangular solve nodes: emitted, compiled and run on the CPU
//! plugin, checked against direct computation.

mod common;

use common::run;
use tpu_graph::{DType, Graph, ValueType};

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "got {got:?}, want {want:?}");
    }
}

/// Two batched 3x3 SPD matrices `L L^T` with known lower factors.
const L: [[f32; 9]; 2] = [
    [2., 0., 0., 1., 3., 0., -1., 0.5, 1.5],
    [1., 0., 0., 0.5, 2., 0., 0.25, -1., 0.5],
];

fn llt(l: &[f32; 9]) -> Vec<f32> {
    let mut a = vec![0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            a[i * 3 + j] = (0..3).map(|k| l[i * 3 + k] * l[j * 3 + k]).sum();
        }
    }
    a
}

#[test]
fn cholesky_batched() {
    let a: Vec<f32> = L.iter().flat_map(llt).collect();
    for lower in [true, false] {
        let mut g = Graph::new();
        let p = g.parameter(ValueType::new(DType::F32, &[2, 3, 3]));
        let r = g.cholesky(p, lower).unwrap();
        g.outputs = vec![r];
        assert!(g.to_stablehlo().contains(&format!("{{lower = {lower}}}")));
        let got = run(&g, std::slice::from_ref(&a));
        // Compare the computed triangle only (the other one is undefined).
        for (b, l) in L.iter().enumerate() {
            for i in 0..3 {
                for j in 0..=i {
                    let (r, c) = if lower { (i, j) } else { (j, i) };
                    let v = got[b * 9 + r * 3 + c];
                    assert!((v - l[i * 3 + j]).abs() < 1e-4, "{got:?}");
                }
            }
        }
    }
    let mut g = Graph::new();
    let p = g.parameter(ValueType::new(DType::F32, &[2, 3]));
    assert!(g.cholesky(p, true).is_err());
}

#[test]
fn triangular_solve_variants() {
    let l = L[0];
    let b = [1., 2., 3., 4., 5., 6.];
    // Left, lower: L x = b with b [3, 2].
    let mut g = Graph::new();
    let pa = g.parameter(ValueType::new(DType::F32, &[3, 3]));
    let pb = g.parameter(ValueType::new(DType::F32, &[3, 2]));
    let x = g
        .triangular_solve(pa, pb, true, true, false, false)
        .unwrap();
    g.outputs = vec![x];
    let got = run(&g, &[l.to_vec(), b.to_vec()]);
    // Check L @ x == b.
    let mut prod = vec![0.0; 6];
    for i in 0..3 {
        for j in 0..2 {
            prod[i * 2 + j] = (0..3).map(|k| l[i * 3 + k] * got[k * 2 + j]).sum();
        }
    }
    close(&prod, &b);

    // Right side, transposed: x L^T = b with b [2, 3].
    let mut g = Graph::new();
    let pa = g.parameter(ValueType::new(DType::F32, &[3, 3]));
    let pb = g.parameter(ValueType::new(DType::F32, &[2, 3]));
    let x = g
        .triangular_solve(pa, pb, false, true, false, true)
        .unwrap();
    g.outputs = vec![x];
    assert!(g.to_stablehlo().contains("#stablehlo<transpose TRANSPOSE>"));
    let got = run(&g, &[l.to_vec(), b.to_vec()]);
    let mut prod = vec![0.0; 6];
    for i in 0..2 {
        for j in 0..3 {
            // (x L^T)[i, j] = sum_k x[i, k] L[j, k]
            prod[i * 3 + j] = (0..3).map(|k| got[i * 3 + k] * l[j * 3 + k]).sum();
        }
    }
    close(&prod, &b);

    // Unit diagonal ignores the diagonal: with identity below, x = b.
    let mut g = Graph::new();
    let pa = g.parameter(ValueType::new(DType::F32, &[1, 2, 2]));
    let pb = g.parameter(ValueType::new(DType::F32, &[1, 2, 1]));
    let x = g
        .triangular_solve(pa, pb, true, false, true, false)
        .unwrap();
    g.outputs = vec![x];
    let got = run(&g, &[vec![5., 0., 0., 7.], vec![1., 2.]]);
    close(&got, &[1., 2.]);

    let mut g = Graph::new();
    let pa = g.parameter(ValueType::new(DType::F32, &[3, 3]));
    let pb = g.parameter(ValueType::new(DType::F32, &[2, 2]));
    assert!(g
        .triangular_solve(pa, pb, true, true, false, false)
        .is_err());
}
