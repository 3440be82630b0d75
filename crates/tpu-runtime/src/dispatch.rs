//! The path of one op: arguments are read into the current trace, the op's
//! lowering rule adds its nodes, results are written to `out=`/in-place
//! tensors or to new storages, and the mode decides when the trace runs.

use crate::abi::HostSpan;
use crate::error::{Error, Result};
use crate::mode::{self, Mode};
use crate::storage::{self, Storage};
use crate::trace::MathBits;
use crate::trace::{Input, TensorRef, Trace};
use crate::{fused, host, metrics, opcache, transfer};
use std::sync::Arc;
use tpu_graph::{DType, ValueType, View};
use tpu_lower::registry::{Args, HostValue, LowerCtx, Registry, Rule};
use tpu_lower::{Arg, TensorArg};

#[derive(Clone)]
pub enum TensorIn<'a> {
    Tpu {
        storage: Arc<Storage>,
        view: View,
        dtype: DType,
        device: usize,
        /// PyTorch's lazy conjugate / negative view bits.
        bits: MathBits,
    },
    Host {
        span: HostSpan,
        sizes: &'a [i64],
        strides: &'a [i64],
        dtype: DType,
        wrapped: bool,
    },
}

impl TensorIn<'_> {
    pub fn sizes(&self) -> &[i64] {
        match self {
            TensorIn::Tpu { view, .. } => &view.sizes,
            TensorIn::Host { sizes, .. } => sizes,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            TensorIn::Tpu { dtype, .. } | TensorIn::Host { dtype, .. } => *dtype,
        }
    }
    /// Storage, view and dtype of a tpu tensor (for the overlap checks).
    pub fn tpu_parts(&self) -> Option<crate::overlap::Tensor<'_>> {
        match self {
            TensorIn::Tpu {
                storage,
                view,
                dtype,
                ..
            } => Some((storage.id, view, *dtype)),
            TensorIn::Host { .. } => None,
        }
    }
    pub fn tensor_ref(&self) -> Option<TensorRef<'_>> {
        match self {
            TensorIn::Tpu {
                storage,
                view,
                dtype,
                bits,
                ..
            } => Some(TensorRef {
                storage,
                view: view.clone(),
                dtype: *dtype,
                bits: *bits,
            }),
            TensorIn::Host { .. } => None,
        }
    }
    /// `float32[2, 3]` (and `cpu` for host tensors), for error messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.sizes().iter().map(|d| d.to_string()).collect();
        let place = if matches!(self, TensorIn::Host { .. }) {
            " (cpu)"
        } else {
            ""
        };
        format!("{}[{}]{place}", self.dtype(), dims.join(", "))
    }
}

#[derive(Clone)]
pub enum ArgIn<'a> {
    Value(Arg),
    Tensor(TensorIn<'a>),
    Tensors(Vec<Option<TensorIn<'a>>>),
}

#[derive(Clone)]
pub struct CallArg<'a> {
    pub arg: ArgIn<'a>,
    pub is_write: bool,
    pub is_out: bool,
}

pub enum Ret {
    /// The argument at this index (an `out=` tensor or in-place `self`).
    Arg(usize),
    New {
        storage: Arc<Storage>,
        sizes: Vec<i64>,
        dtype: DType,
    },
    Int(i64),
    Double(f64),
    Bool(bool),
    /// A complex number: real and imaginary parts.
    Complex(f64, f64),
    /// Argument `index` must be resized to these sizes and the op retried.
    Resize(usize, Vec<i64>),
}

