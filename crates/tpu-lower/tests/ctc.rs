//! `_ctc_loss`'s while-loop recursion against a brute-force sum over every
//! alignment path (small T and C, so all `C^T` paths can be enumerated).

mod common;

use common::*;

/// The labels a path collapses to: repeats merged, blanks dropped.
fn collapse(path: &[usize], blank: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev = None;
    for &p in path {
        if Some(p) != prev && p != blank {
            out.push(p);
        }
        prev = Some(p);
    }
    out
}

/// `-log sum_{paths -> target} prod_t p[t][path_t]` for one sample.
fn brute_nll(lp: &[Vec<f64>], target: &[usize], blank: usize) -> f64 {
    let (t_len, c) = (lp.len(), lp[0].len());
    let mut total = 0.0;
    for code in 0..c.pow(t_len as u32) {
        let mut k = code;
        let path: Vec<usize> = (0..t_len)
            .map(|_| {
                let v = k % c;
                k /= c;
                v
            })
            .collect();
        if collapse(&path, blank) == target {
            total += (0..t_len).map(|t| lp[t][path[t]]).sum::<f64>().exp();
        }
    }
    -total.ln()
}

#[test]
fn ctc_loss_matches_brute_force() {
    let (t_len, n, c) = (5usize, 2usize, 3usize);
    // Log-softmax of pseudo-random scores, laid out [T, N, C].
    let raw = T::rand(
        tpu_graph::DType::F32,
        &[t_len as i64, n as i64, c as i64],
        7,
    );
    let mut lp = raw.data.clone();
    for row in lp.chunks_mut(c) {
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        row.iter_mut().for_each(|v| *v -= lse);
    }
    // Sample 0: target [1, 1] over 5 steps; sample 1: target [2] over 3 steps.
    let targets = T::i64(&[2, 2], &[1., 1., 2., 0.]);
    let (il, tl) = ([5i64, 3], [2i64, 1]);
    let inputs = [T::f32(&raw.shape, &lp), targets];
    let r = run("_ctc_loss", &inputs, |v| {
        vec![t(v[0]), t(v[1]), ints(&il), ints(&tl), int(0), b(false)]
    });
    let sample = |b: usize, steps: usize| -> Vec<Vec<f64>> {
        (0..steps)
            .map(|t| lp[(t * n + b) * c..(t * n + b + 1) * c].to_vec())
            .collect()
    };
    let want = [
        brute_nll(&sample(0, 5), &[1, 1], 0),
        brute_nll(&sample(1, 3), &[2], 0),
    ];
    close(&r[0], &[2], &want, 1e-5);
    assert_eq!(r[1].shape, [2, 5, 5], "log_alpha [N, T, 2 S + 1]");
}
