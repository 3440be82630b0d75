//! Fused mode: one open trace collects ops until a cut point — a read to
//! host, `sync()`, a size limit, a mode switch — and then runs as one program.
//! Every cut is counted by reason in the metrics.

use crate::error::Result;
use crate::metrics;
use crate::storage::{Storage, Value};
use crate::trace::Trace;
use std::sync::{Arc, Mutex};

static OPEN: Mutex<Option<Trace>> = Mutex::new(None);

/// Largest number of ops in one fused graph (`TORCH_TPU_FUSED_MAX_OPS`).
fn max_ops() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| std::env::var("TORCH_TPU_FUSED_MAX_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(4096))
}

/// Records into the open trace (opening one for `device` if needed).
pub fn with_trace<R>(device: usize, f: impl FnOnce(&mut Trace) -> Result<R>) -> Result<R> {
    let mut open = OPEN.lock().unwrap();
    if open.as_ref().is_some_and(|t| t.device != device) {
        let t = open.take().expect("checked");
        metrics::count_cut("device change");
        t.cut("device change")?;
    }
    let t = open.get_or_insert_with(|| Trace::new(device));
    let r = f(t)?;
    if t.ops >= max_ops() {
        let t = open.take().expect("open");
        metrics::count_cut("size limit");
        t.cut("size limit")?;
    }
    Ok(r)
}

/// Runs the open trace, if any.
pub fn cut(reason: &str) -> Result<()> {
    let t = OPEN.lock().unwrap().take();
    match t {
        Some(t) if !t.is_empty() => {
            metrics::count_cut(reason);
            t.cut(reason).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// Cuts if the storage's value is still being computed by the open trace.
pub fn ensure_computed(s: &Arc<Storage>, reason: &str) -> Result<()> {
    if matches!(s.value(), Value::Pending(_)) {
        cut(reason)?;
    }
    Ok(())
}
