//! torch-tpu runtime.
//!
//! - `abi`: the C ABI the C++ shim calls (one `tpu_dispatch` per op).
//! - `dispatch`: the path of one op (arguments → lowering rule → writes).
//! - `trace`: a recorded graph and where it is cut and run (`Trace::cut`).
//! - `fused`: the open trace of fused mode and its cut points.
//! - `storage`: storages behind PyTorch's data pointers; freed in `storage::free`.
//! - `transfer`: host↔device copies and `.item()`.
//! - `dynamic`: ops with data-dependent shapes (`nonzero`, `masked_select`).
//! - `checks`: value checks computed on the device, raised at the next host sync.
//! - `cache`: executables keyed by the graph's structural hash.
//! - `overlap`: memory-overlap checks of written tensors (as CPU PyTorch).
//! - `diskcache`: the executables kept on disk, checked before use.
//! - `opcache`: strict mode's per-op-signature fast path.
//! - `profile`: ranges in `torch.profiler` (through callbacks of the shim).
//! - `env`: the environment variables, parsed and validated in one place.
//! - `services`: what the C++ shim provides (generators, devices), registered at load.
//! - `platform`, `mode`, `metrics`, `host`, `python`.

pub mod abi;
pub mod cache;
pub mod checks;
pub mod diskcache;
pub mod dispatch;
pub mod dynamic;
pub mod env;
pub mod error;
pub mod exec;
pub mod fused;
pub mod host;
pub mod metrics;
pub mod mode;
pub mod op;
pub mod opcache;
pub mod overlap;
pub mod platform;
pub mod profile;
pub mod python;
pub mod record;
pub mod services;
pub mod storage;
pub mod trace;
pub mod transfer;
