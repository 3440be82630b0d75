//! XLA collectives over several devices of this process: one tensor per
//! device goes in, one replicated program (`collective_hlo.rs`) runs once
//! over their devices, and each device's result is written into its
//! destination tensor. A collective is a cut point: the pending work that
//! computes the inputs runs first (`transfer::materialize`).

use crate::collective_hlo::Collective;
use crate::error::{Error, Result};
use crate::op::TensorIn;
use crate::storage::{self, Storage, Value};
use crate::trace::{Input, MathBits, TensorRef};
use crate::{metrics, platform, transfer};
use pjrt::{Buffer, LoadedExecutable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tpu_graph::{DType, ValueType, View};

/// One tensor of a collective: a view of a storage, as PyTorch holds it.
pub struct Operand {
    pub storage: Arc<Storage>,
    pub view: View,
    pub dtype: DType,
}

impl Operand {
    /// The tensor whose storage starts at the data pointer `storage_ptr`
    /// (`t.untyped_storage().data_ptr()`).
    pub fn new(
        storage_ptr: u64,
        offset: i64,
        sizes: Vec<i64>,
        strides: Vec<i64>,
        dtype_code: i32,
    ) -> Result<Operand> {
        let storage = storage::from_addr(storage_ptr)
            .filter(|s| s.addr == storage_ptr)
            .ok_or_else(|| Error::Invalid(format!("no tpu storage at {storage_ptr:#x}")))?;
        let dtype = DType::from_torch(dtype_code)
            .ok_or_else(|| Error::Invalid(format!("dtype code {dtype_code} is not supported")))?;
        if sizes.len() != strides.len() {
            crate::invalid!("{} sizes but {} strides", sizes.len(), strides.len());
        }
        Ok(Operand {
            storage,
            view: View {
                offset,
                sizes,
                strides,
            },
            dtype,
        })
    }

    fn device(&self) -> usize {
        self.storage.device
    }

    fn numel(&self) -> i64 {
        self.view.numel()
    }

    /// The same elements as a rank-1 view where the tensor is a scalar, so
    /// every operand is flat.
    fn flat_view(&self) -> View {
        if self.view.sizes.is_empty() {
            View {
                offset: self.view.offset,
                sizes: vec![1],
                strides: vec![1],
            }
        } else {
            self.view.clone()
        }
    }
}

/// Executables by (module text, devices): the text holds the collective,
/// reduction, shape, dtype and replica group.
type Key = (String, Vec<usize>);
static EXECUTABLES: Mutex<Option<HashMap<Key, Arc<LoadedExecutable>>>> = Mutex::new(None);

fn executable(text: String, devices: Vec<usize>) -> Result<Arc<LoadedExecutable>> {
    let key = (text, devices);
    let mut cache = EXECUTABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(e) = cache.get(&key) {
        metrics::add(&metrics::COUNTERS.cache_hits_memory, 1);
        return Ok(e.clone());
    }
    metrics::add(&metrics::COUNTERS.cache_misses_memory, 1);
    let p = platform::get()?;
    let devs = key
        .1
        .iter()
        .map(|&d| p.device(d).cloned())
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let exe = Arc::new(p.client.compile_replicated(&key.0, &devs)?);
    metrics::add(&metrics::COUNTERS.compiles, 1);
    metrics::add(
        &metrics::COUNTERS.compile_ns,
        start.elapsed().as_nanos() as u64,
    );
    cache.insert(key, exe.clone());
    Ok(exe)
}

/// Checks that `inputs` and `outputs` (one per device, replica order) fit
/// `c`; returns the elements per input.
fn check(c: &Collective, inputs: &[Operand], outputs: &[Operand]) -> Result<i64> {
    let err = |why: String| {
        Err(Error::Invalid(format!(
            "{} (xla collectives): {why}",
            c.name()
        )))
    };
    let Some(first) = inputs.first() else {
        return err("no tensors".into());
    };
    if outputs.len() != inputs.len() {
        return err(format!(
            "{} inputs but {} outputs",
            inputs.len(),
            outputs.len()
        ));
    }
    let n = first.numel();
    let want = c.result_len(n, inputs.len())?;
    for (i, (x, y)) in inputs.iter().zip(outputs).enumerate() {
        if x.dtype != first.dtype || x.numel() != n {
            return err(format!(
                "tensor {i} is {}[{}], tensor 0 is {}[{n}]: every device needs the same dtype and size",
                x.dtype,
                x.numel(),
                first.dtype
            ));
        }
        if inputs[..i].iter().any(|o| o.device() == x.device()) {
            return err(format!(
                "tpu:{} is given twice: one tensor per device",
                x.device()
            ));
        }
        if y.device() != x.device() || y.dtype != x.dtype || y.numel() != want {
            return err(format!(
                "output {i} must be a {}[{want}] tensor on tpu:{}, got {}[{}] on tpu:{}",
                x.dtype,
                x.device(),
                y.dtype,
                y.numel(),
                y.device()
            ));
        }
    }
    Ok(n)
}

/// Runs `c` over the devices of `inputs` (replica `i` on `inputs[i]`'s
/// device) and writes replica `i`'s result into `outputs[i]` (which may be
/// `inputs[i]` itself, or any view of the right size and dtype).
pub fn run(c: &Collective, inputs: &[Operand], outputs: &[Operand]) -> Result<()> {
    let n = check(c, inputs, outputs)?;
    if n == 0 {
        return Ok(());
    }
    let dtype = inputs[0].dtype;
    let devices: Vec<usize> = inputs.iter().map(Operand::device).collect();
    let exe = executable(c.module(dtype, n, inputs.len())?, devices)?;
    let bufs = inputs
        .iter()
        .map(|x| {
            let t = TensorIn::Tpu {
                storage: x.storage.clone(),
                view: x.flat_view(),
                dtype,
                device: x.device(),
                bits: MathBits::default(),
            };
            transfer::materialize(&t, dtype)
        })
        .collect::<Result<Vec<Arc<Buffer>>>>()?;
    let results = {
        let _range = crate::profile::scope(|| format!("tpu::execute {}", c.name()));
        let args: Vec<Vec<&Buffer>> = bufs.iter().map(|b| vec![&**b]).collect();
        exe.execute_replicated(&args)?
    };
    metrics::count_execution(1);
    for (dst, mut out) in outputs.iter().zip(results) {
        let buf = Arc::new(out.pop().expect("one output per replica"));
        write(dst, buf)?;
    }
    Ok(())
}

/// `buf` (flat) becomes the values of `dst`: the storage's value itself when
/// `dst` covers it, else a recorded copy into the view.
fn write(dst: &Operand, buf: Arc<Buffer>) -> Result<()> {
    let len = (dst.storage.nbytes / dst.dtype.size()) as i64;
    let view = dst.flat_view();
    if view.covers(len) && !matches!(dst.storage.value(), Value::Pending(_)) {
        dst.storage.set(Value::Device(buf, dst.dtype));
        return Ok(());
    }
    let r = TensorRef {
        storage: &dst.storage,
        view: dst.view.clone(),
        dtype: dst.dtype,
        bits: MathBits::default(),
    };
    let m = dst.numel();
    transfer::record_copy(dst.device(), &r, |t| {
        let p = t.param(ValueType::new(dst.dtype, &[m]), Input::Buffer(buf));
        Ok(t.g.reshape(p, &dst.view.sizes)?)
    })
}
