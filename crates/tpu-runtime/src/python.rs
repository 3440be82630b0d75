//! The `torch_tpu._core` Python module: control calls only (modes, sync,
//! metrics, memory, seeds). Ops never pass through Python.

use crate::error::Error;
use crate::mode::{self, Mode};
use crate::{abi, cache, env, fused, metrics, platform, services, storage};
use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::atomic::Ordering::Relaxed;

fn py_err(e: Error) -> PyErr {
    let oom = matches!(&e, Error::OutOfMemory(_))
        || matches!(&e, Error::Pjrt(p) if p.is_resource_exhausted());
    if oom {
        // torch.OutOfMemoryError, as the op path raises it.
        let msg = e.to_string();
        let err = Python::with_gil(|py| -> PyResult<PyErr> {
            let cls = py.import("torch")?.getattr("OutOfMemoryError")?;
            let cls = cls.downcast_into::<pyo3::types::PyType>()?;
            Ok(PyErr::from_type(cls, msg.clone()))
        });
        if let Ok(err) = err {
            return err;
        }
    }
    match e {
        Error::NotImplemented(m) => PyNotImplementedError::new_err(m),
        Error::Index(m) => pyo3::exceptions::PyIndexError::new_err(m),
        Error::Env(e) => PyValueError::new_err(e.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

#[pyfunction]
fn platform_name() -> PyResult<String> {
    Ok(platform::get().map_err(py_err)?.name.clone())
}

#[pyfunction]
fn plugin_path() -> PyResult<String> {
    Ok(platform::get()
        .map_err(py_err)?
        .plugin
        .display()
        .to_string())
}

/// The plugins the running interpreter has, `(platform, path)` in preference order.
#[pyfunction]
fn set_plugin_candidates(found: Vec<(String, String)>) {
    platform::set_candidates(found.into_iter().map(|(k, p)| (k, p.into())).collect());
}

/// Checks every environment variable the runtime reads and takes the eager
/// switches from it now; raises `ValueError` naming a bad one (import calls this).
#[pyfunction]
fn validate_env() -> PyResult<()> {
    env::validate().map_err(|e| py_err(e.into()))?;
    mode::init_env();
    Ok(())
}

/// A boolean `TORCH_TPU_*` switch, parsed as the runtime parses it.
#[pyfunction]
fn env_flag(name: &str) -> PyResult<bool> {
    let flag = env::flag_named(name)
        .ok_or_else(|| PyValueError::new_err(format!("{name} is not a known flag")))?;
    flag.get().map_err(|e| py_err(e.into()))
}

/// Starts the platform now (import does this), so no later thread races to do it.
#[pyfunction]
fn init(py: Python<'_>) -> PyResult<()> {
    py.allow_threads(platform::get).map(|_| ()).map_err(py_err)
}

#[pyfunction]
fn is_initialized() -> bool {
    platform::is_started()
}

/// Marks this process as a child forked after the platform started.
#[pyfunction]
fn mark_forked() {
    platform::mark_forked();
}

#[pyfunction]
fn in_bad_fork() -> bool {
    platform::in_bad_fork()
}

/// What a bug report needs: plugin path, platform name and version, PJRT API.
#[pyfunction]
fn plugin_info(py: Python<'_>) -> PyResult<Py<PyDict>> {
    let p = platform::get().map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("platform", &p.name)?;
    d.set_item("plugin", p.plugin.display().to_string())?;
    d.set_item("platform_name", p.client.platform_name())?;
    d.set_item("platform_version", p.client.platform_version())?;
    d.set_item(
        "pjrt_api_version",
        format!("{}.{}", p.api_version.0, p.api_version.1),
    )?;
    d.set_item("device_count", p.devices.len())?;
    d.set_item(
        "cache_dir",
        cache::cache_dir().map(|d| d.display().to_string()),
    )?;
    Ok(d.unbind())
}

#[pyfunction]
fn device_count() -> usize {
    platform::get().map(|p| p.devices.len()).unwrap_or(0)
}

#[pyfunction]
fn device_name(index: usize) -> PyResult<String> {
    let p = platform::get().map_err(py_err)?;
    let d = p.device(index).map_err(py_err)?;
    Ok(format!("{} ({})", d.kind(), p.client.platform_name()))
}

#[pyfunction]
fn set_eager_mode(py: Python<'_>, mode: &str) -> PyResult<()> {
    let m = Mode::parse(mode).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown eager mode {mode:?}: expected 'debug', 'strict', 'fused' (or 'capture', used by torch.compile)"
        ))
    })?;
    if m != mode::current() {
        py.allow_threads(|| fused::cut("mode switch"))
            .map_err(py_err)?;
    }
    mode::set(m);
    Ok(())
}

