//! Strided reads and writes of flat storage values, executed on the CPU
//! plugin and compared with a direct index computation.

mod common;

use common::run;
use tpu_graph::{DType, Graph, ValueType, View};

/// Flat indices of a view, row-major.
fn indices(v: &View) -> Vec<usize> {
    let mut out = Vec::new();
    let n: i64 = v.sizes.iter().product();
    for k in 0..n {
        let (mut rem, mut off) = (k, v.offset);
        for d in (0..v.sizes.len()).rev() {
            off += (rem % v.sizes[d]) * v.strides[d];
            rem /= v.sizes[d];
        }
        out.push(off as usize);
    }
    out
}

fn views() -> Vec<(i64, View)> {
    let v = |offset, sizes: &[i64], strides: &[i64]| View {
        offset,
        sizes: sizes.to_vec(),
        strides: strides.to_vec(),
    };
    vec![
        (12, v(0, &[3, 4], &[4, 1])),        // whole
        (12, v(4, &[2, 4], &[4, 1])),        // rows 1..3
        (12, v(0, &[4, 3], &[1, 4])),        // transpose
        (12, v(1, &[3, 2], &[4, 2])),        // x[:, 1::2]
        (12, v(2, &[3], &[4])),              // column select
        (12, v(0, &[2, 3, 4], &[0, 4, 1])),  // expand
        (24, v(3, &[2, 3, 2], &[12, 1, 3])), // permuted slice
        (12, v(0, &[3], &[5])),              // diagonal of 3x4... (stride 5)
        (10, v(1, &[3, 3], &[2, 1])),        // overlapping windows: gather path
        (12, v(11, &[], &[])),               // scalar element
        (12, v(0, &[0, 4], &[4, 1])),        // empty
    ]
}

#[test]
fn strided_read_matches_index_math() {
    for (len, view) in views() {
        let base: Vec<f32> = (0..len).map(|i| i as f32 * 1.5 - 3.0).collect();
        let mut g = Graph::new();
        let p = g.parameter(ValueType::new(DType::F32, &[len]));
        let r = g.strided_read(p, &view).unwrap();
        let n = view.numel();
        let flat = g.reshape(r, &[n]).unwrap();
        g.outputs = vec![flat];
        let got = run(&g, std::slice::from_ref(&base));
        let want: Vec<f32> = indices(&view).iter().map(|&i| base[i]).collect();
        assert_eq!(got, want, "read of {view:?}");
    }
}

#[test]
fn strided_write_matches_index_math() {
    for (len, view) in views() {
        let overlapping = view
            .sizes
            .iter()
            .zip(&view.strides)
            .any(|(&n, &s)| n > 1 && s == 0)
            || view.offset == 1 && len == 10;
        if overlapping {
            continue; // PyTorch rejects writes through overlapping views.
        }
        let base: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let n = view.numel();
        let upd: Vec<f32> = (0..n).map(|i| 100.0 + i as f32).collect();
        let mut g = Graph::new();
        let p = g.parameter(ValueType::new(DType::F32, &[len]));
        let u = g.parameter(ValueType::new(DType::F32, &view.sizes));
        let w = g.strided_write(p, &view, u).unwrap();
        g.outputs = vec![w];
        let got = run(&g, &[base.clone(), upd.clone()]);
        let mut want = base.clone();
        for (k, i) in indices(&view).into_iter().enumerate() {
            want[i] = upd[k];
        }
        assert_eq!(got, want, "write of {view:?}");
    }
}

#[test]
fn structural_hash_ignores_values_not_structure() {
    let build = |n: i64| {
        let mut g = Graph::new();
        let p = g.parameter(ValueType::new(DType::F32, &[n]));
        let e = g.unary(tpu_graph::UnaryKind::Exp, p).unwrap();
        g.outputs = vec![e];
        g.structural_hash()
    };
    assert_eq!(build(4), build(4));
    assert_ne!(build(4), build(5));
}
