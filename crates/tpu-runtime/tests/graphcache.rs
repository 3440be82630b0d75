//! Compiled graphs run directly (`graphcache.rs`): a replay in capture mode
//! is planned at its cut, and a later call with other buffers runs the one
//! program with no dispatch, writing mutated inputs and new outputs.

mod common;

use _core::graphcache::{self, Base, Out, Returned};
use _core::mode::{self, Mode};
use _core::op::{ArgIn, CallArg};
use _core::{metrics, opcache, storage};
use common::*;
use tpu_graph::DType;
use tpu_lower::{Arg, ScalarArg};

/// The graph `buf += 1; return a * buf` replayed op by op in capture mode.
fn replay(a: &CallArg<'static>, buf: &CallArg<'static>) -> Vec<_core::op::Ret> {
    let w = CallArg {
        is_write: true,
        ..buf.clone()
    };
    let one = value(Arg::Scalar(ScalarArg::Float(1.0)));
    let alpha = value(Arg::Scalar(ScalarArg::Int(1)));
    dispatch("add_.Scalar", &[w, one, alpha]).unwrap();
    dispatch("mul.Tensor", &[a.clone(), buf.clone()]).unwrap()
}

fn tensor(vals: &[f64]) -> CallArg<'static> {
    let s = upload(vals, &[vals.len() as i64], DType::F32);
    input(tpu_tensor(&s, view(&[vals.len() as i64]), DType::F32))
}

fn read(a: &CallArg) -> Vec<f32> {
    let ArgIn::Tensor(t) = &a.arg else {
        panic!("a tensor")
    };
    read_f32(t)
}

#[test]
fn a_planned_graph_runs_on_new_buffers_with_no_dispatch() {
    let _g = setup(Mode::Capture);
    let (a, buf) = (tensor(&[1.0, 2.0]), tensor(&[10.0, 20.0]));
    let inputs = [a.clone(), buf.clone()];
    let sig = opcache::signature("graph", &inputs).expect("keyed");
    let before = graphcache::snapshot();
    let rets = replay(&a, &buf);
    let program = graphcache::cut(before, "compiled graph")
        .unwrap()
        .expect("one program");
    let out = new_tensor(&rets);
    let plan = graphcache::plan(program, &inputs, &[Returned::Tensor(out.clone())]).unwrap();
    assert!(matches!(
        plan.outputs[..],
        [Out::View {
            base: Base::New(0),
            ..
        }]
    ));
    assert_eq!(read_f32(&out), [11.0, 42.0]);
    mode::set(Mode::Fused);

    // Another call with the same signature: other storages, the same program.
    let (a2, buf2) = (tensor(&[3.0, 4.0]), tensor(&[0.0, 1.0]));
    let inputs2 = [a2.clone(), buf2.clone()];
    assert_eq!(opcache::signature("graph", &inputs2), Some(sig));
    let (ops, runs) = (
        metrics::get(&metrics::COUNTERS.ops_dispatched),
        metrics::get(&metrics::COUNTERS.executions),
    );
    let bufs = plan.feed(&inputs2).expect("applies").unwrap();
    let news = [storage::new_storage(plan.news[0].nbytes, 0).unwrap()];
    plan.run(&inputs2, bufs, &news).unwrap();
    assert_eq!(metrics::get(&metrics::COUNTERS.ops_dispatched), ops);
    assert_eq!(metrics::get(&metrics::COUNTERS.executions), runs + 1);
    assert_eq!(read(&buf2), [1.0, 2.0], "the mutated input is written");
    assert_eq!(
        read_f32(&tpu_tensor(&news[0], view(&[2]), DType::F32)),
        [3.0, 8.0]
    );
    assert_eq!(
        read(&buf),
        [11.0, 21.0],
        "the first call's inputs are left alone"
    );
}

#[test]
fn a_graph_that_runs_several_programs_is_not_planned() {
    let _g = setup(Mode::Capture);
    let a = tensor(&[0.0, 2.0, 0.0]);
    let before = graphcache::snapshot();
    let sq = dispatch("mul.Tensor", &[a.clone(), a.clone()]).unwrap();
    // A data-dependent shape: the pending square runs first, then the count.
    dispatch("nonzero", &[input(new_tensor(&sq))]).unwrap();
    let why = graphcache::cut(before, "compiled graph").unwrap().err();
    mode::set(Mode::Fused);
    assert!(why.is_some_and(|w| w.contains("several programs") || w.contains("host")));
}