/// The end of a training step: cuts the fused trace (without waiting) and
/// leaves step detection to these marks from then on.
#[pyfunction]
fn mark_step(py: Python<'_>) -> PyResult<()> {
    py.allow_threads(fused::mark_step).map_err(py_err)
}

/// Runs what fused mode recorded so far, without waiting (`reason` goes to the metrics).
#[pyfunction]
fn cut(py: Python<'_>, reason: String) -> PyResult<()> {
    py.allow_threads(|| fused::cut(&reason)).map_err(py_err)
}

/// Hands what capture recorded to background compile threads and drops it
/// unrun (`torch.compile`'s `precompile_sizes`).
#[pyfunction]
fn compile_recorded_in_background(py: Python<'_>) -> PyResult<()> {
    py.allow_threads(fused::compile_open_in_background)
        .map_err(py_err)
}

/// Waits for every background compile.
#[pyfunction]
fn wait_background_compiles(py: Python<'_>) {
    py.allow_threads(crate::cache::wait_background_compiles)
}

#[pyfunction]
fn clear_executable_cache() {
    cache::clear();
}

#[pyfunction]
fn get_eager_mode() -> &'static str {
    mode::current().name()
}

#[pyfunction]
#[pyo3(signature = (wait = true))]
fn sync(py: Python<'_>, wait: bool) -> PyResult<()> {
    py.allow_threads(|| {
        if wait {
            fused::synchronize()
        } else {
            fused::cut("sync")
        }
    })
    .map_err(py_err)
}

#[pyfunction]
fn metrics_dict(py: Python<'_>) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    let c = &metrics::COUNTERS;
    let g = metrics::get;
    d.set_item("ops_dispatched", g(&c.ops_dispatched))?;
    d.set_item("ops_recorded", g(&c.ops_recorded))?;
    d.set_item("executions", g(&c.executions))?;
    d.set_item("compiles", g(&c.compiles))?;
    d.set_item("compile_time_s", g(&c.compile_ns) as f64 * 1e-9)?;
    d.set_item("cache_hits_memory", g(&c.cache_hits_memory))?;
    d.set_item("cache_misses_memory", g(&c.cache_misses_memory))?;
    d.set_item("cache_hits_disk", g(&c.cache_hits_disk))?;
    d.set_item("cache_misses_disk", g(&c.cache_misses_disk))?;
    d.set_item("cache_corrupt_disk", g(&c.cache_corrupt_disk))?;
    d.set_item("cache_foreign_disk", g(&c.cache_foreign_disk))?;
    d.set_item("bytes_to_device", g(&c.bytes_to_device))?;
    d.set_item("bytes_to_host", g(&c.bytes_to_host))?;
    d.set_item("transfers_to_host", g(&c.transfers_to_host))?;
    d.set_item("background_compiles", g(&c.background_compiles))?;
    d.set_item(
        "background_compile_failures",
        g(&c.background_compile_failures),
    )?;
    let t = metrics::TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    d.set_item("cpu_fallbacks", t.cpu_fallbacks.clone())?;
    d.set_item("cut_reasons", t.cut_reasons.clone())?;
    d.set_item("recompiles", t.recompiles.clone())?;
    d.set_item("compile_seconds", t.compile_seconds.clone())?;
    Ok(d.unbind())
}

#[pyfunction]
fn reset_metrics() {
    metrics::reset();
}

#[pyfunction]
fn memory_allocated(device: usize) -> i64 {
    storage::memory_stats(device).bytes.current
}

#[pyfunction]
fn max_memory_allocated(device: usize) -> i64 {
    storage::memory_stats(device).bytes.peak
}

