// Metadata-only kernels of the tpu backend: tensor creation, views, resize_
// and set_. None of them reads or writes a tensor's value; where a storage must
// grow, its value is copied by the runtime (resize_storage_bytes).
#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/unfold_native.h>
#include <ATen/ops/view_as_complex_native.h>
#include <ATen/ops/view_as_real_native.h>
#include <ATen/ops/view_native.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/TensorOptions.h>
#include <torch/library.h>

#include "shim.h"

namespace torch_tpu {
namespace {

constexpr c10::DispatchKeySet kTpuKeys(c10::DispatchKey::PrivateUse1);

void check_creation(std::optional<c10::Device> device_opt, std::optional<c10::Layout> layout_opt,
                    std::optional<bool> pin_memory_opt) {
  if (device_opt.has_value()) {
    TORCH_CHECK(device_opt->type() == kTpu, "tpu: empty() got a ", device_opt->type(), " device");
  }
  TORCH_CHECK(c10::layout_or_default(layout_opt) == c10::Layout::Strided,
              "tpu: only strided tensors are supported, got layout ", c10::layout_or_default(layout_opt));
  TORCH_CHECK(!c10::pinned_memory_or_default(pin_memory_opt), "tpu: only CPU memory can be pinned");
}

c10::DeviceIndex index_of(std::optional<c10::Device> device_opt) {
  if (device_opt.has_value() && device_opt->has_index()) return device_opt->index();
  return current_device();
}

// Allocation happens on the current device: guard it to the requested one.
struct CurrentDevice {
  c10::DeviceIndex saved;
  explicit CurrentDevice(c10::DeviceIndex idx) : saved(current_device()) {
    if (idx != saved) set_device(idx);
  }
  ~CurrentDevice() { set_device_unchecked(saved); }
};

at::Tensor empty_memory_format(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype_opt,
                               std::optional<c10::Layout> layout_opt,
                               std::optional<c10::Device> device_opt, std::optional<bool> pin_memory_opt,
                               std::optional<c10::MemoryFormat> memory_format_opt) {
  check_creation(device_opt, layout_opt, pin_memory_opt);
  CurrentDevice guard(index_of(device_opt));
  return at::detail::empty_generic(size, allocator(), kTpuKeys, c10::dtype_or_default(dtype_opt),
                                   memory_format_opt);
}

at::Tensor empty_strided(c10::IntArrayRef size, c10::IntArrayRef stride,
                         std::optional<c10::ScalarType> dtype_opt, std::optional<c10::Layout> layout_opt,
                         std::optional<c10::Device> device_opt, std::optional<bool> pin_memory_opt) {
  check_creation(device_opt, layout_opt, pin_memory_opt);
  CurrentDevice guard(index_of(device_opt));
  return at::detail::empty_strided_generic(size, stride, allocator(), kTpuKeys,
                                           c10::dtype_or_default(dtype_opt));
}

at::Tensor as_strided(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                      std::optional<int64_t> storage_offset) {
  return at::native::as_strided_tensorimpl(self, size, stride, storage_offset);
}

at::Tensor view(const at::Tensor& self, c10::IntArrayRef size) { return at::native::view(self, size); }

at::Tensor reshape_alias(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride) {
  return at::native::_reshape_alias(self, size, stride);
}

at::Tensor unfold(const at::Tensor& self, int64_t dim, int64_t size, int64_t step) {
  return at::native::unfold(self, dim, size, step);
}

at::Tensor view_as_real(const at::Tensor& self) { return at::native::view_as_real(self); }
at::Tensor view_as_complex(const at::Tensor& self) { return at::native::view_as_complex(self); }

// Sets sizes (and strides, or contiguous ones) and grows the storage if the
// new geometry reaches past its end. The storage offset is already set.
void resize_impl(c10::TensorImpl* self, c10::IntArrayRef size, std::optional<c10::IntArrayRef> stride) {
  const size_t itemsize = self->dtype().itemsize();
  const size_t offset = static_cast<size_t>(self->storage_offset());
  size_t needed;
  if (stride.has_value()) {
    TORCH_CHECK(stride->size() == size.size(), "tpu: resize got ", size.size(), " sizes but ",
                stride->size(), " strides");
    self->set_sizes_and_strides(size, *stride);
    needed = at::detail::computeStorageNbytes(size, *stride, itemsize, offset);
  } else {
    self->set_sizes_contiguous(size);
    needed = at::detail::computeStorageNbytesContiguous(size, itemsize, offset);
  }
  // computeStorageNbytes is 0 for a tensor without elements: nothing to grow.
  if (self->numel() == 0) return;
  c10::StorageImpl* storage = self->storage().unsafeGetStorageImpl();
  if (needed > storage->nbytes()) resize_storage_bytes(storage, needed);
}

const at::Tensor& resize_(const at::Tensor& self, c10::IntArrayRef size,
                          std::optional<c10::MemoryFormat> memory_format) {
  c10::TensorImpl* impl = self.unsafeGetTensorImpl();
  for (auto s : size) TORCH_CHECK(s >= 0, "Trying to create tensor with negative dimension ", s, ": ", size);
  if (!(impl->sizes() == size && !memory_format.has_value())) {
    resize_impl(impl, size, std::nullopt);
  }
  if (memory_format.has_value()) {
    TORCH_CHECK(*memory_format != c10::MemoryFormat::Preserve,
                "Unsupported memory format ", *memory_format);
    impl->empty_tensor_restride(*memory_format);
  }
  return self;
}

at::Tensor& set_storage_offset_(at::Tensor& self, c10::Storage source, int64_t storage_offset,
                                c10::IntArrayRef size, c10::IntArrayRef stride) {
  TORCH_CHECK(source.device().type() == kTpu, "tpu: set_ got a storage on ", source.device());
  std::optional<c10::IntArrayRef> stride_opt;
  if (!stride.empty() || size.empty()) stride_opt = stride;
  at::native::checkSetStorage<int64_t>(self, source, storage_offset, size,
                                       stride_opt.has_value() ? stride : c10::IntArrayRef());
  c10::TensorImpl* impl = self.unsafeGetTensorImpl();
  impl->set_storage_offset(storage_offset);
  resize_impl(impl, size, stride_opt);
  return self;
}

at::Tensor& set_storage_(at::Tensor& self, c10::Storage source) {
  const size_t itemsize = self.dtype().itemsize();
  const size_t nbytes = source.nbytes();
  TORCH_CHECK(nbytes % itemsize == 0, "Expected storage size (", nbytes,
              ") to be divisible by the element size (", itemsize, ")");
  const int64_t n = static_cast<int64_t>(nbytes / itemsize);
  return set_storage_offset_(self, std::move(source), 0, {n}, {});
}

at::Tensor& set_tensor_(at::Tensor& self, const at::Tensor& source) {
  if (self.unsafeGetTensorImpl() != source.unsafeGetTensorImpl()) {
    return set_storage_offset_(self, source.storage(), source.storage_offset(), source.sizes(),
                               source.strides());
  }
  return self;
}

at::Tensor& set_empty_(at::Tensor& self) {
  c10::DeviceIndex idx = self.device().index();
  c10::Storage storage(c10::Storage::use_byte_size_t(), 0, allocate_on(0, idx < 0 ? current_device() : idx),
                       allocator(), /*resizable=*/true);
  return set_storage_offset_(self, std::move(storage), 0, {0}, {});
}

// Streams are dummies: nothing to record.
void record_stream(at::Tensor&, c10::Stream) {}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("empty.memory_format", TORCH_FN(empty_memory_format));
  m.impl("empty_strided", TORCH_FN(empty_strided));
  m.impl("as_strided", TORCH_FN(as_strided));
  m.impl("view", TORCH_FN(view));
  m.impl("_reshape_alias", TORCH_FN(reshape_alias));
  m.impl("unfold", TORCH_FN(unfold));
  m.impl("view_as_real", TORCH_FN(view_as_real));
  m.impl("view_as_complex", TORCH_FN(view_as_complex));
  m.impl("resize_", TORCH_FN(resize_));
  m.impl("set_.source_Storage_storage_offset", TORCH_FN(set_storage_offset_));
  m.impl("set_.source_Storage", TORCH_FN(set_storage_));
  m.impl("set_.source_Tensor", TORCH_FN(set_tensor_));
  m.impl("set_", TORCH_FN(set_empty_));
  m.impl("record_stream", TORCH_FN(record_stream));
}

// PyTorch's conjugate/negative fallbacks would resolve `_copy_from`'s `dst`
// into a temporary (its schema does not mark it written), losing the copy:
// the runtime applies both lazy bits of source and destination itself.
TORCH_LIBRARY_IMPL(aten, Conjugate, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}
TORCH_LIBRARY_IMPL(aten, Negative, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}
}  // namespace torch_tpu
