//! The executable cache: graphs are keyed by their structural hash, so the
//! same graph (same ops, shapes, dtypes, aliasing) compiles once per process.

use crate::error::Result;
use crate::{metrics, platform};
use pjrt::LoadedExecutable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tpu_graph::{Graph, GraphKey};

static MEMORY: Mutex<Option<HashMap<GraphKey, Arc<LoadedExecutable>>>> = Mutex::new(None);

/// The executable for `g`: from memory, else compiled (and remembered).
pub fn executable(g: &Graph, site: &str) -> Result<Arc<LoadedExecutable>> {
    let key = g.structural_hash();
    if let Some(e) = MEMORY.lock().unwrap().get_or_insert_with(HashMap::new).get(&key) {
        metrics::add(&metrics::COUNTERS.cache_hits_memory, 1);
        return Ok(e.clone());
    }
    metrics::add(&metrics::COUNTERS.cache_misses_memory, 1);
    let text = g.to_stablehlo();
    dump(&key, &text);
    let start = Instant::now();
    let exe = Arc::new(platform::get()?.client.compile(&text)?);
    metrics::add(&metrics::COUNTERS.compiles, 1);
    metrics::add(&metrics::COUNTERS.compile_ns, start.elapsed().as_nanos() as u64);
    let _ = site;
    MEMORY.lock().unwrap().get_or_insert_with(HashMap::new).insert(key, exe.clone());
    Ok(exe)
}

/// Writes the module to `TORCH_TPU_DUMP_DIR` if set.
fn dump(key: &GraphKey, text: &str) {
    if let Ok(dir) = std::env::var("TORCH_TPU_DUMP_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(format!("{dir}/graph_{:016x}{:016x}.mlir", key.0, key.1), text);
    }
}

pub fn clear() {
    *MEMORY.lock().unwrap() = None;
}
