mod common;

use common::*;
use pjrt::{Buffer, ElementType, Error};
use std::sync::Arc;

fn upload(v: &[f32], dims: &[i64]) -> Buffer {
    let c = client();
    let dev = &c.addressable_devices()[0];
    c.buffer_from_host(&f32_bytes(v), ElementType::F32, dims, None, dev)
        .unwrap()
}

fn read(b: &Buffer) -> Vec<f32> {
    bytes_f32(&b.to_host_vec().unwrap())
}

#[test]
fn add_and_metadata() {
    let c = client();
    let exe = c.compile(ADD_2X3).unwrap();
    assert_eq!(exe.num_outputs(), 1);
    assert_eq!(exe.output_element_types().unwrap(), vec![ElementType::F32]);
    assert_eq!(exe.output_dims().unwrap(), vec![vec![2, 3]]);
    eprintln!("name={:?} fingerprint={:?}", exe.name(), exe.fingerprint());
    let a = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = upload(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0], &[2, 3]);
    let out = exe.execute(&[&a, &b], None, &[]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dims(), vec![2, 3]);
    assert_eq!(read(&out[0]), vec![11.0, 22.0, 33.0, 44.0, 55.0, 66.0]);
    // Inputs are not donated by default.
    assert!(!a.is_deleted() && !b.is_deleted());

    let (out, ev) = exe.execute_with_event(&[&a, &b], None, &[]).unwrap();
    ev.await_ready().unwrap();
    assert_eq!(read(&out[0])[0], 11.0);
}

