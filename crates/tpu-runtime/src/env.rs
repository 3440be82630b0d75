//! The environment variables the runtime reads, each parsed in one place.
//!
//! A value that does not parse is an error naming the variable, the value and
//! what is accepted; [`validate`] checks them all when `torch_tpu` is imported,
//! so a typo fails there instead of being silently ignored. Empty counts as
//! unset everywhere. See docs/env.md.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: expected {expected}")]
pub struct EnvError {
    pub name: &'static str,
    pub value: String,
    pub expected: String,
}

/// The variable's value; `None` when unset or empty.
fn raw(name: &'static str) -> Result<Option<String>, EnvError> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(EnvError {
            name,
            value: v.to_string_lossy().into_owned(),
            expected: "valid UTF-8".into(),
        }),
    }
}

/// An on/off switch: name, and what unset (or empty) means.
pub struct Flag(pub &'static str, pub bool);

impl Flag {
    pub fn get(&self) -> Result<bool, EnvError> {
        let Some(v) = raw(self.0)? else {
            return Ok(self.1);
        };
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(EnvError {
                name: self.0,
                value: v,
                expected: "a boolean: 1, true, yes, on, or 0, false, no, off".into(),
            }),
        }
    }
}

/// An integer in `min..=max`, `default` when unset.
pub struct Int {
    pub name: &'static str,
    pub min: i64,
    pub max: i64,
    pub default: i64,
}

impl Int {
    pub fn get(&self) -> Result<i64, EnvError> {
        let Some(v) = raw(self.name)? else {
            return Ok(self.default);
        };
        match v.trim().parse::<i64>() {
            Ok(n) if (self.min..=self.max).contains(&n) => Ok(n),
            _ => Err(EnvError {
                name: self.name,
                value: v,
                expected: format!("an integer from {} to {}", self.min, self.max),
            }),
        }
    }
}

/// One of a fixed set of names (case-insensitive); `None` when unset.
pub struct Choice {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

impl Choice {
    pub fn get(&self) -> Result<Option<&'static str>, EnvError> {
        let Some(v) = raw(self.name)? else {
            return Ok(None);
        };
        let lower = v.to_ascii_lowercase();
        match self.values.iter().find(|c| **c == lower) {
            Some(c) => Ok(Some(c)),
            None => Err(EnvError {
                name: self.name,
                value: v,
                expected: format!("one of {}", self.values.join(", ")),
            }),
        }
    }
}

/// A path; `must_be_file` checks that it names an existing file (a plugin;
/// a bare library name is left to the loader's search path), otherwise only
/// that it is not an existing non-directory.
pub struct PathVar {
    pub name: &'static str,
    pub must_be_file: bool,
}

impl PathVar {
    pub fn get(&self) -> Result<Option<PathBuf>, EnvError> {
        let Some(v) = raw(self.name)? else {
            return Ok(None);
        };
        let p = PathBuf::from(&v);
        let bad = |expected: &str| EnvError {
            name: self.name,
            value: v.clone(),
            expected: expected.into(),
        };
        if self.must_be_file && v.contains('/') && !p.is_file() {
            return Err(bad("the path of an existing file"));
        }
        if !self.must_be_file && p.exists() && !p.is_dir() {
            return Err(bad("a directory (this path exists and is not one)"));
        }
        Ok(Some(p))
    }
}

/// A comma-separated list of ATen op names (`add.Tensor`, `aten::mm`).
pub struct OpList(pub &'static str);

impl OpList {
    pub fn get(&self) -> Result<Option<Vec<String>>, EnvError> {
        let Some(v) = raw(self.0)? else {
            return Ok(None);
        };
        let mut ops = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let name = item.trim_start_matches("aten::");
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !ok {
                return Err(EnvError {
                    name: self.0,
                    value: v.clone(),
                    expected: format!(
                        "comma-separated ATen op names such as add.Tensor,mm (not {item:?})"
                    ),
                });
            }
            ops.push(name.to_string());
        }
        Ok(Some(ops))
    }
}

pub const LAUNCH_BLOCKING: Flag = Flag("TPU_LAUNCH_BLOCKING", false);
pub const DEFER_AND_FUSE: Flag = Flag("TORCH_TPU_DEFER_AND_FUSE", false);
pub const NAN_CHECK: Flag = Flag("TORCH_TPU_NAN_CHECK", false);
pub const CPU_FALLBACK: Flag = Flag("TORCH_TPU_CPU_FALLBACK", false);
pub const XLA_LOGS: Flag = Flag("TORCH_TPU_XLA_LOGS", false);
/// On unless set false: `torch.compile`'s shape buckets (`python/torch_tpu/_buckets.py`).
pub const SHAPE_BUCKETS: Flag = Flag("TORCH_TPU_SHAPE_BUCKETS", true);
pub const CPU_FALLBACK_OPS: OpList = OpList("TORCH_TPU_CPU_FALLBACK_OPS");
pub const EAGER_MODE: Choice = Choice {
    name: "TORCH_TPU_EAGER_MODE",
    values: &["debug", "strict", "fused"],
};
pub const PLATFORM: Choice = Choice {
    name: "TORCH_TPU_PLATFORM",
    values: &["tpu", "cuda", "cpu"],
};
/// PyTorch's device index is an `int8_t` (the shim caps the count at 127).
pub const CPU_DEVICE_COUNT: Int = Int {
    name: "TORCH_TPU_CPU_DEVICE_COUNT",
    min: 1,
    max: 127,
    default: 1,
};
pub const FUSED_MAX_OPS: Int = Int {
    name: "TORCH_TPU_FUSED_MAX_OPS",
    min: 1,
    max: 1 << 20,
    default: 4096,
};
pub const PJRT_PLUGIN: PathVar = PathVar {
    name: "TORCH_TPU_PJRT_PLUGIN",
    must_be_file: true,
};
pub const DUMP_DIR: PathVar = PathVar {
    name: "TORCH_TPU_DUMP_DIR",
    must_be_file: false,
};

const FLAGS: &[Flag] = &[
    LAUNCH_BLOCKING,
    DEFER_AND_FUSE,
    NAN_CHECK,
    CPU_FALLBACK,
    XLA_LOGS,
    SHAPE_BUCKETS,
];

/// A known flag by name (Python reads its flags through `_core.env_flag`).
pub fn flag_named(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.0 == name)
}

/// `TORCH_TPU_CACHE_DIR`: `Some(None)` when set to empty or `0` (disabled),
/// `None` when unset. Read on every use (tests switch it at run time).
pub fn cache_dir() -> Option<Option<PathBuf>> {
    match std::env::var_os("TORCH_TPU_CACHE_DIR") {
        None => None,
        Some(v) if v.is_empty() || v == "0" => Some(None),
        Some(v) => Some(Some(Path::new(&v).to_path_buf())),
    }
}

/// `TORCH_TPU_SITE_PACKAGES`: `:`-separated directories to find plugins in.
pub fn site_packages() -> Vec<PathBuf> {
    std::env::var_os("TORCH_TPU_SITE_PACKAGES")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default()
}

/// Checks every variable; the first invalid one is the error.
pub fn validate() -> Result<(), EnvError> {
    for f in FLAGS {
        f.get()?;
    }
    CPU_FALLBACK_OPS.get()?;
    EAGER_MODE.get()?;
    PLATFORM.get()?;
    CPU_DEVICE_COUNT.get()?;
    FUSED_MAX_OPS.get()?;
    PJRT_PLUGIN.get()?;
    DUMP_DIR.get()?;
    Ok(())
}
