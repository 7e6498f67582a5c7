// The oracle's own statement of the bf16 contract's step (src/kernels/gemm/gemm.h, "bf16 weights"): one fused
// multiply-add with subnormal inputs read as zero and a result that is tiny after rounding flushed to a zero of its
// sign (x86's MXCSR.DAZ|FTZ, vdpbf16ps's arithmetic).
//
// Why not base/bf16_dot.h: that file is what the kernels and the scalar reference compute with, and the oracle must
// not share the code it checks. This one is written another way — the exact a * b + c held in two doubles, rounded
// to 24 significant bits by hand with an unbounded exponent, then classified — so that a mistake in either shows up
// as a difference. tests/kernels/bf16_dot_test.cpp checks both against the hardware.
#pragma once

#include <cfloat>
#include <cmath>
#include <limits>

namespace moefuse::oracle {

/// DAZ: a subnormal x is read as a zero of its sign.
inline float daz(float x) { return x != 0.0f && std::fabs(x) < FLT_MIN ? (std::signbit(x) ? -0.0f : 0.0f) : x; }

/// fma(a, b, c) under DAZ and FTZ: inputs through daz(); the exact a * b + c rounded once to nearest even at 24 bits;
/// a rounded magnitude below FLT_MIN (tininess after rounding, exponent unbounded) gives a zero of the exact value's
/// sign. NaN and infinities as IEEE's fma (which NaN comes out is not specified).
inline float fma_daz_ftz(float a, float b, float c) {
  a = daz(a), b = daz(b), c = daz(c);
  const double p = double(a) * double(b);  // exact: 24 + 24 significant bits, exponent well inside double's
  const double q = double(c);
  const double s = p + q;
  // Non-finite operands: IEEE's special cases, as double arithmetic gives them. A zero sum of finite p and q is
  // exact (both are multiples of 2^-298, far above double's subnormals) and carries IEEE's sign of an exact zero.
  if (!std::isfinite(p) || !std::isfinite(q) || s == 0.0) return float(s);
  // v = s + e exactly (Knuth's TwoSum; no overflow: |p|, |q| < 2^257).
  const double bv = s - p, av = s - bv;
  const double e = (p - av) + (q - bv);
  // v's binary exponent: s's, except when s is a power of two and e pulls v below it.
  int k = std::ilogb(s);
  if (std::fabs(s) == std::ldexp(1.0, k) && e != 0.0 && std::signbit(e) != std::signbit(s)) --k;
  // |v| / ulp with ulp = 2^(k - 23): t (a double with at most 29 fraction bits, in [2^23, 2^24]) plus te, the
  // scaled e, which is below 2^-29 in magnitude and so only breaks the ties of t's fraction.
  const int shift = 23 - k;
  const double t = std::ldexp(std::fabs(s), shift);
  const double te = std::ldexp(std::signbit(s) ? -e : e, shift);
  double n = std::floor(t);
  const double frac = t - n;  // exact
  if (frac > 0.5 || (frac == 0.5 && (te > 0.0 || (te == 0.0 && std::fmod(n, 2.0) != 0.0)))) n += 1.0;
  const double r = std::ldexp(n, -shift);  // |v| rounded to 24 bits, exponent unbounded
  const bool negative = std::signbit(s);
  if (r < double(FLT_MIN)) return negative ? -0.0f : 0.0f;  // tiny after rounding: flushed
  if (r >= 0x1p128) return negative ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  return negative ? -float(r) : float(r);  // exact
}

}  // namespace moefuse::oracle
