// Dynamic symmetric int8 quantisation of one row (docs/operators.md, Numerics: dynamic int8 quantisation), shared by
// init_routing (quant_mode 1), dequant_swiglu_quant, swiglu_clip_quant and the layer, so they agree to the bit:
//   s = max|v| / 127 (fp32);  q = round_half_even(v / s) clamped to [-127, 127];  an all-zero row gives s = 0, q = 0.
// Rows holding non-finite values (decided here, the sources are silent): a NaN anywhere makes s = NaN and every
// q = 0 (the row is flagged, not silently quantised); otherwise an infinity makes s = inf, the infinite entries
// q = ±127 (sign kept) and the finite ones 0 — so q * s gives back ±inf where the input was infinite.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace moefuse {

/// Quantises v[0..n) into q[0..n) and returns the scale s (so v ~= q * s).
///
/// Written so that the compiler vectorises both passes, with the bits of the plain formula above (fmax, nearbyint,
/// fmin; tested against it in tests/base/quantize_test.cpp):
///  - max|v| as the largest of the bit patterns of |v| (as unsigned integers they order as the values do, and every
///    NaN lies above +inf, so the largest pattern also tells whether a NaN is there);
///  - in a finite row with s > 0, |v / s| <= 190.5 (s = max|v| / 127 rounded; the bound is reached when s is a
///    subnormal), and on such x, (x + 1.5 * 2^23) - 1.5 * 2^23 is x rounded half to even: the sum lies in
///    [2^23, 2^24), where fp32's spacing is 1 and 1.5 * 2^23 is even, and the subtraction is exact (-ffp-contract=off
///    keeps the sum rounded). The clamp to [-127, 127] follows, on the integer.
inline float quantize_row_dynamic(const float* v, int64_t n, int8_t* q) {
  constexpr uint32_t kAbsMask = 0x7fffffffu, kInfBits = 0x7f800000u;
  uint32_t amax_bits = 0;
  for (int64_t i = 0; i < n; ++i) amax_bits = std::max(amax_bits, std::bit_cast<uint32_t>(v[i]) & kAbsMask);
  if (amax_bits >= kInfBits) {  // NaN: s = NaN, q = 0; otherwise infinity: s = inf, q = +-127 where v is infinite
    const bool nan = amax_bits > kInfBits;
    for (int64_t i = 0; i < n; ++i)
      q[i] = (!nan && std::isinf(v[i])) ? (v[i] > 0 ? int8_t(127) : int8_t(-127)) : int8_t(0);
    return nan ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  }
  const float s = std::bit_cast<float>(amax_bits) / 127.0f;
  if (s == 0.0f) {  // an all-zero row, or max|v| so small that s underflows to 0
    for (int64_t i = 0; i < n; ++i) q[i] = 0;
    return s;
  }
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  for (int64_t i = 0; i < n; ++i) q[i] = int8_t(std::clamp(int32_t((v[i] / s + kRound) - kRound), -127, 127));
  return s;
}

}  // namespace moefuse
