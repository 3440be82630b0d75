//! The executor and its layers on the CPU plugin: the op table, resize
//! requests as outcomes, capture mode, strict mode's op-cache signatures, the
//! shim's services without a shim, and the C ABI's codes against the header.

mod common;

use _core::dispatch::{lookup, OpImpl};
use _core::error::{Error, Status};
use _core::mode::{self, Mode};
use _core::op::{ArgIn, CallArg, Outcome, Ret};
use _core::{fused, metrics, opcache, services};
use common::*;
use tpu_graph::DType;
use tpu_lower::{Arg, ScalarArg};

fn out(t: _core::op::TensorIn<'static>) -> CallArg<'static> {
    CallArg {
        arg: ArgIn::Tensor(t),
        is_write: true,
        is_out: true,
    }
}

fn executions() -> u64 {
    metrics::get(&metrics::COUNTERS.executions)
}

#[test]
fn one_table_holds_lowering_rules_and_runtime_ops() {
    assert!(matches!(lookup("add.Tensor"), Some(OpImpl::Lowered(_))));
    assert!(matches!(lookup("_copy_from"), Some(OpImpl::Runtime(_))));
    assert!(matches!(lookup("nonzero"), Some(OpImpl::Runtime(_))));
    assert!(lookup("no_such_op.default").is_none());
    let _g = setup(Mode::Strict);
    let err = _core::dispatch::dispatch("no_such_op.default", &[]).err();
    assert!(
        matches!(&err, Some(Error::NotImplemented(m)) if m.contains("aten::no_such_op.default")),
        "{err:?}"
    );
}

#[test]
fn an_undersized_out_tensor_is_a_resize_request_and_records_nothing() {
    for m in [Mode::Fused, Mode::Strict, Mode::Debug] {
        let _g = setup(m);
        let a = upload(&[1.0, 2.0, 3.0], &[3], DType::F32);
        let o = upload(&[], &[0], DType::F32);
        let ta = tpu_tensor(&a, view(&[3]), DType::F32);
        let args = [
            input(ta.clone()),
            input(ta.clone()),
            value(Arg::Scalar(ScalarArg::Int(1))),
            out(tpu_tensor(&o, view(&[0]), DType::F32)),
        ];
        let before = executions();
        match _core::dispatch::dispatch("add.out", &args) {
            Ok(Outcome::Resize(list)) => assert_eq!(list, vec![(3, vec![3])], "{m:?}"),
            Ok(Outcome::Done(_)) => panic!("{m:?}: an empty out= was written"),
            Err(e) => panic!("{m:?}: {e}"),
        }
        // Nothing of the refused call stays: a later cut runs nothing.
        fused::cut("sync").unwrap();
        assert_eq!(executions(), before, "{m:?}");
    }
}

#[test]
fn capture_mode_records_one_program_with_no_step_cuts() {
    // A repeating training-like step (in-place updates of 50 tensors of
    // distinct shapes) that fused mode's step detection cuts.
    let run_steps = |m: Mode| -> (u64, Vec<f32>) {
        let _g = setup(m);
        let tensors: Vec<_> = (1..=50)
            .map(|n| {
                let s = upload(&vec![1.0; n], &[n as i64], DType::F32);
                tpu_tensor(&s, view(&[n as i64]), DType::F32)
            })
            .collect();
        let before = executions();
        for _ in 0..5 {
            for t in &tensors {
                let w = CallArg {
                    arg: ArgIn::Tensor(t.clone()),
                    is_write: true,
                    is_out: false,
                };
                let half = value(Arg::Scalar(ScalarArg::Float(0.5)));
                let alpha = value(Arg::Scalar(ScalarArg::Int(1)));
                dispatch("add_.Scalar", &[w, half, alpha]).unwrap();
            }
        }
        let mid = executions() - before;
        fused::cut("sync").unwrap();
        (mid, read_f32(&tensors[49]))
    };
    let (fused_mid, fused_vals) = run_steps(Mode::Fused);
    let (capture_mid, capture_vals) = run_steps(Mode::Capture);
    assert!(fused_mid > 0, "fused mode finds the repeating step");
    assert_eq!(capture_mid, 0, "capture mode cuts only at its end");
    assert_eq!(fused_vals, vec![3.5; 50]);
    assert_eq!(capture_vals, fused_vals);
    mode::set(Mode::Fused);
}

#[test]
fn op_cache_signatures_tell_calls_apart() {
    let a = upload(&[1.0, 2.0, 3.0, 4.0], &[4], DType::F32);
    let b = upload(&[1.0, 2.0, 3.0, 4.0], &[4], DType::F32);
    let t = |s, shape: &[i64]| tpu_tensor(s, view(shape), DType::F32);
    let sig = |args: &[CallArg]| opcache::signature("mul.Tensor", args).expect("cacheable");
    let ab = sig(&[input(t(&a, &[4])), input(t(&b, &[4]))]);
    // The same kinds of arguments in other storages: the same program.
    let c = upload(&[5.0, 6.0, 7.0, 8.0], &[4], DType::F32);
    assert_eq!(ab, sig(&[input(t(&b, &[4])), input(t(&c, &[4]))]));
    // Another shape, the same storage twice, another op: another program.
    assert_ne!(ab, sig(&[input(t(&a, &[2, 2])), input(t(&b, &[2, 2]))]));
    assert_ne!(ab, sig(&[input(t(&a, &[4])), input(t(&a, &[4]))]));
    assert_ne!(
        ab,
        opcache::signature("add.Tensor", &[input(t(&a, &[4])), input(t(&b, &[4]))]).unwrap()
    );
    // Scalar values may be folded into the program: part of the signature.
    let scaled = |x: f64| {
        opcache::signature(
            "mul.Scalar",
            &[input(t(&a, &[4])), value(Arg::Scalar(ScalarArg::Float(x)))],
        )
    };
    assert_eq!(scaled(2.0), scaled(2.0));
    assert_ne!(scaled(2.0), scaled(3.0));
    let summed = |d: i64| {
        opcache::signature(
            "sum.dim_IntList",
            &[
                input(t(&a, &[2, 2])),
                value(Arg::Ints(vec![d])),
                value(Arg::Bool(false)),
            ],
        )
    };
    assert_ne!(summed(0), summed(1));
}

#[test]
fn strict_mode_replays_and_new_storages_get_results() {
    let _g = setup(Mode::Strict);
    let a = upload(&[1.0, 2.0], &[2], DType::F32);
    let ta = tpu_tensor(&a, view(&[2]), DType::F32);
    let first = dispatch("mul.Tensor", &[input(ta.clone()), input(ta.clone())]).unwrap();
    let hits = metrics::get(&metrics::COUNTERS.cache_hits_memory);
    let second = dispatch("mul.Tensor", &[input(ta.clone()), input(ta.clone())]).unwrap();
    assert!(
        metrics::get(&metrics::COUNTERS.cache_hits_memory) > hits,
        "replayed"
    );
    let (Ret::New { storage: s1, .. }, Ret::New { storage: s2, .. }) = (&first[0], &second[0])
    else {
        panic!("new tensors expected")
    };
    assert_ne!(s1.id, s2.id, "each call has its own result storage");
    assert_eq!(read_f32(&new_tensor(&second)), [1.0, 4.0]);
}

#[test]
fn data_dependent_ops_read_pending_fused_values() {
    let _g = setup(Mode::Fused);
    let a = upload(&[0.0, 1.0, 0.0, 2.0], &[4], DType::F32);
    let ta = tpu_tensor(&a, view(&[4]), DType::F32);
    // Pending in the open trace when nonzero needs its values.
    let sq = dispatch("mul.Tensor", &[input(ta.clone()), input(ta)]).unwrap();
    let nz = dispatch("nonzero", &[input(new_tensor(&sq))]).unwrap();
    let Ret::New { sizes, .. } = &nz[0] else {
        panic!("a new tensor")
    };
    assert_eq!(sizes, &vec![2, 1]);
    let coords = new_tensor(&nz);
    let buf = _core::transfer::materialize(&coords, DType::I64).unwrap();
    let mut bytes = [0u8; 16];
    buf.to_host(&mut bytes).unwrap();
    let got: Vec<i64> = bytes
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, [1, 3]);
}

