//! Where an op enters the runtime: one lookup in the op table finds either
//! its lowering rule (recorded by `record.rs`, run as the mode says by
//! `exec.rs`) or a runtime op (copies, `.item()`, data-dependent shapes:
//! `transfer.rs`, `dynamic.rs`).

use crate::error::{Error, Result};
use crate::op::{CallArg, Outcome, RuntimeOp};
use crate::{dynamic, exec, metrics, op, record, transfer};
use rustc_hash::FxHashMap;
use std::sync::OnceLock;
use tpu_lower::registry::{Registry, Rule};

/// What runs an op.
#[derive(Clone, Copy)]
pub enum OpImpl {
    /// A lowering rule of `tpu_lower`'s registry.
    Lowered(Rule),
    Runtime(RuntimeOp),
}

/// Every op by overload name: the lowering rules and the runtime's own ops
/// (which take precedence: they need the host or data-dependent sizes).
fn table() -> &'static FxHashMap<&'static str, OpImpl> {
    static TABLE: OnceLock<FxHashMap<&'static str, OpImpl>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let registry = Registry::global();
        let mut t: FxHashMap<&'static str, OpImpl> = registry
            .names()
            .into_iter()
            .filter_map(|n| registry.get(n).map(|r| (n, OpImpl::Lowered(r))))
            .collect();
        for &(name, f) in transfer::OPS.iter().chain(dynamic::OPS) {
            t.insert(name, OpImpl::Runtime(f));
        }
        t
    })
}

/// The ops the runtime implements itself.
pub fn runtime_op_names() -> Vec<&'static str> {
    transfer::OPS
        .iter()
        .chain(dynamic::OPS)
        .map(|&(n, _)| n)
        .collect()
}

/// What runs `op` (overload name without namespace, `"add.out"`), if anything.
pub fn lookup(op: &str) -> Option<OpImpl> {
    table().get(op).copied()
}

/// Runs one op; `op` is the overload name without namespace (`"add.out"`).
pub fn dispatch(op: &str, args: &[CallArg]) -> Result<Outcome> {
    metrics::add(&metrics::COUNTERS.ops_dispatched, 1);
    let found = lookup(op);
    if let Some(OpImpl::Runtime(f)) = found {
        return f(args);
    }
    // Indexing with bool masks becomes indexing with their nonzero
    // coordinates (a data-dependent size, read first).
    if let Some(expanded) = dynamic::expand_bool_indices(op, args)? {
        return dispatch(op, &expanded);
    }
    let Some(OpImpl::Lowered(rule)) = found else {
        return Err(Error::NotImplemented(format!(
            "The operator 'aten::{op}' is not implemented for the tpu device (no lowering). \
             Set TORCH_TPU_CPU_FALLBACK=1 to run it on the CPU (counted in torch_tpu.metrics())."
        )));
    };
    let device = op::device_of(args)?;
    record::check_overlap(op, args)?;
    exec::run_op(device, op, rule, args)
}
