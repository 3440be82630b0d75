// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::DType;
use tpu_lower::Arg;

const NAN: f64 = f64::NAN;

#[test]
fn sum_variants() {
    let x = T::i64(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let r = run("sum", &[x.clone()], |v| vec![t(v[0]), Arg::None]);
    assert_eq!(r[0].dtype, DType::I64);
    close(&r[0], &[], &[21.], 0.0);
    let bv = T::bool(&[3], &[1., 1., 0.]);
    let r = run("sum", &[bv], |v| vec![t(v[0]), Arg::None]);
    assert_eq!(r[0].dtype, DType::I64);
    close(&r[0], &[], &[2.], 0.0);
    let r = run("sum.dim_IntList", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[-1]), b(true), Arg::None]
    });
    close(&r[0], &[2, 1], &[6., 15.], 0.0);
    let r = run("sum.IntList_out", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[0]), b(false), Arg::DType(DType::F32)]
    });
    assert_eq!(r[0].dtype, DType::F32);
    close(&r[0], &[3], &[5., 7., 9.], 0.0);
    // dim=None reduces everything.
    let r = run("sum.dim_IntList", &[x], |v| {
        vec![t(v[0]), Arg::None, b(false), Arg::None]
    });
    close(&r[0], &[], &[21.], 0.0);
    let h = T::new(DType::BF16, &[4], &[0.5, 0.25, 1.0, 2.0]);
    let r = run("sum", &[h], |v| vec![t(v[0]), Arg::None]);
    assert_eq!(r[0].dtype, DType::BF16);
    close(&r[0], &[], &[3.75], 0.0);
}

#[test]
fn mean_prod() {
    let x = T::f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let r = run("mean.dim", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[1]), b(false), Arg::None]
    });
    close(&r[0], &[2], &[2., 5.], 1e-6);
    let r = run("mean", &[x.clone()], |v| vec![t(v[0]), Arg::None]);
    close(&r[0], &[], &[3.5], 1e-6);
    let xi = T::i64(&[2], &[1., 2.]);
    assert!(try_run("mean", &[xi], &[], |v| vec![t(v[0]), Arg::None]).is_err());
    let r = run("prod.dim_int", &[x.clone()], |v| {
        vec![t(v[0]), int(0), b(true), Arg::None]
    });
    close(&r[0], &[1, 3], &[4., 10., 18.], 1e-6);
    let xi = T::new(DType::I32, &[3], &[2., 3., 4.]);
    let r = run("prod", &[xi], |v| vec![t(v[0]), Arg::None]);
    assert_eq!(r[0].dtype, DType::I64);
    close(&r[0], &[], &[24.], 0.0);
}

#[test]
fn max_min_nan_and_indices() {
    let x = T::f32(&[2, 3], &[1., NAN, 3., 4., 6., 6.]);
    let r = run("amax", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[1]), b(false)]
    });
    close(&r[0], &[2], &[NAN, 6.], 0.0);
    let r = run("max.dim", &[x.clone()], |v| vec![t(v[0]), int(1), b(false)]);
    close(&r[0], &[2], &[NAN, 6.], 0.0);
    assert_eq!(r[1].dtype, DType::I64);
    close(&r[1], &[2], &[1., 1.], 0.0);
    let r = run("min.dim", &[x.clone()], |v| vec![t(v[0]), int(-1), b(true)]);
    close(&r[0], &[2, 1], &[NAN, 4.], 0.0);
    close(&r[1], &[2, 1], &[1., 0.], 0.0);
    let r = run("max", &[x.clone()], |v| vec![t(v[0])]);
    close(&r[0], &[], &[NAN], 0.0);
    let y = T::f32(&[2, 2], &[3., 1., 3., 0.]);
    let r = run("min", &[y.clone()], |v| vec![t(v[0])]);
    close(&r[0], &[], &[0.], 0.0);
    let r = run("amin", &[y.clone()], |v| vec![t(v[0]), ints(&[]), b(false)]);
    close(&r[0], &[], &[0.], 0.0);
    // argmax over the flattened tensor, first occurrence; NaN wins.
    let r = run("argmax", &[y.clone()], |v| {
        vec![t(v[0]), Arg::None, b(false)]
    });
    close(&r[0], &[], &[0.], 0.0);
    let r = run("argmax", &[x.clone()], |v| {
        vec![t(v[0]), Arg::None, b(true)]
    });
    close(&r[0], &[1, 1], &[1.], 0.0);
    let r = run("argmin", &[y], |v| vec![t(v[0]), int(0), b(false)]);
    close(&r[0], &[2], &[0., 1.], 0.0);
    let xi = T::i64(&[4], &[5., -2., 7., 7.]);
    let r = run("argmax.out", &[xi.clone()], |v| {
        vec![t(v[0]), int(0), b(false)]
    });
    close(&r[0], &[], &[2.], 0.0);
    let r = run("max.dim_max", &[xi], |v| vec![t(v[0]), int(0), b(false)]);
    close(&r[0], &[], &[7.], 0.0);
    close(&r[1], &[], &[2.], 0.0);
}

