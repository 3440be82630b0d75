//! `PJRT_Client` and `PJRT_Device` wrappers; compilation and host→device upload.

use crate::api::{pjrt_call, Api};
use crate::buffer::Buffer;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::executable::LoadedExecutable;
use crate::types::{str_from_raw, ElementType, NamedValue};
use pjrt_sys as sys;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Serialized `CompileOptionsProto`:
/// `executable_build_options { num_replicas: 1, num_partitions: 1 }`.
/// The executable is assigned to the first device only.
/// (Empty compile options abort the CPU plugin.)
pub const DEFAULT_COMPILE_OPTIONS: &[u8] = &[0x1a, 0x04, 0x20, 0x01, 0x28, 0x01];

/// [`DEFAULT_COMPILE_OPTIONS`] plus `compile_portable_executable: true`: the
/// executable has no device assignment and runs on any addressable device
/// (chosen per `execute` call). Used by [`Client::compile`].
pub const PORTABLE_COMPILE_OPTIONS: &[u8] = &[0x1a, 0x04, 0x20, 0x01, 0x28, 0x01, 0x20, 0x01];

static NEXT_CLIENT_UID: AtomicU64 = AtomicU64::new(1);

struct DeviceInfo {
    raw: *mut sys::PJRT_Device,
    client_uid: u64,
    id: i32,
    local_hardware_id: i32,
    kind: String,
    debug_string: String,
}

/// An addressable device of a [`Client`]. Cheap to clone. The handle is only
/// used through its client (which must be alive to do anything with it).
#[derive(Clone)]
pub struct Device {
    info: Arc<DeviceInfo>,
}

// SAFETY: `DeviceInfo` is immutable; the raw `PJRT_Device*` is an opaque handle
// owned by the client and only passed back to the (thread-safe) C API.
unsafe impl Send for DeviceInfo {}
// SAFETY: see `Send`.
unsafe impl Sync for DeviceInfo {}

impl Device {
    /// Global device id (`PJRT_DeviceDescription_Id`).
    pub fn id(&self) -> i32 {
        self.info.id
    }
    /// Local hardware id (-1 if unknown).
    pub fn local_hardware_id(&self) -> i32 {
        self.info.local_hardware_id
    }
    /// Device kind, e.g. "cpu".
    pub fn kind(&self) -> &str {
        &self.info.kind
    }
    /// Verbose description.
    pub fn debug_string(&self) -> &str {
        &self.info.debug_string
    }
    /// Raw handle (owned by the client).
    pub fn as_raw(&self) -> *mut sys::PJRT_Device {
        self.info.raw
    }
    pub(crate) fn client_uid(&self) -> u64 {
        self.info.client_uid
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        self.info.raw == other.info.raw && self.info.client_uid == other.info.client_uid
    }
}
impl Eq for Device {}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({}:{})", self.info.kind, self.info.id)
    }
}

pub(crate) struct ClientInner {
    pub(crate) api: Api,
    pub(crate) raw: *mut sys::PJRT_Client,
    pub(crate) uid: u64,
    devices: Vec<Device>,
    platform_name: String,
    platform_version: String,
}

// SAFETY: a PJRT_Client is thread-safe per the PJRT C API contract; the other
// fields are immutable after construction.
unsafe impl Send for ClientInner {}
// SAFETY: see `Send`.
unsafe impl Sync for ClientInner {}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let mut args = sys::PJRT_Client_Destroy_Args {
            struct_size: sys::PJRT_Client_Destroy_Args_STRUCT_SIZE as usize,
            client: self.raw,
            ..Default::default()
        };
        // SAFETY: last reference (buffers/executables hold a `Client` clone, so
        // they are already gone); destroyed exactly once.
        let _ = unsafe { pjrt_call!(&self.api, PJRT_Client_Destroy, &mut args) };
    }
}

/// A PJRT client. Cheap to clone; buffers and executables keep it alive.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("platform", &self.inner.platform_name)
            .field("devices", &self.inner.devices.len())
            .finish()
    }
}

