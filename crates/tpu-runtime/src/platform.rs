//! Plugin choice and the process-wide PJRT client.
//!
//! Order: `TORCH_TPU_PJRT_PLUGIN` (a path), else `TORCH_TPU_PLATFORM`
//! (tpu|cuda|cpu), else the first found of libtpu, JAX's CUDA plugin (with a
//! visible GPU), the CPU plugin (`xla-cpu-pjrt`, a dependency).

use crate::error::{Error, Result};
use pjrt::{Api, Client, Device, NamedValue};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Platform {
    pub name: String,
    pub plugin: PathBuf,
    pub client: Client,
    pub devices: Vec<Device>,
    /// Identifies the plugin build: part of every disk-cache key.
    pub identity: String,
}

static PLATFORM: OnceLock<std::result::Result<Platform, String>> = OnceLock::new();

/// The platform, initialised on first use.
pub fn get() -> Result<&'static Platform> {
    PLATFORM
        .get_or_init(|| init().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Platform(e.clone()))
}

/// Site-packages directories of the running Python (or `python3`).
fn site_dirs() -> Vec<PathBuf> {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut dirs: Vec<PathBuf> = std::env::var("TORCH_TPU_SITE_PACKAGES")
        .map(|s| s.split(':').map(PathBuf::from).collect())
        .unwrap_or_default();
    if dirs.is_empty() {
        let code = "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))";
        if let Ok(out) = Command::new(python).args(["-c", code]).output() {
            dirs.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(PathBuf::from),
            );
        }
    }
    dirs
}

fn first_existing(dirs: &[PathBuf], rel: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|d| rel.iter().map(move |r| d.join(r)))
        .find(|p| p.exists())
}

fn find_plugin(kind: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    match kind {
        "tpu" => first_existing(dirs, &["libtpu/libtpu.so", "libtpu.so"]),
        "cuda" => {
            let gpu = Path::new("/dev/nvidia0").exists() || Path::new("/dev/nvidiactl").exists();
            if !gpu {
                return None;
            }
            first_existing(
                dirs,
                &[
                    "jax_plugins/xla_cuda13/xla_cuda_plugin.so",
                    "jax_plugins/xla_cuda12/xla_cuda_plugin.so",
                ],
            )
        }
        "cpu" => first_existing(dirs, &["xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so"]),
        _ => None,
    }
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
    let (name, plugin) = if let Ok(p) = std::env::var("TORCH_TPU_PJRT_PLUGIN") {
        let p = PathBuf::from(p);
        (platform_of(&p).to_string(), p)
    } else {
        let dirs = site_dirs();
        let wanted = std::env::var("TORCH_TPU_PLATFORM").ok();
        let order: Vec<&str> = match wanted.as_deref() {
            Some(k @ ("tpu" | "cuda" | "cpu")) => vec![k],
            Some(other) => {
                return Err(Error::Platform(format!(
                    "TORCH_TPU_PLATFORM={other}: expected tpu, cuda or cpu"
                )));
            }
            None => vec!["tpu", "cuda", "cpu"],
        };
        let found = order
            .iter()
            .find_map(|k| find_plugin(k, &dirs).map(|p| (k.to_string(), p)));
        found.ok_or_else(|| {
            Error::Platform(format!(
                "no PJRT plugin found for {order:?}; install xla-cpu-pjrt or set TORCH_TPU_PJRT_PLUGIN"
            ))
        })?
    };
    let api = Api::load(&plugin)?;
    let mut options = Vec::new();
    if name == "cpu" {
        // One device unless asked: the CPU plugin's default of 4 splits the host's cores.
        let n = std::env::var("TORCH_TPU_CPU_DEVICE_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1i64);
        options.push(("cpu_device_count", NamedValue::Int64(n)));
    }
    let client = Client::new(&api, &options)?;
    let devices = client.addressable_devices();
    let meta = std::fs::metadata(&plugin).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let identity = format!(
        "{}|{}|{}|{}|{:?}|{:?}",
        plugin.display(),
        client.platform_name(),
        client.platform_version(),
        meta.map(|m| m.len()).unwrap_or(0),
        mtime.map(|d| d.as_secs()),
        api.version()
    );
    Ok(Platform {
        name,
        plugin,
        client,
        devices,
        identity,
    })
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
