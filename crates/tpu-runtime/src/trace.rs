//! A trace: the graph of ops recorded since the last cut, with the buffers
//! and host values that feed its parameters and the storages it writes.
//!
//! Strict and debug modes record one op per trace and cut at once; fused mode
//! keeps one trace open across ops (see `fused.rs`). Cutting a trace
//! ([`Trace::cut`]) is where a graph becomes an executable and runs.

use crate::checks::CheckMeta;
use crate::error::{Error, Result};
use crate::program::{self, Program, Source};
use crate::storage::{PendingRef, Storage, Value};
use crate::{cache, checks, host};
use pjrt::{Buffer, LoadedExecutable};
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tpu_graph::{DType, Graph, ReduceKind, UnaryKind, ValueId, ValueType, View};
use tpu_lower::registry::{Check, CheckKind, HostValue};

/// What feeds one graph parameter.
pub enum Input {
    Buffer(Arc<Buffer>),
    Host(HostValue),
}

/// A tensor as the runtime sees it: a view of a storage.
pub struct TensorRef<'a> {
    pub storage: &'a Arc<Storage>,
    pub view: View,
    pub dtype: DType,
    pub bits: MathBits,
}

/// PyTorch's lazy math bits of a view: its values are the conjugate and/or
/// the negation of what the storage holds (`x.conj()`, `x.conj().imag`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MathBits {
    pub conj: bool,
    pub neg: bool,
}

impl MathBits {
    pub fn is_none(self) -> bool {
        !self.conj && !self.neg
    }

    /// Applies the bits (each is its own inverse, so reads and writes share this).
    pub fn apply(self, g: &mut tpu_graph::Graph, v: ValueId) -> tpu_graph::Result<ValueId> {
        let v = if self.conj { g.conj(v)? } else { v };
        if self.neg {
            g.unary(tpu_graph::UnaryKind::Neg, v)
        } else {
            Ok(v)
        }
    }
}

static NEXT_TRACE: AtomicU64 = AtomicU64::new(1);

/// Waits until the value of every live storage is computed
/// (`torch.tpu.synchronize()`), raising the first failed value check.
pub fn wait_all() -> Result<()> {
    for s in crate::storage::live() {
        if let Value::Device(b, _) = s.value() {
            b.ready_event()?.await_ready()?;
        }
    }
    checks::raise_pending()
}

/// What [`Trace::prepare`] made of a trace for compiling.
struct Prepared {
    targets: Vec<(Arc<Storage>, DType)>,
    n_storage_outputs: usize,
    n_outputs: usize,
    metas: Option<Arc<[CheckMeta]>>,
}

pub struct Trace {
    pub id: u64,
    pub g: Graph,
    pub device: usize,
    inputs: Vec<Option<Input>>,
    /// Storages read from their device buffer, by storage id.
    read_params: HashMap<u64, ValueId>,
    /// Storages this trace writes, in first-write order, with their latest value.
    written: Vec<(Weak<Storage>, ValueId, DType)>,
    written_index: HashMap<u64, usize>,
    /// Values wanted back without a storage (reads to host).
    pub extra_outputs: Vec<ValueId>,
    /// Values of written storages before this trace, restored if it fails.
    prior: Vec<(Weak<Storage>, Value)>,
    /// The program of the last run (see [`Trace::cut_planned`]).
    program: Option<Program>,
    /// Number of ops recorded.
    pub ops: usize,
    /// Running hash of the recorded op names: the graph's site, shapes aside.
    site_hash: u64,
    first_op: String,
    last_op: String,
    /// Check written float values for NaN/Inf (debug mode).
    pub nan_check: bool,
    /// Value checks of the recorded ops (see `checks.rs`).
    pub checks: Vec<Check>,
    /// Read the checks when the program has run and fail the trace (debug
    /// mode); otherwise the next host sync raises them.
    pub sync_checks: bool,
}

