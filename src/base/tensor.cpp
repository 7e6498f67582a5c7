#include "moefuse/tensor.h"

#include <cmath>
#include <cstdlib>
#include <new>
#include <sstream>

#include "base/elements.h"
#include "moefuse/error.h"

namespace moefuse {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  for (int64_t v : dims) push_back(v);
}

void Shape::push_back(int64_t v) {
  if (rank_ >= kMaxDims)
    throw ValueError("Shape: rank: expected at most " + std::to_string(kMaxDims) + " dimensions, got more");
  d_[size_t(rank_++)] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= d_[size_t(i)];
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(d_[size_t(i)]);
  }
  return s + "]";
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (int i = 0; i < a.rank_; ++i)
    if (a.d_[size_t(i)] != b.d_[size_t(i)]) return false;
  return true;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st;
  for (int i = 0; i < shape.rank(); ++i) st.push_back(0);
  int64_t s = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

namespace {

void check_extents(const Shape& shape, const char* who) {
  for (int64_t v : shape)
    if (v < 0) throw ValueError(std::string("Tensor::") + who + ": shape: expected extents >= 0, got " + shape.str());
}

struct AlignedFree {
  void operator()(std::byte* p) const { std::free(p); }
};

}  // namespace

Tensor Tensor::empty(DType dtype, const Shape& shape) {
  check_extents(shape, "empty");
  Tensor t;
  t.dtype_ = dtype;
  t.defined_ = true;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  // 64-byte alignment: a cache line, and the widest vector load any kernel issues.
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p)
    throw ResourceError("Tensor::empty: memory: expected " + std::to_string(rounded) +
                        " bytes to be available, allocation failed for " + t.describe());
  t.storage_ = std::shared_ptr<std::byte>(static_cast<std::byte*>(p), AlignedFree{});
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(DType dtype, const Shape& shape) {
  Tensor t = empty(dtype, shape);
  std::memset(t.data_, 0, size_t(shape.numel()) * dtype_size(dtype));
  return t;
}

Tensor Tensor::full(DType dtype, const Shape& shape, double value) {
  Tensor t = empty(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) store_element(t.data_, dtype, i, value);
  return t;
}

Tensor Tensor::view(void* data, DType dtype, const Shape& shape, const Shape& strides) {
  check_extents(shape, "view");
  if (strides.rank() != 0 && strides.rank() != shape.rank())
    throw ValueError("Tensor::view: strides: expected " + std::to_string(shape.rank()) + " strides for shape " +
                     shape.str() + ", got " + strides.str());
  if (data == nullptr && shape.numel() != 0)
    throw ValueError("Tensor::view: data: expected a non-null pointer for shape " + shape.str() + ", got null");
  Tensor t;
  t.dtype_ = dtype;
  t.defined_ = true;
  t.shape_ = shape;
  t.strides_ = strides.rank() ? strides : contiguous_strides(shape);
  t.data_ = data;
  return t;
}

Tensor Tensor::view(const void* data, DType dtype, const Shape& shape, const Shape& strides) {
  Tensor t = view(const_cast<void*>(data), dtype, shape, strides);
  t.readonly_ = true;
  return t;
}

Tensor Tensor::view_with_owner(std::shared_ptr<void> owner, const void* data, DType dtype, const Shape& shape,
                               const Shape& strides) {
  if (!owner) throw ValueError("Tensor::view_with_owner: owner: expected a non-null owner, got null");
  Tensor t = view(data, dtype, shape, strides);
  // Aliasing constructor: shares ownership of `owner` while pointing at the view's data.
  t.storage_ = std::shared_ptr<std::byte>(std::move(owner), static_cast<std::byte*>(const_cast<void*>(data)));
  return t;
}

int64_t Tensor::size(int d) const {
  int r = shape_.rank();
  int i = d < 0 ? d + r : d;
  if (i < 0 || i >= r)
    throw ValueError("Tensor::size: dim: expected -" + std::to_string(r) + " <= dim < " + std::to_string(r) +
                     ", got " + std::to_string(d));
  return shape_[i];
}

int64_t Tensor::stride(int d) const {
  int r = shape_.rank();
  int i = d < 0 ? d + r : d;
  if (i < 0 || i >= r)
    throw ValueError("Tensor::stride: dim: expected -" + std::to_string(r) + " <= dim < " + std::to_string(r) +
                     ", got " + std::to_string(d));
  return strides_[i];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = shape_.rank() - 1; i >= 0; --i) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void Tensor::check_dtype_for_access(DType requested) const {
  if (!defined_) throw ValueError("Tensor::data_as: tensor: expected a defined tensor, got an undefined one");
  if (requested != dtype_)
    throw TypeError("Tensor::data_as: dtype: expected " + std::string(dtype_name(dtype_)) + " access, got " +
                    std::string(dtype_name(requested)));
}