#[test]
fn var_std_correction() {
    let x = T::f32(&[2, 4], &[1., 2., 3., 4., 2., 4., 6., 8.]);
    // Unbiased (default correction 1).
    let r = run("var.correction", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[1]), Arg::None, b(false)]
    });
    close(&r[0], &[2], &[5. / 3., 20. / 3.], 1e-6);
    // Biased.
    let r = run("var.correction", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[1]), si(0), b(true)]
    });
    close(&r[0], &[2, 1], &[1.25, 5.], 1e-6);
    let r = run("std.correction", &[x.clone()], |v| {
        vec![t(v[0]), Arg::None, sf(1.0), b(false)]
    });
    let all = [1., 2., 3., 4., 2., 4., 6., 8.];
    let m: f64 = all.iter().sum::<f64>() / 8.0;
    let var: f64 = all.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 7.0;
    close(&r[0], &[], &[var.sqrt()], 1e-6);
    let r = run("var_mean.correction", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[0]), si(1), b(false)]
    });
    close(&r[0], &[4], &[0.5, 2., 4.5, 8.], 1e-6);
    close(&r[1], &[4], &[1.5, 3., 4.5, 6.], 1e-6);
    let r = run("std_mean.correction", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[0]), si(0), b(false)]
    });
    close(&r[0], &[4], &[0.5, 1., 1.5, 2.], 1e-6);
    // Correction >= N divides by zero: inf/nan as PyTorch.
    let one = T::f32(&[1], &[1.]);
    let r = run("var.correction", &[one], |v| {
        vec![t(v[0]), Arg::None, si(2), b(false)]
    });
    assert!(r[0].data[0].is_nan());
}

#[test]
fn any_all_logsumexp_cumsum() {
    let x = T::f32(&[2, 2], &[0., 1., 0., 0.]);
    let r = run("any", &[x.clone()], |v| vec![t(v[0])]);
    assert_eq!(r[0].dtype, DType::Bool);
    close(&r[0], &[], &[1.], 0.0);
    let r = run("all.dim", &[x.clone()], |v| vec![t(v[0]), int(0), b(false)]);
    close(&r[0], &[2], &[0., 0.], 0.0);
    let r = run("any.dims", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[1]), b(true)]
    });
    close(&r[0], &[2, 1], &[1., 0.], 0.0);
    let u = T::new(DType::U8, &[2], &[1., 3.]);
    let r = run("all", &[u], |v| vec![t(v[0])]);
    assert_eq!(r[0].dtype, DType::U8);
    close(&r[0], &[], &[1.], 0.0);

    let y = T::f32(&[2, 3], &[1., 2., 3., 1000., 1000., f64::NEG_INFINITY]);
    let r = run("logsumexp", &[y], |v| vec![t(v[0]), ints(&[1]), b(false)]);
    let l0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    close(&r[0], &[2], &[l0, 1000. + 2f64.ln()], 1e-5);
    let ninf = T::f32(&[2], &[f64::NEG_INFINITY, f64::NEG_INFINITY]);
    let r = run("logsumexp", &[ninf], |v| {
        vec![t(v[0]), ints(&[0]), b(false)]
    });
    close(&r[0], &[], &[f64::NEG_INFINITY], 0.0);

    let c = T::new(DType::I32, &[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let r = run("cumsum", &[c.clone()], |v| vec![t(v[0]), int(1), Arg::None]);
    assert_eq!(r[0].dtype, DType::I64);
    close(&r[0], &[2, 3], &[1., 3., 6., 4., 9., 15.], 0.0);
    let r = run("cumsum.out", &[c], |v| {
        vec![t(v[0]), int(0), Arg::DType(DType::F32)]
    });
    close(&r[0], &[2, 3], &[1., 2., 3., 5., 7., 9.], 0.0);
}

#[test]
fn vector_norms() {
    let x = T::f32(&[2, 2], &[3., -4., 0., 1.]);
    let r = run("linalg_vector_norm", &[x.clone()], |v| {
        vec![t(v[0]), sf(2.0), Arg::None, b(false), Arg::None]
    });
    close(&r[0], &[], &[26f64.sqrt()], 1e-6);
    let r = run("linalg_vector_norm.out", &[x.clone()], |v| {
        vec![t(v[0]), sf(f64::INFINITY), ints(&[1]), b(true), Arg::None]
    });
    close(&r[0], &[2, 1], &[4., 1.], 0.0);
    let r = run("norm.ScalarOpt_dim", &[x.clone()], |v| {
        vec![t(v[0]), si(1), ints(&[0]), b(false)]
    });
    close(&r[0], &[2], &[3., 5.], 0.0);
    let r = run("norm.Scalar", &[x.clone()], |v| vec![t(v[0]), si(0)]);
    close(&r[0], &[], &[3.], 0.0);
    let r = run("linalg_vector_norm", &[x], |v| {
        vec![t(v[0]), sf(3.0), Arg::None, b(false), Arg::None]
    });
    close(&r[0], &[], &[(27f64 + 64. + 1.).powf(1. / 3.)], 1e-5);
}
