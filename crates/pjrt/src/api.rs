//! Plugin loading: `GetPjrtApi`, version check, `PJRT_Plugin_Initialize`.

use crate::error::{Error, ErrorCode, Result};
use crate::types::{str_from_raw, NamedValue};
use pjrt_sys as sys;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Calls a PJRT C function that returns `PJRT_Error*`, turning the error into
/// a `Result<()>` (the error is destroyed). A missing function pointer gives
/// `Error::Unimplemented`.
///
/// Must be used inside `unsafe`: the caller guarantees that the args struct
/// is initialised with its `*_STRUCT_SIZE` and that every pointer in it is
/// valid for the call (the plugin trusts them).
macro_rules! pjrt_call {
    ($api:expr, $name:ident, $args:expr) => {{
        let api: &$crate::api::Api = $api;
        match api.raw().$name {
            Some(f) => api.check(f($args), stringify!($name)),
            None => Err($crate::error::Error::Unimplemented(stringify!($name))),
        }
    }};
}
pub(crate) use pjrt_call;

/// Leaked, process-lifetime state of one loaded plugin.
struct ApiInner {
    /// Copy of the plugin's function table; entries beyond the plugin's own
    /// `struct_size` are zero (`None`).
    raw: sys::PJRT_Api,
    path: PathBuf,
}

/// A loaded PJRT plugin. Cheap to clone (a `'static` reference); the plugin is
/// never unloaded.
#[derive(Clone, Copy)]
pub struct Api {
    inner: &'static ApiInner,
}

