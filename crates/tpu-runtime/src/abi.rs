//! The C ABI the shim calls (see csrc/tpu_abi.h). Every entry point catches
//! panics, so no unwinding crosses into C++; errors become status codes with
//! a thread-local message.

use crate::error::Status;
use crate::error::{Error, Result};
use crate::host::HostSpan;
use crate::op::{self, ArgIn, CallArg, Outcome, Ret, TensorIn};
use crate::storage::{self, Storage};
use crate::{dispatch, metrics, platform, services, transfer};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tpu_graph::{DType, View};
use tpu_lower::{Arg, ScalarArg};

pub const ABI_VERSION: i32 = 2;

#[repr(C)]
pub struct TpuTensor {
    storage: *mut c_void,
    host_data: *mut c_void,
    sizes: *const i64,
    strides: *const i64,
    storage_offset: i64,
    storage_nbytes: i64,
    ndim: i32,
    dtype: i32,
    device: u8,
    wrapped_number: u8,
    device_index: i16,
    /// 1: conjugate view, 2: negative view (PyTorch's lazy math bits).
    math_bits: u8,
}

#[repr(C)]
pub struct TpuArg {
    kind: i32,
    is_write: u8,
    is_out: u8,
    reserved: u16,
    i: i64,
    d: f64,
    list: *const c_void,
    tensor: TpuTensor,
}

#[repr(C)]
pub struct TpuRet {
    kind: i32,
    index: i32,
    dtype: i32,
    ndim: i32,
    sizes: *const i64,
    storage: *mut c_void,
    addr: *mut c_void,
    nbytes: i64,
    i: i64,
    d: f64,
}

thread_local! {
    /// Overload names by the shim's (stable) schema string pointers.
    static OP_NAMES: RefCell<rustc_hash::FxHashMap<(usize, usize), std::rc::Rc<str>>> = RefCell::new(Default::default());
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static RESULTS: RefCell<(Vec<TpuRet>, Vec<Vec<i64>>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `"add.out"` for `("aten::add", "out")`: the overload name without the `aten::` namespace.
///
/// # Safety
/// NUL-terminated strings (`overload` may be null).
unsafe fn overload_name(name: *const c_char, overload: *const c_char) -> String {
    let name = CStr::from_ptr(name).to_string_lossy();
    let overload = if overload.is_null() {
        "".into()
    } else {
        CStr::from_ptr(overload).to_string_lossy()
    };
    let base = name.strip_prefix("aten::").unwrap_or(&name);
    if overload.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{overload}")
    }
}

/// [`overload_name`], made once per op and thread.
///
/// # Safety
/// NUL-terminated strings that live as long as the process (schema strings).
unsafe fn op_name(name: *const c_char, overload: *const c_char) -> std::rc::Rc<str> {
    OP_NAMES.with(|m| {
        m.borrow_mut()
            .entry((name as usize, overload as usize))
            .or_insert_with(|| overload_name(name, overload).into())
            .clone()
    })
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning errors and panics into a status code and message.
fn guarded(f: impl FnOnce() -> Result<i32>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            set_error(&e.to_string());
            e.status() as i32
        }
        Err(p) => {
            set_panic_error(p);
            Status::Runtime as i32
        }
    }
}

/// Runs `f` for an entry point with no status to return: a panic leaves
/// its message in `tpu_last_error` and `fallback` as the result, since
/// unwinding into C++ is undefined behaviour.
fn guarded_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        set_panic_error(p);
        fallback
    })
}

fn set_panic_error(p: Box<dyn std::any::Any + Send>) {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned());
    // Setting the message touches a thread-local, which can itself panic late
    // in thread teardown; nothing may escape from here.
    let _ = catch_unwind(|| {
        set_error(&format!(
            "internal error in the tpu runtime: {}",
            msg.unwrap_or_default()
        ))
    });
}

/// # Safety
/// `p` must point at `n` valid elements (or `n` must be 0).
unsafe fn slice<'a, T>(p: *const T, n: i64) -> &'a [T] {
    if n <= 0 || p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p, n as usize)
    }
}

fn dtype(code: i32) -> Result<DType> {
    DType::from_torch(code).ok_or_else(|| {
        Error::Invalid(format!(
            "dtype code {code} (e.g. complex) is not supported on tpu"
        ))
    })
}

