//! Compiled graphs called directly: after its first call, a `torch.compile`d
//! graph feeds its input buffers to its executable, with no per-op dispatch.
//!
//! The first call with an input signature (each input's view, dtype and
//! storage state, which inputs share a storage, the values of non-tensor
//! inputs: `opcache::signature` over the inputs as one call's arguments)
//! replays the FX graph op by op in capture mode (`python/torch_tpu/_compile.py`)
//! and cuts it into one program; [`plan`] then maps that program onto the
//! graph's inputs and outputs ([`GraphPlan`]): each parameter reads an input's
//! storage, a host number or a seed drawn per call, each program output goes
//! into an input's storage (a mutation: copy_, optimizer steps, batch-norm
//! statistics; donated where the cut donated) or into a new storage behind a
//! graph output, and each graph output is a view of an input or of such a new
//! storage. Later calls with that signature run [`GraphPlan::feed`] and
//! [`GraphPlan::run`] (`pygraph.rs` holds the plans of one graph and builds
//! the output tensors). A graph the plan cannot represent (it ran as several
//! programs, read values to the host, fell back to the CPU, read a storage
//! that is no input) is replayed at every call, with the reason.

use crate::error::Result;
use crate::metrics::{self, COUNTERS};
use crate::op::{ArgIn, CallArg, TensorIn};
use crate::opcache::Plan;
use crate::program::Program;
use crate::storage::{Storage, Value};
use crate::{fused, mode};
use pjrt::Buffer;
use std::sync::Arc;
use tpu_graph::{DType, View};

/// Counters before a replay: a graph that ran as one program moved none of them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Snapshot {
    executions: u64,
    transfers_to_host: u64,
    bytes_to_device: u64,
    cpu_fallbacks: u64,
}

impl From<Snapshot> for (u64, u64, u64, u64) {
    fn from(s: Snapshot) -> Self {
        (
            s.executions,
            s.transfers_to_host,
            s.bytes_to_device,
            s.cpu_fallbacks,
        )
    }
}

impl From<(u64, u64, u64, u64)> for Snapshot {
    fn from(t: (u64, u64, u64, u64)) -> Self {
        Snapshot {
            executions: t.0,
            transfers_to_host: t.1,
            bytes_to_device: t.2,
            cpu_fallbacks: t.3,
        }
    }
}

pub fn snapshot() -> Snapshot {
    let fallbacks = metrics::TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .cpu_fallbacks
        .values()
        .sum();
    Snapshot {
        executions: metrics::get(&COUNTERS.executions),
        transfers_to_host: metrics::get(&COUNTERS.transfers_to_host),
        bytes_to_device: metrics::get(&COUNTERS.bytes_to_device),
        cpu_fallbacks: fallbacks,
    }
}

/// Cuts the replayed graph (the open capture trace) and returns its program,
/// or why it cannot be fed directly: the replay ran other programs (a
/// data-dependent op), read to the host, uploaded host data or fell back to
/// the CPU.
pub fn cut(
    before: Snapshot,
    reason: &str,
) -> Result<std::result::Result<Option<Program>, &'static str>> {
    let now = snapshot();
    let program = match fused::cut_planned(reason)? {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    Ok(if now.cpu_fallbacks != before.cpu_fallbacks {
        Err("an op fell back to the CPU")
    } else if now.transfers_to_host != before.transfers_to_host {
        Err("the graph reads values to the host")
    } else if now.executions != before.executions {
        Err("the graph ran as several programs (a data-dependent op or the size limit)")
    } else if now.bytes_to_device != before.bytes_to_device {
        Err("the graph uploads host data")
    } else {
        Ok(program)
    })
}

/// Where an output's storage comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The storage of input i.
    Input(usize),
    /// The k-th new storage of the call.
    New(usize),
}

/// One graph output.
#[derive(Clone, Debug)]
pub enum Out {
    /// Input i itself (the same tensor object).
    Same(usize),
    View {
        base: Base,
        view: View,
        dtype: DType,
    },
    /// A non-tensor output, the same for every call of the signature (its
    /// value lives with the caller).
    Other,
}

/// A storage each call makes for its outputs.
#[derive(Clone, Debug)]
pub struct NewStorage {
    pub nbytes: usize,
    pub dtype: DType,
    /// The output that covers it exactly (allocated as that tensor), if any.
    pub exact: Option<usize>,
}

