//! Connectionist temporal classification: `_ctc_loss` (→ negative log
//! likelihood `[N]`, log alpha `[N, T, 2 S + 1]`) and `_ctc_loss_backward`.
//! Lengths are host lists, so per-sample masks are static. The alpha (and,
//! backward, beta) recursion runs over time on all samples at once, over
//! the extended label sequence `blank, l1, blank, l2, ..., blank`:
//! `a[t, s] = lp[t, l'_s] + lse(a[t-1, s], a[t-1, s-1], a[t-1, s-2] if l'_s != l'_{s-2})`,
//! as a StableHLO `while` over time ([`crate::loops`]).

use crate::loops::fori_loop;
use crate::operands::{bin, cmp, cmp_k, k, opmath, un, Out};
use crate::registry::{Args, CheckKind, LowerCtx, Registry};
use crate::rows::take_rows;
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, ReduceKind as R, UnaryKind as U, ValueId,
};

/// The problem: log probs `[T, N, C]` in opmath, extended labels `[N, L]`,
/// gathered log probs `lpe [T, N, L]`, the skip mask `[N, L]` and lengths.
struct Ctc {
    lp: ValueId,
    lpe: ValueId,
    labels: ValueId,
    skip: ValueId,
    input_lengths: Vec<i64>,
    target_lengths: Vec<i64>,
    d: DType,
}

/// `[N]` int64 vector of host numbers.
fn host_vector(c: &mut LowerCtx, v: &[i64]) -> Result<ValueId> {
    let parts: Vec<ValueId> = v
        .iter()
        .map(|&x| c.g.constant(ConstVal::Int(x), DType::I64, &[1]))
        .collect();
    if parts.is_empty() {
        return Ok(c.g.constant(ConstVal::Int(0), DType::I64, &[0]));
    }
    Ok(c.g.concatenate(&parts, 0)?)
}

