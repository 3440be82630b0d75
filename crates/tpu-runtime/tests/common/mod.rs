//! Helpers shared by the runtime's integration tests: the runtime driven
//! as the shim drives it (one `dispatch` per op), on the CPU plugin.
#![allow(dead_code)]

use _core::error::Error;
use _core::mode::{self, Mode};
use _core::op::{ArgIn, CallArg, Outcome, Ret, TensorIn};
use _core::storage::{self, Value};
use _core::{checks, fused, platform, transfer};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use tpu_graph::views::contiguous_strides;
use tpu_graph::{DType, View};
use tpu_lower::Arg;

/// One op through the runtime, as the shim calls it; these tests size their
/// outputs, so a resize request is a failure.
pub fn dispatch(op: &str, args: &[CallArg]) -> Result<Vec<Ret>, Error> {
    match _core::dispatch::dispatch(op, args)? {
        Outcome::Done(rets) => Ok(rets),
        Outcome::Resize(list) => panic!("{op}: unexpected resize request {list:?}"),
    }
}

pub static SERIAL: Mutex<()> = Mutex::new(());
pub static INIT: Once = Once::new();

pub fn setup(m: Mode) -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    INIT.call_once(|| {
        // The plugin's own logging, as `torch_tpu` leaves it by default.
        std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "3");
        platform::set_candidates(vec![("cpu".into(), pjrt::testing::cpu_plugin())]);
    });
    fused::cut("sync").unwrap();
    let _ = checks::raise_pending();
    mode::set(m);
    g
}

pub fn view(shape: &[i64]) -> View {
    View {
        offset: 0,
        sizes: shape.to_vec(),
        strides: contiguous_strides(shape),
    }
}

pub fn tpu_tensor<'a>(storage: &Arc<storage::Storage>, v: View, dtype: DType) -> TensorIn<'a> {
    TensorIn::Tpu {
        storage: storage.clone(),
        view: v,
        dtype,
        device: 0,
        bits: Default::default(),
    }
}

/// A new storage holding `vals` (float32 or int64 by `dtype`), as a contiguous tensor.
pub fn upload(vals: &[f64], shape: &[i64], dtype: DType) -> Arc<storage::Storage> {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => vals
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
        DType::I64 => vals
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        d => panic!("test helper: {d}"),
    };
    let s = storage::new_storage(bytes.len(), 0).unwrap();
    let n = vals.len() as i64;
    let buf = _core::host::upload(&bytes, dtype, &[n], 0).unwrap();
    s.set(Value::Device(Arc::new(buf), dtype));
    let _ = shape;
    s
}

pub fn read_f32(t: &TensorIn) -> Vec<f32> {
    let buf = transfer::materialize(t, DType::F32).unwrap();
    let n: i64 = t.sizes().iter().product();
    let mut bytes = vec![0u8; n as usize * 4];
    buf.to_host(&mut bytes).unwrap();
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn input(t: TensorIn<'static>) -> CallArg<'static> {
    CallArg {
        arg: ArgIn::Tensor(t),
        is_write: false,
        is_out: false,
    }
}

pub fn value(a: Arg) -> CallArg<'static> {
    CallArg {
        arg: ArgIn::Value(a),
        is_write: false,
        is_out: false,
    }
}

pub fn new_tensor(rets: &[Ret]) -> TensorIn<'static> {
    match &rets[0] {
        Ret::New {
            storage,
            sizes,
            dtype,
        } => tpu_tensor(storage, view(sizes), *dtype),
        _ => panic!("expected a new tensor"),
    }
}

pub fn index_select(w: &Arc<storage::Storage>, idx: i64) -> Result<Vec<Ret>, Error> {
    let i = upload(&[idx as f64], &[1], DType::I64);
    dispatch(
        "index_select",
        &[
            input(tpu_tensor(w, view(&[4, 3]), DType::F32)),
            value(Arg::Int(0)),
            input(tpu_tensor(&i, view(&[1]), DType::I64)),
        ],
    )
}

pub fn weights() -> Arc<storage::Storage> {
    let vals: Vec<f64> = (0..12).map(f64::from).collect();
    upload(&vals, &[4, 3], DType::F32)
}
