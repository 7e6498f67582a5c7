// Dynamic symmetric int8 quantisation of one row (decisions.md §3), shared by init_routing (quant_mode 1),
// dequant_swiglu_quant, swiglu_clip_quant and the layer, so they agree to the bit:
//   s = max|v| / 127 (fp32);  q = round_half_even(v / s) clamped to [-127, 127];  an all-zero row gives s = 0, q = 0.
// Rows holding non-finite values (decided here, the sources are silent): a NaN anywhere makes s = NaN and every
// q = 0 (the row is flagged, not silently quantised); otherwise an infinity makes s = inf, the infinite entries
// q = ±127 (sign kept) and the finite ones 0 — so q * s gives back ±inf where the input was infinite.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace moefuse {

/// Quantises v[0..n) into q[0..n) and returns the scale s (so v ~= q * s).
inline float quantize_row_dynamic(const float* v, int64_t n, int8_t* q) {
  float amax = 0.0f;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    nan |= std::isnan(v[i]);
    amax = std::fmax(amax, std::fabs(v[i]));
  }
  if (nan) {
    for (int64_t i = 0; i < n; ++i) q[i] = 0;
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float s = amax / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (s == 0.0f) {
      q[i] = 0;
      continue;
    }
    if (std::isinf(s)) {
      q[i] = std::isinf(v[i]) ? (v[i] > 0 ? int8_t(127) : int8_t(-127)) : int8_t(0);
      continue;
    }
    // nearbyint rounds half to even in the default rounding mode.
    float r = std::nearbyint(v[i] / s);
    q[i] = int8_t(std::fmin(127.0f, std::fmax(-127.0f, r)));
  }
  return s;
}

}  // namespace moefuse
