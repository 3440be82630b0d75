//! Strict mode's per-op fast path: one cached executable per op signature.
//!
//! The first call of a signature is recorded and run like any trace; the
//! resulting [`Program`] is kept under the call's signature (op, argument
//! kinds and values, tensor views, dtypes, storage states and which
//! arguments share a storage). Later calls with that signature feed the same
//! executable directly, skipping lowering, hashing and cache lookups.
//!
//! [`Plan`] (a program with its parameters and outputs by argument position)
//! is also what a compiled graph replays (`graphcache.rs`): there the
//! "arguments" are the graph's inputs.

use crate::error::Result;
use crate::op::{ArgIn, CallArg, Ret, TensorIn};
use crate::program::{self, Program, Source};
use crate::storage::{self, Storage, Value};
use crate::{host, metrics, services};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use tpu_graph::DType;
use tpu_lower::registry::HostValue;
use tpu_lower::{Arg, ScalarArg};

/// Where a replayed parameter comes from.
pub enum Feed {
    /// The buffer of the storage of argument (index, list index).
    Arg(usize, Option<usize>),
    Host(HostValue, DType),
    /// A seed drawn from the device's default generator at every run, before
    /// the `DefaultSeed` parameters, as the shim draws a recorded op's
    /// `Generator?` seeds before the cut draws the default ones.
    Seed,
}

/// Where a replayed output goes.
pub enum Sink {
    Arg(usize, Option<usize>, DType),
    /// The k-th new storage.
    New(usize, DType),
}

enum RetTemplate {
    Arg(usize),
    New {
        nbytes: usize,
        sizes: Vec<i64>,
        dtype: DType,
    },
}

/// A program with its parameters and outputs by argument position: what a
/// strict-mode op and a compiled graph (`graphcache.rs`) replay.
pub struct Plan {
    pub program: Program,
    feeds: Vec<Feed>,
    sinks: Vec<Sink>,
}

/// A strict-mode op's plan with the templates of its results.
pub struct OpPlan {
    plan: Plan,
    rets: Vec<RetTemplate>,
}

static PLANS: Mutex<Option<rustc_hash::FxHashMap<u64, Arc<OpPlan>>>> = Mutex::new(None);

/// Tensors of the call in order, with their (argument, list) positions.
fn tensors<'a>(
    args: &'a [CallArg<'a>],
) -> impl Iterator<Item = ((usize, Option<usize>), &'a TensorIn<'a>)> {
    args.iter().enumerate().flat_map(|(i, a)| {
        let v: Vec<_> = match &a.arg {
            ArgIn::Tensor(t) => vec![((i, None), t)],
            ArgIn::Tensors(ts) => ts
                .iter()
                .enumerate()
                .filter_map(|(k, t)| t.as_ref().map(|t| ((i, Some(k)), t)))
                .collect(),
            ArgIn::Value(_) => vec![],
        };
        v
    })
}

fn hash_arg(a: &Arg, h: &mut impl Hasher) -> Option<()> {
    std::mem::discriminant(a).hash(h);
    match a {
        Arg::Int(v) => v.hash(h),
        Arg::Float(v) => v.to_bits().hash(h),
        Arg::Bool(v) => v.hash(h),
        Arg::Ints(v) => v.hash(h),
        Arg::Floats(v) => v.iter().for_each(|f| f.to_bits().hash(h)),
        Arg::Bools(v) => v.hash(h),
        Arg::Scalar(ScalarArg::Int(v)) => (0u8, v).hash(h),
        Arg::Scalar(ScalarArg::Float(v)) => (1u8, v.to_bits()).hash(h),
        Arg::Scalar(ScalarArg::Bool(v)) => (2u8, v).hash(h),
        Arg::Scalar(ScalarArg::Complex(re, im)) => (3u8, re.to_bits(), im.to_bits()).hash(h),
        Arg::Str(s) => s.hash(h),
        Arg::DType(d) => d.hash(h),
        Arg::Seed(_) => return None,
        Arg::None | Arg::Other | Arg::Tensor(_) | Arg::Tensors(_) => {}
    }
    Some(())
}

/// The call's signature, or None when it cannot be replayed (random seeds,
/// pending storages, non-scalar CPU tensors).
pub fn signature(op: &str, args: &[CallArg]) -> Option<u64> {
    let mut h = rustc_hash::FxHasher::default();
    op.hash(&mut h);
    let mut ids: Vec<u64> = Vec::with_capacity(4);
    for (i, a) in args.iter().enumerate() {
        (i, a.is_write, a.is_out).hash(&mut h);
        match &a.arg {
            ArgIn::Value(v) => hash_arg(v, &mut h)?,
            ArgIn::Tensor(t) => hash_tensor(t, &mut ids, &mut h)?,
            ArgIn::Tensors(ts) => {
                ts.len().hash(&mut h);
                for t in ts {
                    match t {
                        Some(t) => hash_tensor(t, &mut ids, &mut h)?,
                        None => 0xdeadu32.hash(&mut h),
                    }
                }
            }
        }
    }
    Some(h.finish())
}

