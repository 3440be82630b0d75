//! Overhead measurement (run: cargo test -p pjrt --release --test bench -- --ignored --nocapture).
mod common;

use common::*;
use pjrt::ElementType;
use std::time::Instant;

#[test]
#[ignore]
fn bench_execute_overhead() {
    let c = client();
    let dev = &c.addressable_devices()[0];
    let exe = c
        .compile(
            r#"module @s { func.func public @main(%a: tensor<f32>, %b: tensor<f32>) -> tensor<f32> {
  %0 = stablehlo.add %a, %b : tensor<f32>
  return %0 : tensor<f32> } }"#,
        )
        .unwrap();
    let a = c
        .buffer_from_host(&f32_bytes(&[1.0]), ElementType::F32, &[], None, dev)
        .unwrap();
    let n = 20000;
    for _ in 0..1000 {
        exe.execute(&[&a, &a], None, &[]).unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        let o = exe.execute(&[&a, &a], None, &[]).unwrap();
        drop(o);
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("execute (scalar add, async, output dropped): {per:.2} us");
    let t = Instant::now();
    for _ in 0..n {
        let (o, ev) = exe.execute_with_event(&[&a, &a], None, &[]).unwrap();
        ev.await_ready().unwrap();
        drop(o);
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("execute + await completion: {per:.2} us");
    let t = Instant::now();
    for _ in 0..n {
        assert!(!a.is_deleted());
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("is_deleted: {per:.3} us");
    let t = Instant::now();
    let data = f32_bytes(&[1.0]);
    for _ in 0..n {
        let b = c
            .buffer_from_host(&data, ElementType::F32, &[], None, dev)
            .unwrap();
        drop(b);
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("buffer_from_host (4 bytes) + drop: {per:.2} us");
    let mut out = [0u8; 4];
    let t = Instant::now();
    for _ in 0..n {
        a.to_host(&mut out).unwrap();
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("to_host (4 bytes): {per:.2} us");
    let t = Instant::now();
    for _ in 0..n {
        a.host_size_in_bytes().unwrap();
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("host_size_in_bytes: {per:.2} us");
    let t = Instant::now();
    for _ in 0..n {
        a.dims();
        a.element_type().unwrap();
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!("dims + element_type: {per:.3} us");
}
