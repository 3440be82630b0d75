//! For this workspace's tests: which CPU plugin to run them on, and the one
//! client a test binary shares.

use crate::{Api, Client, NamedValue};
use std::path::PathBuf;
use std::sync::Mutex;

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

static SHARED: Mutex<Option<Client>> = Mutex::new(None);

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Destroys the shared client before the plugin's own statics go. Left to
/// live, its worker threads could still be releasing buffers while `exit`
/// destroys the plugin's global mutexes, and the binary aborted after its
/// tests had passed ("recursive_mutex lock failed").
extern "C" fn destroy_shared_client() {
    let client = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    drop(client);
}

/// The client every test of a binary shares: the CPU plugin with
/// `cpu_device_count` devices (fixed by the first call), destroyed at exit.
pub fn shared_cpu_client(cpu_device_count: i64) -> Client {
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = shared.as_ref() {
        return c.clone();
    }
    let api = Api::load(&cpu_plugin()).expect("load the CPU plugin");
    let client = Client::new(
        &api,
        &[("cpu_device_count", NamedValue::Int64(cpu_device_count))],
    )
    .expect("create a CPU client");
    // SAFETY: `atexit` only stores the function pointer; the callback is a
    // plain `extern "C"` function that takes the lock and drops the client.
    // Registered after the plugin is loaded, it runs before the plugin's
    // static destructors (exit runs handlers in reverse order).
    unsafe { atexit(destroy_shared_client) };
    *shared = Some(client.clone());
    client
}
