// The one boxed fallback: every PrivateUse1 op without a kernel of its own
// becomes one tpu_dispatch() call (tpu_abi.h). The schema of each op is
// classified once and cached per thread; the per-call path allocates nothing
// for ops with up to kInline arguments and list elements.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/native/CPUFallback.h>
#include <ATen/native/Resize.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <cstring>
#include <mutex>
#include <unordered_map>

#include "shim.h"

namespace torch_tpu {
namespace {

// What the schema declares an argument to be (the IValue alone is ambiguous:
// int, Scalar, ScalarType, Layout and MemoryFormat all arrive as ints).
enum class Decl : uint8_t {
  Tensor, TensorList, Int, Double, Bool, IntList, DoubleList, BoolList,
  Scalar, String, Dtype, Generator, Other,
};
enum class RetDecl : uint8_t { Tensor, Int, Double, Bool, Scalar, TensorList, Other };

struct ArgInfo {
  Decl decl;
  uint8_t is_write;
  uint8_t is_out;
};

struct OpInfo {
  const c10::FunctionSchema* schema;
  const char* name;      // "aten::add"
  const char* overload;  // "out", or ""
  std::vector<ArgInfo> args;
  std::vector<RetDecl> rets;
};

Decl classify(const c10::TypePtr& real) {
  c10::TypePtr t = real;
  if (auto opt = t->castRaw<c10::OptionalType>()) t = opt->getElementType();
  switch (t->kind()) {
    case c10::TypeKind::TensorType: return Decl::Tensor;
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType: return Decl::Int;
    case c10::TypeKind::FloatType:
    case c10::TypeKind::SymFloatType: return Decl::Double;
    case c10::TypeKind::BoolType:
    case c10::TypeKind::SymBoolType: return Decl::Bool;
    case c10::TypeKind::NumberType: return Decl::Scalar;
    case c10::TypeKind::StringType: return Decl::String;
    case c10::TypeKind::ScalarTypeType: return Decl::Dtype;
    case c10::TypeKind::GeneratorType: return Decl::Generator;
    case c10::TypeKind::ListType: {
      c10::TypePtr e = t->containedType(0);
      if (auto opt = e->castRaw<c10::OptionalType>()) e = opt->getElementType();
      switch (e->kind()) {
        case c10::TypeKind::TensorType: return Decl::TensorList;
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType: return Decl::IntList;
        case c10::TypeKind::FloatType: return Decl::DoubleList;
        case c10::TypeKind::BoolType: return Decl::BoolList;
        default: return Decl::Other;
      }
    }
    default: return Decl::Other;  // Layout, Device, MemoryFormat, Stream, ...
  }
}

RetDecl classify_ret(const c10::TypePtr& real) {
  switch (classify(real)) {
    case Decl::Tensor: return RetDecl::Tensor;
    case Decl::Int: return RetDecl::Int;
    case Decl::Double: return RetDecl::Double;
    case Decl::Bool: return RetDecl::Bool;
    case Decl::Scalar: return RetDecl::Scalar;
    case Decl::TensorList: return RetDecl::TensorList;
    default: return RetDecl::Other;
  }
}

bool writes(const c10::AliasInfo* ai) {
  if (ai == nullptr) return false;
  if (ai->isWrite()) return true;
  for (const auto& c : ai->containedTypes()) {
    if (c.isWrite()) return true;
  }
  return false;
}

OpInfo* build_info(const c10::FunctionSchema& schema) {
  auto* info = new OpInfo();
  info->schema = &schema;
  info->name = schema.name().c_str();
  info->overload = schema.overload_name().c_str();
  // _copy_from(Tensor self, Tensor dst, ...) writes dst without saying so in its schema.
  const bool copy_from = schema.name() == "aten::_copy_from" || schema.name() == "aten::_copy_from_and_resize";
  // native_batch_norm updates running_mean/var in place (training) without
  // saying so in its schema either.
  const bool batch_norm = schema.name() == "aten::native_batch_norm";
  for (const auto& a : schema.arguments()) {
    const bool stats = batch_norm && (a.name() == "running_mean" || a.name() == "running_var");
    const bool w = writes(a.alias_info()) || (copy_from && a.name() == "dst") || stats;
    info->args.push_back({classify(a.real_type()), static_cast<uint8_t>(w),
                          static_cast<uint8_t>(w && a.kwarg_only())});
  }
  for (const auto& r : schema.returns()) info->rets.push_back(classify_ret(r.real_type()));
  return info;
}

// Global registry of classified schemas (never freed: schemas live as long as
// the process in practice), fronted by a small per-thread cache.
const OpInfo* lookup_slow(const c10::FunctionSchema& schema) {
  static std::mutex mu;
  static auto* all = new std::unordered_map<const c10::FunctionSchema*, OpInfo*>();
  std::lock_guard<std::mutex> lock(mu);
  OpInfo*& slot = (*all)[&schema];
  // A schema at a reused address (an op was deregistered): classify anew.
  if (slot == nullptr || slot->name != schema.name().c_str()) slot = build_info(schema);
  return slot;
}

const OpInfo* lookup(const c10::FunctionSchema& schema) {
  constexpr size_t kSlots = 256;
  thread_local const OpInfo* cache[kSlots] = {};
  const size_t h = (reinterpret_cast<uintptr_t>(&schema) >> 4) & (kSlots - 1);
  const OpInfo* hit = cache[h];
  if (hit != nullptr && hit->schema == &schema && hit->name == schema.name().c_str()) return hit;
  hit = lookup_slow(schema);
  cache[h] = hit;
  return hit;
}

constexpr size_t kInline = 16;

// Storage for everything the TpuArgs point into, alive for one call.
struct Scratch {
  c10::SmallVector<TpuArg, kInline> args;
  c10::SmallVector<TpuTensor, kInline> tensors;  // list elements
  std::vector<at::Tensor> resolved;               // CPU tensors with their lazy math bits applied
  c10::SmallVector<int64_t, kInline> ints;
  c10::SmallVector<double, 4> doubles;
  c10::SmallVector<uint8_t, 8> bools;
};

[[noreturn]] void bad_arg(const OpInfo& op, size_t i, const char* what) {
  TORCH_CHECK(false, "tpu: ", op.name, op.overload[0] ? "." : "", op.overload, ": argument ", i, ": ",
              what);
}

void fill_tensor(TpuTensor& o, const at::Tensor& arg, bool write, const OpInfo& op, size_t i, Scratch& s) {
  const at::Tensor* tp = &arg;
  if (C10_UNLIKELY((arg.is_conj() || arg.is_neg()) && arg.device().type() == c10::DeviceType::CPU)) {
    // The runtime reads CPU memory as is: apply a CPU view's conjugate/negative bits here (on the CPU).
    TORCH_CHECK(!write, "tpu: ", op.name, ": argument ", i,
                " is a conjugate or negative CPU view written in place; call resolve_conj()/resolve_neg() first");
    s.resolved.reserve(16);  // stable addresses: at most a few per call
    TORCH_CHECK(s.resolved.size() < 16, "tpu: ", op.name, ": too many conjugate CPU views");
    s.resolved.push_back(arg.resolve_conj().resolve_neg());
    tp = &s.resolved.back();
  }
  const at::Tensor& t = *tp;
  c10::TensorImpl* impl = t.unsafeGetTensorImpl();
  if (C10_UNLIKELY(impl->layout() != c10::kStrided)) bad_arg(op, i, "only strided tensors are supported");
  o.ndim = static_cast<int32_t>(impl->dim());
  o.sizes = impl->sizes().data();
  o.strides = impl->strides().data();
  o.storage_offset = impl->storage_offset();
  o.dtype = static_cast<int32_t>(impl->dtype().toScalarType());
  o.wrapped_number = impl->is_wrapped_number() ? 1 : 0;
  o.math_bits = static_cast<uint8_t>((t.is_conj() ? 1 : 0) | (t.is_neg() ? 2 : 0));
  const c10::Device dev = impl->device();
  const c10::Storage& st = impl->storage();
  o.storage_nbytes = static_cast<int64_t>(st.nbytes());
  if (dev.type() == kTpu) {
    o.storage = st.data_ptr().get_context();
    if (o.storage == nullptr && st.data() != nullptr) {
      // A tensor made by at::from_blob over a tpu address (torch's legacy
      // storage pickling does so): the storage is the one holding it, and the
      // blob's start becomes an element offset into it.
      o.storage = tpu_storage_from_addr(st.data());
      if (o.storage != nullptr) {
        const int64_t delta = static_cast<int64_t>(reinterpret_cast<uintptr_t>(st.data())) - tpu_storage_addr(o.storage);
        const int64_t item = static_cast<int64_t>(impl->dtype().itemsize());
        if (delta % item != 0) bad_arg(op, i, "a tensor over a tpu address not aligned to its dtype");
        o.storage_offset += delta / item;
        o.storage_nbytes += delta;
      }
    }
    o.host_data = nullptr;
    o.device = TPU_DEVICE_TPU;
    o.device_index = dev.index();
  } else if (dev.type() == c10::DeviceType::CPU) {
    o.storage = nullptr;
    // mutable_data_ptr materialises a copy-on-write storage before a write.
    o.host_data = write ? t.mutable_data_ptr() : const_cast<void*>(t.const_data_ptr());
    o.device = TPU_DEVICE_CPU;
    o.device_index = -1;
  } else {
    TORCH_CHECK(false, "tpu: ", op.name, op.overload[0] ? "." : "", op.overload, ": argument ", i,
                " is a tensor on ", dev, "; move it to tpu or cpu first");
  }
}

void absent_tensor(TpuTensor& o) {
  o = TpuTensor{};
  o.ndim = -1;
  o.device_index = -1;
}

// Converts the op's arguments (the last nargs IValues of the stack) into TpuArgs.
void convert_args(const OpInfo& op, const c10::IValue* ivs, size_t nargs, Scratch& s) {
  s.args.resize(nargs);
  for (size_t i = 0; i < nargs; ++i) {
    const c10::IValue& v = ivs[i];
    const ArgInfo& ai = op.args[i];
    TpuArg& a = s.args[i];
    a.kind = TPU_ARG_NONE;
    a.is_write = ai.is_write;
    a.is_out = ai.is_out;
    a.reserved = 0;
    a.i = 0;
    a.d = 0.0;
    a.list = nullptr;
    if (v.isNone()) {
      if (ai.decl == Decl::Generator) {
        a.kind = TPU_ARG_SEED;
        a.i = static_cast<int64_t>(draw_seed(std::nullopt));
      }
      continue;
    }
    switch (ai.decl) {
      case Decl::Tensor:
        if (!v.isTensor()) bad_arg(op, i, "expected a tensor");
        if (!v.toTensor().defined()) continue;  // an undefined tensor is None
        a.kind = TPU_ARG_TENSOR;
        fill_tensor(a.tensor, v.toTensor(), ai.is_write, op, i, s);
        break;
      case Decl::TensorList: {
        auto elems = v.toListRef();
        a.kind = TPU_ARG_TENSOR_LIST;
        a.i = static_cast<int64_t>(elems.size());
        a.d = static_cast<double>(s.tensors.size());  // start; pointer fixed up below
        for (const c10::IValue& e : elems) {
          s.tensors.emplace_back();
          if (e.isTensor() && e.toTensor().defined()) {
            fill_tensor(s.tensors.back(), e.toTensor(), ai.is_write, op, i, s);
          } else {
            absent_tensor(s.tensors.back());
          }
        }
        break;
      }
      case Decl::Int:
        a.kind = TPU_ARG_INT;
        a.i = v.isSymInt() ? v.toSymInt().guard_int(__FILE__, __LINE__) : v.toInt();
        break;
      case Decl::Double:
        a.kind = TPU_ARG_DOUBLE;
        a.d = v.toDouble();
        break;
      case Decl::Bool:
        a.kind = TPU_ARG_BOOL;
        a.i = v.toBool() ? 1 : 0;
        break;
      case Decl::Dtype:
        a.kind = TPU_ARG_DTYPE;
        a.i = v.toInt();
        break;
      case Decl::Scalar:
        if (v.isInt()) {
          a.kind = TPU_ARG_SCALAR_INT;
          a.i = v.toInt();
        } else if (v.isDouble()) {
          a.kind = TPU_ARG_SCALAR_DOUBLE;
          a.d = v.toDouble();
        } else if (v.isBool()) {
          a.kind = TPU_ARG_SCALAR_BOOL;
          a.i = v.toBool() ? 1 : 0;
        } else if (v.isComplexDouble()) {
          const c10::complex<double> z = v.toComplexDouble();
          a.kind = TPU_ARG_SCALAR_COMPLEX;
          a.d = z.real();
          const double im = z.imag();
          std::memcpy(&a.i, &im, sizeof im);
        } else {
          bad_arg(op, i, "unsupported Scalar (symbolic?)");
        }
        break;
      case Decl::IntList: {
        auto elems = v.toListRef();
        a.kind = TPU_ARG_INT_LIST;
        a.i = static_cast<int64_t>(elems.size());
        a.d = static_cast<double>(s.ints.size());
        for (const c10::IValue& e : elems) {
          s.ints.push_back(e.isSymInt() ? e.toSymInt().guard_int(__FILE__, __LINE__) : e.toInt());
        }
        break;
      }
      case Decl::DoubleList: {
        auto elems = v.toListRef();
        a.kind = TPU_ARG_DOUBLE_LIST;
        a.i = static_cast<int64_t>(elems.size());
        a.d = static_cast<double>(s.doubles.size());
        for (const c10::IValue& e : elems) s.doubles.push_back(e.toDouble());
        break;
      }
      case Decl::BoolList: {
        auto elems = v.toListRef();
        a.kind = TPU_ARG_BOOL_LIST;
        a.i = static_cast<int64_t>(elems.size());
        a.d = static_cast<double>(s.bools.size());
        for (const c10::IValue& e : elems) s.bools.push_back(e.toBool() ? 1 : 0);
        break;
      }
      case Decl::String:
        a.kind = TPU_ARG_STRING;
        a.list = v.toStringRef().c_str();
        break;
      case Decl::Generator:
        a.kind = TPU_ARG_SEED;
        a.i = static_cast<int64_t>(draw_seed(v.toGenerator()));
        break;
      case Decl::Other:
        a.kind = TPU_ARG_OTHER;
        break;
    }
  }
  // The element buffers are complete: point the lists into them.
  for (TpuArg& a : s.args) {
    const auto start = static_cast<size_t>(a.d);
    switch (a.kind) {
      case TPU_ARG_TENSOR_LIST: a.list = s.tensors.data() + start; a.d = 0; break;
      case TPU_ARG_INT_LIST: a.list = s.ints.data() + start; a.d = 0; break;
      case TPU_ARG_DOUBLE_LIST: a.list = s.doubles.data() + start; a.d = 0; break;
      case TPU_ARG_BOOL_LIST: a.list = s.bools.data() + start; a.d = 0; break;
      default: break;
    }
  }
}

// The device of a new result: that of the first tpu tensor argument, else the current one.
c10::DeviceIndex result_device(const Scratch& s) {
  for (const TpuArg& a : s.args) {
    if (a.kind == TPU_ARG_TENSOR && a.tensor.device == TPU_DEVICE_TPU) return a.tensor.device_index;
  }
  for (const TpuTensor& t : s.tensors) {
    if (t.ndim >= 0 && t.device == TPU_DEVICE_TPU) return t.device_index;
  }
  return current_device();
}

at::Tensor new_tensor(const TpuRet& r, c10::DeviceIndex idx) {
  const c10::Device dev(kTpu, idx);
  c10::DataPtr dp(r.addr, r.storage, &delete_storage, dev);
  c10::Storage storage(c10::Storage::use_byte_size_t(), static_cast<size_t>(r.nbytes), std::move(dp),
                       allocator(), /*resizable=*/true);
  auto dtype = c10::scalarTypeToTypeMeta(static_cast<c10::ScalarType>(r.dtype));
  at::Tensor t = at::detail::make_tensor<c10::TensorImpl>(
      std::move(storage), c10::DispatchKeySet(c10::DispatchKey::PrivateUse1), dtype);
  // A fresh TensorImpl has sizes [0]: set them even for a 0-dim result.
  t.unsafeGetTensorImpl()->set_sizes_contiguous(
      r.ndim == 0 ? c10::IntArrayRef() : c10::IntArrayRef(r.sizes, static_cast<size_t>(r.ndim)));
  return t;
}

c10::IValue convert_ret(const OpInfo& op, size_t k, const TpuRet& r, const c10::IValue* ivs,
                        size_t nargs, const Scratch& s) {
  const RetDecl decl = op.rets[k];
  switch (r.kind) {
    case TPU_RET_NONE:
      return c10::IValue();
    case TPU_RET_ARG:
      TORCH_CHECK(r.index >= 0 && static_cast<size_t>(r.index) < nargs, "tpu: ", op.name,
                  ": the runtime returned argument ", r.index, " of ", nargs);
      return ivs[r.index];
    case TPU_RET_NEW:
      TORCH_CHECK(decl == RetDecl::Tensor, "tpu: ", op.name, ": the runtime returned a tensor for result ",
                  k, ", which is no Tensor");
      TORCH_CHECK(r.storage != nullptr && r.ndim >= 0, "tpu: ", op.name,
                  ": the runtime returned an invalid new tensor");
      return new_tensor(r, result_device(s));
    case TPU_RET_INT:
      if (decl == RetDecl::Double) return c10::IValue(static_cast<double>(r.i));
      if (decl == RetDecl::Bool) return c10::IValue(r.i != 0);
      TORCH_CHECK(decl == RetDecl::Int || decl == RetDecl::Scalar, "tpu: ", op.name,
                  ": the runtime returned an int for result ", k);
      return c10::IValue(r.i);
    case TPU_RET_DOUBLE:
      TORCH_CHECK(decl == RetDecl::Double || decl == RetDecl::Scalar, "tpu: ", op.name,
                  ": the runtime returned a float for result ", k);
      return c10::IValue(r.d);
    case TPU_RET_BOOL:
      TORCH_CHECK(decl == RetDecl::Bool || decl == RetDecl::Scalar || decl == RetDecl::Int, "tpu: ",
                  op.name, ": the runtime returned a bool for result ", k);
      if (decl == RetDecl::Int) return c10::IValue(r.i);
      return c10::IValue(r.i != 0);
    case TPU_RET_COMPLEX: {
      TORCH_CHECK(decl == RetDecl::Scalar, "tpu: ", op.name, ": the runtime returned a complex number for result ",
                  k);
      double im = 0;
      std::memcpy(&im, &r.i, sizeof im);
      return c10::IValue(c10::complex<double>(r.d, im));
    }
    default:
      TORCH_CHECK(false, "tpu: ", op.name, ": unknown result kind ", r.kind);
  }
}

// Resizes the out= arguments listed by a TPU_RESIZE_OUTPUTS answer (TPU_RET_ARG
// entries with the sizes wanted). Returns whether any was resized.
bool resize_outs(const OpInfo& op, const TpuRet* rets, int32_t nrets, const c10::IValue* ivs, size_t nargs) {
  bool any = false;
  c10::SmallVector<int64_t, 8> sizes;
  for (int32_t k = 0; k < nrets; ++k) {
    const TpuRet& r = rets[k];
    if (r.kind != TPU_RET_ARG || r.ndim < 0 || r.sizes == nullptr) continue;
    if (r.index < 0 || static_cast<size_t>(r.index) >= nargs || !ivs[r.index].isTensor()) continue;
    const at::Tensor& t = ivs[r.index].toTensor();
    c10::IntArrayRef want(r.sizes, static_cast<size_t>(r.ndim));
    if (t.sizes() == want) continue;
    TORCH_CHECK(op.args[r.index].is_write, "tpu: ", op.name, ": the runtime asked to resize argument ",
                r.index, ", which the op does not write");
    sizes.assign(want.begin(), want.end());  // r.sizes dies with the next runtime call
    at::native::resize_output(t, sizes);
    any = true;
  }
  return any;
}

void fallback(const c10::OperatorHandle& handle, torch::jit::Stack* stack) {
  check_abi();
  const c10::FunctionSchema& schema = handle.schema();
  const OpInfo& op = *lookup(schema);
  const size_t nargs = op.args.size();
  TORCH_INTERNAL_ASSERT(stack->size() >= nargs);
  const size_t base = stack->size() - nargs;
  // A Tensor[] result is supported as the only result (`_histogramdd_bin_edges`):
  // the runtime then returns its tensors one by one, packed into a list below.
  const bool list_result = op.rets.size() == 1 && op.rets[0] == RetDecl::TensorList;
  for (RetDecl r : op.rets) {
    TORCH_CHECK_NOT_IMPLEMENTED(r != RetDecl::TensorList || list_result, "tpu: ", op.name,
                                op.overload[0] ? "." : "", op.overload,
                                ": ops returning Tensor[] among other results are not supported yet");
  }

  const c10::IValue* ivs = stack->data() + base;
  const TpuRet* rets = nullptr;
  int32_t nrets = 0;
  Scratch s;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) s = Scratch();
    convert_args(op, ivs, nargs, s);
    const int32_t status = tpu_dispatch(op.name, op.overload, s.args.data(), static_cast<int32_t>(nargs),
                                        &rets, &nrets);
    if (status == TPU_RUN_ON_CPU) {
      tpu_count_cpu_fallback(op.name, op.overload);
      try {
        at::native::cpu_fallback(handle, stack);
      } catch (const c10::NotImplementedError& e) {
        // Some ops have kernels for accelerators only (CUDA's): say that the
        // fallback was tried, not just that the CPU lacks the op.
        TORCH_CHECK_NOT_IMPLEMENTED(false, "tpu: ", op.name, op.overload[0] ? "." : "", op.overload,
                                    " has no tpu lowering, and the CPU fallback cannot run it either: ",
                                    e.what_without_backtrace());
      }
      return;
    }
    if (status == TPU_OK) break;
    if (status != TPU_RESIZE_OUTPUTS) throw_status(status, op.name);
    // An out= tensor of the wrong shape: the runtime wrote nothing and asks
    // for a resize (as resize_output does on CPU); redo the op once.
    TORCH_CHECK(attempt == 0 && resize_outs(op, rets, nrets, ivs, nargs), "tpu: ", op.name,
                op.overload[0] ? "." : "", op.overload, ": the runtime asked twice to resize an out= tensor");
  }

