// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::DType;
use tpu_lower::Arg;

#[test]
fn index_select_gather_embedding() {
    let x = T::range(DType::F32, &[3, 4], 1.0, 0.0);
    let idx = T::i64(&[2], &[2., 0.]);
    let r = run("index_select", &[x.clone(), idx.clone()], |v| {
        vec![t(v[0]), int(0), t(v[1])]
    });
    close(&r[0], &[2, 4], &[8., 9., 10., 11., 0., 1., 2., 3.], 0.0);
    let r = run("index_select.out", &[x.clone(), idx.clone()], |v| {
        vec![t(v[0]), int(-1), t(v[1])]
    });
    close(&r[0], &[3, 2], &[2., 0., 6., 4., 10., 8.], 0.0);

    let gi = T::i64(&[2, 2], &[3., 0., 1., 1.]);
    let r = run("gather", &[x.clone(), gi.clone()], |v| {
        vec![t(v[0]), int(1), t(v[1]), b(false)]
    });
    close(&r[0], &[2, 2], &[3., 0., 5., 5.], 0.0);
    let gi0 = T::i64(&[1, 3], &[2., 0., 1.]);
    let r = run("gather.out", &[x.clone(), gi0], |v| {
        vec![t(v[0]), int(0), t(v[1])]
    });
    close(&r[0], &[1, 3], &[8., 1., 6.], 0.0);

    let ids = T::i64(&[2, 2], &[1., 2., 0., 1.]);
    let r = run("embedding", &[x.clone(), ids], |v| {
        vec![t(v[0]), t(v[1]), int(-1), b(false), b(false)]
    });
    close(
        &r[0],
        &[2, 2, 4],
        &[
            4., 5., 6., 7., 8., 9., 10., 11., 0., 1., 2., 3., 4., 5., 6., 7.,
        ],
        0.0,
    );
}

#[test]
fn scatter_family() {
    let x = T::f32(&[2, 3], &[0.; 6]);
    let idx = T::i64(&[2, 2], &[2., 0., 1., 1.]);
    let src = T::f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let r = run("scatter.src", &[x.clone(), idx.clone(), src.clone()], |v| {
        vec![t(v[0]), int(1), t(v[1]), t(v[2])]
    });
    // Row 1 writes index 1 twice; either write is allowed, both are 4 or 5.
    assert_eq!(r[0].data[..3], [2., 0., 1.]);
    assert!(r[0].data[4] == 4. || r[0].data[4] == 5.);
    let r = run(
        "scatter_add_",
        &[x.clone(), idx.clone(), src.clone()],
        |v| vec![t(v[0]), int(1), t(v[1]), t(v[2])],
    );
    close(&r[0], &[2, 3], &[2., 0., 1., 0., 9., 0.], 0.0);
    let r = run("scatter.value", &[x.clone(), idx.clone()], |v| {
        vec![t(v[0]), int(1), t(v[1]), sf(7.0)]
    });
    close(&r[0], &[2, 3], &[7., 0., 7., 0., 7., 0.], 0.0);
    let r = run("scatter.reduce", &[src.clone(), idx, src], |v| {
        vec![
            t(v[0]),
            int(1),
            t(v[1]),
            t(v[2]),
            Arg::Str("multiply".into()),
        ]
    });
    close(&r[0], &[2, 3], &[2., 2., 3., 4., 100., 6.], 0.0);
}

#[test]
fn advanced_index() {
    let x = T::range(DType::F32, &[3, 4, 2], 1.0, 0.0);
    let at = |i: usize, j: usize, k: usize| (i * 8 + j * 2 + k) as f64;
    // x[[0, 2]] -> [2, 4, 2]
    let i0 = T::i64(&[2], &[0., 2.]);
    let r = run("index.Tensor", &[x.clone(), i0.clone()], |v| {
        vec![t(v[0]), opt_ts(&[Some(v[1])])]
    });
    let want: Vec<f64> = [0, 2]
        .iter()
        .flat_map(|&i| (0..4).flat_map(move |j| (0..2).map(move |k| at(i, j, k))))
        .collect();
    close(&r[0], &[2, 4, 2], &want, 0.0);
    // x[:, [1, -1]] -> [3, 2, 2] (adjacent, stays in place; -1 wraps)
    let i1 = T::i64(&[2], &[1., -1.]);
    let r = run("index.Tensor", &[x.clone(), i1.clone()], |v| {
        vec![t(v[0]), opt_ts(&[None, Some(v[1])])]
    });
    let want: Vec<f64> = (0..3)
        .flat_map(|i| {
            [1, 3]
                .into_iter()
                .flat_map(move |j| (0..2).map(move |k| at(i, j, k)))
        })
        .collect();
    close(&r[0], &[3, 2, 2], &want, 0.0);
    // x[[0, 2], :, [1, 0]] -> non-adjacent: broadcast dim first -> [2, 4]
    let i2 = T::new(DType::I32, &[2], &[1., 0.]);
    let r = run("index.Tensor", &[x.clone(), i0.clone(), i2.clone()], |v| {
        vec![t(v[0]), opt_ts(&[Some(v[1]), None, Some(v[2])])]
    });
    let want: Vec<f64> = [(0, 1), (2, 0)]
        .iter()
        .flat_map(|&(i, k)| (0..4).map(move |j| at(i, j, k)))
        .collect();
    close(&r[0], &[2, 4], &want, 0.0);
    // Broadcasting index tensors: x[[[0],[1]], [2, 3]] -> [2, 2, 2]
    let ib = T::i64(&[2, 1], &[0., 1.]);
    let ic = T::i64(&[2], &[2., 3.]);
    let r = run("index.Tensor", &[x.clone(), ib, ic], |v| {
        vec![t(v[0]), opt_ts(&[Some(v[1]), Some(v[2])])]
    });
    let want: Vec<f64> = [0, 1]
        .iter()
        .flat_map(|&i| {
            [2, 3]
                .into_iter()
                .flat_map(move |j| (0..2).map(move |k| at(i, j, k)))
        })
        .collect();
    close(&r[0], &[2, 2, 2], &want, 0.0);
    // Bool masks have a data-dependent shape.
    let m = T::bool(&[3], &[1., 0., 1.]);
    let e = try_run("index.Tensor", &[x.clone(), m], &[], |v| {
        vec![t(v[0]), opt_ts(&[Some(v[1])])]
    })
    .unwrap_err();
    assert!(e.to_string().contains("data-dependent"), "{e}");
}

