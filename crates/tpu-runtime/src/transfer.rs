//! Ops the runtime handles itself: copies across devices (`_copy_from`) and
//! reading one value to the host (`_local_scalar_dense`, i.e. `.item()`).

use crate::error::Result;
use crate::op::{CallArg, Outcome, Ret, RuntimeOp, TensorIn};
use crate::storage::Value;
use crate::trace::{Input, TensorRef, Trace};
use crate::{exec, fused, host, metrics, op, record};
use pjrt::Buffer;
use std::sync::Arc;
use tpu_graph::{DType, ValueType};

/// The runtime ops of this module, for the op table (`dispatch.rs`).
pub const OPS: &[(&str, RuntimeOp)] = &[
    ("_copy_from", copy_from),
    ("_copy_from_and_resize", copy_from_and_resize),
    ("_local_scalar_dense", local_scalar_dense),
];

fn copy_from_and_resize(args: &[CallArg]) -> Result<Outcome> {
    let (src, dst) = (op::tensor_at(args, 0)?, op::tensor_at(args, 1)?);
    if src.sizes() != dst.sizes() {
        return Ok(Outcome::Resize(vec![(1, src.sizes().to_vec())]));
    }
    copy_from(args)
}

/// `_copy_from(self, dst)`: copies `self` into `dst`; returns `dst`.
fn copy_from(args: &[CallArg]) -> Result<Outcome> {
    let src = op::tensor_at(args, 0)?;
    let dst = op::tensor_at(args, 1)?;
    if src.sizes() != dst.sizes() && matches!(dst, TensorIn::Host { .. }) {
        crate::invalid!(
            "copy from a tpu tensor of sizes {:?} into a CPU tensor of sizes {:?}",
            src.sizes(),
            dst.sizes()
        );
    }
    if let Some(d) = dst.tpu_parts() {
        crate::overlap::check_copy(src.tpu_parts(), d)?;
    }
    match (src, dst) {
        (TensorIn::Host { .. }, TensorIn::Tpu { device, .. }) => {
            let dst_ref = dst.tensor_ref().expect("a tpu tensor");
            upload_into(src, &dst_ref, *device)?;
        }
        (
            TensorIn::Tpu { .. },
            TensorIn::Host {
                span,
                sizes,
                strides,
                dtype,
                ..
            },
        ) => {
            let bytes = match read_view_from_whole_storage(src, *dtype)? {
                Some(bytes) => bytes,
                None => {
                    let buf = materialize(src, *dtype)?;
                    let mut bytes =
                        vec![0u8; sizes.iter().product::<i64>() as usize * dtype.size()];
                    to_host(&buf, &mut bytes)?;
                    bytes
                }
            };
            span.write_strided(&bytes, sizes, strides, dtype.size());
        }
        (TensorIn::Tpu { device: from, .. }, TensorIn::Tpu { device, .. }) => {
            let dst_ref = dst.tensor_ref().expect("a tpu tensor");
            // Across devices the source moves first; on one device the copy is recorded.
            let moved = if from != device {
                let b = materialize(src, src.dtype())?;
                let dev = crate::platform::get()?.device(*device)?;
                Some(Arc::new(b.copy_to_device(dev)?))
            } else {
                None
            };
            record_copy(*device, &dst_ref, |t| match moved {
                Some(b) => Ok(t.param(ValueType::new(src.dtype(), src.sizes()), Input::Buffer(b))),
                None => Ok(record::read_arg(t, src)?.v),
            })?;
        }
        (TensorIn::Host { .. }, TensorIn::Host { .. }) => {
            crate::invalid!("copy between two CPU tensors reached the tpu backend")
        }
    }
    Ok(Outcome::Done(vec![Ret::Arg(1)]))
}

/// Host → device into a tpu tensor view.
fn upload_into(src: &TensorIn, dst: &TensorRef, device: usize) -> Result<()> {
    let TensorIn::Host {
        span,
        sizes,
        strides,
        dtype,
        ..
    } = src
    else {
        unreachable!()
    };
    let bytes = host::gather(span.as_slice(), sizes, strides, dtype.size());
    let len = (dst.storage.nbytes / dst.dtype.size()) as i64;
    let whole = dst.view.covers(len) && *dtype == dst.dtype && sizes == &dst.view.sizes.as_slice();
    if whole && !matches!(dst.storage.value(), Value::Pending(_)) {
        // The common `.to("tpu")`: the upload becomes the storage's value, no program runs.
        let buf = host::upload(&bytes, *dtype, &[len], device)?;
        dst.storage.set(Value::Device(Arc::new(buf), *dtype));
        return Ok(());
    }
    let buf = Arc::new(host::upload(&bytes, *dtype, sizes, device)?);
    record_copy(device, dst, |t| {
        Ok(t.param(ValueType::new(*dtype, sizes), Input::Buffer(buf)))
    })
}

fn to_host(buf: &Buffer, bytes: &mut [u8]) -> Result<()> {
    metrics::add(&metrics::COUNTERS.bytes_to_host, bytes.len() as u64);
    metrics::add(&metrics::COUNTERS.transfers_to_host, 1);
    let _range = crate::profile::scope(|| format!("tpu::to_host {} B", bytes.len()));
    buf.to_host(bytes)?;
    Ok(())
}

