//! Ranges in `torch.profiler`'s trace for the runtime's own work: compiles,
//! executions (with the graph's key and cut reason) and host transfers.
//!
//! The runtime does not link against PyTorch: the C++ shim registers three
//! callbacks at load (`tpu_set_profiler_hooks`) that open and close an
//! `at::RecordFunction`. Without them, or while no profiler runs, a scope
//! costs one atomic load and one call, and its name is never formatted.

use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;

/// `enabled()`: a profiler is collecting; `begin(name)` opens a range and
/// returns its handle (null for none); `end(handle)` closes it.
#[derive(Clone, Copy)]
pub struct Hooks {
    pub enabled: extern "C" fn() -> bool,
    pub begin: extern "C" fn(*const c_char) -> *mut c_void,
    pub end: extern "C" fn(*mut c_void),
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Registers the hooks (the first registration wins).
pub fn set_hooks(hooks: Hooks) {
    let _ = HOOKS.set(hooks);
}

/// An open range; closed when dropped, on the thread that opened it.
pub struct Scope {
    handle: *mut c_void,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let (false, Some(h)) = (self.handle.is_null(), HOOKS.get()) {
            (h.end)(self.handle);
        }
    }
}

/// Opens a range named by `name()` when a profiler is collecting.
pub fn scope(name: impl FnOnce() -> String) -> Scope {
    let handle = match HOOKS.get() {
        Some(h) if (h.enabled)() => {
            let text = CString::new(name().replace('\0', " ")).unwrap_or_default();
            (h.begin)(text.as_ptr())
        }
        _ => std::ptr::null_mut(),
    };
    Scope { handle }
}
