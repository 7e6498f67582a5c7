// Round-to-nearest int4 group-wise quantisation (W4A16 weights), GPTQ's quantiser without calibration. Shared by
// the layer's random weights, quantisation on load and `moefuse quantize`, so they agree to the bit.
//
// Per group of G values v (docs/layer.md §5, "int4 weights"):
//   symmetric:  a = max|v|;  s = 2a / 15;  z = 8
//   asymmetric: lo = min(min v, 0), hi = max(max v, 0);  s = (hi - lo) / 15;  z = clamp(round(-lo / s), 1, 15)
//   (an all-zero group uses a = 1, or lo = -1 and hi = 1, as GPTQ does; z >= 1 so that GPTQ's checkpoint format,
//   which stores z - 1 in 4 bits, can hold it: a group with no negative value loses its top level)
// s is then rounded to fp16 (the dtype GPTQ checkpoints store; kept in fp32 if that would make it 0 or infinite),
// and q = clamp(round_half_even(v / s) + z, 0, 15), so that (q - z) * s is exact in fp32.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "moefuse/dtype.h"

namespace moefuse {

/// Quantises v[0..n) (n a multiple of G) into q[0..n) (0..15), scale[n / G] and zero[n / G]. Values must be finite.
inline void quantize_row_int4(const float* v, int64_t n, int64_t G, bool symmetric, uint8_t* q, float* scale,
                              uint8_t* zero) {
  for (int64_t g = 0; g < n / G; ++g) {
    const float* x = v + g * G;
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < G; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    float s;
    int z;
    if (symmetric) {
      float a = std::max(-lo, hi);
      if (a == 0.0f) a = 1.0f;
      s = 2.0f * a / 15.0f;
    } else {
      if (lo == 0.0f && hi == 0.0f) {
        lo = -1.0f;
        hi = 1.0f;
      }
      s = (hi - lo) / 15.0f;
    }
    const float s16 = to_f32(to_f16(s));
    if (s16 != 0.0f && std::isfinite(s16)) s = s16;
    if (symmetric) z = 8;
    else z = int(std::clamp(std::nearbyint(-lo / s), 1.0f, 15.0f));
    scale[g] = s;
    zero[g] = uint8_t(z);
    for (int64_t i = 0; i < G; ++i)
      q[g * G + i] = uint8_t(std::clamp(std::nearbyint(x[i] / s) + float(z), 0.0f, 15.0f));
  }
}

}  // namespace moefuse
