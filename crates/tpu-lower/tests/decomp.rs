//! Decompositions built on while loops (Jacobi SVD and eigh, Householder,
//! matrix functions), checked by their defining properties on the CPU plugin.

mod common;

use common::*;
use tpu_graph::DType;

/// `[b, m, k] x [b, k, n]`, row-major.
fn bmm(a: &[f64], x: &[f64], bsz: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; bsz * m * n];
    for b in 0..bsz {
        for i in 0..m {
            for j in 0..n {
                out[b * m * n + i * n + j] = (0..k)
                    .map(|p| a[b * m * k + i * k + p] * x[b * k * n + p * n + j])
                    .sum();
            }
        }
    }
    out
}

/// `[b, m, n]` transposed to `[b, n, m]`.
fn tr(a: &[f64], bsz: usize, m: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; a.len()];
    for b in 0..bsz {
        for i in 0..m {
            for j in 0..n {
                out[b * m * n + j * m + i] = a[b * m * n + i * n + j];
            }
        }
    }
    out
}

fn eye_b(bsz: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; bsz * n * n];
    for b in 0..bsz {
        for i in 0..n {
            out[b * n * n + i * n + i] = 1.0;
        }
    }
    out
}

#[track_caller]
fn near(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= tol,
        "max error {worst} > {tol}\n got {got:?}\nwant {want:?}"
    );
}

/// `_linalg_svd` of `[b, m, n]`: U S Vh reconstructs A, U and V are orthonormal, S descends.
fn check_svd(bsz: usize, m: usize, n: usize, full: bool, seed: u64) {
    let k = m.min(n);
    let a = T::rand(DType::F32, &[bsz as i64, m as i64, n as i64], seed);
    let r = run("_linalg_svd", std::slice::from_ref(&a), |v| {
        vec![t(v[0]), b(full), b(true)]
    });
    let (uc, vr) = if full { (m, n) } else { (k, k) };
    assert_eq!(r[0].shape, [bsz as i64, m as i64, uc as i64]);
    assert_eq!(r[1].shape, [bsz as i64, k as i64]);
    assert_eq!(r[2].shape, [bsz as i64, vr as i64, n as i64]);
    let (u, s, vh) = (&r[0].data, &r[1].data, &r[2].data);
    for bi in 0..bsz {
        let sv = &s[bi * k..(bi + 1) * k];
        assert!(
            sv.windows(2).all(|w| w[0] >= w[1]),
            "not descending: {sv:?}"
        );
        assert!(sv.iter().all(|&x| x >= 0.0));
    }
    // A = U[:, :k] diag(S) Vh[:k, :].
    let mut us = vec![0.0; bsz * m * k];
    for bi in 0..bsz {
        for i in 0..m {
            for j in 0..k {
                us[bi * m * k + i * k + j] = u[bi * m * uc + i * uc + j] * s[bi * k + j];
            }
        }
    }
    let mut vk = vec![0.0; bsz * k * n];
    for bi in 0..bsz {
        for i in 0..k {
            for j in 0..n {
                vk[bi * k * n + i * n + j] = vh[bi * vr * n + i * n + j];
            }
        }
    }
    near(&bmm(&us, &vk, bsz, m, k, n), &a.data, 1e-5);
    let ut = tr(u, bsz, m, uc);
    near(&bmm(&ut, u, bsz, uc, m, uc), &eye_b(bsz, uc), 1e-5);
    let vt = tr(vh, bsz, vr, n);
    near(&bmm(vh, &vt, bsz, vr, n, vr), &eye_b(bsz, vr), 1e-5);
}

#[test]
fn svd_square_tall_wide_batched() {
    for (m, n) in [
        (1, 1),
        (2, 2),
        (3, 3),
        (5, 5),
        (8, 8),
        (5, 3),
        (3, 5),
        (6, 1),
        (1, 4),
        (7, 4),
    ] {
        check_svd(2, m, n, false, (m * 10 + n) as u64);
        check_svd(1, m, n, true, (m * 10 + n) as u64 + 1);
    }
}

