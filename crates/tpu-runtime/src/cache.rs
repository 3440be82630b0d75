//! Executable caches. In memory: graphs keyed by their structural hash, so
//! the same graph (ops, shapes, dtypes, aliasing) compiles once per process.
//! On disk: PJRT-serialized executables under `TORCH_TPU_CACHE_DIR` (default
//! `~/.cache/torch_tpu`), keyed by a SHA-256 of the plugin's identity and the
//! StableHLO text; a corrupt or foreign entry is detected and recompiled.

use crate::error::Result;
use crate::{metrics, platform};
use pjrt::LoadedExecutable;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tpu_graph::{Graph, GraphKey};

static MEMORY: Mutex<Option<HashMap<GraphKey, Arc<LoadedExecutable>>>> = Mutex::new(None);
/// Graph sites (op sequences, shapes aside) that have compiled at least once.
static SITES: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

const MAGIC: &[u8; 8] = b"TTPUEXE1";

/// Where a graph comes from, for recompile accounting: the same site
/// compiling again means its shapes or attributes changed.
pub struct Site<'a> {
    pub hash: u64,
    pub name: &'a str,
}

/// The executable for `g`: from memory, else from disk, else compiled.
pub fn executable(g: &Graph, site: &Site) -> Result<Arc<LoadedExecutable>> {
    let key = g.structural_hash();
    if let Some(e) = MEMORY
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        metrics::add(&metrics::COUNTERS.cache_hits_memory, 1);
        return Ok(e.clone());
    }
    metrics::add(&metrics::COUNTERS.cache_misses_memory, 1);
    let text = g.to_stablehlo();
    dump(&key, &text);
    let platform = platform::get()?;
    let digest = disk_key(&platform.identity, &text);
    let exe = match load(&digest) {
        Some(e) => e,
        None => {
            let start = Instant::now();
            let _range = crate::profile::scope(|| {
                format!("tpu::compile {} ({})", key_name(&key), site.name)
            });
            let exe = platform.client.compile(&text)?;
            metrics::add(&metrics::COUNTERS.compiles, 1);
            metrics::add(
                &metrics::COUNTERS.compile_ns,
                start.elapsed().as_nanos() as u64,
            );
            if !SITES
                .lock()
                .unwrap()
                .get_or_insert_with(HashSet::new)
                .insert(site.hash)
            {
                metrics::count_recompile(site.name);
            }
            store(&digest, &exe);
            exe
        }
    };
    let exe = Arc::new(exe);
    MEMORY
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, exe.clone());
    Ok(exe)
}

fn disk_key(identity: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(identity.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The disk cache's directory; `None` when disabled (`TORCH_TPU_CACHE_DIR=0`).
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var("TORCH_TPU_CACHE_DIR") {
        Ok(d) if d.is_empty() || d == "0" => None,
        Ok(d) => Some(PathBuf::from(d)),
        Err(_) => {
            let base = std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok()?;
            Some(base.join("torch_tpu"))
        }
    }
}

fn entry_path(digest: &str) -> Option<PathBuf> {
    cache_dir().map(|d| d.join(format!("{digest}.xexe")))
}

/// File layout: magic, the entry's key (64 hex bytes), SHA-256 of the payload (32 bytes), payload.
fn load(digest: &str) -> Option<LoadedExecutable> {
    let path = entry_path(digest)?;
    let Ok(bytes) = std::fs::read(&path) else {
        metrics::add(&metrics::COUNTERS.cache_misses_disk, 1);
        return None;
    };
    let valid = bytes.len() > 8 + 64 + 32
        && &bytes[..8] == MAGIC
        && &bytes[8..72] == digest.as_bytes()
        && Sha256::digest(&bytes[104..]).as_slice() == &bytes[72..104];
    let exe = valid
        .then(|| {
            platform::get()
                .ok()?
                .client
                .deserialize_and_load(&bytes[104..])
                .ok()
        })
        .flatten();
    match exe {
        Some(e) => {
            metrics::add(&metrics::COUNTERS.cache_hits_disk, 1);
            Some(e)
        }
        None => {
            metrics::add(&metrics::COUNTERS.cache_corrupt_disk, 1);
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

fn store(digest: &str, exe: &LoadedExecutable) {
    let (Some(path), Ok(payload)) = (entry_path(digest), exe.serialize()) else {
        return;
    };
    let mut bytes = Vec::with_capacity(payload.len() + 104);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(digest.as_bytes());
    bytes.extend_from_slice(&Sha256::digest(&payload));
    bytes.extend_from_slice(&payload);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, &bytes).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// Writes the module to `TORCH_TPU_DUMP_DIR` if set.
fn dump(key: &GraphKey, text: &str) {
    if let Ok(dir) = std::env::var("TORCH_TPU_DUMP_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(format!("{dir}/{}.mlir", key_name(key)), text);
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
