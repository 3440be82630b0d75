//! Shared by the graph tests: one CPU-plugin client, and running a graph
//! with f32 parameters to its first (f32) output.
#![allow(dead_code)]

use pjrt::{Client, ElementType};
use tpu_graph::Graph;

pub fn client() -> Client {
    pjrt::testing::shared_cpu_client(1)
}

pub fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn run(g: &Graph, inputs: &[Vec<f32>]) -> Vec<f32> {
    run_all(g, inputs).swap_remove(0)
}

/// Every output of `g` (all f32), run with f32 parameters.
pub fn run_all(g: &Graph, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let c = client();
    let text = g.to_stablehlo();
    let exe = c.compile(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let dev = &c.addressable_devices()[0];
    let bufs: Vec<_> = inputs
        .iter()
        .zip(&g.params)
        .map(|(x, &p)| {
            c.buffer_from_host(&f32s(x), ElementType::F32, g.shape(p), None, dev)
                .unwrap()
        })
        .collect();
    let refs: Vec<_> = bufs.iter().collect();
    let out = exe.execute(&refs, Some(dev), &[]).unwrap();
    out.iter()
        .map(|b| {
            b.to_host_vec()
                .unwrap()
                .chunks(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}