fn hash_tensor(t: &TensorIn, ids: &mut Vec<u64>, h: &mut impl Hasher) -> Option<()> {
    match t {
        TensorIn::Tpu {
            storage,
            view,
            dtype,
            device,
            bits,
        } => {
            // Which earlier tensor shares this storage: reads are deduplicated by storage.
            let same = ids.iter().position(|&id| id == storage.id);
            ids.push(storage.id);
            (same, storage.nbytes, view, dtype, device, bits).hash(h);
            match storage.value() {
                Value::Empty => 0u8.hash(h),
                Value::Device(_, d) => (1u8, d).hash(h),
                Value::Pending(_) | Value::Failed(_) => return None,
            }
        }
        TensorIn::Host {
            span,
            sizes,
            dtype,
            wrapped,
            ..
        } => {
            if !sizes.is_empty() {
                return None;
            }
            (2u8, dtype, wrapped, &span.as_slice()[..dtype.size()]).hash(h);
        }
    }
    Some(())
}

pub fn lookup(sig: u64) -> Option<Arc<OpPlan>> {
    PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()?
        .get(&sig)
        .cloned()
}

/// The storage of argument `i` (element `k` of a list), when it is a tpu tensor.
fn storage_at(args: &[CallArg], i: usize, k: Option<usize>) -> Option<Arc<Storage>> {
    let t = match (&args.get(i)?.arg, k) {
        (ArgIn::Tensor(t), None) => t,
        (ArgIn::Tensors(ts), Some(k)) => ts.get(k)?.as_ref()?,
        _ => return None,
    };
    match t {
        TensorIn::Tpu { storage, .. } => Some(storage.clone()),
        TensorIn::Host { .. } => None,
    }
}

