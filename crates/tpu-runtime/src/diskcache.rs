//! The disk cache: PJRT-serialized executables under `TORCH_TPU_CACHE_DIR`
//! (default `$XDG_CACHE_HOME/torch_tpu`, else `~/.cache/torch_tpu`).
//!
//! Loading an executable runs whatever the file holds, so an entry is used only
//! when its header names exactly what it was compiled from (plugin identity,
//! compile options, program text) and its payload is intact; anything else is
//! a miss and recompiled. Since whoever can write the directory can forge a
//! header, a directory owned by another user or writable by group or others is
//! not used at all (one warning, training goes on without the disk cache).

use crate::{env, metrics};
use pjrt::{Client, LoadedExecutable};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Version 2: the header holds the source hash and the payload's length.
const MAGIC: &[u8; 8] = b"TTPUEXE2";
/// Magic, source hash, payload length (u64 LE), payload hash.
const HEADER: usize = 8 + 32 + 8 + 32;
/// A `.tmp` file this old is left over from a crashed or failed write.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// What an executable is compiled from; its hash names the entry.
pub struct Source<'a> {
    /// The plugin: path, platform name and version, file size and time, PJRT API.
    pub identity: &'a str,
    /// The serialized `CompileOptionsProto` passed to the compiler.
    pub options: &'a [u8],
    pub text: &'a str,
}

impl Source<'_> {
    /// Length-prefixed fields, so that no two sources hash the same input.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [self.identity.as_bytes(), self.options, self.text.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

/// Why an entry on disk was not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    /// Truncated, damaged, or not an entry at all.
    Corrupt,
    /// Intact, but compiled from another source (a renamed or copied file).
    Foreign,
}

/// The payload of `bytes` if it is an intact entry for `source` (a hash).
pub fn verify<'b>(bytes: &'b [u8], source: &[u8; 32]) -> Result<&'b [u8], Reject> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Reject::Corrupt);
    }
    let len = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len || Sha256::digest(payload).as_slice() != &bytes[48..HEADER] {
        return Err(Reject::Corrupt);
    }
    if &bytes[8..40] != source {
        return Err(Reject::Foreign);
    }
    Ok(payload)
}

/// The bytes of an entry holding `payload` compiled from `source`.
pub fn encode(payload: &[u8], source: &[u8; 32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(source);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(payload));
    bytes.extend_from_slice(payload);
    bytes
}

/// The configured directory (trusted or not); `None` when disabled.
pub fn configured_dir() -> Option<PathBuf> {
    match env::cache_dir() {
        Some(d) => d,
        None => {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("torch_tpu"))
        }
    }
}

/// The directory in use: configured and trusted.
pub fn dir() -> Option<PathBuf> {
    static CHECKED: Mutex<Option<HashMap<PathBuf, bool>>> = Mutex::new(None);
    let d = configured_dir()?;
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ok = *checked
        .get_or_insert_with(HashMap::new)
        .entry(d.clone())
        .or_insert_with(|| match prepare(&d) {
            Ok(()) => true,
            Err(why) => {
                eprintln!(
                    "torch_tpu: warning: not using the disk cache at {}: {why}. Compiled \
                     executables are not kept across processes; make it a directory of \
                     your own with mode 700, or set TORCH_TPU_CACHE_DIR (0 disables).",
                    d.display()
                );
                false
            }
        });
    ok.then_some(d)
}

/// Creates `d` (mode 700) if needed, checks that only this user can write it,
/// and removes stale temporary files.
fn prepare(d: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(|e| format!("cannot create it ({e})"))?;
    let meta = std::fs::metadata(d).map_err(|e| format!("cannot read it ({e})"))?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    remove_stale_tmp(d);
    Ok(())
}

fn remove_stale_tmp(d: &Path) {
    let Ok(entries) = std::fs::read_dir(d) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let is_tmp = e.file_name().to_string_lossy().contains(".tmp");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
        if is_tmp && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The executable cached for `source`, if an entry is there and checks out.
pub fn load(client: &Client, source: &[u8; 32]) -> Option<LoadedExecutable> {
    let path = dir()?.join(format!("{}.xexe", hex(source)));
    let Ok(bytes) = std::fs::read(&path) else {
        metrics::add(&metrics::COUNTERS.cache_misses_disk, 1);
        return None;
    };
    let exe = match verify(&bytes, source) {
        Ok(payload) => client.deserialize_and_load(payload).ok(),
        Err(Reject::Foreign) => {
            metrics::add(&metrics::COUNTERS.cache_foreign_disk, 1);
            None
        }
        Err(Reject::Corrupt) => None,
    };
    if exe.is_some() {
        metrics::add(&metrics::COUNTERS.cache_hits_disk, 1);
    } else {
        metrics::add(&metrics::COUNTERS.cache_corrupt_disk, 1);
        let _ = std::fs::remove_file(&path);
    }
    exe
}

/// Writes the entry for `source`; failures only cost the cache, never the run.
pub fn store(source: &[u8; 32], exe: &LoadedExecutable) {
    let (Some(d), Ok(payload)) = (dir(), exe.serialize()) else {
        return;
    };
    let path = d.join(format!("{}.xexe", hex(source)));
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = d.join(format!("{}.tmp{}", hex(source), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&encode(&payload, source)))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if written.is_err() {
        // A full disk leaves a partial file behind: never keep it.
        let _ = std::fs::remove_file(&tmp);
    }
}
