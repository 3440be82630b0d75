//! `PJRT_Client` and `PJRT_Device` wrappers. Compiling lives with the
//! executables (`executable.rs`), uploading with the buffers (`buffer.rs`).

use crate::api::{pjrt_call, Api};
use crate::error::{Error, Result};
use crate::types::{str_from_raw, NamedValue};
use pjrt_sys as sys;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The store behind the plugin's key-value callbacks: the plugin may
    /// call them as long as the client lives.
    _kv: Option<crate::kv_store::Shared>,
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
        Client::create(api, options, None)
    }

    /// Like [`Client::new`], with the key-value store the plugin uses to
    /// bootstrap across processes (`kv_get/put/try_get_callback`).
    pub fn new_with_kv_store(
        api: &Api,
        options: &[(&str, NamedValue)],
        store: std::sync::Arc<dyn crate::KvStore>,
    ) -> Result<Client> {
        Client::create(api, options, Some(Box::new(store)))
    }

    fn create(
        api: &Api,
        options: &[(&str, NamedValue)],
        kv: Option<crate::kv_store::Shared>,
    ) -> Result<Client> {
        let raw_opts: Vec<sys::PJRT_NamedValue> =
            options.iter().map(|(n, v)| v.to_raw(n)).collect();
        let mut args = sys::PJRT_Client_Create_Args {
            struct_size: sys::PJRT_Client_Create_Args_STRUCT_SIZE as usize,
            create_options: raw_opts.as_ptr(),
            num_options: raw_opts.len(),
            ..Default::default()
        };
        if let Some(store) = &kv {
            crate::kv_store::install(&mut args, store);
        }
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
            _kv: kv,
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

    /// A device's memory as the plugin counts it: (bytes in use, bytes
    /// limit). None when the plugin does not say (the CPU plugins: their
    /// memory is the host's).
    pub fn device_memory(&self, device: &Device) -> Option<(i64, i64)> {
        let mut args = sys::PJRT_Device_MemoryStats_Args {
            struct_size: sys::PJRT_Device_MemoryStats_Args_STRUCT_SIZE as usize,
            device: device.as_raw(),
            ..Default::default()
        };
        // SAFETY: args initialised; the device belongs to this live client;
        // the call only fills in numbers.
        unsafe {
            pjrt_call!(self.api(), PJRT_Device_MemoryStats, &mut args).ok()?;
        }
        args.bytes_limit_is_set
            .then_some((args.bytes_in_use, args.bytes_limit))
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
