// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::{DType, ValueType};
use tpu_lower::Arg;

fn mean_var(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (
        m,
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64,
    )
}

#[test]
fn uniform_normal() {
    let x = T::f32(&[4000], &vec![0.0; 4000]);
    let r = run("uniform_", &[x.clone()], |v| {
        vec![t(v[0]), fl(-2.0), fl(3.0), Arg::Seed(7)]
    });
    assert!(r[0].data.iter().all(|&u| (-2.0..3.0).contains(&u)));
    let (m, var) = mean_var(&r[0].data);
    assert!(
        (m - 0.5).abs() < 0.15 && (var - 25.0 / 12.0).abs() < 0.2,
        "mean {m} var {var}"
    );
    // Same seed, same numbers; another seed, other numbers.
    let again = run("uniform_", &[x.clone()], |v| {
        vec![t(v[0]), fl(-2.0), fl(3.0), Arg::Seed(7)]
    });
    assert_eq!(again[0].data, r[0].data);
    let other = run("uniform_", &[x.clone()], |v| {
        vec![t(v[0]), fl(-2.0), fl(3.0), Arg::Seed(8)]
    });
    assert_ne!(other[0].data, r[0].data);

    let r = run("normal_", &[x.clone()], |v| {
        vec![t(v[0]), fl(1.0), fl(2.0), Arg::Seed(3)]
    });
    let (m, var) = mean_var(&r[0].data);
    assert!(
        (m - 1.0).abs() < 0.15 && (var - 4.0).abs() < 0.4,
        "mean {m} var {var}"
    );
    let d = T::new(DType::F64, &[4000], &vec![0.0; 4000]);
    let r = run("normal_", &[d], |v| {
        vec![t(v[0]), fl(0.0), fl(1.0), Arg::None]
    });
    assert_eq!(r[0].dtype, DType::F64);
    let (m, var) = mean_var(&r[0].data);
    assert!(
        m.abs() < 0.1 && (var - 1.0).abs() < 0.1,
        "mean {m} var {var}"
    );
    let h = T::new(DType::BF16, &[100], &[0.0; 100]);
    let r = run("uniform_", &[h], |v| {
        vec![t(v[0]), fl(0.0), fl(1.0), Arg::Seed(1)]
    });
    assert!(r[0].data.iter().all(|&u| (0.0..=1.0).contains(&u)));
    let mean = T::f32(&[2000], &vec![10.0; 2000]);
    let r = run("normal.Tensor_float", &[mean], |v| {
        vec![t(v[0]), fl(0.5), Arg::Seed(4)]
    });
    let (m, var) = mean_var(&r[0].data);
    assert!(
        (m - 10.0).abs() < 0.1 && (var - 0.25).abs() < 0.05,
        "mean {m} var {var}"
    );
    let out = [ValueType::new(DType::F32, &[2000])];
    let r = run_out("normal.float_float_out", &[], &out, |_| {
        vec![fl(-1.0), fl(1.0), ints(&[2000]), Arg::Seed(9)]
    });
    assert!((mean_var(&r[0].data).0 + 1.0).abs() < 0.1);
}

#[test]
fn bernoulli_random_exponential() {
    let x = T::f32(&[4000], &vec![0.0; 4000]);
    let r = run("bernoulli_.float", &[x.clone()], |v| {
        vec![t(v[0]), fl(0.3), Arg::Seed(5)]
    });
    assert!(r[0].data.iter().all(|&b| b == 0.0 || b == 1.0));
    let (m, _) = mean_var(&r[0].data);
    assert!((m - 0.3).abs() < 0.05, "mean {m}");
    let p = T::f32(&[4], &[0., 1., 0., 1.]);
    let r = run("bernoulli", &[p], |v| vec![t(v[0]), Arg::Seed(5)]);
    close(&r[0], &[4], &[0., 1., 0., 1.], 0.0);
    let p = T::f32(&[4000], &vec![0.8; 4000]);
    let r = run("bernoulli_.Tensor", &[x.clone(), p], |v| {
        vec![t(v[0]), t(v[1]), Arg::Seed(6)]
    });
    assert!((mean_var(&r[0].data).0 - 0.8).abs() < 0.05);

    let xi = T::i64(&[2000], &vec![0.0; 2000]);
    let r = run("random_.from", &[xi.clone()], |v| {
        vec![t(v[0]), int(-3), Arg::Int(4), Arg::Seed(2)]
    });
    assert!(r[0]
        .data
        .iter()
        .all(|&u| (-3.0..4.0).contains(&u) && u.fract() == 0.0));
    for k in -3..4 {
        assert!(r[0].data.contains(&(k as f64)), "value {k} never drawn");
    }
    let r = run("random_.to", &[x.clone()], |v| {
        vec![t(v[0]), int(10), Arg::Seed(2)]
    });
    assert!(r[0]
        .data
        .iter()
        .all(|&u| (0.0..10.0).contains(&u) && u.fract() == 0.0));
    let b8 = T::new(DType::U8, &[100], &[0.0; 100]);
    let r = run("random_", &[b8], |v| vec![t(v[0]), Arg::None]);
    assert!(r[0].data.iter().any(|&u| u > 128.0));

    let r = run("exponential_", &[x], |v| {
        vec![t(v[0]), fl(2.0), Arg::Seed(3)]
    });
    assert!(r[0].data.iter().all(|&u| u >= 0.0));
    assert!((mean_var(&r[0].data).0 - 0.5).abs() < 0.05);

    let out = [ValueType::new(DType::I64, &[50])];
    let r = run_out("randperm.generator_out", &[], &out, |_| {
        vec![int(50), Arg::Seed(11)]
    });
    let mut seen = r[0].data.clone();
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(seen, (0..50).map(|i| i as f64).collect::<Vec<_>>());
}
