//! Scaled dot-product attention as CPU's flash kernel exposes it:
//! `_scaled_dot_product_flash_attention_for_cpu` → (output, logsumexp) and
//! its backward. One full `[B, H, L, S]` score matrix (XLA fuses the
//! softmax); half inputs compute in f32, logsumexp stays in f32 as on CPU.

use crate::operands::{bin, k, opmath, un, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, DType, DotDims, ReduceKind as R, UnaryKind as U, ValueId,
};

/// `a [.., m, k] x b [.., n, k]` contracted on the last dims (`b` transposed) when
/// `bt`, else `a [.., m, k] x b [.., k, n]`; rank-4 operands with equal batch dims.
fn mm(c: &mut LowerCtx, a: ValueId, b: ValueId, at: bool, bt: bool) -> Result<ValueId> {
    let dims = DotDims {
        lhs_batch: vec![0, 1],
        rhs_batch: vec![0, 1],
        lhs_contract: vec![if at { 2 } else { 3 }],
        rhs_contract: vec![if bt { 3 } else { 2 }],
    };
    Ok(c.g.dot(a, b, dims)?)
}

/// Inputs `(q, k, v)` of `[B, H, L|S, E]` in opmath, with the input dtype.
struct Qkv {
    q: ValueId,
    k: ValueId,
    v: ValueId,
    d: DType,
}

fn qkv(c: &mut LowerCtx, a: &Args, at: usize) -> Result<Qkv> {
    let (q, kk, v) = (a.t(at)?, a.t(at + 1)?, a.t(at + 2)?);
    let (sq, sk, sv) = (
        c.g.shape(q).to_vec(),
        c.g.shape(kk).to_vec(),
        c.g.shape(v).to_vec(),
    );
    let fits = sq.len() == 4
        && sk.len() == 4
        && sv.len() == 4
        && sq[..2] == sk[..2]
        && sk[..3] == sv[..3]
        && sq[3] == sk[3];
    if !fits {
        bail!("scaled_dot_product_flash_attention: expected query [B, H, L, E], key [B, H, S, E] and value [B, H, S, Ev], got {sq:?}, {sk:?}, {sv:?}");
    }
    let d = c.g.dtype(q);
    if !d.is_float() || c.g.dtype(kk) != d || c.g.dtype(v) != d {
        bail!(
            "scaled_dot_product_flash_attention: expected query, key and value of one floating dtype, got {d}, {}, {}",
            c.g.dtype(kk),
            c.g.dtype(v)
        );
    }
    let w = opmath(d);
    Ok(Qkv {
        q: c.g.convert(q, w),
        k: c.g.convert(kk, w),
        v: c.g.convert(v, w),
        d,
    })
}

/// Scaled scores `q k^T scale` with the causal (top-left) and user masks
/// applied: `[B, H, L, S]`. Arguments `dropout_p, is_causal` at `at`, then
/// `attn_mask?, scale?`.
fn scores(c: &mut LowerCtx, a: &Args, t: &Qkv, at: usize) -> Result<ValueId> {
    if a.float(at)? != 0.0 {
        bail!(
            "scaled_dot_product_flash_attention (cpu): dropout_p must be 0, got {}",
            a.float(at)?
        );
    }
    let e = c.g.shape(t.q)[3];
    let scale = if a.has(at + 3) {
        a.float(at + 3)?
    } else {
        1.0 / (e as f64).sqrt()
    };
    let s = mm(c, t.q, t.k, false, true)?;
    let s = c.g.mul_const(s, scale)?;
    let shape = c.g.shape(s).to_vec();
    let ninf = k(c, s, f64::NEG_INFINITY);
    let mut s = s;
    if a.bool(at + 1)? {
        let row = c.g.iota(DType::I64, &shape, 2)?;
        let col = c.g.iota(DType::I64, &shape, 3)?;
        let future = c.g.compare(CmpDir::Gt, col, row)?;
        s = c.g.select(future, ninf, s)?;
    }
    if let Some(m) = a.opt_t(at + 2)? {
        let ms = c.g.shape(m).to_vec();
        if crate::operands::broadcast_shapes(&ms, &shape)? != shape {
            bail!("scaled_dot_product_flash_attention: attn_mask {ms:?} does not broadcast to {shape:?}");
        }
        s = if c.g.dtype(m) == DType::Bool {
            let keep = c.g.broadcast_to(m, &shape)?;
            c.g.select(keep, s, ninf)?
        } else {
            c.g.binary_bcast(B::Add, s, m, c.g.dtype(s))?
        };
    }
    Ok(s)
}