#[test]
fn svd_known_values_and_rank_deficiency() {
    // diag(3, -1, 2) has singular values 3, 2, 1.
    let a = T::f32(&[3, 3], &[3., 0., 0., 0., -1., 0., 0., 0., 2.]);
    let r = run("_linalg_svd", &[a], |v| vec![t(v[0]), b(false), b(false)]);
    close(&r[1], &[3], &[3., 2., 1.], 1e-6);
    assert_eq!(r[0].shape, [0]);
    // Rank 1: one nonzero singular value, U still orthonormal.
    let a = T::f32(&[3, 3], &[1., 2., 3., 2., 4., 6., 3., 6., 9.]);
    let r = run("_linalg_svd", &[a], |v| vec![t(v[0]), b(true), b(true)]);
    close(&r[1], &[3], &[14.0, 0.0, 0.0], 1e-5);
    let u = &r[0].data;
    near(&bmm(&tr(u, 1, 3, 3), u, 1, 3, 3, 3), &eye_b(1, 3), 1e-5);
    // Zero matrix and empty matrices.
    let r = run("_linalg_svd", &[T::f32(&[2, 2], &[0.; 4])], |v| {
        vec![t(v[0]), b(false), b(true)]
    });
    close(&r[1], &[2], &[0., 0.], 0.0);
    let r = run("_linalg_svd", &[T::f32(&[3, 0], &[])], |v| {
        vec![t(v[0]), b(true), b(true)]
    });
    close(&r[0], &[3, 3], &eye_b(1, 3), 0.0);
    assert_eq!(r[1].shape, [0]);
}

#[test]
fn svd_rejects_bad_input() {
    let e = try_run("_linalg_svd", &[T::f32(&[3], &[1., 2., 3.])], &[], |v| {
        vec![t(v[0])]
    });
    assert!(
        matches!(e, Err(tpu_lower::LowerError::Invalid(m)) if m.contains("at least 2 dimensions"))
    );
    let e = try_run(
        "_linalg_svd",
        &[T::i64(&[2, 2], &[1., 2., 3., 4.])],
        &[],
        |v| vec![t(v[0])],
    );
    assert!(e.is_err());
}

#[test]
fn eigh_reconstructs_and_ascends() {
    for n in [1usize, 2, 3, 6] {
        let r0 = T::rand(DType::F32, &[2, n as i64, n as i64], n as u64);
        // Symmetric from the lower triangle, which is all the rule reads.
        let mut sym = r0.data.clone();
        for b in 0..2 {
            for i in 0..n {
                for j in i + 1..n {
                    sym[b * n * n + i * n + j] = r0.data[b * n * n + j * n + i];
                }
            }
        }
        let r = run("_linalg_eigh", std::slice::from_ref(&r0), |v| vec![t(v[0])]);
        let (w, v) = (&r[0].data, &r[1].data);
        let mut vw = v.clone();
        for b in 0..2 {
            assert!(w[b * n..(b + 1) * n].windows(2).all(|p| p[0] <= p[1]));
            for i in 0..n {
                for j in 0..n {
                    vw[b * n * n + i * n + j] *= w[b * n + j];
                }
            }
        }
        near(&bmm(&vw, &tr(v, 2, n, n), 2, n, n, n), &sym, 1e-5);
    }
}

#[test]
fn matrix_exp_of_diagonal_and_nilpotent() {
    // exp(diag(0, 1, -2, 5)) and exp([[0, 1], [0, 0]]) = [[1, 1], [0, 1]].
    let a = T::f32(
        &[4, 4],
        &[
            0., 0., 0., 0., 0., 1., 0., 0., 0., 0., -2., 0., 0., 0., 0., 5.,
        ],
    );
    let r = run("linalg_matrix_exp", &[a], |v| vec![t(v[0])]);
    let mut want = vec![0.0; 16];
    for (i, x) in [0.0f64, 1.0, -2.0, 5.0].iter().enumerate() {
        want[i * 5] = x.exp();
    }
    close(&r[0], &[4, 4], &want, 1e-6);
    let r = run(
        "linalg_matrix_exp",
        &[T::f32(&[2, 2], &[0., 1., 0., 0.])],
        |v| vec![t(v[0])],
    );
    close(&r[0], &[2, 2], &[1., 1., 0., 1.], 1e-7);
}
