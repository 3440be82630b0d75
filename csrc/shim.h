// Internal declarations shared by the shim's translation units.
//
// The shim is the C++ face of the "tpu" (PrivateUse1) backend: allocator,
// device guard, hooks, generator, metadata-only kernels and one boxed fallback
// into the Rust runtime (tpu_abi.h). It holds no op semantics.
#pragma once

#include <ATen/core/Generator.h>
#include <c10/core/Allocator.h>
#include <c10/core/Device.h>
#include <c10/core/StorageImpl.h>

#include "tpu_abi.h"

namespace torch_tpu {

constexpr c10::DeviceType kTpu = c10::DeviceType::PrivateUse1;

// The calling thread's current tpu device (0 until set).
c10::DeviceIndex current_device();
// Sets it; `idx` must be in [0, device_count()).
void set_device(c10::DeviceIndex idx);
// Sets it without checks (device guards).
void set_device_unchecked(c10::DeviceIndex idx) noexcept;
// The runtime's device count; 0 if it cannot say. Never throws.
c10::DeviceIndex device_count() noexcept;

// Throws c10::Error unless the runtime speaks TPU_ABI_VERSION. Cheap after the first call.
void check_abi();

// The PrivateUse1 allocator.
c10::Allocator* allocator();
// Allocates `nbytes` on device `idx` (DataPtr: opaque address, ctx = runtime storage).
c10::DataPtr allocate_on(size_t nbytes, c10::DeviceIndex idx);
// The DataPtr deleter: frees the runtime storage.
void delete_storage(void* storage);
// Makes `storage` hold `nbytes` (grows or shrinks), keeping the first
// min(old, new) bytes of its value. Copies through the runtime, never memcpy.
void resize_storage_bytes(c10::StorageImpl* storage, size_t nbytes);

// The default generator of tpu device `idx` (-1: the current device).
const at::Generator& default_generator(c10::DeviceIndex idx);
// A new generator for tpu device `idx` (-1: the current device).
at::Generator new_generator(c10::DeviceIndex idx);
// Draws a per-op seed from `gen` (or the current device's default) under its mutex.
uint64_t draw_seed(const std::optional<at::Generator>& gen);

// Throws the c10 error class that matches a TpuStatus, with tpu_last_error().
[[noreturn]] void throw_status(int32_t status, const char* what);

}  // namespace torch_tpu

// The services registered with the runtime (services.cpp); defined beside
// what they serve: generator.cpp, device.cpp, fallback.cpp.
extern "C" {
int32_t tpu_shim_manual_seed(int32_t device_index, uint64_t seed);
uint64_t tpu_shim_initial_seed(int32_t device_index);
int64_t tpu_shim_get_rng_state(int32_t device_index, uint8_t* out, int64_t cap);
int32_t tpu_shim_set_rng_state(int32_t device_index, const uint8_t* state, int64_t len);
uint64_t tpu_shim_draw_seed(int32_t device_index);
int32_t tpu_shim_current_device(void);
int32_t tpu_shim_set_device(int32_t device_index);
int32_t tpu_shim_register_direct(const char* const* names, int32_t n);
}
