//! Services of the C++ shim the runtime calls back into: PyTorch's tpu
//! generators (seeds and RNG state), the current device, and registering
//! lowered ops with the dispatcher.
//!
//! The shim registers them at load (`tpu_set_shim_services`, as it does the
//! profiler hooks), so the runtime itself never links against the shim or
//! PyTorch: without a shim (the runtime's Rust tests) each service has a
//! plain stand-in with the same contract (a seeded counter for the
//! generators, device 0 as the current device, nothing to register).

use std::ffi::c_char;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The shim's callbacks (`TpuShimServices` in `csrc/tpu_abi.h`); each
/// catches its own C++ exceptions and reports failure by its return value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Services {
    pub manual_seed: extern "C" fn(device: i32, seed: u64) -> i32,
    pub initial_seed: extern "C" fn(device: i32) -> u64,
    /// Copies the state into `out` when `cap` suffices; returns its length.
    pub get_rng_state: extern "C" fn(device: i32, out: *mut u8, cap: i64) -> i64,
    pub set_rng_state: extern "C" fn(device: i32, state: *const u8, len: i64) -> i32,
    /// One seed drawn from the device's default generator.
    pub draw_seed: extern "C" fn(device: i32) -> u64,
    pub current_device: extern "C" fn() -> i32,
    pub set_device: extern "C" fn(device: i32) -> i32,
    /// Routes these lowered ops (overload names) straight to the fallback.
    pub register_direct: extern "C" fn(names: *const *const c_char, n: i32) -> i32,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

/// Registers the shim's services (the first registration wins).
pub fn set(services: Services) {
    let _ = SERVICES.set(services);
}

/// Whether a shim registered its services.
pub fn from_shim() -> bool {
    SERVICES.get().is_some()
}

// The stand-ins: one generator per process, seeded like PyTorch's default.
static SEED: AtomicU64 = AtomicU64::new(67280421310721);
static DRAWN: AtomicU64 = AtomicU64::new(0);
static DEVICE: AtomicI32 = AtomicI32::new(0);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn draw_seed(device: usize) -> u64 {
    match SERVICES.get() {
        Some(s) => (s.draw_seed)(device as i32),
        None => splitmix(SEED.load(Ordering::Relaxed) ^ DRAWN.fetch_add(1, Ordering::Relaxed)),
    }
}

pub fn manual_seed(device: usize, seed: u64) -> bool {
    match SERVICES.get() {
        Some(s) => (s.manual_seed)(device as i32, seed) == 0,
        None => {
            SEED.store(seed, Ordering::Relaxed);
            DRAWN.store(0, Ordering::Relaxed);
            true
        }
    }
}

pub fn initial_seed(device: usize) -> u64 {
    match SERVICES.get() {
        Some(s) => (s.initial_seed)(device as i32),
        None => SEED.load(Ordering::Relaxed),
    }
}

/// The generator's state as PyTorch serializes it (the stand-in: seed and draws).
pub fn get_rng_state(device: usize) -> Vec<u8> {
    let Some(s) = SERVICES.get() else {
        let mut v = SEED.load(Ordering::Relaxed).to_le_bytes().to_vec();
        v.extend(DRAWN.load(Ordering::Relaxed).to_le_bytes());
        return v;
    };
    let n = (s.get_rng_state)(device as i32, std::ptr::null_mut(), 0);
    let mut v = vec![0u8; n.max(0) as usize];
    (s.get_rng_state)(device as i32, v.as_mut_ptr(), v.len() as i64);
    v
}

pub fn set_rng_state(device: usize, state: &[u8]) -> bool {
    let Some(s) = SERVICES.get() else {
        let (Some(seed), Some(drawn)) = (state.get(..8), state.get(8..16)) else {
            return false;
        };
        SEED.store(
            u64::from_le_bytes(seed.try_into().expect("8")),
            Ordering::Relaxed,
        );
        DRAWN.store(
            u64::from_le_bytes(drawn.try_into().expect("8")),
            Ordering::Relaxed,
        );
        return true;
    };
    (s.set_rng_state)(device as i32, state.as_ptr(), state.len() as i64) == 0
}

pub fn current_device() -> i32 {
    match SERVICES.get() {
        Some(s) => (s.current_device)(),
        None => DEVICE.load(Ordering::Relaxed),
    }
}

pub fn set_device(index: i32) -> bool {
    match SERVICES.get() {
        Some(s) => (s.set_device)(index) == 0,
        None => {
            let count = crate::platform::get().map_or(0, |p| p.devices.len());
            let ok = index >= 0 && (index as usize) < count;
            if ok {
                DEVICE.store(index, Ordering::Relaxed);
            }
            ok
        }
    }
}

/// Routes every lowered op with a composite kernel straight to the fallback
/// (a shim's dispatcher concern; without one there is nothing to route).
pub fn register_direct(names: &[&str]) -> i32 {
    let Some(s) = SERVICES.get() else { return 0 };
    let names: Vec<std::ffi::CString> = names
        .iter()
        .filter_map(|n| std::ffi::CString::new(*n).ok())
        .collect();
    let ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
    (s.register_direct)(ptrs.as_ptr(), ptrs.len() as i32)
}
