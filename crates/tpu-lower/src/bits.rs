//! Integer and bit-level elementwise ops: bitwise and/or/xor/not, shifts,
//! gcd / lcm (fixed-length binary GCD, exact) and nextafter.

use crate::operands::{
    bin, broadcast_shapes, cmp, cmp_k, isnan, k, operand, promoted, promoted_binary, result_type,
    un, Out,
};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

fn bitwise_not(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x).is_inexact() {
        bail!(
            "bitwise_not is only supported for integer and boolean tensors, got {}",
            c.g.dtype(x)
        );
    }
    Ok(vec![c.g.unary(U::Not, x)?])
}

fn bitwise(c: &mut LowerCtx, a: &Args, kind: B) -> Out {
    let d = promoted(c, a);
    if d.is_inexact() {
        bail!("bitwise ops are only supported for integer and boolean tensors, got {d}");
    }
    promoted_binary(c, a, kind)
}

/// Arguments 0 and 1 as integers of their promoted dtype, broadcast.
fn int_pair(c: &mut LowerCtx, a: &Args, what: &str) -> Result<(ValueId, ValueId, DType)> {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    if !d.is_int() {
        bail!("\"{what}\" not implemented for '{d}'");
    }
    let x = operand(c, a, 0, d)?;
    let y = operand(c, a, 1, d)?;
    let shape = broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    Ok((
        c.g.broadcast_to(x, &shape)?,
        c.g.broadcast_to(y, &shape)?,
        d,
    ))
}

fn bits(d: DType) -> f64 {
    (d.size() * 8) as f64
}

/// `x << y`; shifts outside `0..bits` give 0.
fn left_shift(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "lshift_cpu")?;
    let neg = cmp_k(c, CmpDir::Lt, y, 0.0)?;
    let big = cmp_k(c, CmpDir::Ge, y, bits(d))?;
    let oob = bin(c, B::Or, neg, big)?;
    let zero = k(c, y, 0.0);
    let ys = c.g.select(oob, zero, y)?;
    let s = bin(c, B::ShiftLeft, x, ys)?;
    let zx = k(c, s, 0.0);
    Ok(vec![c.g.select(oob, zx, s)?])
}

/// `x >> y` (arithmetic for signed); shifts outside the range fill with the sign.
fn right_shift(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "rshift_cpu")?;
    let neg = cmp_k(c, CmpDir::Lt, y, 0.0)?;
    if d.is_unsigned() {
        let big = cmp_k(c, CmpDir::Ge, y, bits(d))?;
        let oob = bin(c, B::Or, neg, big)?;
        let zero = k(c, y, 0.0);
        let ys = c.g.select(oob, zero, y)?;
        let s = bin(c, B::ShiftRightLogical, x, ys)?;
        let zx = k(c, s, 0.0);
        return Ok(vec![c.g.select(oob, zx, s)?]);
    }
    let max_shift = bits(d) - 1.0;
    let big = cmp_k(c, CmpDir::Ge, y, max_shift)?;
    let oob = bin(c, B::Or, neg, big)?;
    let m = k(c, y, max_shift);
    let ys = c.g.select(oob, m, y)?;
    Ok(vec![bin(c, B::ShiftRightArithmetic, x, ys)?])
}