// SAFETY: `ApiInner` is immutable after load and holds only C function
// pointers and the plugin's `extension_start` pointer (read-only, plugin
// lifetime = process lifetime). PJRT C API functions are thread-safe.
unsafe impl Send for Api {}
// SAFETY: see `Send`; no interior mutability.
unsafe impl Sync for Api {}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ma, mi) = self.version();
        f.debug_struct("Api")
            .field("path", &self.inner.path)
            .field("version", &format_args!("{ma}.{mi}"))
            .finish()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Api>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, Api>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Api {
    /// Loads a PJRT plugin shared library and initializes it. Loading the same
    /// path again returns the already loaded plugin.
    pub fn load(path: &Path) -> Result<Api> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(api) = reg.get(&key) {
            return Ok(*api);
        }
        let api = Self::load_uncached(path)?;
        reg.insert(key, api);
        Ok(api)
    }

    fn load_uncached(path: &Path) -> Result<Api> {
        use libloading::os::unix::{Library, Symbol, RTLD_LOCAL, RTLD_NOW};
        let load_err = |msg: String| Error::Load {
            path: path.to_path_buf(),
            msg,
        };
        // RTLD_NODELETE: the plugin owns threads and static state; it must
        // never be unmapped.
        const RTLD_NODELETE: std::os::raw::c_int = 0x1000;
        // SAFETY: loading a library runs its initialisers; the user asked for
        // this plugin to be loaded, which is the purpose of this function.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) }
            .map_err(|e| load_err(e.to_string()))?;
        type GetApi = unsafe extern "C" fn() -> *const sys::PJRT_Api;
        let raw_ptr = {
            // SAFETY: `GetPjrtApi` has this signature in every PJRT plugin.
            let get: Symbol<GetApi> =
                unsafe { lib.get(b"GetPjrtApi\0") }.map_err(|e| load_err(e.to_string()))?;
            // SAFETY: calling the plugin's entry point (no arguments).
            unsafe { get() }
        };
        // Never unload: forget the handle.
        std::mem::forget(lib);
        if raw_ptr.is_null() {
            return Err(load_err("GetPjrtApi returned null".into()));
        }
        // SAFETY: the plugin's table starts with `struct_size`; we copy at most
        // that many bytes (and at most our struct's size) from it.
        let raw = unsafe {
            let plugin_size = (*raw_ptr).struct_size;
            let mut copy = sys::PJRT_Api::default();
            let n = plugin_size.min(std::mem::size_of::<sys::PJRT_Api>());
            std::ptr::copy_nonoverlapping(
                raw_ptr as *const u8,
                &mut copy as *mut sys::PJRT_Api as *mut u8,
                n,
            );
            copy
        };
        let (major, minor) = (
            raw.pjrt_api_version.major_version,
            raw.pjrt_api_version.minor_version,
        );
        if major != sys::PJRT_API_MAJOR as i32 {
            return Err(load_err(format!(
                "PJRT API major version {major}.{minor} is incompatible with {}.{}",
                sys::PJRT_API_MAJOR,
                sys::PJRT_API_MINOR
            )));
        }
        if raw.PJRT_Error_Destroy.is_none()
            || raw.PJRT_Error_Message.is_none()
            || raw.PJRT_Error_GetCode.is_none()
        {
            return Err(load_err("plugin lacks the PJRT_Error functions".into()));
        }
        let api = Api {
            inner: Box::leak(Box::new(ApiInner {
                raw,
                path: path.to_path_buf(),
            })),
        };
        if api.raw().PJRT_Plugin_Initialize.is_some() {
            let mut args = sys::PJRT_Plugin_Initialize_Args {
                struct_size: sys::PJRT_Plugin_Initialize_Args_STRUCT_SIZE as usize,
                ..Default::default()
            };
            // SAFETY: args initialised with its struct size; called once per
            // plugin (guarded by the registry lock in `load`).
            unsafe { pjrt_call!(&api, PJRT_Plugin_Initialize, &mut args) }
                .map_err(|e| load_err(e.to_string()))?;
        }
        Ok(api)
    }

    /// The function table.
    #[inline]
    pub(crate) fn raw(&self) -> &'static sys::PJRT_Api {
        &self.inner.raw
    }

    /// Path the plugin was loaded from.
    pub fn path(&self) -> &'static Path {
        &self.inner.path
    }

    /// PJRT C API version implemented by the plugin (major, minor).
    pub fn version(&self) -> (i32, i32) {
        let v = &self.raw().pjrt_api_version;
        (v.major_version, v.minor_version)
    }

    /// Plugin attributes (`PJRT_Plugin_Attributes`), e.g. `xla_version`.
    pub fn plugin_attributes(&self) -> Result<Vec<(String, NamedValue)>> {
        let mut args = sys::PJRT_Plugin_Attributes_Args {
            struct_size: sys::PJRT_Plugin_Attributes_Args_STRUCT_SIZE as usize,
            ..Default::default()
        };
        // SAFETY: args initialised with its struct size.
        unsafe { pjrt_call!(self, PJRT_Plugin_Attributes, &mut args) }?;
        let mut out = Vec::with_capacity(args.num_attributes);
        for i in 0..args.num_attributes {
            // SAFETY: the plugin returned `num_attributes` valid named values
            // that live as long as the plugin.
            out.push(unsafe { NamedValue::from_raw(&*args.attributes.add(i)) });
        }
        Ok(out)
    }

    /// Converts a `PJRT_Error*` into a `Result`, destroying the error.
    ///
    /// # Safety
    /// `err` must be null or a live error from this plugin, not used again.
    #[inline]
    pub(crate) unsafe fn check(
        &self,
        err: *mut sys::PJRT_Error,
        context: &'static str,
    ) -> Result<()> {
        if err.is_null() {
            Ok(())
        } else {
            // SAFETY: forwarded from the caller.
            Err(unsafe { self.take_error(err, context) })
        }
    }

    /// Reads code and message of `err` and destroys it.
    ///
    /// # Safety
    /// `err` must be a live, non-null error from this plugin, not used again.
    #[cold]
    pub(crate) unsafe fn take_error(
        &self,
        err: *mut sys::PJRT_Error,
        context: &'static str,
    ) -> Error {
        let raw = self.raw();
        let mut margs = sys::PJRT_Error_Message_Args {
            struct_size: sys::PJRT_Error_Message_Args_STRUCT_SIZE as usize,
            error: err,
            ..Default::default()
        };
        let mut cargs = sys::PJRT_Error_GetCode_Args {
            struct_size: sys::PJRT_Error_GetCode_Args_STRUCT_SIZE as usize,
            error: err,
            ..Default::default()
        };
        let mut dargs = sys::PJRT_Error_Destroy_Args {
            struct_size: sys::PJRT_Error_Destroy_Args_STRUCT_SIZE as usize,
            error: err,
            ..Default::default()
        };
        // SAFETY: the three functions were checked to exist at load time; `err`
        // is live until the destroy call, after which it is not used. The
        // message is copied before the destroy.
        unsafe {
            (raw.PJRT_Error_Message.unwrap())(&mut margs);
            let msg = str_from_raw(margs.message, margs.message_size);
            let code_err = (raw.PJRT_Error_GetCode.unwrap())(&mut cargs);
            let code = if code_err.is_null() {
                ErrorCode::from_raw(cargs.code.0 as i32)
            } else {
                // Should not happen; drop the secondary error without recursion.
                let mut d2 = sys::PJRT_Error_Destroy_Args {
                    struct_size: sys::PJRT_Error_Destroy_Args_STRUCT_SIZE as usize,
                    error: code_err,
                    ..Default::default()
                };
                (raw.PJRT_Error_Destroy.unwrap())(&mut d2);
                ErrorCode::Unknown
            };
            (raw.PJRT_Error_Destroy.unwrap())(&mut dargs);
            Error::Pjrt { code, msg, context }
        }
    }
}
