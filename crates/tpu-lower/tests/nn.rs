// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::DType;
use tpu_lower::Arg;

const NAN: f64 = f64::NAN;

fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse; integrate instead (Simpson).
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

fn gelu(x: f64, tanh: bool) -> f64 {
    if tanh {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
    } else {
        0.5 * x * (1.0 + erf(x / 2f64.sqrt()))
    }
}

#[test]
fn activations() {
    let x = T::f32(&[6], &[-2., -0.5, 0., 0.5, 2., NAN]);
    let r = run("relu", &[x.clone()], |v| vec![t(v[0])]);
    close(&r[0], &[6], &[0., 0., 0., 0.5, 2., NAN], 0.0);
    let g = T::f32(&[6], &[1., 2., 3., 4., 5., 6.]);
    let r = run("threshold_backward", &[g.clone(), x.clone()], |v| {
        vec![t(v[0]), t(v[1]), si(0)]
    });
    close(&r[0], &[6], &[0., 0., 0., 4., 5., 6.], 0.0);
    let r = run("threshold", &[x.clone()], |v| {
        vec![t(v[0]), sf(0.5), sf(-7.0)]
    });
    close(&r[0], &[6], &[-7., -7., -7., -7., 2., NAN], 0.0);
    for (mode, tanh) in [("none", false), ("tanh", true)] {
        let r = run("gelu", &[x.clone()], |v| {
            vec![t(v[0]), Arg::Str(mode.into())]
        });
        let want: Vec<f64> = x.data.iter().map(|&v| gelu(v, tanh)).collect();
        close(&r[0], &[6], &want, 1e-5);
        let r = run("gelu_backward", &[g.clone(), x.clone()], |v| {
            vec![t(v[0]), t(v[1]), Arg::Str(mode.into())]
        });
        let want: Vec<f64> = x
            .data
            .iter()
            .zip(&g.data)
            .map(|(&v, &gv)| gv * (gelu(v + 1e-5, tanh) - gelu(v - 1e-5, tanh)) / 2e-5)
            .collect();
        close(&r[0], &[6], &want, 1e-4);
    }
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let r = run("silu", &[x.clone()], |v| vec![t(v[0])]);
    close(
        &r[0],
        &[6],
        &x.data.iter().map(|&v| v * sig(v)).collect::<Vec<_>>(),
        1e-6,
    );
    let r = run("silu_backward", &[g.clone(), x.clone()], |v| {
        vec![t(v[0]), t(v[1])]
    });
    let want: Vec<f64> = x
        .data
        .iter()
        .zip(&g.data)
        .map(|(&v, &gv)| gv * sig(v) * (1.0 + v * (1.0 - sig(v))))
        .collect();
    close(&r[0], &[6], &want, 1e-6);
    let y = T::f32(&[2], &[0.25, 0.5]);
    let g2 = T::f32(&[2], &[2., 4.]);
    let r = run("sigmoid_backward", &[g2.clone(), y.clone()], |v| {
        vec![t(v[0]), t(v[1])]
    });
    close(&r[0], &[2], &[2. * 0.75 * 0.25, 4. * 0.25], 1e-6);
    let r = run("tanh_backward", &[g2.clone(), y.clone()], |v| {
        vec![t(v[0]), t(v[1])]
    });
    close(&r[0], &[2], &[2. * (1. - 0.0625), 4. * 0.75], 1e-6);
    let r = run("leaky_relu", &[x.clone()], |v| vec![t(v[0]), sf(0.1)]);
    close(&r[0], &[6], &[-0.2, -0.05, 0., 0.5, 2., NAN], 1e-6);
    let r = run("leaky_relu_backward", &[g.clone(), x.clone()], |v| {
        vec![t(v[0]), t(v[1]), sf(0.1), b(false)]
    });
    close(&r[0], &[6], &[0.1, 0.2, 0.3, 4., 5., 0.6], 1e-6);
    let r = run("hardtanh", &[x.clone()], |v| vec![t(v[0]), si(-1), si(1)]);
    close(&r[0], &[6], &[-1., -0.5, 0., 0.5, 1., NAN], 0.0);
    let r = run("hardtanh_backward", &[g.clone(), x.clone()], |v| {
        vec![t(v[0]), t(v[1]), si(-1), si(1)]
    });
    close(&r[0], &[6], &[0., 2., 3., 4., 0., 6.], 0.0);
    let r = run("elu", &[x.clone()], |v| vec![t(v[0]), si(1), si(1), si(1)]);
    let want: Vec<f64> = x
        .data
        .iter()
        .map(|&v| if v > 0.0 { v } else { v.exp_m1() })
        .collect();
    close(&r[0], &[6], &want, 1e-6);
}

