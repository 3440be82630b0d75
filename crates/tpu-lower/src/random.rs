//! Random family: uniform_, normal_ (and the functional `normal` forms),
//! bernoulli, random_, exponential_, randperm. Bits come from
//! `rng_bit_generator` on a state fed from the host (the op's generator seed,
//! or the default generator's), so new seeds never recompile.
//!
//! Floats in `[0, 1)` take the top mantissa bits: f32 `(bits >> 9) | 0x3F800000`
//! reinterpreted minus 1 (f64 likewise with 52 bits); half types draw f32.

use crate::args::ScalarArg;
use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, ConstVal, DType, UnaryKind as U, ValueId};

/// Uniform floats in `[0, 1)` of `shape`: f64 for `d == F64`, else f32.
pub(crate) fn uniform01(
    c: &mut LowerCtx,
    state: ValueId,
    shape: &[i64],
    d: DType,
) -> Result<ValueId> {
    let (bits_t, shift, one_bits, ft) = if d == DType::F64 {
        (DType::U64, 12.0, 0x3FF0_0000_0000_0000i64, DType::F64)
    } else {
        (DType::U32, 9.0, 0x3F80_0000i64, DType::F32)
    };
    let (_, bits) = c.g.rng_bit_generator(state, bits_t, shape)?;
    let m = c.g.binary_const(B::ShiftRightLogical, bits, shift)?;
    let e = c.g.constant(ConstVal::Int(one_bits), bits_t, shape);
    let f = c.g.binary(B::Or, m, e)?;
    let f = c.g.bitcast(f, ft)?;
    Ok(c.g.binary_const(B::Sub, f, 1.0)?)
}

/// Uniform f32 values `k / 2^m` in `[0, 1)`, with `m` the significand width of
/// the half type `d`, so that converting to `d` never rounds up to 1.
pub(crate) fn uniform01_half(
    c: &mut LowerCtx,
    state: ValueId,
    shape: &[i64],
    d: DType,
) -> Result<ValueId> {
    let m = if d == DType::BF16 { 8.0 } else { 11.0 };
    let (_, bits) = c.g.rng_bit_generator(state, DType::U32, shape)?;
    let k = c.g.binary_const(B::ShiftRightLogical, bits, 32.0 - m)?;
    let k = c.g.convert(k, DType::F32);
    Ok(c.g.mul_const(k, (2f64).powf(-m))?)
}

/// The dtype random floats are drawn in for a result of dtype `d`.
pub(crate) fn draw_dtype(d: DType) -> DType {
    if d == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Standard normal samples (Box-Muller) of `shape` in `wd` (f32 or f64).
pub(crate) fn standard_normal(
    c: &mut LowerCtx,
    state: ValueId,
    shape: &[i64],
    wd: DType,
) -> Result<ValueId> {
    let mut two = vec![2];
    two.extend(shape);
    let u = uniform01(c, state, &two, wd)?;
    let r = shape.len();
    let mut lim = two.clone();
    lim[0] = 1;
    let u1 = c.g.slice(u, &vec![0; r + 1], &lim, &vec![1; r + 1])?;
    let mut start = vec![0; r + 1];
    start[0] = 1;
    let u2 = c.g.slice(u, &start, &two, &vec![1; r + 1])?;
    let u1 = c.g.reshape(u1, shape)?;
    let u2 = c.g.reshape(u2, shape)?;
    // 1 - u1 lies in (0, 1], so the log is finite.
    let one = c.g.full_like(u1, 1.0, wd);
    let v = c.g.binary(B::Sub, one, u1)?;
    let l = c.g.unary(U::Log, v)?;
    let l = c.g.mul_const(l, -2.0)?;
    let radius = c.g.unary(U::Sqrt, l)?;
    let angle = c.g.mul_const(u2, 2.0 * std::f64::consts::PI)?;
    let cos = c.g.unary(U::Cos, angle)?;
    Ok(c.g.binary(B::Mul, radius, cos)?)
}

fn float_out(c: &LowerCtx, x: ValueId, what: &str) -> Result<DType> {
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("{what} expects a floating point tensor, got {d}");
    }
    Ok(d)
}

