//! Plugin choice and the process-wide PJRT client.
//!
//! Order: `TORCH_TPU_PJRT_PLUGIN` (a path), else `TORCH_TPU_PLATFORM`
//! (tpu|cuda|cpu), else the first found of libtpu, JAX's CUDA plugin (with a
//! visible GPU), a CPU plugin (newest PJRT API first). The candidates come from
//! the running interpreter (`torch_tpu/_plugins.py`), or `TORCH_TPU_SITE_PACKAGES`.

use crate::env;
use crate::error::{Error, Result};
use pjrt::{Api, Client, Device, NamedValue};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

pub struct Platform {
    pub name: String,
    pub plugin: PathBuf,
    pub client: Client,
    pub devices: Vec<Device>,
    /// Identifies the plugin build and the compiler flags it reads: part of
    /// every disk-cache key.
    pub identity: String,
    /// The PJRT C API version the plugin implements.
    pub api_version: (i32, i32),
}

static PLATFORM: OnceLock<std::result::Result<Platform, String>> = OnceLock::new();

/// Set in a child process forked after the platform started: the plugin's
/// threads did not survive the fork, so the device must not be touched there.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Called in a forked child (Python's `os.register_at_fork`).
pub fn mark_forked() {
    if PLATFORM.get().is_some() {
        FORKED.store(true, Ordering::Relaxed);
    }
}

/// True once the platform started successfully.
pub fn is_started() -> bool {
    matches!(PLATFORM.get(), Some(Ok(_)))
}

pub fn in_bad_fork() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// The platform, initialised on first use (Python starts it at import).
pub fn get() -> Result<&'static Platform> {
    if in_bad_fork() {
        return Err(Error::Platform(
            "Cannot re-initialize the tpu runtime in a forked subprocess. To use the tpu device \
             with multiprocessing, use the 'spawn' start method (CPU tensors in forked workers, \
             such as DataLoader's, are fine)"
                .into(),
        ));
    }
    PLATFORM
        .get_or_init(|| init().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Platform(e.clone()))
}

/// Plugins found by the Python package (`torch_tpu._plugins`) in the running
/// interpreter, as `(platform, path)` in the order they are preferred. Set once,
/// before the platform starts.
static CANDIDATES: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// The key-value store a plugin bootstraps across processes with (CUDA, multi-host TPU),
/// this process's node id and the node count: set before the platform starts.
type KvSetting = (std::sync::Arc<dyn pjrt::KvStore>, i64, i64);
static KV_STORE: Mutex<Option<KvSetting>> = Mutex::new(None);

/// Creates the client, when it starts, with `store` behind the plugin's
/// key-value callbacks and the `node_id` / `num_nodes` create options.
pub fn set_kv_store(
    store: std::sync::Arc<dyn pjrt::KvStore>,
    node_id: i64,
    num_nodes: i64,
) -> Result<()> {
    if is_started() {
        return Err(Error::Platform(
            "the PJRT key-value store must be set before the platform starts".into(),
        ));
    }
    *KV_STORE.lock().unwrap_or_else(PoisonError::into_inner) = Some((store, node_id, num_nodes));
    Ok(())
}

/// Hands the runtime the plugins the running interpreter has (Python calls this at import).
pub fn set_candidates(found: Vec<(String, PathBuf)>) {
    *CANDIDATES.lock().unwrap_or_else(PoisonError::into_inner) = found;
}

/// Where the platform was looked for, when no Python package told us:
/// `TORCH_TPU_SITE_PACKAGES` directories, searched for the known layouts.
fn candidates_from_env() -> Vec<(String, PathBuf)> {
    const LAYOUTS: &[(&str, &str)] = &[
        ("tpu", "libtpu/libtpu.so"),
        ("cuda", "jax_plugins/xla_cuda13/xla_cuda_plugin.so"),
        ("cuda", "jax_plugins/xla_cuda12/xla_cuda_plugin.so"),
        ("cpu", "lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so"),
        ("cpu", "fastatomstruct_xla_cpu/libpjrt_cpu.so"),
        ("cpu", "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so"),
    ];
    let dirs = env::site_packages();
    let gpu = Path::new("/dev/nvidia0").exists() || Path::new("/dev/nvidiactl").exists();
    LAYOUTS
        .iter()
        .filter(|(k, _)| *k != "cuda" || gpu)
        .flat_map(|(k, rel)| dirs.iter().map(move |d| (k.to_string(), d.join(rel))))
        .filter(|(_, p)| p.exists())
        .collect()
}

