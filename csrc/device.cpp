// Device state, device guard, allocator and PrivateUse1 hooks of the tpu backend.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/DeviceCapability.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>

#include "shim.h"

namespace torch_tpu {

// ---------------------------------------------------------------- device state

namespace {
thread_local c10::DeviceIndex tl_device = 0;
}

c10::DeviceIndex current_device() { return tl_device; }

void set_device_unchecked(c10::DeviceIndex idx) noexcept {
  if (idx >= 0) tl_device = idx;
}

c10::DeviceIndex device_count() noexcept {
  int32_t n = tpu_device_count();
  if (n < 0) return 0;
  return static_cast<c10::DeviceIndex>(std::min<int32_t>(n, INT8_MAX));
}

void set_device(c10::DeviceIndex idx) {
  auto n = device_count();
  TORCH_CHECK_INDEX(idx >= 0 && idx < n, "tpu: invalid device index ", static_cast<int>(idx),
                    " (there are ", static_cast<int>(n), " tpu devices)");
  tl_device = idx;
}

void check_abi() {
  static const int32_t runtime_version = tpu_abi_version();
  TORCH_CHECK(runtime_version == TPU_ABI_VERSION, "torch_tpu: the C++ shim speaks ABI version ",
              TPU_ABI_VERSION, " but the runtime speaks ", runtime_version,
              "; rebuild the package (pip install --no-build-isolation .)");
}

// ---------------------------------------------------------------- errors

namespace {
bool mentions_oom(const char* msg) {
  // A runtime storage allocation that fails for lack of memory says so.
  std::string s(msg ? msg : "");
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s.find("out of memory") != std::string::npos ||
         s.find("resource_exhausted") != std::string::npos;
}
}  // namespace

void throw_status(int32_t status, const char* what) {
  const char* msg = tpu_last_error();
  if (msg == nullptr || *msg == '\0') msg = what;
  switch (status) {
    case TPU_ERR_NOT_IMPLEMENTED:
      TORCH_CHECK_NOT_IMPLEMENTED(false, msg);
    case TPU_ERR_OOM:
      TORCH_CHECK_WITH(OutOfMemoryError, false, msg);
    case TPU_ERR_INDEX:
      TORCH_CHECK_INDEX(false, msg);
    case TPU_ERR_VALUE:
      TORCH_CHECK_VALUE(false, msg);
    case TPU_ERR_TYPE:
      TORCH_CHECK_TYPE(false, msg);
    default:
      TORCH_CHECK(false, msg);
  }
}

// ---------------------------------------------------------------- allocator

namespace {
// Memory events for torch.profiler(profile_memory=True); the storage handle
// identifies the block in both events.
void report_memory(void* storage, int64_t delta, c10::DeviceIndex idx) {
  if (!c10::memoryProfilingEnabled()) return;
  auto total = static_cast<size_t>(std::max<int64_t>(tpu_memory_allocated(idx), 0));
  c10::reportMemoryUsageToProfiler(storage, delta, total, total, c10::Device(kTpu, idx));
}
}  // namespace

void delete_storage(void* storage) {
  if (storage == nullptr) return;
  const int64_t nbytes = c10::memoryProfilingEnabled() ? tpu_storage_nbytes(storage) : 0;
  tpu_storage_free(storage);
  if (nbytes > 0) report_memory(storage, -nbytes, current_device());
}

c10::DataPtr allocate_on(size_t nbytes, c10::DeviceIndex idx) {
  check_abi();
  void* addr = nullptr;
  void* storage = tpu_storage_new(static_cast<int64_t>(nbytes), idx, &addr);
  if (storage == nullptr) {
    const char* msg = tpu_last_error();
    if (msg == nullptr || *msg == '\0') msg = "tpu: storage allocation failed";
    TORCH_CHECK_WITH(OutOfMemoryError, !mentions_oom(msg), msg);
    TORCH_CHECK(false, "tpu: cannot allocate ", nbytes, " bytes on tpu:", static_cast<int>(idx),
                ": ", msg);
  }
  report_memory(storage, static_cast<int64_t>(nbytes), idx);
  return c10::DataPtr(addr, storage, &delete_storage, c10::Device(kTpu, idx));
}

namespace {

// A c10::DeviceAllocator, so torch.accelerator's memory calls (empty_cache,
// memory_stats, used by accelerate and the HF Trainer) reach the runtime.
struct TpuAllocator final : c10::DeviceAllocator {
  c10::DataPtr allocate(size_t nbytes) override { return allocate_on(nbytes, current_device()); }