impl Trace {
    pub fn new(device: usize) -> Trace {
        Trace {
            id: NEXT_TRACE.fetch_add(1, Ordering::Relaxed),
            g: Graph::new(),
            device,
            inputs: Vec::new(),
            read_params: HashMap::default(),
            written: Vec::new(),
            written_index: HashMap::default(),
            extra_outputs: Vec::new(),
            prior: Vec::new(),
            program: None,
            ops: 0,
            site_hash: 0xcbf2_9ce4_8422_2325,
            first_op: String::new(),
            last_op: String::new(),
            nan_check: false,
            checks: Vec::new(),
            sync_checks: false,
        }
    }

    /// Where the trace stands, so a failed op can be taken back out of it.
    pub fn checkpoint(&self) -> (usize, usize, usize, usize) {
        (
            self.g.nodes.len(),
            self.g.types.len(),
            self.g.params.len(),
            self.checks.len(),
        )
    }

    /// Removes everything recorded since `cp` (nothing was written since: writes come last).
    pub fn rollback(&mut self, cp: (usize, usize, usize, usize)) {
        let (nodes, types, params, checks) = cp;
        self.checks.truncate(checks);
        self.g.nodes.truncate(nodes);
        self.g.types.truncate(types);
        self.g.producers.truncate(types);
        self.g.params.truncate(params);
        self.inputs.truncate(params);
        self.read_params.retain(|_, v| (v.0 as usize) < types);
    }

