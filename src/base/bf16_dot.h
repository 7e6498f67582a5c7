// The bf16 dot-product step: one fused multiply-add with denormal inputs read as zero and denormal results flushed
// to zero, the arithmetic of x86's vdpbf16ps (AVX512-BF16) and of an fma under MXCSR's DAZ and FTZ bits.
//
// Why it exists: products whose weights are bf16 (and FP8, which the contract widens to bf16) follow vdpbf16ps's
// definition, so that CPUs with AVX512-BF16 run them at twice the fp32 FMA rate and every other CPU gives the same
// bits with plain FMAs (src/kernels/gemm/gemm.h, "bf16 weights"; docs/operators.md, grouped_matmul). vdpbf16ps
// takes pairs of k, the odd element first, and rounds after each product:
//     acc = fma_daz_ftz(a[2i + 1], b[2i + 1], acc);   acc = fma_daz_ftz(a[2i], b[2i], acc)
// This file is the portable C++ statement of one step; SIMD code gets the same bits from FMAs run under
// DenormalsAreZero below.
#pragma once

#include <cfloat>
#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace moefuse {

/// x, or a zero of x's sign when x is subnormal (denormals-are-zero on an input).
inline float denormal_as_zero(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }

/// fma(a, b, c) as x86 computes it with MXCSR.DAZ and MXCSR.FTZ set: subnormal a, b and c are read as zeros of
/// their sign; the exact a * b + c is rounded to nearest even; a result that is tiny (below FLT_MIN in magnitude)
/// after rounding to 24 bits with an unbounded exponent is replaced by a zero of its sign. That tininess test is
/// x86's ("after rounding"), and it differs from "std::fma's result is subnormal" in one window: an exact value in
/// [FLT_MIN - 2^-150, FLT_MIN - 2^-151) rounds to FLT_MIN at subnormal precision but is tiny at 24 bits (checked on
/// vdpbf16ps and on MXCSR FMAs, tests/kernels/bf16_dot_test.cpp).
inline float fma_daz_ftz(float a, float b, float c) {
  a = denormal_as_zero(a);
  b = denormal_as_zero(b);
  c = denormal_as_zero(c);
  const float r = std::fma(a, b, c);
  const float mag = std::fabs(r);
  if (mag < FLT_MIN) return std::copysign(0.0f, r);  // r is subnormal or zero: the result is tiny
  if (mag != FLT_MIN) return r;
  // |r| == FLT_MIN: exact = s + e with s the double sum and e its error (a * b is exact in double: 24 + 24 bits;
  // TwoSum is exact without overflow). Tiny iff |exact| < FLT_MIN - 2^-151 (at that value the tie rounds to even,
  // FLT_MIN, which is normal).
  const double p = double(a) * double(b), q = double(c);
  double s = p + q;
  const double bp = s - q;
  double e = (p - bp) + (q - (s - bp));
  if (s < 0) s = -s, e = -e;
  const double limit = double(FLT_MIN) - std::ldexp(1.0, -151);
  const bool tiny = s < limit || (s == limit && e < 0);
  return tiny ? std::copysign(0.0f, r) : r;
}

#if defined(__x86_64__) || defined(__i386__)
/// MXCSR's DAZ and FTZ bits (6 and 15) set (On) or cleared for the object's lifetime; the MXCSR it found is put back
/// after. Use the two names below.
template <bool On>
class DazFtzScope {
 public:
  DazFtzScope() : saved_(_mm_getcsr()) { _mm_setcsr(On ? saved_ | kDazFtz : saved_ & ~kDazFtz); }
  ~DazFtzScope() { _mm_setcsr(saved_); }
  DazFtzScope(const DazFtzScope&) = delete;
  DazFtzScope& operator=(const DazFtzScope&) = delete;

 private:
  static constexpr unsigned kDazFtz = 0x8040;  // FTZ (bit 15) | DAZ (bit 6)
  unsigned saved_;
};

/// Sets MXCSR's DAZ and FTZ bits for its lifetime and puts the caller's MXCSR back after: SIMD kernels of the bf16
/// contract run their FMAs under it (vdpbf16ps flushes by itself). Everything a kernel computes inside must be an
/// accumulation step of the contract; conversions and stores of the result are bit moves, which DAZ/FTZ leave alone.
using DenormalsAreZero = DazFtzScope<true>;

/// Clears MXCSR's DAZ and FTZ bits for its lifetime (puts the MXCSR it found back after): for arithmetic inside a
/// DenormalsAreZero scope that is not an accumulation step and must see the default mode, such as an FP8 kernel
/// forming its weights bf16(e4m3 * s) with a multiply (a product that is an fp32 subnormal must round to bf16, not
/// flush). Keep that arithmetic in a function that is not inlined, so the compiler cannot move it across the MXCSR
/// writes.
using FloatDefaultMode = DazFtzScope<false>;
#endif

}  // namespace moefuse
