//! Recording one op into a trace: its tensor arguments become graph values,
//! its lowering rule adds nodes, and its results are written to the `out=` or
//! in-place tensors or to new storages. Nothing here decides when a trace
//! runs: that is the executor's (`dispatch.rs`).

use crate::error::Result;
use crate::host;
use crate::op::{ArgIn, CallArg, Outcome, Ret, TensorIn};
use crate::storage;
use crate::trace::{Input, TensorRef, Trace};
use std::sync::Arc;
use tpu_graph::{DType, ValueType};
use tpu_lower::registry::{Args, HostValue, LowerCtx, Rule};
use tpu_lower::{Arg, TensorArg};

/// The overlap checks of a call that writes a tensor (see `overlap.rs`).
pub fn check_overlap(op: &str, args: &[CallArg]) -> Result<()> {
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
    crate::overlap::check_call(crate::op::base_name(op), &operands)
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
pub fn record(t: &mut Trace, op: &str, rule: Rule, args: &[CallArg]) -> Result<Outcome> {
    let cp = t.checkpoint();
    let r = record_op(t, op, rule, args);
    if !matches!(r, Ok(Outcome::Done(_))) {
        t.rollback(cp);
    }
    r
}

fn record_op(t: &mut Trace, op: &str, rule: Rule, args: &[CallArg]) -> Result<Outcome> {
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
        return Ok(Outcome::Resize(resize));
    }
    for (k, &(i, elem)) in writes.iter().enumerate() {
        let x = match (&args[i].arg, elem) {
            (ArgIn::Tensor(x), None) => x,
            (ArgIn::Tensors(xs), Some(e)) => xs[e].as_ref().expect("present"),
            _ => unreachable!("writes were collected from these arguments"),
        };
        t.write(&x.tensor_ref().expect("checked tpu"), results[k])?;
    }
    let name = crate::op::base_name(op);
    t.checks.extend(checks.into_iter().map(|mut c| {
        c.message = format!("aten::{name}: {}", c.message);
        c
    }));
    t.note_op(op);
    let any_out = args.iter().any(|a| a.is_out);
    let inplace = name.ends_with('_');
    if any_out {
        // Written lists are not returned (`Tensor(a!)[] out) -> ()`, as `_foreach_*` ops).
        return Ok(Outcome::Done(
            args.iter()
                .enumerate()
                .filter(|(_, a)| a.is_out && matches!(a.arg, ArgIn::Tensor(_)))
                .map(|(i, _)| Ret::Arg(i))
                .collect(),
        ));
    }
    if inplace && !writes.is_empty() {
        return Ok(Outcome::Done(
            writes
                .iter()
                .filter(|(_, e)| e.is_none())
                .map(|&(i, _)| Ret::Arg(i))
                .collect(),
        ));
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
    Ok(Outcome::Done(rets))
}

/// Op name, tensor shapes and dtypes: what must repeat for a step to repeat.
pub fn step_signature(op: &str, args: &[CallArg]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
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