  // The data pointer is an opaque handle: copies go through the runtime.
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    if (count == 0) return;
    void* d = tpu_storage_from_addr(dest);
    void* s = tpu_storage_from_addr(src);
    TORCH_CHECK(d != nullptr && s != nullptr, "tpu: copy_data on an address that is no tpu storage");
    int32_t st = tpu_storage_copy(d, s, static_cast<int64_t>(count));
    if (st != TPU_OK) throw_status(st, "tpu: storage copy failed");
  }

  bool initialized() override { return true; }

  // Nothing to release: a freed storage's buffer goes back to the plugin at
  // once, and compiled programs are not memory a user means to free (the HF
  // Trainer empties the cache every few steps when asked to).
  void emptyCache(c10::MempoolId_t /*mempool_id*/) override {}

  // Each device has one in-order queue (see device.py's streams), so a
  // buffer used on any stream is safe to reuse once the queue passes it.
  void recordStream(const c10::DataPtr& /*ptr*/, c10::Stream /*stream*/) override {}

  c10::CachingDeviceAllocator::DeviceStats getDeviceStats(c10::DeviceIndex device) override {
    TpuMemoryStats m{};
    tpu_memory_stats(device, &m);
    auto to_stat = [](const TpuCounter& c) {
      c10::CachingDeviceAllocator::Stat s;
      s.current = c.current;
      s.peak = c.peak;
      s.allocated = c.allocated;
      s.freed = c.freed;
      return s;
    };
    const auto agg = static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE);
    c10::CachingDeviceAllocator::DeviceStats stats;
    // No caching: every storage is its own segment, active and reserved.
    for (auto* counts : {&stats.allocation, &stats.segment, &stats.active}) (*counts)[agg] = to_stat(m.blocks);
    for (auto* bytes : {&stats.allocated_bytes, &stats.reserved_bytes, &stats.active_bytes, &stats.requested_bytes})
      (*bytes)[agg] = to_stat(m.bytes);
    return stats;
  }

  void resetAccumulatedStats(c10::DeviceIndex device) override { tpu_memory_reset(device, true); }
  void resetPeakStats(c10::DeviceIndex device) override { tpu_memory_reset(device, false); }

  // accelerate's device_map="auto" sizes each device by its free memory.
  std::pair<size_t, size_t> getMemoryInfo(c10::DeviceIndex device) override {
    int64_t free = 0, total = 0;
    int32_t st = tpu_memory_info(device, &free, &total);
    if (st != TPU_OK) throw_status(st, "tpu: cannot read the device's memory");
    return {static_cast<size_t>(free), static_cast<size_t>(total)};
  }
};

TpuAllocator g_allocator;

}  // namespace

c10::Allocator* allocator() { return &g_allocator; }

REGISTER_ALLOCATOR(c10::DeviceType::PrivateUse1, &g_allocator)

void resize_storage_bytes(c10::StorageImpl* storage, size_t nbytes) {
  TORCH_CHECK(storage->resizable(), "Trying to resize storage that is not resizable");
  const size_t old_nbytes = storage->nbytes();
  c10::DeviceIndex idx = storage->device().index();
  if (idx < 0) idx = current_device();
  c10::DataPtr fresh = allocate_on(nbytes, idx);
  const size_t keep = std::min(old_nbytes, nbytes);
  void* old_ctx = storage->data_ptr().get_context();
  if (keep > 0 && old_ctx != nullptr) {
    int32_t st = tpu_storage_copy(fresh.get_context(), old_ctx, static_cast<int64_t>(keep));
    if (st != TPU_OK) throw_status(st, "tpu: storage copy failed while resizing");
  }
  storage->set_data_ptr_noswap(std::move(fresh));
  storage->set_nbytes(nbytes);
}

