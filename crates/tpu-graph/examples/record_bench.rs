//! Recording cost: builds a 100k-node graph shaped like a fused trace
//! (parameters, splat constants repeated per op, broadcasts, elementwise
//! chains, reshapes, reductions) and times recording, hashing and emission.
//! `cargo run --release -p tpu-graph --example record_bench`

use std::time::Instant;
use tpu_graph::{BinaryKind as B, DType, Graph, ReduceKind, UnaryKind as U, ValueType};

/// `steps` steps of 10 node requests, 3 more every 16th, 1 more every 64th.
fn record(steps: u64) -> Graph {
    let mut g = Graph::new();
    let mut x = g.parameter(ValueType::new(DType::F32, &[64, 32]));
    let mut outs = Vec::new();
    let mut step = 0u64;
    while step < steps {
        step += 1;
        if step.is_multiple_of(16) {
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
        if step.is_multiple_of(64) {
            outs.push(g.reshape(x, &[2048]).unwrap());
        }
    }
    outs.push(x);
    g.outputs = outs;
    g
}

fn main() {
    // About 100k node requests.
    const N: u64 = 9_800;
    if std::env::args().any(|a| a == "--once") {
        // One recording of each kind, for instruction counts under callgrind.
        let g = record(N);
        println!("{} nodes", g.nodes.len());
        let mut g = Graph::new();
        let mut x = g.parameter(ValueType::new(DType::F32, &[8]));
        for _ in 0..100_000 {
            x = g.unary(U::Neg, x).unwrap();
        }
        return;
    }
    let _ = record(N); // warm-up
    let mut best = f64::MAX;
    let mut g = Graph::new();
    for _ in 0..15 {
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
    println!(
        "record, no duplicates: 100000 chained negations in {:.2} ms",
        chain() * 1e3
    );
    println!("structural_hash: {:.2} ms ({key:?})", hash_s * 1e3);
    println!(
        "to_stablehlo: {:.2} ms, {} lines",
        emit_s * 1e3,
        text.lines().count()
    );
}

/// Node requests `record(steps)` makes (without hash-consing, one node each).
fn count_calls(steps: u64) -> u64 {
    1 + 10 * steps + 3 * (steps / 16) + steps / 64
}

/// Worst case for hash-consing: every request misses. Best of five, in seconds.
fn chain() -> f64 {
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        let mut g = Graph::new();
        let mut x = g.parameter(ValueType::new(DType::F32, &[8]));
        for _ in 0..100_000 {
            x = g.unary(U::Neg, x).unwrap();
        }
        g.outputs = vec![x];
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
