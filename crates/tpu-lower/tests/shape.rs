// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::{DType, ValueType};
use tpu_lower::Arg;

#[test]
fn cat_stack_flip_roll() {
    let a = T::f32(&[2, 1], &[1., 2.]);
    let bi = T::i64(&[2, 2], &[3., 4., 5., 6.]);
    let empty = T::f32(&[0], &[]);
    let r = run("cat", &[a.clone(), empty, bi.clone()], |v| {
        vec![ts(&[v[0], v[1], v[2]]), int(-1)]
    });
    assert_eq!(r[0].dtype, DType::F32);
    close(&r[0], &[2, 3], &[1., 3., 4., 2., 5., 6.], 0.0);
    let c = T::f32(&[2, 1], &[7., 8.]);
    let r = run("stack", &[a.clone(), c.clone()], |v| {
        vec![ts(&[v[0], v[1]]), int(1)]
    });
    close(&r[0], &[2, 2, 1], &[1., 7., 2., 8.], 0.0);
    let r = run("stack.out", &[a.clone(), c], |v| {
        vec![ts(&[v[0], v[1]]), int(-1)]
    });
    close(&r[0], &[2, 1, 2], &[1., 7., 2., 8.], 0.0);
    let x = T::range(DType::F32, &[2, 3], 1.0, 0.0);
    let r = run("flip", &[x.clone()], |v| vec![t(v[0]), ints(&[-1, 0])]);
    close(&r[0], &[2, 3], &[5., 4., 3., 2., 1., 0.], 0.0);
    let r = run("roll", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[1]), ints(&[1])]
    });
    close(&r[0], &[2, 3], &[2., 0., 1., 5., 3., 4.], 0.0);
    let r = run("roll", &[x.clone()], |v| {
        vec![t(v[0]), ints(&[-2]), ints(&[])]
    });
    close(&r[0], &[2, 3], &[2., 3., 4., 5., 0., 1.], 0.0);
}

#[test]
fn tri_repeat_pad() {
    let x = T::range(DType::F32, &[3, 3], 1.0, 1.0);
    let r = run("tril", &[x.clone()], |v| vec![t(v[0]), int(0)]);
    close(&r[0], &[3, 3], &[1., 0., 0., 4., 5., 0., 7., 8., 9.], 0.0);
    let r = run("triu_", &[x.clone()], |v| vec![t(v[0]), int(1)]);
    close(&r[0], &[3, 3], &[0., 2., 3., 0., 0., 6., 0., 0., 0.], 0.0);
    let y = T::f32(&[2], &[1., 2.]);
    let r = run("repeat", &[y.clone()], |v| vec![t(v[0]), ints(&[2, 2])]);
    close(&r[0], &[2, 4], &[1., 2., 1., 2., 1., 2., 1., 2.], 0.0);
    let z = T::f32(&[2, 2], &[1., 2., 3., 4.]);
    let r = run("constant_pad_nd", &[z.clone()], |v| {
        vec![t(v[0]), ints(&[1, 0, 0, 1]), sf(9.0)]
    });
    close(&r[0], &[3, 3], &[9., 1., 2., 9., 3., 4., 9., 9., 9.], 0.0);
    let r = run("constant_pad_nd", &[z], |v| vec![t(v[0]), ints(&[-1, 1])]);
    close(&r[0], &[2, 2], &[2., 0., 4., 0.], 0.0);
}

#[test]
fn factories() {
    let out = [ValueType::new(DType::F32, &[2, 3])];
    let r = run_out("eye.m_out", &[], &out, |_| vec![int(2), int(3)]);
    close(&r[0], &[2, 3], &[1., 0., 0., 0., 1., 0.], 0.0);
    let r = run_out("full.out", &[], &out, |_| vec![ints(&[2, 3]), sf(1.5)]);
    close(&r[0], &[2, 3], &[1.5; 6], 0.0);
    let r = run("full", &[], |_| vec![ints(&[2]), si(3), Arg::None]);
    assert_eq!(r[0].dtype, DType::I64);
    let out = [ValueType::new(DType::F32, &[5])];
    let r = run_out("linspace.out", &[], &out, |_| {
        vec![sf(0.0), sf(1.0), int(5)]
    });
    close(&r[0], &[5], &[0., 0.25, 0.5, 0.75, 1.], 1e-7);
    let ids = T::i64(&[3], &[0., 2., 1.]);
    let r = run("one_hot", &[ids], |v| vec![t(v[0]), int(3)]);
    close(&r[0], &[3, 3], &[1., 0., 0., 0., 0., 1., 0., 1., 0.], 0.0);
}

#[test]
fn sort_topk() {
    let x = T::f32(&[2, 4], &[3., 1., f64::NAN, 1., 0., -1., 5., -1.]);
    let r = run("sort", &[x.clone()], |v| vec![t(v[0]), int(-1), b(false)]);
    close(
        &r[0],
        &[2, 4],
        &[1., 1., 3., f64::NAN, -1., -1., 0., 5.],
        0.0,
    );
    close(&r[1], &[2, 4], &[1., 3., 0., 2., 1., 3., 0., 2.], 0.0);
    let r = run("sort.stable", &[x.clone()], |v| {
        vec![t(v[0]), b(true), int(1), b(true)]
    });
    close(
        &r[0],
        &[2, 4],
        &[f64::NAN, 3., 1., 1., 5., 0., -1., -1.],
        0.0,
    );
    close(&r[1], &[2, 4], &[2., 0., 1., 3., 2., 0., 1., 3.], 0.0);
    let y = T::f32(&[5], &[4., 9., 1., 7., 3.]);
    let r = run("topk", &[y.clone()], |v| {
        vec![t(v[0]), int(2), int(-1), b(true), b(true)]
    });
    close(&r[0], &[2], &[9., 7.], 0.0);
    close(&r[1], &[2], &[1., 3.], 0.0);
    let r = run("topk.values", &[y], |v| {
        vec![t(v[0]), int(3), int(0), b(false), b(true)]
    });
    close(&r[0], &[3], &[1., 3., 4.], 0.0);
    close(&r[1], &[3], &[2., 4., 0.], 0.0);
}
