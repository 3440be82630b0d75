//! `torch_tpu._core.CompiledGraph`: the plans of one `torch.compile`d graph,
//! by input signature, and the one call that runs a compiled graph directly
//! (see `graphcache.rs`; `python/torch_tpu/_compile.py` replays and captures).

use crate::error::Error;
use crate::graphcache::{self, Base, GraphPlan, Out, Returned, Snapshot};
use crate::mode::{self, Mode};
use crate::op::{ArgIn, CallArg, TensorIn};
use crate::storage::{self, Storage};
use crate::trace::MathBits;
use crate::{fused, opcache};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyTuple};
use std::sync::{Arc, Mutex};
use tpu_graph::{DType, View};
use tpu_lower::Arg;

fn py_err(e: Error) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// torch's functions that make the outputs of a direct call.
struct Torch {
    empty_strided: PyObject,
    as_strided: PyObject,
}

static TORCH: GILOnceCell<Torch> = GILOnceCell::new();

fn torch(py: Python<'_>) -> PyResult<&'static Torch> {
    TORCH.get_or_try_init(py, || {
        let t = py.import("torch")?;
        Ok(Torch {
            empty_strided: t.getattr("empty_strided")?.unbind(),
            as_strided: t.getattr("as_strided")?.unbind(),
        })
    })
}

/// An output of a plan with the Python objects it needs at every call.
enum PyOut {
    Same(usize),
    /// `as_strided(input or new storage base, sizes, strides, offset)`.
    View(Base, Py<PyTuple>),
    /// The exact tensor allocated for new storage k.
    New(usize),
    Other(PyObject),
}

struct Entry {
    plan: GraphPlan,
    /// Per new storage: `empty_strided` arguments and keywords (dtype, device).
    allocs: Vec<(Py<PyTuple>, Py<PyDict>)>,
    outs: Vec<PyOut>,
    as_tuple: bool,
}

/// Plans kept per graph (one per input signature).
const MAX_PLANS: usize = 64;

/// The plans of one compiled graph, keyed by input signature.
#[pyclass(module = "torch_tpu._core")]
pub struct CompiledGraph {
    name: String,
    /// torch dtypes and ours (matched by identity).
    dtypes: Vec<(PyObject, DType)>,
    plans: Mutex<rustc_hash::FxHashMap<u64, Arc<Entry>>>,
}

/// What a call's inputs are to the runtime, or why a plan cannot key them.
fn inputs<'py>(
    g: &CompiledGraph,
    args: &[Bound<'py, PyAny>],
) -> PyResult<Result<Vec<CallArg<'static>>, &'static str>> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        let arg = if a.is_none() {
            ArgIn::Value(Arg::None)
        } else if a.is_instance_of::<PyBool>() {
            ArgIn::Value(Arg::Bool(a.extract()?))
        } else if a.is_instance_of::<PyInt>() {
            ArgIn::Value(Arg::Int(a.extract()?))
        } else if a.is_instance_of::<PyFloat>() {
            ArgIn::Value(Arg::Float(a.extract()?))
        } else {
            match tensor(g, a)? {
                Ok(Some(t)) => ArgIn::Tensor(t),
                // No storage (data pointer 0), and no data for the program to
                // read: Dynamo keys its sizes, so the signature need not.
                Ok(None) => ArgIn::Value(Arg::None),
                Err(why) => return Ok(Err(why)),
            }
        };
        out.push(CallArg {
            arg,
            is_write: false,
            is_out: false,
        });
    }
    Ok(Ok(out))
}

/// A tpu tensor as the runtime sees it: its storage (found by its data
/// pointer, an address inside the storage's range), view and dtype; None for
/// a tensor with no elements, which has no storage address.
fn tensor(
    g: &CompiledGraph,
    t: &Bound<'_, PyAny>,
) -> PyResult<Result<Option<TensorIn<'static>>, &'static str>> {
    let Ok(is_cpu) = t.getattr("is_cpu").and_then(|v| v.extract::<bool>()) else {
        return Ok(Err("an input is neither a tensor nor a number"));
    };
    let sizes: Vec<i64> = t.call_method0("size")?.extract()?;
    if sizes.contains(&0) {
        return Ok(Ok(None));
    }
    if is_cpu {
        return Ok(Err("a CPU tensor input"));
    }
    let py_dtype = t.getattr("dtype")?;
    let Some(dtype) = g.dtypes.iter().find(|(d, _)| d.is(&py_dtype)).map(|d| d.1) else {
        return Ok(Err("an input dtype the runtime has no type for"));
    };
    let addr: u64 = t.call_method0("data_ptr")?.extract()?;
    let offset: i64 = t.call_method0("storage_offset")?.extract()?;
    let strides: Vec<i64> = t.call_method0("stride")?.extract()?;
    let Some(storage) =
        storage::from_addr(addr).filter(|s| s.addr + (offset as u64) * dtype.size() as u64 == addr)
    else {
        return Ok(Err("an input tensor is not on the tpu"));
    };
    let bits = MathBits {
        conj: dtype.is_complex() && t.call_method0("is_conj")?.extract()?,
        neg: t.call_method0("is_neg")?.extract()?,
    };
    Ok(Ok(Some(TensorIn::Tpu {
        device: storage.device,
        storage,
        view: View {
            offset,
            sizes,
            strides,
        },
        dtype,
        bits,
    })))
}