    /// Counts one recorded op.
    pub fn note_op(&mut self, name: &str) {
        self.ops += 1;
        for b in name.bytes() {
            self.site_hash = (self.site_hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.site_hash = (self.site_hash ^ 0xff).wrapping_mul(0x100_0000_01b3);
        if self.first_op.is_empty() {
            self.first_op = name.to_string();
        }
        if self.ops > 1 {
            self.last_op.clear();
            self.last_op.push_str(name);
        }
    }

    fn site_name(&self) -> String {
        if self.ops <= 1 {
            format!("aten::{}", self.first_op)
        } else {
            format!(
                "graph of {} ops (aten::{} .. aten::{})",
                self.ops, self.first_op, self.last_op
            )
        }
    }

    /// Donates the old buffer of each written storage to its new value when
    /// nothing else holds that buffer (XLA then updates it in place).
    fn donate(&mut self, targets: &[(Arc<Storage>, DType)]) {
        for (k, (s, _)) in targets.iter().enumerate() {
            let Some(&p) = self.read_params.get(&s.id) else {
                continue;
            };
            let out = self.g.outputs[k];
            let tpu_graph::Op::Parameter(index) = self.g.node_of(p).op else {
                continue;
            };
            let index = index as usize;
            if out == p
                || self.g.ty(out) != self.g.ty(p)
                || self.g.aliases.iter().any(|(i, _)| *i == index)
            {
                continue;
            }
            let Some(Input::Buffer(buf)) = &self.inputs[index] else {
                continue;
            };
            let held_by_prior = self
                .prior
                .iter()
                .any(|(_, v)| matches!(v, Value::Device(b, _) if Arc::ptr_eq(b, buf)));
            if Arc::strong_count(buf) == 1 + held_by_prior as usize {
                self.g.aliases.push((index, k));
            }
        }
    }

    /// Nothing to run: no writes, no extra outputs and no checks (an assert alone is work).
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.extra_outputs.is_empty() && self.checks.is_empty()
    }

    /// A parameter fed by `input`.
    pub fn param(&mut self, ty: ValueType, input: Input) -> ValueId {
        let v = self.g.parameter(ty);
        self.inputs.push(Some(input));
        v
    }

    /// Records host inputs the lowering created (its parameters were appended in order).
    pub fn add_host_inputs(&mut self, host: Vec<(ValueId, HostValue)>) {
        for (_, hv) in host {
            self.inputs.push(Some(Input::Host(hv)));
        }
        debug_assert_eq!(self.inputs.len(), self.g.params.len());
    }

    /// The storage's whole flat value, in the storage's element dtype
    /// (`want` is used when the storage was never written).
    pub fn read_storage(&mut self, s: &Arc<Storage>, want: DType) -> Result<ValueId> {
        if let Some(&i) = self.written_index.get(&s.id) {
            return Ok(self.written[i].1);
        }
        if let Some(&v) = self.read_params.get(&s.id) {
            return Ok(v);
        }
        match s.value() {
            Value::Empty => {
                let len = (s.nbytes / want.size()) as i64;
                Ok(self.g.constant(tpu_graph::ConstVal::Int(0), want, &[len]))
            }
            // No elements to read: a constant, so that a program never takes an
            // empty buffer (which has no address for a compiled graph to find).
            Value::Device(_, dtype) if s.nbytes == 0 => {
                Ok(self.g.constant(tpu_graph::ConstVal::Int(0), dtype, &[0]))
            }
            Value::Device(buf, dtype) => {
                let len = (s.nbytes / dtype.size()) as i64;
                let v = self.param(ValueType::new(dtype, &[len]), Input::Buffer(buf));
                self.read_params.insert(s.id, v);
                Ok(v)
            }
            Value::Pending(p) => Err(Error::Invalid(format!(
                "internal: storage {} is pending in trace {} while recording trace {}",
                s.id, p.trace, self.id
            ))),
            Value::Failed(why) => Err(Error::Invalid(format!(
                "this tensor has no value: the program that was to compute it failed ({why})"
            ))),
        }
    }

    /// Makes `v` (flat, rank 1) the storage's new value.
    pub fn write_storage(&mut self, s: &Arc<Storage>, v: ValueId) {
        let dtype = self.g.dtype(v);
        match self.written_index.get(&s.id) {
            Some(&i) => self.written[i] = (Arc::downgrade(s), v, dtype),
            None => {
                self.written_index.insert(s.id, self.written.len());
                self.written.push((Arc::downgrade(s), v, dtype));
                self.prior.push((Arc::downgrade(s), s.value()));
            }
        }
        s.set(Value::Pending(PendingRef { trace: self.id, v }));
    }

    /// Flat value reinterpreted as `dtype` (same element width).
    fn flat_as(&mut self, s: &Arc<Storage>, dtype: DType) -> Result<ValueId> {
        let flat = self.read_storage(s, dtype)?;
        let have = self.g.dtype(flat);
        if have == dtype {
            return Ok(flat);
        }
        Ok(self.g.reinterpret_flat(flat, dtype)?)
    }

    /// Reads a tensor through its view.
    pub fn read(&mut self, t: &TensorRef) -> Result<ValueId> {
        let flat = self.flat_as(t.storage, t.dtype)?;
        let v = self.g.strided_read(flat, &t.view)?;
        Ok(t.bits.apply(&mut self.g, v)?)
    }

    /// Writes `v` through the tensor's view (converting to its dtype).
    pub fn write(&mut self, t: &TensorRef, v: ValueId) -> Result<()> {
        let v = self.g.convert(v, t.dtype);
        let v = t.bits.apply(&mut self.g, v)?;
        let len = (t.storage.nbytes / t.dtype.size()) as i64;
        let new_flat = if t.view.covers(len) {
            self.g.reshape(v, &[len])?
        } else {
            let old = self.flat_as(t.storage, t.dtype)?;
            self.g.strided_write(old, &t.view, v)?
        };
        // Keep the storage's element dtype stable across reinterpreting writes.
        let new_flat = match self.storage_dtype(t.storage) {
            Some(d) if d != t.dtype => self.g.reinterpret_flat(new_flat, d)?,
            _ => new_flat,
        };
        self.write_storage(t.storage, new_flat);
        Ok(())
    }

    fn storage_dtype(&self, s: &Arc<Storage>) -> Option<DType> {
        if let Some(&i) = self.written_index.get(&s.id) {
            return Some(self.written[i].2);
        }
        match s.value() {
            Value::Device(_, d) => Some(d),
            _ => None,
        }
    }

    /// Compiles (or finds) and runs the trace; written storages that are
    /// still alive get the results; returns the extra outputs' buffers.
    pub fn cut(self, reason: &str) -> Result<Vec<Arc<Buffer>>> {
        self.cut_planned(reason).map(|(extra, _)| extra)
    }

    /// Like [`Trace::cut`], also saying how the program was fed, so that
    /// strict mode can replay it for the same op signature.
    pub fn cut_planned(mut self, reason: &str) -> Result<(Vec<Arc<Buffer>>, Option<Program>)> {
        let result = self
            .execute(reason)
            .map(|extra| (extra, self.program.take()));
        if let Err(e) = &result {
            // The writes never happened: storages keep their old values. One
            // that had none (or whose buffer a failed run consumed) is
            // marked, so reading it raises instead of giving zeros.
            let why: Arc<str> = format!("{}: {e}", self.site_name()).into();
            self.restore_prior(Some(why));
        }
        result
    }

    /// Storages this trace wrote get their values from before it back;
    /// with `failed`, one that had none (or lost its buffer) is marked failed.
    fn restore_prior(&mut self, failed: Option<Arc<str>>) {
        for (w, old) in std::mem::take(&mut self.prior) {
            if let Some(s) = w.upgrade() {
                let mut val = s
                    .value
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if matches!(*val, Value::Pending(p) if p.trace == self.id) {
                    *val = match (old, &failed) {
                        (Value::Empty, Some(why)) => Value::Failed(why.clone()),
                        (Value::Device(b, _), Some(why)) if b.is_deleted() => {
                            Value::Failed(why.clone())
                        }
                        (old, _) => old,
                    };
                }
            }
        }
    }

    /// The program this trace would run, handed to a background compile
    /// thread, and the trace dropped unrun: what it wrote keeps its old value.
    pub fn compile_in_background(mut self) -> Result<()> {
        let prepared = self.prepare();
        self.restore_prior(None);
        if prepared?.is_some() {
            let name = self.site_name();
            cache::compile_in_background(self.g.clone(), name, self.site_hash);
        }
        Ok(())
    }

    fn execute(&mut self, reason: &str) -> Result<Vec<Arc<Buffer>>> {
        let Some(Prepared {
            targets,
            n_storage_outputs,
            n_outputs,
            metas,
        }) = self.prepare()?
        else {
            return Ok(Vec::new());
        };
        let site_name = self.site_name();
        let exe = cache::executable(
            &self.g,
            &cache::Site {
                hash: self.site_hash,
                name: &site_name,
            },
        )?;
        let extra = n_outputs - n_storage_outputs;
        let program = self.program_for(exe, &targets, extra, metas, site_name);
        let owned = program.arguments(|i| match &self.inputs[i] {
            Some(Input::Buffer(b)) => Ok(b.clone()),
            Some(Input::Host(hv)) => {
                let dtype = self.g.ty(self.g.params[i]).dtype;
                host::host_value_buffer(hv, dtype, self.device)
            }
            None => crate::invalid!("internal: parameter {i} has no input"),
        })?;
        let args: Vec<&Buffer> = owned.iter().map(|b| b.as_ref()).collect();
        let results = program::run(&program, &args, || {
            format!(
                "{} ({} ops, cut: {reason})",
                cache::key_name(&self.g.structural_hash()),
                self.ops
            )
        })?;
        self.program = Some(program);
        for ((s, dtype), buf) in targets.into_iter().zip(results.storages) {
            let mut val = s
                .value
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if matches!(*val, Value::Pending(p) if p.trace == self.id) {
                *val = Value::Device(buf, dtype);
            }
        }
        Ok(results.extra)
    }

    /// The graph as it will compile: outputs (written storages, extra
    /// outputs, the checks' status vector), donations and packed scalars;
    /// None when it has nothing to compute.
    fn prepare(&mut self) -> Result<Option<Prepared>> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut targets = Vec::new();
        let mut outputs = Vec::new();
        for (w, v, dtype) in &self.written {
            if let Some(s) = w.upgrade() {
                targets.push((s, *dtype));
                outputs.push(*v);
            }
        }
        let n_storage_outputs = outputs.len();
        outputs.extend(self.extra_outputs.iter().copied());
        let n_outputs = outputs.len();
        let mut all_checks = std::mem::take(&mut self.checks);
        if self.nan_check {
            for (k, &v) in outputs.iter().enumerate() {
                if self.g.dtype(v).is_float() {
                    let f = self.g.unary(UnaryKind::IsFinite, v)?;
                    let dims: Vec<i64> = (0..self.g.rank(f) as i64).collect();
                    all_checks.push(Check {
                        ok: self.g.reduce(ReduceKind::And, f, &dims)?,
                        value: self
                            .g
                            .constant(tpu_graph::ConstVal::Int(0), DType::I64, &[]),
                        kind: CheckKind::Runtime,
                        message: format!("produced NaN or Inf (output {k}); nan check is on"),
                    });
                }
            }
        }
        let metas: Option<Arc<[CheckMeta]>> = if all_checks.is_empty() {
            None
        } else {
            outputs.push(checks::status_vector(&mut self.g, &all_checks)?);
            Some(all_checks.iter().map(CheckMeta::of).collect())
        };
        if outputs.is_empty() {
            return Ok(None);
        }
        self.g.outputs = outputs;
        // A failed debug-mode check leaves every tensor as it was, so no
        // buffer may be given up to the program.
        if !(self.sync_checks && metas.is_some()) {
            self.donate(&targets);
        }
        let scalars: Vec<usize> = (self.inputs.iter().enumerate())
            .filter_map(|(i, input)| {
                matches!(input, Some(Input::Host(HostValue::Scalar(_)))).then_some(i)
            })
            .collect();
        self.g.pack_scalar_params(&scalars);
        Ok(Some(Prepared {
            targets,
            n_storage_outputs,
            n_outputs,
            metas,
        }))
    }

