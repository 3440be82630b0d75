//! Value checks computed on the device beside a program's results (index
//! ranges, integer division by zero, debug mode's NaN check).
//!
//! Every check becomes two int64 entries of one status vector, the program's
//! last output: `[failed, offending value]`. Debug mode reads it when the
//! program has run and fails the op. Strict and fused modes stay
//! asynchronous: the vector is kept here and the next host sync (a read to
//! host, `.item()`, `torch.tpu.synchronize()`) raises the first failure, as
//! CUDA reports a device-side assert at the next synchronizing call.

use crate::error::{Error, Result};
use pjrt::Buffer;
use std::sync::{Arc, Mutex};
use tpu_graph::{ConstVal, DType, Graph, ValueId};
use tpu_lower::registry::{Check, CheckKind};

/// A check's error without its graph values.
#[derive(Clone, Debug)]
pub struct CheckMeta {
    pub kind: CheckKind,
    /// With `{}` where the offending value goes.
    pub message: String,
}

impl CheckMeta {
    pub fn of(c: &Check) -> CheckMeta {
        CheckMeta {
            kind: c.kind,
            message: c.message.clone(),
        }
    }

    fn error(&self, value: i64, deferred: bool) -> Error {
        let mut m = self.message.replacen("{}", &value.to_string(), 1);
        if deferred {
            m.push_str(
                " (found by a program that ran asynchronously before this host sync; \
                 set TORCH_TPU_EAGER_MODE=debug to raise at the op)",
            );
        }
        match self.kind {
            CheckKind::Index => Error::Index(m),
            CheckKind::Runtime => Error::Invalid(m),
        }
    }
}

/// The status vector `int64[2 * checks]` of `checks`.
pub fn status_vector(g: &mut Graph, checks: &[Check]) -> Result<ValueId> {
    let zero = g.constant(ConstVal::Int(0), DType::I64, &[]);
    let one = g.constant(ConstVal::Int(1), DType::I64, &[]);
    let mut parts = Vec::with_capacity(2 * checks.len());
    for c in checks {
        let failed = g.select(c.ok, zero, one)?;
        let value = g.convert(c.value, DType::I64);
        parts.push(g.reshape(failed, &[1])?);
        parts.push(g.reshape(value, &[1])?);
    }
    Ok(g.concatenate(&parts, 0)?)
}

/// Reads a status vector; the first failed check's error (`deferred`: the
/// program ran before the current host sync, not at the current op).
pub fn verify(status: &Buffer, metas: &[CheckMeta], deferred: bool) -> Result<()> {
    let mut bytes = vec![0u8; 16 * metas.len()];
    status.to_host(&mut bytes)?;
    let word = |i: usize| i64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    for (k, m) in metas.iter().enumerate() {
        if word(2 * k) != 0 {
            return Err(m.error(word(2 * k + 1), deferred));
        }
    }
    Ok(())
}

type Pending = (Arc<Buffer>, Arc<[CheckMeta]>);

/// Status vectors of programs run since the last host sync, oldest first.
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

/// Beyond this many the oldest are read at once, so the list stays short
/// when a loop never syncs (they are long finished by then).
const MAX_PENDING: usize = 256;

/// Keeps a program's status vector for the next host sync.
pub fn defer(status: Arc<Buffer>, metas: Arc<[CheckMeta]>) -> Result<()> {
    let old: Vec<Pending> = {
        let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        p.push((status, metas));
        if p.len() <= MAX_PENDING {
            return Ok(());
        }
        p.drain(..MAX_PENDING / 2).collect()
    };
    verify_all(old)
}

fn verify_all(pending: Vec<Pending>) -> Result<()> {
    for (buf, metas) in pending {
        if let Err(e) = verify(&buf, &metas, true) {
            // One failure is reported; a later sync starts clean.
            PENDING.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return Err(e);
        }
    }
    Ok(())
}

/// A host sync: raises the first failed check of the programs run since the last one.
pub fn raise_pending() -> Result<()> {
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    if pending.is_empty() {
        return Ok(());
    }
    verify_all(pending)
}
