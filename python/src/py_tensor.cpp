// python/src/py_tensor.cpp — import of Python arrays as moefuse::Tensor views, export of results without copies.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "moefuse/error.h"
#include "py_tensor.h"

namespace moefuse::python {

namespace {

namespace dl = nb::dlpack;

constexpr std::string_view kSupported = "f32, f16, bf16, i8, u8, i32, i64 or bool";

std::optional<DType> dtype_from_name(std::string_view s) {
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64, DType::boolean})
    if (dtype_name(t) == s) return t;
  return std::nullopt;
}

std::optional<DType> dtype_from_dlpack(dl::dtype d) {
  if (d.lanes != 1) return std::nullopt;
  switch (dl::dtype_code(d.code)) {
    case dl::dtype_code::Int:
      if (d.bits == 8) return DType::i8;
      if (d.bits == 32) return DType::i32;
      if (d.bits == 64) return DType::i64;
      return std::nullopt;
    case dl::dtype_code::UInt:
      if (d.bits == 8) return DType::u8;
      return std::nullopt;
    case dl::dtype_code::Float:
      if (d.bits == 16) return DType::f16;
      if (d.bits == 32) return DType::f32;
      return std::nullopt;
    case dl::dtype_code::Bfloat:
      if (d.bits == 16) return DType::bf16;
      return std::nullopt;
    case dl::dtype_code::Bool:
      if (d.bits == 8) return DType::boolean;
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::string describe_dlpack(dl::dtype d) {
  std::string s;
  switch (dl::dtype_code(d.code)) {
    case dl::dtype_code::Int: s = "int"; break;
    case dl::dtype_code::UInt: s = "uint"; break;
    case dl::dtype_code::Float: s = "float"; break;
    case dl::dtype_code::Bfloat: s = "bfloat"; break;
    case dl::dtype_code::Complex: s = "complex"; break;
    case dl::dtype_code::Bool: s = "bool"; break;
    default: s = "dlpack-code-" + std::to_string(int(d.code)) + "-"; break;
  }
  s += std::to_string(int(d.bits));
  if (d.lanes != 1) s += "x" + std::to_string(int(d.lanes));
  return s;
}

// `bits`: export a 16-bit float as int16 (its bit pattern); the Python side reinterprets it (numpy has no bf16,
// and older torch versions cannot take bf16 through DLPack).
dl::dtype to_dlpack(DType t, bool bits) {
  switch (t) {
    case DType::f32: return nb::dtype<float>();
    case DType::f16: return bits ? nb::dtype<int16_t>() : dl::dtype{uint8_t(dl::dtype_code::Float), 16, 1};
    case DType::bf16: return bits ? nb::dtype<int16_t>() : dl::dtype{uint8_t(dl::dtype_code::Bfloat), 16, 1};
    case DType::i8: return nb::dtype<int8_t>();
    case DType::u8: return nb::dtype<uint8_t>();
    case DType::i32: return nb::dtype<int32_t>();
    case DType::i64: return nb::dtype<int64_t>();
    case DType::boolean: return nb::dtype<bool>();
  }
  return nb::dtype<uint8_t>();
}

std::string prefix(const std::string& op, const std::string& arg) { return op + ": " + arg + ": "; }

// Imports `obj` (anything nanobind's ndarray accepts: DLPack producers and buffer-protocol objects) as a read-only
// moefuse view. `dtype` (a moefuse dtype name) overrides the producer's dtype: the Python side passes it for numpy
// and torch inputs, whose bf16 and bool tensors it hands over as int16 / uint8 reinterpretations.
PyTensor import_array(nb::handle obj, const std::string& op, const std::string& arg,
                      const std::optional<std::string>& dtype) {
  nb::ndarray<nb::ro> a;
  if (!nb::try_cast(obj, a, false)) {
    std::string type = nb::type_name(obj.type()).c_str();
    throw TypeError(prefix(op, arg) + "expected a numpy array or a DLPack-capable CPU tensor, got " + type);
  }
  if (a.device_type() != nb::device::cpu::value)
    throw ValueError(prefix(op, arg) + "expected a tensor in CPU memory, got one on DLPack device type " +
                     std::to_string(a.device_type()));
  std::optional<DType> t;
  if (dtype) {
    t = dtype_from_name(*dtype);
    if (!t) throw TypeError(prefix(op, arg) + "expected a dtype of " + std::string(kSupported) + ", got " + *dtype);
    if (dtype_size(*t) * 8 != a.dtype().bits || a.dtype().lanes != 1)
      throw TypeError(prefix(op, arg) + "expected " + *dtype + " data (" + std::to_string(dtype_size(*t) * 8) +
                      "-bit elements), got " + describe_dlpack(a.dtype()));
  } else {
    t = dtype_from_dlpack(a.dtype());
    if (!t)
      throw TypeError(prefix(op, arg) + "expected a tensor of dtype " + std::string(kSupported) + ", got " +
                      describe_dlpack(a.dtype()));
  }
  if (a.ndim() > size_t(kMaxDims))
    throw ValueError(prefix(op, arg) + "expected at most " + std::to_string(kMaxDims) + " dimensions, got " +
                     std::to_string(a.ndim()));
  const void* data = a.data();
  if (reinterpret_cast<uintptr_t>(data) % dtype_size(*t) != 0)
    throw ValueError(prefix(op, arg) + "expected data aligned to its element size (" +
                     std::to_string(dtype_size(*t)) + " bytes), got an unaligned array");
  Shape shape, strides;
  for (size_t i = 0; i < a.ndim(); ++i) {
    shape.push_back(int64_t(a.shape(i)));
    strides.push_back(a.stride(i));
  }
  PyTensor r;
  r.tensor = Tensor::view(data, *t, shape, strides);
  r.source = std::move(a);
  return r;
}

template <class Framework>
nb::ndarray<Framework> export_array(nb::pointer_and_handle<PyTensor> self, bool bits) {
  const Tensor& t = self.p->tensor;
  if (!t.defined()) throw ValueError("Tensor.export: tensor: expected a defined tensor, got an undefined one");
  if (t.is_readonly())
    throw ValueError("Tensor.export: tensor: expected an operator result, got a read-only view of an input");
  size_t shape[kMaxDims];
  int64_t strides[kMaxDims];
  for (int i = 0; i < t.dim(); ++i) {
    shape[i] = size_t(t.size(i));
    strides[i] = t.stride(i);
  }
  // The owner is the Python Tensor object: the array keeps it, and so the moefuse storage, alive.
  return nb::ndarray<Framework>(t.data(), size_t(t.dim()), shape, self.h, strides, to_dlpack(t.dtype(), bits),
                                nb::device::cpu::value);
}

nb::tuple int_tuple(const Shape& s) {
  nb::list l;
  for (int64_t v : s) l.append(v);
  return nb::tuple(l);
}

}  // namespace

void bind_tensor(nb::module_& m) {
  nb::class_<PyTensor>(m, "Tensor",
                       "A moefuse tensor: a read-only view over an imported array, or an operator result.")
      .def_static("from_array", &import_array, nb::arg("obj"), nb::arg("op"), nb::arg("arg"),
                  nb::arg("dtype").none(),
                  "View `obj` (DLPack or buffer protocol, CPU) without copying; errors name `op` and `arg`.")
      .def("numpy", &export_array<nb::numpy>, nb::arg("bits") = false,
           "The result as a numpy array sharing its memory (bits: 16-bit floats as int16).")
      .def("torch", &export_array<nb::pytorch>, nb::arg("bits") = false,
           "The result as a torch tensor sharing its memory (bits: 16-bit floats as int16).")
      .def_prop_ro("dtype", [](const PyTensor& p) { return std::string(dtype_name(p.tensor.dtype())); })
      .def_prop_ro("shape", [](const PyTensor& p) { return int_tuple(p.tensor.shape()); })
      .def_prop_ro("strides", [](const PyTensor& p) { return int_tuple(p.tensor.strides()); })
      .def_prop_ro("data_ptr", [](const PyTensor& p) { return reinterpret_cast<uintptr_t>(p.tensor.data()); })
      .def_prop_ro("readonly", [](const PyTensor& p) { return p.tensor.is_readonly(); })
      .def_prop_ro("owns_storage", [](const PyTensor& p) { return p.tensor.owns_storage(); })
      .def("__repr__",
           [](const PyTensor& p) { return "moefuse._core.Tensor(" + p.tensor.describe() + ")"; });
}

}  // namespace moefuse::python