impl Plan {
    /// Maps a cut program onto the call's arguments: each parameter reads an
    /// argument's storage, a host number or a fresh seed; each output goes to
    /// an argument's storage or to the k-th of `new_ids`. The error says what
    /// has no such place (the caller then records every call instead).
    pub fn build(
        program: Program,
        args: &[CallArg],
        new_ids: &[u64],
    ) -> std::result::Result<Plan, &'static str> {
        if !program.replayable {
            return Err("the graph reads values to the host");
        }
        let pos_of = |id: u64| {
            tensors(args).find_map(|(p, t)| {
                matches!(t, TensorIn::Tpu { storage, .. } if storage.id == id).then_some(p)
            })
        };
        let mut feeds = Vec::with_capacity(program.inputs.len());
        for p in &program.inputs {
            feeds.push(match p {
                Source::Storage(id) => match pos_of(*id) {
                    Some((i, k)) => Feed::Arg(i, k),
                    None => return Err("a parameter is neither an input nor a constant"),
                },
                Source::Host(HostValue::Seed(_), _) => Feed::Seed,
                Source::Host(hv, d) => Feed::Host(*hv, *d),
                Source::Other => return Err("an uploaded host tensor feeds the graph"),
            });
        }
        let mut sinks = Vec::with_capacity(program.outputs.len());
        for &(id, dtype) in &program.outputs {
            sinks.push(match new_ids.iter().position(|&n| n == id) {
                Some(k) => Sink::New(k, dtype),
                None => match pos_of(id) {
                    Some((i, k)) => Sink::Arg(i, k, dtype),
                    None => {
                        return Err(
                            "the graph writes a storage that is neither an input nor an output",
                        )
                    }
                },
            });
        }
        Ok(Plan {
            program,
            feeds,
            sinks,
        })
    }

    /// One buffer per parameter for a run on `args`; None when the plan does
    /// not apply now (an input has no device value, a donated buffer is
    /// shared), and the caller takes the slow path.
    pub fn feed(&self, args: &[CallArg]) -> Option<Result<Vec<Arc<pjrt::Buffer>>>> {
        let device = self.program.device;
        let mut bufs: Vec<Option<Arc<pjrt::Buffer>>> = Vec::with_capacity(self.feeds.len());
        for f in &self.feeds {
            bufs.push(match f {
                Feed::Arg(i, k) => match storage_at(args, *i, *k)?.value() {
                    Value::Device(b, _) => Some(b),
                    _ => return None,
                },
                _ => None,
            });
        }
        // A donated buffer must be held only by its storage and by us
        // (checked before any seed is drawn: a call that falls back to the
        // slow path draws its own).
        let unpacked = &self.program.unpacked;
        let shared = |a: &usize| {
            let p = unpacked[*a];
            bufs[p].as_ref().is_some_and(|b| Arc::strong_count(b) > 2)
        };
        if self.program.donated.iter().any(shared) {
            return None;
        }
        // Seeds in the order a recording draws them: `Generator?` seeds, then the default ones.
        for seeds_pass in [true, false] {
            for (f, b) in self.feeds.iter().zip(bufs.iter_mut()) {
                let hv = match f {
                    Feed::Seed if seeds_pass => HostValue::Seed(services::draw_seed(device)),
                    Feed::Host(hv @ HostValue::DefaultSeed, _) if !seeds_pass => *hv,
                    _ => continue,
                };
                match host::host_value_buffer(&hv, DType::U64, device) {
                    Ok(buf) => *b = Some(buf),
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        // Host scalars: packed into one argument per dtype, or one of their own.
        Some(
            self.program
                .arguments(|i| match (&bufs[i], &self.feeds[i]) {
                    (Some(b), _) => Ok(b.clone()),
                    (None, Feed::Host(hv, d)) => host::host_value_buffer(hv, *d, device),
                    (None, _) => crate::invalid!("internal: parameter {i} of a plan has no buffer"),
                }),
        )
    }

    /// Runs the program on `bufs` (from [`Plan::feed`]) and gives each
    /// output to its argument's storage or to `news[k]`; nothing waits.
    pub fn run(
        &self,
        args: &[CallArg],
        bufs: Vec<Arc<pjrt::Buffer>>,
        news: &[Arc<Storage>],
        label: impl FnOnce() -> String,
    ) -> Result<()> {
        let refs: Vec<&pjrt::Buffer> = bufs.iter().map(|b| b.as_ref()).collect();
        let results = program::run(&self.program, &refs, label)?;
        drop(refs);
        // Donated buffers are consumed: the run holds the only other reference.
        drop(bufs);
        for (sink, buf) in self.sinks.iter().zip(results.storages) {
            let (s, dtype) = match sink {
                Sink::Arg(i, k, d) => (storage_at(args, *i, *k).expect("planned tpu argument"), *d),
                Sink::New(k, d) => (news[*k].clone(), *d),
            };
            s.set(Value::Device(buf, dtype));
        }
        Ok(())
    }
}

/// Keeps the plan of a first call, when every input and output maps to an argument.
pub fn remember(sig: u64, args: &[CallArg], rets: &[Ret], program: Program) {
    let new_ids: Vec<u64> = rets
        .iter()
        .filter_map(|r| {
            if let Ret::New { storage, .. } = r {
                Some(storage.id)
            } else {
                None
            }
        })
        .collect();
    let rets = rets
        .iter()
        .map(|r| match r {
            Ret::Arg(i) => Some(RetTemplate::Arg(*i)),
            Ret::New {
                storage,
                sizes,
                dtype,
            } => Some(RetTemplate::New {
                nbytes: storage.nbytes,
                sizes: sizes.clone(),
                dtype: *dtype,
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>();
    let Some(rets) = rets else { return };
    let Ok(plan) = Plan::build(program, args, &new_ids) else {
        return;
    };
    let mut plans = PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let plans = plans.get_or_insert_with(Default::default);
    if plans.len() > 16384 {
        plans.clear();
    }
    plans.insert(sig, Arc::new(OpPlan { plan, rets }));
}

/// Runs a call through its plan; None when the plan does not apply now (a
/// donated buffer is shared), in which case the caller takes the slow path.
pub fn replay(op: &OpPlan, args: &[CallArg]) -> Option<Result<Vec<Ret>>> {
    let bufs = match op.plan.feed(args)? {
        Ok(b) => b,
        Err(e) => return Some(Err(e)),
    };
    Some(run(op, args, bufs))
}

fn run(op: &OpPlan, args: &[CallArg], bufs: Vec<Arc<pjrt::Buffer>>) -> Result<Vec<Ret>> {
    let device = op.plan.program.device;
    let news: Vec<Arc<Storage>> = op
        .rets
        .iter()
        .filter_map(|r| match r {
            RetTemplate::New { nbytes, .. } => Some(storage::new_storage(*nbytes, device)),
            RetTemplate::Arg(_) => None,
        })
        .collect::<Result<_>>()?;
    op.plan.run(args, bufs, &news, || {
        format!("{} (op cache)", op.plan.program.site)
    })?;
    metrics::add(&metrics::COUNTERS.cache_hits_memory, 1);
    let mut news = news.into_iter();
    Ok(op
        .rets
        .iter()
        .map(|r| match r {
            RetTemplate::Arg(i) => Ret::Arg(*i),
            RetTemplate::New { sizes, dtype, .. } => Ret::New {
                storage: news.next().expect("one storage per new result"),
                sizes: sizes.clone(),
                dtype: *dtype,
            },
        })
        .collect())
}