/// `uniform_(self, from, to, *, generator)`.
fn uniform_(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_out(c, x, "uniform_")?;
    let shape = c.g.shape(x).to_vec();
    let wd = draw_dtype(d);
    let state = c.rng_state_arg(a, 3)?;
    let u = if matches!(d, DType::BF16 | DType::F16) {
        uniform01_half(c, state, &shape, d)?
    } else {
        uniform01(c, state, &shape, wd)?
    };
    let from = a.float_or(1, 0.0)?;
    let to = a.float_or(2, 1.0)?;
    let lo = c.scalar_full(ScalarArg::Float(from), wd, &shape)?;
    let span = c.scalar_full(ScalarArg::Float(to - from), wd, &shape)?;
    let v = c.g.binary(B::Mul, u, span)?;
    let v = c.g.binary(B::Add, v, lo)?;
    Ok(vec![c.g.convert(v, d)])
}

/// `mean + std * z`, broadcasting tensor or host-number operands, in `d`.
fn affine_normal(
    c: &mut LowerCtx,
    z: ValueId,
    mean: Operand,
    std: Operand,
    d: DType,
) -> Result<ValueId> {
    let wd = c.g.dtype(z);
    let shape = c.g.shape(z).to_vec();
    let val = |c: &mut LowerCtx, o: Operand| -> Result<ValueId> {
        Ok(match o {
            Operand::Host(v) => c.scalar_full(ScalarArg::Float(v), wd, &shape)?,
            Operand::Tensor(t) => c.g.coerce(t, wd, &shape)?,
        })
    };
    let s = val(c, std)?;
    let m = val(c, mean)?;
    let v = c.g.binary(B::Mul, z, s)?;
    let v = c.g.binary(B::Add, v, m)?;
    Ok(c.g.convert(v, d))
}

#[derive(Clone, Copy)]
enum Operand {
    Host(f64),
    Tensor(ValueId),
}

fn operand(a: &Args, i: usize, default: f64) -> Result<Operand> {
    match a.arg(i) {
        crate::Arg::Tensor(t) => Ok(Operand::Tensor(t.v)),
        _ => Ok(Operand::Host(a.float_or(i, default)?)),
    }
}

/// `normal_(self, mean, std, *, generator)` and `normal.out(self, mean, std)`.
fn normal_(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    if c.g.dtype(x).is_complex() {
        return complex_normal_(c, a, x);
    }
    let d = float_out(c, x, "normal_")?;
    let shape = c.g.shape(x).to_vec();
    let state = c.rng_state_arg(a, 3)?;
    let z = standard_normal(c, state, &shape, draw_dtype(d))?;
    Ok(vec![affine_normal(
        c,
        z,
        operand(a, 1, 0.0)?,
        operand(a, 2, 1.0)?,
        d,
    )?])
}

/// `normal_` of a complex tensor, as PyTorch defines it: real and imaginary
/// parts each normal with the mean and `std / sqrt(2)` (so `E|z - mean|^2 = std^2`).
fn complex_normal_(c: &mut LowerCtx, a: &Args, x: ValueId) -> Out {
    let d = c.g.dtype(x);
    let shape = c.g.shape(x).to_vec();
    let n: i64 = shape.iter().product();
    let state = c.rng_state_arg(a, 3)?;
    let z = standard_normal(c, state, &[2 * n], d.real())?;
    let (mean, std) = (a.float_or(1, 0.0)?, a.float_or(2, 1.0)?);
    let parts = affine_normal(
        c,
        z,
        Operand::Host(mean),
        Operand::Host(std / std::f64::consts::SQRT_2),
        d.real(),
    )?;
    Ok(vec![crate::complex::complex_from_draws(
        c, parts, d, &shape,
    )?])
}