fn softmax_ref(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for c in 0..cols {
            out[r * cols + c] = (row[c] - m).exp() / s;
        }
    }
    out
}

#[test]
fn softmax_family() {
    let x = T::f32(&[2, 3], &[1., 2., 3., 1000., 1000., f64::NEG_INFINITY]);
    let sm = softmax_ref(&x.data, 2, 3);
    let r = run("_softmax", &[x.clone()], |v| {
        vec![t(v[0]), int(-1), b(false)]
    });
    close(&r[0], &[2, 3], &sm, 1e-6);
    let r = run("_log_softmax.out", &[x.clone()], |v| {
        vec![t(v[0]), int(1), b(false)]
    });
    close(
        &r[0],
        &[2, 3],
        &sm.iter().map(|v| v.ln()).collect::<Vec<_>>(),
        1e-5,
    );
    // Backward: against the analytic Jacobian-vector product.
    let y = T::f32(&[2, 3], &sm);
    let g = T::f32(&[2, 3], &[1., 0., -1., 0.5, 0.5, 2.]);
    let r = run("_softmax_backward_data", &[g.clone(), y.clone()], |v| {
        vec![t(v[0]), t(v[1]), int(1), Arg::DType(DType::F32)]
    });
    let mut want = vec![0.0; 6];
    for row in 0..2 {
        let dot: f64 = (0..3).map(|c| g.data[row * 3 + c] * sm[row * 3 + c]).sum();
        for c in 0..3 {
            want[row * 3 + c] = sm[row * 3 + c] * (g.data[row * 3 + c] - dot);
        }
    }
    close(&r[0], &[2, 3], &want, 1e-5);
    let ly = T::f32(&[2, 3], &sm.iter().map(|v| v.ln()).collect::<Vec<_>>());
    let r = run("_log_softmax_backward_data", &[g.clone(), ly], |v| {
        vec![t(v[0]), t(v[1]), int(1), Arg::DType(DType::F32)]
    });
    for row in 0..2 {
        let s: f64 = (0..3).map(|c| g.data[row * 3 + c]).sum();
        for c in 0..3 {
            want[row * 3 + c] = g.data[row * 3 + c] - sm[row * 3 + c] * s;
        }
    }
    close(&r[0], &[2, 3], &want, 1e-5);
    // A NaN poisons its row.
    let xn = T::f32(&[2, 2], &[NAN, 1., 1., 1.]);
    let r = run("_softmax", &[xn], |v| vec![t(v[0]), int(1), b(false)]);
    close(&r[0], &[2, 2], &[NAN, NAN, 0.5, 0.5], 1e-6);
    // half_to_float.
    let h = T::new(DType::BF16, &[3], &[1., 2., 3.]);
    let r = run("_softmax", &[h], |v| vec![t(v[0]), int(0), b(true)]);
    assert_eq!(r[0].dtype, DType::F32);
    close(&r[0], &[3], &softmax_ref(&[1., 2., 3.], 1, 3), 1e-6);
}

