// Element-wise load/store of any DType through a type switch. For references, tools and tests — never inside a
// kernel's inner loop (kernels get typed pointers from their op).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "moefuse/dtype.h"

namespace moefuse {

/// Element `i` (in elements from `base`) widened exactly to fp32. Integer types convert with RNE where an
/// exact fp32 does not exist (|v| > 2^24).
inline float load_element_f32(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::f16: return to_f32(static_cast<const float16*>(base)[i]);
    case DType::bf16: return to_f32(static_cast<const bfloat16*>(base)[i]);
    case DType::i8: return float(static_cast<const int8_t*>(base)[i]);
    case DType::u8: return float(static_cast<const uint8_t*>(base)[i]);
    case DType::i32: return float(static_cast<const int32_t*>(base)[i]);
    case DType::i64: return float(static_cast<const int64_t*>(base)[i]);
    case DType::boolean: return static_cast<const uint8_t*>(base)[i] ? 1.0f : 0.0f;
  }
  return 0.0f;
}

/// Element `i` as double (exact for every dtype but i64 beyond 2^53).
inline double load_element(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::i32: return double(static_cast<const int32_t*>(base)[i]);
    case DType::i64: return double(static_cast<const int64_t*>(base)[i]);
    default: return double(load_element_f32(base, t, i));
  }
}

/// Element `i` of an integer tensor (i8, u8, i32, i64, bool) as int64, exactly.
inline int64_t load_element_int(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::i8: return static_cast<const int8_t*>(base)[i];
    case DType::u8: return static_cast<const uint8_t*>(base)[i];
    case DType::i32: return static_cast<const int32_t*>(base)[i];
    case DType::i64: return static_cast<const int64_t*>(base)[i];
    case DType::boolean: return static_cast<const uint8_t*>(base)[i] ? 1 : 0;
    default: return int64_t(load_element_f32(base, t, i));
  }
}

/// Stores an fp32 value, narrowing once with RNE for bf16/f16.
inline void store_element_f32(void* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::f32: static_cast<float*>(base)[i] = v; return;
    case DType::f16: static_cast<float16*>(base)[i] = to_f16(v); return;
    case DType::bf16: static_cast<bfloat16*>(base)[i] = to_bf16(v); return;
    default: break;
  }
}

/// One element of a float dtype widened exactly to fp32, typed: what kernels' inner loops use instead of
/// load_element_f32 (a template on the element type gets one of these per dtype, no switch per element).
inline float widen_f32(float v) { return v; }
inline float widen_f32(bfloat16 v) { return to_f32(v); }
inline float widen_f32(float16 v) { return to_f32(v); }

/// Widens n elements of a float dtype, element i at src + i * stride (elements), exactly into dst[0..n) (fp32): the
/// counterpart of store_row, one typed loop per dtype.
inline void widen_row(const void* src, DType dt, int64_t n, int64_t stride, float* dst) {
  auto run = [&](const auto* p) {
    if (stride == 1)
      for (int64_t i = 0; i < n; ++i) dst[i] = widen_f32(p[i]);
    else
      for (int64_t i = 0; i < n; ++i) dst[i] = widen_f32(p[i * stride]);
  };
  switch (dt) {
    case DType::f32: return run(static_cast<const float*>(src));
    case DType::bf16: return run(static_cast<const bfloat16*>(src));
    case DType::f16: return run(static_cast<const float16*>(src));
    default: return;
  }
}

/// Stores v[0..n) (fp32) into a contiguous run of a float dtype, rounding each value once (RNE). Other dtypes:
/// nothing is written (callers only pass float outputs).
inline void store_row(const float* v, int64_t n, DType dt, void* dst) {
  switch (dt) {
    case DType::f32:
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = v[i];
      return;
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) static_cast<bfloat16*>(dst)[i] = to_bf16(v[i]);
      return;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) static_cast<float16*>(dst)[i] = to_f16(v[i]);
      return;
    default: return;
  }
}

template <class I>
inline I saturate_to(double v) {
  if (std::isnan(v)) return 0;
  double lo = double(std::numeric_limits<I>::min()), hi = double(std::numeric_limits<I>::max());
  if (v <= lo) return std::numeric_limits<I>::min();
  if (v >= hi) return std::numeric_limits<I>::max();
  return I(v);  // truncates toward zero
}

/// Stores a double: float types through fp32 (RNE), integer types truncated toward zero and saturated.
inline void store_element(void* base, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32:
    case DType::f16:
    case DType::bf16: store_element_f32(base, t, i, float(v)); return;
    case DType::i8: static_cast<int8_t*>(base)[i] = saturate_to<int8_t>(v); return;
    case DType::u8: static_cast<uint8_t*>(base)[i] = saturate_to<uint8_t>(v); return;
    case DType::i32: static_cast<int32_t*>(base)[i] = saturate_to<int32_t>(v); return;
    case DType::i64: static_cast<int64_t*>(base)[i] = saturate_to<int64_t>(v); return;
    case DType::boolean: static_cast<uint8_t*>(base)[i] = v != 0.0 ? 1 : 0; return;
  }
}

}  // namespace moefuse