#[test]
fn matmul() {
    let c = client();
    let exe = c.compile(MATMUL).unwrap();
    let a = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = upload(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    let out = exe.execute(&[&a, &b], None, &[]).unwrap();
    assert_eq!(out[0].dims(), vec![2, 2]);
    assert_eq!(read(&out[0]), vec![58.0, 64.0, 139.0, 154.0]);
}

#[test]
fn execute_on_other_device() {
    let c = client();
    let devs = c.addressable_devices();
    // `compile` makes a portable executable: any device, default the first.
    let exe = c.compile(ADD_2X3).unwrap();
    assert!(exe.is_portable());
    for d in [1usize, 3] {
        let up = |v: &[f32]| {
            c.buffer_from_host(&f32_bytes(v), ElementType::F32, &[2, 3], None, &devs[d])
                .unwrap()
        };
        let a = up(&[1.0; 6]);
        let b = up(&[2.0; 6]);
        let out = exe.execute(&[&a, &b], Some(&devs[d]), &[]).unwrap();
        assert_eq!(out[0].device().unwrap(), devs[d]);
        assert_eq!(read(&out[0]), vec![3.0; 6]);
        // Arguments on another device than the execution device: clean error.
        let err = exe.execute(&[&a, &b], Some(&devs[0]), &[]).unwrap_err();
        eprintln!("mismatch: {err}");
    }
    let a = upload(&[1.0; 6], &[2, 3]);
    let out = exe.execute(&[&a, &a], None, &[]).unwrap();
    assert_eq!(out[0].device().unwrap(), devs[0]);

    // DEFAULT_COMPILE_OPTIONS: assigned to device 0 only.
    let fixed = c
        .compile_with_options(ADD_2X3.as_bytes(), "mlir", pjrt::DEFAULT_COMPILE_OPTIONS)
        .unwrap();
    assert!(!fixed.is_portable());
    assert_eq!(fixed.assigned_devices(), &devs[..1]);
    let out = fixed.execute(&[&a, &a], None, &[]).unwrap();
    assert_eq!(read(&out[0]), vec![2.0; 6]);
    assert!(fixed.execute(&[&a, &a], Some(&devs[2]), &[]).is_err());

    // Serialized portable executables stay portable.
    let exe2 = c.deserialize_and_load(&exe.serialize().unwrap()).unwrap();
    assert!(exe2.is_portable());
}

#[test]
fn bad_mlir_is_an_error() {
    let c = client();
    let err = c.compile("module { this is not mlir }").unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Pjrt { .. }), "{err}");
    assert!(matches!(
        c.compile_with_options(ADD_2X3.as_bytes(), "mlir", &[]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn serialize_round_trip() {
    let c = client();
    let exe = c.compile(MATMUL).unwrap();
    let bytes = exe.serialize().unwrap();
    eprintln!("serialized {} bytes", bytes.len());
    let exe2 = c.deserialize_and_load(&bytes).unwrap();
    assert_eq!(exe2.num_outputs(), 1);
    let a = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = upload(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    let r1 = read(&exe.execute(&[&a, &b], None, &[]).unwrap()[0]);
    let r2 = read(&exe2.execute(&[&a, &b], None, &[]).unwrap()[0]);
    assert_eq!(r1, r2);

    let err = c
        .deserialize_and_load(&bytes[..bytes.len() / 2])
        .unwrap_err();
    eprintln!("truncated: {err}");
    assert!(matches!(err, Error::Pjrt { .. }));
}

#[test]
fn donation() {
    let c = client();
    let exe = c.compile(DONATE).unwrap();
    // non_donatable keeps the input alive.
    let a = upload(&[1.0, 2.0, 3.0, 4.0], &[4]);
    let out = exe.execute(&[&a], None, &[0]).unwrap();
    assert!(!a.is_deleted());
    assert_eq!(read(&out[0]), vec![2.0, 4.0, 6.0, 8.0]);
    // Default: donated, then reuse is an error (not an abort).
    let out = exe.execute(&[&a], None, &[]).unwrap();
    assert!(a.is_deleted());
    assert_eq!(read(&out[0]), vec![2.0, 4.0, 6.0, 8.0]);
    let err = exe.execute(&[&a], None, &[]).unwrap_err();
    eprintln!("reuse donated: {err}");
    assert!(a.to_host_vec().is_err());
    // Out-of-range non_donatable index.
    assert!(matches!(
        exe.execute(&[&out[0]], None, &[1]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn wrong_arg_count() {
    let c = client();
    let exe = c.compile(ADD_2X3).unwrap();
    let a = upload(&[1.0; 6], &[2, 3]);
    let err = exe.execute(&[&a], None, &[]).unwrap_err();
    eprintln!("1 arg: {err}");
    let err = exe.execute(&[&a, &a, &a], None, &[]).unwrap_err();
    eprintln!("3 args: {err}");
    let err = exe.execute(&[], None, &[]).unwrap_err();
    eprintln!("0 args: {err}");
}

#[test]
fn wrong_arg_shape() {
    let c = client();
    let exe = c.compile(ADD_2X3).unwrap();
    let a = upload(&[1.0; 6], &[2, 3]);
    let b = upload(&[1.0; 4], &[4]);
    let err = exe.execute(&[&a, &b], None, &[]).unwrap_err();
    eprintln!("wrong shape: {err}");
}

#[test]
fn concurrent_execute() {
    let c = client();
    let exe = Arc::new(c.compile(MATMUL).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let exe = exe.clone();
            std::thread::spawn(move || {
                let k = t as f32;
                let a = upload(&[k, 0.0, 0.0, 0.0, k, 0.0], &[2, 3]);
                let b = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
                for _ in 0..50 {
                    let out = exe.execute(&[&a, &b], None, &[]).unwrap();
                    assert_eq!(read(&out[0]), vec![k, 2.0 * k, 3.0 * k, 4.0 * k]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A transpose and a comparison computed by a program: the reads (straight
/// from host-resident memory on the CPU plugin) give the row-major values of
/// the logical result, with `pred` as one byte per element.
const TRANSPOSE_AND_COMPARE: &str = r#"
func.func @main(%a: tensor<2x3xf32>) -> (tensor<3x2xf32>, tensor<2x3xi1>) {
  %t = "stablehlo.transpose"(%a) {permutation = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  %z = "stablehlo.constant"() {value = dense<3.0> : tensor<2x3xf32>} : () -> tensor<2x3xf32>
  %c = "stablehlo.compare"(%a, %z) {comparison_direction = #stablehlo<comparison_direction GT>} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xi1>
  "func.return"(%t, %c) : (tensor<3x2xf32>, tensor<2x3xi1>) -> ()
}
"#;

#[test]
fn reads_of_transposed_and_bool_outputs() {
    let c = client();
    let exe = c.compile(TRANSPOSE_AND_COMPARE).unwrap();
    let a = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let out = exe.execute(&[&a], None, &[]).unwrap();
    assert_eq!(read(&out[0]), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(out[1].to_host_vec().unwrap(), vec![0, 0, 0, 1, 1, 1]);
    let mut short = [0u8; 5];
    assert!(out[1].to_host(&mut short).is_err());
}
