// moefuse/tensor.h — a typed, strided, n-dimensional array: owning, or a view over caller memory.
//
// A Tensor is a small value (a shared pointer to storage plus dtype, shape and strides); copying it copies the
// reference, not the data. Shapes and strides live inline (at most kMaxDims dimensions), so making a view never
// allocates — the layer's steady-state forward relies on that.
//
// Strides are in elements, not bytes. Owning storage is 64-byte aligned. A Tensor made from const memory is
// read-only: passing it where an operator writes raises ValueError.
//
// An undefined Tensor (default-constructed) is how the API spells "argument not given" for optional inputs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "moefuse/dtype.h"

namespace moefuse {

inline constexpr int kMaxDims = 8;

/// A list of at most kMaxDims extents (or strides), stored inline.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return d_[size_t(i)]; }
  int64_t& operator[](int i) { return d_[size_t(i)]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + rank_; }
  /// Product of the extents (1 for rank 0).
  int64_t numel() const;
  /// Appends one extent; throws ValueError past kMaxDims.
  void push_back(int64_t v);
  /// "[2, 3, 4]"
  std::string str() const;

  friend bool operator==(const Shape& a, const Shape& b);

 private:
  std::array<int64_t, kMaxDims> d_{};
  int rank_ = 0;
};

/// Maps a C++ element type to its DType (float, int8_t, uint8_t, int32_t, int64_t, bool, bfloat16, float16).
template <class T>
struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };

class Tensor {
 public:
  /// An undefined tensor ("not given").
  Tensor() = default;

  /// Owning tensor, contiguous, contents uninitialised. Throws ValueError for negative extents and ResourceError
  /// when the allocation fails.
  static Tensor empty(DType dtype, const Shape& shape);
  /// Owning tensor, contiguous, every byte zero.
  static Tensor zeros(DType dtype, const Shape& shape);
  /// Owning tensor, contiguous, filled with `value` converted to `dtype` (float types round RNE, ints truncate).
  static Tensor full(DType dtype, const Shape& shape, double value);
  /// Non-owning, writable view over caller memory. `strides` empty = contiguous row-major. The caller keeps the
  /// memory alive for as long as the view (and any view made from it) is used.
  static Tensor view(void* data, DType dtype, const Shape& shape, const Shape& strides = {});
  /// Non-owning, read-only view over caller memory.
  static Tensor view(const void* data, DType dtype, const Shape& shape, const Shape& strides = {});
  /// Read-only view over memory kept alive by `owner`: the view (and every view made from it) shares ownership of
  /// `owner`, so the memory stays valid for as long as any of them lives. Used for tensors that live inside a
  /// memory-mapped file (io.h). `strides` empty = contiguous row-major. Same checks as view(); a null `owner` is a
  /// ValueError.
  static Tensor view_with_owner(std::shared_ptr<void> owner, const void* data, DType dtype, const Shape& shape,
                                const Shape& strides = {});
  /// Owning tensor holding a copy of `values` (row-major), which must have shape.numel() elements.
  template <class T>
  static Tensor from_values(const Shape& shape, std::span<const T> values) {
    Tensor t = empty(dtype_of<T>::value, shape);
    t.copy_from_host(values.data(), values.size() * sizeof(T));
    return t;
  }
  template <class T>
  static Tensor from_values(const Shape& shape, std::initializer_list<T> values) {
    return from_values<T>(shape, std::span<const T>(values.begin(), values.size()));
  }

  bool defined() const { return defined_; }
  DType dtype() const { return dtype_; }
  int dim() const { return shape_.rank(); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  /// Extent of dimension d; negative d counts from the end. Throws ValueError when out of range.
  int64_t size(int d) const;
  int64_t stride(int d) const;
  int64_t numel() const { return shape_.numel(); }
  size_t element_size() const { return dtype_size(dtype_); }
  /// True when the strides are those of a row-major contiguous array (extents of 1 are ignored).
  bool is_contiguous() const;
  bool is_readonly() const { return readonly_; }
  /// True when the tensor owns (shares ownership of) its storage.
  bool owns_storage() const { return storage_ != nullptr; }

  void* data() const { return data_; }
  /// Typed pointer; throws TypeError when T does not match dtype().
  template <class T>
  T* data_as() const {
    check_dtype_for_access(dtype_of<std::remove_const_t<T>>::value);
    return static_cast<T*>(data_);
  }

  /// View with two dimensions swapped (no copy).
  Tensor transpose(int d0, int d1) const;
  /// View of [start, start+length) along dimension d (no copy).
  Tensor narrow(int d, int64_t start, int64_t length) const;
  /// View with a new shape of the same numel; requires a contiguous tensor (throws ValueError otherwise).
  Tensor reshape(const Shape& shape) const;
  /// Same data as a read-only view.
  Tensor as_readonly() const;
  /// Contiguous copy (always a new owning tensor).
  Tensor clone() const;
  /// This tensor if already contiguous, else a contiguous copy.
  Tensor contiguous() const;
  /// Converted copy: float <-> float with RNE, float -> int truncates toward zero, int -> float exact where
  /// representable (RNE otherwise).
  Tensor to(DType dtype) const;

  /// Element at a multi-index, widened to double (for tests, tools and messages — not for hot loops).
  double item(std::initializer_list<int64_t> index) const;
  /// Element at a flat row-major position (respects strides).
  double item_flat(int64_t flat_index) const;
  /// Stores `value` converted to dtype() (as in full()).
  void set_item(std::initializer_list<int64_t> index, double value);

  /// "bf16[2, 3]"
  std::string describe() const;

 private:
  void copy_from_host(const void* src, size_t bytes);
  void check_dtype_for_access(DType requested) const;
  int64_t offset_of_flat(int64_t flat_index) const;

  std::shared_ptr<std::byte> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::f32;
  bool defined_ = false;
  bool readonly_ = false;
  Shape shape_;
  Shape strides_;
};

/// Row-major contiguous strides for a shape.
Shape contiguous_strides(const Shape& shape);

}  // namespace moefuse