/// A view read by copying its whole storage and picking its elements on the
/// host, when the storage is at most a few times the view: a program per view
/// shape would compile once per size (a compiled graph's outputs narrowed
/// from their shape bucket are such views, as are slices of a batch).
fn read_view_from_whole_storage(x: &TensorIn, dtype: DType) -> Result<Option<Vec<u8>>> {
    const SMALL_STORAGE: usize = 1 << 20;
    let TensorIn::Tpu {
        storage,
        view,
        dtype: src_dtype,
        bits,
        ..
    } = x
    else {
        return Ok(None);
    };
    let item = dtype.size();
    let view_bytes = view.numel() as usize * item;
    if !bits.is_none() || *src_dtype != dtype || storage.nbytes > SMALL_STORAGE.max(4 * view_bytes)
    {
        return Ok(None);
    }
    fused::ensure_computed(storage, "read to host")?;
    let Value::Device(buf, d) = storage.value() else {
        return Ok(None);
    };
    if d != dtype || view.extent() as usize * item > storage.nbytes {
        return Ok(None);
    }
    crate::checks::raise_pending()?;
    let mut whole = vec![0u8; storage.nbytes];
    to_host(&buf, &mut whole)?;
    let start = view.offset as usize * item;
    Ok(Some(host::gather(
        &whole[start..],
        &view.sizes,
        &view.strides,
        item,
    )))
}

/// Records `dst.copy_(v)` (converted and broadcast) for the value `source` gives.
pub(crate) fn record_copy(
    device: usize,
    dst: &TensorRef,
    source: impl FnOnce(&mut Trace) -> Result<tpu_graph::ValueId>,
) -> Result<()> {
    exec::run(device, "copy", None, |t| {
        let v = source(t)?;
        let v = t.g.convert(v, dst.dtype);
        let v = t.g.broadcast_to(v, &dst.view.sizes)?;
        t.write(dst, v)?;
        t.note_op("copy_");
        Ok(())
    })
}

/// A contiguous device buffer with the tensor's values in `dtype`, waiting
/// for pending work as needed (a cut point in fused mode).
pub fn materialize(x: &TensorIn, dtype: DType) -> Result<Arc<Buffer>> {
    let TensorIn::Tpu {
        storage,
        view,
        dtype: src_dtype,
        device,
        bits,
    } = x
    else {
        crate::invalid!("expected a tpu tensor");
    };
    fused::ensure_computed(storage, "read to host")?;
    let len = (storage.nbytes / src_dtype.size()) as i64;
    if let Value::Device(buf, d) = storage.value() {
        if d == dtype && *src_dtype == dtype && view.covers(len) && bits.is_none() {
            crate::checks::raise_pending()?;
            return Ok(buf);
        }
    }
    // Views and conversions run as a small program of their own.
    let ((), mut out) = exec::now(*device, "read to host", &[storage], |t| {
        let v = t.read(&TensorRef {
            storage,
            view: view.clone(),
            dtype: *src_dtype,
            bits: *bits,
        })?;
        let v = t.g.convert(v, dtype);
        let v = if view.sizes.is_empty() {
            v
        } else {
            t.g.reshape(v, &[view.numel()])?
        };
        t.extra_outputs.push(v);
        t.note_op("copy_");
        Ok(())
    })?;
    Ok(out.pop().expect("one output"))
}

fn local_scalar_dense(args: &[CallArg]) -> Result<Outcome> {
    let x = op::tensor_at(args, 0)?;
    let n: i64 = x.sizes().iter().product();
    if n != 1 {
        crate::invalid!("a Tensor with {n} elements cannot be converted to Scalar");
    }
    let d = x.dtype();
    let buf = materialize(x, d)?;
    let mut bytes = vec![0u8; d.size()];
    to_host(&buf, &mut bytes)?;
    Ok(Outcome::Done(vec![
        match host::scalar_from_bytes(&bytes, d) {
            tpu_lower::ScalarArg::Bool(b) => Ret::Bool(b),
            tpu_lower::ScalarArg::Int(i) => Ret::Int(i),
            tpu_lower::ScalarArg::Float(f) => Ret::Double(f),
            tpu_lower::ScalarArg::Complex(re, im) => Ret::Complex(re, im),
        },
    ]))
}

/// The first `nbytes` of `src`'s value become the start of `dst`'s value
/// (the rest of `dst` reads as zeros): `resize_` and `Allocator::copy_data`.
pub fn copy_storage_prefix(
    dst: &Arc<crate::storage::Storage>,
    src: &Arc<crate::storage::Storage>,
    nbytes: usize,
) -> Result<()> {
    let dtype = match src.value() {
        Value::Empty => return Ok(()),
        Value::Device(_, d) => d,
        Value::Pending(_) => {
            fused::ensure_computed(src, "storage copy")?;
            return copy_storage_prefix(dst, src, nbytes);
        }
        Value::Failed(why) => {
            crate::invalid!(
                "this tensor has no value: the program that was to compute it failed ({why})"
            )
        }
    };
    let item = dtype.size();
    let n = (nbytes.min(src.nbytes).min(dst.nbytes) / item) as i64;
    let dst_len = (dst.nbytes / item) as i64;
    exec::run(dst.device, "storage copy", None, |t| {
        let flat = t.read_storage(src, dtype)?;
        let head = t.g.slice(flat, &[0], &[n], &[1])?;
        let zero = t.g.scalar(0.0, dtype);
        let whole = t.g.pad(head, zero, &[0], &[dst_len - n], &[0])?;
        t.write_storage(dst, whole);
        t.note_op("copy_");
        Ok(())
    })
}