fn setup(c: &mut LowerCtx, a: &Args, at: usize, blank: i64) -> Result<Ctc> {
    let what = "ctc_loss";
    let (lp0, tg) = (a.t(at)?, a.t(at + 1)?);
    let (il, tl) = (a.ints(at + 2)?, a.ints(at + 3)?);
    let ls = c.g.shape(lp0).to_vec();
    if ls.len() != 3 {
        bail!("{what}: log_probs must be 3-D (T, N, C), got {ls:?}");
    }
    let (t, n, nc) = (ls[0], ls[1], ls[2]);
    if il.len() as i64 != n || tl.len() as i64 != n {
        bail!(
            "{what}: input_lengths must be of size batch_size ({n}), got {} and target_lengths {}",
            il.len(),
            tl.len()
        );
    }
    if blank < 0 || blank >= nc {
        bail!("{what}: blank must be in label range, got {blank} for {nc} classes");
    }
    if let Some(&bad) = il.iter().find(|&&l| l < 0 || l > t) {
        bail!("{what}: Expected input_lengths to have value at most {t}, but got value {bad}");
    }
    if let Some(&bad) = tl.iter().find(|&&l| l < 0) {
        bail!("{what}: target lengths must be non-negative, got {bad}");
    }
    let d = c.g.dtype(lp0);
    if !d.is_float() {
        bail!("{what}: log_probs must be floating point, got {d}");
    }
    c.require_index_dtype(tg, what)?;
    let smax = tl.iter().copied().max().unwrap_or(0);
    let l = 2 * smax + 1;
    // Flat position of target k of sample n: padded rows, or concatenated.
    let tgs = c.g.shape(tg).to_vec();
    let starts: Vec<i64> = if tgs.len() == 2 {
        if tgs[0] != n || tgs[1] < smax {
            bail!("{what}: targets {tgs:?} should be [{n}, >= {smax}]");
        }
        (0..n).map(|i| i * tgs[1]).collect()
    } else if tgs.len() == 1 {
        let total: i64 = tl.iter().sum();
        if tgs[0] < total {
            bail!(
                "{what}: targets of {} entries but target lengths sum to {total}",
                tgs[0]
            );
        }
        tl.iter()
            .scan(0, |s, &x| {
                let o = *s;
                *s += x;
                Some(o)
            })
            .collect()
    } else {
        bail!("{what}: targets must be 1-D or 2-D, got {tgs:?}");
    };
    let tflat = c.g.convert(tg, DType::I64);
    let tflat = c.g.reshape(tflat, &[c.g.ty(tg).numel()])?;
    let sv = host_vector(c, &starts)?;
    let lv = host_vector(c, &tl)?;
    let s_idx = c.g.iota(DType::I64, &[n, l], 1)?;
    let kk = c.g.binary_const(B::Div, s_idx, 2.0)?;
    let lb = c.g.broadcast_in_dim(lv, &[n, l], &[0])?;
    let odd = c.g.binary_const(B::Rem, s_idx, 2.0)?;
    let odd = cmp_k(c, CmpDir::Eq, odd, 1.0)?;
    let real = cmp(c, CmpDir::Lt, kk, lb)?;
    let real = bin(c, B::And, odd, real)?;
    let sb = c.g.broadcast_in_dim(sv, &[n, l], &[0])?;
    let pos = bin(c, B::Add, sb, kk)?;
    let zero = k(c, pos, 0.0);
    let pos = c.g.select(real, pos, zero)?;
    let lab = if c.g.ty(tflat).numel() == 0 {
        zero
    } else {
        take_rows(c, tflat, pos)?
    };
    let blank_v = k(c, lab, blank as f64);
    let labels = c.g.select(real, lab, blank_v)?;
    c.check_range(
        labels,
        (0, nc),
        CheckKind::Runtime,
        format!("{what}: target {{}} out of range"),
    )?;
    // Skip s-2 -> s for real labels differing from the previous one.
    let m1 = c.g.constant(ConstVal::Int(-1), DType::I64, &[]);
    let prev = c.g.pad(labels, m1, &[0, 2], &[0, -2], &[0, 0])?;
    let differs = cmp(c, CmpDir::Ne, labels, prev)?;
    let skip = bin(c, B::And, real, differs)?;
    // lpe[t, n, s] = lp[t, n, labels[n, s]], gathered from the flat log probs.
    let lp = c.g.convert(lp0, opmath(d));
    let flat = c.g.reshape(lp, &[t * n * nc])?;
    let tt = c.g.iota(DType::I64, &[t, n, l], 0)?;
    let nn = c.g.iota(DType::I64, &[t, n, l], 1)?;
    let row = c.g.mul_const(tt, n as f64)?;
    let row = bin(c, B::Add, row, nn)?;
    let row = c.g.mul_const(row, nc as f64)?;
    let lab3 = c.g.broadcast_in_dim(labels, &[t, n, l], &[1, 2])?;
    let gi = bin(c, B::Add, row, lab3)?;
    let lpe = take_rows(c, flat, gi)?;
    Ok(Ctc {
        lp,
        lpe,
        labels,
        skip,
        input_lengths: il,
        target_lengths: tl,
        d,
    })
}

/// `x [N, L]` shifted by `by` along s (positive: towards higher s), filled with `fill`.
fn shift(c: &mut LowerCtx, x: ValueId, by: i64, fill: ValueId) -> Result<ValueId> {
    Ok(c.g.pad(x, fill, &[0, by], &[0, -by], &[0, 0])?)
}

/// `log(exp(a) + exp(b) + exp(c))` with all-`-inf` giving `-inf`.
fn lse3(c: &mut LowerCtx, xs: [ValueId; 3]) -> Result<ValueId> {
    let m = bin(c, B::Max, xs[0], xs[1])?;
    let m = bin(c, B::Max, m, xs[2])?;
    let fin = un(c, U::IsFinite, m)?;
    let zero = k(c, m, 0.0);
    let m = c.g.select(fin, m, zero)?;
    let mut s = zero;
    for x in xs {
        let e = bin(c, B::Sub, x, m)?;
        let e = un(c, U::Exp, e)?;
        s = bin(c, B::Add, s, e)?;
    }
    let l = un(c, U::Log, s)?;
    bin(c, B::Add, l, m)
}