/// gcd of integer tensors (non-negative, as CPU's Euclid): binary GCD on
/// `|x|`, `|y|` as u64, unrolled `2 * bits` steps (each step drops a bit of
/// `a * b` until `b` is 0, after which the state is fixed), so it is exact.
fn gcd_of(c: &mut LowerCtx, x: ValueId, y: ValueId, d: DType) -> Result<ValueId> {
    let to_u = |c: &mut LowerCtx, v: ValueId| -> Result<ValueId> {
        let w = c.g.convert(v, DType::I64);
        let w = un(c, U::Abs, w)?;
        Ok(c.g.bitcast(w, DType::U64)?)
    };
    let (ua, ub) = (to_u(c, x)?, to_u(c, y)?);
    let za = cmp_k(c, CmpDir::Eq, ua, 0.0)?;
    let zb = cmp_k(c, CmpDir::Eq, ub, 0.0)?;
    let one = k(c, ua, 1.0);
    let mut av = c.g.select(za, one, ua)?;
    let mut bv = c.g.select(zb, one, ub)?;
    let mut kv = k(c, ua, 0.0);
    for _ in 0..2 * d.size() * 8 {
        let a1 = bin(c, B::And, av, one)?;
        let b1 = bin(c, B::And, bv, one)?;
        let ea = cmp_k(c, CmpDir::Eq, a1, 0.0)?;
        let eb = cmp_k(c, CmpDir::Eq, b1, 0.0)?;
        let ah = bin(c, B::ShiftRightLogical, av, one)?;
        let bh = bin(c, B::ShiftRightLogical, bv, one)?;
        let mn = bin(c, B::Min, av, bv)?;
        let mx = bin(c, B::Max, av, bv)?;
        let df = bin(c, B::Sub, mx, mn)?;
        let df = bin(c, B::ShiftRightLogical, df, one)?;
        let both = bin(c, B::And, ea, eb)?;
        let a_odd = c.g.select(eb, av, mn)?;
        let na = c.g.select(ea, ah, a_odd)?;
        let b_odd = c.g.select(ea, bv, df)?;
        let nb = c.g.select(eb, bh, b_odd)?;
        let kp = bin(c, B::Add, kv, one)?;
        kv = c.g.select(both, kp, kv)?;
        av = na;
        bv = nb;
    }
    let g = bin(c, B::ShiftLeft, av, kv)?;
    let g = c.g.select(zb, ua, g)?;
    let g = c.g.select(za, ub, g)?;
    let g = c.g.bitcast(g, DType::I64)?;
    Ok(c.g.convert(g, d))
}

fn gcd(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "gcd_cpu")?;
    Ok(vec![gcd_of(c, x, y, d)?])
}

/// `lcm(a, b) = |a / gcd * b|` (0 when the gcd is 0), wrapping as CPU does.
fn lcm(c: &mut LowerCtx, a: &Args) -> Out {
    let (x, y, d) = int_pair(c, a, "lcm_cpu")?;
    let g = gcd_of(c, x, y, d)?;
    // C++ computes types narrower than int in int.
    let w = if d.size() < 4 { DType::I32 } else { d };
    let (x, y, g) = (c.g.convert(x, w), c.g.convert(y, w), c.g.convert(g, w));
    let z = cmp_k(c, CmpDir::Eq, g, 0.0)?;
    let one = k(c, g, 1.0);
    let gs = c.g.select(z, one, g)?;
    let q = bin(c, B::Div, x, gs)?;
    let m = bin(c, B::Mul, q, y)?;
    let m = un(c, U::Abs, m)?;
    let zero = k(c, m, 0.0);
    let m = c.g.select(z, zero, m)?;
    Ok(vec![c.g.convert(m, d)])
}

