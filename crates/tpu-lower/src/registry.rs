//! The registry (overload name → rule) and the context a rule lowers in.

use crate::args::{Arg, ScalarArg, TensorArg};
use crate::{LowerError, Result};
use rustc_hash::FxHashMap;
use tpu_graph::{DType, Graph, ValueId, ValueType};

/// A rule: builds the op's results from its (non-`out`) arguments.
/// In-place and `out=` writes are done by the caller with the returned values.
pub type Rule = fn(&mut LowerCtx, &Args) -> Result<Vec<ValueId>>;

/// A value the caller must feed as a parameter at execution time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HostValue {
    /// A host number, converted to the parameter's dtype.
    Scalar(ScalarArg),
    /// A random seed: the parameter is a `tensor<2xui64>` RNG state `[seed, 0]`.
    Seed(u64),
    /// Like `Seed`, with the seed drawn from the device's default generator
    /// each time the graph runs (for ops without a `Generator?` argument).
    DefaultSeed,
}

pub struct LowerCtx<'a> {
    pub g: &'a mut Graph,
    /// Types of the tensors the op writes (`out=` arguments, or `self` of an
    /// in-place op), in schema order; empty for functional ops.
    pub out_types: &'a [ValueType],
    /// Parameters fed from the host, in creation order.
    pub host: Vec<(ValueId, HostValue)>,
    /// Value checks of the op's data (index ranges, integer division by
    /// zero): computed by the program beside its results and raised by the
    /// runtime, at the op in debug mode and at the next host sync otherwise.
    pub checks: Vec<Check>,
}

/// Which Python exception a failed [`Check`] raises (the one CPU PyTorch raises).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// `IndexError`.
    Index,
    /// `RuntimeError`.
    Runtime,
}

/// A condition on values only known on the device.
#[derive(Clone, Debug)]
pub struct Check {
    /// Bool scalar: true when the check holds.
    pub ok: ValueId,
    /// I64 scalar: an offending value when it does not (`{}` in `message`).
    pub value: ValueId,
    pub kind: CheckKind,
    pub message: String,
}

