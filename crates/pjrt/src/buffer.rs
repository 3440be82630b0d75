//! `PJRT_Buffer` wrapper.

use crate::api::pjrt_call;
use crate::client::{Client, Device};
use crate::error::{Error, Result};
use crate::event::{await_and_destroy, Event};
use crate::types::{slice_from_raw, ElementType};
use pjrt_sys as sys;
use std::sync::Arc;

impl Client {
    /// Copies a dense host array to `device`. `data` is read only during the
    /// call (kImmutableOnlyDuringCall). Without `byte_strides` the data is
    /// row-major and `data.len()` must equal `product(dims) * elem size`; with
    /// strides, every addressed element must lie inside `data`.
    pub fn buffer_from_host(
        &self,
        data: &[u8],
        ty: ElementType,
        dims: &[i64],
        byte_strides: Option<&[i64]>,
        device: &Device,
    ) -> Result<Buffer> {
        validate_host_layout(data.len(), ty, dims, byte_strides)?;
        self.check_device(device)?;
        // SAFETY: `data` is only read during the call (we await the
        // done-with-host-buffer event before returning).
        let (buf, done) = unsafe {
            self.buffer_from_host_raw(
                data.as_ptr(),
                ty,
                dims,
                byte_strides,
                device,
                sys::PJRT_HostBufferSemantics::PJRT_HostBufferSemantics_kImmutableOnlyDuringCall,
            )
        }?;
        if let Some(done) = done {
            done.await_ready()?;
        }
        Ok(buf)
    }

    /// Zero-copy upload: the device buffer may alias `data` (the CPU plugin
    /// does so for 64-byte aligned memory, otherwise it copies). `data` is
    /// kept alive until the plugin no longer needs it (typically until the
    /// buffer is destroyed). `T` must not mutate its bytes while shared.
    pub fn buffer_from_host_shared<T>(
        &self,
        data: Arc<T>,
        ty: ElementType,
        dims: &[i64],
        byte_strides: Option<&[i64]>,
        device: &Device,
    ) -> Result<Buffer>
    where
        T: AsRef<[u8]> + Send + Sync + 'static,
    {
        let bytes: &[u8] = (*data).as_ref();
        validate_host_layout(bytes.len(), ty, dims, byte_strides)?;
        self.check_device(device)?;
        // SAFETY: the bytes stay alive until `done` fires: the Arc is moved
        // into its callback (or the buffer is not created at all).
        let (buf, done) = unsafe {
            self.buffer_from_host_raw(
                bytes.as_ptr(),
                ty,
                dims,
                byte_strides,
                device,
                sys::PJRT_HostBufferSemantics::PJRT_HostBufferSemantics_kImmutableZeroCopy,
            )
        }?;
        if let Some(done) = done {
            done.on_ready(Box::new(move |_| drop(data)));
        }
        Ok(buf)
    }

    /// # Safety
    /// `data` must be valid for the extent validated by
    /// `validate_host_layout` until the returned event (if any) is ready.
    unsafe fn buffer_from_host_raw(
        &self,
        data: *const u8,
        ty: ElementType,
        dims: &[i64],
        byte_strides: Option<&[i64]>,
        device: &Device,
        semantics: sys::PJRT_HostBufferSemantics,
    ) -> Result<(Buffer, Option<Event>)> {
        let (strides_ptr, num_strides) = match byte_strides {
            Some(s) => (s.as_ptr(), s.len()),
            None => (std::ptr::null(), 0),
        };
        let mut args = sys::PJRT_Client_BufferFromHostBuffer_Args {
            struct_size: sys::PJRT_Client_BufferFromHostBuffer_Args_STRUCT_SIZE as usize,
            client: self.as_raw(),
            data: data as *const std::os::raw::c_void,
            type_: ty.to_raw(),
            dims: dims.as_ptr(),
            num_dims: dims.len(),
            byte_strides: strides_ptr,
            num_byte_strides: num_strides,
            host_buffer_semantics: semantics,
            device: device.as_raw(),
            ..Default::default()
        };
        // SAFETY: args initialised; inputs validated; data valid per caller.
        unsafe { pjrt_call!(self.api(), PJRT_Client_BufferFromHostBuffer, &mut args) }?;
        let done = if args.done_with_host_buffer.is_null() {
            None
        } else {
            // SAFETY: the caller owns the returned event.
            Some(unsafe { Event::from_raw(*self.api(), args.done_with_host_buffer) })
        };
        // SAFETY: fresh buffer owned by us from now on.
        let buf = unsafe { Buffer::from_raw(self.clone(), args.buffer) }?;
        Ok((buf, done))
    }
}

