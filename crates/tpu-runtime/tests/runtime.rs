//! The runtime on the CPU plugin, driven as the shim drives it (one
//! `dispatch` per op): value checks, overlap checks, failed programs,
//! storage lifetime, the strict op cache, fused cuts and rollback.
//!
//! The runtime's state (mode, open trace, pending checks) is per process, so
//! the tests take one lock each.

mod common;

use _core::error::Error;
use _core::mode::{self, Mode};
use _core::op::{ArgIn, CallArg};
use _core::storage::{self, Value};
use _core::{checks, fused, metrics, platform, transfer};
use common::*;
use std::sync::Arc;
use tpu_graph::{DType, View};
use tpu_lower::{Arg, ScalarArg};

#[test]
fn index_in_range_reads_the_row() {
    for m in [Mode::Debug, Mode::Strict, Mode::Fused] {
        let _g = setup(m);
        let rets = index_select(&weights(), 2).unwrap();
        assert_eq!(read_f32(&new_tensor(&rets)), [6.0, 7.0, 8.0], "{m:?}");
    }
}

#[test]
fn debug_mode_raises_an_out_of_range_index_at_the_op() {
    let _g = setup(Mode::Debug);
    match index_select(&weights(), 7) {
        Err(Error::Index(m)) => assert!(m.contains("index 7"), "{m}"),
        other => panic!("expected an IndexError, got {:?}", other.err()),
    }
}

#[test]
fn async_modes_raise_an_out_of_range_index_at_the_next_host_sync() {
    for m in [Mode::Strict, Mode::Fused] {
        let _g = setup(m);
        let rets = index_select(&weights(), -1).expect("no error before a sync");
        let t = new_tensor(&rets);
        match transfer::materialize(&t, DType::F32) {
            Err(Error::Index(msg)) => assert!(msg.contains("index -1"), "{msg}"),
            other => panic!("{m:?}: expected an IndexError, got {:?}", other.err()),
        }
        // Reported once: the next sync is clean.
        checks::raise_pending().unwrap();
    }
}

#[test]
fn integer_division_by_zero_raises() {
    for m in [Mode::Debug, Mode::Strict, Mode::Fused] {
        let _g = setup(m);
        let x = upload(&[7.0], &[1], DType::I64);
        let y = upload(&[0.0], &[1], DType::I64);
        let r = dispatch(
            "floor_divide",
            &[
                input(tpu_tensor(&x, view(&[1]), DType::I64)),
                input(tpu_tensor(&y, view(&[1]), DType::I64)),
            ],
        )
        .and_then(|_| checks::raise_pending().and(fused::cut("sync")))
        .and_then(|_| _core::trace::wait_all());
        match r {
            Err(Error::Invalid(msg)) => assert!(msg.contains("ZeroDivisionError"), "{msg}"),
            other => panic!("{m:?}: expected ZeroDivisionError, got {other:?}"),
        }
    }
}

#[test]
fn writing_through_an_expanded_view_is_refused() {
    let _g = setup(Mode::Strict);
    let s = upload(&[0.0], &[1], DType::F32);
    let expanded = View {
        offset: 0,
        sizes: vec![3],
        strides: vec![0],
    };
    let r = dispatch(
        "add_.Scalar",
        &[
            CallArg {
                arg: ArgIn::Tensor(tpu_tensor(&s, expanded, DType::F32)),
                is_write: true,
                is_out: false,
            },
            value(Arg::Scalar(ScalarArg::Float(1.0))),
            value(Arg::Scalar(ScalarArg::Int(1))),
        ],
    );
    assert!(matches!(r, Err(Error::Invalid(m)) if m.contains("more than one element")));
}

#[test]
fn a_failed_op_leaves_the_fused_trace_usable() {
    let _g = setup(Mode::Fused);
    let a = upload(&[1.0, 2.0, 3.0], &[3], DType::F32);
    let b = upload(&[1.0, 2.0], &[2], DType::F32);
    let ta = tpu_tensor(&a, view(&[3]), DType::F32);
    let tb = tpu_tensor(&b, view(&[2]), DType::F32);
    let doubled = dispatch("mul.Tensor", &[input(ta.clone()), input(ta.clone())]).unwrap();
    // Shapes that do not broadcast: the op fails, nothing of it stays recorded.
    assert!(dispatch("add.Tensor", &[input(ta.clone()), input(tb)]).is_err());
    assert_eq!(read_f32(&new_tensor(&doubled)), [1.0, 4.0, 9.0]);
}