/// `nextafter(x, y)`: the next representable value after `x` towards `y`.
fn nextafter(c: &mut LowerCtx, a: &Args) -> Out {
    let d = result_type(c.g, &[a.arg(0), a.arg(1)]);
    let it = match d {
        DType::F32 => DType::I32,
        DType::F64 => DType::I64,
        DType::F16 | DType::BF16 => DType::I16,
        _ => bail!("\"nextafter_cpu\" not implemented for '{d}'"),
    };
    let x = operand(c, a, 0, d)?;
    let y = operand(c, a, 1, d)?;
    let shape = broadcast_shapes(c.g.shape(x), c.g.shape(y))?;
    let (x, y) = (c.g.broadcast_to(x, &shape)?, c.g.broadcast_to(y, &shape)?);
    let xb = c.g.bitcast(x, it)?;
    let one = k(c, xb, 1.0);
    let up = bin(c, B::Add, xb, one)?;
    let down = bin(c, B::Sub, xb, one)?;
    let gt = cmp(c, CmpDir::Gt, y, x)?;
    let pos = cmp_k(c, CmpDir::Gt, x, 0.0)?;
    let same = cmp(c, CmpDir::Eq, gt, pos)?;
    let step = c.g.select(same, up, down)?;
    let step = c.g.bitcast(step, d)?;
    // From zero: the smallest subnormal with y's sign.
    let tiny = c.g.bitcast(one, d)?;
    let ntiny = un(c, U::Neg, tiny)?;
    let yneg = cmp_k(c, CmpDir::Lt, y, 0.0)?;
    let tiny = c.g.select(yneg, ntiny, tiny)?;
    let xz = cmp_k(c, CmpDir::Eq, x, 0.0)?;
    let r = c.g.select(xz, tiny, step)?;
    let eq = cmp(c, CmpDir::Eq, x, y)?;
    let r = c.g.select(eq, y, r)?;
    let nx = isnan(c, x)?;
    let ny = isnan(c, y)?;
    let nan = bin(c, B::Or, nx, ny)?;
    let s = bin(c, B::Add, x, y)?;
    Ok(vec![c.g.select(nan, s, r)?])
}

pub fn register(r: &mut Registry) {
    r.add(overloads!("bitwise_not"), bitwise_not);
    r.add(
        &[
            "bitwise_and.Tensor",
            "bitwise_and.Tensor_out",
            "bitwise_and_.Tensor",
            "bitwise_and.Scalar",
            "bitwise_and.Scalar_out",
        ],
        |c, a| bitwise(c, a, B::And),
    );
    r.add(
        &[
            "bitwise_or.Tensor",
            "bitwise_or.Tensor_out",
            "bitwise_or_.Tensor",
            "bitwise_or.Scalar",
            "bitwise_or.Scalar_out",
        ],
        |c, a| bitwise(c, a, B::Or),
    );
    r.add(
        &[
            "bitwise_xor.Tensor",
            "bitwise_xor.Tensor_out",
            "bitwise_xor_.Tensor",
            "bitwise_xor.Scalar",
            "bitwise_xor.Scalar_out",
        ],
        |c, a| bitwise(c, a, B::Xor),
    );
    r.add(
        &[
            "bitwise_left_shift.Tensor",
            "bitwise_left_shift.Tensor_Scalar",
            "bitwise_left_shift.Scalar_Tensor",
            "bitwise_left_shift.Tensor_out",
            "bitwise_left_shift.Tensor_Scalar_out",
            "bitwise_left_shift.Scalar_Tensor_out",
            "bitwise_left_shift_.Tensor",
            "bitwise_left_shift_.Tensor_Scalar",
            "__lshift__.Tensor",
            "__lshift__.Scalar",
            "__lshift__.Tensor_out",
            "__lshift__.Scalar_out",
            "__ilshift__.Tensor",
            "__ilshift__.Scalar",
        ],
        left_shift,
    );
    r.add(
        &[
            "bitwise_right_shift.Tensor",
            "bitwise_right_shift.Tensor_Scalar",
            "bitwise_right_shift.Scalar_Tensor",
            "bitwise_right_shift.Tensor_out",
            "bitwise_right_shift.Tensor_Scalar_out",
            "bitwise_right_shift.Scalar_Tensor_out",
            "bitwise_right_shift_.Tensor",
            "bitwise_right_shift_.Tensor_Scalar",
            "__rshift__.Tensor",
            "__rshift__.Scalar",
            "__rshift__.Tensor_out",
            "__rshift__.Scalar_out",
            "__irshift__.Tensor",
            "__irshift__.Scalar",
        ],
        right_shift,
    );
    r.add(&["gcd", "gcd.out", "gcd_"], gcd);
    r.add(&["lcm", "lcm.out", "lcm_"], lcm);
    r.add(&["nextafter", "nextafter.out", "nextafter_"], nextafter);
}