    fn program_for(
        &self,
        exe: Arc<LoadedExecutable>,
        targets: &[(Arc<Storage>, DType)],
        extra: usize,
        checks: Option<Arc<[CheckMeta]>>,
        site: String,
    ) -> Program {
        let mut storage_of = vec![None; self.inputs.len()];
        for (&id, &v) in &self.read_params {
            if let tpu_graph::Op::Parameter(i) = self.g.node_of(v).op {
                storage_of[i as usize] = Some(id);
            }
        }
        let inputs = self
            .inputs
            .iter()
            .zip(storage_of)
            .zip(&self.g.params)
            .map(|((input, id), &p)| match (input, id) {
                (Some(Input::Host(hv)), _) => Source::Host(*hv, self.g.dtype(p)),
                (Some(Input::Buffer(_)), Some(id)) => Source::Storage(id),
                _ => Source::Other,
            })
            .collect();
        let slots = self.g.arg_slots();
        Program {
            exe,
            device: self.device,
            inputs,
            unpacked: self.g.unpacked_params(),
            packs: self.g.packs.clone(),
            outputs: targets.iter().map(|(s, d)| (s.id, *d)).collect(),
            extra,
            donated: (self.g.aliases.iter())
                .filter_map(|&(p, _)| match slots[p] {
                    tpu_graph::ArgSlot::Own(a) => Some(a),
                    tpu_graph::ArgSlot::Packed { .. } => None,
                })
                .collect(),
            checks,
            sync_checks: self.sync_checks,
            ops: self.ops,
            site,
            replayable: extra == 0 && !self.nan_check && !self.sync_checks,
        }
    }

    /// The live storages this trace writes.
    pub fn written_storages(&self) -> Vec<Arc<Storage>> {
        self.written
            .iter()
            .filter_map(|(w, _, _)| w.upgrade())
            .collect()
    }

    /// Waits for every output to be computed (debug mode): errors surface at the op.
    pub fn wait_written(bufs: &[Arc<Storage>]) -> Result<()> {
        for s in bufs {
            if let Value::Device(b, _) = s.value() {
                b.ready_event()?.await_ready()?;
            }
        }
        Ok(())
    }
}
