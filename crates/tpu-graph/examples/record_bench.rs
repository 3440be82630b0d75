//! Recording cost: builds a 100k-node graph shaped like a fused trace
//! (parameters, splat constants repeated per op, broadcasts, elementwise
//! chains, reshapes, reductions) and times recording, hashing and emission.
//! `cargo run --release -p tpu-graph --example record_bench`

use std::time::Instant;
use tpu_graph::{BinaryKind as B, DType, Graph, ReduceKind, UnaryKind as U, ValueType};

fn record(target: usize) -> Graph {
    let mut g = Graph::new();
    let mut x = g.parameter(ValueType::new(DType::F32, &[64, 32]));
    let mut outs = Vec::new();
    let mut step = 0u64;
    while g.nodes.len() < target {
        step += 1;
        if step % 16 == 0 {
            // A new storage read: a parameter, flattened and reshaped back as views do.
            let p = g.parameter(ValueType::new(DType::F32, &[2048]));
            let r = g.reshape(p, &[64, 32]).unwrap();
            x = g.binary(B::Add, x, r).unwrap();
        }
        // `x * 0.5 + 1.0` as lowering rules spell it: a constant per use.
        let y = g.binary_const(B::Mul, x, 0.5).unwrap();
        let y = g.binary_const(B::Add, y, 1.0).unwrap();
        let y = g.unary(U::Tanh, y).unwrap();
        let s = g.reduce(ReduceKind::Sum, y, &[1]).unwrap();
        let s = g.broadcast_in_dim(s, &[64, 32], &[0]).unwrap();
        x = g.binary(B::Sub, y, s).unwrap();
        if step % 64 == 0 {
            outs.push(g.reshape(x, &[2048]).unwrap());
        }
    }
    outs.push(x);
    g.outputs = outs;
    g
}

fn main() {
    const N: usize = 100_000;
    let _ = record(N); // warm-up
    let mut best = f64::MAX;
    let mut g = Graph::new();
    for _ in 0..5 {
        let t = Instant::now();
        g = record(N);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let calls = count_calls(N);
    let t = Instant::now();
    let key = g.structural_hash();
    let hash_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let text = g.to_stablehlo();
    let emit_s = t.elapsed().as_secs_f64();
    println!(
        "record: {calls} node requests -> {} nodes in {:.2} ms ({:.0} ns per request)",
        g.nodes.len(),
        best * 1e3,
        best * 1e9 / calls as f64
    );
    println!("structural_hash: {:.2} ms ({key:?})", hash_s * 1e3);
    println!(
        "to_stablehlo: {:.2} ms, {} lines",
        emit_s * 1e3,
        text.lines().count()
    );
}

/// Node requests the recording makes (without hash-consing, one node each).
fn count_calls(target: usize) -> usize {
    let mut n = 1usize;
    let mut step = 0u64;
    while n < target {
        step += 1;
        if step % 16 == 0 {
            n += 3;
        }
        n += 8;
        if step % 64 == 0 {
            n += 1;
        }
    }
    n
}
