//! Matrix functions: `linalg_matrix_exp` by scaling and squaring, as
//! PyTorch's CPU kernel does (its approximant is a Taylor polynomial too):
//! each matrix is scaled by an exact power of two `2^-s` so that its 1-norm
//! is at most 1, the degree-18 Taylor polynomial is evaluated by Horner's
//! rule (truncation error below 1/19! relative, under f64's epsilon), and the
//! result is squared `s` times in a while loop (per matrix: a batch element
//! stops squaring at its own `s`). Half inputs compute in f32.

use crate::jacobi::eye;
use crate::operands::{opmath, Out};
use crate::registry::{Args, LowerCtx, Registry};
use crate::solve::check_square;
use crate::{bail, Result};
use tpu_graph::{
    BinaryKind as B, CmpDir, ConstVal, DType, Graph, ReduceKind as R, UnaryKind as U, ValueId,
};

const DEGREE: i64 = 18;

/// `2^-s` for integer `s` in `0..=max_s`, exactly: the float's exponent bits.
fn exp2_neg(g: &mut Graph, s: ValueId, d: DType) -> Result<ValueId> {
    let (bias, mant, int) = match d {
        DType::F64 => (1023.0, 52.0, DType::I64),
        _ => (127.0, 23.0, DType::I32),
    };
    let e = g.convert(s, int);
    let b = g.full_like(e, bias, int);
    let e = g.binary(B::Sub, b, e)?;
    let m = g.full_like(e, mant, int);
    let bits = g.binary(B::ShiftLeft, e, m)?;
    Ok(g.bitcast(bits, d)?)
}

/// Broadcasts `[..]` to `[.., n, n]`.
fn per_matrix(g: &mut Graph, x: ValueId, shape: &[i64]) -> Result<ValueId> {
    let dims: Vec<i64> = (0..shape.len() as i64 - 2).collect();
    Ok(g.broadcast_in_dim(x, shape, &dims)?)
}

/// `exp(a)` for `[.., n, n]` (n >= 1, no empty batch) in a float dtype.
fn expm(g: &mut Graph, a: ValueId) -> Result<ValueId> {
    let shape = g.shape(a).to_vec();
    let r = shape.len() as i64;
    let d = g.dtype(a);
    let max_s = if d == DType::F64 { 1000.0 } else { 120.0 };
    // s = max(0, ceil(log2(||A||_1))), 0 for a non-finite norm (the result is not finite anyway).
    let abs = g.unary(U::Abs, a)?;
    let cols = g.reduce(R::Sum, abs, &[r - 2])?;
    let norm = g.reduce(R::Max, cols, &[r - 2])?;
    let l = g.unary(U::Log, norm)?;
    let l = g.binary_const(B::Div, l, std::f64::consts::LN_2)?;
    let l = g.unary(U::Ceil, l)?;
    let (lo, hi) = (g.full_like(l, 0.0, d), g.full_like(l, max_s, d));
    let s = g.clamp(lo, l, hi)?;
    let fin = g.unary(U::IsFinite, s)?;
    let s = g.select(fin, s, lo)?;
    let scale = exp2_neg(g, s, d)?;
    let scale = per_matrix(g, scale, &shape)?;
    let x = g.binary(B::Mul, a, scale)?;
    // Horner: P = I + X P / k for k = DEGREE..1, from P = I.
    let id = eye(g, &shape, d)?;
    let mut p = id;
    for k in (1..=DEGREE).rev() {
        let xp = g.matmul_batched(x, p)?;
        let xp = g.binary_const(B::Div, xp, k as f64)?;
        p = g.binary(B::Add, id, xp)?;
    }
    let steps = g.convert(s, DType::I64);
    let nb = g.rank(steps);
    let all: Vec<i64> = (0..nb as i64).collect();
    let most = g.reduce(R::Max, steps, &all)?;
    let zero = g.constant(ConstVal::Int(0), DType::I64, &[]);
    let out = g.while_loop(
        &[zero, most, steps, p],
        |g, v| -> Result<ValueId> { Ok(g.compare(CmpDir::Lt, v[0], v[1])?) },
        |g, v| -> Result<Vec<ValueId>> {
            let sq = g.matmul_batched(v[3], v[3])?;
            let bs = g.shape(v[2]).to_vec();
            let i = g.broadcast_to(v[0], &bs)?;
            let more = g.compare(CmpDir::Lt, i, v[2])?;
            let shape = g.shape(v[3]).to_vec();
            let more = per_matrix(g, more, &shape)?;
            let p = g.select(more, sq, v[3])?;
            let next = g.binary_const(B::Add, v[0], 1.0)?;
            Ok(vec![next, v[1], v[2], p])
        },
    )?;
    Ok(out[3])
}

/// `linalg_matrix_exp(A)`.
fn matrix_exp(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("linalg.matrix_exp: Expected a floating point or complex tensor as input. Got {d}");
    }
    check_square(c, "linalg.matrix_exp", x)?;
    if c.g.ty(x).numel() == 0 {
        return Ok(vec![x]);
    }
    let xa = c.g.convert(x, opmath(d));
    let e = expm(c.g, xa)?;
    Ok(vec![c.g.convert(e, d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["linalg_matrix_exp", "linalg_matrix_exp.out"], matrix_exp);
}
