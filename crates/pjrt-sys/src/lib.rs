//! Raw FFI bindings to the PJRT C API.
//!
//! `include/pjrt_c_api.h` is vendored verbatim from the `xla-cpu-pjrt` 0.0.1
//! plugin (PJRT C API 0.81). Plugins check `struct_size` fields against their
//! own header, so this header must match the plugin being loaded.
//!
//! `src/bindings.rs` is generated once and checked in (no bindgen/libclang at
//! build time). To regenerate (bindgen-cli 0.73, libclang 14):
//!
//! ```text
//! LIBCLANG_PATH=/usr/lib/llvm-14/lib bindgen include/pjrt_c_api.h -o src/bindings.rs \
//!   --allowlist-type 'PJRT_.*' --allowlist-var 'PJRT_.*' --allowlist-function GetPjrtApi \
//!   --default-enum-style newtype --constified-enum '_bindgen_ty_.*' --with-derive-default
//! ```
//!
//! Every `PJRT_*_Args` struct implements `Default` (all-zero) and has a
//! matching `PJRT_*_Args_STRUCT_SIZE` constant for its `struct_size` field.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]

include!("bindings.rs");

/// The vendored header text, for reference/diagnostics.
pub const PJRT_C_API_HEADER: &str = include_str!("../include/pjrt_c_api.h");
