//! A c10d Store (any Python object with `set`, `get`, `check` and `wait`)
//! behind the PJRT plugin's key-value callbacks, for plugins that bootstrap
//! across processes (CUDA/NCCL, multi-host TPU). The CPU plugin ignores
//! the callbacks, so only this adapter is tested here.

use crate::platform;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;
use std::time::Duration;

struct PyStore(Py<PyAny>);

fn message(e: PyErr) -> String {
    e.to_string()
}

impl pjrt::KvStore for PyStore {
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        Python::with_gil(|py| {
            let store = self.0.bind(py);
            let delta = py
                .import("datetime")
                .and_then(|m| m.getattr("timedelta"))
                .and_then(|td| td.call1((0, timeout.as_secs_f64())))
                .map_err(message)?;
            // `wait` raises when the key has not come within the timeout.
            store
                .call_method1("wait", (vec![key], delta))
                .map_err(message)?;
            let v = store.call_method1("get", (key,)).map_err(message)?;
            v.extract::<Vec<u8>>().map_err(message)
        })
    }

    fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Python::with_gil(|py| {
            let store = self.0.bind(py);
            let there: bool = store
                .call_method1("check", (vec![key],))
                .and_then(|b| b.extract())
                .map_err(message)?;
            if !there {
                return Ok(None);
            }
            let v = store.call_method1("get", (key,)).map_err(message)?;
            v.extract::<Vec<u8>>().map(Some).map_err(message)
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        Python::with_gil(|py| {
            let v = PyBytes::new(py, value);
            self.0
                .bind(py)
                .call_method1("set", (key, v))
                .map(|_| ())
                .map_err(message)
        })
    }
}

/// Makes the PJRT client, when the platform starts, with `store` behind the
/// plugin's key-value callbacks and the `node_id` / `num_nodes` create
/// options. Must come before the platform starts (`torch_tpu` does it at
/// import when `TORCH_TPU_PJRT_KV_STORE=torchrun`).
#[pyfunction]
fn set_kv_store(store: Py<PyAny>, node_id: i64, num_nodes: i64) -> PyResult<()> {
    platform::set_kv_store(Arc::new(PyStore(store)), node_id, num_nodes)
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Puts `value` under `key` through the adapter, then reads it back with
/// `try_get` and `get` and tries a missing key: what a plugin's callbacks
/// would do (for tests; the CPU plugin never calls them).
#[pyfunction]
fn kv_store_roundtrip(
    py: Python<'_>,
    store: Py<PyAny>,
    key: &str,
    value: &[u8],
) -> PyResult<(Option<Vec<u8>>, Vec<u8>, bool)> {
    use pjrt::KvStore;
    let s = PyStore(store);
    py.allow_threads(|| {
        s.put(key, value)?;
        let tried = s.try_get(key)?;
        let got = s.get(key, Duration::from_secs(5))?;
        let missing = s.try_get(&format!("{key}/absent"))?.is_none();
        Ok::<_, String>((tried, got, missing))
    })
    .map_err(PyRuntimeError::new_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_kv_store, m)?)?;
    m.add_function(wrap_pyfunction!(kv_store_roundtrip, m)?)?;
    Ok(())
}