impl Client {
    /// Creates a client with the given create options (e.g. for the CPU
    /// plugin `("cpu_device_count", NamedValue::Int64(n))`).
    pub fn new(api: &Api, options: &[(&str, NamedValue)]) -> Result<Client> {
        let raw_opts: Vec<sys::PJRT_NamedValue> =
            options.iter().map(|(n, v)| v.to_raw(n)).collect();
        let mut args = sys::PJRT_Client_Create_Args {
            struct_size: sys::PJRT_Client_Create_Args_STRUCT_SIZE as usize,
            create_options: raw_opts.as_ptr(),
            num_options: raw_opts.len(),
            ..Default::default()
        };
        // SAFETY: args initialised; options borrow `options`, alive for the call.
        unsafe { pjrt_call!(api, PJRT_Client_Create, &mut args) }?;
        let raw = args.client;
        if raw.is_null() {
            return Err(Error::invalid("PJRT_Client_Create returned no client"));
        }
        let uid = NEXT_CLIENT_UID.fetch_add(1, Ordering::Relaxed);
        let mut inner = ClientInner {
            api: *api,
            raw,
            uid,
            devices: Vec::new(),
            platform_name: String::new(),
            platform_version: String::new(),
        };
        // From here on `inner`'s Drop destroys the client on error.
        inner.platform_name = platform_string(&inner, true)?;
        inner.platform_version = platform_string(&inner, false)?;
        inner.devices = query_devices(&inner)?;
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    pub fn api(&self) -> &Api {
        &self.inner.api
    }

    /// Raw handle (owned by `self`).
    pub fn as_raw(&self) -> *mut sys::PJRT_Client {
        self.inner.raw
    }

    /// E.g. "cpu".
    pub fn platform_name(&self) -> &str {
        &self.inner.platform_name
    }

    pub fn platform_version(&self) -> &str {
        &self.inner.platform_version
    }

    /// Addressable devices, in the plugin's order.
    pub fn addressable_devices(&self) -> Vec<Device> {
        self.inner.devices.clone()
    }

    /// Borrowing variant of [`Client::addressable_devices`].
    pub fn devices(&self) -> &[Device] {
        &self.inner.devices
    }

    /// Maps a raw device handle of this client to its `Device`.
    pub(crate) fn device_from_raw(&self, raw: *mut sys::PJRT_Device) -> Result<Device> {
        self.inner
            .devices
            .iter()
            .find(|d| d.info.raw == raw)
            .cloned()
            .ok_or_else(|| Error::invalid("device is not addressable by this client"))
    }

    pub(crate) fn check_device(&self, device: &Device) -> Result<()> {
        if device.client_uid() != self.inner.uid {
            return Err(Error::invalid(format!(
                "{device:?} belongs to another client"
            )));
        }
        Ok(())
    }

    /// Compiles StableHLO MLIR text (format "mlir") with
    /// [`PORTABLE_COMPILE_OPTIONS`] (1 replica, 1 partition, portable: runs on
    /// any device given to `execute`, default the first device).
    pub fn compile(&self, mlir_text: &str) -> Result<LoadedExecutable> {
        self.compile_with_options(mlir_text.as_bytes(), "mlir", PORTABLE_COMPILE_OPTIONS)
    }

    /// Compiles `code` in `format` ("mlir" or "hlo") with serialized
    /// `CompileOptionsProto` bytes (must not be empty).
    pub fn compile_with_options(
        &self,
        code: &[u8],
        format: &str,
        options: &[u8],
    ) -> Result<LoadedExecutable> {
        if options.is_empty() {
            return Err(Error::invalid(
                "compile options must be a non-empty serialized CompileOptionsProto",
            ));
        }
        if code.is_empty() {
            return Err(Error::invalid("empty program"));
        }
        let program = sys::PJRT_Program {
            struct_size: sys::PJRT_Program_STRUCT_SIZE as usize,
            // The plugin only reads the code; the C field is non-const.
            code: code.as_ptr() as *mut c_char,
            code_size: code.len(),
            format: format.as_ptr() as *const c_char,
            format_size: format.len(),
            ..Default::default()
        };
        let mut args = sys::PJRT_Client_Compile_Args {
            struct_size: sys::PJRT_Client_Compile_Args_STRUCT_SIZE as usize,
            client: self.inner.raw,
            program: &program,
            compile_options: options.as_ptr() as *const c_char,
            compile_options_size: options.len(),
            ..Default::default()
        };
        // SAFETY: args initialised; all pointers borrow live data for the call.
        unsafe { pjrt_call!(&self.inner.api, PJRT_Client_Compile, &mut args) }?;
        // SAFETY: fresh executable owned by us from now on.
        unsafe { LoadedExecutable::from_raw(self.clone(), args.executable) }
    }

    /// Loads an executable produced by [`LoadedExecutable::serialize`].
    pub fn deserialize_and_load(&self, bytes: &[u8]) -> Result<LoadedExecutable> {
        if bytes.is_empty() {
            return Err(Error::invalid("empty serialized executable"));
        }
        let mut args = sys::PJRT_Executable_DeserializeAndLoad_Args {
            struct_size: sys::PJRT_Executable_DeserializeAndLoad_Args_STRUCT_SIZE as usize,
            client: self.inner.raw,
            serialized_executable: bytes.as_ptr() as *const c_char,
            serialized_executable_size: bytes.len(),
            ..Default::default()
        };
        // SAFETY: args initialised; `bytes` alive for the call.
        unsafe {
            pjrt_call!(
                &self.inner.api,
                PJRT_Executable_DeserializeAndLoad,
                &mut args
            )
        }?;
        // SAFETY: fresh executable owned by us from now on.
        unsafe { LoadedExecutable::from_raw(self.clone(), args.loaded_executable) }
    }

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
            client: self.inner.raw,
            data: data as *const std::os::raw::c_void,
            type_: ty.to_raw(),
            dims: dims.as_ptr(),
            num_dims: dims.len(),
            byte_strides: strides_ptr,
            num_byte_strides: num_strides,
            host_buffer_semantics: semantics,
            device: device.info.raw,
            ..Default::default()
        };
        // SAFETY: args initialised; inputs validated; data valid per caller.
        unsafe { pjrt_call!(&self.inner.api, PJRT_Client_BufferFromHostBuffer, &mut args) }?;
        let done = if args.done_with_host_buffer.is_null() {
            None
        } else {
            // SAFETY: the caller owns the returned event.
            Some(unsafe { Event::from_raw(self.inner.api, args.done_with_host_buffer) })
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

fn platform_string(inner: &ClientInner, name: bool) -> Result<String> {
    // SAFETY (both branches): args initialised; the returned string is owned by
    // the client and copied immediately.
    unsafe {
        if name {
            let mut args = sys::PJRT_Client_PlatformName_Args {
                struct_size: sys::PJRT_Client_PlatformName_Args_STRUCT_SIZE as usize,
                client: inner.raw,
                ..Default::default()
            };
            pjrt_call!(&inner.api, PJRT_Client_PlatformName, &mut args)?;
            Ok(str_from_raw(args.platform_name, args.platform_name_size))
        } else {
            let mut args = sys::PJRT_Client_PlatformVersion_Args {
                struct_size: sys::PJRT_Client_PlatformVersion_Args_STRUCT_SIZE as usize,
                client: inner.raw,
                ..Default::default()
            };
            pjrt_call!(&inner.api, PJRT_Client_PlatformVersion, &mut args)?;
            Ok(str_from_raw(
                args.platform_version,
                args.platform_version_size,
            ))
        }
    }
}

fn query_devices(inner: &ClientInner) -> Result<Vec<Device>> {
    let api = &inner.api;
    let mut args = sys::PJRT_Client_AddressableDevices_Args {
        struct_size: sys::PJRT_Client_AddressableDevices_Args_STRUCT_SIZE as usize,
        client: inner.raw,
        ..Default::default()
    };
    // SAFETY: args initialised.
    unsafe { pjrt_call!(api, PJRT_Client_AddressableDevices, &mut args) }?;
    // SAFETY: the client owns an array of `num_addressable_devices` handles.
    let raws = unsafe {
        crate::types::slice_from_raw(args.addressable_devices, args.num_addressable_devices)
    }
    .to_vec();
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let mut d = sys::PJRT_Device_GetDescription_Args {
            struct_size: sys::PJRT_Device_GetDescription_Args_STRUCT_SIZE as usize,
            device: raw,
            ..Default::default()
        };
        // SAFETY: args initialised; `raw` is a live device of the client.
        unsafe { pjrt_call!(api, PJRT_Device_GetDescription, &mut d) }?;
        let desc = d.device_description;
        let mut id = sys::PJRT_DeviceDescription_Id_Args {
            struct_size: sys::PJRT_DeviceDescription_Id_Args_STRUCT_SIZE as usize,
            device_description: desc,
            ..Default::default()
        };
        let mut kind = sys::PJRT_DeviceDescription_Kind_Args {
            struct_size: sys::PJRT_DeviceDescription_Kind_Args_STRUCT_SIZE as usize,
            device_description: desc,
            ..Default::default()
        };
        let mut dbg = sys::PJRT_DeviceDescription_DebugString_Args {
            struct_size: sys::PJRT_DeviceDescription_DebugString_Args_STRUCT_SIZE as usize,
            device_description: desc,
            ..Default::default()
        };
        let mut hw = sys::PJRT_Device_LocalHardwareId_Args {
            struct_size: sys::PJRT_Device_LocalHardwareId_Args_STRUCT_SIZE as usize,
            device: raw,
            ..Default::default()
        };
        // SAFETY: args initialised; description owned by the device; returned
        // strings are copied immediately.
        let info = unsafe {
            pjrt_call!(api, PJRT_DeviceDescription_Id, &mut id)?;
            pjrt_call!(api, PJRT_DeviceDescription_Kind, &mut kind)?;
            pjrt_call!(api, PJRT_DeviceDescription_DebugString, &mut dbg)?;
            let local_hardware_id = match pjrt_call!(api, PJRT_Device_LocalHardwareId, &mut hw) {
                Ok(()) => hw.local_hardware_id,
                Err(_) => -1,
            };
            DeviceInfo {
                raw,
                client_uid: inner.uid,
                id: id.id,
                local_hardware_id,
                kind: str_from_raw(kind.device_kind, kind.device_kind_size),
                debug_string: str_from_raw(dbg.debug_string, dbg.debug_string_size),
            }
        };
        out.push(Device {
            info: Arc::new(info),
        });
    }
    Ok(out)
}
