//! Batch norm (forward with running-stat updates, backward), triangular
//! solves and Cholesky, checked against direct computation.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::{DType, ValueType};
use tpu_lower::Arg;

/// Per-channel mean and biased variance of `[n, c]` data (channel-minor).
fn stats(x: &[f64], n: usize, ch: usize) -> (Vec<f64>, Vec<f64>) {
    let mean: Vec<f64> = (0..ch)
        .map(|j| (0..n).map(|i| x[i * ch + j]).sum::<f64>() / n as f64)
        .collect();
    let var: Vec<f64> = (0..ch)
        .map(|j| {
            (0..n)
                .map(|i| (x[i * ch + j] - mean[j]).powi(2))
                .sum::<f64>()
                / n as f64
        })
        .collect();
    (mean, var)
}

#[test]
fn batch_norm_with_update_moves_running_stats() {
    let (n, ch) = (4, 3);
    let x = T::rand(DType::F32, &[n as i64, ch as i64], 1);
    let w = T::f32(&[3], &[1., 2., -1.]);
    let bias = T::f32(&[3], &[0., 0.5, 1.]);
    let rm = T::f32(&[3], &[0.1, 0.2, 0.3]);
    let rv = T::f32(&[3], &[1., 2., 3.]);
    let stat = ValueType::new(DType::F32, &[3]);
    let r = run_out(
        "_batch_norm_with_update",
        &[x.clone(), w.clone(), bias.clone(), rm.clone(), rv.clone()],
        &[stat.clone(), stat],
        |v| {
            vec![
                t(v[0]),
                t(v[1]),
                t(v[2]),
                t(v[3]),
                t(v[4]),
                fl(0.1),
                fl(1e-5),
            ]
        },
    );
    let (mean, var) = stats(&x.data, n, ch);
    let new_rm: Vec<f64> = (0..ch).map(|j| 0.9 * rm.data[j] + 0.1 * mean[j]).collect();
    let new_rv: Vec<f64> = (0..ch)
        .map(|j| 0.9 * rv.data[j] + 0.1 * var[j] * n as f64 / (n - 1) as f64)
        .collect();
    close(&r[0], &[3], &new_rm, 1e-5);
    close(&r[1], &[3], &new_rv, 1e-5);
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    let y: Vec<f64> = (0..n * ch)
        .map(|k| {
            let j = k % ch;
            (x.data[k] - mean[j]) * invstd[j] * w.data[j] + bias.data[j]
        })
        .collect();
    close(&r[2], &[4, 3], &y, 1e-4);
    close(&r[3], &[3], &mean, 1e-5);
    close(&r[4], &[3], &invstd, 1e-4);
    assert_eq!(r[5].shape, [0]);
    assert_eq!(r[5].dtype, DType::U8);
}

#[test]
fn batch_norm_eval_and_backward() {
    let x = T::rand(DType::F32, &[2, 2, 3], 2);
    let rm = T::f32(&[2], &[0.5, -0.5]);
    let rv = T::f32(&[2], &[4., 0.25]);
    let r = run(
        "_native_batch_norm_legit_no_training",
        &[x.clone(), rm.clone(), rv.clone()],
        |v| {
            vec![
                t(v[0]),
                Arg::None,
                Arg::None,
                t(v[1]),
                t(v[2]),
                fl(0.1),
                fl(0.0),
            ]
        },
    );
    let y: Vec<f64> = (0..12)
        .map(|k| {
            let j = (k / 3) % 2;
            (x.data[k] - rm.data[j]) / rv.data[j].sqrt()
        })
        .collect();
    close(&r[0], &[2, 2, 3], &y, 1e-5);
    assert_eq!(r[1].shape, [0]);

    // Eval backward: grad_input = g * w * invstd; grad_weight = sum(g * xhat); grad_bias = sum(g).
    let g = T::rand(DType::F32, &[2, 2, 3], 3);
    let w = T::f32(&[2], &[2., 3.]);
    let r = run(
        "native_batch_norm_backward",
        &[g.clone(), x.clone(), w.clone(), rm.clone(), rv.clone()],
        |v| {
            vec![
                t(v[0]),
                t(v[1]),
                t(v[2]),
                t(v[3]),
                t(v[4]),
                Arg::None,
                Arg::None,
                b(false),
                fl(0.0),
                Arg::Bools(vec![true, true, true]),
            ]
        },
    );
    let gi: Vec<f64> = (0..12)
        .map(|k| {
            let j = (k / 3) % 2;
            g.data[k] * w.data[j] / rv.data[j].sqrt()
        })
        .collect();
    close(&r[0], &[2, 2, 3], &gi, 1e-5);
    let mut gw = [0.0; 2];
    let mut gb = [0.0; 2];
    for k in 0..12 {
        let j = (k / 3) % 2;
        gw[j] += g.data[k] * (x.data[k] - rm.data[j]) / rv.data[j].sqrt();
        gb[j] += g.data[k];
    }
    close(&r[1], &[2], &gw, 1e-5);
    close(&r[2], &[2], &gb, 1e-5);
}

#[test]
fn solve_triangular_and_cholesky() {
    // A = L L^T with L = [[2, 0], [1, 3]]: A = [[4, 2], [2, 10]].
    let a = T::f32(&[2, 2], &[4., 2., 2., 10.]);
    let r = run("linalg_cholesky_ex", &[a.clone()], |v| {
        vec![t(v[0]), b(false), b(false)]
    });
    close(&r[0], &[2, 2], &[2., 0., 1., 3.], 1e-6);
    assert_eq!(r[1].dtype, DType::I32);
    close(&r[1], &[], &[0.], 0.0);
    let r = run("linalg_cholesky_ex", &[a.clone()], |v| {
        vec![t(v[0]), b(true), b(false)]
    });
    close(&r[0], &[2, 2], &[2., 1., 0., 3.], 1e-6);

    // The upper triangle of L is ignored: L x = [2, 7] gives x = [1, 2].
    let l = T::f32(&[2, 2], &[2., 99., 1., 3.]);
    let rhs = T::f32(&[1, 2, 1], &[2., 7.]);
    let r = run("linalg_solve_triangular", &[l.clone(), rhs.clone()], |v| {
        vec![t(v[0]), t(v[1]), b(false), b(true), b(false)]
    });
    close(&r[0], &[1, 2, 1], &[1., 2.], 1e-6);

    // cholesky_solve: A x = b with b = A [1, 1] = [6, 12].
    let f = T::f32(&[2, 2], &[2., 0., 1., 3.]);
    let rhs = T::f32(&[2, 1], &[6., 12.]);
    let r = run("cholesky_solve", &[rhs, f.clone()], |v| {
        vec![t(v[0]), t(v[1]), b(false)]
    });
    close(&r[0], &[2, 1], &[1., 1.], 1e-5);
    // cholesky_inverse: A^-1 = [[10, -2], [-2, 4]] / 36.
    let r = run("cholesky_inverse", &[f], |v| vec![t(v[0]), b(false)]);
    let inv: Vec<f64> = [10., -2., -2., 4.].iter().map(|x| x / 36.0).collect();
    close(&r[0], &[2, 2], &inv, 1e-5);
}