/// Checks dims/strides against the host data length so that the plugin never
/// reads out of bounds (or hits an internal assertion).
pub(crate) fn validate_host_layout(
    len: usize,
    ty: ElementType,
    dims: &[i64],
    byte_strides: Option<&[i64]>,
) -> Result<()> {
    let esize = ty.size_in_bytes();
    let mut count: u64 = 1;
    for &d in dims {
        if d < 0 {
            return Err(Error::invalid(format!("negative dimension in {dims:?}")));
        }
        count = count
            .checked_mul(d as u64)
            .ok_or_else(|| Error::invalid(format!("dimensions {dims:?} overflow")))?;
    }
    let dense = count
        .checked_mul(esize as u64)
        .ok_or_else(|| Error::invalid(format!("dimensions {dims:?} overflow")))?;
    match byte_strides {
        None => {
            if dense != len as u64 {
                return Err(Error::invalid(format!(
                    "host data has {len} bytes, but {ty:?}{dims:?} needs {dense}"
                )));
            }
        }
        Some(strides) => {
            if strides.len() != dims.len() {
                return Err(Error::invalid(format!(
                    "{} byte strides for {} dimensions",
                    strides.len(),
                    dims.len()
                )));
            }
            if count == 0 {
                return Ok(());
            }
            let mut max_off: u64 = 0;
            for (&d, &s) in dims.iter().zip(strides) {
                if s < 0 || !(s as u64).is_multiple_of(esize as u64) {
                    return Err(Error::invalid(format!(
                        "byte strides {strides:?} must be non-negative multiples of {esize}"
                    )));
                }
                max_off = (d as u64 - 1)
                    .checked_mul(s as u64)
                    .and_then(|o| o.checked_add(max_off))
                    .ok_or_else(|| Error::invalid(format!("byte strides {strides:?} overflow")))?;
            }
            let need = max_off + esize as u64;
            if need > len as u64 {
                return Err(Error::invalid(format!(
                    "strided {ty:?}{dims:?} (strides {strides:?}) reads {need} bytes, host data has {len}"
                )));
            }
        }
    }
    Ok(())
}

/// An owned device buffer (destroyed on drop). Keeps its client alive.
pub struct Buffer {
    client: Client,
    raw: *mut sys::PJRT_Buffer,
}

// SAFETY: PJRT buffers are thread-safe handles (the C API may be called on
// them from any thread, concurrently); we destroy the handle once in Drop.
unsafe impl Send for Buffer {}
// SAFETY: see `Send`; all `&self` methods call thread-safe C functions.
unsafe impl Sync for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Buffer");
        if let Ok(t) = self.element_type() {
            d.field("type", &t);
        }
        if let Ok(dims) = self.try_dims() {
            d.field("dims", &dims);
        }
        d.finish()
    }
}

impl Buffer {
    /// Takes ownership of a raw buffer.
    ///
    /// # Safety
    /// `raw` must be null or a live buffer of `client` not owned elsewhere.
    pub(crate) unsafe fn from_raw(client: Client, raw: *mut sys::PJRT_Buffer) -> Result<Buffer> {
        if raw.is_null() {
            return Err(Error::invalid("PJRT returned a null buffer"));
        }
        Ok(Buffer { client, raw })
    }

