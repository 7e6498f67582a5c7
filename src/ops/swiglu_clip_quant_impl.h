// The one formula source of swiglu_clip_quant's per-ISA steps (swiglu_clip_quant_fast.h), included by
// swiglu_clip_quant_fast.cpp (scalar) and swiglu_clip_quant__avx2.cpp / __avx512.cpp, each in its own namespace.
// Branch-free forms, so that GCC vectorises the loops under each file's flags:
//  - the clip's fmax over |v| as the largest bit pattern of |v| among the non-NaN ones (non-negative floats order as
//    their patterns do; fmax skips NaNs, and m starts at +0, pattern 0);
//  - the clip as two selects (compare, then blend), the reference's two ifs in its order;
//  - the bf16 round trip as round_row_impl.h's rounding, left in the high half of the fp32 pattern;
//  - the f16 widening as to_f32(float16)'s three cases, each computed, then selected.
// tests/ops/swiglu_clip_quant_fast_test.cpp holds every variant to the scalar rules bit for bit.
#include <cstdint>

#include "moefuse/dtype.h"

namespace moefuse::MOEFUSE_SWIGLU_CLIP_NS {

inline void round_bf16_in_place(int64_t n, float* __restrict v) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = f32_bits(v[i]);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;  // RNE on the dropped 16 bits
    const uint32_t quiet = (u | 0x00400000u) & 0xffff0000u;                  // NaN: quiet, sign and high payload
    const bool nan = int32_t(u & 0x7fffffffu) > int32_t(0x7f800000u);
    v[i] = f32_from_bits(nan ? quiet : rounded);
  }
}

inline void clip_row(int64_t n, float alpha, float* __restrict v) {
  uint32_t m_bits = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t a = f32_bits(v[i]) & 0x7fffffffu;
    // NaN (a above inf's pattern): 0, by a mask from the sign of inf - a (no select, which GCC left scalar here).
    const uint32_t keep = ~uint32_t(int32_t(0x7f800000u - a) >> 31);
    const uint32_t c = a & keep;
    m_bits = m_bits > c ? m_bits : c;
  }
  const float t = alpha * f32_from_bits(m_bits), nt = -t;
  for (int64_t i = 0; i < n; ++i) {
    float x = v[i];
    x = x > t ? t : x;    // Min(s, t)
    x = x < nt ? nt : x;  // Max(., -t)
    v[i] = x;
  }
}

inline void widen_bf16(int64_t n, const bfloat16* __restrict src, float* __restrict out) {
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) out[i] = f32_from_bits(uint32_t(s[i]) << 16);
}

// to_f32(float16), every case computed then selected: subnormals (and zeros) as m * 2^-24, exact in fp32.
inline void widen_f16(int64_t n, const float16* __restrict src, float* __restrict out) {
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t h = s[i];
    const uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    const uint32_t special = sign | 0x7f800000u | (m << 13);  // inf / NaN, payload kept
    const uint32_t normal = sign | ((e + 112u) << 23) | (m << 13);
    const uint32_t sub = sign | f32_bits(float(int32_t(m)) * 0x1p-24f);
    // Selected by masks: as ?: GCC moved the fp product into a branch and left the loop scalar.
    const uint32_t is_special = 0u - uint32_t(e == 0x1fu), is_sub = 0u - uint32_t(e == 0u);
    const uint32_t is_normal = ~(is_special | is_sub);
    out[i] = f32_from_bits((special & is_special) | (normal & is_normal) | (sub & is_sub));
  }
}

}  // namespace moefuse::MOEFUSE_SWIGLU_CLIP_NS
