// The tpu generator: a CPU (mt19937) generator keyed to PrivateUse1, one
// default per device. Random ops get a seed drawn from it per call (TPU_ARG_SEED).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/GeneratorForPrivateuseone.h>
#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "shim.h"

namespace torch_tpu {
namespace {

class TpuGenerator final : public at::CPUGeneratorImpl {
 public:
  explicit TpuGenerator(c10::DeviceIndex idx, uint64_t seed = c10::default_rng_seed_val)
      : at::CPUGeneratorImpl(seed) {
    device_ = c10::Device(kTpu, idx);
    key_set_ = c10::DispatchKeySet(c10::DispatchKey::PrivateUse1);
  }

 private:
  // Clones stay tpu generators (CPUGeneratorImpl's would be CPU ones).
  TpuGenerator* clone_impl() const override {
    auto* g = new TpuGenerator(device_.index());
    g->set_engine(const_cast<TpuGenerator*>(this)->engine());
    g->set_next_float_normal_sample(const_cast<TpuGenerator*>(this)->next_float_normal_sample());
    g->set_next_double_normal_sample(const_cast<TpuGenerator*>(this)->next_double_normal_sample());
    return g;
  }
};

std::once_flag g_defaults_once;
std::vector<at::Generator>* g_defaults = nullptr;  // leaked on purpose: outlives static teardown

c10::DeviceIndex resolve(c10::DeviceIndex idx) {
  if (idx < 0) idx = current_device();
  auto n = device_count();
  TORCH_CHECK_INDEX(idx < n, "tpu: invalid device index ", static_cast<int>(idx), " (there are ",
                    static_cast<int>(n), " tpu devices)");
  return idx;
}

}  // namespace

const at::Generator& default_generator(c10::DeviceIndex idx) {
  std::call_once(g_defaults_once, [] {
    auto n = device_count();
    auto* v = new std::vector<at::Generator>();
    v->reserve(n);
    for (c10::DeviceIndex i = 0; i < n; ++i) {
      v->push_back(at::make_generator<TpuGenerator>(i));
      v->back().seed();  // nondeterministic until manual_seed, as on CUDA
    }
    g_defaults = v;
  });
  idx = resolve(idx);
  TORCH_CHECK_INDEX(idx < static_cast<c10::DeviceIndex>(g_defaults->size()),
                    "tpu: no default generator for device ", static_cast<int>(idx));
  return (*g_defaults)[idx];
}

at::Generator new_generator(c10::DeviceIndex idx) {
  return at::make_generator<TpuGenerator>(resolve(idx));
}

uint64_t draw_seed(const std::optional<at::Generator>& gen) {
  at::Generator g =
      (gen.has_value() && gen->defined()) ? *gen : default_generator(current_device());
  auto type = g.device().type();
  TORCH_CHECK(type == kTpu || type == c10::DeviceType::CPU,
              "tpu: expected a tpu or cpu generator, got a ", type, " generator");
  // Both are CPUGeneratorImpl (TpuGenerator derives from it).
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get<at::CPUGeneratorImpl>()->random64();
}

}  // namespace torch_tpu

// ---------------------------------------------------------------- tpu_shim_* (called by the runtime)
// No exception may escape into Rust: every entry point catches and returns a code.

namespace {
int32_t status_of(const c10::Error& e) {
  if (dynamic_cast<const c10::IndexError*>(&e)) return TPU_ERR_INDEX;
  return TPU_ERR_RUNTIME;
}
}  // namespace

extern "C" int32_t tpu_shim_manual_seed(int32_t device_index, uint64_t seed) {
  try {
    at::Generator g = torch_tpu::default_generator(static_cast<c10::DeviceIndex>(device_index));
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
    return TPU_OK;
  } catch (const c10::Error& e) {
    return status_of(e);
  } catch (...) {
    return TPU_ERR_RUNTIME;
  }
}

extern "C" uint64_t tpu_shim_initial_seed(int32_t device_index) {
  try {
    at::Generator g = torch_tpu::default_generator(static_cast<c10::DeviceIndex>(device_index));
    return g.current_seed();
  } catch (...) {
    return 0;
  }
}

extern "C" int64_t tpu_shim_get_rng_state(int32_t device_index, uint8_t* out, int64_t cap) {
  try {
    at::Generator g = torch_tpu::default_generator(static_cast<c10::DeviceIndex>(device_index));
    c10::intrusive_ptr<c10::TensorImpl> state;
    {
      std::lock_guard<std::mutex> lock(g.mutex());
      state = g.get_state().getIntrusivePtr();
    }
    const int64_t len = static_cast<int64_t>(state->storage().nbytes());
    if (out != nullptr && cap >= len) std::memcpy(out, state->storage().data(), len);
    return len;
  } catch (...) {
    return -1;
  }
}

extern "C" int32_t tpu_shim_set_rng_state(int32_t device_index, const uint8_t* state, int64_t len) {
  try {
    if (state == nullptr || len < 0) return TPU_ERR_VALUE;
    at::Generator g = torch_tpu::default_generator(static_cast<c10::DeviceIndex>(device_index));
    at::TensorBase t = at::detail::empty_cpu({len}, c10::kByte, std::nullopt, std::nullopt,
                                             std::nullopt, std::nullopt);
    std::memcpy(t.mutable_data_ptr(), state, static_cast<size_t>(len));
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(at::Tensor(t));
    return TPU_OK;
  } catch (const c10::Error& e) {
    return status_of(e) == TPU_ERR_INDEX ? TPU_ERR_INDEX : TPU_ERR_VALUE;
  } catch (...) {
    return TPU_ERR_RUNTIME;
  }
}

// A service of the runtime (TpuShimServices), for random ops it seeds
// itself. Draws one 64-bit seed from the default generator of
// `device_index` (-1: the current device); 0 if there is none.
extern "C" uint64_t tpu_shim_draw_seed(int32_t device_index) {
  try {
    at::Generator g = torch_tpu::default_generator(static_cast<c10::DeviceIndex>(device_index));
    return torch_tpu::draw_seed(g);
  } catch (...) {
    return 0;
  }
}
