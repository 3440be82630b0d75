//! `PJRT_LoadedExecutable` wrapper: execute, serialize, metadata.

use crate::api::pjrt_call;
use crate::buffer::Buffer;
use crate::client::{Client, Device};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::types::{slice_from_raw, str_from_raw, ElementType};
use pjrt_sys as sys;
use std::os::raw::c_char;
use std::ptr::null_mut;

/// Serialized `CompileOptionsProto`:
/// `executable_build_options { num_replicas: 1, num_partitions: 1 }`.
/// The executable is assigned to the first device only.
/// (Empty compile options abort the CPU plugin.)
pub const DEFAULT_COMPILE_OPTIONS: &[u8] = &[0x1a, 0x04, 0x20, 0x01, 0x28, 0x01];

/// [`DEFAULT_COMPILE_OPTIONS`] plus `compile_portable_executable: true`: the
/// executable has no device assignment and runs on any addressable device
/// (chosen per `execute` call). Used by [`Client::compile`].
pub const PORTABLE_COMPILE_OPTIONS: &[u8] = &[0x1a, 0x04, 0x20, 0x01, 0x28, 0x01, 0x20, 0x01];

impl Client {
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
            client: self.as_raw(),
            program: &program,
            compile_options: options.as_ptr() as *const c_char,
            compile_options_size: options.len(),
            ..Default::default()
        };
        // SAFETY: args initialised; all pointers borrow live data for the call.
        unsafe { pjrt_call!(self.api(), PJRT_Client_Compile, &mut args) }?;
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
            client: self.as_raw(),
            serialized_executable: bytes.as_ptr() as *const c_char,
            serialized_executable_size: bytes.len(),
            ..Default::default()
        };
        // SAFETY: args initialised; `bytes` alive for the call.
        unsafe { pjrt_call!(self.api(), PJRT_Executable_DeserializeAndLoad, &mut args) }?;
        // SAFETY: fresh executable owned by us from now on.
        unsafe { LoadedExecutable::from_raw(self.clone(), args.loaded_executable) }
    }
}

/// Arity up to which execute uses stack arrays instead of allocating.
const INLINE: usize = 16;

/// A compiled, loaded executable (destroyed on drop). Keeps its client alive.
pub struct LoadedExecutable {
    client: Client,
    raw: *mut sys::PJRT_LoadedExecutable,
    /// Non-loaded view (owned; destroyed on drop), for metadata queries.
    exe: *mut sys::PJRT_Executable,
    num_outputs: usize,
    /// Device used when `execute` gets `None`: null for executables with a
    /// device assignment (the plugin picks it), the client's first device for
    /// portable executables (which have none).
    default_device: *mut sys::PJRT_Device,
    /// Devices the executable is assigned to (empty if portable).
    assigned: Vec<Device>,
    /// [`LoadedExecutable::run_memory_bytes`], asked of the plugin once.
    run_memory: std::sync::OnceLock<Option<i64>>,
}

// SAFETY: PJRT loaded executables are thread-safe: Execute and the metadata
// queries may be called concurrently from any thread. Handles are destroyed
// once in Drop.
unsafe impl Send for LoadedExecutable {}
// SAFETY: see `Send`.
unsafe impl Sync for LoadedExecutable {}

impl std::fmt::Debug for LoadedExecutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedExecutable")
            .field("name", &self.name().unwrap_or_default())
            .field("num_outputs", &self.num_outputs)
            .finish()
    }
}