/// One recursion step: `lp_t + lse(prev, prev shifted 1, prev shifted 2 where skip)`.
fn step(
    c: &mut LowerCtx,
    prev: ValueId,
    lp_t: ValueId,
    skip: ValueId,
    dir: i64,
) -> Result<ValueId> {
    let ninf = c.g.scalar(f64::NEG_INFINITY, c.g.dtype(prev));
    let p1 = shift(c, prev, dir, ninf)?;
    let p2 = shift(c, prev, 2 * dir, ninf)?;
    let ninf_full = k(c, prev, f64::NEG_INFINITY);
    let p2 = c.g.select(skip, p2, ninf_full)?;
    let s = lse3(c, [prev, p1, p2])?;
    bin(c, B::Add, s, lp_t)
}

/// `[N, L]` bool: `s < 2 S_n + 1` (and, with `last`, `s >= 2 S_n - 1`, the final states).
fn state_mask(c: &mut LowerCtx, p: &Ctc, last: bool) -> Result<ValueId> {
    let sh = c.g.shape(p.labels).to_vec();
    let lv = host_vector(c, &p.target_lengths)?;
    let lv = c.g.mul_const(lv, 2.0)?;
    let lb = c.g.broadcast_in_dim(lv, &sh, &[0])?;
    let s = c.g.iota(DType::I64, &sh, 1)?;
    let m = cmp(c, CmpDir::Le, s, lb)?;
    if !last {
        return Ok(m);
    }
    let lo = c.g.binary_const(B::Sub, lb, 1.0)?;
    let ge = cmp(c, CmpDir::Ge, s, lo)?;
    bin(c, B::And, m, ge)
}

/// All `[T, N, L]` values of one recursion (alpha forwards, or with
/// `backward` beta backwards in time), as one StableHLO `while` over time.
/// Sample `n` starts at time `st[n]` with `lpe` on the `init` states, steps
/// elsewhere, and is `-inf` from its input length on.
fn recursion(c: &mut LowerCtx, p: &Ctc, backward: bool) -> Result<ValueId> {
    let [t_max, n, l] = [
        c.g.shape(p.lpe)[0],
        c.g.shape(p.lpe)[1],
        c.g.shape(p.lpe)[2],
    ];
    let acc = c.g.dtype(p.lpe);
    let valid = state_mask(c, p, false)?;
    let init = if backward {
        state_mask(c, p, true)?
    } else {
        let s = c.g.iota(DType::I64, &[n, l], 1)?;
        let first = cmp_k(c, CmpDir::Le, s, 1.0)?;
        bin(c, B::And, first, valid)?
    };
    let skip = if backward {
        // Beta's skip s -> s + 2 is alpha's s + 2 -> s.
        let no = c.g.scalar(0.0, DType::Bool);
        c.g.pad(p.skip, no, &[0, -2], &[0, 2], &[0, 0])?
    } else {
        p.skip
    };
    let lens = host_vector(c, &p.input_lengths)?;
    let lens = c.g.broadcast_in_dim(lens, &[n, l], &[0])?;
    let st = if backward {
        c.g.binary_const(B::Sub, lens, 1.0)?
    } else {
        c.g.full_like(lens, 0.0, DType::I64)
    };
    let prev = c.g.full_like(valid, f64::NEG_INFINITY, acc);
    let all = c.g.full_like(p.lpe, f64::NEG_INFINITY, acc);
    let dir = if backward { -1 } else { 1 };
    let body = move |bc: &mut LowerCtx, i: ValueId, v: &[ValueId]| -> Result<Vec<ValueId>> {
        let &[prev, all, lpe, skip, valid, init, st, lens] = v else {
            bail!("ctc_loss: loop carry of {} values", v.len());
        };
        let t = if backward {
            let last = bc.g.scalar((t_max - 1) as f64, DType::I64);
            bc.g.binary(B::Sub, last, i)?
        } else {
            i
        };
        let zero = bc.g.scalar(0.0, DType::I64);
        let lp_t = bc.g.dynamic_slice(lpe, &[t, zero, zero], &[1, n, l])?;
        let lp_t = bc.g.reshape(lp_t, &[n, l])?;
        let stepped = step(bc, prev, lp_t, skip, dir)?;
        let ninf = k(bc, lp_t, f64::NEG_INFINITY);
        let first = bc.g.select(init, lp_t, ninf)?;
        let tb = bc.g.broadcast_to(t, &[n, l])?;
        let start = cmp(bc, CmpDir::Eq, st, tb)?;
        let after = cmp(bc, CmpDir::Le, lens, tb)?;
        let x = bc.g.select(start, first, stepped)?;
        let x = bc.g.select(after, ninf, x)?;
        let x = bc.g.select(valid, x, ninf)?;
        let row = bc.g.reshape(x, &[1, n, l])?;
        let all = bc.g.dynamic_update_slice(all, row, &[t, zero, zero])?;
        Ok(vec![x, all, lpe, skip, valid, init, st, lens])
    };
    let name = if backward { "ctc_beta" } else { "ctc_alpha" };
    let carry = [prev, all, p.lpe, skip, valid, init, st, lens];
    let out = fori_loop(c, name, t_max, &carry, &body)?;
    Ok(out[1])
}