#[test]
fn fused_ops_run_as_one_program() {
    let _g = setup(Mode::Fused);
    let a = upload(&[1.0, 2.0], &[2], DType::F32);
    let mut t = tpu_tensor(&a, view(&[2]), DType::F32);
    let before = metrics::get(&metrics::COUNTERS.executions);
    let mut keep = Vec::new();
    for _ in 0..5 {
        let r = dispatch("mul.Tensor", &[input(t.clone()), input(t.clone())]).unwrap();
        t = new_tensor(&r);
        keep.push(r);
    }
    assert_eq!(read_f32(&t), [1.0, 65536.0 * 65536.0]);
    assert_eq!(metrics::get(&metrics::COUNTERS.executions) - before, 1);
}

#[test]
fn strict_mode_replays_a_repeated_op_signature() {
    let _g = setup(Mode::Strict);
    let w = weights();
    index_select(&w, 0).unwrap();
    let hits = metrics::get(&metrics::COUNTERS.cache_hits_memory);
    let rets = index_select(&w, 3).unwrap();
    assert!(metrics::get(&metrics::COUNTERS.cache_hits_memory) > hits);
    assert_eq!(read_f32(&new_tensor(&rets)), [9.0, 10.0, 11.0]);
    // A replayed program still reports its checks.
    index_select(&w, 4).unwrap();
    assert!(matches!(checks::raise_pending(), Err(Error::Index(_))));
}

#[test]
fn storages_are_counted_until_freed() {
    let _g = setup(Mode::Strict);
    let before = storage::memory_stats(0);
    let s = upload(&[1.0; 256], &[256], DType::F32);
    let during = storage::memory_stats(0);
    assert_eq!(during.blocks.current, before.blocks.current + 1);
    assert_eq!(during.bytes.current, before.bytes.current + 1024);
    assert_eq!(during.bytes.allocated, before.bytes.allocated + 1024);
    assert!(during.bytes.peak >= during.bytes.current);
    assert!(storage::from_addr(s.addr + 100).is_some_and(|f| Arc::ptr_eq(&f, &s)));
    storage::free(s);
    let after = storage::memory_stats(0);
    assert_eq!(
        (after.blocks.current, after.bytes.current),
        (before.blocks.current, before.bytes.current)
    );
    assert_eq!(after.bytes.freed, before.bytes.freed + 1024);
}

#[test]
fn an_oversized_program_fails_before_it_runs_and_keeps_values() {
    let _g = setup(Mode::Fused);
    let a = upload(&[1.0, 2.0], &[2], DType::F32);
    let ta = tpu_tensor(&a, view(&[2]), DType::F32);
    let write_a = CallArg {
        arg: ArgIn::Tensor(ta.clone()),
        is_write: true,
        is_out: false,
    };
    // a += 1 (donating a's buffer), and 256 GiB of ones in the same program.
    dispatch(
        "add_.Scalar",
        &[
            write_a,
            value(Arg::Scalar(ScalarArg::Float(1.0))),
            value(Arg::Scalar(ScalarArg::Int(1))),
        ],
    )
    .unwrap();
    let big = storage::new_storage(1 << 38, 0).unwrap();
    let tbig = tpu_tensor(&big, view(&[1 << 36]), DType::F32);
    dispatch(
        "fill_.Scalar",
        &[
            CallArg {
                arg: ArgIn::Tensor(tbig),
                is_write: true,
                is_out: false,
            },
            value(Arg::Scalar(ScalarArg::Float(1.0))),
        ],
    )
    .unwrap();
    let r = fused::cut("sync");
    assert!(
        matches!(&r, Err(e) if e.status() == _core::error::Status::OutOfMemory),
        "expected out of memory, got {r:?}"
    );
    assert_eq!(read_f32(&ta), [1.0, 2.0]);
    // The never-computed storage says so instead of reading zeros.
    assert!(matches!(big.value(), Value::Failed(_)));
    storage::free(big);
}

#[test]
fn disk_cache_entries_are_checked_against_their_source() {
    use _core::diskcache::{encode, verify, Reject, Source};
    let a = Source {
        identity: "plugin A",
        options: b"opts",
        text: "module @a {}",
    }
    .hash();
    let b = Source {
        identity: "plugin A",
        options: b"opts",
        text: "module @b {}",
    }
    .hash();
    let other_options = Source {
        identity: "plugin A",
        options: b"other",
        text: "module @a {}",
    }
    .hash();
    assert_ne!(a, other_options, "compile options are part of the source");
    let entry = encode(b"executable bytes", &a);
    assert_eq!(verify(&entry, &a), Ok(&b"executable bytes"[..]));
    // An intact entry of another program, e.g. a copied or renamed file.
    assert_eq!(verify(&entry, &b), Err(Reject::Foreign));
    let mut damaged = entry.clone();
    *damaged.last_mut().unwrap() ^= 1;
    assert_eq!(verify(&damaged, &a), Err(Reject::Corrupt));
    assert_eq!(verify(&entry[..entry.len() - 1], &a), Err(Reject::Corrupt));
    assert_eq!(verify(b"not an entry", &a), Err(Reject::Corrupt));
}