  if (list_result) {
    c10::List<at::Tensor> list;
    for (int32_t k = 0; k < nrets; ++k) {
      TORCH_CHECK(rets[k].kind == TPU_RET_NEW && rets[k].storage != nullptr && rets[k].ndim >= 0, "tpu: ",
                  op.name, ": the runtime returned a non-tensor in a Tensor[] result");
      list.push_back(new_tensor(rets[k], result_device(s)));
    }
    torch::jit::drop(*stack, nargs);
    stack->push_back(c10::IValue(std::move(list)));
    return;
  }
  TORCH_CHECK(static_cast<size_t>(nrets) == op.rets.size(), "tpu: ", op.name, op.overload[0] ? "." : "",
              op.overload, ": the runtime returned ", nrets, " results, the schema has ", op.rets.size());
  c10::SmallVector<c10::IValue, 4> out;
  out.reserve(static_cast<size_t>(nrets));
  for (int32_t k = 0; k < nrets; ++k) out.push_back(convert_ret(op, k, rets[k], ivs, nargs, s));
  torch::jit::drop(*stack, nargs);
  for (auto& v : out) stack->push_back(std::move(v));
}

}  // namespace

// The boxed fallback, also registered per op by tpu_shim_register_direct.
void fallback_entry(const c10::OperatorHandle& handle, torch::jit::Stack* stack) { fallback(handle, stack); }

TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&fallback>());
}

}  // namespace torch_tpu

// Routes lowered ops that have a composite kernel (CompositeExplicitAutograd or
// ...NonFunctional) and an autograd kernel straight to the fallback: the
// composite kernel would otherwise win over the fallback (so a lowering of
// e.g. `convolution` would never run) or add an empty_strided + op.out detour.
// CompositeImplicitAutograd ops are left alone: a backend kernel would cut
// them off from autograd. Returns how many ops were registered, -1 on error.
extern "C" int32_t tpu_shim_register_direct(const char* const* names, int32_t n) {
  try {
    static torch::Library* lib =
        new torch::Library(torch::Library::IMPL, "aten", c10::DispatchKey::PrivateUse1, __FILE__, __LINE__);
    int32_t count = 0;
    for (int32_t i = 0; i < n; ++i) {
      std::string full(names[i]);
      const auto dot = full.find('.');
      const std::string base = full.substr(0, dot);
      const std::string overload = dot == std::string::npos ? "" : full.substr(dot + 1);
      auto op = c10::Dispatcher::singleton().findOp({"aten::" + base, overload});
      if (!op) continue;
      using K = c10::DispatchKey;
      const bool composite = op->hasKernelForDispatchKey(K::CompositeExplicitAutograd) ||
                             op->hasKernelForDispatchKey(K::CompositeExplicitAutogradNonFunctional);
      if (!composite || op->hasKernelForDispatchKey(K::CompositeImplicitAutograd) ||
          op->hasKernelForDispatchKey(K::PrivateUse1) || !op->hasKernelForDispatchKey(K::Autograd)) {
        continue;
      }
      // Factories and device moves (a `device` argument, or no tensor input) keep
      // their composite kernels, which allocate through this backend anyway.
      bool has_tensor = false, has_device = false;
      for (const auto& a : op->schema().arguments()) {
        has_device |= a.name() == "device";
        has_tensor |= a.type()->kind() == c10::TypeKind::TensorType;
      }
      if (has_device || !has_tensor) continue;
      lib->impl(full.c_str(), torch::CppFunction::makeFromBoxedFunction<&torch_tpu::fallback_entry>());
      ++count;
    }
    return count;
  } catch (...) {
    return -1;
  }
}
