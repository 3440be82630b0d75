// Tests pass single inputs as `&[x.clone()]` for uniformity with multi-input calls.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use tpu_graph::DType;
use tpu_lower::Arg;

#[derive(Clone, Copy)]
struct Cfg {
    n: usize,
    cin: usize,
    cout: usize,
    hw: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    g: usize,
    op: [usize; 2],
}

/// Reference regular conv: (y, grad_input, grad_weight, grad_bias) for output gradient `go`.
fn conv_ref(
    c: Cfg,
    x: &[f64],
    w: &[f64],
    go: Option<&[f64]>,
) -> (Vec<f64>, [usize; 2], Vec<f64>, Vec<f64>) {
    let o = [0, 1].map(|i| (c.hw[i] + 2 * c.p[i] - c.d[i] * (c.k[i] - 1) - 1) / c.s[i] + 1);
    let (cig, cog) = (c.cin / c.g, c.cout / c.g);
    let mut y = vec![0.0; c.n * c.cout * o[0] * o[1]];
    let mut gi = vec![0.0; x.len()];
    let mut gw = vec![0.0; w.len()];
    for n in 0..c.n {
        for co in 0..c.cout {
            for oh in 0..o[0] {
                for ow in 0..o[1] {
                    let yi = ((n * c.cout + co) * o[0] + oh) * o[1] + ow;
                    for cg in 0..cig {
                        let ci = (co / cog) * cig + cg;
                        for kh in 0..c.k[0] {
                            for kw in 0..c.k[1] {
                                let h = (oh * c.s[0] + kh * c.d[0]) as i64 - c.p[0] as i64;
                                let ww = (ow * c.s[1] + kw * c.d[1]) as i64 - c.p[1] as i64;
                                if h < 0 || ww < 0 || h >= c.hw[0] as i64 || ww >= c.hw[1] as i64 {
                                    continue;
                                }
                                let xi = ((n * c.cin + ci) * c.hw[0] + h as usize) * c.hw[1]
                                    + ww as usize;
                                let wi = ((co * cig + cg) * c.k[0] + kh) * c.k[1] + kw;
                                y[yi] += x[xi] * w[wi];
                                if let Some(go) = go {
                                    gi[xi] += go[yi] * w[wi];
                                    gw[wi] += go[yi] * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (y, o, gi, gw)
}

/// Reference transposed conv with weight `[Cin, Cout/g, kh, kw]`: (y, out size, grad_input, grad_weight).
fn conv_t_ref(
    c: Cfg,
    x: &[f64],
    w: &[f64],
    go: Option<&[f64]>,
) -> (Vec<f64>, [usize; 2], Vec<f64>, Vec<f64>) {
    let o =
        [0, 1].map(|i| (c.hw[i] - 1) * c.s[i] + c.d[i] * (c.k[i] - 1) + c.op[i] + 1 - 2 * c.p[i]);
    let (cig, cog) = (c.cin / c.g, c.cout / c.g);
    let mut y = vec![0.0; c.n * c.cout * o[0] * o[1]];
    let mut gi = vec![0.0; x.len()];
    let mut gw = vec![0.0; w.len()];
    for n in 0..c.n {
        for ci in 0..c.cin {
            for ih in 0..c.hw[0] {
                for iw in 0..c.hw[1] {
                    let xi = ((n * c.cin + ci) * c.hw[0] + ih) * c.hw[1] + iw;
                    for cg in 0..cog {
                        let co = (ci / cig) * cog + cg;
                        for kh in 0..c.k[0] {
                            for kw in 0..c.k[1] {
                                let h = (ih * c.s[0] + kh * c.d[0]) as i64 - c.p[0] as i64;
                                let ww = (iw * c.s[1] + kw * c.d[1]) as i64 - c.p[1] as i64;
                                if h < 0 || ww < 0 || h >= o[0] as i64 || ww >= o[1] as i64 {
                                    continue;
                                }
                                let yi =
                                    ((n * c.cout + co) * o[0] + h as usize) * o[1] + ww as usize;
                                let wi = ((ci * cog + cg) * c.k[0] + kh) * c.k[1] + kw;
                                y[yi] += x[xi] * w[wi];
                                if let Some(go) = go {
                                    gi[xi] += go[yi] * w[wi];
                                    gw[wi] += go[yi] * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (y, o, gi, gw)
}

fn check_conv(c: Cfg, transposed: bool) {
    let x = T::rand(
        DType::F32,
        &[c.n as i64, c.cin as i64, c.hw[0] as i64, c.hw[1] as i64],
        1,
    );
    let wshape = if transposed {
        [
            c.cin as i64,
            (c.cout / c.g) as i64,
            c.k[0] as i64,
            c.k[1] as i64,
        ]
    } else {
        [
            c.cout as i64,
            (c.cin / c.g) as i64,
            c.k[0] as i64,
            c.k[1] as i64,
        ]
    };
    let w = T::rand(DType::F32, &wshape, 2);
    let bias = T::rand(DType::F32, &[c.cout as i64], 3);
    let reference = if transposed { conv_t_ref } else { conv_ref };
    let (y, o, _, _) = reference(c, &x.data, &w.data, None);
    let oshape = [c.n as i64, c.cout as i64, o[0] as i64, o[1] as i64];
    let plane = o[0] * o[1];
    let want: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v + bias.data[(i / plane) % c.cout])
        .collect();
    let geom = |v: &[tpu_graph::ValueId], with_bias: bool| {
        let mut a = vec![t(v[0]), t(v[1])];
        a.push(if with_bias { t(v[2]) } else { Arg::None });
        a.extend([
            ints(&[c.s[0] as i64, c.s[1] as i64]),
            ints(&[c.p[0] as i64, c.p[1] as i64]),
        ]);
        a.extend([
            ints(&[c.d[0] as i64, c.d[1] as i64]),
            b(transposed),
            ints(&[c.op[0] as i64, c.op[1] as i64]),
        ]);
        a.push(int(c.g as i64));
        a
    };
    let r = run("convolution", &[x.clone(), w.clone(), bias.clone()], |v| {
        geom(v, true)
    });
    close(&r[0], &oshape, &want, 1e-4);

    let go = T::rand(DType::F32, &oshape, 4);
    let (_, _, gi, gw) = reference(c, &x.data, &w.data, Some(&go.data));
    let gb: Vec<f64> = (0..c.cout)
        .map(|co| {
            go.data
                .iter()
                .enumerate()
                .filter(|(i, _)| (i / plane) % c.cout == co)
                .map(|(_, v)| v)
                .sum()
        })
        .collect();
    let r = run(
        "convolution_backward",
        &[go.clone(), x.clone(), w.clone()],
        |v| {
            let mut a = vec![t(v[0]), t(v[1]), t(v[2]), ints(&[c.cout as i64])];
            a.extend(geom(v, false).into_iter().skip(3));
            a.push(Arg::Bools(vec![true, true, true]));
            a
        },
    );
    close(&r[0], &x.shape, &gi, 1e-4);
    close(&r[1], &wshape, &gw, 1e-4);
    close(&r[2], &[c.cout as i64], &gb, 1e-4);
    // Masked-off outputs still come back with the right shapes.
    let r = run(
        "convolution_backward_overrideable",
        &[go, x.clone(), w],
        |v| {
            let mut a = vec![t(v[0]), t(v[1]), t(v[2])];
            a.extend(geom(v, false).into_iter().skip(3));
            a.push(Arg::Bools(vec![false, true, false]));
            a
        },
    );
    assert_eq!(r[0].shape, x.shape);
    assert!(r[0].data.iter().all(|&v| v == 0.0));
    close(&r[1], &wshape, &gw, 1e-4);
    assert_eq!(r[2].shape, vec![c.cout as i64]);
}

#[test]
fn conv2d_stride_padding() {
    let c = Cfg {
        n: 2,
        cin: 3,
        cout: 4,
        hw: [5, 6],
        k: [3, 2],
        s: [2, 1],
        p: [1, 1],
        d: [1, 1],
        g: 1,
        op: [0, 0],
    };
    check_conv(c, false);
}

#[test]
fn conv2d_dilation_groups_dropped_rows() {
    let c = Cfg {
        n: 1,
        cin: 4,
        cout: 6,
        hw: [7, 6],
        k: [2, 3],
        s: [3, 2],
        p: [0, 2],
        d: [2, 1],
        g: 2,
        op: [0, 0],
    };
    check_conv(c, false);
}

#[test]
fn conv_transpose2d() {
    let c = Cfg {
        n: 2,
        cin: 4,
        cout: 2,
        hw: [3, 4],
        k: [3, 3],
        s: [2, 2],
        p: [1, 0],
        d: [1, 2],
        g: 2,
        op: [1, 0],
    };
    check_conv(c, true);
}

#[test]
fn conv1d_via_convolution() {
    // [N, C, L] with padding given as one entry, as F.conv1d passes it.
    let x = T::f32(&[1, 1, 4], &[1., 2., 3., 4.]);
    let w = T::f32(&[1, 1, 2], &[1., -1.]);
    let r = run("convolution", &[x, w], |v| {
        vec![
            t(v[0]),
            t(v[1]),
            Arg::None,
            ints(&[1]),
            ints(&[1]),
            ints(&[1]),
            b(false),
            ints(&[0]),
            int(1),
        ]
    });
    close(&r[0], &[1, 1, 5], &[-1., -1., -1., -1., 4.], 0.0);
}

/// Reference max pool on one [H, W] plane: (values, flat indices), PyTorch semantics.
#[allow(clippy::too_many_arguments)]
fn pool_ref(
    x: &[f64],
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    ceil: bool,
) -> (Vec<f64>, Vec<f64>, usize, usize) {
    let out = |n: usize| {
        let span = n + 2 * p - d * (k - 1) - 1;
        let mut o = if ceil {
            span.div_ceil(s) + 1
        } else {
            span / s + 1
        };
        if ceil && (o - 1) * s >= n + p {
            o -= 1;
        }
        o
    };
    let (oh, ow) = (out(h), out(w));
    let (mut vals, mut idx) = (Vec::new(), Vec::new());
    for i in 0..oh {
        for j in 0..ow {
            let (mut best, mut bi) = (f64::NEG_INFINITY, -1i64);
            for a in 0..k {
                for bb in 0..k {
                    let hh = (i * s + a * d) as i64 - p as i64;
                    let ww = (j * s + bb * d) as i64 - p as i64;
                    if hh < 0 || ww < 0 || hh >= h as i64 || ww >= w as i64 {
                        continue;
                    }
                    let v = x[hh as usize * w + ww as usize];
                    if v > best || bi < 0 {
                        best = v;
                        bi = hh * w as i64 + ww;
                    }
                }
            }
            vals.push(best);
            idx.push(bi as f64);
        }
    }
    (vals, idx, oh, ow)
}

#[test]
fn max_pool2d_indices_and_backward() {
    for &(h, w, k, s, p, d, ceil) in &[
        (4usize, 4usize, 2usize, 2usize, 0usize, 1usize, false),
        (5, 6, 3, 2, 1, 1, false),
        (5, 5, 2, 2, 0, 1, true),
        (7, 6, 2, 1, 1, 2, false),
        (6, 6, 3, 2, 1, 1, true),
    ] {
        let x = T::rand(DType::F32, &[2, 1, h as i64, w as i64], (h * 10 + k) as u64);
        let args = |v: &[tpu_graph::ValueId]| {
            vec![
                t(v[0]),
                ints(&[k as i64, k as i64]),
                ints(&[s as i64]),
                ints(&[p as i64]),
                ints(&[d as i64]),
                b(ceil),
            ]
        };
        let r = run("max_pool2d_with_indices", &[x.clone()], args);
        let (mut vals, mut idx) = (Vec::new(), Vec::new());
        let (mut oh, mut ow) = (0, 0);
        for plane in 0..2 {
            let (v, i, a, bb) = pool_ref(
                &x.data[plane * h * w..(plane + 1) * h * w],
                h,
                w,
                k,
                s,
                p,
                d,
                ceil,
            );
            vals.extend(v);
            idx.extend(i);
            (oh, ow) = (a, bb);
        }
        let oshape = [2, 1, oh as i64, ow as i64];
        close(&r[0], &oshape, &vals, 0.0);
        assert_eq!(r[1].dtype, DType::I64);
        close(&r[1], &oshape, &idx, 0.0);

        let go = T::rand(DType::F32, &oshape, 5);
        let ind = r[1].clone();
        let rb = run(
            "max_pool2d_with_indices_backward",
            &[go.clone(), x.clone(), ind],
            |v| {
                vec![
                    t(v[0]),
                    t(v[1]),
                    ints(&[k as i64]),
                    ints(&[s as i64]),
                    ints(&[p as i64]),
                    ints(&[d as i64]),
                    b(ceil),
                    t(v[2]),
                ]
            },
        );
        let mut want = vec![0.0; x.data.len()];
        for (o, (&g, &i)) in go.data.iter().zip(&idx).enumerate() {
            let plane = o / (oh * ow);
            want[plane * h * w + i as usize] += g;
        }
        close(&rb[0], &x.shape, &want, 1e-6);
    }
}

#[test]
fn max_pool2d_nan_propagates() {
    let x = T::f32(&[1, 2, 2], &[1., f64::NAN, 3., 2.]);
    let r = run("max_pool2d_with_indices", &[x], |v| {
        vec![
            t(v[0]),
            ints(&[2, 2]),
            ints(&[]),
            ints(&[0]),
            ints(&[1]),
            b(false),
        ]
    });
    assert!(r[0].data[0].is_nan());
    close(&r[1], &[1, 1, 1], &[1.], 0.0);
}

#[test]
fn avg_pool2d_and_backward() {
    let x = T::range(DType::F32, &[1, 1, 3, 3], 1.0, 1.0);
    // k=2, s=2, p=1: corners see 1 real element; with count_include_pad they divide by 4.
    let r = run("avg_pool2d", &[x.clone()], |v| {
        vec![
            t(v[0]),
            ints(&[2]),
            ints(&[2]),
            ints(&[1]),
            b(false),
            b(true),
            Arg::None,
        ]
    });
    close(
        &r[0],
        &[1, 1, 2, 2],
        &[
            0.25,
            (2. + 3.) / 4.,
            (4. + 7.) / 4.,
            (5. + 6. + 8. + 9.) / 4.,
        ],
        1e-6,
    );
    let r = run("avg_pool2d", &[x.clone()], |v| {
        vec![
            t(v[0]),
            ints(&[2]),
            ints(&[2]),
            ints(&[1]),
            b(false),
            b(false),
            Arg::None,
        ]
    });
    close(&r[0], &[1, 1, 2, 2], &[1., 2.5, 5.5, 7.], 1e-6);
    // ceil_mode: the last window is partial and divides by its in-bounds size.
    let r = run("avg_pool2d", &[x.clone()], |v| {
        vec![
            t(v[0]),
            ints(&[2]),
            ints(&[2]),
            ints(&[0]),
            b(true),
            b(true),
            Arg::None,
        ]
    });
    close(&r[0], &[1, 1, 2, 2], &[3., 4.5, 7.5, 9.], 1e-6);
    let r = run("avg_pool2d", &[x.clone()], |v| {
        vec![
            t(v[0]),
            ints(&[2]),
            ints(&[1]),
            ints(&[0]),
            b(false),
            b(true),
            int(2),
        ]
    });
    close(&r[0], &[1, 1, 2, 2], &[6., 8., 12., 14.], 1e-6);
    let go = T::f32(&[1, 1, 2, 2], &[4., 8., 12., 16.]);
    let r = run("avg_pool2d_backward", &[go, x], |v| {
        vec![
            t(v[0]),
            t(v[1]),
            ints(&[2]),
            ints(&[1]),
            ints(&[0]),
            b(false),
            b(true),
            Arg::None,
        ]
    });
    close(
        &r[0],
        &[1, 1, 3, 3],
        &[1., 3., 2., 4., 10., 6., 3., 7., 4.],
        1e-6,
    );
}