impl<'a> LowerCtx<'a> {
    pub fn new(g: &'a mut Graph, out_types: &'a [ValueType]) -> Self {
        LowerCtx {
            g,
            out_types,
            host: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// A 0-dim parameter of `dtype` holding a host number; changing the number
    /// does not change the graph, so nothing recompiles.
    pub fn scalar(&mut self, s: ScalarArg, dtype: DType) -> ValueId {
        let p = self.g.parameter(ValueType::new(dtype, &[]));
        self.host.push((p, HostValue::Scalar(s)));
        p
    }

    /// A host number broadcast to `shape`.
    pub fn scalar_full(&mut self, s: ScalarArg, dtype: DType, shape: &[i64]) -> Result<ValueId> {
        let v = self.scalar(s, dtype);
        Ok(self.g.broadcast_to(v, shape)?)
    }

    /// RNG state parameter for a seed.
    pub fn rng_state(&mut self, seed: u64) -> ValueId {
        let p = self.g.parameter(ValueType::new(DType::U64, &[2]));
        self.host.push((p, HostValue::Seed(seed)));
        p
    }

    /// Requires an integer index tensor (`what` names the op).
    pub fn require_index_dtype(&self, idx: ValueId, what: &str) -> Result<()> {
        let d = self.g.dtype(idx);
        if !d.is_int() {
            return Err(LowerError::Invalid(format!(
                "{what}: expected an index tensor of type long or int, got {d}"
            )));
        }
        Ok(())
    }

    /// Requires an integer index tensor whose values all lie in `lo..hi`;
    /// `message` (with `{}` for the offending value) is raised as `kind` if not.
    pub fn check_range(
        &mut self,
        idx: ValueId,
        (lo, hi): (i64, i64),
        kind: CheckKind,
        message: String,
    ) -> Result<()> {
        use tpu_graph::{BinaryKind, CmpDir, ReduceKind};
        self.require_index_dtype(idx, "index")?;
        if self.g.ty(idx).numel() == 0 {
            return Ok(());
        }
        let idx = self.g.convert(idx, DType::I64);
        let lo_v = self.g.full_like(idx, lo as f64, DType::I64);
        let hi_v = self.g.full_like(idx, hi as f64, DType::I64);
        let ge = self.g.compare(CmpDir::Ge, idx, lo_v)?;
        let lt = self.g.compare(CmpDir::Lt, idx, hi_v)?;
        let ok = self.g.binary(BinaryKind::And, ge, lt)?;
        let dims: Vec<i64> = (0..self.g.rank(ok) as i64).collect();
        let all = self.g.reduce(ReduceKind::And, ok, &dims)?;
        // Any offending value: in-range entries drop out of the max.
        let floor = self.g.full_like(idx, i64::MIN as f64, DType::I64);
        let bad = self.g.select(ok, floor, idx)?;
        let value = self.g.reduce(ReduceKind::Max, bad, &dims)?;
        self.checks.push(Check {
            ok: all,
            value,
            kind,
            message,
        });
        Ok(())
    }

    /// An index into a dimension of `size` (`0..size`), with PyTorch's
    /// "index out of range in self" `IndexError`.
    pub fn check_index(&mut self, idx: ValueId, size: i64, what: &str) -> Result<()> {
        self.check_range(
            idx,
            (0, size),
            CheckKind::Index,
            format!("{what}: index {{}} out of range in self (size {size})"),
        )
    }

    /// Integer division (`divisor` of an integer dtype): no element may be 0
    /// (`RuntimeError: ZeroDivisionError`, as on CPU).
    pub fn check_nonzero_divisor(&mut self, divisor: ValueId) -> Result<()> {
        if self.g.ty(divisor).numel() == 0 {
            return Ok(());
        }
        self.check_all_nonzero(divisor, "ZeroDivisionError".into())
    }

    /// A one-element tensor that must be nonzero (true), else `message` is
    /// raised as a `RuntimeError` at the next host sync (debug mode: at the op).
    pub fn check_true(&mut self, cond: ValueId, message: String) -> Result<()> {
        if self.g.ty(cond).numel() != 1 {
            return Err(LowerError::Invalid(format!(
                "Boolean value of Tensor with more than one value is ambiguous (got {})",
                self.g.ty(cond)
            )));
        }
        // `{}` is where an offending value would go: keep the user's braces literal.
        self.check_all_nonzero(cond, message.replace("{}", "{ }"))
    }

    /// Every element of `x` nonzero, else `message` as a `RuntimeError`.
    pub fn check_all_nonzero(&mut self, x: ValueId, message: String) -> Result<()> {
        use tpu_graph::{CmpDir, ReduceKind};
        let zero = self.g.full_like(x, 0.0, self.g.dtype(x));
        let ok = self.g.compare(CmpDir::Ne, x, zero)?;
        let dims: Vec<i64> = (0..self.g.rank(ok) as i64).collect();
        let ok = self.g.reduce(ReduceKind::And, ok, &dims)?;
        let value = self
            .g
            .constant(tpu_graph::ConstVal::Int(0), DType::I64, &[]);
        self.checks.push(Check {
            ok,
            value,
            kind: CheckKind::Runtime,
            message,
        });
        Ok(())
    }

    /// RNG state parameter seeded from the default generator at every run.
    pub fn default_rng_state(&mut self) -> ValueId {
        let p = self.g.parameter(ValueType::new(DType::U64, &[2]));
        self.host.push((p, HostValue::DefaultSeed));
        p
    }

    /// RNG state for an optional generator argument `i`: its seed, or the default generator's.
    pub fn rng_state_arg(&mut self, a: &Args, i: usize) -> Result<ValueId> {
        match a.arg(i) {
            Arg::Seed(s) => Ok(self.rng_state(*s)),
            _ => Ok(self.default_rng_state()),
        }
    }

    /// Type of the `i`-th written tensor.
    pub fn out_type(&self, i: usize) -> Result<&ValueType> {
        self.out_types
            .get(i)
            .ok_or_else(|| LowerError::Invalid("this op needs an output tensor".into()))
    }
}

/// Typed access to a call's arguments, with errors naming the position.
pub struct Args<'a>(pub &'a [Arg]);

fn wrong<T>(i: usize, want: &str, got: &Arg) -> Result<T> {
    Err(LowerError::Invalid(format!(
        "argument {i}: expected {want}, got {got:?}"
    )))
}

impl Args<'_> {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn get(&self, i: usize) -> &Arg {
        self.0.get(i).unwrap_or(&Arg::None)
    }
    pub fn has(&self, i: usize) -> bool {
        !self.get(i).is_none()
    }
    pub fn tensor(&self, i: usize) -> Result<TensorArg> {
        match self.get(i) {
            Arg::Tensor(t) => Ok(*t),
            a => wrong(i, "a tensor", a),
        }
    }
    /// The tensor's graph value.
    pub fn t(&self, i: usize) -> Result<ValueId> {
        Ok(self.tensor(i)?.v)
    }
    pub fn opt_t(&self, i: usize) -> Result<Option<ValueId>> {
        match self.get(i) {
            Arg::None => Ok(None),
            Arg::Tensor(t) => Ok(Some(t.v)),
            a => wrong(i, "a tensor or None", a),
        }
    }
    pub fn tensors(&self, i: usize) -> Result<Vec<ValueId>> {
        match self.get(i) {
            Arg::Tensors(ts) => ts
                .iter()
                .map(|t| {
                    t.map(|t| t.v).ok_or_else(|| {
                        LowerError::Invalid(format!("argument {i}: None in tensor list"))
                    })
                })
                .collect(),
            a => wrong(i, "a tensor list", a),
        }
    }
    pub fn opt_tensors(&self, i: usize) -> Result<Vec<Option<ValueId>>> {
        match self.get(i) {
            Arg::Tensors(ts) => Ok(ts.iter().map(|t| t.map(|t| t.v)).collect()),
            a => wrong(i, "a tensor list", a),
        }
    }
    pub fn int(&self, i: usize) -> Result<i64> {
        match self.get(i) {
            Arg::Int(v) => Ok(*v),
            Arg::Scalar(ScalarArg::Int(v)) => Ok(*v),
            Arg::Bool(b) => Ok(*b as i64),
            a => wrong(i, "an int", a),
        }
    }
    pub fn int_or(&self, i: usize, default: i64) -> Result<i64> {
        if self.has(i) {
            self.int(i)
        } else {
            Ok(default)
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        if self.has(i) {
            self.int(i).map(Some)
        } else {
            Ok(None)
        }
    }
    pub fn float(&self, i: usize) -> Result<f64> {
        match self.get(i) {
            Arg::Float(v) => Ok(*v),
            Arg::Int(v) => Ok(*v as f64),
            Arg::Scalar(s) => Ok(s.as_f64()),
            a => wrong(i, "a float", a),
        }
    }
    pub fn float_or(&self, i: usize, default: f64) -> Result<f64> {
        if self.has(i) {
            self.float(i)
        } else {
            Ok(default)
        }
    }
    pub fn bool(&self, i: usize) -> Result<bool> {
        match self.get(i) {
            Arg::Bool(v) => Ok(*v),
            Arg::Int(v) => Ok(*v != 0),
            a => wrong(i, "a bool", a),
        }
    }
    pub fn bool_or(&self, i: usize, default: bool) -> Result<bool> {
        if self.has(i) {
            self.bool(i)
        } else {
            Ok(default)
        }
    }
    pub fn ints(&self, i: usize) -> Result<Vec<i64>> {
        match self.get(i) {
            Arg::Ints(v) => Ok(v.clone()),
            Arg::Int(v) => Ok(vec![*v]),
            a => wrong(i, "an int list", a),
        }
    }
    /// An optional int list (`int[1]?`): None gives an empty list.
    pub fn ints_or_empty(&self, i: usize) -> Result<Vec<i64>> {
        if self.has(i) {
            self.ints(i)
        } else {
            Ok(vec![])
        }
    }
    pub fn bools(&self, i: usize) -> Result<Vec<bool>> {
        match self.get(i) {
            Arg::Bools(v) => Ok(v.clone()),
            a => wrong(i, "a bool list", a),
        }
    }
    pub fn scalar(&self, i: usize) -> Result<ScalarArg> {
        match self.get(i) {
            Arg::Scalar(s) => Ok(*s),
            Arg::Int(v) => Ok(ScalarArg::Int(*v)),
            Arg::Float(v) => Ok(ScalarArg::Float(*v)),
            Arg::Bool(v) => Ok(ScalarArg::Bool(*v)),
            a => wrong(i, "a scalar", a),
        }
    }
    pub fn opt_scalar(&self, i: usize) -> Result<Option<ScalarArg>> {
        if self.has(i) {
            self.scalar(i).map(Some)
        } else {
            Ok(None)
        }
    }
    pub fn opt_dtype(&self, i: usize) -> Result<Option<DType>> {
        match self.get(i) {
            Arg::None => Ok(None),
            Arg::DType(d) => Ok(Some(*d)),
            a => wrong(i, "a dtype", a),
        }
    }
    pub fn str(&self, i: usize) -> Result<Option<&str>> {
        match self.get(i) {
            Arg::None => Ok(None),
            Arg::Str(s) => Ok(Some(s)),
            a => wrong(i, "a string", a),
        }
    }
    pub fn seed(&self, i: usize) -> Result<u64> {
        match self.get(i) {
            Arg::Seed(s) => Ok(*s),
            a => wrong(i, "a generator seed", a),
        }
    }
    pub fn arg(&self, i: usize) -> &Arg {
        self.get(i)
    }
}

#[derive(Default)]
pub struct Registry {
    rules: FxHashMap<&'static str, Rule>,
}

impl Registry {
    /// Registers `rule` for each overload name (`"add.out"`, without `aten::`).
    pub fn add(&mut self, names: &[&'static str], rule: Rule) {
        for n in names {
            let previous = self.rules.insert(n, rule);
            debug_assert!(previous.is_none(), "two rules for {n}");
        }
    }

    pub fn get(&self, name: &str) -> Option<Rule> {
        self.rules.get(name).copied()
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.rules.keys().copied().collect();
        v.sort_unstable();
        v
    }
}