/// `aten::mm.out: <message> (arguments: float32[2, 3], float32[2, 3])`
pub fn describe_call(op: &str, args: &[CallArg]) -> String {
    let parts: Vec<String> = args
        .iter()
        .filter_map(|a| match &a.arg {
            ArgIn::Tensor(t) => Some(t.describe()),
            ArgIn::Tensors(ts) => Some(format!(
                "[{}]",
                ts.iter()
                    .map(|t| t.as_ref().map_or("None".into(), |t| t.describe()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ArgIn::Value(Arg::None) => None,
            ArgIn::Value(v) => Some(format!("{v:?}")),
        })
        .collect();
    let ns = if op.contains("::") { "" } else { "aten::" };
    format!("{ns}{op} (arguments: {})", parts.join(", "))
}

/// Ops the runtime implements itself (transfers, host reads, data-dependent shapes).
pub const RUNTIME_OPS: &[&str] = &[
    "_copy_from",
    "_copy_from_and_resize",
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "equal",
    "_unique",
    "_unique2",
    "unique_consecutive",
];

/// Runs one op; `op` is the overload name without namespace (`"add.out"`).
pub fn dispatch(op: &str, args: &[CallArg]) -> Result<Vec<Ret>> {
    metrics::add(&metrics::COUNTERS.ops_dispatched, 1);
    if let Some(rets) = transfer::special(op, args)? {
        return Ok(rets);
    }
    if let Some(rets) = crate::dynamic::special(op, args)? {
        return Ok(rets);
    }
    if let Some(expanded) = crate::dynamic::expand_bool_indices(op, args)? {
        return dispatch(op, &expanded);
    }
    let Some(rule) = Registry::global().get(op) else {
        return Err(Error::NotImplemented(format!(
            "The operator 'aten::{op}' is not implemented for the tpu device (no lowering). \
             Set TORCH_TPU_CPU_FALLBACK=1 to run it on the CPU (counted in torch_tpu.metrics())."
        )));
    };
    let device = device_of(args)?;
    check_overlap(op, args)?;
    match mode::current() {
        Mode::Fused => {
            let in_place = args.iter().any(|a| a.is_write && !a.is_out);
            let sig = (signature(op, args), in_place);
            fused::with_trace_step(device, sig, |t| record(t, op, rule, args))
        }
        Mode::Strict => {
            let sig = opcache::signature(op, args);
            if let Some(plan) = sig.and_then(opcache::lookup) {
                if let Some(r) = opcache::replay(&plan, args) {
                    return r;
                }
            }
            let mut t = Trace::new(device);
            let rets = record(&mut t, op, rule, args)?;
            let (_, recipe) = t.cut_planned("op")?;
            if let (Some(sig), Some(recipe)) = (sig, recipe) {
                opcache::remember(sig, args, &rets, recipe, device);
            }
            Ok(rets)
        }
        Mode::Debug => {
            let mut t = Trace::new(device);
            t.nan_check = mode::NAN_CHECK.load(std::sync::atomic::Ordering::Relaxed);
            t.sync_checks = true;
            let rets = record(&mut t, op, rule, args)?;
            let written: Vec<Arc<Storage>> = written_storages(args, &rets);
            t.cut("op")?;
            Trace::wait_written(&written)?;
            Ok(rets)
        }
    }
}

/// The overlap checks of a call that writes a tensor (see `overlap.rs`).
fn check_overlap(op: &str, args: &[CallArg]) -> Result<()> {
    let writes_tensor =
        |a: &CallArg| a.is_write && matches!(a.arg, ArgIn::Tensor(TensorIn::Tpu { .. }));
    if !args.iter().any(writes_tensor) {
        return Ok(());
    }
    let mut operands = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let tensors: Vec<&TensorIn> = match &a.arg {
            ArgIn::Tensor(t) => vec![t],
            ArgIn::Tensors(ts) => ts.iter().flatten().collect(),
            ArgIn::Value(_) => continue,
        };
        for t in tensors {
            if let Some(tensor) = t.tpu_parts() {
                operands.push(crate::overlap::Operand {
                    arg: i,
                    tensor,
                    written: writes_tensor(a),
                    out: a.is_out,
                });
            }
        }
    }
    crate::overlap::check_call(op, &operands)
}

fn written_storages(args: &[CallArg], rets: &[Ret]) -> Vec<Arc<Storage>> {
    let mut v: Vec<Arc<Storage>> = args
        .iter()
        .filter(|a| a.is_write)
        .filter_map(|a| match &a.arg {
            ArgIn::Tensor(TensorIn::Tpu { storage, .. }) => Some(storage.clone()),
            _ => None,
        })
        .collect();
    v.extend(rets.iter().filter_map(|r| match r {
        Ret::New { storage, .. } => Some(storage.clone()),
        _ => None,
    }));
    v
}

/// The device of the op: that of its tpu tensors, which must agree.
pub fn device_of(args: &[CallArg]) -> Result<usize> {
    let mut found: Option<usize> = None;
    let mut check = |t: &TensorIn| -> Result<()> {
        if let TensorIn::Tpu { device, .. } = t {
            match found {
                Some(d) if d != *device => {
                    crate::invalid!("Expected all tensors to be on the same device, but found at least two devices, tpu:{d} and tpu:{device}!")
                }
                _ => found = Some(*device),
            }
        }
        Ok(())
    };
    for a in args {
        match &a.arg {
            ArgIn::Tensor(t) => check(t)?,
            ArgIn::Tensors(ts) => {
                for t in ts.iter().flatten() {
                    check(t)?;
                }
            }
            ArgIn::Value(_) => {}
        }
    }
    Ok(found.unwrap_or(0))
}

/// A tensor argument as a graph value of the trace.
pub fn read_arg(t: &mut Trace, x: &TensorIn) -> Result<TensorArg> {
    match x {
        TensorIn::Tpu {
            storage,
            view,
            dtype,
            bits,
            ..
        } => {
            let v = t.read(&TensorRef {
                storage,
                view: view.clone(),
                dtype: *dtype,
                bits: *bits,
            })?;
            Ok(TensorArg {
                v,
                wrapped_number: false,
            })
        }
        TensorIn::Host {
            span,
            sizes,
            strides,
            dtype,
            wrapped,
        } => {
            let item = dtype.size();
            if sizes.is_empty() {
                let s = host::scalar_from_bytes(&span.as_slice()[..item], *dtype);
                let v = t.param(
                    ValueType::new(*dtype, &[]),
                    Input::Host(HostValue::Scalar(s)),
                );
                return Ok(TensorArg {
                    v,
                    wrapped_number: *wrapped,
                });
            }
            let bytes = host::gather(span.as_slice(), sizes, strides, item);
            let buf = host::upload(&bytes, *dtype, sizes, t.device)?;
            let v = t.param(ValueType::new(*dtype, sizes), Input::Buffer(Arc::new(buf)));
            Ok(TensorArg {
                v,
                wrapped_number: false,
            })
        }
    }
}

/// CPU tensors may join a tpu op only as 0-dim scalars (as with CUDA), or as
/// indices of indexing ops.
fn check_cpu_args(op: &str, args: &[CallArg]) -> Result<()> {
    if op.starts_with("index") || op.starts_with("_index_put") {
        return Ok(());
    }
    for a in args {
        let cpu = match &a.arg {
            ArgIn::Tensor(t @ TensorIn::Host { .. }) => Some(t),
            ArgIn::Tensors(ts) => ts
                .iter()
                .flatten()
                .find(|t| matches!(t, TensorIn::Host { .. })),
            _ => None,
        };
        if let Some(t) = cpu.filter(|t| !t.sizes().is_empty()) {
            crate::invalid!(
                "Expected all tensors to be on the same device, but found at least two devices, tpu:0 and cpu! (a cpu tensor of shape {:?})",
                t.sizes()
            );
        }
    }
    Ok(())
}

/// Records one op into `t` and says what it returns. On an error nothing
/// of the op stays in the trace.
pub fn record(t: &mut Trace, op: &str, rule: Rule, args: &[CallArg]) -> Result<Vec<Ret>> {
    let cp = t.checkpoint();
    let r = record_op(t, op, rule, args);
    if r.is_err() {
        t.rollback(cp);
    }
    r
}

fn record_op(t: &mut Trace, op: &str, rule: Rule, args: &[CallArg]) -> Result<Vec<Ret>> {
    check_cpu_args(op, args)?;
    let mut lower_args = Vec::with_capacity(args.len());
    // Written tensors: (argument, element of a list argument).
    let mut writes: Vec<(usize, Option<usize>)> = Vec::new();
    let mut out_types = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if a.is_write {
            let targets: Vec<(Option<usize>, &TensorIn)> = match &a.arg {
                ArgIn::Tensor(x) => vec![(None, x)],
                ArgIn::Tensors(xs) => xs
                    .iter()
                    .enumerate()
                    .filter_map(|(k, x)| x.as_ref().map(|x| (Some(k), x)))
                    .collect(),
                ArgIn::Value(_) => vec![],
            };
            for (k, x) in targets {
                if matches!(x, TensorIn::Host { .. }) {
                    crate::invalid!("cannot write to a CPU tensor from a tpu op")
                }
                writes.push((i, k));
                out_types.push(ValueType::new(x.dtype(), x.sizes()));
            }
        }
        if a.is_out {
            continue;
        }
        lower_args.push(match &a.arg {
            ArgIn::Value(v) => v.clone(),
            ArgIn::Tensor(x) => Arg::Tensor(read_arg(t, x)?),
            ArgIn::Tensors(xs) => {
                let mut vs = Vec::with_capacity(xs.len());
                for x in xs {
                    vs.push(match x {
                        Some(x) => Some(read_arg(t, x)?),
                        None => None,
                    });
                }
                Arg::Tensors(vs)
            }
        });
    }
    let mut ctx = LowerCtx::new(&mut t.g, &out_types);
    let results = rule(&mut ctx, &Args(&lower_args))?;
    let host_inputs = std::mem::take(&mut ctx.host);
    let checks = std::mem::take(&mut ctx.checks);
    t.add_host_inputs(host_inputs);
    if results.len() < writes.len() {
        crate::invalid!(
            "internal: the lowering gave {} results for {} written tensors",
            results.len(),
            writes.len()
        );
    }
    let mut resize = Vec::new();
    for k in 0..writes.len() {
        let (from, to) = (t.g.dtype(results[k]), out_types[k].dtype);
        if !DType::can_cast(from, to) {
            crate::invalid!("result type {from} can't be cast to the desired output type {to}");
        }
    }
    for (k, &(i, elem)) in writes.iter().enumerate() {
        let want = &out_types[k].shape;
        let got = t.g.shape(results[k]).to_vec();
        if &got != want {
            if args[i].is_out && elem.is_none() {
                // PyTorch leaves sizing `out=` tensors of some ops to the kernel.
                resize.push((i, got));
                continue;
            }
            crate::invalid!(
                "result of shape {got:?} does not match the in-place target of shape {want:?}"
            );
        }
    }
    if !resize.is_empty() {
        return Err(Error::ResizeOutputs(resize));
    }
    for (k, &(i, elem)) in writes.iter().enumerate() {
        let x = match (&args[i].arg, elem) {
            (ArgIn::Tensor(x), None) => x,
            (ArgIn::Tensors(xs), Some(e)) => xs[e].as_ref().expect("present"),
            _ => unreachable!("writes were collected from these arguments"),
        };
        t.write(&x.tensor_ref().expect("checked tpu"), results[k])?;
    }
    let name = op.split('.').next().unwrap_or(op);
    t.checks.extend(checks.into_iter().map(|mut c| {
        c.message = format!("aten::{name}: {}", c.message);
        c
    }));
    t.note_op(op);
    let any_out = args.iter().any(|a| a.is_out);
    let inplace = op.split('.').next().is_some_and(|b| b.ends_with('_'));
    if any_out {
        // Written lists are not returned (`Tensor(a!)[] out) -> ()`, as `_foreach_*` ops).
        return Ok(args
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_out && matches!(a.arg, ArgIn::Tensor(_)))
            .map(|(i, _)| Ret::Arg(i))
            .collect());
    }
    if inplace && !writes.is_empty() {
        return Ok(writes
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|&(i, _)| Ret::Arg(i))
            .collect());
    }
    let mut rets = Vec::new();
    for &v in &results[writes.len()..] {
        let ty = t.g.ty(v).clone();
        let s = storage::new_storage(ty.numel() as usize * ty.dtype.size(), t.device)?;
        let flat = t.g.reshape(v, &[ty.numel()])?;
        t.write_storage(&s, flat);
        rets.push(Ret::New {
            storage: s,
            sizes: ty.shape,
            dtype: ty.dtype,
        });
    }
    Ok(rets)
}

/// Op name, tensor shapes and dtypes: what must repeat for a step to repeat.
fn signature(op: &str, args: &[CallArg]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    op.hash(&mut h);
    for a in args {
        match &a.arg {
            ArgIn::Tensor(t) => (t.sizes(), t.dtype()).hash(&mut h),
            ArgIn::Tensors(ts) => ts
                .iter()
                .flatten()
                .for_each(|t| (t.sizes(), t.dtype()).hash(&mut h)),
            ArgIn::Value(_) => {}
        }
    }
    h.finish()
}