/// # Safety
/// `t` must describe a live tensor as documented in tpu_abi.h.
unsafe fn tensor_in<'a>(t: &'a TpuTensor) -> Result<TensorIn<'a>> {
    let sizes = slice(t.sizes, t.ndim as i64);
    let strides = slice(t.strides, t.ndim as i64);
    let dtype = dtype(t.dtype)?;
    if t.device == 0 {
        if t.storage.is_null() {
            crate::invalid!("tpu tensor without storage");
        }
        let p = t.storage as *const Storage;
        // SAFETY: `storage` is the DataPtr context made by `tpu_storage_new`
        // (an `Arc::into_raw`), alive while the tensor is; we take a new reference.
        Arc::increment_strong_count(p);
        let storage = Arc::from_raw(p);
        let view = View {
            offset: t.storage_offset,
            sizes: sizes.to_vec(),
            strides: strides.to_vec(),
        };
        Ok(TensorIn::Tpu {
            storage,
            view,
            dtype,
            device: t.device_index.max(0) as usize,
            bits: crate::trace::MathBits {
                conj: t.math_bits & 1 != 0,
                neg: t.math_bits & 2 != 0,
            },
        })
    } else {
        let numel: i64 = sizes.iter().product();
        let extent = if numel == 0 {
            0
        } else {
            1 + sizes
                .iter()
                .zip(strides)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<i64>()
        };
        let len = extent as usize * dtype.size();
        if t.host_data.is_null() && len > 0 {
            crate::invalid!("CPU tensor without data");
        }
        // SAFETY: the shim passes the data pointer of a live CPU tensor whose
        // storage holds every element its view reaches (`len` is that span),
        // and the tensor outlives this dispatch call.
        let span = unsafe { HostSpan::new(t.host_data as *mut u8, len) };
        Ok(TensorIn::Host {
            span,
            sizes,
            strides,
            dtype,
            wrapped: t.wrapped_number != 0,
        })
    }
}

/// # Safety
/// `a` must be a valid argument as documented in tpu_abi.h.
unsafe fn arg_in<'a>(a: &'a TpuArg) -> Result<CallArg<'a>> {
    let arg = match a.kind {
        0 => ArgIn::Value(Arg::None),
        1 => ArgIn::Tensor(tensor_in(&a.tensor)?),
        2 => {
            let ts = slice(a.list as *const TpuTensor, a.i);
            let mut v = Vec::with_capacity(ts.len());
            for t in ts {
                v.push(if t.ndim < 0 {
                    None
                } else {
                    Some(tensor_in(t)?)
                });
            }
            ArgIn::Tensors(v)
        }
        3 => ArgIn::Value(Arg::Int(a.i)),
        4 => ArgIn::Value(Arg::Float(a.d)),
        5 => ArgIn::Value(Arg::Bool(a.i != 0)),
        6 => ArgIn::Value(Arg::Ints(slice(a.list as *const i64, a.i).to_vec())),
        7 => ArgIn::Value(Arg::Floats(slice(a.list as *const f64, a.i).to_vec())),
        8 => ArgIn::Value(Arg::Bools(
            slice(a.list as *const u8, a.i)
                .iter()
                .map(|&b| b != 0)
                .collect(),
        )),
        9 => ArgIn::Value(Arg::Scalar(ScalarArg::Int(a.i))),
        10 => ArgIn::Value(Arg::Scalar(ScalarArg::Float(a.d))),
        11 => ArgIn::Value(Arg::Scalar(ScalarArg::Bool(a.i != 0))),
        12 => ArgIn::Value(Arg::Str(
            CStr::from_ptr(a.list as *const c_char)
                .to_string_lossy()
                .into_owned(),
        )),
        13 => ArgIn::Value(Arg::DType(dtype(a.i as i32)?)),
        14 => ArgIn::Value(Arg::Seed(a.i as u64)),
        16 => ArgIn::Value(Arg::Scalar(ScalarArg::Complex(
            a.d,
            f64::from_bits(a.i as u64),
        ))),
        _ => ArgIn::Value(Arg::Other),
    };
    Ok(CallArg {
        arg,
        is_write: a.is_write != 0,
        is_out: a.is_out != 0,
    })
}

/// One entry of the results the shim reads after a call.
enum Published {
    Ret(Ret),
    /// Argument `index` must be resized to these sizes before the retry.
    Resize(usize, Vec<i64>),
}

