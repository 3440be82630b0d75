// torch.profiler ranges for the runtime's compiles, executions and transfers,
// opened through callbacks the Rust runtime calls (tpu_set_profiler_hooks), so
// the runtime itself does not link against PyTorch.
#include <ATen/record_function.h>

#include <string>

#include "shim.h"

namespace {

// The name lives as long as the range: RecordFunction keeps a view of it.
struct Range {
  std::string name;
  at::RecordFunction rf{at::RecordScope::USER_SCOPE};
};

extern "C" bool tpu_shim_profiling() { return at::hasCallbacks(); }

extern "C" void* tpu_shim_range_begin(const char* name) {
  try {
    auto* range = new Range{name ? name : "tpu"};
    if (!range->rf.isActive()) {
      delete range;
      return nullptr;
    }
    range->rf.before(range->name.c_str());
    return range;
  } catch (...) {  // never let a C++ exception cross into Rust
    return nullptr;
  }
}

extern "C" void tpu_shim_range_end(void* handle) {
  try {
    delete static_cast<Range*>(handle);  // ~RecordFunction ends the range
  } catch (...) {
  }
}

const bool g_hooks [[maybe_unused]] = [] {
  tpu_set_profiler_hooks(&tpu_shim_profiling, &tpu_shim_range_begin, &tpu_shim_range_end);
  return true;
}();

}  // namespace
