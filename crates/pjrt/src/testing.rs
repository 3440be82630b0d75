//! For this workspace's tests: which CPU plugin to run them on.

use std::path::PathBuf;

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
