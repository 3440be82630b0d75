//! A compiled program and how it is fed: the one program type. A cut trace
//! produces one (`Trace::cut_planned`), strict mode keeps it per op
//! signature and replays it (`opcache.rs`), and both run it with [`run`].

use crate::checks::{self, CheckMeta};
use crate::error::{Error, Result};
use crate::{host, metrics, platform};
use pjrt::{Buffer, LoadedExecutable};
use std::sync::Arc;
use tpu_graph::{DType, ParamPack};
use tpu_lower::registry::HostValue;

/// Where one parameter's buffer comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// The device buffer of the storage with this id.
    Storage(u64),
    Host(HostValue, DType),
    /// Something a replay cannot reproduce (an uploaded CPU tensor).
    Other,
}

pub struct Program {
    pub exe: Arc<LoadedExecutable>,
    pub device: usize,
    /// The graph's parameters, by position.
    pub inputs: Vec<Source>,
    /// Parameters passed as arguments of their own, in argument order; the
    /// packs of host scalars follow them (`tpu_graph::pack`).
    pub unpacked: Vec<usize>,
    pub packs: Vec<ParamPack>,
    /// Storage outputs, in order: the storage id and the dtype of its value.
    pub outputs: Vec<(u64, DType)>,
    /// Outputs after the storage outputs (values read to the host).
    pub extra: usize,
    /// Arguments donated to outputs (argument positions).
    pub donated: Vec<usize>,
    /// The value checks whose status vector is the last output, if any.
    pub checks: Option<Arc<[CheckMeta]>>,
    /// Raise failed checks when the program has run (debug mode) rather than
    /// at the next host sync.
    pub sync_checks: bool,
    /// Ops recorded into the program (for the metrics).
    pub ops: usize,
    /// What the program runs, for errors: `aten::mul` or `graph of 12 ops (..)`.
    pub site: String,
    /// No extra outputs and no NaN or synchronous checks: a replay needs
    /// nothing but the storages.
    pub replayable: bool,
}

impl Program {
    /// The executable's arguments: `param(i)` for each parameter that is an
    /// argument of its own, then one buffer per pack, made from the host
    /// scalars the program holds.
    pub fn arguments(
        &self,
        mut param: impl FnMut(usize) -> Result<Arc<Buffer>>,
    ) -> Result<Vec<Arc<Buffer>>> {
        let mut args = Vec::with_capacity(self.unpacked.len() + self.packs.len());
        for &i in &self.unpacked {
            args.push(param(i)?);
        }
        for k in &self.packs {
            let mut bytes = Vec::with_capacity(k.params.len() * k.dtype.size());
            for &p in &k.params {
                match self.inputs[p] {
                    Source::Host(HostValue::Scalar(s), _) => {
                        bytes.extend(host::scalar_bytes(s, k.dtype))
                    }
                    _ => crate::invalid!("internal: packed parameter {p} is not a host scalar"),
                }
            }
            let dims = [k.params.len() as i64];
            args.push(host::cached_upload(bytes, k.dtype, &dims, self.device)?);
        }
        Ok(args)
    }
}

/// The buffers one run produced.
pub struct Results {
    /// One per storage output, in order.
    pub storages: Vec<Arc<Buffer>>,
    pub extra: Vec<Arc<Buffer>>,
}

/// A program that donates buffers is checked against free memory before it
/// runs: once it starts, a failure (out of memory) has consumed the donated
/// buffers, and the tensors updated in place would lose their values.
fn preflight_memory(exe: &LoadedExecutable, site: &str) -> Result<()> {
    // Small programs are not worth a look at the system's memory.
    const WORTH_CHECKING: i64 = 64 << 20;
    let Some(need) = exe.run_memory_bytes().filter(|&n| n >= WORTH_CHECKING) else {
        return Ok(());
    };
    let Some(free) = platform::free_memory_bytes(platform::get()?) else {
        return Ok(());
    };
    if need > free {
        return Err(Error::OutOfMemory(format!(
            "{site}: out of memory: the program needs {need} bytes beyond its inputs and \
             {free} are free (found before it ran: every tensor keeps its value)"
        )));
    }
    Ok(())
}

/// Runs `p` on `args` (one buffer per parameter); `label` names the run in
/// the profiler (formatted only when one is collecting). Failed value checks
/// raise now when `p.sync_checks`, else at the next host sync.
pub fn run(p: &Program, args: &[&Buffer], label: impl FnOnce() -> String) -> Result<Results> {
    let device = platform::get()?.device(p.device)?;
    if !p.donated.is_empty() {
        preflight_memory(&p.exe, &p.site)?;
    }
    let results = {
        let _range = crate::profile::scope(|| format!("tpu::execute {}", label()));
        p.exe.execute(args, Some(device), &[])?
    };
    metrics::count_execution(p.ops);
    let mut results: Vec<Arc<Buffer>> = results.into_iter().map(Arc::new).collect();
    if let Some(metas) = &p.checks {
        let status = results.pop().expect("status output");
        if p.sync_checks {
            checks::verify(&status, metas, false)?;
        } else {
            checks::defer(status, metas.clone())?;
        }
    }
    let extra = results.split_off(p.outputs.len());
    Ok(Results {
        storages: results,
        extra,
    })
}