#[test]
fn nll_loss() {
    let x = T::f32(
        &[3, 4],
        &[
            -1., -2., -3., -4., -5., -6., -7., -8., -9., -10., -11., -12.,
        ],
    );
    let tgt = T::i64(&[3], &[1., -100., 3.]);
    let w = T::f32(&[4], &[1., 2., 3., 4.]);
    // mean with weights: (2*2 + 4*12) / (2 + 4); the ignored row counts nothing.
    let r = run(
        "nll_loss_forward",
        &[x.clone(), tgt.clone(), w.clone()],
        |v| vec![t(v[0]), t(v[1]), t(v[2]), int(1), int(-100)],
    );
    close(&r[0], &[], &[52. / 6.], 1e-6);
    close(&r[1], &[], &[6.], 0.0);
    let r = run("nll_loss_forward.output", &[x.clone(), tgt.clone()], |v| {
        vec![t(v[0]), t(v[1]), Arg::None, int(0), int(-100)]
    });
    close(&r[0], &[3], &[2., 0., 12.], 0.0);
    let r = run("nll_loss_forward", &[x.clone(), tgt.clone()], |v| {
        vec![t(v[0]), t(v[1]), Arg::None, int(2), int(-100)]
    });
    close(&r[0], &[], &[14.], 0.0);
    close(&r[1], &[], &[2.], 0.0);
    // ignore_index that is a real class.
    let t2 = T::i64(&[3], &[0., 0., 2.]);
    let r = run("nll_loss_forward", &[x.clone(), t2], |v| {
        vec![t(v[0]), t(v[1]), Arg::None, int(1), int(0)]
    });
    close(&r[0], &[], &[11.], 0.0);

    let go = T::f32(&[], &[2.]);
    let tw = T::f32(&[], &[6.]);
    let r = run(
        "nll_loss_backward",
        &[go, x.clone(), tgt.clone(), w.clone(), tw],
        |v| {
            vec![
                t(v[0]),
                t(v[1]),
                t(v[2]),
                t(v[3]),
                int(1),
                int(-100),
                t(v[4]),
            ]
        },
    );
    let mut want = vec![0.0; 12];
    want[1] = -2.0 * 2.0 / 6.0;
    want[2 * 4 + 3] = -4.0 * 2.0 / 6.0;
    close(&r[0], &[3, 4], &want, 1e-6);
    let go = T::f32(&[3], &[1., 2., 3.]);
    let tw = T::f32(&[], &[0.]);
    let r = run(
        "nll_loss_backward.grad_input",
        &[go, x.clone(), tgt, tw],
        |v| {
            vec![
                t(v[0]),
                t(v[1]),
                t(v[2]),
                Arg::None,
                int(0),
                int(-100),
                t(v[3]),
            ]
        },
    );
    let mut want = vec![0.0; 12];
    want[1] = -1.0;
    want[11] = -3.0;
    close(&r[0], &[3, 4], &want, 0.0);

    // 2-D: [N, C, H, W] with target [N, H, W].
    let x4 = T::range(DType::F32, &[1, 2, 1, 2], -1.0, 0.0);
    let t4 = T::i64(&[1, 1, 2], &[1., 0.]);
    let r = run("nll_loss2d_forward", &[x4, t4], |v| {
        vec![t(v[0]), t(v[1]), Arg::None, int(2), int(-100)]
    });
    // x[0,1,0,0] = -2, x[0,0,0,1] = -1.
    close(&r[0], &[], &[3.], 0.0);
}

#[test]
fn mse() {
    let x = T::f32(&[2], &[1., 3.]);
    let y = T::f32(&[2], &[0., 1.]);
    let r = run("mse_loss", &[x.clone(), y.clone()], |v| {
        vec![t(v[0]), t(v[1]), int(1)]
    });
    close(&r[0], &[], &[2.5], 0.0);
    let g = T::f32(&[], &[1.]);
    let r = run("mse_loss_backward", &[g, x, y], |v| {
        vec![t(v[0]), t(v[1]), t(v[2]), int(1)]
    });
    close(&r[0], &[2], &[1., 2.], 0.0);
}

/// Reference layer norm over the last `n` elements of each row, in f64.
fn ln_ref(x: &[f64], w: &[f64], bias: &[f64], n: usize, eps: f64) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..x.len() / n {
        let row = &x[r * n..(r + 1) * n];
        let m: f64 = row.iter().sum::<f64>() / n as f64;
        let v: f64 = row.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n as f64;
        for i in 0..n {
            out[r * n + i] = (row[i] - m) / (v + eps).sqrt() * w[i] + bias[i];
        }
    }
    out
}

