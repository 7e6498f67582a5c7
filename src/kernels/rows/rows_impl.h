// The rows kernels' one definition (the formulas of rows.h), as templates that each ISA file instantiates under its
// own compiler flags (MOEFUSE_ROWS_VARIANTS below). Included by rows_scalar.cpp and rows__<isa>.cpp only.
#pragma once

#include "base/elements.h"
#include "base/quantize.h"
#include "kernels/rows/rows.h"

namespace moefuse::rows::impl {

template <class T>
inline float round_as(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, bfloat16>) return to_f32(to_bf16(v));
  else return to_f32(to_f16(v));
}

// x * y, except that a NaN x gives x (quieted) whatever y is: which NaN a product of two NaNs returns must not
// depend on the compiler (x86 returns the first operand's, and compilers treat * as commutative, so they may put
// either operand first). rows.h's "x (*) y".
inline float mul_nan_left(float x, float y) { return std::isnan(x) ? x + x : x * y; }

template <class R>
void swiglu(int64_t n, const float* gate, const float* up, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    const float a = round_as<R>(gate[j]), b = round_as<R>(up[j]);
    out[j] = round_as<R>(mul_nan_left(b, silu(a)));
  }
}

inline void dequant_swiglu(int64_t n, const int32_t* gate, const int32_t* up, const float* gate_scale,
                           const float* up_scale, float row_scale, const float* smooth, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    float act = float(gate[j]) * gate_scale[j];
    act = mul_nan_left(act, row_scale);
    float lin = float(up[j]) * up_scale[j];
    lin = mul_nan_left(lin, row_scale);
    out[j] = mul_nan_left(lin, silu(act));
  }
  if (smooth)
    for (int64_t j = 0; j < n; ++j) out[j] = mul_nan_left(out[j], smooth[j]);
}

template <class T>
float quantize(int64_t n, const void* x, const float* smooth, float* tmp, int8_t* q) {
  const T* in = static_cast<const T*>(x);
  if (smooth)
    for (int64_t j = 0; j < n; ++j) tmp[j] = widen_f32(in[j]) * smooth[j];
  else if (static_cast<const void*>(tmp) != x)
    for (int64_t j = 0; j < n; ++j) tmp[j] = widen_f32(in[j]);
  return quantize_row_dynamic(tmp, n, q);
}

template <class T>
void combine(int64_t n, const void* row, float s, bool accumulate, float* acc) {
  const T* v = static_cast<const T*>(row);
  if (accumulate)
    for (int64_t j = 0; j < n; ++j) acc[j] = acc[j] + s * widen_f32(v[j]);
  else
    for (int64_t j = 0; j < n; ++j) acc[j] = s * widen_f32(v[j]);
}

inline void dequant(int64_t n, const int32_t* acc, const float* scale, float row_scale, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = float(acc[j]) * scale[j];
  for (int64_t j = 0; j < n; ++j) out[j] = out[j] * row_scale;
}

template <class T>
void scale_round(int64_t n, const void* x, float s, float* out) {
  const T* in = static_cast<const T*>(x);
  for (int64_t j = 0; j < n; ++j) out[j] = round_as<T>(s * widen_f32(in[j]));
}

}  // namespace moefuse::rows::impl

// Defines the exp-free rows kernels of one ISA as plain functions named <op>_<types>__<isa> (declared in
// variants.h); the compiler vectorises them under the file's flags.
#define MOEFUSE_ROWS_PLAIN_VARIANTS(isa)                                                                              \
  namespace moefuse::rows::detail {                                                                                   \
  float quantize_f32_s8__##isa(int64_t n, const void* x, const float* sm, float* t, int8_t* q) {                      \
    return impl::quantize<float>(n, x, sm, t, q);                                                                     \
  }                                                                                                                   \
  float quantize_bf16_s8__##isa(int64_t n, const void* x, const float* sm, float* t, int8_t* q) {                     \
    return impl::quantize<bfloat16>(n, x, sm, t, q);                                                                  \
  }                                                                                                                   \
  float quantize_f16_s8__##isa(int64_t n, const void* x, const float* sm, float* t, int8_t* q) {                      \
    return impl::quantize<float16>(n, x, sm, t, q);                                                                   \
  }                                                                                                                   \
  void combine_f32_f32__##isa(int64_t n, const void* r, float s, bool acc, float* a) {                               \
    impl::combine<float>(n, r, s, acc, a);                                                                            \
  }                                                                                                                   \
  void combine_bf16_f32__##isa(int64_t n, const void* r, float s, bool acc, float* a) {                              \
    impl::combine<bfloat16>(n, r, s, acc, a);                                                                         \
  }                                                                                                                   \
  void combine_f16_f32__##isa(int64_t n, const void* r, float s, bool acc, float* a) {                               \
    impl::combine<float16>(n, r, s, acc, a);                                                                          \
  }                                                                                                                   \
  void dequant_s32_f32__##isa(int64_t n, const int32_t* a, const float* s, float rs, float* o) {                      \
    impl::dequant(n, a, s, rs, o);                                                                                    \
  }                                                                                                                   \
  void scale_round_f32__##isa(int64_t n, const void* x, float s, float* o) { impl::scale_round<float>(n, x, s, o); }  \
  void scale_round_bf16__##isa(int64_t n, const void* x, float s, float* o) {                                         \
    impl::scale_round<bfloat16>(n, x, s, o);                                                                          \
  }                                                                                                                   \
  void scale_round_f16__##isa(int64_t n, const void* x, float s, float* o) { impl::scale_round<float16>(n, x, s, o); }\
  }

// Defines the exp-using rows kernels (swiglu, dequant_swiglu, and the exp row the tests and benches call) from the
// scalar templates: the scalar ISA's definition (vector ISAs use rows_vec.h's MOEFUSE_ROWS_VEC_VARIANTS).
#define MOEFUSE_ROWS_SCALAR_EXP_VARIANTS(isa)                                                                         \
  namespace moefuse::rows::detail {                                                                                   \
  void swiglu_f32r_f32__##isa(int64_t n, const float* g, const float* u, float* o) {                                  \
    impl::swiglu<float>(n, g, u, o);                                                                                  \
  }                                                                                                                   \
  void swiglu_bf16r_f32__##isa(int64_t n, const float* g, const float* u, float* o) {                                 \
    impl::swiglu<bfloat16>(n, g, u, o);                                                                               \
  }                                                                                                                   \
  void swiglu_f16r_f32__##isa(int64_t n, const float* g, const float* u, float* o) {                                  \
    impl::swiglu<float16>(n, g, u, o);                                                                                \
  }                                                                                                                   \
  void dequant_swiglu_s32_f32__##isa(int64_t n, const int32_t* g, const int32_t* u, const float* gs, const float* us, \
                                     float rs, const float* sm, float* o) {                                          \
    impl::dequant_swiglu(n, g, u, gs, us, rs, sm, o);                                                                 \
  }                                                                                                                   \
  void exp_f32__##isa(int64_t n, const float* x, float* o) {                                                          \
    for (int64_t j = 0; j < n; ++j) o[j] = exp_f32(x[j]);                                                             \
  }                                                                                                                   \
  }
