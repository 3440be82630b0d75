//! More random draws, on the bits of `random.rs`: cauchy_, geometric_,
//! log_normal_ (inverse-CDF transforms of uniform or normal draws, as
//! PyTorch's CPU transformations), multinomial (inverse CDF with
//! replacement; without, the top keys `p / E` with `E ~ Exp(1)`, which picks
//! in proportion to `p` without repeats, as the CPU kernel does), and
//! rrelu_with_noise (training draws the negative slopes into `noise`).

use crate::args::ScalarArg;
use crate::operands::Out;
use crate::random::{draw_dtype, standard_normal, uniform01};
use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use tpu_graph::{BinaryKind as B, CmpDir, DType, ReduceKind as R, UnaryKind as U, ValueId};

/// `self`'s dtype, which must be floating (`what` names the op).
fn float_self(c: &LowerCtx, x: ValueId, what: &str) -> Result<DType> {
    let d = c.g.dtype(x);
    if !d.is_float() {
        bail!("{what} expects a floating point tensor, got {d}");
    }
    Ok(d)
}

/// Uniform draws in `(0, 1]` (`1 - u`), so logs stay finite.
fn open_uniform(c: &mut LowerCtx, state: ValueId, shape: &[i64], wd: DType) -> Result<ValueId> {
    let u = uniform01(c, state, shape, wd)?;
    let one = c.g.full_like(u, 1.0, wd);
    Ok(c.g.binary(B::Sub, one, u)?)
}

/// A host number broadcast like `like` (a parameter, so new values do not recompile).
fn host(c: &mut LowerCtx, v: f64, like: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(like).to_vec();
    c.scalar_full(ScalarArg::Float(v), c.g.dtype(like), &shape)
}

/// `cauchy_(self, median=0, sigma=1, *, generator)`: `median + sigma tan(pi (u - 1/2))`.
fn cauchy_(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_self(c, x, "cauchy_")?;
    let sigma = a.float_or(2, 1.0)?;
    if sigma <= 0.0 {
        bail!("cauchy_ expects sigma > 0.0, but found sigma={sigma}");
    }
    let shape = c.g.shape(x).to_vec();
    let state = c.rng_state_arg(a, 3)?;
    let u = uniform01(c, state, &shape, draw_dtype(d))?;
    let t = c.g.binary_const(B::Sub, u, 0.5)?;
    let t = c.g.mul_const(t, std::f64::consts::PI)?;
    let t = c.g.unary(U::Tan, t)?;
    let s = host(c, sigma, t)?;
    let m = host(c, a.float_or(1, 0.0)?, t)?;
    let v = c.g.binary(B::Mul, t, s)?;
    let v = c.g.binary(B::Add, v, m)?;
    Ok(vec![c.g.convert(v, d)])
}

/// `geometric_(self, p, *, generator)`: `ceil(log(u) / log1p(-p))`, trials to
/// the first success; integer tensors take it too.
fn geometric_(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = c.g.dtype(x);
    let p = a.float(1)?;
    if !(p > 0.0 && p < 1.0) {
        bail!("geometric_ expects p to be in (0, 1), but got p={p}");
    }
    let shape = c.g.shape(x).to_vec();
    let state = c.rng_state_arg(a, 2)?;
    let u = open_uniform(c, state, &shape, draw_dtype(d))?;
    let l = c.g.unary(U::Log, u)?;
    let lp = host(c, (-p).ln_1p(), l)?;
    let v = c.g.binary(B::Div, l, lp)?;
    let v = c.g.unary(U::Ceil, v)?;
    // u = 1 gives 0 trials: the least number of trials is 1.
    let one = c.g.full_like(v, 1.0, c.g.dtype(v));
    let v = c.g.binary(B::Max, v, one)?;
    Ok(vec![c.g.convert(v, d)])
}

/// `log_normal_(self, mean=1, std=2, *, generator)`: `exp(mean + std z)`.
fn log_normal_(c: &mut LowerCtx, a: &Args) -> Out {
    let x = a.t(0)?;
    let d = float_self(c, x, "log_normal_")?;
    let std = a.float_or(2, 2.0)?;
    if std <= 0.0 {
        bail!("log_normal_ expects std > 0.0, but found std={std}");
    }
    let shape = c.g.shape(x).to_vec();
    let state = c.rng_state_arg(a, 3)?;
    let z = standard_normal(c, state, &shape, draw_dtype(d))?;
    let s = host(c, std, z)?;
    let m = host(c, a.float_or(1, 1.0)?, z)?;
    let v = c.g.binary(B::Mul, z, s)?;
    let v = c.g.binary(B::Add, v, m)?;
    let v = c.g.unary(U::Exp, v)?;
    Ok(vec![c.g.convert(v, d)])
}

