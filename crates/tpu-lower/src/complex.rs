//! Complex numbers: building and taking apart complex values (`complex`,
//! `polar`, `conj_physical`, `angle`, `vdot`). Elementwise arithmetic, matmul
//! and reductions on complex tensors go through the ordinary rules: StableHLO
//! defines them on complex element types.

use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, UnaryKind as U, ValueId};

/// Two real float operands of one dtype and shape (broadcast), for `complex`/`polar`.
fn real_pair(c: &mut LowerCtx, a: &Args, what: &str) -> Result<(ValueId, ValueId)> {
    let (x, y) = (a.t(0)?, a.t(1)?);
    let (dx, dy) = (c.g.dtype(x), c.g.dtype(y));
    if dx != dy || !matches!(dx, DType::F32 | DType::F64) {
        bail!("{what}: expected both inputs to be float or double tensors of one dtype, got {dx} and {dy}");
    }
    Ok(c.g.coerce_pair(x, y, dx)?)
}

/// `complex(real, imag)`.
fn complex(c: &mut LowerCtx, a: &Args) -> Out {
    let (re, im) = real_pair(c, a, "complex")?;
    Ok(vec![c.g.make_complex(re, im)?])
}

/// `polar(abs, angle)`: `abs (cos angle + i sin angle)`.
fn polar(c: &mut LowerCtx, a: &Args) -> Out {
    let (r, theta) = real_pair(c, a, "polar")?;
    let cos = c.g.unary(U::Cos, theta)?;
    let sin = c.g.unary(U::Sin, theta)?;
    let re = c.g.binary(B::Mul, r, cos)?;
    let im = c.g.binary(B::Mul, r, sin)?;
    Ok(vec![c.g.make_complex(re, im)?])
}

/// `conj_physical`: the conjugate, materialized (identity on real tensors).
fn conj_physical(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    Ok(vec![c.g.conj(x)?])
}

/// `angle` of a complex value: `atan2(imag, real)`.
pub(crate) fn complex_angle(c: &mut LowerCtx, z: ValueId) -> Result<ValueId> {
    let re = c.g.real_part(z)?;
    let im = c.g.imag_part(z)?;
    Ok(c.g.binary(B::Atan2, im, re)?)
}

/// `isfinite` of a complex value: both parts finite.
pub(crate) fn complex_isfinite(c: &mut LowerCtx, z: ValueId) -> Result<ValueId> {
    let re = c.g.real_part(z)?;
    let im = c.g.imag_part(z)?;
    let fr = c.g.unary(U::IsFinite, re)?;
    let fi = c.g.unary(U::IsFinite, im)?;
    Ok(c.g.binary(B::And, fr, fi)?)
}

/// `isnan` of a complex value: either part NaN.
pub(crate) fn complex_isnan(c: &mut LowerCtx, z: ValueId) -> Result<ValueId> {
    let re = c.g.real_part(z)?;
    let im = c.g.imag_part(z)?;
    let nr = c.g.compare(CmpDir::Ne, re, re)?;
    let ni = c.g.compare(CmpDir::Ne, im, im)?;
    Ok(c.g.binary(B::Or, nr, ni)?)
}

/// Interleaved real draws `[2n]` as complex values of `shape`.
pub(crate) fn complex_from_draws(
    c: &mut LowerCtx,
    draws: ValueId,
    dtype: DType,
    shape: &[i64],
) -> Result<ValueId> {
    let n = c.g.shape(draws).iter().product::<i64>();
    let flat = c.g.reshape(draws, &[n])?;
    let z = c.g.interleaved_to_complex(flat, dtype)?;
    Ok(c.g.reshape(z, shape)?)
}

pub fn register(r: &mut Registry) {
    r.add(&["complex", "complex.out"], complex);
    r.add(&["polar", "polar.out"], polar);
    r.add(
        &[
            "conj_physical",
            "conj_physical.out",
            "conj_physical_",
            "_conj_physical",
        ],
        conj_physical,
    );
}