#[test]
fn layer_norm_forward_backward() {
    let (rows, n, eps) = (3usize, 4usize, 1e-5);
    let x = T::rand(DType::F32, &[rows as i64, n as i64], 7);
    let w = T::f32(&[4], &[1., 0.5, -1., 2.]);
    let bias = T::f32(&[4], &[0., 0.1, 0.2, 0.3]);
    let r = run(
        "native_layer_norm",
        &[x.clone(), w.clone(), bias.clone()],
        |v| vec![t(v[0]), ints(&[4]), t(v[1]), t(v[2]), fl(eps)],
    );
    close(
        &r[0],
        &[3, 4],
        &ln_ref(&x.data, &w.data, &bias.data, n, eps),
        1e-4,
    );
    assert_eq!(r[1].shape, vec![3, 1]);
    assert_eq!(r[2].shape, vec![3, 1]);
    let m0: f64 = x.data[..4].iter().sum::<f64>() / 4.0;
    close(&T::f32(&[1], &r[1].data[..1]), &[1], &[m0], 1e-6);
    let (mean, rstd) = (r[1].clone(), r[2].clone());

    let go = T::rand(DType::F32, &[3, 4], 11);
    let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| -> f64 {
        ln_ref(xv, wv, bv, n, eps)
            .iter()
            .zip(&go.data)
            .map(|(a, g)| a * g)
            .sum()
    };
    let num_grad = |which: usize, len: usize| -> Vec<f64> {
        (0..len)
            .map(|i| {
                let mut p = [x.data.clone(), w.data.clone(), bias.data.clone()];
                let mut m = p.clone();
                p[which][i] += 1e-6;
                m[which][i] -= 1e-6;
                (loss(&p[0], &p[1], &p[2]) - loss(&m[0], &m[1], &m[2])) / 2e-6
            })
            .collect()
    };
    let r = run(
        "native_layer_norm_backward",
        &[go.clone(), x.clone(), mean, rstd, w.clone(), bias.clone()],
        |v| {
            vec![
                t(v[0]),
                t(v[1]),
                ints(&[4]),
                t(v[2]),
                t(v[3]),
                t(v[4]),
                t(v[5]),
                Arg::Bools(vec![true, true, true]),
            ]
        },
    );
    close(&r[0], &[3, 4], &num_grad(0, 12), 2e-3);
    close(&r[1], &[4], &num_grad(1, 4), 2e-3);
    close(&r[2], &[4], &num_grad(2, 4), 2e-3);
}

#[test]
fn dropout() {
    let x = T::f32(&[1000], &vec![1.0; 1000]);
    let r = run("native_dropout", &[x.clone()], |v| {
        vec![t(v[0]), fl(0.25), b(true)]
    });
    assert_eq!(r[1].dtype, DType::Bool);
    let kept = r[1].data.iter().filter(|&&m| m != 0.0).count();
    assert!((650..850).contains(&kept), "kept {kept} of 1000 at p=0.25");
    for (o, m) in r[0].data.iter().zip(&r[1].data) {
        let want = if *m != 0.0 { 1.0 / 0.75 } else { 0.0 };
        assert!((o - want).abs() < 1e-6);
    }
    let r2 = run("native_dropout", &[x.clone()], |v| {
        vec![t(v[0]), fl(0.25), b(false)]
    });
    assert!(r2[1].data.iter().all(|&m| m == 1.0) && r2[0].data == x.data);
    let mask = r[1].clone();
    let g = T::f32(&[1000], &vec![2.0; 1000]);
    let r3 = run("native_dropout_backward", &[g, mask.clone()], |v| {
        vec![t(v[0]), t(v[1]), fl(2.0)]
    });
    for (o, m) in r3[0].data.iter().zip(&mask.data) {
        assert_eq!(*o, if *m != 0.0 { 4.0 } else { 0.0 });
    }
}
