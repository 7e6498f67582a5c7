// The project's own exp in fp32 (exp_f32), for SiLU and every sigmoid inside an activation (SwiGLU family, the
// grouped_matmul epilogues): one algorithm, fixed constants and a fixed operation order, written once as plain
// scalar C++ and once per vector ISA (AVX2 8 lanes, AVX-512 16 lanes) so that every version gives THE SAME BITS for
// every float input (tests/base/expf_test.cpp checks all of them on every float with a finite, nonzero result and
// on every special). The bits therefore no longer depend on the C library. Router/gating exps (softmax, sigmoid
// gates) keep std::exp: they run once per token and expert, not once per element of an intermediate row.
//
// ─── Algorithm (evaluated in double, one rounding to float at the end) ──────────────────────────────────────────
//   Specials first, in this order: x NaN -> x + x (quiet, payload kept); x > 0x1.62e42ep6 (88.72...) -> +inf
//   (+inf included); x < -0x1.9fe368p6 (-103.97...) -> +0 (-inf included: exp(-inf) = 0). Every other x (±0 give
//   exactly 1) takes the main path:
//     xd = double(x)                                          (exact)
//     kd = fma(kInvLn2N, xd, kShift)                          kInvLn2N = 32 / ln 2, kShift = 1.5 * 2^52: adding
//                                                             kShift rounds 32 x / ln 2 to the nearest integer k
//                                                             (ties to even), left in kd's low mantissa bits
//     ki = bits(kd);  kd = kd - kShift                        (kd = k exactly)
//     r  = fma(kInvLn2N, xd, -kd)                             r = 32 x / ln 2 - k, |r| <= 1/2 (+ tiny)
//     s  = double from bits(kTable[ki mod 32] + (ki << 47))   2^(k/32): the table holds bits(2^(j/32)) - (j << 47),
//                                                             so adding ki << 47 (mod 2^64) puts k/32's integer
//                                                             part into the exponent
//     p  = fma(kC0, r, kC1);  r2 = r * r;  y = fma(kC2, r, 1.0);  y = fma(p, r2, y)
//                                                             2^(r/32) ~ 1 + kC2 r + kC1 r^2 + kC0 r^3 (minimax)
//     result = float(y * s)                                   the only rounding to float (RNE); results below
//                                                             FLT_MIN become subnormal (or 0) in this one rounding
//   Every double operation rounds to nearest even; fma is a fused multiply-add (std::fma in the scalar version,
//   vfmadd/vfmsub in the vector ones: fma(a, b, -c) and fmsub(a, b, c) are the same operation).
//
// ─── Accuracy ───────────────────────────────────────────────────────────────────────────────────────────────────
//   The double result is within ~0.002 ulp (of float) of e^x, so the one rounding to float is correct except
//   where e^x lies within that distance of a rounding midpoint: over every float input with a finite nonzero
//   result the max error is 0.50164 ulp (at x = -0x1.ce651ep-8) against e^x in double, and 170,648 inputs (of
//   ~2.2e9) are not correctly rounded (checked exhaustively once; the test asserts kMaxUlpError = 0.502 on a
//   sample). On the project's machines (glibc 2.36, x86-64 with FMA) the results equal the C library's expf on
//   every one of the 2^32 inputs (checked once when this was written: the layer's outputs kept their bits), but
//   that is an observation, not a contract.
//
// ─── Vector versions ────────────────────────────────────────────────────────────────────────────────────────────
//   exp_f32_avx2 (8 floats, needs -mavx2 -mfma: defined when __AVX2__ and __FMA__ are) and exp_f32_avx512
//   (16 floats, needs AVX-512F: defined when __AVX512F__ is) compute every lane by the main path (two halves of
//   doubles; the table lookup is a gather (AVX2) or two 16-entry permutes (AVX-512)), then put the specials' results
//   over the lanes they apply to; the main path's value of those lanes is discarded.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace moefuse {

namespace expf_detail {

constexpr double kN = 32.0;
constexpr double kInvLn2N = 0x1.71547652b82fep+0 * kN;  // 32 / ln 2
constexpr double kShift = 0x1.8p+52;
constexpr double kC0 = 0x1.c6af84b912394p-5 / kN / kN / kN;  // the cubic for 2^(r/32), r in [-1/2, 1/2]
constexpr double kC1 = 0x1.ebfce50fac4f3p-3 / kN / kN;
constexpr double kC2 = 0x1.62e42ff0c52d6p-1 / kN;
constexpr float kOverflow = 0x1.62e42ep6f;    // largest x with exp(x) < FLT_MAX + ulp/2: above it, +inf
constexpr float kUnderflow = -0x1.9fe368p6f;  // below it exp(x) < 2^-150: rounds to +0
constexpr double kMaxUlpError = 0.502;

// bits(2^(j/32)) - (j << 47), j = 0..31 (2^(j/32) rounded to nearest double).
alignas(64) inline constexpr uint64_t kTable[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};

}  // namespace expf_detail