#[test]
fn services_without_a_shim_keep_their_contract() {
    // The same contract with the shim's generators (linked with the `shim`
    // feature) and with the stand-ins (`--no-default-features`).
    assert!(services::manual_seed(0, 1234));
    assert_eq!(services::initial_seed(0), 1234);
    let first = services::draw_seed(0);
    let state = services::get_rng_state(0);
    let second = services::draw_seed(0);
    assert_ne!(first, second, "each draw is a new seed");
    assert!(services::set_rng_state(0, &state));
    assert_eq!(
        services::draw_seed(0),
        second,
        "a restored state repeats its draws"
    );
    assert!(services::manual_seed(0, 1234));
    assert_eq!(services::draw_seed(0), first, "a seed repeats its draws");
    assert!(!services::set_rng_state(0, b"short"));
    assert_eq!(services::current_device(), 0);
    assert!(!services::set_device(-1));
}

/// `enum NAME { A = 0, B = 1, ... }` of the header, as (name, value) pairs.
fn header_enum(name: &str) -> Vec<(String, i32)> {
    let header = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../csrc/tpu_abi.h"));
    let start = header
        .find(&format!("enum {name} {{"))
        .unwrap_or_else(|| panic!("enum {name} in tpu_abi.h"));
    let body = &header[start..start + header[start..].find("};").unwrap()];
    body.lines()
        .filter_map(|l| {
            let l = l.split("//").next().unwrap();
            let (k, v) = l.split_once('=')?;
            let v = v.trim().trim_end_matches(',').trim();
            Some((k.trim().to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn abi_codes_match_the_header() {
    let header = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../csrc/tpu_abi.h"));
    assert!(header.contains(&format!(
        "#define TPU_ABI_VERSION {}",
        _core::abi::ABI_VERSION
    )));
    let ours = [
        ("TPU_OK", Status::Ok),
        ("TPU_ERR_RUNTIME", Status::Runtime),
        ("TPU_ERR_NOT_IMPLEMENTED", Status::NotImplemented),
        ("TPU_ERR_OOM", Status::OutOfMemory),
        ("TPU_ERR_INDEX", Status::Index),
        ("TPU_ERR_VALUE", Status::Value),
        ("TPU_ERR_TYPE", Status::Type),
        ("TPU_RUN_ON_CPU", Status::RunOnCpu),
        ("TPU_RESIZE_OUTPUTS", Status::ResizeOutputs),
    ];
    let theirs = header_enum("TpuStatus");
    assert_eq!(
        theirs.len(),
        ours.len(),
        "every TpuStatus has a Status: {theirs:?}"
    );
    for (name, status) in ours {
        let v = theirs.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(v, Some(status as i32), "{name}");
    }
    // Errors report the status their Python exception class needs.
    assert_eq!(Error::Index("x".into()).status(), Status::Index);
    assert_eq!(
        Error::NotImplemented("x".into()).status(),
        Status::NotImplemented
    );
    assert_eq!(
        Error::AddressSpace { nbytes: 1 }.status(),
        Status::OutOfMemory
    );
    assert_eq!(Error::Invalid("x".into()).status(), Status::Runtime);
}

#[test]
fn op_errors_name_the_call_and_keep_their_cause() {
    let _g = setup(Mode::Strict);
    let a = upload(&[1.0, 2.0, 3.0], &[3], DType::F32);
    let b = upload(&[1.0, 2.0], &[2], DType::F32);
    let args = [
        input(tpu_tensor(&a, view(&[3]), DType::F32)),
        input(tpu_tensor(&b, view(&[2]), DType::F32)),
    ];
    let e = _core::dispatch::dispatch("add.Tensor", &args)
        .err()
        .expect("shapes differ");
    let e = _core::op::in_op("add.Tensor", &args, e);
    let Error::InOp { op, arguments, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(op, "aten::add.Tensor");
    assert_eq!(arguments, &["float32[3]", "float32[2]"]);
    assert!(e
        .to_string()
        .starts_with("aten::add.Tensor (arguments: float32[3], float32[2]): "));
    assert_eq!(e.status(), Status::Runtime);
    let oom = _core::op::in_op("mm", &[], Error::OutOfMemory("x".into()));
    assert_eq!(
        oom.status(),
        Status::OutOfMemory,
        "the cause decides the exception class"
    );
}

/// `s += 1` as one program of its own; returns the parameters it donated.
fn add_one_in_place(s: &std::sync::Arc<_core::storage::Storage>) -> Vec<usize> {
    let mut t = _core::trace::Trace::new(0);
    let v = t.read_storage(s, DType::F32).unwrap();
    let v =
        t.g.binary_const(tpu_graph::BinaryKind::Add, v, 1.0)
            .unwrap();
    t.write_storage(s, v);
    t.note_op("add_");
    let (_, program) = t.cut_planned("test").unwrap();
    program.expect("a program ran").donated
}

#[test]
fn an_in_place_update_donates_the_old_buffer_only_when_nothing_else_holds_it() {
    let _g = setup(Mode::Strict);
    let s = upload(&[1.0, 2.0], &[2], DType::F32);
    assert_eq!(
        add_one_in_place(&s),
        vec![0],
        "sole holder: updated in place"
    );
    assert_eq!(
        read_f32(&tpu_tensor(&s, view(&[2]), DType::F32)),
        [2.0, 3.0]
    );
    // Someone else (an uploaded tensor's other view, a pending read) holds the buffer.
    let _core::storage::Value::Device(held, _) = s.value() else {
        panic!("a device value")
    };
    assert!(
        add_one_in_place(&s).is_empty(),
        "a shared buffer is not donated"
    );
    let mut bytes = [0u8; 8];
    held.to_host(&mut bytes).unwrap();
    let old: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(old, [2.0, 3.0], "the other holder keeps its values");
    assert_eq!(
        read_f32(&tpu_tensor(&s, view(&[2]), DType::F32)),
        [3.0, 4.0]
    );
}

#[test]
fn recorded_work_compiled_in_background_is_dropped_unrun_and_found_later() {
    // What torch.compile's precompile_sizes does: record, hand the program to
    // a compile thread, drop the trace; the same work recorded again then
    // finds the executable instead of compiling.
    let _g = setup(Mode::Capture);
    let s = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], &[7], DType::F32);
    let x = tpu_tensor(&s, view(&[7]), DType::F32);
    let record = || {
        let w = CallArg {
            arg: ArgIn::Tensor(x.clone()),
            is_write: true,
            is_out: false,
        };
        let k = value(Arg::Scalar(ScalarArg::Float(0.25)));
        let alpha = value(Arg::Scalar(ScalarArg::Int(1)));
        dispatch("add_.Scalar", &[w, k, alpha]).unwrap();
        dispatch(
            "exp_",
            &[CallArg {
                arg: ArgIn::Tensor(x.clone()),
                is_write: true,
                is_out: false,
            }],
        )
        .unwrap();
    };
    let compiles = || metrics::get(&metrics::COUNTERS.compiles);
    let (c0, e0) = (compiles(), executions());
    record();
    fused::compile_open_in_background().unwrap();
    _core::cache::wait_background_compiles();
    assert_eq!(executions(), e0, "nothing ran");
    assert_eq!(
        read_f32(&x),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        "the write was dropped"
    );
    let c1 = compiles();
    assert!(c1 > c0 || metrics::get(&metrics::COUNTERS.cache_hits_disk) > 0);
    record();
    fused::cut("sync").unwrap();
    assert_eq!(compiles(), c1, "the background compile was found");
    let want: Vec<f32> = (1..=7).map(|v| (v as f32 + 0.25).exp()).collect();
    assert_eq!(read_f32(&x), want);
    mode::set(Mode::Fused);
}
