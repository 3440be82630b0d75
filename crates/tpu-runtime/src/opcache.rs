//! Strict mode's per-op fast path: one cached executable per op signature.
//!
//! The first call of a signature is recorded and run like any trace; the
//! resulting [`Program`] is kept under the call's signature (op, argument
//! kinds and values, tensor views, dtypes, storage states and which
//! arguments share a storage). Later calls with that signature feed the same
//! executable directly, skipping lowering, hashing and cache lookups.

use crate::error::Result;
use crate::op::{ArgIn, CallArg, Ret, TensorIn};
use crate::program::{self, Program, Source};
use crate::storage::{self, Storage, Value};
use crate::{host, metrics};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use tpu_graph::DType;
use tpu_lower::registry::HostValue;
use tpu_lower::{Arg, ScalarArg};

/// Where a replayed parameter comes from.
enum Feed {
    /// The buffer of the storage of argument (index, list index).
    Arg(usize, Option<usize>),
    Host(HostValue, DType),
}

/// Where a replayed output goes.
enum Sink {
    Arg(usize, Option<usize>, DType),
    /// The k-th new tensor.
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

/// A call's program with its parameters and outputs by argument position.
pub struct Plan {
    program: Program,
    feeds: Vec<Feed>,
    sinks: Vec<Sink>,
    rets: Vec<RetTemplate>,
}

static PLANS: Mutex<Option<rustc_hash::FxHashMap<u64, Arc<Plan>>>> = Mutex::new(None);

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

pub fn lookup(sig: u64) -> Option<Arc<Plan>> {
    PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()?
        .get(&sig)
        .cloned()
}

/// Keeps the plan of a first call, when every input and output maps to an argument.
pub fn remember(sig: u64, args: &[CallArg], rets: &[Ret], program: Program) {
    if !program.replayable {
        return;
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
                None => return,
            },
            Source::Host(hv @ HostValue::Scalar(_), d) => Feed::Host(*hv, *d),
            _ => return,
        });
    }
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
    let mut sinks = Vec::with_capacity(program.outputs.len());
    for &(id, dtype) in &program.outputs {
        sinks.push(match new_ids.iter().position(|&n| n == id) {
            Some(k) => Sink::New(k, dtype),
            None => match pos_of(id) {
                Some((i, k)) => Sink::Arg(i, k, dtype),
                None => return,
            },
        });
    }
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
    let plan = Plan {
        program,
        feeds,
        sinks,
        rets,
    };
    let mut plans = PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let plans = plans.get_or_insert_with(Default::default);
    if plans.len() > 16384 {
        plans.clear();
    }
    plans.insert(sig, Arc::new(plan));
}

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

/// Runs a call through its plan; None when the plan does not apply now (a
/// donated buffer is shared), in which case the caller takes the slow path.
pub fn replay(plan: &Plan, args: &[CallArg]) -> Option<Result<Vec<Ret>>> {
    let feed = |i: usize| -> Result<Option<Arc<pjrt::Buffer>>> {
        Ok(match &plan.feeds[i] {
            Feed::Arg(a, k) => match storage_at(args, *a, *k).map(|s| s.value()) {
                Some(Value::Device(b, _)) => Some(b),
                _ => None,
            },
            Feed::Host(hv, d) => Some(host::host_value_buffer(hv, *d, plan.program.device)?),
        })
    };
    // A tensor argument without a device buffer now: the caller takes the slow path.
    let mut missing = false;
    let bufs = plan.program.arguments(|i| match feed(i)? {
        Some(b) => Ok(b),
        None => {
            missing = true;
            crate::invalid!("argument {i} has no device buffer")
        }
    });
    let bufs = match bufs {
        Ok(b) => b,
        Err(_) if missing => return None,
        Err(e) => return Some(Err(e)),
    };
    // A donated buffer must be held only by its storage and by us.
    if plan
        .program
        .donated
        .iter()
        .any(|&p| Arc::strong_count(&bufs[p]) > 2)
    {
        return None;
    }
    Some(run(plan, args, bufs))
}

fn run(plan: &Plan, args: &[CallArg], bufs: Vec<Arc<pjrt::Buffer>>) -> Result<Vec<Ret>> {
    let refs: Vec<&pjrt::Buffer> = bufs.iter().map(|b| b.as_ref()).collect();
    let results = program::run(&plan.program, &refs, || {
        format!("{} (op cache)", plan.program.site)
    })?;
    drop(refs);
    drop(bufs);
    metrics::add(&metrics::COUNTERS.cache_hits_memory, 1);
    let device = plan.program.device;
    let news: Vec<Arc<Storage>> = plan
        .rets
        .iter()
        .filter_map(|r| match r {
            RetTemplate::New { nbytes, .. } => Some(storage::new_storage(*nbytes, device)),
            RetTemplate::Arg(_) => None,
        })
        .collect::<Result<_>>()?;
    for (sink, buf) in plan.sinks.iter().zip(results.storages) {
        let (s, dtype) = match sink {
            Sink::Arg(i, k, d) => (storage_at(args, *i, *k).expect("planned tpu argument"), *d),
            Sink::New(k, d) => (news[*k].clone(), *d),
        };
        s.set(Value::Device(buf, dtype));
    }
    let mut news = news.into_iter();
    Ok(plan
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