fn publish(rets: impl Iterator<Item = Published>) -> (*const TpuRet, i32) {
    RESULTS.with(|r| {
        let (out, sizes) = &mut *r.borrow_mut();
        out.clear();
        sizes.clear();
        for ret in rets {
            let mut t = TpuRet {
                kind: 0,
                index: 0,
                dtype: 0,
                ndim: 0,
                sizes: std::ptr::null(),
                storage: std::ptr::null_mut(),
                addr: std::ptr::null_mut(),
                nbytes: 0,
                i: 0,
                d: 0.0,
            };
            let ret = match ret {
                Published::Ret(r) => r,
                Published::Resize(i, s) => {
                    (t.kind, t.index, t.ndim) = (1, i as i32, s.len() as i32);
                    sizes.push(s);
                    t.sizes = sizes.last().expect("pushed").as_ptr();
                    out.push(t);
                    continue;
                }
            };
            match ret {
                Ret::Arg(i) => (t.kind, t.index) = (1, i as i32),
                Ret::New {
                    storage,
                    sizes: s,
                    dtype,
                } => {
                    t.kind = 2;
                    t.dtype = dtype.to_torch();
                    t.ndim = s.len() as i32;
                    t.nbytes = storage.nbytes as i64;
                    t.addr = storage.addr as *mut c_void;
                    // Ownership passes to the new DataPtr; `tpu_storage_free` takes it back.
                    t.storage = Arc::into_raw(storage) as *mut c_void;
                    sizes.push(s);
                    t.sizes = sizes.last().expect("pushed").as_ptr();
                }
                Ret::Int(i) => (t.kind, t.i) = (3, i),
                Ret::Double(d) => (t.kind, t.d) = (4, d),
                Ret::Bool(b) => (t.kind, t.i) = (5, b as i64),
                Ret::Complex(re, im) => (t.kind, t.d, t.i) = (6, re, im.to_bits() as i64),
            }
            out.push(t);
        }
        (out.as_ptr(), out.len() as i32)
    })
}

#[no_mangle]
pub extern "C" fn tpu_abi_version() -> i32 {
    guarded_or(-1, || ABI_VERSION)
}

/// # Safety
/// Arguments as documented in tpu_abi.h.
#[no_mangle]
pub unsafe extern "C" fn tpu_dispatch(
    name: *const c_char,
    overload: *const c_char,
    args: *const TpuArg,
    nargs: i32,
    rets: *mut *const TpuRet,
    nrets: *mut i32,
) -> i32 {
    guarded(|| {
        let op = op_name(name, overload);
        let raw = slice(args, nargs as i64);
        let mut call = Vec::with_capacity(raw.len());
        for a in raw {
            call.push(arg_in(a).map_err(|e| Error::Invalid(format!("aten::{op}: {e}")))?);
        }
        match dispatch::dispatch(&op, &call) {
            Ok(Outcome::Done(r)) => {
                (*rets, *nrets) = publish(r.into_iter().map(Published::Ret));
                Ok(Status::Ok as i32)
            }
            Err(Error::NotImplemented(_)) if crate::mode::cpu_fallback_allowed(&op) => {
                Ok(Status::RunOnCpu as i32)
            }
            Ok(Outcome::Resize(list)) => {
                (*rets, *nrets) = publish(list.into_iter().map(|(i, s)| Published::Resize(i, s)));
                Ok(Status::ResizeOutputs as i32)
            }
            Err(e @ Error::NotImplemented(_)) => Err(e),
            Err(e) => Err(op::in_op(&op, &call, e)),
        }
    })
}

#[no_mangle]
pub extern "C" fn tpu_last_error() -> *const c_char {
    // The fallback is a static string: the thread-local itself is unusable then.
    guarded_or(
        c"internal error: no error message available".as_ptr(),
        || LAST_ERROR.with(|e| e.borrow().as_ptr()),
    )
}

/// # Safety
/// `addr` must be writable.
#[no_mangle]
pub unsafe extern "C" fn tpu_storage_new(
    nbytes: i64,
    device_index: i32,
    addr: *mut *mut c_void,
) -> *mut c_void {
    let mut out = std::ptr::null_mut();
    let code = guarded(|| {
        let p = platform::get()?;
        p.device(device_index.max(0) as usize)?;
        let s = storage::new_storage(nbytes.max(0) as usize, device_index.max(0) as usize)?;
        *addr = s.addr as *mut c_void;
        out = Arc::into_raw(s) as *mut c_void;
        Ok(0)
    });
    if code != 0 {
        return std::ptr::null_mut();
    }
    out
}

/// # Safety
/// `s` must come from `tpu_storage_new` or a `TPU_RET_NEW` result, freed once.
#[no_mangle]
pub unsafe extern "C" fn tpu_storage_free(s: *mut c_void) {
    if s.is_null() {
        return;
    }
    guarded_or((), || storage::free(Arc::from_raw(s as *const Storage)));
}

/// Borrows a storage pointer for the duration of a call.
///
/// # Safety
/// `p` must be a live storage context.
unsafe fn borrow(p: *mut c_void) -> Arc<Storage> {
    Arc::increment_strong_count(p as *const Storage);
    Arc::from_raw(p as *const Storage)
}

/// # Safety
/// Both must be live storage contexts.
#[no_mangle]
pub unsafe extern "C" fn tpu_storage_copy(dst: *mut c_void, src: *mut c_void, nbytes: i64) -> i32 {
    guarded(|| {
        if dst.is_null() || src.is_null() {
            crate::invalid!("storage copy with a null storage");
        }
        transfer::copy_storage_prefix(&borrow(dst), &borrow(src), nbytes.max(0) as usize)?;
        Ok(0)
    })
}