// ---------------------------------------------------------------- device guard

namespace {

struct TpuGuardImpl final : c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return kTpu; }

  c10::Device exchangeDevice(c10::Device d) const override {
    TORCH_CHECK(d.type() == kTpu, "tpu device guard got a ", d.type(), " device");
    c10::Device old(kTpu, tl_device);
    if (d.has_index() && d.index() != tl_device) set_device(d.index());
    return old;
  }
  c10::Device getDevice() const override { return c10::Device(kTpu, tl_device); }
  void setDevice(c10::Device d) const override {
    TORCH_CHECK(d.type() == kTpu, "tpu device guard got a ", d.type(), " device");
    if (d.has_index() && d.index() != tl_device) set_device(d.index());
  }
  void uncheckedSetDevice(c10::Device d) const noexcept override { set_device_unchecked(d.index()); }
  c10::DeviceIndex deviceCount() const noexcept override { return device_count(); }

  // One dummy default stream per device: the runtime orders work itself and
  // synchronizes where a value is read, so every stream/event call succeeds.
  c10::Stream getStream(c10::Device d) const override { return default_stream(d); }
  c10::Stream getDefaultStream(c10::Device d) const override { return default_stream(d); }
  c10::Stream getStreamFromGlobalPool(c10::Device d, bool) const override { return default_stream(d); }
  c10::Stream getNewStream(c10::Device d, int) const override { return default_stream(d); }
  c10::Stream exchangeStream(c10::Stream s) const override { return default_stream(s.device()); }
  // torch.Event / torch.accelerator on one in-order queue per device: waiting
  // means running the pending work and waiting for all of it (as
  // torch.tpu.synchronize() does); a timing event takes its time stamp then.
  void destroyEvent(void* event, const c10::DeviceIndex) const noexcept override {
    delete static_cast<TpuEvent*>(event);
  }
  void record(void** event, const c10::Stream&, const c10::DeviceIndex, const c10::EventFlag flag) const override {
    auto* e = static_cast<TpuEvent*>(*event);
    if (e == nullptr) *event = e = new TpuEvent();
    e->timed = flag == c10::EventFlag::BACKEND_DEFAULT;  // enable_timing=True
    if (e->timed) {
      synchronize();
      e->when = std::chrono::steady_clock::now();
    }
  }
  void block(void*, const c10::Stream&) const override {}
  bool queryEvent(void*) const override { return true; }
  bool queryStream(const c10::Stream&) const override { return true; }
  void synchronizeStream(const c10::Stream&) const override { synchronize(); }
  void synchronizeEvent(void*) const override { synchronize(); }
  void synchronizeDevice(const c10::DeviceIndex) const override { synchronize(); }
  void recordDataPtrOnStream(const c10::DataPtr&, const c10::Stream&) const override {}
  c10::DeviceCapability getDeviceCapability(c10::Device) const override { return {}; }
  double elapsedTime(void* start, void* end, const c10::DeviceIndex) const override {
    const auto* a = static_cast<const TpuEvent*>(start);
    const auto* b = static_cast<const TpuEvent*>(end);
    TORCH_CHECK(a != nullptr && b != nullptr && a->timed && b->timed,
                "tpu: elapsed_time needs two events recorded with enable_timing=True");
    return std::chrono::duration<double, std::milli>(b->when - a->when).count();
  }

 private:
  struct TpuEvent {
    bool timed = false;
    std::chrono::steady_clock::time_point when;
  };

  static void synchronize() {
    int32_t st = tpu_synchronize();
    if (st != TPU_OK) throw_status(st, "tpu: synchronize");
  }

  static c10::Stream default_stream(c10::Device d) {
    if (!d.has_index()) d = c10::Device(kTpu, tl_device);
    return c10::Stream(c10::Stream::DEFAULT, d);
  }
};

