//! The executor: the one place that decides what the eager mode does with
//! work. Every op, copy and data-dependent program comes through here:
//!
//! - [`run`]: work recorded as the mode says: fused and capture record into
//!   the open trace (`fused.rs`); strict records a trace of its own and runs
//!   it at once without waiting; debug runs it, waits for what it wrote and
//!   raises its value checks at the op.
//! - [`run_op`]: a lowered op, which in strict mode first tries the op
//!   cache's compiled program for the call's signature (`opcache.rs`).
//! - [`now`]: a program whose results the host needs at once (a read to the
//!   host, a data-dependent size), in every mode; the pending work it reads
//!   is cut first.

use crate::error::Result;
use crate::mode::{self, Mode};
use crate::op::{CallArg, Outcome};
use crate::storage::Storage;
use crate::trace::Trace;
use crate::{checks, fused, opcache, record};
use pjrt::Buffer;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tpu_lower::registry::Rule;

/// Runs `f` on a trace as the current mode runs work. `step` is a dispatched
/// op's step signature (fused mode's step detection); `reason` names the cut
/// in the metrics when the work runs alone.
pub fn run<R>(
    device: usize,
    reason: &str,
    step: Option<(u64, bool)>,
    f: impl FnOnce(&mut Trace) -> Result<R>,
) -> Result<R> {
    match mode::current() {
        Mode::Fused => match step {
            Some(sig) => fused::with_trace_step(device, sig, f),
            None => fused::with_trace(device, f),
        },
        Mode::Capture => fused::with_trace(device, f),
        Mode::Strict => {
            let mut t = Trace::new(device);
            let r = f(&mut t)?;
            t.cut(reason)?;
            Ok(r)
        }
        Mode::Debug => {
            let mut t = debug_trace(device);
            let r = f(&mut t)?;
            let written = t.written_storages();
            t.cut(reason)?;
            Trace::wait_written(&written)?;
            Ok(r)
        }
    }
}

/// A trace that checks for NaN (when asked) and raises its value checks at once.
fn debug_trace(device: usize) -> Trace {
    let mut t = Trace::new(device);
    t.nan_check = mode::NAN_CHECK.load(Relaxed);
    t.sync_checks = true;
    t
}

/// Records and runs one lowered op (`rule`) in the current mode.
pub fn run_op(device: usize, op: &str, rule: Rule, args: &[CallArg]) -> Result<Outcome> {
    if mode::current() != Mode::Strict {
        let step = (mode::current() == Mode::Fused).then(|| {
            let in_place = args.iter().any(|a| a.is_write && !a.is_out);
            (record::step_signature(op, args), in_place)
        });
        return run(device, "op", step, |t| record::record(t, op, rule, args));
    }
    let sig = opcache::signature(op, args);
    if let Some(plan) = sig.and_then(opcache::lookup) {
        if let Some(r) = opcache::replay(&plan, args) {
            return r.map(Outcome::Done);
        }
    }
    let mut t = Trace::new(device);
    let outcome = record::record(&mut t, op, rule, args)?;
    let (_, program) = t.cut_planned("op")?;
    if let (Some(sig), Some(program), Outcome::Done(rets)) = (sig, program, &outcome) {
        opcache::remember(sig, args, rets, program);
    }
    Ok(outcome)
}

/// Runs the program `f` builds now, in every mode, and returns what `f`
/// returns with the buffers of its extra outputs. Work pending on `inputs`
/// (in the open fused trace) is cut and run first; value checks that failed
/// before this read are raised.
pub fn now<R>(
    device: usize,
    reason: &str,
    inputs: &[&Arc<Storage>],
    f: impl FnOnce(&mut Trace) -> Result<R>,
) -> Result<(R, Vec<Arc<Buffer>>)> {
    for s in inputs {
        fused::ensure_computed(s, reason)?;
    }
    let mut t = Trace::new(device);
    let r = f(&mut t)?;
    let out = t.cut(reason)?;
    checks::raise_pending()?;
    Ok((r, out))
}
