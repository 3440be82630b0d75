//! `PJRT_Event` wrapper.

use crate::api::{pjrt_call, Api};
use crate::error::Result;
use pjrt_sys as sys;
use std::os::raw::c_void;

/// Callback type for [`Event::on_ready`].
pub type EventCallback = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// An owned PJRT event (destroyed on drop).
pub struct Event {
    api: Api,
    raw: *mut sys::PJRT_Event,
}

// SAFETY: a PJRT_Event wraps a thread-safe future (xla::PjRtFuture); the C API
// allows using it from any thread. We only hand out `&self` methods that call
// thread-safe C functions, and destroy it once in Drop.
unsafe impl Send for Event {}
// SAFETY: see `Send`; IsReady/Await/Error/OnReady may be called concurrently.
unsafe impl Sync for Event {}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("raw", &self.raw).finish()
    }
}

struct OnReadyCtx {
    api: Api,
    cb: EventCallback,
}

unsafe extern "C" fn on_ready_trampoline(err: *mut sys::PJRT_Error, user_arg: *mut c_void) {
    // SAFETY: `user_arg` is the `Box<OnReadyCtx>` leaked in `on_ready`; the
    // plugin calls this exactly once, so we reclaim it exactly once.
    let ctx = unsafe { Box::from_raw(user_arg as *mut OnReadyCtx) };
    // SAFETY: the callback owns `err` (null or live) and must destroy it.
    let res = unsafe { ctx.api.check(err, "PJRT_Event_OnReady") };
    let cb = ctx.cb;
    // Never unwind into C: a panicking user callback is contained here.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || cb(res)));
}

impl Event {
    /// Takes ownership of a raw event.
    ///
    /// # Safety
    /// `raw` must be a live, non-null event of `api`'s plugin not owned elsewhere.
    pub(crate) unsafe fn from_raw(api: Api, raw: *mut sys::PJRT_Event) -> Event {
        debug_assert!(!raw.is_null());
        Event { api, raw }
    }

    /// Raw handle (still owned by `self`).
    pub fn as_raw(&self) -> *mut sys::PJRT_Event {
        self.raw
    }

    /// Blocks until the event is ready; returns its error if it failed.
    pub fn await_ready(&self) -> Result<()> {
        let mut args = sys::PJRT_Event_Await_Args {
            struct_size: sys::PJRT_Event_Await_Args_STRUCT_SIZE as usize,
            event: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; `self.raw` is live.
        unsafe { pjrt_call!(&self.api, PJRT_Event_Await, &mut args) }
    }

    /// Non-blocking readiness check.
    pub fn is_ready(&self) -> Result<bool> {
        let mut args = sys::PJRT_Event_IsReady_Args {
            struct_size: sys::PJRT_Event_IsReady_Args_STRUCT_SIZE as usize,
            event: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; `self.raw` is live.
        unsafe { pjrt_call!(&self.api, PJRT_Event_IsReady, &mut args) }?;
        Ok(args.is_ready)
    }

    /// The event's error, once it is ready (`Ok(())` if it succeeded).
    /// Only meaningful after `is_ready()` returned true.
    pub fn error(&self) -> Result<()> {
        let mut args = sys::PJRT_Event_Error_Args {
            struct_size: sys::PJRT_Event_Error_Args_STRUCT_SIZE as usize,
            event: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; `self.raw` is live.
        unsafe { pjrt_call!(&self.api, PJRT_Event_Error, &mut args) }
    }

    /// Registers `callback`, called exactly once with the event's result:
    /// on the calling thread if the event is already ready, otherwise on a
    /// plugin thread. Keep callbacks short and non-blocking. A panic in the
    /// callback is caught and discarded (it cannot unwind into C). The event
    /// may be dropped before the callback runs.
    pub fn on_ready(&self, callback: EventCallback) {
        let ctx = Box::into_raw(Box::new(OnReadyCtx {
            api: self.api,
            cb: callback,
        }));
        let mut args = sys::PJRT_Event_OnReady_Args {
            struct_size: sys::PJRT_Event_OnReady_Args_STRUCT_SIZE as usize,
            event: self.raw,
            callback: Some(on_ready_trampoline),
            user_arg: ctx as *mut c_void,
            ..Default::default()
        };
        // SAFETY: args initialised; `self.raw` is live; `ctx` stays valid until
        // the trampoline reclaims it.
        let res = unsafe { pjrt_call!(&self.api, PJRT_Event_OnReady, &mut args) };
        if let Err(e) = res {
            // Registration failed, so the plugin will never call back: reclaim
            // the context and report the error through the callback.
            // SAFETY: `ctx` was not handed over to the plugin.
            let ctx = unsafe { Box::from_raw(ctx) };
            (ctx.cb)(Err(e));
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let mut args = sys::PJRT_Event_Destroy_Args {
            struct_size: sys::PJRT_Event_Destroy_Args_STRUCT_SIZE as usize,
            event: self.raw,
            ..Default::default()
        };
        // SAFETY: we own `self.raw`; destroyed exactly once.
        let _ = unsafe { pjrt_call!(&self.api, PJRT_Event_Destroy, &mut args) };
    }
}

/// Awaits and destroys a raw event (may be null), returning its result.
///
/// # Safety
/// `raw` must be null or a live event of `api`'s plugin not owned elsewhere.
pub(crate) unsafe fn await_and_destroy(api: Api, raw: *mut sys::PJRT_Event) -> Result<()> {
    if raw.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    let ev = unsafe { Event::from_raw(api, raw) };
    ev.await_ready()
}
