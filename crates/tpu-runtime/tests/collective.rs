//! XLA collectives over two CPU-plugin devices of this process
//! (`collective::run`): results against hand-computed values, a strided
//! destination written through its view, and refused inputs.

use _core::collective::{self, Operand};
use _core::collective_hlo::{Collective, Reduce};
use _core::storage::{self, Value};
use _core::{mode, platform, transfer};
use std::sync::{Arc, Mutex, Once};
use tpu_graph::{DType, View};

static SERIAL: Mutex<()> = Mutex::new(());
static INIT: Once = Once::new();

fn setup() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    INIT.call_once(|| {
        // Read when the platform starts; this test binary is its own process.
        std::env::set_var("TORCH_TPU_CPU_DEVICE_COUNT", "2");
        std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "3");
        platform::set_candidates(vec![("cpu".into(), pjrt::testing::cpu_plugin())]);
    });
    mode::set(mode::Mode::Fused);
    g
}

fn upload(vals: &[f32], device: usize) -> Arc<storage::Storage> {
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let s = storage::new_storage(bytes.len(), device).unwrap();
    let buf = _core::host::upload(&bytes, DType::F32, &[vals.len() as i64], device).unwrap();
    s.set(Value::Device(Arc::new(buf), DType::F32));
    s
}

fn operand(s: &Arc<storage::Storage>, offset: i64, sizes: &[i64], strides: &[i64]) -> Operand {
    Operand {
        storage: s.clone(),
        view: View {
            offset,
            sizes: sizes.to_vec(),
            strides: strides.to_vec(),
        },
        dtype: DType::F32,
    }
}

fn read(s: &Arc<storage::Storage>) -> Vec<f32> {
    let n = (s.nbytes / 4) as i64;
    let t = _core::op::TensorIn::Tpu {
        storage: s.clone(),
        view: View {
            offset: 0,
            sizes: vec![n],
            strides: vec![1],
        },
        dtype: DType::F32,
        device: s.device,
        bits: Default::default(),
    };
    let buf = transfer::materialize(&t, DType::F32).unwrap();
    buf.to_host_vec()
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn all_reduce_and_all_gather_over_two_devices() {
    let _g = setup();
    assert_eq!(platform::get().unwrap().devices.len(), 2);
    let (a, b) = (upload(&[1.0, 2.0, 3.0], 0), upload(&[10.0, 20.0, 30.0], 1));
    let ins = [operand(&a, 0, &[3], &[1]), operand(&b, 0, &[3], &[1])];
    let outs = [operand(&a, 0, &[3], &[1]), operand(&b, 0, &[3], &[1])];
    collective::run(&Collective::AllReduce(Reduce::Sum), &ins, &outs).unwrap();
    assert_eq!(read(&a), [11.0, 22.0, 33.0]);
    assert_eq!(read(&b), [11.0, 22.0, 33.0]);

    // Every other element of a 4-element storage, gathered into the middle of a 6-element one.
    let (x, y) = (
        upload(&[1.0, -1.0, 2.0, -1.0], 0),
        upload(&[3.0, -1.0, 4.0, -1.0], 1),
    );
    let (gx, gy) = (upload(&[0.0; 6], 0), upload(&[0.0; 6], 1));
    let ins = [operand(&x, 0, &[2], &[2]), operand(&y, 0, &[2], &[2])];
    let outs = [operand(&gx, 1, &[4], &[1]), operand(&gy, 1, &[4], &[1])];
    collective::run(&Collective::AllGather, &ins, &outs).unwrap();
    assert_eq!(read(&gx), [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]);
    assert_eq!(read(&gy), [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]);
}

#[test]
fn collectives_refuse_a_device_twice_and_wrong_output_sizes() {
    let _g = setup();
    let (a, b) = (upload(&[1.0, 2.0], 0), upload(&[3.0, 4.0], 0));
    let ins = [operand(&a, 0, &[2], &[1]), operand(&b, 0, &[2], &[1])];
    let e = collective::run(&Collective::AllReduce(Reduce::Max), &ins, &ins).unwrap_err();
    assert!(
        e.to_string()
            .contains("all_reduce (xla collectives): tpu:0 is given twice"),
        "{e}"
    );
    let c = upload(&[5.0, 6.0], 1);
    let ins = [operand(&a, 0, &[2], &[1]), operand(&c, 0, &[2], &[1])];
    let e = collective::run(&Collective::AllGather, &ins, &ins).unwrap_err();
    assert!(
        e.to_string()
            .contains("all_gather (xla collectives): output 0 must be a float32[4]"),
        "{e}"
    );
}
