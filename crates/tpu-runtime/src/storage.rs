//! Storages: the runtime records behind PyTorch's opaque data pointers.
//!
//! A storage has a size in bytes and a value: nothing yet, a device buffer
//! (a flat rank-1 array of the storage's dtype), or a value pending in the
//! fused trace. Writes rebind the value; a storage is freed in
//! [`free`] when PyTorch drops its last reference (`tpu_storage_free`).

use crate::error::{Error, Result};
use pjrt::Buffer;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tpu_graph::{DType, ValueId};

/// A storage value that an open trace will compute: value `v` of trace `trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRef {
    pub trace: u64,
    pub v: ValueId,
}

#[derive(Clone)]
pub enum Value {
    /// Never written: reads as zeros.
    Empty,
    /// A flat buffer of `nbytes / dtype.size()` elements.
    Device(Arc<Buffer>, DType),
    /// The storage's value is being computed by the pending fused trace.
    Pending(PendingRef),
    /// The program computing the value failed (the message says why); reads raise.
    Failed(Arc<str>),
}

pub struct Storage {
    pub id: u64,
    /// The opaque address PyTorch sees as the data pointer.
    pub addr: u64,
    pub nbytes: usize,
    pub device: usize,
    pub value: Mutex<Value>,
}

impl Storage {
    pub fn value(&self) -> Value {
        self.value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    pub fn set(&self, v: Value) {
        *self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
    }
}

/// Address ranges are handed out once and never reused, spaced so that no two
/// storages overlap (PyTorch compares data pointers for overlap checks).
static NEXT_ADDR: AtomicU64 = AtomicU64::new(ADDR_START);
const ADDR_START: u64 = 1 << 40;
/// Addresses stay below this, so they are positive as `int64` (`data_ptr()`)
/// and `addr + nbytes` cannot overflow; a wrapped counter would alias storages.
pub const ADDR_END: u64 = 1 << 62;
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Registry {
    by_addr: BTreeMap<u64, std::sync::Weak<Storage>>,
    /// Per device index.
    stats: Vec<MemoryStats>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    by_addr: BTreeMap::new(),
    stats: Vec::new(),
});

impl Registry {
    fn stats_mut(&mut self, device: usize) -> &mut MemoryStats {
        if self.stats.len() <= device {
            self.stats.resize(device + 1, MemoryStats::default());
        }
        &mut self.stats[device]
    }
}

/// The start of a fresh range for `nbytes` (64-byte aligned, with a gap);
/// fails rather than wrap when the address space is used up.
fn reserve(nbytes: usize) -> Result<u64> {
    let exhausted = || Error::AddressSpace {
        nbytes: nbytes as u64,
    };
    let span = (nbytes as u64)
        .checked_next_multiple_of(64)
        .and_then(|n| n.checked_add(64))
        .ok_or_else(exhausted)?;
    NEXT_ADDR
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
            a.checked_add(span).filter(|end| *end <= ADDR_END)
        })
        .map_err(|_| exhausted())
}

pub fn new_storage(nbytes: usize, device: usize) -> Result<Arc<Storage>> {
    let addr = reserve(nbytes)?;
    let s = Arc::new(Storage {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        addr,
        nbytes,
        device,
        value: Mutex::new(Value::Empty),
    });
    let mut guard = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let r = &mut *guard;
    r.by_addr.insert(addr, Arc::downgrade(&s));
    let stats = r.stats_mut(device);
    stats.bytes.increase(nbytes as i64);
    stats.blocks.increase(1);
    Ok(s)
}

/// Drops PyTorch's reference; the device buffer goes when the last holder
/// (a pending trace may still hold the storage's inputs) lets go.
pub fn free(s: Arc<Storage>) {
    let mut r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.by_addr.remove(&s.addr);
    let stats = r.stats_mut(s.device);
    stats.bytes.decrease(s.nbytes as i64);
    stats.blocks.decrease(1);
    drop(r);
    if crate::platform::in_bad_fork() {
        // The plugin's threads are gone in a forked child: destroying a buffer
        // there can block forever, so the child leaks it (its memory is a copy).
        std::mem::forget(std::mem::replace(
            &mut *s
                .value
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Value::Empty,
        ));
    }
}

/// Every live storage.
pub fn live() -> Vec<Arc<Storage>> {
    REGISTRY
        .lock()
        .unwrap()
        .by_addr
        .values()
        .filter_map(|w| w.upgrade())
        .collect()
}

/// The storage whose address range contains `addr`.
pub fn from_addr(addr: u64) -> Option<Arc<Storage>> {
    let r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_, w) = r.by_addr.range(..=addr).next_back()?;
    let s = w.upgrade()?;
    (addr < s.addr + s.nbytes.max(1) as u64).then_some(s)
}

/// One of torch's allocator statistics (`c10::Stat`): its value now, its
/// peak, and the totals it has grown and shrunk by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counter {
    pub current: i64,
    pub peak: i64,
    pub allocated: i64,
    pub freed: i64,
}

impl Counter {
    fn increase(&mut self, n: i64) {
        self.current += n;
        self.allocated += n;
        self.peak = self.peak.max(self.current);
    }

    fn decrease(&mut self, n: i64) {
        self.current -= n;
        self.freed += n;
    }
}

/// A device's storages: their bytes and their number. Laid out for the C ABI
/// (`TpuMemoryStats`), which fills torch's `DeviceStats` from it. There is no
/// caching allocator: reserved equals allocated, and a freed storage's buffer
/// goes back to the plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemoryStats {
    pub bytes: Counter,
    pub blocks: Counter,
}

pub fn memory_stats(device: usize) -> MemoryStats {
    let r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.stats.get(device).copied().unwrap_or_default()
}

/// Peaks restart from the current values.
pub fn reset_peak(device: usize) {
    let mut r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stats = r.stats_mut(device);
    for c in [&mut stats.bytes, &mut stats.blocks] {
        c.peak = c.current;
    }
}

/// The grown and shrunk totals restart from zero.
pub fn reset_accumulated(device: usize) {
    let mut r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stats = r.stats_mut(device);
    for c in [&mut stats.bytes, &mut stats.blocks] {
        c.allocated = 0;
        c.freed = 0;
    }
}