    /// Raw handle (still owned by `self`).
    pub fn as_raw(&self) -> *mut sys::PJRT_Buffer {
        self.raw
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Dimensions (empty if they cannot be queried, e.g. deleted buffer).
    pub fn dims(&self) -> Vec<i64> {
        self.try_dims().unwrap_or_default()
    }

    /// Dimensions, with the query error.
    pub fn try_dims(&self) -> Result<Vec<i64>> {
        let mut args = sys::PJRT_Buffer_Dimensions_Args {
            struct_size: sys::PJRT_Buffer_Dimensions_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live; dims owned by the buffer and
        // copied immediately.
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Buffer_Dimensions, &mut args)?;
            Ok(slice_from_raw(args.dims, args.num_dims).to_vec())
        }
    }

    /// Element type.
    pub fn element_type(&self) -> Result<ElementType> {
        let mut args = sys::PJRT_Buffer_ElementType_Args {
            struct_size: sys::PJRT_Buffer_ElementType_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live.
        unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_ElementType, &mut args) }?;
        ElementType::try_from_raw(args.type_)
    }

    /// Size of the on-device representation.
    pub fn on_device_size_in_bytes(&self) -> Result<usize> {
        let mut args = sys::PJRT_Buffer_OnDeviceSizeInBytes_Args {
            struct_size: sys::PJRT_Buffer_OnDeviceSizeInBytes_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live.
        unsafe {
            pjrt_call!(
                self.client.api(),
                PJRT_Buffer_OnDeviceSizeInBytes,
                &mut args
            )
        }?;
        Ok(args.on_device_size_in_bytes)
    }

    /// The device holding the buffer.
    pub fn device(&self) -> Result<Device> {
        let mut args = sys::PJRT_Buffer_Device_Args {
            struct_size: sys::PJRT_Buffer_Device_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live.
        unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_Device, &mut args) }?;
        self.client.device_from_raw(args.device)
    }

    /// Size in bytes `to_host` needs (dense row-major host layout).
    pub fn host_size_in_bytes(&self) -> Result<usize> {
        let mut args = sys::PJRT_Buffer_ToHostBuffer_Args {
            struct_size: sys::PJRT_Buffer_ToHostBuffer_Args_STRUCT_SIZE as usize,
            src: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; null `dst` only queries the size.
        unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_ToHostBuffer, &mut args) }?;
        Ok(args.dst_size)
    }

    /// Copies the buffer to `dst` (dense row-major) and waits for completion.
    /// `dst.len()` must equal [`Buffer::host_size_in_bytes`].
    pub fn to_host(&self, dst: &mut [u8]) -> Result<()> {
        if self.is_deleted() {
            return Err(Error::invalid("to_host on a deleted (or donated) buffer"));
        }
        let need = self.host_size_in_bytes()?;
        if dst.len() != need {
            return Err(Error::invalid(format!(
                "to_host: destination has {} bytes, buffer needs {need}",
                dst.len()
            )));
        }
        if need == 0 {
            return Ok(());
        }
        if self.client.platform_name() == "cpu" && self.read_host_resident(dst)? {
            return Ok(());
        }
        let mut args = sys::PJRT_Buffer_ToHostBuffer_Args {
            struct_size: sys::PJRT_Buffer_ToHostBuffer_Args_STRUCT_SIZE as usize,
            src: self.raw,
            dst: dst.as_mut_ptr() as *mut std::os::raw::c_void,
            dst_size: dst.len(),
            ..Default::default()
        };
        // SAFETY: args initialised; `dst` is exclusively borrowed and valid for
        // `need` bytes until the event completes, which we await before
        // returning (the event is destroyed afterwards).
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Buffer_ToHostBuffer, &mut args)?;
            await_and_destroy(*self.client.api(), args.event)
        }
    }

    /// The CPU plugin's device memory is host memory: once the buffer is
    /// ready its bytes are copied straight out. `PJRT_Buffer_ToHostBuffer`
    /// hands the copy to the plugin's worker threads, which costs about 75 µs
    /// of thread hand-offs per read on a 2-core machine against well under
    /// 1 µs for a small tensor here. False (nothing copied) where the device
    /// representation is not the dense host one or the plugin gives no pointer.
    fn read_host_resident(&self, dst: &mut [u8]) -> Result<bool> {
        if self.on_device_size_in_bytes()? != dst.len() {
            return Ok(false);
        }
        self.ready_event()?.await_ready()?;
        let mut args = sys::PJRT_Buffer_UnsafePointer_Args {
            struct_size: sys::PJRT_Buffer_UnsafePointer_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live.
        if unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_UnsafePointer, &mut args) }.is_err()
            || args.buffer_pointer == 0
        {
            return Ok(false);
        }
        // SAFETY: on the CPU platform the pointer addresses `dst.len()` bytes
        // of host memory holding the buffer densely in the default row-major
        // layout (the size check above rules out padded or packed forms). The
        // buffer is ready (its producer has finished) and live while `self`
        // is borrowed; a PJRT buffer is never rewritten once ready (donation
        // deletes it, and `to_host` checked it is not deleted), so the bytes
        // are stable during the copy, and `dst` is a distinct Rust allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(
                args.buffer_pointer as *const u8,
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(true)
    }

    /// Convenience: copies to a new `Vec<u8>`.
    pub fn to_host_vec(&self) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.host_size_in_bytes()?];
        self.to_host(&mut v)?;
        Ok(v)
    }

    /// Event that becomes ready when the buffer's data is computed.
    pub fn ready_event(&self) -> Result<Event> {
        let mut args = sys::PJRT_Buffer_ReadyEvent_Args {
            struct_size: sys::PJRT_Buffer_ReadyEvent_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live; we own the returned event.
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Buffer_ReadyEvent, &mut args)?;
            if args.event.is_null() {
                return Err(Error::invalid("PJRT_Buffer_ReadyEvent returned null"));
            }
            Ok(Event::from_raw(*self.client.api(), args.event))
        }
    }

    /// True once deleted (explicitly or by donation to an execution).
    pub fn is_deleted(&self) -> bool {
        let mut args = sys::PJRT_Buffer_IsDeleted_Args {
            struct_size: sys::PJRT_Buffer_IsDeleted_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live.
        match unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_IsDeleted, &mut args) } {
            Ok(()) => args.is_deleted,
            Err(_) => false,
        }
    }

    /// Frees the device memory now; the handle stays valid (queries report
    /// deleted, uses fail with an error).
    pub fn delete(&self) {
        let mut args = sys::PJRT_Buffer_Delete_Args {
            struct_size: sys::PJRT_Buffer_Delete_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; buffer live (Delete keeps the handle).
        let _ = unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_Delete, &mut args) };
    }

    /// Copies the buffer to another device of the same client.
    pub fn copy_to_device(&self, device: &Device) -> Result<Buffer> {
        self.client.check_device(device)?;
        if self.is_deleted() {
            return Err(Error::invalid("copy_to_device on a deleted buffer"));
        }
        let mut args = sys::PJRT_Buffer_CopyToDevice_Args {
            struct_size: sys::PJRT_Buffer_CopyToDevice_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            dst_device: device.as_raw(),
            ..Default::default()
        };
        // SAFETY: args initialised; buffer and device live.
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Buffer_CopyToDevice, &mut args)?;
            Buffer::from_raw(self.client.clone(), args.dst_buffer)
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut args = sys::PJRT_Buffer_Destroy_Args {
            struct_size: sys::PJRT_Buffer_Destroy_Args_STRUCT_SIZE as usize,
            buffer: self.raw,
            ..Default::default()
        };
        // SAFETY: we own the handle; destroyed exactly once, before the client
        // (we hold a `Client` clone).
        let _ = unsafe { pjrt_call!(self.client.api(), PJRT_Buffer_Destroy, &mut args) };
    }
}