Tensor Tensor::transpose(int d0, int d1) const {
  int r = shape_.rank();
  int a = d0 < 0 ? d0 + r : d0, b = d1 < 0 ? d1 + r : d1;
  if (a < 0 || a >= r || b < 0 || b >= r)
    throw ValueError("Tensor::transpose: dims: expected two dims in [-" + std::to_string(r) + ", " +
                     std::to_string(r) + "), got " + std::to_string(d0) + " and " + std::to_string(d1));
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  int r = shape_.rank();
  int i = d < 0 ? d + r : d;
  if (i < 0 || i >= r)
    throw ValueError("Tensor::narrow: dim: expected a dim of a rank-" + std::to_string(r) + " tensor, got " +
                     std::to_string(d));
  if (start < 0 || length < 0 || start + length > shape_[i])
    throw ValueError("Tensor::narrow: range: expected [start, start+length) within [0, " + std::to_string(shape_[i]) +
                     "), got [" + std::to_string(start) + ", " + std::to_string(start + length) + ")");
  Tensor t = *this;
  t.shape_[i] = length;
  if (data_) t.data_ = static_cast<std::byte*>(data_) + start * strides_[i] * int64_t(element_size());
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  check_extents(shape, "reshape");
  if (shape.numel() != numel())
    throw ValueError("Tensor::reshape: shape: expected " + std::to_string(numel()) + " elements (from " +
                     shape_.str() + "), got " + shape.str());
  if (!is_contiguous())
    throw ValueError("Tensor::reshape: tensor: expected a contiguous tensor, got strides " + strides_.str() +
                     " for shape " + shape_.str());
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::as_readonly() const {
  Tensor t = *this;
  t.readonly_ = true;
  return t;
}

int64_t Tensor::offset_of_flat(int64_t flat) const {
  int64_t off = 0;
  for (int i = shape_.rank() - 1; i >= 0; --i) {
    int64_t idx = flat % shape_[i];
    flat /= shape_[i];
    off += idx * strides_[i];
  }
  return off;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, shape_);
  size_t es = element_size();
  if (is_contiguous()) {
    if (numel()) std::memcpy(t.data_, data_, size_t(numel()) * es);
    return t;
  }
  auto* dst = static_cast<std::byte*>(t.data_);
  auto* src = static_cast<const std::byte*>(data_);
  for (int64_t i = 0; i < numel(); ++i) std::memcpy(dst + i * int64_t(es), src + offset_of_flat(i) * int64_t(es), es);
  return t;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor t = empty(dtype, shape_);
  for (int64_t i = 0; i < numel(); ++i) {
    int64_t off = offset_of_flat(i);
    if (dtype_is_float(dtype_) && dtype_is_float(dtype)) {
      // float -> float goes through fp32 so that narrowing rounds exactly once (f32 -> bf16/f16 RNE).
      store_element_f32(t.data_, dtype, i, load_element_f32(data_, dtype_, off));
    } else {
      store_element(t.data_, dtype, i, load_element(data_, dtype_, off));
    }
  }
  return t;
}

double Tensor::item(std::initializer_list<int64_t> index) const {
  if (int(index.size()) != dim())
    throw ValueError("Tensor::item: index: expected " + std::to_string(dim()) + " indices, got " +
                     std::to_string(index.size()));
  int64_t off = 0;
  int i = 0;
  for (int64_t v : index) {
    if (v < 0 || v >= shape_[i])
      throw ValueError("Tensor::item: index " + std::to_string(i) + ": expected 0 <= index < " +
                       std::to_string(shape_[i]) + ", got " + std::to_string(v));
    off += v * strides_[i++];
  }
  return load_element(data_, dtype_, off);
}

double Tensor::item_flat(int64_t flat_index) const {
  if (flat_index < 0 || flat_index >= numel())
    throw ValueError("Tensor::item_flat: index: expected 0 <= index < " + std::to_string(numel()) + ", got " +
                     std::to_string(flat_index));
  return load_element(data_, dtype_, offset_of_flat(flat_index));
}

void Tensor::set_item(std::initializer_list<int64_t> index, double value) {
  if (readonly_) throw ValueError("Tensor::set_item: tensor: expected a writable tensor, got a read-only view");
  if (int(index.size()) != dim())
    throw ValueError("Tensor::set_item: index: expected " + std::to_string(dim()) + " indices, got " +
                     std::to_string(index.size()));
  int64_t off = 0;
  int i = 0;
  for (int64_t v : index) {
    if (v < 0 || v >= shape_[i])
      throw ValueError("Tensor::set_item: index " + std::to_string(i) + ": expected 0 <= index < " +
                       std::to_string(shape_[i]) + ", got " + std::to_string(v));
    off += v * strides_[i++];
  }
  store_element(data_, dtype_, off, value);
}

std::string Tensor::describe() const {
  if (!defined_) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_.str();
}

void Tensor::copy_from_host(const void* src, size_t bytes) {
  size_t need = size_t(numel()) * element_size();
  if (bytes != need)
    throw ValueError("Tensor::from_values: values: expected " + std::to_string(numel()) + " elements for shape " +
                     shape_.str() + ", got " + std::to_string(bytes / element_size()));
  if (bytes) std::memcpy(data_, src, bytes);
}

}  // namespace moefuse
