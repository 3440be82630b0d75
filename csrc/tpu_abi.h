// The C ABI between the C++ shim (csrc/) and the Rust runtime (crates/tpu-runtime).
//
// The shim turns every op that reaches the PrivateUse1 boxed fallback into one
// tpu_dispatch() call; the runtime implements everything else. No C++ type and
// no exception crosses this boundary. Bump TPU_ABI_VERSION on any change.
#pragma once
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define TPU_ABI_VERSION 2

#ifdef __cplusplus
extern "C" {
#endif

enum TpuDeviceKind { TPU_DEVICE_TPU = 0, TPU_DEVICE_CPU = 1 };

// One tensor. For a tpu tensor `storage` is the runtime storage (the
// DataPtr's context); for a CPU tensor `host_data` points at its first element.
typedef struct {
  void* storage;
  void* host_data;
  const int64_t* sizes;
  const int64_t* strides;
  int64_t storage_offset;  // in elements
  int64_t storage_nbytes;
  int32_t ndim;            // -1: an absent entry of a Tensor?[] list
  int32_t dtype;           // c10::ScalarType
  uint8_t device;          // TpuDeviceKind
  uint8_t wrapped_number;  // a Python number wrapped into a 0-dim CPU tensor
  int16_t device_index;
  uint8_t math_bits;       // tpu tensors: 1 a conjugate view, 2 a negative view (lazy math bits)
} TpuTensor;

enum TpuArgKind {
  TPU_ARG_NONE = 0,
  TPU_ARG_TENSOR = 1,
  TPU_ARG_TENSOR_LIST = 2,  // Tensor[] and Tensor?[]: `list` is TpuTensor*, `i` the length
  TPU_ARG_INT = 3,
  TPU_ARG_DOUBLE = 4,
  TPU_ARG_BOOL = 5,
  TPU_ARG_INT_LIST = 6,     // `list` is int64_t*
  TPU_ARG_DOUBLE_LIST = 7,  // `list` is double*
  TPU_ARG_BOOL_LIST = 8,    // `list` is uint8_t*
  TPU_ARG_SCALAR_INT = 9,   // a Scalar argument holding an integer, in `i`
  TPU_ARG_SCALAR_DOUBLE = 10,
  TPU_ARG_SCALAR_BOOL = 11,
  TPU_ARG_STRING = 12,      // `list` is a NUL-terminated char*
  TPU_ARG_DTYPE = 13,       // c10::ScalarType in `i`
  TPU_ARG_SEED = 14,        // a Generator: the seed drawn from it for this call, in `i`
  TPU_ARG_OTHER = 15,       // layout, device, memory format: ignored by lowerings
  TPU_ARG_SCALAR_COMPLEX = 16,  // a complex Scalar: real part in `d`, the imaginary part's f64 bits in `i`
};

typedef struct {
  int32_t kind;     // TpuArgKind
  uint8_t is_write; // the schema marks the argument as written (Tensor(a!))
  uint8_t is_out;   // a keyword-only written argument: an out= tensor
  uint16_t reserved;
  int64_t i;
  double d;
  const void* list;
  TpuTensor tensor;
} TpuArg;

enum TpuRetKind {
  TPU_RET_NONE = 0,
  TPU_RET_ARG = 1,     // return argument number `index` itself (out= or in-place self)
  TPU_RET_NEW = 2,     // a new contiguous tpu tensor on a new storage
  TPU_RET_INT = 3,     // `i`
  TPU_RET_DOUBLE = 4,  // `d`
  TPU_RET_BOOL = 5,    // `i`
  TPU_RET_COMPLEX = 6, // real part in `d`, the imaginary part's f64 bits in `i`
};

typedef struct {
  int32_t kind;  // TpuRetKind
  int32_t index;
  int32_t dtype;
  int32_t ndim;
  const int64_t* sizes;  // owned by the runtime, valid until the next call on this thread
  void* storage;         // new storage: becomes the DataPtr's context
  void* addr;            // new storage: its opaque data address
  int64_t nbytes;
  int64_t i;
  double d;
} TpuRet;

enum TpuStatus {
  TPU_OK = 0,
  TPU_ERR_RUNTIME = 1,          // c10::Error (RuntimeError)
  TPU_ERR_NOT_IMPLEMENTED = 2,  // c10::NotImplementedError
  TPU_ERR_OOM = 3,              // c10::OutOfMemoryError
  TPU_ERR_INDEX = 4,            // c10::IndexError
  TPU_ERR_VALUE = 5,            // c10::ValueError
  TPU_ERR_TYPE = 6,             // c10::TypeError
  TPU_RUN_ON_CPU = 10,          // not lowered, and CPU fallback is allowed for it: run at::native::cpu_fallback
  TPU_RESIZE_OUTPUTS = 11,      // `*rets` lists TPU_RET_ARG entries: resize argument `index` to `sizes`
                                // (contiguous), then call tpu_dispatch again with the same arguments
};

// The runtime's ABI version; the shim refuses to register on a mismatch.
int32_t tpu_abi_version(void);

// Runs one op. `name` is "aten::add" and `overload` "out" (empty for none).
// On TPU_OK, `*rets` points at `*nrets` results owned by the runtime and valid
// until the next tpu_dispatch on this thread. On an error, tpu_last_error()
// holds the message (already naming the op and its argument shapes).
int32_t tpu_dispatch(const char* name, const char* overload, const TpuArg* args, int32_t nargs,
                     const TpuRet** rets, int32_t* nrets);

// The message of the last failed call on this thread.
const char* tpu_last_error(void);

// A new storage of `nbytes` on `device_index`; writes its opaque address to `*addr`.
// Returns NULL on failure (tpu_last_error() says why).
void* tpu_storage_new(int64_t nbytes, int32_t device_index, void** addr);
// Frees a storage (the DataPtr deleter).
void tpu_storage_free(void* storage);
// Copies the first `nbytes` of `src`'s contents into `dst` (resize_, Allocator::copy_data).
int32_t tpu_storage_copy(void* dst, void* src, int64_t nbytes);
// The storage whose address range holds `addr`, or NULL.
void* tpu_storage_from_addr(const void* addr);

int32_t tpu_device_count(void);
/* Bytes held by live storages on a device (reported with memory events to the profiler). */
int64_t tpu_memory_allocated(int32_t device_index);
/* One allocator statistic, as c10::Stat: now, peak, total grown, total shrunk. */
typedef struct TpuCounter {
  int64_t current;
  int64_t peak;
  int64_t allocated;
  int64_t freed;
} TpuCounter;
/* A device's storages (Rust's storage::MemoryStats): their bytes and their number. */
typedef struct TpuMemoryStats {
  TpuCounter bytes;
  TpuCounter blocks;
} TpuMemoryStats;
void tpu_memory_stats(int32_t device_index, TpuMemoryStats* out);
/* A device's free and total memory in bytes (torch.tpu.mem_get_info); a status. */
int32_t tpu_memory_info(int32_t device_index, int64_t* free, int64_t* total);
/* Runs all pending work and waits for it (torch.accelerator.synchronize); a status. */
int32_t tpu_synchronize(void);
/* Restarts the peaks from the current values, or (accumulated) the totals from zero. */
void tpu_memory_reset(int32_t device_index, bool accumulated);
/* The size in bytes of a storage made by tpu_storage_new. */
int64_t tpu_storage_nbytes(void* storage);
/* The address data_ptr() gives for a storage's first byte. */
int64_t tpu_storage_addr(void* storage);
/* The shim's torch.profiler callbacks: is a profiler collecting; open a named range; close it. */
void tpu_set_profiler_hooks(bool (*enabled)(void), void* (*begin)(const char* name), void (*end)(void* range));
// Runs `op` as a CPU fallback: counts it (metrics) for the report.
void tpu_count_cpu_fallback(const char* name, const char* overload);

// The shim's services the runtime calls back into (generators, devices,
// dispatcher registration), registered once at load with
// tpu_set_shim_services, so the runtime never links against the shim.
// Every callback catches its own exceptions and reports failure by value.
typedef struct TpuShimServices {
  int32_t (*manual_seed)(int32_t device_index, uint64_t seed);
  uint64_t (*initial_seed)(int32_t device_index);
  // Copies the generator state into `out` (if `cap` is large enough); returns its length.
  int64_t (*get_rng_state)(int32_t device_index, uint8_t* out, int64_t cap);
  int32_t (*set_rng_state)(int32_t device_index, const uint8_t* state, int64_t len);
  // Draws a seed from the default generator of a device (for ops with no Generator argument).
  uint64_t (*draw_seed)(int32_t device_index);
  int32_t (*current_device)(void);
  int32_t (*set_device)(int32_t device_index);
  // Registers the lowered ops (overload names such as "add.Tensor") that a
  // composite kernel would otherwise keep from the fallback; returns the count.
  int32_t (*register_direct)(const char* const* names, int32_t n);
} TpuShimServices;
void tpu_set_shim_services(const TpuShimServices* services);

#ifdef __cplusplus
}
#endif
