//! torch-tpu runtime, in layers (each module imports only lower ones; see
//! docs/architecture.md, "Inside the runtime"):
//!
//! - boundary: `abi` (the C ABI the shim calls, one `tpu_dispatch` per op), `python`,
//!   `python_kv` (a c10d Store behind the PJRT key-value callbacks), `pygraph`
//!   (`_core.CompiledGraph`: a compiled graph's direct calls).
//! - entry: `dispatch` (one lookup in the op table: lowering rules and runtime ops).
//! - runtime ops: `transfer` (copies, `.item()`), `dynamic` (data-dependent shapes),
//!   `collective` (XLA collectives over several devices of this process).
//! - executor: `exec` (what the mode does with an op or a program).
//! - recording: `record` (an op into a trace), `fused` (the open trace and its
//!   cut points), `opcache` (per-signature programs: strict mode's ops),
//!   `graphcache` (compiled graphs run directly on their inputs' buffers).
//! - op types: `op` (arguments, results, outcomes).
//! - programs: `program` (the one program type and the one function that
//!   runs it), `trace` (a recorded graph, cut and run in `Trace::cut`), `checks`
//!   (value checks raised at the next host sync), `cache`/`diskcache`
//!   (executables by structural hash), `overlap` (memory-overlap checks),
//!   `collective_hlo` (the StableHLO text of one collective).
//! - memory: `storage` (freed in `storage::free`), `host` (host memory).
//! - foundations: `env`, `error`, `metrics`, `profile`, `platform`, `mode`,
//!   `services` (what the C++ shim provides, registered at load).

pub mod abi;
pub mod cache;
pub mod checks;
pub mod collective;
pub mod collective_hlo;
pub mod diskcache;
pub mod dispatch;
pub mod dynamic;
pub mod env;
pub mod error;
pub mod exec;
pub mod fused;
pub mod graphcache;
pub mod host;
pub mod metrics;
pub mod mode;
pub mod op;
pub mod opcache;
pub mod overlap;
pub mod platform;
pub mod profile;
pub mod program;
pub mod pygraph;
pub mod python;
pub mod python_kv;
pub mod record;
pub mod services;
pub mod storage;
pub mod trace;
pub mod transfer;

/// Recording a fused op makes about 25 small allocations (argument views,
/// graph nodes and their shapes), freed when the trace runs; glibc's malloc
/// made them a sixth of an eager op's time. mimalloc serves them from
/// per-thread pages. Only the runtime's own Rust allocations use it: nothing
/// allocated here is freed by C++ or by PyTorch, which keep their allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