/// One graph output as the replay returned it.
pub enum Returned<'a> {
    /// Input i itself (the same object).
    Same(usize),
    Tensor(TensorIn<'a>),
    Other,
}

/// A compiled graph's program with its inputs and outputs by position.
pub struct GraphPlan {
    /// None when the graph runs nothing (it only returns views of its inputs).
    plan: Option<Plan>,
    pub news: Vec<NewStorage>,
    pub outputs: Vec<Out>,
}

fn input_of(inputs: &[CallArg], id: u64) -> Option<usize> {
    inputs.iter().position(
        |a| matches!(&a.arg, ArgIn::Tensor(TensorIn::Tpu { storage, .. }) if storage.id == id),
    )
}

/// Maps the program of a replay (from [`cut`]) onto the graph's inputs and
/// the outputs the replay returned; the error says what has no place in a plan.
pub fn plan(
    program: Option<Program>,
    inputs: &[CallArg],
    returned: &[Returned],
) -> std::result::Result<GraphPlan, &'static str> {
    let written: Vec<(u64, DType)> = program.as_ref().map_or(vec![], |p| p.outputs.clone());
    let mut news: Vec<NewStorage> = Vec::new();
    let mut new_ids: Vec<u64> = Vec::new();
    let mut outputs = Vec::with_capacity(returned.len());
    for (o, r) in returned.iter().enumerate() {
        let t = match r {
            Returned::Other => {
                outputs.push(Out::Other);
                continue;
            }
            Returned::Same(i) => {
                outputs.push(Out::Same(*i));
                continue;
            }
            Returned::Tensor(t) => t,
        };
        let TensorIn::Tpu {
            storage,
            view,
            dtype,
            bits,
            ..
        } = t
        else {
            return Err("an output is a CPU tensor");
        };
        if !bits.is_none() {
            return Err("an output is a lazy conjugate or negative view");
        }
        let base = match input_of(inputs, storage.id) {
            Some(i) => {
                if !matches!(&inputs[i].arg, ArgIn::Tensor(t) if t.dtype() == *dtype) {
                    return Err("an output reinterprets an input's dtype");
                }
                Base::Input(i)
            }
            None => {
                let k = match new_ids.iter().position(|&id| id == storage.id) {
                    Some(k) => {
                        news[k].exact = None;
                        k
                    }
                    None => {
                        let sdtype =
                            match (storage.value(), written.iter().find(|w| w.0 == storage.id)) {
                                (Value::Empty, _) => *dtype,
                                (Value::Device(..), Some(&(_, d))) => d,
                                _ => return Err("an output was computed outside the graph"),
                            };
                        let len = (storage.nbytes / dtype.size().max(1)) as i64;
                        let covers =
                            view.offset == 0 && view.extent() == len && view.numel() == len;
                        news.push(NewStorage {
                            nbytes: storage.nbytes,
                            dtype: sdtype,
                            exact: covers.then_some(o),
                        });
                        new_ids.push(storage.id);
                        news.len() - 1
                    }
                };
                if news[k].dtype != *dtype {
                    return Err("an output reinterprets its storage's dtype");
                }
                Base::New(k)
            }
        };
        outputs.push(Out::View {
            base,
            view: view.clone(),
            dtype: *dtype,
        });
    }
    let plan = match program {
        Some(p) => Some(Plan::build(p, inputs, &new_ids)?),
        None => None,
    };
    Ok(GraphPlan {
        plan,
        news,
        outputs,
    })
}

impl GraphPlan {
    /// The parameters' buffers for a call on `inputs`; None when the plan
    /// does not apply now (see [`Plan::feed`]): the call is replayed.
    pub fn feed(&self, inputs: &[CallArg]) -> Option<Result<Vec<Arc<Buffer>>>> {
        match &self.plan {
            Some(p) => p.feed(inputs),
            None => Some(Ok(Vec::new())),
        }
    }

    /// Runs the program (without waiting) into the inputs' storages and the
    /// new storages `news` (one per [`GraphPlan::news`], freshly allocated).
    pub fn run(
        &self,
        inputs: &[CallArg],
        bufs: Vec<Arc<Buffer>>,
        news: &[Arc<Storage>],
    ) -> Result<()> {
        let Some(p) = &self.plan else { return Ok(()) };
        debug_assert!(mode::current() != mode::Mode::Capture);
        p.run(inputs, bufs, news, || {
            format!("{} (compiled graph, direct)", p.program.site)
        })
    }
}