#[pyfunction]
fn reset_peak_memory_stats(device: usize) {
    storage::reset_peak(device);
}

#[pyfunction]
fn reset_accumulated_memory_stats(device: usize) {
    storage::reset_accumulated(device);
}

/// `torch.cuda.memory_stats`'s keys for the statistics a runtime without a
/// caching allocator has: reserved and active memory are the allocated memory.
#[pyfunction]
fn memory_stats(py: Python<'_>, device: usize) -> PyResult<Py<PyDict>> {
    let s = storage::memory_stats(device);
    let d = PyDict::new(py);
    for (names, c) in [
        (["allocation", "segment", "active"], s.blocks),
        (
            ["allocated_bytes", "reserved_bytes", "active_bytes"],
            s.bytes,
        ),
    ] {
        for name in names {
            for (metric, v) in [
                ("current", c.current),
                ("peak", c.peak),
                ("allocated", c.allocated),
                ("freed", c.freed),
            ] {
                d.set_item(format!("{name}.all.{metric}"), v)?;
            }
        }
    }
    d.set_item("num_alloc_retries", 0)?; // nothing caches, so nothing retries
    Ok(d.unbind())
}

#[pyfunction]
fn mem_get_info(device: usize) -> PyResult<(i64, i64)> {
    let p = platform::get().map_err(py_err)?;
    platform::memory_info(p, device).map_err(py_err)
}

#[pyfunction]
fn manual_seed(device: usize, seed: u64) -> PyResult<()> {
    if !services::manual_seed(device, seed) {
        return Err(PyRuntimeError::new_err(format!(
            "manual_seed: no tpu device {device}"
        )));
    }
    Ok(())
}

#[pyfunction]
fn initial_seed(device: usize) -> u64 {
    services::initial_seed(device)
}

#[pyfunction]
fn get_rng_state(py: Python<'_>, device: usize) -> Py<PyBytes> {
    PyBytes::new(py, &services::get_rng_state(device)).unbind()
}

#[pyfunction]
fn set_rng_state(device: usize, state: &[u8]) -> PyResult<()> {
    if !services::set_rng_state(device, state) {
        return Err(PyRuntimeError::new_err("set_rng_state: invalid state"));
    }
    Ok(())
}

#[pyfunction]
fn current_device() -> i32 {
    services::current_device()
}

#[pyfunction]
fn set_device(index: i32) -> PyResult<()> {
    if !services::set_device(index) {
        return Err(PyRuntimeError::new_err(format!(
            "set_device: invalid tpu device {index}"
        )));
    }
    Ok(())
}

#[pyfunction]
fn set_nan_check(enabled: bool) {
    mode::NAN_CHECK.store(enabled, Relaxed);
}

#[pyfunction]
fn set_cpu_fallback(enabled: bool) {
    mode::current();
    mode::CPU_FALLBACK.store(enabled, Relaxed);
}

#[pyfunction]
fn lowered_ops() -> Vec<&'static str> {
    let mut ops = tpu_lower::Registry::global().names();
    ops.extend(crate::dispatch::runtime_op_names());
    ops.sort_unstable();
    ops
}

/// One tensor of a collective as Python hands it over: storage data
/// pointer, storage offset, sizes, strides, torch dtype code.
type TensorSpec = (u64, i64, Vec<i64>, Vec<i64>, i32);

