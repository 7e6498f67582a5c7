// The rows kernels that call exp (swiglu, dequant_swiglu) written with intrinsics, for one vector ISA (the traits
// V of rows__avx2.cpp / rows__avx512.cpp): the operations of rows_impl.h in the same order on V::kLanes lanes, with
// exp_f32's vector version (base/expf.h), so every lane has the scalar kernel's bits. The last n mod kLanes
// elements go through the scalar template (the same bits). Included by the rows__<isa>.cpp files only.
#pragma once

#include "base/expf.h"
#include "kernels/rows/rows_impl.h"

namespace moefuse::rows::vec {

// silu(v) = v / (1 + exp(-v)): -v flips the sign bit, as the scalar negation does.
template <class V>
inline typename V::F silu(typename V::F v) {
  return V::div(v, V::add(V::set1(1.0f), V::exp(V::neg(v))));
}

// impl::mul_nan_left: x * y, a NaN x kept (quieted) whatever y is.
template <class V>
inline typename V::F mul_nan_left(typename V::F x, typename V::F y) {
  return V::select_nan(x, V::add(x, x), V::mul(x, y));
}

// R(v) of rows.h for dtype R on a vector (bitwise round_as<R>, NaN included).
template <class V, class R>
inline typename V::F round_as(typename V::F v) {
  if constexpr (std::is_same_v<R, float>) return v;
  else if constexpr (std::is_same_v<R, bfloat16>) return V::round_bf16(v);
  else return V::round_f16(v);
}

template <class V, class R>
void swiglu(int64_t n, const float* gate, const float* up, float* out) {
  constexpr int64_t L = V::kLanes;
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const auto a = round_as<V, R>(V::load(gate + j)), b = round_as<V, R>(V::load(up + j));
    V::store(out + j, round_as<V, R>(mul_nan_left<V>(b, silu<V>(a))));
  }
  impl::swiglu<R>(n - j, gate + j, up + j, out + j);
}

template <class V>
void dequant_swiglu(int64_t n, const int32_t* gate, const int32_t* up, const float* gate_scale,
                    const float* up_scale, float row_scale, const float* smooth, float* out) {
  constexpr int64_t L = V::kLanes;
  const auto rs = V::set1(row_scale);
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const auto act = mul_nan_left<V>(V::mul(V::cvt_i32(gate + j), V::load(gate_scale + j)), rs);
    const auto lin = mul_nan_left<V>(V::mul(V::cvt_i32(up + j), V::load(up_scale + j)), rs);
    auto v = mul_nan_left<V>(lin, silu<V>(act));
    if (smooth) v = mul_nan_left<V>(v, V::load(smooth + j));
    V::store(out + j, v);
  }
  impl::dequant_swiglu(n - j, gate + j, up + j, gate_scale + j, up_scale + j, row_scale, smooth ? smooth + j : nullptr,
                       out + j);
}

}  // namespace moefuse::rows::vec

// Defines the exp-using rows kernels of one ISA (the rest come from MOEFUSE_ROWS_PLAIN_VARIANTS) with traits V.
#define MOEFUSE_ROWS_VEC_VARIANTS(isa, V)                                                                             \
  namespace moefuse::rows::detail {                                                                                   \
  void swiglu_f32r_f32__##isa(int64_t n, const float* g, const float* u, float* o) {                                 \
    vec::swiglu<V, float>(n, g, u, o);                                                                                \
  }                                                                                                                   \
  void swiglu_bf16r_f32__##isa(int64_t n, const float* g, const float* u, float* o) {                                 \
    vec::swiglu<V, bfloat16>(n, g, u, o);                                                                             \
  }                                                                                                                   \
  void swiglu_f16r_f32__##isa(int64_t n, const float* g, const float* u, float* o) {                                  \
    vec::swiglu<V, float16>(n, g, u, o);                                                                              \
  }                                                                                                                   \
  void dequant_swiglu_s32_f32__##isa(int64_t n, const int32_t* g, const int32_t* u, const float* gs, const float* us, \
                                     float rs, const float* sm, float* o) {                                          \
    vec::dequant_swiglu<V>(n, g, u, gs, us, rs, sm, o);                                                               \
  }                                                                                                                   \
  void exp_f32__##isa(int64_t n, const float* x, float* o) {                                                          \
    int64_t j = 0;                                                                                                    \
    for (; j + V::kLanes <= n; j += V::kLanes) V::store(o + j, V::exp(V::load(x + j)));                               \
    for (; j < n; ++j) o[j] = exp_f32(x[j]);                                                                          \
  }                                                                                                                   \
  /* The scalar exp_f32 under this file's flags (std::fma one instruction): the exhaustive test's fast reference */    \
  void exp_f32_scalar__##isa(int64_t n, const float* x, float* o) {                                                   \
    for (int64_t j = 0; j < n; ++j) o[j] = exp_f32(x[j]);                                                             \
  }                                                                                                                   \
  }