impl LoadedExecutable {
    /// Takes ownership of a raw loaded executable.
    ///
    /// # Safety
    /// `raw` must be null or a live executable of `client` not owned elsewhere.
    pub(crate) unsafe fn from_raw(
        client: Client,
        raw: *mut sys::PJRT_LoadedExecutable,
    ) -> Result<LoadedExecutable> {
        if raw.is_null() {
            return Err(Error::invalid("PJRT returned a null executable"));
        }
        let mut this = LoadedExecutable {
            client,
            raw,
            exe: null_mut(),
            num_outputs: 0,
            default_device: null_mut(),
            assigned: Vec::new(),
            run_memory: std::sync::OnceLock::new(),
        };
        // From here on Drop cleans up on error.
        let api = *this.client.api();
        let mut g = sys::PJRT_LoadedExecutable_GetExecutable_Args {
            struct_size: sys::PJRT_LoadedExecutable_GetExecutable_Args_STRUCT_SIZE as usize,
            loaded_executable: raw,
            ..Default::default()
        };
        // SAFETY: args initialised; `raw` live; we own the returned handle.
        unsafe { pjrt_call!(&api, PJRT_LoadedExecutable_GetExecutable, &mut g) }?;
        this.exe = g.executable;
        let mut n = sys::PJRT_Executable_NumOutputs_Args {
            struct_size: sys::PJRT_Executable_NumOutputs_Args_STRUCT_SIZE as usize,
            executable: this.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; `exe` live.
        unsafe { pjrt_call!(&api, PJRT_Executable_NumOutputs, &mut n) }?;
        this.num_outputs = n.num_outputs;
        let mut d = sys::PJRT_LoadedExecutable_AddressableDevices_Args {
            struct_size: sys::PJRT_LoadedExecutable_AddressableDevices_Args_STRUCT_SIZE as usize,
            executable: raw,
            ..Default::default()
        };
        // SAFETY: args initialised; the device array is owned by the
        // executable and copied immediately.
        let raws = unsafe {
            pjrt_call!(&api, PJRT_LoadedExecutable_AddressableDevices, &mut d)?;
            slice_from_raw(d.addressable_devices, d.num_addressable_devices).to_vec()
        };
        for r in raws {
            this.assigned.push(this.client.device_from_raw(r)?);
        }
        if this.assigned.is_empty() {
            this.default_device = this
                .client
                .devices()
                .first()
                .ok_or_else(|| Error::invalid("client has no addressable devices"))?
                .as_raw();
        }
        Ok(this)
    }

    /// Raw handle (still owned by `self`).
    pub fn as_raw(&self) -> *mut sys::PJRT_LoadedExecutable {
        self.raw
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True if compiled without a device assignment (runs on any device).
    pub fn is_portable(&self) -> bool {
        self.assigned.is_empty()
    }

    /// Devices of the executable's device assignment (empty if portable).
    pub fn assigned_devices(&self) -> &[Device] {
        &self.assigned
    }

    /// Number of outputs (per device).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// Executable name (the MLIR module name).
    pub fn name(&self) -> Result<String> {
        let mut args = sys::PJRT_Executable_Name_Args {
            struct_size: sys::PJRT_Executable_Name_Args_STRUCT_SIZE as usize,
            executable: self.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; string owned by the executable, copied.
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Executable_Name, &mut args)?;
            Ok(str_from_raw(
                args.executable_name,
                args.executable_name_size,
            ))
        }
    }

    /// Element types of the outputs.
    pub fn output_element_types(&self) -> Result<Vec<ElementType>> {
        let mut args = sys::PJRT_Executable_OutputElementTypes_Args {
            struct_size: sys::PJRT_Executable_OutputElementTypes_Args_STRUCT_SIZE as usize,
            executable: self.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; array owned by the executable, copied.
        let raw = unsafe {
            pjrt_call!(
                self.client.api(),
                PJRT_Executable_OutputElementTypes,
                &mut args
            )?;
            slice_from_raw(args.output_types, args.num_output_types)
        };
        raw.iter().map(|&t| ElementType::try_from_raw(t)).collect()
    }

    /// Dimensions of each output.
    pub fn output_dims(&self) -> Result<Vec<Vec<i64>>> {
        let mut args = sys::PJRT_Executable_OutputDimensions_Args {
            struct_size: sys::PJRT_Executable_OutputDimensions_Args_STRUCT_SIZE as usize,
            executable: self.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; arrays owned by the executable, copied.
        unsafe {
            pjrt_call!(
                self.client.api(),
                PJRT_Executable_OutputDimensions,
                &mut args
            )?;
            let sizes = slice_from_raw(args.dim_sizes, args.num_outputs);
            let total: usize = sizes.iter().sum();
            let flat = slice_from_raw(args.dims, total);
            let mut out = Vec::with_capacity(sizes.len());
            let mut at = 0;
            for &s in sizes {
                out.push(flat[at..at + s].to_vec());
                at += s;
            }
            Ok(out)
        }
    }

    /// Bytes the program needs beyond its arguments when it runs: outputs
    /// not aliased to donated inputs, plus temporaries; None if the plugin
    /// does not say.
    pub fn run_memory_bytes(&self) -> Option<i64> {
        *self.run_memory.get_or_init(|| self.query_run_memory())
    }

    fn query_run_memory(&self) -> Option<i64> {
        let mut args = sys::PJRT_Executable_GetCompiledMemoryStats_Args {
            struct_size: sys::PJRT_Executable_GetCompiledMemoryStats_Args_STRUCT_SIZE as usize,
            executable: self.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; `exe` live; the call only fills in numbers.
        unsafe {
            pjrt_call!(
                self.client.api(),
                PJRT_Executable_GetCompiledMemoryStats,
                &mut args
            )
            .ok()?;
        }
        Some(args.output_size_in_bytes - args.alias_size_in_bytes + args.temp_size_in_bytes)
    }

    /// Executable fingerprint, if the plugin provides one.
    pub fn fingerprint(&self) -> Option<String> {
        let mut args = sys::PJRT_Executable_Fingerprint_Args {
            struct_size: sys::PJRT_Executable_Fingerprint_Args_STRUCT_SIZE as usize,
            executable: self.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; string owned by the executable, copied.
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Executable_Fingerprint, &mut args).ok()?;
            if args.executable_fingerprint.is_null() {
                return None;
            }
            Some(str_from_raw(
                args.executable_fingerprint,
                args.executable_fingerprint_size,
            ))
        }
    }

    /// Serializes the executable (load it with [`Client::deserialize_and_load`]).
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let mut args = sys::PJRT_Executable_Serialize_Args {
            struct_size: sys::PJRT_Executable_Serialize_Args_STRUCT_SIZE as usize,
            executable: self.exe,
            ..Default::default()
        };
        // SAFETY: args initialised; the bytes are owned by
        // `serialized_executable`, copied, then released with its deleter.
        unsafe {
            pjrt_call!(self.client.api(), PJRT_Executable_Serialize, &mut args)?;
            let bytes = slice_from_raw(
                args.serialized_bytes as *const u8,
                args.serialized_bytes_size,
            )
            .to_vec();
            if let Some(del) = args.serialized_executable_deleter {
                if !args.serialized_executable.is_null() {
                    del(args.serialized_executable);
                }
            }
            Ok(bytes)
        }
    }

    /// Runs on one device and returns the outputs (whose data may still be
    /// being computed; reading them waits). `device: None` uses the assigned
    /// device, or the client's first device for portable executables (the
    /// default of [`Client::compile`]). Arguments must live on that device. `non_donatable` lists argument indices
    /// that must not be donated in this call. A donated argument is deleted.
    pub fn execute(
        &self,
        args: &[&Buffer],
        device: Option<&Device>,
        non_donatable: &[i64],
    ) -> Result<Vec<Buffer>> {
        self.execute_impl(args, device, non_donatable, false)
            .map(|(o, _)| o)
    }

    /// Like [`LoadedExecutable::execute`], also returning the event that is
    /// ready when the computation has finished on the device.
    pub fn execute_with_event(
        &self,
        args: &[&Buffer],
        device: Option<&Device>,
        non_donatable: &[i64],
    ) -> Result<(Vec<Buffer>, Event)> {
        let (out, ev) = self.execute_impl(args, device, non_donatable, true)?;
        let ev = ev.ok_or_else(|| Error::invalid("plugin returned no completion event"))?;
        Ok((out, ev))
    }

    fn execute_impl(
        &self,
        args: &[&Buffer],
        device: Option<&Device>,
        non_donatable: &[i64],
        want_event: bool,
    ) -> Result<(Vec<Buffer>, Option<Event>)> {
        let uid = self.client.inner.uid;
        let nargs = args.len();
        for (i, b) in args.iter().enumerate() {
            if b.client().inner.uid != uid {
                return Err(Error::invalid(format!(
                    "argument {i} belongs to another client"
                )));
            }
            if b.is_deleted() {
                return Err(Error::invalid(format!(
                    "argument {i} was deleted or donated"
                )));
            }
        }
        for &i in non_donatable {
            if i < 0 || i as usize >= nargs {
                return Err(Error::invalid(format!(
                    "non_donatable index {i} out of range for {nargs} arguments"
                )));
            }
        }
        let execute_device = match device {
            Some(d) => {
                self.client.check_device(d)?;
                d.as_raw()
            }
            None => self.default_device,
        };

        let mut arg_stack = [null_mut::<sys::PJRT_Buffer>(); INLINE];
        let mut arg_heap;
        let arg_raw: &mut [*mut sys::PJRT_Buffer] = if nargs <= INLINE {
            &mut arg_stack[..nargs]
        } else {
            arg_heap = vec![null_mut(); nargs];
            &mut arg_heap
        };
        for (slot, b) in arg_raw.iter_mut().zip(args) {
            *slot = b.as_raw();
        }
        let nout = self.num_outputs;
        let mut out_stack = [null_mut::<sys::PJRT_Buffer>(); INLINE];
        let mut out_heap;
        let out_raw: &mut [*mut sys::PJRT_Buffer] = if nout <= INLINE {
            &mut out_stack[..nout]
        } else {
            out_heap = vec![null_mut(); nout];
            &mut out_heap
        };

        let mut options = sys::PJRT_ExecuteOptions {
            struct_size: sys::PJRT_ExecuteOptions_STRUCT_SIZE as usize,
            non_donatable_input_indices: non_donatable.as_ptr(),
            num_non_donatable_input_indices: non_donatable.len(),
            ..Default::default()
        };
        let arg_list: *const *mut sys::PJRT_Buffer = arg_raw.as_ptr();
        let out_list: *mut *mut sys::PJRT_Buffer = out_raw.as_mut_ptr();
        let mut event: *mut sys::PJRT_Event = null_mut();
        let mut eargs = sys::PJRT_LoadedExecutable_Execute_Args {
            struct_size: sys::PJRT_LoadedExecutable_Execute_Args_STRUCT_SIZE as usize,
            executable: self.raw,
            options: &mut options,
            argument_lists: &arg_list,
            num_devices: 1,
            num_args: nargs,
            output_lists: &out_list,
            device_complete_events: if want_event { &mut event } else { null_mut() },
            execute_device,
            ..Default::default()
        };
        // SAFETY: args initialised; argument handles are live (borrowed for
        // the call); the output array has `num_outputs` slots for the single
        // device; the event slot (if any) is a valid out-pointer.
        unsafe { pjrt_call!(self.client.api(), PJRT_LoadedExecutable_Execute, &mut eargs) }?;

        let api = *self.client.api();
        // SAFETY: on success the plugin filled every output slot with a fresh
        // buffer (and the event slot if requested) that we now own. Take
        // ownership of all of them first so none leaks on error.
        let ev = (!event.is_null()).then(|| unsafe { Event::from_raw(api, event) });
        let mut outs = Vec::with_capacity(nout);
        let mut err = None;
        for &r in out_raw.iter() {
            match unsafe { Buffer::from_raw(self.client.clone(), r) } {
                Ok(b) => outs.push(b),
                Err(e) => err = Some(e),
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok((outs, ev)),
        }
    }
}

impl Drop for LoadedExecutable {
    fn drop(&mut self) {
        let api = *self.client.api();
        // SAFETY: we own both handles; each destroyed exactly once, before the
        // client (we hold a `Client` clone).
        unsafe {
            if !self.exe.is_null() {
                let mut a = sys::PJRT_Executable_Destroy_Args {
                    struct_size: sys::PJRT_Executable_Destroy_Args_STRUCT_SIZE as usize,
                    executable: self.exe,
                    ..Default::default()
                };
                let _ = pjrt_call!(&api, PJRT_Executable_Destroy, &mut a);
            }
            let mut a = sys::PJRT_LoadedExecutable_Destroy_Args {
                struct_size: sys::PJRT_LoadedExecutable_Destroy_Args_STRUCT_SIZE as usize,
                executable: self.raw,
                ..Default::default()
            };
            let _ = pjrt_call!(&api, PJRT_LoadedExecutable_Destroy, &mut a);
        }
    }
}