/// Functional `normal.Tensor_float`, `.float_Tensor`, `.Tensor_Tensor` (+ `_out`):
/// the result shape is the broadcast of the tensor operands (or `out`'s).
fn normal_tensors(c: &mut LowerCtx, a: &Args) -> Out {
    let (mean, std) = (operand(a, 0, 0.0)?, operand(a, 1, 1.0)?);
    let mut shape: Vec<i64> = vec![];
    let mut d = None;
    for o in [mean, std] {
        if let Operand::Tensor(t) = o {
            shape = crate::operands::broadcast_shapes(&shape, c.g.shape(t))?;
            d = Some(d.map_or(c.g.dtype(t), |p| DType::promote(p, c.g.dtype(t))));
        }
    }
    if let Some(t) = c.out_types.first() {
        shape = t.shape.clone();
        d = Some(t.dtype);
    }
    let d = d.unwrap_or(crate::operands::DEFAULT_FLOAT);
    let state = c.rng_state_arg(a, 2)?;
    let z = standard_normal(c, state, &shape, draw_dtype(d))?;
    Ok(vec![affine_normal(c, z, mean, std, d)?])
}

/// `normal.float_float(mean, std, size, *, generator, dtype, ..)` and `.float_float_out`.
fn normal_sized(c: &mut LowerCtx, a: &Args) -> Out {
    let (shape, d) = match c.out_types.first() {
        Some(t) => (t.shape.clone(), t.dtype),
        None => (
            a.ints(2)?,
            a.opt_dtype(4)?.unwrap_or(crate::operands::DEFAULT_FLOAT),
        ),
    };
    let state = c.rng_state_arg(a, 3)?;
    let z = standard_normal(c, state, &shape, draw_dtype(d))?;
    Ok(vec![affine_normal(
        c,
        z,
        Operand::Host(a.float(0)?),
        Operand::Host(a.float(1)?),
        d,
    )?])
}

/// `u < p` cast to `x`'s dtype, with `p` a host number or a tensor.
fn bernoulli_with(c: &mut LowerCtx, x: ValueId, p: Operand, state: ValueId) -> Result<ValueId> {
    let d = c.g.dtype(x);
    let shape = c.g.shape(x).to_vec();
    let wd = draw_dtype(d);
    let u = uniform01(c, state, &shape, wd)?;
    let p = match p {
        Operand::Host(v) => c.scalar_full(ScalarArg::Float(v), wd, &shape)?,
        Operand::Tensor(t) => c.g.coerce(t, wd, &shape)?,
    };
    let hit = c.g.compare(CmpDir::Lt, u, p)?;
    Ok(c.g.convert(hit, d))
}

/// `bernoulli_.float(self, p)`, `bernoulli_.Tensor(self, p)`, `bernoulli.p`,
/// `bernoulli.Tensor`, and their `_out` forms: probability at argument 1.
fn bernoulli_p(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let p = operand(a, 1, 0.5)?;
    let state = c.rng_state_arg(a, 2)?;
    Ok(vec![bernoulli_with(c, x, p, state)?])
}

/// `bernoulli(self, *, generator)`: `self` holds the probabilities.
fn bernoulli(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let state = c.rng_state_arg(a, 1)?;
    Ok(vec![bernoulli_with(c, x, Operand::Tensor(x), state)?])
}

/// Integers uniform in `[from, from + span)` cast to `d` (span 0 means 2^64).
fn random_range(
    c: &mut LowerCtx,
    shape: &[i64],
    from: i64,
    span: u64,
    d: DType,
    state: ValueId,
) -> Result<ValueId> {
    let (_, bits) = c.g.rng_bit_generator(state, DType::U64, shape)?;
    let v = if span == 0 {
        bits
    } else {
        let s = c.g.constant(ConstVal::Int(span as i64), DType::U64, shape);
        c.g.binary(B::Rem, bits, s)?
    };
    let v = c.g.bitcast(v, DType::I64)?;
    let f = c.g.constant(ConstVal::Int(from), DType::I64, shape);
    let v = c.g.binary(B::Add, v, f)?;
    Ok(c.g.convert(v, d))
}

/// Largest value `random_` draws for `d` without `to`: 2^mantissa for floats, the max for ints.
fn random_default_to(d: DType) -> i64 {
    match d {
        DType::F64 => 1 << 53,
        DType::F32 => 1 << 24,
        DType::F16 => 1 << 11,
        DType::BF16 => 1 << 8,
        DType::Bool => 1,
        DType::U8 => u8::MAX as i64,
        DType::I8 => i8::MAX as i64,
        DType::I16 => i16::MAX as i64,
        DType::I32 => i32::MAX as i64,
        _ => i64::MAX,
    }
}

