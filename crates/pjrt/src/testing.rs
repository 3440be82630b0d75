//! For this workspace's tests: which CPU plugin to run them on, and the one
//! client a test binary shares.

use crate::client::ClientInner;
use crate::{Api, Client, NamedValue};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// `TORCH_TPU_PJRT_PLUGIN`, else the CPU plugin the Python package would pick
/// (`python/torch_tpu/_plugins.py`, run by `$PYO3_PYTHON` or `python3`), so
/// the Rust tests and the package always agree on the plugin.
pub fn cpu_plugin() -> PathBuf {
    if let Ok(p) = std::env::var("TORCH_TPU_PJRT_PLUGIN") {
        return PathBuf::from(p);
    }
    let finder = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../python/torch_tpu/_plugins.py"
    );
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args([finder, "cpu"])
        .output()
        .unwrap_or_else(|e| panic!("run {python} {finder}: {e}"));
    assert!(
        out.status.success(),
        "no CPU PJRT plugin found (install fastatomstruct-xla-cpu or set TORCH_TPU_PJRT_PLUGIN): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

static PLUGIN: OnceLock<Api> = OnceLock::new();
static SHARED: Mutex<Weak<ClientInner>> = Mutex::new(Weak::new());

/// The client the running tests of a binary share: the CPU plugin with
/// `cpu_device_count` devices. Only the tests hold it, so it is destroyed
/// (its worker threads joined) when the last running test drops its clone,
/// before the process exits, and a later test creates a new one. A client
/// alive at exit raced the plugin's static destructors: its threads could
/// still release buffers while `exit` destroyed the plugin's mutexes, and
/// the binary aborted after its tests had passed ("recursive_mutex lock
/// failed"). Destroying it from an exit handler was not enough: statics the
/// plugin initialises lazily are destroyed before such a handler runs.
pub fn shared_cpu_client(cpu_device_count: i64) -> Client {
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(inner) = shared.upgrade() {
        return Client { inner };
    }
    // The plugin is loaded once and never unloaded.
    let api = PLUGIN.get_or_init(|| Api::load(&cpu_plugin()).expect("load the CPU plugin"));
    let client = Client::new(
        api,
        &[("cpu_device_count", NamedValue::Int64(cpu_device_count))],
    )
    .expect("create a CPU client");
    *shared = Arc::downgrade(&client.inner);
    client
}
