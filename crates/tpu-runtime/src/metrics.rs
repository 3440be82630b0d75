//! Counters behind `torch_tpu.metrics()`: ops, executions, compiles, caches,
//! cut reasons, recompiles, CPU fallbacks and bytes moved.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Counters {
    pub ops_dispatched: AtomicU64,
    pub ops_recorded: AtomicU64,
    pub executions: AtomicU64,
    pub compiles: AtomicU64,
    pub compile_ns: AtomicU64,
    pub cache_hits_memory: AtomicU64,
    pub cache_misses_memory: AtomicU64,
    pub cache_hits_disk: AtomicU64,
    pub cache_misses_disk: AtomicU64,
    /// Entries not used: corrupt or foreign.
    pub cache_corrupt_disk: AtomicU64,
    /// Of those, intact entries compiled from another source (renamed or copied).
    pub cache_foreign_disk: AtomicU64,
    pub bytes_to_device: AtomicU64,
    pub bytes_to_host: AtomicU64,
    pub transfers_to_host: AtomicU64,
    /// Programs handed to a background compile thread (`cache::compile_in_background`).
    pub background_compiles: AtomicU64,
    pub background_compile_failures: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    ops_dispatched: AtomicU64::new(0),
    ops_recorded: AtomicU64::new(0),
    executions: AtomicU64::new(0),
    compiles: AtomicU64::new(0),
    compile_ns: AtomicU64::new(0),
    cache_hits_memory: AtomicU64::new(0),
    cache_misses_memory: AtomicU64::new(0),
    cache_hits_disk: AtomicU64::new(0),
    cache_misses_disk: AtomicU64::new(0),
    cache_corrupt_disk: AtomicU64::new(0),
    cache_foreign_disk: AtomicU64::new(0),
    bytes_to_device: AtomicU64::new(0),
    bytes_to_host: AtomicU64::new(0),
    transfers_to_host: AtomicU64::new(0),
    background_compiles: AtomicU64::new(0),
    background_compile_failures: AtomicU64::new(0),
};

/// Named counts: CPU fallbacks by op, cut reasons, recompiles by graph site.
#[derive(Default)]
pub struct Tables {
    pub cpu_fallbacks: BTreeMap<String, u64>,
    pub cut_reasons: BTreeMap<String, u64>,
    pub recompiles: BTreeMap<String, u64>,
    /// Seconds spent compiling, by graph site (summed over its compiles).
    pub compile_seconds: BTreeMap<String, f64>,
}

pub static TABLES: Mutex<Tables> = Mutex::new(Tables {
    cpu_fallbacks: BTreeMap::new(),
    cut_reasons: BTreeMap::new(),
    recompiles: BTreeMap::new(),
    compile_seconds: BTreeMap::new(),
});

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

pub fn count_execution(ops: usize) {
    add(&COUNTERS.executions, 1);
    add(&COUNTERS.ops_recorded, ops as u64);
}

fn bump(table: impl FnOnce(&mut Tables) -> &mut BTreeMap<String, u64>, key: &str) {
    let mut t = TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *table(&mut t).entry(key.to_string()).or_insert(0) += 1;
}

pub fn count_cpu_fallback(op: &str) {
    bump(|t| &mut t.cpu_fallbacks, op);
}

pub fn count_cut(reason: &str) {
    bump(|t| &mut t.cut_reasons, reason);
}

/// One compile of the graph at `site` that took `ns`.
pub fn count_compile(site: &str, ns: u64) {
    add(&COUNTERS.compiles, 1);
    add(&COUNTERS.compile_ns, ns);
    let mut t = TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *t.compile_seconds.entry(site.to_string()).or_insert(0.0) += ns as f64 * 1e-9;
}

pub fn count_recompile(site: &str) {
    bump(|t| &mut t.recompiles, site);
}

pub fn reset() {
    let c = &COUNTERS;
    for a in [
        &c.ops_dispatched,
        &c.ops_recorded,
        &c.executions,
        &c.compiles,
        &c.compile_ns,
        &c.cache_hits_memory,
        &c.cache_misses_memory,
        &c.cache_hits_disk,
        &c.cache_misses_disk,
        &c.cache_corrupt_disk,
        &c.cache_foreign_disk,
        &c.bytes_to_device,
        &c.bytes_to_host,
        &c.transfers_to_host,
        &c.background_compiles,
        &c.background_compile_failures,
    ] {
        a.store(0, Relaxed);
    }
    *TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Tables::default();
}