C10_REGISTER_GUARD_IMPL(PrivateUse1, TpuGuardImpl)

// ---------------------------------------------------------------- pinned host memory

namespace {
// The runtime copies from any host memory, so pinned buffers are ordinary CPU
// allocations. They are remembered so that is_pinned() is true after
// pin_memory() (DataLoader(pin_memory=True), code that checks before a
// non_blocking copy), as on CUDA.
// Never destroyed: a pinned tensor freed during exit must not find them gone.
struct PinnedRanges {
  std::mutex mutex;
  std::map<const char*, size_t> by_start;  // start -> size
};
PinnedRanges& pinned_ranges() {
  static auto* ranges = new PinnedRanges();
  return *ranges;
}

void free_pinned(void* ptr) {
  {
    auto& r = pinned_ranges();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.by_start.erase(static_cast<const char*>(ptr));
  }
  c10::free_cpu(ptr);
}

bool is_pinned(const void* ptr) {
  const auto* p = static_cast<const char*>(ptr);
  auto& r = pinned_ranges();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.by_start.upper_bound(p);
  if (it == r.by_start.begin()) return false;
  --it;
  return p < it->first + it->second;
}

struct PinnedAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t nbytes) override {
    void* ptr = nbytes == 0 ? nullptr : c10::alloc_cpu(nbytes);
    if (ptr != nullptr) {
      auto& r = pinned_ranges();
      std::lock_guard<std::mutex> lock(r.mutex);
      r.by_start[static_cast<const char*>(ptr)] = nbytes;
    }
    return c10::DataPtr(ptr, ptr, &free_pinned, c10::Device(c10::kCPU));
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

PinnedAllocator g_pinned_allocator;
}  // namespace

// ---------------------------------------------------------------- hooks

struct TpuHooks final : at::PrivateUse1HooksInterface {
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return device_count() > 0; }
  bool hasPrimaryContext(c10::DeviceIndex) const override { return true; }
  void init() const override {}
  c10::DeviceIndex deviceCount() const override { return device_count(); }
  void setCurrentDevice(c10::DeviceIndex d) const override { set_device(d); }
  c10::DeviceIndex getCurrentDevice() const override { return current_device(); }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex d) const override {
    auto old = current_device();
    if (d >= 0 && d != old) set_device(d);
    return old;
  }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex d) const override { return exchangeDevice(d); }
  const at::Generator& getDefaultGenerator(c10::DeviceIndex idx) const override {
    return default_generator(idx);
  }
  at::Generator getNewGenerator(c10::DeviceIndex idx) const override { return new_generator(idx); }
  at::Device getDeviceFromPtr(void*) const override { return c10::Device(kTpu, current_device()); }
  bool isPinnedPtr(const void* ptr) const override { return is_pinned(ptr); }
  c10::Allocator* getPinnedMemoryAllocator() const override { return &g_pinned_allocator; }
  void resizePrivateUse1Bytes(const c10::Storage& storage, size_t nbytes) const override {
    resize_storage_bytes(storage.unsafeGetStorageImpl(), nbytes);
  }
};

const bool g_hooks_registered [[maybe_unused]] = [] {
  at::RegisterPrivateUse1HooksInterface(new TpuHooks());
  return true;
}();

}  // namespace
}  // namespace torch_tpu

extern "C" int32_t tpu_shim_current_device(void) { return torch_tpu::current_device(); }

extern "C" int32_t tpu_shim_set_device(int32_t device_index) {
  if (device_index < 0 || device_index >= torch_tpu::device_count()) return TPU_ERR_INDEX;
  torch_tpu::set_device_unchecked(static_cast<c10::DeviceIndex>(device_index));
  return TPU_OK;
}
