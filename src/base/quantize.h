// Dynamic symmetric int8 quantisation of one row (decisions.md §3), shared by init_routing (quant_mode 1),
// dequant_swiglu_quant, swiglu_clip_quant and the layer, so they agree to the bit:
//   s = max|v| / 127 (fp32);  q = round_half_even(v / s) clamped to [-127, 127];  an all-zero row gives s = 0, q = 0.
#pragma once

#include <cmath>
#include <cstdint>

namespace moefuse {

/// Quantises v[0..n) into q[0..n) and returns the scale s (so v ~= q * s).
inline float quantize_row_dynamic(const float* v, int64_t n, int8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(v[i]));
  const float s = amax / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (s == 0.0f) {
      q[i] = 0;
      continue;
    }
    // nearbyint rounds half to even in the default rounding mode.
    float r = std::nearbyint(v[i] / s);
    q[i] = int8_t(std::fmin(127.0f, std::fmax(-127.0f, r)));
  }
  return s;
}

}  // namespace moefuse
