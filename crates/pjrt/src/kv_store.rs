//! The key-value store a plugin uses to bootstrap across processes (CUDA's
//! NCCL ids, multi-host TPU topology): `PJRT_Client_Create_Args`'
//! `kv_get_callback` / `kv_put_callback` / `kv_try_get_callback`, backed by a
//! [`KvStore`] (in torch-tpu, the c10d Store that torchrun provides).
//!
//! The CPU plugin never calls these callbacks; the tests call them as a
//! plugin would.

use pjrt_sys as sys;
use std::os::raw::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

/// What a plugin needs of a store. Errors are messages; a missing key in
/// [`KvStore::try_get`] is `Ok(None)`.
pub trait KvStore: Send + Sync {
    /// Waits up to `timeout` for `key`.
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, String>;
    fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn put(&self, key: &str, value: &[u8]) -> Result<(), String>;
}

/// The store as the callbacks' `user_arg` sees it; owned by the client.
pub(crate) type Shared = Box<Arc<dyn KvStore>>;

/// Fills the callback fields of `args` for `store` (which must outlive the client).
pub(crate) fn install(args: &mut sys::PJRT_Client_Create_Args, store: &Shared) {
    let user = &**store as *const Arc<dyn KvStore> as *mut c_void;
    args.kv_get_callback = Some(kv_get);
    args.kv_get_user_arg = user;
    args.kv_put_callback = Some(kv_put);
    args.kv_put_user_arg = user;
    args.kv_try_get_callback = Some(kv_try_get);
    args.kv_try_get_user_arg = user;
}

/// # Safety
/// `user` is the pointer [`install`] gave; `key` points to `size` bytes.
unsafe fn parts<'a>(
    user: *mut c_void,
    key: *const c_char,
    size: usize,
) -> (&'a Arc<dyn KvStore>, String) {
    // SAFETY: per the caller's contract.
    unsafe {
        let store = &*(user as *const Arc<dyn KvStore>);
        let key = std::slice::from_raw_parts(key as *const u8, size);
        (store, String::from_utf8_lossy(key).into_owned())
    }
}

/// A PJRT error made by the plugin's `callback_error` (null if it gave none).
///
/// # Safety
/// `make` is the plugin's `callback_error` slot from the callback's args.
unsafe fn error(
    make: *mut sys::PJRT_CallbackError,
    code: sys::PJRT_Error_Code,
    msg: &str,
) -> *mut sys::PJRT_Error {
    // SAFETY: the slot is valid for the call; the function copies the message.
    match unsafe { make.as_ref().and_then(|f| *f) } {
        Some(f) => unsafe { f(code, msg.as_ptr() as *const c_char, msg.len()) },
        None => std::ptr::null_mut(),
    }
}

/// `v` as a leaked boxed slice (released by [`free_value`], through [`with_header`]).
fn leak(v: Vec<u8>) -> (*mut c_char, usize) {
    let b = v.into_boxed_slice();
    let n = b.len();
    (Box::into_raw(b) as *mut c_char, n)
}

/// The value deleter handed to the plugin: frees what [`leak`] made. The
/// size is not passed back, so values carry it in a header.
unsafe extern "C" fn free_value(value: *mut c_char) {
    if value.is_null() {
        return;
    }
    // SAFETY: `value` is 8 bytes past the start of a boxed slice whose first
    // 8 bytes hold the slice's total length (see `with_header`).
    unsafe {
        let start = value.sub(8) as *mut u8;
        let total = usize::from_ne_bytes(*(start as *const [u8; 8]));
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            start, total,
        )));
    }
}

/// `v` behind an 8-byte length header: returns the value's pointer and size.
fn with_header(v: &[u8]) -> (*mut c_char, usize) {
    let total = v.len() + 8;
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&total.to_ne_bytes());
    b.extend_from_slice(v);
    let (p, _) = leak(b);
    // SAFETY: `p` starts a block of `total >= 8` bytes.
    (unsafe { p.add(8) }, v.len())
}

unsafe extern "C" fn kv_get(args: *mut sys::PJRT_KeyValueGetCallback_Args) -> *mut sys::PJRT_Error {
    // SAFETY: the plugin passes valid args with our `user_arg`.
    let a = unsafe { &mut *args };
    let (store, key) = unsafe { parts(a.user_arg, a.key, a.key_size) };
    let timeout = Duration::from_millis(a.timeout_in_ms.max(0) as u64);
    match store.get(&key, timeout) {
        Ok(v) => {
            (a.value, a.value_size) = with_header(&v);
            a.value_deleter_callback = Some(free_value);
            std::ptr::null_mut()
        }
        // SAFETY: `callback_error` comes from the same args.
        Err(e) => unsafe {
            error(
                a.callback_error,
                sys::PJRT_Error_Code::PJRT_Error_Code_DEADLINE_EXCEEDED,
                &e,
            )
        },
    }
}

unsafe extern "C" fn kv_try_get(
    args: *mut sys::PJRT_KeyValueTryGetCallback_Args,
) -> *mut sys::PJRT_Error {
    // SAFETY: the plugin passes valid args with our `user_arg`.
    let a = unsafe { &mut *args };
    let (store, key) = unsafe { parts(a.user_arg, a.key, a.key_size) };
    let (code, msg) = match store.try_get(&key) {
        Ok(Some(v)) => {
            (a.value, a.value_size) = with_header(&v);
            a.value_deleter_callback = Some(free_value);
            return std::ptr::null_mut();
        }
        Ok(None) => (
            sys::PJRT_Error_Code::PJRT_Error_Code_NOT_FOUND,
            format!("key {key:?} not found"),
        ),
        Err(e) => (sys::PJRT_Error_Code::PJRT_Error_Code_INTERNAL, e),
    };
    // SAFETY: `callback_error` comes from the same args.
    unsafe { error(a.callback_error, code, &msg) }
}

