//! Replicated programs over two devices of one client: XLA collectives.
mod common;

use common::*;
use pjrt::ElementType;

const ALL_REDUCE: &str = r#"
module @all_reduce attributes {mhlo.num_replicas = 2 : i32, mhlo.num_partitions = 1 : i32} {
  func.func public @main(%x: tensor<3xf32>) -> tensor<3xf32> {
    %0 = "stablehlo.all_reduce"(%x) ({
    ^bb0(%a: tensor<f32>, %b: tensor<f32>):
      %s = stablehlo.add %a, %b : tensor<f32>
      stablehlo.return %s : tensor<f32>
    }) {replica_groups = dense<[[0, 1]]> : tensor<1x2xi64>} : (tensor<3xf32>) -> tensor<3xf32>
    return %0 : tensor<3xf32>
  }
}
"#;

const ALL_GATHER: &str = r#"
module @all_gather attributes {mhlo.num_replicas = 2 : i32, mhlo.num_partitions = 1 : i32} {
  func.func public @main(%x: tensor<2xf32>) -> tensor<4xf32> {
    %0 = "stablehlo.all_gather"(%x) {all_gather_dim = 0 : i64, replica_groups = dense<[[0, 1]]> : tensor<1x2xi64>} : (tensor<2xf32>) -> tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"#;

fn on(dev: usize, v: &[f32]) -> pjrt::Buffer {
    let c = client();
    let d = &c.addressable_devices()[dev];
    c.buffer_from_host(&f32_bytes(v), ElementType::F32, &[v.len() as i64], None, d)
        .unwrap()
}

#[test]
fn all_reduce_over_two_devices_sums() {
    let c = client();
    let devs = c.addressable_devices();
    // Devices 2 and 3: the assignment, not the first devices, places the replicas.
    let exe = c.compile_replicated(ALL_REDUCE, &devs[2..4]).unwrap();
    assert_eq!(exe.assigned_devices().len(), 2);
    let a = on(2, &[1.0, 2.0, 3.0]);
    let b = on(3, &[10.0, 20.0, 30.0]);
    let out = exe.execute_replicated(&[vec![&a], vec![&b]]).unwrap();
    assert_eq!(out.len(), 2);
    for (r, o) in out.iter().enumerate() {
        assert_eq!(o[0].device().unwrap().id(), devs[2 + r].id());
        assert_eq!(
            bytes_f32(&o[0].to_host_vec().unwrap()),
            vec![11.0, 22.0, 33.0]
        );
    }
    assert!(!a.is_deleted() && !b.is_deleted());
}

#[test]
fn all_gather_concatenates_in_replica_order() {
    let c = client();
    let devs = c.addressable_devices();
    let exe = c
        .compile_replicated(ALL_GATHER, &[devs[1].clone(), devs[0].clone()])
        .unwrap();
    let a = on(1, &[1.0, 2.0]);
    let b = on(0, &[3.0, 4.0]);
    let out = exe.execute_replicated(&[vec![&a], vec![&b]]).unwrap();
    for o in &out {
        assert_eq!(
            bytes_f32(&o[0].to_host_vec().unwrap()),
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }
}

#[test]
fn replicated_runs_reject_misplaced_or_missing_arguments() {
    let c = client();
    let devs = c.addressable_devices();
    let exe = c.compile_replicated(ALL_REDUCE, &devs[0..2]).unwrap();
    let a = on(0, &[1.0, 2.0, 3.0]);
    let wrong = on(2, &[1.0, 2.0, 3.0]);
    let e = exe
        .execute_replicated(&[vec![&a], vec![&wrong]])
        .unwrap_err();
    assert!(e.to_string().contains("replica 1 is on device"), "{e}");
    let e = exe.execute_replicated(&[vec![&a]]).unwrap_err();
    assert!(
        e.to_string()
            .contains("one argument list per assigned device"),
        "{e}"
    );
    let e = c
        .compile_replicated(ALL_REDUCE, &[devs[0].clone(), devs[0].clone()])
        .unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");
}