/// `random_(self)`, `random_.to(self, to)`, `random_.from(self, from, to?)`.
fn random_any(c: &mut LowerCtx, a: &Args, from: i64, to: Option<i64>, gen: usize) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let shape = c.g.shape(x).to_vec();
    let span = match to {
        Some(t) if t <= from => {
            bail!("random_ expects 'from' to be less than 'to', but got from={from} >= to={t}")
        }
        Some(t) => (t as i128 - from as i128) as u64,
        None => (random_default_to(d) as i128 - from as i128 + 1) as u64,
    };
    let state = c.rng_state_arg(a, gen)?;
    Ok(vec![random_range(c, &shape, from, span, d, state)?])
}
fn random_to(c: &mut LowerCtx, a: &Args) -> Out {
    let to = a.int(1)?;
    random_any(c, a, 0, Some(to), 2)
}
fn random_from(c: &mut LowerCtx, a: &Args) -> Out {
    let (from, to) = (a.int(1)?, a.opt_int(2)?);
    random_any(c, a, from, to, 3)
}

/// `exponential_(self, lambd)`: `-log(1 - u) / lambd`.
fn exponential_(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_out(c, x, "exponential_")?;
    let shape = c.g.shape(x).to_vec();
    let wd = draw_dtype(d);
    let state = c.rng_state_arg(a, 2)?;
    let u = uniform01(c, state, &shape, wd)?;
    let one = c.g.full_like(u, 1.0, wd);
    let v = c.g.binary(B::Sub, one, u)?;
    let l = c.g.unary(U::Log, v)?;
    let l = c.g.unary(U::Neg, l)?;
    let lambd = c.scalar_full(ScalarArg::Float(a.float_or(1, 1.0)?), wd, &shape)?;
    let r = c.g.binary(B::Div, l, lambd)?;
    Ok(vec![c.g.convert(r, d)])
}

/// `randperm.out(n)` / `randperm.generator_out(n, generator)`: argsort of random keys.
fn randperm(c: &mut LowerCtx, a: &Args) -> Out {
    let n = a.int(0)?;
    let d = c.out_types.first().map(|t| t.dtype).unwrap_or(DType::I64);
    let state = c.rng_state_arg(a, 1)?;
    let (_, keys) = c.g.rng_bit_generator(state, DType::U64, &[n])?;
    let iota = c.g.iota(DType::I64, &[n], 0)?;
    let out = c.g.sort(&[keys, iota], 0, false)?;
    Ok(vec![c.g.convert(out[1], d)])
}

pub fn register(r: &mut Registry) {
    r.add(&["uniform_", "uniform", "uniform.out"], uniform_);
    r.add(&["normal_", "normal.out", "normal_functional"], normal_);
    r.add(
        &[
            "normal.Tensor_float",
            "normal.Tensor_float_out",
            "normal.float_Tensor",
            "normal.float_Tensor_out",
            "normal.Tensor_Tensor",
            "normal.Tensor_Tensor_out",
        ],
        normal_tensors,
    );
    r.add(
        &["normal.float_float", "normal.float_float_out"],
        normal_sized,
    );
    r.add(
        &[
            "bernoulli_.float",
            "bernoulli_.Tensor",
            "bernoulli.p",
            "bernoulli.Tensor",
            "bernoulli.Tensor_out",
            "bernoulli.float_out",
        ],
        bernoulli_p,
    );
    r.add(&["bernoulli", "bernoulli.out"], bernoulli);
    r.add(&["random_", "random", "random.out"], |c, a| {
        random_any(c, a, 0, None, 1)
    });
    r.add(&["random_.to", "random.to", "random.to_out"], random_to);
    r.add(
        &["random_.from", "random.from", "random.from_out"],
        random_from,
    );
    r.add(
        &["exponential_", "exponential", "exponential.out"],
        exponential_,
    );
    r.add(
        &[
            "randperm.out",
            "randperm.generator_out",
            "randperm",
            "randperm.generator",
        ],
        randperm,
    );
}
