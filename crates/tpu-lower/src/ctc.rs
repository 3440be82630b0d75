//! Connectionist temporal classification: `_ctc_loss` (→ negative log
//! likelihood `[N]`, log alpha `[N, T, 2 S + 1]`) and `_ctc_loss_backward`.
//! Lengths are host lists, so per-sample masks are static. The alpha (and,
//! backward, beta) recursion runs over time on all samples at once, over
//! the extended label sequence `blank, l1, blank, l2, ..., blank`:
//! `a[t, s] = lp[t, l'_s] + lse(a[t-1, s], a[t-1, s-1], a[t-1, s-2] if l'_s != l'_{s-2})`.

use crate::registry::{Args, CheckKind, LowerCtx, Registry};
use crate::rows::take_rows;
use crate::special::{bin, cmp, cmp_k, k, un};
use crate::{bail, Result};
use tpu_graph::helpers::opmath;
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, ReduceKind as R, UnaryKind as U, ValueId,
};

type Out = Result<Vec<ValueId>>;

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

/// `lpe[t]`: `[N, L]`.
fn at_time(c: &mut LowerCtx, x: ValueId, t: i64) -> Result<ValueId> {
    let s = c.g.slice_dim(x, 0, t, t + 1)?;
    let sh = c.g.shape(s)[1..].to_vec();
    Ok(c.g.reshape(s, &sh)?)
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

/// Log alpha for all times, `[T, N, L]`.
fn alphas(c: &mut LowerCtx, p: &Ctc) -> Result<Vec<ValueId>> {
    let t_max = c.g.shape(p.lpe)[0];
    let valid = state_mask(c, p, false)?;
    let lp0 = at_time(c, p.lpe, 0)?;
    let sh = c.g.shape(p.labels).to_vec();
    let s = c.g.iota(DType::I64, &sh, 1)?;
    let first = cmp_k(c, CmpDir::Le, s, 1.0)?;
    let first = bin(c, B::And, first, valid)?;
    let ninf = k(c, lp0, f64::NEG_INFINITY);
    let mut a = c.g.select(first, lp0, ninf)?;
    let mut out = Vec::with_capacity(t_max as usize);
    out.push(a);
    for t in 1..t_max {
        let lp_t = at_time(c, p.lpe, t)?;
        a = step(c, a, lp_t, p.skip, 1)?;
        a = c.g.select(valid, a, ninf)?;
        out.push(a);
    }
    Ok(out)
}

/// Per-sample `[N]` values of `x_t [N, L]` at each sample's own time `T_n - 1`.
fn at_last_time(c: &mut LowerCtx, xs: &[ValueId], p: &Ctc) -> Result<ValueId> {
    let sh = c.g.shape(xs[0]).to_vec();
    let mut acc = k(c, xs[0], f64::NEG_INFINITY);
    let lens = host_vector(c, &p.input_lengths)?;
    let lens = c.g.broadcast_in_dim(lens, &sh, &[0])?;
    for (t, &x) in xs.iter().enumerate() {
        let here = cmp_k(c, CmpDir::Eq, lens, t as f64 + 1.0)?;
        acc = c.g.select(here, x, acc)?;
    }
    Ok(acc)
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
fn nll_of(c: &mut LowerCtx, alphas: &[ValueId], p: &Ctc) -> Result<ValueId> {
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
    let (n, l) = (c.g.shape(p.labels)[0], c.g.shape(p.labels)[1]);
    if t_max == 0 {
        bail!("ctc_loss: log_probs with no time steps");
    }
    let al = alphas(c, &p)?;
    let mut nll = nll_of(c, &al, &p)?;
    if a.bool_or(5, false)? {
        let inf = un(c, U::IsFinite, nll)?;
        let zero = k(c, nll, 0.0);
        nll = c.g.select(inf, nll, zero)?;
    }
    let parts: Vec<ValueId> = al
        .iter()
        .map(|&x| c.g.reshape(x, &[n, 1, l]))
        .collect::<std::result::Result<_, _>>()?;
    let la = c.g.concatenate(&parts, 1)?;
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
    // Beta backwards in time; each sample starts at its own last step.
    let valid = state_mask(c, &p, false)?;
    let last = state_mask(c, &p, true)?;
    let no = c.g.scalar(0.0, DType::Bool);
    let skip_b = c.g.pad(p.skip, no, &[0, -2], &[0, 2], &[0, 0])?;
    let lens = host_vector(c, &p.input_lengths)?;
    let lens = c.g.broadcast_in_dim(lens, &[n, l], &[0])?;
    let ninf = c.g.full_like(valid, f64::NEG_INFINITY, acc);
    let mut beta = ninf;
    let mut betas = vec![ninf; t_max as usize];
    for t in (0..t_max).rev() {
        let lp_t = at_time(c, p.lpe, t)?;
        let stepped = step(c, beta, lp_t, skip_b, -1)?;
        let init = c.g.select(last, lp_t, ninf)?;
        let start = cmp_k(c, CmpDir::Eq, lens, t as f64 + 1.0)?;
        let after = cmp_k(c, CmpDir::Le, lens, t as f64)?;
        let b = c.g.select(start, init, stepped)?;
        let b = c.g.select(after, ninf, b)?;
        beta = c.g.select(valid, b, ninf)?;
        betas[t as usize] = beta;
    }
    let parts: Vec<ValueId> = betas
        .iter()
        .map(|&x| c.g.reshape(x, &[1, n, l]))
        .collect::<std::result::Result<_, _>>()?;
    let lb = c.g.concatenate(&parts, 0)?;
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