/// Per-sample `[N, L]` values of `all [T, N, L]` at each sample's own time `T_n - 1`.
fn at_last_time(c: &mut LowerCtx, all: ValueId, p: &Ctc) -> Result<ValueId> {
    let sh = c.g.shape(all).to_vec();
    let lens = host_vector(c, &p.input_lengths)?;
    let lens = c.g.broadcast_in_dim(lens, &sh, &[1])?;
    let t = c.g.iota(DType::I64, &sh, 0)?;
    let t1 = c.g.binary_const(B::Add, t, 1.0)?;
    let here = cmp(c, CmpDir::Eq, t1, lens)?;
    let ninf = k(c, all, f64::NEG_INFINITY);
    let x = c.g.select(here, all, ninf)?;
    Ok(c.g.reduce(R::Max, x, &[0])?)
}

/// Log-sum-exp over s of `x [N, L]` where `mask`.
fn lse_masked(c: &mut LowerCtx, x: ValueId, mask: ValueId, dim: i64) -> Result<ValueId> {
    let ninf = k(c, x, f64::NEG_INFINITY);
    let x = c.g.select(mask, x, ninf)?;
    let m = c.g.reduce(R::Max, x, &[dim])?;
    let fin = un(c, U::IsFinite, m)?;
    let zero = k(c, m, 0.0);
    let m = c.g.select(fin, m, zero)?;
    let sh = c.g.shape(x).to_vec();
    let keep: Vec<i64> = (0..sh.len() as i64).filter(|&i| i != dim).collect();
    let mb = c.g.broadcast_in_dim(m, &sh, &keep)?;
    let e = bin(c, B::Sub, x, mb)?;
    let e = un(c, U::Exp, e)?;
    let s = c.g.reduce(R::Sum, e, &[dim])?;
    let l = un(c, U::Log, s)?;
    bin(c, B::Add, l, m)
}

/// `-log p(target)`, `[N]`; an empty input has likelihood 1 for an empty
/// target and 0 otherwise, as on CPU.
fn nll_of(c: &mut LowerCtx, alphas: ValueId, p: &Ctc) -> Result<ValueId> {
    let fin = at_last_time(c, alphas, p)?;
    let last = state_mask(c, p, true)?;
    let ll = lse_masked(c, fin, last, 1)?;
    let nll = un(c, U::Neg, ll)?;
    let empty: Vec<i64> = p
        .input_lengths
        .iter()
        .zip(&p.target_lengths)
        .map(|(&i, &t)| (i == 0 && t == 0) as i64)
        .collect();
    if !empty.contains(&1) {
        return Ok(nll);
    }
    let e = host_vector(c, &empty)?;
    let e = cmp_k(c, CmpDir::Eq, e, 1.0)?;
    let zero = k(c, nll, 0.0);
    Ok(c.g.select(e, zero, nll)?)
}