/// e^x in fp32 by the algorithm above (bitwise the same as exp_f32_avx2 / exp_f32_avx512 lane by lane).
inline float exp_f32(float x) {
  using namespace expf_detail;
  if (std::isnan(x)) return x + x;
  if (x > kOverflow) return INFINITY;
  if (x < kUnderflow) return 0.0f;
  const double xd = double(x);
  double kd = std::fma(kInvLn2N, xd, kShift);
  uint64_t ki;
  std::memcpy(&ki, &kd, sizeof ki);
  kd = kd - kShift;
  const double r = std::fma(kInvLn2N, xd, -kd);
  const uint64_t t = kTable[ki % 32] + (ki << 47);
  double s;
  std::memcpy(&s, &t, sizeof s);
  const double p = std::fma(kC0, r, kC1);
  const double r2 = r * r;
  double y = std::fma(kC2, r, 1.0);
  y = std::fma(p, r2, y);
  return float(y * s);
}

#if defined(__AVX2__) && defined(__FMA__)
namespace expf_detail {
// The main path on 4 lanes (AVX2).
inline __m128 main_path_avx2(__m128 x) {
  const __m256d xd = _mm256_cvtps_pd(x);
  __m256d kd = _mm256_fmadd_pd(_mm256_set1_pd(kInvLn2N), xd, _mm256_set1_pd(kShift));
  const __m256i ki = _mm256_castpd_si256(kd);
  kd = _mm256_sub_pd(kd, _mm256_set1_pd(kShift));
  const __m256d r = _mm256_fmsub_pd(_mm256_set1_pd(kInvLn2N), xd, kd);
  const __m256i j = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
  const __m256i tab = _mm256_i64gather_epi64(reinterpret_cast<const long long*>(kTable), j, 8);
  const __m256d s = _mm256_castsi256_pd(_mm256_add_epi64(tab, _mm256_slli_epi64(ki, 47)));
  const __m256d p = _mm256_fmadd_pd(_mm256_set1_pd(kC0), r, _mm256_set1_pd(kC1));
  const __m256d r2 = _mm256_mul_pd(r, r);
  __m256d y = _mm256_fmadd_pd(_mm256_set1_pd(kC2), r, _mm256_set1_pd(1.0));
  y = _mm256_fmadd_pd(p, r2, y);
  return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}
}  // namespace expf_detail

/// exp_f32 on 8 lanes (AVX2 + FMA).
inline __m256 exp_f32_avx2(__m256 x) {
  using namespace expf_detail;
  const __m128 lo = main_path_avx2(_mm256_castps256_ps128(x));
  const __m128 hi = main_path_avx2(_mm256_extractf128_ps(x, 1));
  __m256 y = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(kUnderflow), _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(kOverflow), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

#if defined(__AVX512F__)
namespace expf_detail {
// The main path on 8 lanes (AVX-512F). kTable[j] is a 32-entry lookup: two 16-entry permutes, picked by j's bit 4.
inline __m256 main_path_avx512(__m256 x) {
  const __m512d xd = _mm512_maskz_cvtps_pd(0xff, x);
  __m512d kd = _mm512_fmadd_pd(_mm512_set1_pd(kInvLn2N), xd, _mm512_set1_pd(kShift));
  const __m512i ki = _mm512_castpd_si512(kd);
  kd = _mm512_sub_pd(kd, _mm512_set1_pd(kShift));
  const __m512d r = _mm512_fmsub_pd(_mm512_set1_pd(kInvLn2N), xd, kd);
  const __m512i t0 = _mm512_load_si512(kTable), t1 = _mm512_load_si512(kTable + 8);
  const __m512i t2 = _mm512_load_si512(kTable + 16), t3 = _mm512_load_si512(kTable + 24);
  const __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1);  // entries 0..15 by ki's bits 0..3
  const __m512i hi = _mm512_permutex2var_epi64(t2, ki, t3);  // entries 16..31
  const __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
  const __m512i tab = _mm512_mask_blend_epi64(upper, lo, hi);
  const __m512d s = _mm512_castsi512_pd(_mm512_add_epi64(tab, _mm512_maskz_slli_epi64(0xff, ki, 47)));
  const __m512d p = _mm512_fmadd_pd(_mm512_set1_pd(kC0), r, _mm512_set1_pd(kC1));
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(_mm512_set1_pd(kC2), r, _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(p, r2, y);
  return _mm512_maskz_cvtpd_ps(0xff, _mm512_mul_pd(y, s));
}
}  // namespace expf_detail

/// exp_f32 on 16 lanes (AVX-512F).
inline __m512 exp_f32_avx512(__m512 x) {
  using namespace expf_detail;
  // (maskz forms with every lane here and in main_path_avx512: the plain intrinsics' undefined source makes GCC 12
  // warn -Wmaybe-uninitialized)
  const __m256 lo = main_path_avx512(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(x), 0)));
  const __m256 hi =
      main_path_avx512(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(x), 1)));
  __m512 y = _mm512_castpd_ps(
      _mm512_maskz_insertf64x4(0xff, _mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_set1_ps(kUnderflow), _CMP_LT_OQ), _mm512_setzero_ps());
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_set1_ps(kOverflow), _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
  return _mm512_mask_add_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x, x);
}
#endif

}  // namespace moefuse