/// `multinomial(self, num_samples, replacement=False, *, generator)`: int64
/// category indices `[.., num_samples]` for rows of weights `[.., n]`.
fn multinomial(c: &mut LowerCtx, a: &Args) -> Out {
    let p = a.t(0)?;
    let ns = a.int(1)?;
    let replacement = a.bool_or(2, false)?;
    let t = c.g.ty(p).clone();
    if !t.dtype.is_float() || !(1..=2).contains(&t.rank()) {
        bail!("multinomial: prob_dist must be a 1 or 2 dim floating point tensor, got {t}");
    }
    let n = t.shape[t.rank() - 1];
    if n == 0 {
        bail!("multinomial: prob_dist {t} has no categories");
    }
    if ns <= 0 {
        bail!("multinomial: cannot sample n_sample <= 0 samples (got {ns})");
    }
    if !replacement && ns > n {
        bail!("multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement ({ns} > {n})");
    }
    let wd = draw_dtype(t.dtype);
    let pw = c.g.convert(p, wd);
    // Work on [rows, n] and give 1-D inputs their shape back at the end.
    let rows = if t.rank() == 2 { t.shape[0] } else { 1 };
    let pw = c.g.reshape(pw, &[rows, n])?;
    check_distribution(c, pw)?;
    let state = c.rng_state_arg(a, 3)?;
    let idx = if replacement {
        with_replacement(c, pw, ns, state)?
    } else {
        without_replacement(c, pw, ns, state)?
    };
    let mut shape = t.shape[..t.rank() - 1].to_vec();
    shape.push(ns);
    Ok(vec![c.g.reshape(idx, &shape)?])
}

/// CPU's checks on `multinomial`'s `[rows, n]` weights, raised at the next
/// sync: every weight finite and non-negative, every row's sum positive.
fn check_distribution(c: &mut LowerCtx, p: ValueId) -> Result<()> {
    let finite = c.g.unary(U::IsFinite, p)?;
    let zero = c.g.full_like(p, 0.0, c.g.dtype(p));
    let non_negative = c.g.compare(CmpDir::Ge, p, zero)?;
    let valid = c.g.binary(B::And, finite, non_negative)?;
    c.check_all_nonzero(
        valid,
        "multinomial: probability tensor contains either `inf`, `nan` or element < 0".into(),
    )?;
    let total = c.g.reduce(R::Sum, p, &[1])?;
    let zero = c.g.full_like(total, 0.0, c.g.dtype(total));
    let positive = c.g.compare(CmpDir::Gt, total, zero)?;
    c.check_all_nonzero(
        positive,
        "multinomial: invalid multinomial distribution (sum of probabilities <= 0)".into(),
    )?;
    Ok(())
}

/// Inverse CDF: the number of normalized cumulative weights `<= u`, for `u`
/// uniform in `[0, 1)`, capped at the last category.
fn with_replacement(c: &mut LowerCtx, p: ValueId, ns: i64, state: ValueId) -> Result<ValueId> {
    let (rows, n) = (c.g.shape(p)[0], c.g.shape(p)[1]);
    let wd = c.g.dtype(p);
    let cdf = c.g.cumulative(R::Sum, p, 1)?;
    let total = c.g.slice_dim(cdf, 1, n - 1, n)?;
    let total = c.g.broadcast_to(total, &[rows, n])?;
    let cdf = c.g.binary(B::Div, cdf, total)?;
    let u = uniform01(c, state, &[rows, ns], wd)?;
    let shape = [rows, ns, n];
    let cdf3 = c.g.broadcast_in_dim(cdf, &shape, &[0, 2])?;
    let u3 = c.g.broadcast_in_dim(u, &shape, &[0, 1])?;
    let below = c.g.compare(CmpDir::Le, cdf3, u3)?;
    let cnt = c.g.convert(below, DType::I64);
    let cnt = c.g.reduce(R::Sum, cnt, &[2])?;
    let last = c.g.full_like(cnt, (n - 1) as f64, DType::I64);
    Ok(c.g.binary(B::Min, cnt, last)?)
}