/// `_ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity)`.
fn ctc_loss(c: &mut LowerCtx, a: &Args) -> Out {
    let blank = a.int_or(4, 0)?;
    let p = setup(c, a, 0, blank)?;
    let t_max = c.g.shape(p.lpe)[0];
    if t_max == 0 {
        bail!("ctc_loss: log_probs with no time steps");
    }
    let al = recursion(c, &p, false)?;
    // Infinite losses stay: `ctc_loss` zeroes them after this op (zero_infinity).
    let nll = nll_of(c, al, &p)?;
    let la = c.g.transpose(al, &[1, 0, 2])?;
    Ok(vec![c.g.convert(nll, p.d), c.g.convert(la, p.d)])
}

/// `_ctc_loss_backward(grad, log_probs, targets, input_lengths, target_lengths, nll, log_alpha, blank, zero_infinity)`:
/// `exp(lp) - exp(lse_{s: l'_s = c}(alpha + beta) + nll - lp)`, times `grad`, zero past each input length.
fn ctc_loss_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let blank = a.int(7)?;
    let p = setup(c, a, 1, blank)?;
    let acc = c.g.dtype(p.lp);
    let [t_max, n, nc] = [c.g.shape(p.lp)[0], c.g.shape(p.lp)[1], c.g.shape(p.lp)[2]];
    let l = c.g.shape(p.labels)[1];
    let la = c.g.convert(a.t(6)?, acc);
    if c.g.shape(la) != [n, t_max, l] {
        bail!(
            "ctc_loss_backward: log_alpha {} should have shape [{n}, {t_max}, {l}]",
            c.g.ty(la)
        );
    }
    let nll = c.g.convert(a.t(5)?, acc);
    let g = c.g.convert(a.t(0)?, acc);
    let g = c.g.reshape(g, &[n])?;
    let lb = recursion(c, &p, true)?;
    let la = c.g.transpose(la, &[1, 0, 2])?;
    let ab = bin(c, B::Add, la, lb)?;
    // lse over the states s labelled c: [T, N, L, C] masked by the one-hot.
    let s4 = [t_max, n, l, nc];
    let cls = c.g.iota(DType::I64, &s4, 3)?;
    let lab = c.g.broadcast_in_dim(p.labels, &s4, &[1, 2])?;
    let hot = cmp(c, CmpDir::Eq, cls, lab)?;
    let ab4 = c.g.broadcast_in_dim(ab, &s4, &[0, 1, 2])?;
    let lcab = lse_masked(c, ab4, hot, 2)?;
    let nb = c.g.broadcast_in_dim(nll, &[t_max, n, nc], &[1])?;
    let e = bin(c, B::Add, lcab, nb)?;
    let e = bin(c, B::Sub, e, p.lp)?;
    let e = un(c, U::Exp, e)?;
    let pr = un(c, U::Exp, p.lp)?;
    let r = bin(c, B::Sub, pr, e)?;
    let gb = c.g.broadcast_in_dim(g, &[t_max, n, nc], &[1])?;
    let r = bin(c, B::Mul, r, gb)?;
    let zero = k(c, r, 0.0);
    let tt = c.g.iota(DType::I64, &[t_max, n, nc], 0)?;
    let lens = host_vector(c, &p.input_lengths)?;
    let lens = c.g.broadcast_in_dim(lens, &[t_max, n, nc], &[1])?;
    let mut keep = cmp(c, CmpDir::Lt, tt, lens)?;
    if a.bool_or(8, false)? {
        let fin = un(c, U::IsFinite, nb)?;
        keep = bin(c, B::And, keep, fin)?;
    }
    let r = c.g.select(keep, r, zero)?;
    Ok(vec![c.g.convert(r, p.d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["_ctc_loss", "_ctc_loss.out"], ctc_loss);
    r.add(
        &["_ctc_loss_backward", "_ctc_loss_backward.out"],
        ctc_loss_backward,
    );
}