#[no_mangle]
pub extern "C" fn tpu_storage_from_addr(addr: *const c_void) -> *mut c_void {
    guarded_or(std::ptr::null_mut(), || {
        match storage::from_addr(addr as u64) {
            Some(s) => Arc::as_ptr(&s) as *mut c_void,
            None => std::ptr::null_mut(),
        }
    })
}

#[no_mangle]
pub extern "C" fn tpu_memory_allocated(device_index: i32) -> i64 {
    guarded_or(0, || {
        storage::memory_stats(device_index.max(0) as usize)
            .bytes
            .current
    })
}

/// Fills `*out` with a device's memory statistics (torch's `DeviceStats`).
///
/// # Safety
/// `out` is null or points to a writable `TpuMemoryStats`, whose C layout
/// `MemoryStats` mirrors (`#[repr(C)]`, eight `int64_t` fields).
#[no_mangle]
pub unsafe extern "C" fn tpu_memory_stats(device_index: i32, out: *mut storage::MemoryStats) {
    guarded_or((), || {
        if !out.is_null() {
            *out = storage::memory_stats(device_index.max(0) as usize);
        }
    })
}

/// A device's free and total memory in bytes (`torch.tpu.mem_get_info`).
///
/// # Safety
/// `free` and `total` must be writable.
#[no_mangle]
pub unsafe extern "C" fn tpu_memory_info(
    device_index: i32,
    free: *mut i64,
    total: *mut i64,
) -> i32 {
    guarded(|| {
        let (f, t) = platform::memory_info(platform::get()?, device_index.max(0) as usize)?;
        *free = f;
        *total = t;
        Ok(0)
    })
}

/// Runs all pending work and waits for it (`torch.accelerator.synchronize`,
/// stream and event synchronization); a status.
#[no_mangle]
pub extern "C" fn tpu_synchronize() -> i32 {
    guarded(|| crate::fused::synchronize().map(|()| 0))
}

/// `reset_peak` (peaks only) or, with `accumulated`, the grown/shrunk totals.
#[no_mangle]
pub extern "C" fn tpu_memory_reset(device_index: i32, accumulated: bool) {
    guarded_or((), || {
        let device = device_index.max(0) as usize;
        if accumulated {
            storage::reset_accumulated(device);
        } else {
            storage::reset_peak(device);
        }
    })
}

#[no_mangle]
pub extern "C" fn tpu_storage_nbytes(storage: *mut c_void) -> i64 {
    guarded_or(0, || {
        if storage.is_null() {
            return 0;
        }
        // SAFETY: `storage` is a DataPtr context made by `tpu_storage_new` (an
        // `Arc::into_raw` of a `Storage`) that the caller still owns; we only read it.
        let s = unsafe { &*(storage as *const Storage) };
        s.nbytes as i64
    })
}

/// The address `data_ptr()` gives for the first byte of a storage.
#[no_mangle]
pub extern "C" fn tpu_storage_addr(storage: *mut c_void) -> i64 {
    guarded_or(0, || {
        if storage.is_null() {
            return 0;
        }
        // SAFETY: as in `tpu_storage_nbytes`.
        let s = unsafe { &*(storage as *const Storage) };
        s.addr as i64
    })
}

/// Registers the shim's profiler callbacks (see `profile.rs`).
#[no_mangle]
pub extern "C" fn tpu_set_profiler_hooks(
    enabled: extern "C" fn() -> bool,
    begin: extern "C" fn(*const std::ffi::c_char) -> *mut std::ffi::c_void,
    end: extern "C" fn(*mut std::ffi::c_void),
) {
    guarded_or((), || {
        crate::profile::set_hooks(crate::profile::Hooks {
            enabled,
            begin,
            end,
        })
    });
}

#[no_mangle]
pub extern "C" fn tpu_device_count() -> i32 {
    guarded_or(0, || {
        platform::get().map(|p| p.devices.len() as i32).unwrap_or(0)
    })
}

/// # Safety
/// NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn tpu_count_cpu_fallback(name: *const c_char, overload: *const c_char) {
    guarded_or((), || {
        metrics::count_cpu_fallback(&overload_name(name, overload))
    });
}

/// The shim's services (seeds, devices, op registration), registered at load.
///
/// # Safety
/// `services` points to a valid `TpuShimServices` (read once, here).
#[no_mangle]
pub unsafe extern "C" fn tpu_set_shim_services(services: *const services::Services) {
    guarded_or((), || {
        if let Some(s) = services.as_ref() {
            services::set(*s);
        }
    })
}