fn args_of<'py>(args: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    args.try_iter()?.collect()
}

#[pymethods]
impl CompiledGraph {
    /// `dtypes`: (torch dtype, its name) pairs.
    #[new]
    fn new(name: String, dtypes: Vec<(PyObject, String)>) -> CompiledGraph {
        let all = [
            DType::Bool,
            DType::U8,
            DType::I8,
            DType::I16,
            DType::I32,
            DType::I64,
            DType::F16,
            DType::BF16,
            DType::F32,
            DType::F64,
            DType::U32,
            DType::U64,
            DType::C64,
            DType::C128,
        ];
        let dtypes = dtypes
            .into_iter()
            .filter_map(|(obj, n)| all.iter().find(|d| d.to_string() == n).map(|d| (obj, *d)))
            .collect();
        CompiledGraph {
            name,
            dtypes,
            plans: Mutex::new(Default::default()),
        }
    }

    /// Runs the graph directly when a plan has this call's signature: cuts
    /// pending eager work, feeds the program, returns `(True, outputs)`.
    /// Otherwise `(False, signature)` (replay and capture) or `(False,
    /// reason)` (replay; the call has no plan and will not get one).
    fn call(&self, py: Python<'_>, args: &Bound<'_, PyAny>) -> PyResult<(bool, PyObject)> {
        if mode::current() == Mode::Fused {
            py.allow_threads(|| fused::cut("compiled graph"))
                .map_err(py_err)?;
        }
        let objs = args_of(args)?;
        let ins = match inputs(self, &objs)? {
            Ok(ins) => ins,
            Err(why) => return Ok((false, why.into_pyobject(py)?.into_any().unbind())),
        };
        let Some(sig) = opcache::signature(&self.name, &ins) else {
            let why = "an input is still being computed or has failed";
            return Ok((false, why.into_pyobject(py)?.into_any().unbind()));
        };
        let entry = self
            .plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&sig)
            .cloned();
        let miss = || Ok((false, sig.into_pyobject(py)?.into_any().unbind()));
        let Some(entry) = entry else { return miss() };
        let bufs = match entry.plan.feed(&ins) {
            None => {
                let why = "a donated input buffer is shared";
                return Ok((false, why.into_pyobject(py)?.into_any().unbind()));
            }
            Some(r) => r.map_err(py_err)?,
        };
        let t = torch(py)?;
        let mut bases = Vec::with_capacity(entry.allocs.len());
        let mut news: Vec<Arc<Storage>> = Vec::with_capacity(entry.allocs.len());
        for (shape, kw) in &entry.allocs {
            let b = t
                .empty_strided
                .bind(py)
                .call(shape.bind(py), Some(kw.bind(py)))?;
            let addr: u64 = b.call_method0("data_ptr")?.extract()?;
            let s = storage::from_addr(addr).ok_or_else(|| {
                PyRuntimeError::new_err("internal: a new output has no tpu storage")
            })?;
            news.push(s);
            bases.push(b);
        }
        // Not waited for: the run is only enqueued, so the GIL stays held.
        entry.plan.run(&ins, bufs, &news).map_err(py_err)?;
        let mut outs = Vec::with_capacity(entry.outs.len());
        for o in &entry.outs {
            outs.push(match o {
                PyOut::Same(i) => objs[*i].clone(),
                PyOut::New(k) => bases[*k].clone(),
                PyOut::View(base, view) => {
                    let b = match base {
                        Base::Input(i) => &objs[*i],
                        Base::New(k) => &bases[*k],
                    };
                    let (sizes, strides, offset) = (
                        view.bind(py).get_item(0)?,
                        view.bind(py).get_item(1)?,
                        view.bind(py).get_item(2)?,
                    );
                    t.as_strided.bind(py).call1((b, sizes, strides, offset))?
                }
                PyOut::Other(v) => v.bind(py).clone(),
            });
        }
        let outs = if entry.as_tuple {
            PyTuple::new(py, outs)?.into_any().unbind()
        } else {
            PyList::new(py, outs)?.into_any().unbind()
        };
        Ok((true, outs))
    }

    /// Cuts the replay of a call (capture mode) and, when `sig` is a
    /// signature from [`CompiledGraph::call`], keeps its plan. Returns None
    /// when planned, else why the graph cannot be run directly.
    #[pyo3(signature = (before, sig, args, outputs, reason = "compiled graph"))]
    fn capture(
        &self,
        py: Python<'_>,
        before: (u64, u64, u64, u64),
        sig: Option<u64>,
        args: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyAny>,
        reason: &str,
    ) -> PyResult<Option<&'static str>> {
        let before = Snapshot::from(before);
        let program = match py
            .allow_threads(|| graphcache::cut(before, reason))
            .map_err(py_err)?
        {
            Ok(p) => p,
            Err(why) => return Ok(Some(why)),
        };
        let Some(sig) = sig else { return Ok(None) };
        let objs = args_of(args)?;
        let ins = match inputs(self, &objs)? {
            Ok(ins) => ins,
            Err(why) => return Ok(Some(why)),
        };
        let as_tuple = outputs.is_instance_of::<PyTuple>();
        let outs = args_of(outputs)?;
        let mut returned = Vec::with_capacity(outs.len());
        for o in &outs {
            returned.push(if let Some(i) = objs.iter().position(|a| a.is(o)) {
                Returned::Same(i)
            } else if o.is_none() || o.is_instance_of::<PyInt>() || o.is_instance_of::<PyFloat>() {
                Returned::Other
            } else {
                match tensor(self, o)? {
                    Ok(Some(t)) => Returned::Tensor(t),
                    _ => return Ok(Some("an output is not a tpu tensor or a number")),
                }
            });
        }
        let plan = match graphcache::plan(program, &ins, &returned) {
            Ok(p) => p,
            Err(why) => return Ok(Some(why)),
        };
        let mut allocs = Vec::with_capacity(plan.news.len());
        for (k, n) in plan.news.iter().enumerate() {
            // The dtype and device of an output over this storage.
            let over = |p: &Out| matches!(p, Out::View { base: Base::New(j), .. } if *j == k);
            let o = plan.outputs.iter().position(over).ok_or_else(|| {
                PyRuntimeError::new_err("internal: a new storage without an output")
            })?;
            let (dtype, device) = (outs[o].getattr("dtype")?, outs[o].getattr("device")?);
            let kw = PyDict::new(py);
            kw.set_item("dtype", dtype)?;
            kw.set_item("device", device)?;
            let shape = match n.exact.map(|o| &plan.outputs[o]) {
                Some(Out::View { view, .. }) => (view.sizes.clone(), view.strides.clone()),
                _ => (vec![(n.nbytes / n.dtype.size().max(1)) as i64], vec![1]),
            };
            allocs.push((PyTuple::new(py, [shape.0, shape.1])?.unbind(), kw.unbind()));
        }
        let mut pyouts = Vec::with_capacity(plan.outputs.len());
        for (k, (o, obj)) in plan.outputs.iter().zip(&outs).enumerate() {
            pyouts.push(match o {
                Out::Same(i) => PyOut::Same(*i),
                Out::Other => PyOut::Other(obj.clone().unbind()),
                Out::View {
                    base: Base::New(n), ..
                } if plan.news[*n].exact == Some(k) => PyOut::New(*n),
                Out::View { base, view, .. } => PyOut::View(
                    *base,
                    PyTuple::new(
                        py,
                        [
                            PyTuple::new(py, &view.sizes)?.into_any(),
                            PyTuple::new(py, &view.strides)?.into_any(),
                            view.offset.into_pyobject(py)?.into_any(),
                        ],
                    )?
                    .unbind(),
                ),
            });
        }
        let entry = Entry {
            plan,
            allocs,
            outs: pyouts,
            as_tuple,
        };
        let mut plans = self
            .plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Each signature has its own program anyway; a graph called with
        // ever new shapes must not hold every plan it ever had.
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(sig, Arc::new(entry));
        Ok(None)
    }

    /// Plans kept (one per input signature seen).
    fn plan_count(&self) -> usize {
        self.plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// The counters a replay must leave alone to be planned (see `graphcache::cut`).
#[pyfunction]
pub fn graph_snapshot() -> (u64, u64, u64, u64) {
    graphcache::snapshot().into()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CompiledGraph>()?;
    m.add_function(wrap_pyfunction!(graph_snapshot, m)?)?;
    Ok(())
}
