//! Replicated programs: one executable compiled for `N` replicas with a
//! device assignment, run by one `Execute` over its `N` devices. XLA's
//! collectives (`stablehlo.all_reduce`, `all_gather`, ...) exchange data
//! between the replicas of such a run.

use crate::api::pjrt_call;
use crate::buffer::Buffer;
use crate::client::{Client, Device};
use crate::error::{Error, Result};
use crate::executable::LoadedExecutable;
use pjrt_sys as sys;
use std::ptr::null_mut;

/// Serialized `CompileOptionsProto` for `num_replicas` replicas (one
/// partition each) assigned, in replica order, to the devices with these
/// global ids: `executable_build_options { num_replicas, num_partitions: 1,
/// device_assignment { replica_count, computation_count: 1,
/// computation_devices { replica_device_ids } } }`.
pub fn replicated_compile_options(device_ids: &[i64]) -> Vec<u8> {
    let n = device_ids.len() as u64;
    let mut ids = Vec::new();
    for &id in device_ids {
        // int64 varints: negative ids (never seen) take ten bytes, as protobuf writes them.
        varint(&mut ids, id as u64);
    }
    let mut computation = Vec::new();
    field_bytes(&mut computation, 1, &ids); // replica_device_ids, packed
    let mut assignment = Vec::new();
    field_varint(&mut assignment, 1, n); // replica_count
    field_varint(&mut assignment, 2, 1); // computation_count
    field_bytes(&mut assignment, 3, &computation); // computation_devices
    let mut build = Vec::new();
    field_varint(&mut build, 4, n); // num_replicas
    field_varint(&mut build, 5, 1); // num_partitions
    field_bytes(&mut build, 9, &assignment); // device_assignment
    let mut options = Vec::new();
    field_bytes(&mut options, 3, &build); // executable_build_options
    options
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

impl Client {
    /// Compiles StableHLO text as one replica per device of `devices` (in
    /// replica order: replica `i` runs on `devices[i]`). Run it with
    /// [`LoadedExecutable::execute_replicated`].
    pub fn compile_replicated(
        &self,
        mlir_text: &str,
        devices: &[Device],
    ) -> Result<LoadedExecutable> {
        if devices.is_empty() {
            return Err(Error::invalid(
                "a replicated program needs at least one device",
            ));
        }
        for (i, d) in devices.iter().enumerate() {
            self.check_device(d)?;
            if devices[..i].iter().any(|e| e.id() == d.id()) {
                return Err(Error::invalid(format!(
                    "device {} is given twice: each replica needs its own device",
                    d.id()
                )));
            }
        }
        let ids: Vec<i64> = devices.iter().map(|d| d.id() as i64).collect();
        self.compile_with_options(
            mlir_text.as_bytes(),
            "mlir",
            &replicated_compile_options(&ids),
        )
    }
}

impl LoadedExecutable {
    /// Runs a replicated executable once over its assigned devices:
    /// `args[i]` are replica `i`'s arguments (on its device, the executable's
    /// `i`-th assigned device); returns each replica's outputs in the same
    /// order. Nothing is donated.
    pub fn execute_replicated(&self, args: &[Vec<&Buffer>]) -> Result<Vec<Vec<Buffer>>> {
        let devices = self.assigned_devices();
        let n = devices.len();
        if n == 0 || args.len() != n {
            return Err(Error::invalid(format!(
                "a replicated run needs one argument list per assigned device: {} lists for {n} devices",
                args.len()
            )));
        }
        let nargs = args[0].len();
        let uid = self.client().inner.uid;
        for (r, list) in args.iter().enumerate() {
            if list.len() != nargs {
                return Err(Error::invalid(format!(
                    "replica {r} has {} arguments, replica 0 has {nargs}",
                    list.len()
                )));
            }
            for (i, b) in list.iter().enumerate() {
                if b.client().inner.uid != uid {
                    return Err(Error::invalid(format!(
                        "argument {i} of replica {r} belongs to another client"
                    )));
                }
                if b.is_deleted() {
                    return Err(Error::invalid(format!(
                        "argument {i} of replica {r} was deleted or donated"
                    )));
                }
                if b.device()?.id() != devices[r].id() {
                    return Err(Error::invalid(format!(
                        "argument {i} of replica {r} is on device {}, the replica runs on device {}",
                        b.device()?.id(),
                        devices[r].id()
                    )));
                }
            }
        }
        let arg_raw: Vec<Vec<*mut sys::PJRT_Buffer>> = args
            .iter()
            .map(|l| l.iter().map(|b| b.as_raw()).collect())
            .collect();
        let arg_lists: Vec<*const *mut sys::PJRT_Buffer> =
            arg_raw.iter().map(|l| l.as_ptr()).collect();
        let nout = self.num_outputs();
        let mut out_raw: Vec<Vec<*mut sys::PJRT_Buffer>> = vec![vec![null_mut(); nout]; n];
        let out_lists: Vec<*mut *mut sys::PJRT_Buffer> =
            out_raw.iter_mut().map(|l| l.as_mut_ptr()).collect();
        // Every argument may be read by later work: none is donated.
        let keep: Vec<i64> = (0..nargs as i64).collect();
        let mut options = sys::PJRT_ExecuteOptions {
            struct_size: sys::PJRT_ExecuteOptions_STRUCT_SIZE as usize,
            non_donatable_input_indices: keep.as_ptr(),
            num_non_donatable_input_indices: keep.len(),
            ..Default::default()
        };
        let mut eargs = sys::PJRT_LoadedExecutable_Execute_Args {
            struct_size: sys::PJRT_LoadedExecutable_Execute_Args_STRUCT_SIZE as usize,
            executable: self.as_raw(),
            options: &mut options,
            argument_lists: arg_lists.as_ptr(),
            num_devices: n,
            num_args: nargs,
            output_lists: out_lists.as_ptr(),
            device_complete_events: null_mut(),
            // Null: the executable's device assignment says where each replica runs.
            execute_device: null_mut(),
            ..Default::default()
        };
        // SAFETY: args initialised; `arg_lists` holds `n` pointers to arrays
        // of `nargs` live buffers (borrowed for the call); `out_lists` holds
        // `n` pointers to arrays of `num_outputs` writable slots; all the
        // vectors outlive the call.
        unsafe {
            pjrt_call!(
                self.client().api(),
                PJRT_LoadedExecutable_Execute,
                &mut eargs
            )
        }?;
        let mut outs = Vec::with_capacity(n);
        let mut err = None;
        for list in &out_raw {
            let mut replica = Vec::with_capacity(nout);
            for &r in list {
                // SAFETY: on success every output slot holds a fresh buffer we
                // now own; all are taken so none leaks on error.
                match unsafe { Buffer::from_raw(self.client().clone(), r) } {
                    Ok(b) => replica.push(b),
                    Err(e) => err = Some(e),
                }
            }
            outs.push(replica);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(outs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replicated_compile_options;

    #[test]
    fn options_encode_replicas_and_assignment() {
        // executable_build_options { num_replicas: 2, num_partitions: 1,
        //   device_assignment { replica_count: 2, computation_count: 1,
        //     computation_devices { replica_device_ids: [0, 1] } } }
        let want = [
            0x1a, 0x10, 0x20, 0x02, 0x28, 0x01, 0x4a, 0x0a, 0x08, 0x02, 0x10, 0x01, 0x1a, 0x04,
            0x0a, 0x02, 0x00, 0x01,
        ];
        assert_eq!(replicated_compile_options(&[0, 1]), want);
        // A device id of 300 takes a two-byte varint.
        let o = replicated_compile_options(&[300]);
        assert_eq!(&o[o.len() - 3..], &[0x02, 0xac, 0x02]);
    }
}