unsafe extern "C" fn kv_put(args: *mut sys::PJRT_KeyValuePutCallback_Args) -> *mut sys::PJRT_Error {
    // SAFETY: the plugin passes valid args with our `user_arg`; value has `value_size` bytes.
    let a = unsafe { &mut *args };
    let (store, key) = unsafe { parts(a.user_arg, a.key, a.key_size) };
    let value = unsafe { std::slice::from_raw_parts(a.value as *const u8, a.value_size) };
    match store.put(&key, value) {
        Ok(()) => std::ptr::null_mut(),
        // SAFETY: `callback_error` comes from the same args.
        Err(e) => unsafe {
            error(
                a.callback_error,
                sys::PJRT_Error_Code::PJRT_Error_Code_INTERNAL,
                &e,
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, Vec<u8>>>);

    impl KvStore for Memory {
        fn get(&self, key: &str, _timeout: Duration) -> Result<Vec<u8>, String> {
            self.0
                .lock()
                .unwrap()
                .get(key)
                .cloned()
                .ok_or_else(|| format!("timed out waiting for {key}"))
        }
        fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
            self.0.lock().unwrap().insert(key.into(), value.to_vec());
            Ok(())
        }
    }

    thread_local! {
        static LAST: std::cell::RefCell<Option<(i32, String)>> = const { std::cell::RefCell::new(None) };
    }

    /// Stands in for the plugin's error constructor: records the error and
    /// returns a non-null token.
    unsafe extern "C" fn record_error(
        code: sys::PJRT_Error_Code,
        msg: *const c_char,
        size: usize,
    ) -> *mut sys::PJRT_Error {
        let m = unsafe { std::slice::from_raw_parts(msg as *const u8, size) };
        LAST.with(|l| *l.borrow_mut() = Some((code.0 as i32, String::from_utf8_lossy(m).into())));
        std::ptr::NonNull::dangling().as_ptr()
    }

    fn value(p: *mut c_char, n: usize) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(p as *const u8, n).to_vec() }
    }

    #[test]
    fn callbacks_put_get_and_try_get_as_a_plugin_calls_them() {
        let shared: Shared = Box::new(Arc::new(Memory::default()));
        let mut create = sys::PJRT_Client_Create_Args::default();
        install(&mut create, &shared);
        let mut make_error: sys::PJRT_CallbackError = Some(record_error);
        let (key, val) = ("nccl/id/0", b"\x00\x01bytes");

        let mut put = sys::PJRT_KeyValuePutCallback_Args {
            key: key.as_ptr() as *const c_char,
            key_size: key.len(),
            value: val.as_ptr() as *const c_char,
            value_size: val.len(),
            callback_error: &mut make_error,
            user_arg: create.kv_put_user_arg,
            ..Default::default()
        };
        assert!(unsafe { create.kv_put_callback.unwrap()(&mut put) }.is_null());

        let mut get = sys::PJRT_KeyValueGetCallback_Args {
            key: key.as_ptr() as *const c_char,
            key_size: key.len(),
            timeout_in_ms: 1000,
            callback_error: &mut make_error,
            user_arg: create.kv_get_user_arg,
            ..Default::default()
        };
        assert!(unsafe { create.kv_get_callback.unwrap()(&mut get) }.is_null());
        assert_eq!(value(get.value, get.value_size), val);
        unsafe { get.value_deleter_callback.unwrap()(get.value) };

        let missing = "absent";
        let mut try_get = sys::PJRT_KeyValueTryGetCallback_Args {
            key: missing.as_ptr() as *const c_char,
            key_size: missing.len(),
            callback_error: &mut make_error,
            user_arg: create.kv_try_get_user_arg,
            ..Default::default()
        };
        assert!(!unsafe { create.kv_try_get_callback.unwrap()(&mut try_get) }.is_null());
        let (code, msg) = LAST.with(|l| l.borrow_mut().take()).unwrap();
        assert_eq!(
            code,
            sys::PJRT_Error_Code::PJRT_Error_Code_NOT_FOUND.0 as i32
        );
        assert!(msg.contains("absent"), "{msg}");

        try_get.key = key.as_ptr() as *const c_char;
        try_get.key_size = key.len();
        assert!(unsafe { create.kv_try_get_callback.unwrap()(&mut try_get) }.is_null());
        assert_eq!(value(try_get.value, try_get.value_size), val);
        unsafe { try_get.value_deleter_callback.unwrap()(try_get.value) };

        // A blocking get that times out is the plugin's DEADLINE_EXCEEDED.
        get.key = missing.as_ptr() as *const c_char;
        get.key_size = missing.len();
        assert!(!unsafe { create.kv_get_callback.unwrap()(&mut get) }.is_null());
        let (code, _) = LAST.with(|l| l.borrow_mut().take()).unwrap();
        assert_eq!(
            code,
            sys::PJRT_Error_Code::PJRT_Error_Code_DEADLINE_EXCEEDED.0 as i32
        );
    }
}