#[test]
fn a_status_vector_reports_the_first_failed_check() {
    let _g = setup(Mode::Strict);
    use tpu_graph::{ConstVal, Graph, ValueType};
    use tpu_lower::registry::{Check, CheckKind};
    let mut g = Graph::new();
    let ok = g.constant(ConstVal::Bool(true), DType::Bool, &[]);
    let bad = g.constant(ConstVal::Bool(false), DType::Bool, &[]);
    let v = g.parameter(ValueType::new(DType::I64, &[]));
    let check = |ok, kind, message: &str| Check {
        ok,
        value: v,
        kind,
        message: message.into(),
    };
    let all = [
        check(ok, CheckKind::Index, "first {}"),
        check(bad, CheckKind::Runtime, "second {}"),
        check(bad, CheckKind::Index, "third {}"),
    ];
    let status = checks::status_vector(&mut g, &all).unwrap();
    g.outputs = vec![status];
    let exe = _core::cache::executable(
        &g,
        &_core::cache::Site {
            hash: 1,
            name: "status test",
        },
    )
    .unwrap();
    let arg = _core::host::upload(&42i64.to_le_bytes(), DType::I64, &[], 0).unwrap();
    let dev = platform::get().unwrap().device(0).unwrap();
    let out = exe.execute(&[&arg], Some(dev), &[]).unwrap().remove(0);
    let metas: Vec<checks::CheckMeta> = all.iter().map(checks::CheckMeta::of).collect();
    match checks::verify(&out, &metas, false) {
        Err(Error::Invalid(m)) => assert_eq!(m, "second 42"),
        other => panic!("expected the second check, got {other:?}"),
    }
}

#[test]
fn mode_switches_take_effect_for_the_next_op() {
    let _g = setup(Mode::Fused);
    let a = upload(&[2.0], &[1], DType::F32);
    let ta = tpu_tensor(&a, view(&[1]), DType::F32);
    let before = metrics::get(&metrics::COUNTERS.executions);
    let r = dispatch("mul.Tensor", &[input(ta.clone()), input(ta.clone())]).unwrap();
    assert_eq!(
        metrics::get(&metrics::COUNTERS.executions),
        before,
        "fused: recorded only"
    );
    // Leaving fused mode runs what was recorded.
    fused::cut("mode switch").unwrap();
    mode::set(Mode::Strict);
    assert_eq!(mode::current(), Mode::Strict);
    let after_cut = metrics::get(&metrics::COUNTERS.executions);
    assert_eq!(after_cut, before + 1);
    let r2 = dispatch("mul.Tensor", &[input(new_tensor(&r)), input(ta)]).unwrap();
    assert_eq!(
        metrics::get(&metrics::COUNTERS.executions),
        after_cut + 1,
        "strict: runs at once"
    );
    assert_eq!(read_f32(&new_tensor(&r2)), [8.0]);
}

#[test]
fn reading_a_storage_whose_program_failed_raises() {
    let _g = setup(Mode::Strict);
    let s = storage::new_storage(4, 0).unwrap();
    s.set(Value::Failed("graph of 3 ops: out of memory".into()));
    let t = tpu_tensor(&s, view(&[1]), DType::F32);
    match transfer::materialize(&t, DType::F32) {
        Err(Error::Invalid(m)) => assert!(
            m.contains("has no value") && m.contains("out of memory"),
            "{m}"
        ),
        other => panic!("expected an error, got {:?}", other.err()),
    }
}

#[test]
fn strict_mode_compiles_again_for_a_new_shape() {
    let _g = setup(Mode::Strict);
    let small = upload(&[1.0, 2.0], &[2], DType::F32);
    let large = upload(&[1.0, 2.0, 3.0], &[3], DType::F32);
    let neg = |s: &Arc<storage::Storage>, n: i64| {
        let t = tpu_tensor(s, view(&[n]), DType::F32);
        new_tensor(&dispatch("neg", &[input(t)]).unwrap())
    };
    assert_eq!(read_f32(&neg(&small, 2)), [-1.0, -2.0]);
    let hits = metrics::get(&metrics::COUNTERS.cache_hits_memory);
    // Another shape is another signature: no stale replay of the first program.
    assert_eq!(read_f32(&neg(&large, 3)), [-1.0, -2.0, -3.0]);
    assert_eq!(metrics::get(&metrics::COUNTERS.cache_hits_memory), hits);
}