/// The `ns` largest keys `p / E` per row (`E = -log(1 - u)`): zero weights
/// have key 0 and come last.
fn without_replacement(c: &mut LowerCtx, p: ValueId, ns: i64, state: ValueId) -> Result<ValueId> {
    let shape = c.g.shape(p).to_vec();
    let wd = c.g.dtype(p);
    let u = open_uniform(c, state, &shape, wd)?;
    let e = c.g.unary(U::Log, u)?;
    let e = c.g.unary(U::Neg, e)?;
    let keys = c.g.binary(B::Div, p, e)?;
    let iota = c.g.iota(DType::I64, &shape, 1)?;
    let sorted = c.g.sort(&[keys, iota], 1, true)?;
    Ok(c.g.slice_dim(sorted[1], 1, 0, ns)?)
}

/// `(output, noise)` of `rrelu_with_noise(self, noise, lower, upper, training, generator)`:
/// training draws slopes `U(lower, upper)` where `self <= 0` (noise 1
/// elsewhere); evaluation uses the mean slope and leaves `noise` as it is.
fn rrelu(c: &mut LowerCtx, a: &Args) -> Result<(ValueId, ValueId)> {
    let x = a.t(0)?;
    let noise = a.t(1)?;
    let d = float_self(c, x, "rrelu_with_noise")?;
    if c.g.shape(noise) != c.g.shape(x) {
        bail!(
            "rrelu_with_noise: noise {} must have the shape of self {}",
            c.g.ty(noise),
            c.g.ty(x)
        );
    }
    let lower = a.float_or(2, 1.0 / 8.0)?;
    let upper = a.float_or(3, 1.0 / 3.0)?;
    if lower > upper {
        bail!("rrelu_with_noise: lower bound {lower} must be <= upper bound {upper}");
    }
    let training = a.bool_or(4, false)?;
    let wd = draw_dtype(d);
    let xw = c.g.convert(x, wd);
    let neg = {
        let zero = c.g.full_like(xw, 0.0, wd);
        c.g.compare(CmpDir::Le, xw, zero)?
    };
    if !training {
        let slope = host(c, (lower + upper) / 2.0, xw)?;
        let y = c.g.binary(B::Mul, xw, slope)?;
        let y = c.g.select(neg, y, xw)?;
        return Ok((c.g.convert(y, d), noise));
    }
    let shape = c.g.shape(x).to_vec();
    let state = c.rng_state_arg(a, 5)?;
    let u = uniform01(c, state, &shape, wd)?;
    let span = host(c, upper - lower, u)?;
    let lo = host(c, lower, u)?;
    let r = c.g.binary(B::Mul, u, span)?;
    let r = c.g.binary(B::Add, r, lo)?;
    let one = c.g.full_like(r, 1.0, wd);
    let slopes = c.g.select(neg, r, one)?;
    let y = c.g.binary(B::Mul, xw, slopes)?;
    let nd = c.g.dtype(noise);
    Ok((c.g.convert(y, d), c.g.convert(slopes, nd)))
}

/// Functional and `out=` forms write `noise` first (argument order), then return or write the output.
fn rrelu_with_noise(c: &mut LowerCtx, a: &Args) -> Out {
    let (y, noise) = rrelu(c, a)?;
    Ok(vec![noise, y])
}

/// `rrelu_with_noise_`: writes `self`, then `noise`.
fn rrelu_with_noise_(c: &mut LowerCtx, a: &Args) -> Out {
    let (y, noise) = rrelu(c, a)?;
    Ok(vec![y, noise])
}

pub fn register(r: &mut Registry) {
    r.add(&["cauchy_", "cauchy", "cauchy.out"], cauchy_);
    r.add(&["geometric_", "geometric", "geometric.out"], geometric_);
    r.add(
        &["log_normal_", "log_normal", "log_normal.out"],
        log_normal_,
    );
    r.add(&["multinomial", "multinomial.out"], multinomial);
    r.add(
        &["rrelu_with_noise", "rrelu_with_noise.out"],
        rrelu_with_noise,
    );
    r.add(&["rrelu_with_noise_"], rrelu_with_noise_);
}
