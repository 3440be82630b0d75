//! Safe wrapper over the PJRT C API.
//!
//! Load a plugin with [`Api::load`], create a [`Client`], upload arrays with
//! [`Client::buffer_from_host`], compile StableHLO with [`Client::compile`],
//! run with [`LoadedExecutable::execute`] and read back with
//! [`Buffer::to_host`]. All handles are `Send + Sync` and freed on drop;
//! every `PJRT_Error` becomes an [`Error`].
//!
//! Inputs that would make the plugin abort (negative dims, wrong data sizes,
//! empty compile options, deleted/donated arguments) are rejected with
//! [`Error::Invalid`] before calling it.

mod api;
mod buffer;
mod client;
mod error;
mod event;
mod executable;
mod kv_store;
mod replicated;
pub mod testing;
mod types;

pub use api::Api;
pub use buffer::Buffer;
pub use client::{Client, Device};
pub use error::{Error, ErrorCode, Result};
pub use event::{Event, EventCallback};
pub use executable::{LoadedExecutable, DEFAULT_COMPILE_OPTIONS, PORTABLE_COMPILE_OPTIONS};
pub use kv_store::KvStore;
pub use pjrt_sys as sys;
pub use replicated::replicated_compile_options;
pub use types::{ElementType, NamedValue};

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Api>();
    check::<Client>();
    check::<Device>();
    check::<Buffer>();
    check::<LoadedExecutable>();
    check::<Event>();
    check::<Error>();
}
