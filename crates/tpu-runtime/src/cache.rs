//! Executable caches. In memory: graphs keyed by their structural hash, so
//! the same graph (ops, shapes, dtypes, aliasing) compiles once per process.
//! On disk (`diskcache`): entries keyed and checked by a hash of everything
//! the executable is compiled from; a corrupt or foreign entry is recompiled.

use crate::diskcache::{self, Source};
use crate::error::Result;
use crate::{metrics, platform};
use pjrt::LoadedExecutable;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use tpu_graph::{Graph, GraphKey};

static MEMORY: Mutex<Option<HashMap<GraphKey, Arc<LoadedExecutable>>>> = Mutex::new(None);
/// Graphs being compiled on a background thread ([`compile_in_background`]):
/// a caller wanting one of them waits for it instead of compiling it again.
static IN_FLIGHT: Mutex<Option<HashSet<GraphKey>>> = Mutex::new(None);
static LANDED: Condvar = Condvar::new();
/// Graph sites (op sequences, shapes aside) that have compiled at least once.
static SITES: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

/// The options every graph compiles with; part of the disk cache's key.
const COMPILE_OPTIONS: &[u8] = pjrt::PORTABLE_COMPILE_OPTIONS;

/// Where a graph comes from, for recompile accounting: the same site
/// compiling again means its shapes or attributes changed.
pub struct Site<'a> {
    pub hash: u64,
    pub name: &'a str,
}

/// The executable for `g`: from memory, else from disk, else compiled.
pub fn executable(g: &Graph, site: &Site) -> Result<Arc<LoadedExecutable>> {
    let key = g.structural_hash();
    wait_in_flight(&key);
    if let Some(e) = MEMORY
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::default)
        .get(&key)
    {
        metrics::add(&metrics::COUNTERS.cache_hits_memory, 1);
        return Ok(e.clone());
    }
    metrics::add(&metrics::COUNTERS.cache_misses_memory, 1);
    compile_unless_cached(g, key, site)
}

/// From disk, else compiled; then kept in memory. `key` is `g`'s structural hash.
fn compile_unless_cached(g: &Graph, key: GraphKey, site: &Site) -> Result<Arc<LoadedExecutable>> {
    if let Some(e) = MEMORY.lock().unwrap().as_ref().and_then(|m| m.get(&key)) {
        return Ok(e.clone());
    }
    let text = g.to_stablehlo();
    dump(&key, &text);
    let platform = platform::get()?;
    let source = Source {
        identity: &platform.identity,
        options: COMPILE_OPTIONS,
        text: &text,
    }
    .hash();
    let exe = match diskcache::load(&platform.client, &source) {
        Some(e) => e,
        None => {
            let start = Instant::now();
            let _range = crate::profile::scope(|| {
                format!("tpu::compile {} ({})", key_name(&key), site.name)
            });
            let exe =
                platform
                    .client
                    .compile_with_options(text.as_bytes(), "mlir", COMPILE_OPTIONS)?;
            metrics::count_compile(site.name, start.elapsed().as_nanos() as u64);
            if !SITES
                .lock()
                .unwrap()
                .get_or_insert_with(HashSet::default)
                .insert(site.hash)
            {
                metrics::count_recompile(site.name);
            }
            diskcache::store(&source, &exe);
            exe
        }
    };
    let exe = Arc::new(exe);
    MEMORY
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::default)
        .insert(key, exe.clone());
    Ok(exe)
}

/// Returns once `key` is not being compiled in the background.
fn wait_in_flight(key: &GraphKey) {
    wait_while(|in_flight| in_flight.contains(key));
}

/// Waits for background compiles to land while `busy` holds of the keys in flight.
fn wait_while(busy: impl Fn(&HashSet<GraphKey>) -> bool) {
    let mut in_flight = IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while in_flight.as_ref().is_some_and(&busy) {
        in_flight = LANDED
            .wait(in_flight)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Compiles `g` on a thread of its own into the memory and disk caches, so
/// that the call that needs it later finds it (or waits for it) instead of
/// compiling: what `torch.compile`'s `precompile_sizes` uses. A failure is
/// counted and left for that later call to raise.
pub fn compile_in_background(g: Graph, site_name: String, site_hash: u64) {
    let key = g.structural_hash();
    let fresh = IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(HashSet::default)
        .insert(key);
    if !fresh {
        return;
    }
    metrics::add(&metrics::COUNTERS.background_compiles, 1);
    let spawned = std::thread::Builder::new()
        .name("tpu-compile".into())
        .spawn(move || {
            let site = Site {
                hash: site_hash,
                name: &site_name,
            };
            if compile_unless_cached(&g, key, &site).is_err() {
                metrics::add(&metrics::COUNTERS.background_compile_failures, 1);
            }
            land(&key);
        });
    if spawned.is_err() {
        metrics::add(&metrics::COUNTERS.background_compile_failures, 1);
        land(&key);
    }
}

fn land(key: &GraphKey) {
    if let Some(k) = IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
    {
        k.remove(key);
    }
    LANDED.notify_all();
}

/// Waits for every background compile (tests, and before reading metrics).
pub fn wait_background_compiles() {
    wait_while(|in_flight| !in_flight.is_empty());
}

/// The disk cache's directory in use; `None` when disabled or refused.
pub fn cache_dir() -> Option<PathBuf> {
    diskcache::dir()
}

/// Writes the module to `TORCH_TPU_DUMP_DIR` if set.
fn dump(key: &GraphKey, text: &str) {
    if let Ok(Some(dir)) = crate::env::DUMP_DIR.get() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{}.mlir", key_name(key))), text);
    }
}

/// A graph's name in dumps and profiles: `graph_<structural hash>`.
pub fn key_name(key: &GraphKey) -> String {
    format!("graph_{:016x}{:016x}", key.0, key.1)
}

pub fn clear() {
    *MEMORY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}
