// The oracle's statement of moefuse's fp32 exp (the algorithm documented in src/base/expf.h, which the oracle may not
// include: it shares no compute code with the library). Written independently of that header: the table holds
// 2^(j/32) itself (hex floats) and the scale 2^(k/32) is ldexp(2^(j/32), floor(k/32)) instead of bit arithmetic,
// the same doubles by other means, so the layer-vs-oracle tests check the library's table and bit tricks too.
#pragma once

#include <cmath>

namespace moefuse::oracle {

inline float exp_f32(float x) {
  static constexpr double kPow2[32] = {
      0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0, 0x1.172b83c7d517bp+0,
      0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0, 0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0,
      0x1.3dea64c123422p+0, 0x1.44e086061892dp+0, 0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0,
      0x1.6247eb03a5585p+0, 0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
      0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0, 0x1.ae89f995ad3adp+0,
      0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0, 0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0,
      0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0};
  if (std::isnan(x)) return x + x;
  if (x > 0x1.62e42ep6f) return INFINITY;
  if (x < -0x1.9fe368p6f) return 0.0f;
  const double xd = x, a = 0x1.71547652b82fep+0 * 32.0, shift = 0x1.8p+52;
  const double k = std::fma(a, xd, shift) - shift;  // 32 x / ln 2 rounded to an integer (ties to even)
  const double r = std::fma(a, xd, -k);
  const long long ki = static_cast<long long>(k);
  const long long j = ki & 31;  // k mod 32 in [0, 32); (k - j) / 32 = floor(k / 32)
  const double s = std::ldexp(kPow2[j], int((ki - j) / 32));
  const double c0 = 0x1.c6af84b912394p-5 / 32768.0, c1 = 0x1.ebfce50fac4f3p-3 / 1024.0;
  const double c2 = 0x1.62e42ff0c52d6p-1 / 32.0;
  const double y = std::fma(std::fma(c0, r, c1), r * r, std::fma(c2, r, 1.0));
  return float(y * s);
}

}  // namespace moefuse::oracle
