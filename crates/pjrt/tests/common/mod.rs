//! Shared test helpers: locate the CPU plugin, one shared client (destroyed at exit).
#![allow(dead_code)]

use pjrt::{Api, Client};
use std::path::PathBuf;

pub fn plugin_path() -> PathBuf {
    pjrt::testing::cpu_plugin()
}

pub fn api() -> Api {
    Api::load(&plugin_path()).expect("load plugin")
}

/// One client shared by the tests of a binary (4 CPU devices).
pub fn client() -> Client {
    pjrt::testing::shared_cpu_client(4)
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

pub const ADD_2X3: &str = r#"
module @add {
  func.func public @main(%a: tensor<2x3xf32>, %b: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %0 = stablehlo.add %a, %b : tensor<2x3xf32>
    return %0 : tensor<2x3xf32>
  }
}
"#;

pub const MATMUL: &str = r#"
module @matmul {
  func.func public @main(%a: tensor<2x3xf32>, %b: tensor<3x2xf32>) -> tensor<2x2xf32> {
    %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x2xf32>
    return %0 : tensor<2x2xf32>
  }
}
"#;

pub const DONATE: &str = r#"
module @donate {
  func.func public @main(%a: tensor<4xf32> {tf.aliasing_output = 0 : i32}) -> tensor<4xf32> {
    %0 = stablehlo.add %a, %a : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"#;
