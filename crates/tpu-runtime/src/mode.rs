//! Eager modes and switches read from the environment at start-up.

use crate::env::{self, EnvError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Synchronous: each op runs and is waited for; errors raise at the op.
    Debug = 0,
    /// One cached executable per op, dispatched without waiting.
    Strict = 1,
    /// Ops are recorded and run as one program at the next cut point.
    Fused = 2,
    /// A compiled graph being replayed (`torch.compile`): recorded like
    /// fused mode, but only the end of the capture cuts (no step detection
    /// or size limit inside a graph), so one graph is one program.
    Capture = 3,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Some(Mode::Debug),
            "strict" => Some(Mode::Strict),
            "fused" => Some(Mode::Fused),
            "capture" => Some(Mode::Capture),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Debug => "debug",
            Mode::Strict => "strict",
            Mode::Fused => "fused",
            Mode::Capture => "capture",
        }
    }
    /// Whether ops join an open trace (fused and capture) rather than run one by one.
    pub fn records(self) -> bool {
        matches!(self, Mode::Fused | Mode::Capture)
    }
}

static MODE: AtomicU8 = AtomicU8::new(u8::MAX);
pub static NAN_CHECK: AtomicBool = AtomicBool::new(false);
pub static CPU_FALLBACK: AtomicBool = AtomicBool::new(false);
/// Ops allowed to fall back to the CPU even when CPU fallback is off.
pub static CPU_FALLBACK_OPS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The mode chosen by the environment: `TPU_LAUNCH_BLOCKING=1` → debug,
/// else `TORCH_TPU_EAGER_MODE`, else `TORCH_TPU_DEFER_AND_FUSE=1` → fused, else fused.
pub fn from_env() -> Result<Mode, EnvError> {
    if env::LAUNCH_BLOCKING.get()? {
        return Ok(Mode::Debug);
    }
    if let Some(m) = env::EAGER_MODE.get()?.and_then(Mode::parse) {
        return Ok(m);
    }
    // Still parsed so a bad value is an error; fused is the default either way.
    env::DEFER_AND_FUSE.get()?;
    Ok(Mode::Fused)
}

/// Reads the switches once. `torch_tpu` validates the environment and calls
/// this at import, so the defaults below never stand in for a bad value.
pub fn init_env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        NAN_CHECK.store(env::NAN_CHECK.get().unwrap_or(false), Relaxed);
        CPU_FALLBACK.store(env::CPU_FALLBACK.get().unwrap_or(false), Relaxed);
        if let Ok(Some(ops)) = env::CPU_FALLBACK_OPS.get() {
            *CPU_FALLBACK_OPS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(ops.into_iter().collect());
        }
        let m = from_env().unwrap_or(Mode::Fused);
        let _ = MODE.compare_exchange(u8::MAX, m as u8, Relaxed, Relaxed);
    });
}

pub fn current() -> Mode {
    let m = MODE.load(Relaxed);
    if m == u8::MAX {
        init_env();
        return current();
    }
    match m {
        0 => Mode::Debug,
        1 => Mode::Strict,
        3 => Mode::Capture,
        _ => Mode::Fused,
    }
}

pub fn set(m: Mode) {
    init_env();
    MODE.store(m as u8, Relaxed);
}

/// Whether op `name` (overload name, no namespace) may run on the CPU.
pub fn cpu_fallback_allowed(name: &str) -> bool {
    init_env();
    if CPU_FALLBACK.load(Relaxed) {
        return true;
    }
    let base = crate::op::base_name(name);
    CPU_FALLBACK_OPS
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|s| s.contains(name) || s.contains(base))
}