/// Runs the XLA collective `kind` (`all_reduce`, `all_gather`,
/// `reduce_scatter`, `all_to_all`, `collective_permute`) once over the
/// devices of `inputs` (one tensor per device), writing replica `i`'s result
/// into `outputs[i]`. `op` is the reduction (`sum`, `avg`, `product`, `min`,
/// `max`, `band`, `bor`, `bxor`); `pairs` the permute's (source, target) replicas.
#[pyfunction]
#[pyo3(signature = (kind, op, inputs, outputs, pairs = Vec::new()))]
fn xla_collective(
    py: Python<'_>,
    kind: &str,
    op: &str,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    pairs: Vec<(usize, usize)>,
) -> PyResult<()> {
    use crate::collective::{self, Operand};
    use crate::collective_hlo::{Collective, Reduce};
    let reduce = || {
        Reduce::parse(op).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{kind}: unknown reduce op {op:?} (sum, avg, product, min, max, band, bor, bxor)"
            ))
        })
    };
    let c = match kind {
        "all_reduce" => Collective::AllReduce(reduce()?),
        "reduce_scatter" => Collective::ReduceScatter(reduce()?),
        "all_gather" => Collective::AllGather,
        "all_to_all" => Collective::AllToAll,
        "collective_permute" => Collective::Permute(pairs),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown xla collective {other:?}"
            )))
        }
    };
    let operands = |specs: Vec<TensorSpec>| {
        specs
            .into_iter()
            .map(|(p, o, sz, st, d)| Operand::new(p, o, sz, st, d))
            .collect::<Result<Vec<_>, Error>>()
    };
    let (ins, outs) = (
        operands(inputs).map_err(py_err)?,
        operands(outputs).map_err(py_err)?,
    );
    py.allow_threads(|| collective::run(&c, &ins, &outs))
        .map_err(py_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ABI_VERSION", abi::ABI_VERSION)?;
    m.add(
        "DIRECT_OPS",
        services::register_direct(&tpu_lower::Registry::global().names()),
    )?;
    m.add_function(wrap_pyfunction!(platform_name, m)?)?;
    m.add("platform", m.getattr("platform_name")?)?;
    m.add_function(wrap_pyfunction!(plugin_path, m)?)?;
    m.add_function(wrap_pyfunction!(device_count, m)?)?;
    m.add_function(wrap_pyfunction!(set_plugin_candidates, m)?)?;
    m.add_function(wrap_pyfunction!(validate_env, m)?)?;
    m.add_function(wrap_pyfunction!(env_flag, m)?)?;
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(is_initialized, m)?)?;
    m.add_function(wrap_pyfunction!(mark_forked, m)?)?;
    m.add_function(wrap_pyfunction!(in_bad_fork, m)?)?;
    m.add_function(wrap_pyfunction!(plugin_info, m)?)?;
    m.add_function(wrap_pyfunction!(device_name, m)?)?;
    m.add_function(wrap_pyfunction!(set_eager_mode, m)?)?;
    m.add_function(wrap_pyfunction!(get_eager_mode, m)?)?;
    m.add_function(wrap_pyfunction!(sync, m)?)?;
    m.add_function(wrap_pyfunction!(mark_step, m)?)?;
    m.add_function(wrap_pyfunction!(cut, m)?)?;
    m.add_function(wrap_pyfunction!(compile_recorded_in_background, m)?)?;
    m.add_function(wrap_pyfunction!(wait_background_compiles, m)?)?;
    m.add_function(wrap_pyfunction!(clear_executable_cache, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_dict, m)?)?;
    m.add("metrics", m.getattr("metrics_dict")?)?;
    m.add_function(wrap_pyfunction!(reset_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(memory_allocated, m)?)?;
    m.add_function(wrap_pyfunction!(max_memory_allocated, m)?)?;
    m.add_function(wrap_pyfunction!(reset_peak_memory_stats, m)?)?;
    m.add_function(wrap_pyfunction!(reset_accumulated_memory_stats, m)?)?;
    m.add_function(wrap_pyfunction!(mem_get_info, m)?)?;
    m.add_function(wrap_pyfunction!(memory_stats, m)?)?;
    m.add_function(wrap_pyfunction!(manual_seed, m)?)?;
    m.add_function(wrap_pyfunction!(initial_seed, m)?)?;
    m.add_function(wrap_pyfunction!(get_rng_state, m)?)?;
    m.add_function(wrap_pyfunction!(set_rng_state, m)?)?;
    m.add_function(wrap_pyfunction!(current_device, m)?)?;
    m.add_function(wrap_pyfunction!(set_device, m)?)?;
    m.add_function(wrap_pyfunction!(set_nan_check, m)?)?;
    m.add_function(wrap_pyfunction!(set_cpu_fallback, m)?)?;
    m.add_function(wrap_pyfunction!(lowered_ops, m)?)?;
    m.add_function(wrap_pyfunction!(xla_collective, m)?)?;
    crate::python_kv::register(m)?;
    crate::pygraph::register(m)?;
    Ok(())
}