/// `_scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, *, attn_mask?, scale?)`.
fn flash_attention(c: &mut LowerCtx, a: &Args) -> Out {
    let t = qkv(c, a, 0)?;
    let s = scores(c, a, &t, 3)?;
    let shape = c.g.shape(s).to_vec();
    let m = c.g.reduce(R::Max, s, &[3])?;
    // Fully masked rows: shift by 0 instead of -inf (their sum is 0).
    let fin = un(c, U::IsFinite, m)?;
    let zero = k(c, m, 0.0);
    let m = c.g.select(fin, m, zero)?;
    let mb = c.g.broadcast_in_dim(m, &shape, &[0, 1, 2])?;
    let p = bin(c, B::Sub, s, mb)?;
    let p = un(c, U::Exp, p)?;
    let sum = c.g.reduce(R::Sum, p, &[3])?;
    let lse = un(c, U::Log, sum)?;
    let lse = bin(c, B::Add, lse, m)?;
    let sb = c.g.broadcast_in_dim(sum, &shape, &[0, 1, 2])?;
    let p = bin(c, B::Div, p, sb)?;
    let o = mm(c, p, t.v, false, false)?;
    let ld = if t.d == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    Ok(vec![c.g.convert(o, t.d), c.g.convert(lse, ld)])
}

/// `..._backward(grad_out, q, k, v, out, logsumexp, dropout_p, is_causal, *, attn_mask?, scale?)`:
/// `P = exp(S - lse)`, `dV = P^T dO`, `dS = P (dO V^T - rowsum(dO O))`,
/// `dQ = dS K scale`, `dK = dS^T Q scale`.
fn flash_attention_backward(c: &mut LowerCtx, a: &Args) -> Out {
    let t = qkv(c, a, 1)?;
    let w = c.g.dtype(t.q);
    let go = c.g.convert(a.t(0)?, w);
    let o = c.g.convert(a.t(4)?, w);
    let lse = c.g.convert(a.t(5)?, w);
    let s = scores(c, a, &t, 6)?;
    let shape = c.g.shape(s).to_vec();
    let (osh, lsh) = (c.g.shape(o).to_vec(), c.g.shape(lse).to_vec());
    if c.g.shape(go) != osh.as_slice() || osh[..3] != shape[..3] || lsh != shape[..3] {
        bail!("scaled_dot_product_flash_attention_backward: grad_out {:?}, out {osh:?} and logsumexp {lsh:?} do not match scores {shape:?}", c.g.shape(go));
    }
    let lb = c.g.broadcast_in_dim(lse, &shape, &[0, 1, 2])?;
    let p = bin(c, B::Sub, s, lb)?;
    let p = un(c, U::Exp, p)?;
    let gv = mm(c, p, go, true, false)?;
    let dp = mm(c, go, t.v, false, true)?;
    let dd = bin(c, B::Mul, go, o)?;
    let dd = c.g.reduce(R::Sum, dd, &[3])?;
    let dd = c.g.broadcast_in_dim(dd, &shape, &[0, 1, 2])?;
    let ds = bin(c, B::Sub, dp, dd)?;
    let ds = bin(c, B::Mul, p, ds)?;
    let e = c.g.shape(t.q)[3];
    let scale = if a.has(9) {
        a.float(9)?
    } else {
        1.0 / (e as f64).sqrt()
    };
    let ds = c.g.mul_const(ds, scale)?;
    let gq = mm(c, ds, t.k, false, false)?;
    let gk = mm(c, ds, t.q, true, false)?;
    Ok(vec![
        c.g.convert(gq, t.d),
        c.g.convert(gk, t.d),
        c.g.convert(gv, t.d),
    ])
}

pub fn register(r: &mut Registry) {
    r.add(
        &["_scaled_dot_product_flash_attention_for_cpu"],
        flash_attention,
    );
    r.add(
        &["_scaled_dot_product_flash_attention_for_cpu_backward"],
        flash_attention_backward,
    );
}