#[test]
fn index_put_and_masked_fill() {
    let x = T::f32(&[3, 2], &[0.; 6]);
    let i = T::i64(&[3], &[0., 2., 0.]);
    let vals = T::f32(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
    let r = run("index_put_", &[x.clone(), i.clone(), vals.clone()], |v| {
        vec![t(v[0]), opt_ts(&[Some(v[1])]), t(v[2]), b(true)]
    });
    close(&r[0], &[3, 2], &[6., 8., 0., 0., 3., 4.], 0.0);
    let j = T::i64(&[2], &[1., -1.]);
    let k = T::i64(&[2], &[1., 0.]);
    let s = T::f32(&[], &[9.]);
    let r = run("_index_put_impl_", &[x.clone(), j, k, s], |v| {
        vec![
            t(v[0]),
            opt_ts(&[Some(v[1]), Some(v[2])]),
            t(v[3]),
            b(false),
            b(false),
        ]
    });
    close(&r[0], &[3, 2], &[0., 0., 0., 9., 9., 0.], 0.0);
    // x[mask] = value
    let m = T::bool(&[3, 2], &[1., 0., 0., 1., 0., 0.]);
    let s = T::f32(&[], &[5.]);
    let r = run("index_put", &[x.clone(), m.clone(), s], |v| {
        vec![t(v[0]), opt_ts(&[Some(v[1])]), t(v[2]), b(false)]
    });
    close(&r[0], &[3, 2], &[5., 0., 0., 5., 0., 0.], 0.0);

    let r = run("masked_fill.Scalar", &[vals.clone(), m.clone()], |v| {
        vec![t(v[0]), t(v[1]), sf(-1.0)]
    });
    close(&r[0], &[3, 2], &[-1., 2., 3., -1., 5., 6.], 0.0);
    let row = T::bool(&[2], &[0., 1.]);
    let val = T::f32(&[], &[f64::NEG_INFINITY]);
    let r = run("masked_fill_.Tensor", &[vals, row, val], |v| {
        vec![t(v[0]), t(v[1]), t(v[2])]
    });
    let ni = f64::NEG_INFINITY;
    close(&r[0], &[3, 2], &[1., ni, 3., ni, 5., ni], 0.0);
}

#[test]
fn embedding_backward() {
    let go = T::f32(
        &[2, 2, 3],
        &[1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4.],
    );
    let ids = T::i64(&[2, 2], &[1., 3., 1., 0.]);
    let r = run(
        "embedding_dense_backward",
        &[go.clone(), ids.clone()],
        |v| vec![t(v[0]), t(v[1]), int(5), int(-1), b(false)],
    );
    close(
        &r[0],
        &[5, 3],
        &[4., 4., 4., 4., 4., 4., 0., 0., 0., 2., 2., 2., 0., 0., 0.],
        0.0,
    );
    let r = run(
        "embedding_dense_backward.out",
        &[go.clone(), ids.clone()],
        |v| vec![t(v[0]), t(v[1]), int(5), int(1), b(false)],
    );
    close(
        &r[0],
        &[5, 3],
        &[4., 4., 4., 0., 0., 0., 0., 0., 0., 2., 2., 2., 0., 0., 0.],
        0.0,
    );
    let r = run("embedding_dense_backward", &[go, ids], |v| {
        vec![t(v[0]), t(v[1]), int(5), int(-1), b(true)]
    });
    close(
        &r[0],
        &[5, 3],
        &[4., 4., 4., 2., 2., 2., 0., 0., 0., 2., 2., 2., 0., 0., 0.],
        0.0,
    );
}
