// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::DType;

/// Reference `[m, k] x [k, n]`.
fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

#[test]
fn mm_bmm_dot_mv() {
    let a = T::rand(DType::F32, &[3, 4], 1);
    let bm = T::rand(DType::F32, &[4, 5], 2);
    let r = run("mm", &[a.clone(), bm.clone()], |v| vec![t(v[0]), t(v[1])]);
    close(&r[0], &[3, 5], &matmul(&a.data, &bm.data, 3, 4, 5), 1e-5);

    let x = T::rand(DType::F32, &[2, 3, 4], 3);
    let y = T::rand(DType::F32, &[2, 4, 2], 4);
    let r = run("bmm.out", &[x.clone(), y.clone()], |v| {
        vec![t(v[0]), t(v[1])]
    });
    let mut want = matmul(&x.data[..12], &y.data[..8], 3, 4, 2);
    want.extend(matmul(&x.data[12..], &y.data[8..], 3, 4, 2));
    close(&r[0], &[2, 3, 2], &want, 1e-5);

    let v1 = T::f32(&[3], &[1., 2., 3.]);
    let v2 = T::f32(&[3], &[4., 5., 6.]);
    let r = run("dot", &[v1.clone(), v2], |v| vec![t(v[0]), t(v[1])]);
    close(&r[0], &[], &[32.], 0.0);
    let m = T::f32(&[2, 3], &[1., 0., 1., 0., 1., 0.]);
    let r = run("mv", &[m, v1], |v| vec![t(v[0]), t(v[1])]);
    close(&r[0], &[2], &[4., 2.], 0.0);
}

#[test]
fn addmm_beta_alpha() {
    let s = T::f32(&[2], &[f64::NAN, 1.]);
    let a = T::f32(&[2, 2], &[1., 2., 3., 4.]);
    let bm = T::f32(&[2, 2], &[1., 0., 0., 1.]);
    // beta = 0 ignores self, NaN included.
    let r = run("addmm", &[s.clone(), a.clone(), bm.clone()], |v| {
        vec![t(v[0]), t(v[1]), t(v[2]), si(0), sf(2.0)]
    });
    close(&r[0], &[2, 2], &[2., 4., 6., 8.], 0.0);
    let s = T::f32(&[2], &[10., 20.]);
    let r = run("addmm.out", &[s, a.clone(), bm.clone()], |v| {
        vec![t(v[0]), t(v[1]), t(v[2]), sf(0.5), si(1)]
    });
    close(&r[0], &[2, 2], &[6., 12., 8., 14.], 0.0);
    let s3 = T::f32(&[1, 1, 2], &[1., 1.]);
    let a3 = T::new(DType::F32, &[1, 2, 2], &a.data);
    let b3 = T::new(DType::F32, &[1, 2, 2], &bm.data);
    let r = run("baddbmm", &[s3, a3, b3], |v| {
        vec![t(v[0]), t(v[1]), t(v[2]), si(1), si(1)]
    });
    close(&r[0], &[1, 2, 2], &[2., 3., 4., 5.], 0.0);
    let sv = T::f32(&[2], &[1., 1.]);
    let vv = T::f32(&[2], &[1., 1.]);
    let r = run("addmv", &[sv, a, vv], |v| {
        vec![t(v[0]), t(v[1]), t(v[2]), si(2), si(1)]
    });
    close(&r[0], &[2], &[5., 9.], 0.0);
}

#[test]
fn bf16_accumulates_in_f32() {
    // 256 + 1 + 1 ... in bf16 would stall at 256; f32 accumulation gives 264 (representable).
    let k = 9;
    let mut a = vec![1.0; k];
    a[0] = 256.0;
    let a = T::new(DType::BF16, &[1, k as i64], &a);
    let bm = T::new(DType::BF16, &[k as i64, 1], &vec![1.0; k]);
    let r = run("mm", &[a, bm], |v| vec![t(v[0]), t(v[1])]);
    assert_eq!(r[0].dtype, DType::BF16);
    close(&r[0], &[1, 1], &[264.], 0.0);
}
