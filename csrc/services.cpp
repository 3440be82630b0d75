// Registers the shim's services with the runtime when the library loads
// (see TpuShimServices in tpu_abi.h and crates/tpu-runtime/src/services.rs).

#include "shim.h"

namespace {

const bool g_services [[maybe_unused]] = [] {
  static const TpuShimServices services{
      &tpu_shim_manual_seed,  &tpu_shim_initial_seed,  &tpu_shim_get_rng_state, &tpu_shim_set_rng_state,
      &tpu_shim_draw_seed,    &tpu_shim_current_device, &tpu_shim_set_device,   &tpu_shim_register_direct,
  };
  tpu_set_shim_services(&services);
  return true;
}();

}  // namespace