fn platform_of(path: &Path) -> &'static str {
    let s = path.to_string_lossy();
    if s.contains("libtpu") {
        "tpu"
    } else if s.contains("cuda") {
        "cuda"
    } else {
        "cpu"
    }
}

fn init() -> Result<Platform> {
    let (name, plugin) = if let Some(p) = env::PJRT_PLUGIN.get()? {
        (platform_of(&p).to_string(), p)
    } else {
        let mut found = CANDIDATES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if found.is_empty() {
            found = candidates_from_env();
        }
        let order: Vec<&str> = match env::PLATFORM.get()? {
            Some(k) => vec![k],
            None => env::PLATFORM.values.to_vec(),
        };
        let first = order
            .iter()
            .find_map(|k| found.iter().find(|(p, _)| p == k).cloned());
        first.ok_or_else(|| {
            Error::Platform(format!(
                "no PJRT plugin found for {order:?}; install fastatomstruct-xla-cpu (or another CPU plugin) or set TORCH_TPU_PJRT_PLUGIN"
            ))
        })?
    };
    let api = Api::load(&plugin)?;
    let mut options = Vec::new();
    if name == "cpu" {
        // One device unless asked: the CPU plugin's default of 4 splits the host's cores.
        let n = env::CPU_DEVICE_COUNT.get()?;
        options.push(("cpu_device_count", NamedValue::Int64(n)));
    }
    let kv = KV_STORE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let client = match kv {
        Some((store, node_id, num_nodes)) => {
            options.push(("node_id", NamedValue::Int64(node_id)));
            options.push(("num_nodes", NamedValue::Int64(num_nodes)));
            Client::new_with_kv_store(&api, &options, store)?
        }
        None => Client::new(&api, &options)?,
    };
    let devices = client.addressable_devices();
    let meta = std::fs::metadata(&plugin).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let identity = format!(
        "{}|{}|{}|{}|{:?}|{:?}|{}",
        plugin.display(),
        client.platform_name(),
        client.platform_version(),
        meta.map(|m| m.len()).unwrap_or(0),
        mtime.map(|d| d.as_secs()),
        api.version(),
        compiler_flags()
    );
    Ok(Platform {
        name,
        plugin,
        client,
        devices,
        identity,
        api_version: api.version(),
    })
}

/// The compiler flags the plugin reads from the environment (XLA's, and
/// libtpu's own). They change the code an executable holds, so they are part
/// of the platform's identity and thus of every disk-cache key: an entry
/// compiled under other flags is not reused.
fn compiler_flags() -> String {
    ["XLA_FLAGS", "LIBTPU_INIT_ARGS"]
        .iter()
        .map(|name| std::env::var(name).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|")
}

impl Platform {
    pub fn device(&self, index: usize) -> Result<&Device> {
        self.devices.get(index).ok_or_else(|| {
            Error::Invalid(format!(
                "tpu device {index} does not exist ({} available)",
                self.devices.len()
            ))
        })
    }
}

/// Memory free for new buffers, where it can be known: the host's available
/// memory for the CPU plugin; None for other plugins.
pub fn free_memory_bytes(p: &Platform) -> Option<i64> {
    if p.name != "cpu" {
        return None;
    }
    host_meminfo_bytes("MemAvailable:")
}

/// A device's (free, total) bytes (`torch.tpu.mem_get_info`): the plugin's
/// own count where it keeps one (GPU, TPU), the host's memory for the CPU
/// plugin, whose buffers live there.
pub fn memory_info(p: &Platform, device: usize) -> Result<(i64, i64)> {
    let dev = p.device(device)?;
    if let Some((in_use, limit)) = p.client.device_memory(dev) {
        return Ok(((limit - in_use).max(0), limit));
    }
    let host = (p.name == "cpu")
        .then(|| {
            Some((
                host_meminfo_bytes("MemAvailable:")?,
                host_meminfo_bytes("MemTotal:")?,
            ))
        })
        .flatten();
    host.ok_or_else(|| {
        Error::Invalid(format!(
            "mem_get_info: the {} plugin does not report device {device}'s memory",
            p.name
        ))
    })
}

/// A `/proc/meminfo` field (Linux), in bytes.
fn host_meminfo_bytes(field: &str) -> Option<i64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(field))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
