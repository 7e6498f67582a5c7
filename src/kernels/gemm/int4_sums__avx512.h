// The W4A16 AVX-512 kernels' sums of A per row and group (gemm.h, "int4 group-wise": sa, shared by every column of a
// row), 16 groups per vector: shared by the AVX-512 FMA kernel (gemm_u4__avx512.cpp) and the AVX512-BF16 one
// (gemm_u4__avx512bf16.cpp). Included only by files compiled for AVX-512; everything is in an unnamed namespace, so
// copies compiled with different ISA flags never meet at link time.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace moefuse::gemm::detail {
namespace {

// vshuff32x4 (maskz form: see load_row in tile__avx512.h).
template <int Imm>
__attribute__((always_inline)) inline __m512 shuffle128(__m512 x, __m512 y) {
  return _mm512_maskz_shuffle_f32x4(0xffff, x, y, Imm);
}

// The 16 x 16 transpose of t: t[j] lane i becomes t[i] lane j. The maskz forms: see load_row in tile__avx512.h.
__attribute__((always_inline)) inline void transpose16(__m512 (&t)[16]) {
  __m512 u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    u[2 * i] = _mm512_maskz_unpacklo_ps(0xffff, t[2 * i], t[2 * i + 1]);
    u[2 * i + 1] = _mm512_maskz_unpackhi_ps(0xffff, t[2 * i], t[2 * i + 1]);
  }
  // v[4i + c], 128-bit lane L: rows 4i .. 4i + 3 at column 4L + c.
  __m512 v[16];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d u0 = _mm512_castps_pd(u[4 * i]), u1 = _mm512_castps_pd(u[4 * i + 1]);
    const __m512d u2 = _mm512_castps_pd(u[4 * i + 2]), u3 = _mm512_castps_pd(u[4 * i + 3]);
    v[4 * i] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, u0, u2));
    v[4 * i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, u0, u2));
    v[4 * i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, u1, u3));
    v[4 * i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, u1, u3));
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 w0 = shuffle128<0x44>(v[c], v[4 + c]), w1 = shuffle128<0xEE>(v[c], v[4 + c]);
    const __m512 w2 = shuffle128<0x44>(v[8 + c], v[12 + c]);
    const __m512 w3 = shuffle128<0xEE>(v[8 + c], v[12 + c]);
    t[c] = shuffle128<0x88>(w0, w2);
    t[4 + c] = shuffle128<0xDD>(w0, w2);
    t[8 + c] = shuffle128<0x88>(w1, w3);
    t[12 + c] = shuffle128<0xDD>(w1, w3);
  }
}

// sa of `groups` groups of one row (a at the first): 16 groups per vector, lane i = group i, A's 16 x 16 blocks
// transposed in registers so that one add takes one k of 16 groups, in the contract's pairs (odd k first). An add
// is the contract's fma_daz_ftz(a, 1, sa): a · 1 is exact, so the fma rounds (and, under DAZ/FTZ, flushes) the same
// sum a + sa; the caller runs it inside its DenormalsAreZero scope. The adds are written out as intrinsics, one per
// k, so their order is the contract's. Returns the OR of every A value's bits it read (the AVX512-BF16 kernel checks
// the low 16 bits: zero when every value is a bf16 value).
template <int G>
__attribute__((noinline)) __m512i group_sums(const float* a, int64_t groups, float* out) {
  __m512i seen = _mm512_setzero_si512();
  for (int64_t g0 = 0; g0 < groups; g0 += 16) {
    const int n = int(std::min<int64_t>(16, groups - g0));
    __m512 s = _mm512_setzero_ps();
    for (int r0 = 0; r0 < G; r0 += 16) {
      __m512 t[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) t[i] = i < n ? _mm512_loadu_ps(a + (g0 + i) * G + r0) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int i = 0; i < 16; i += 2)  // vpternlogd 0xFE: seen | t[i] | t[i + 1]
        seen = _mm512_ternarylogic_epi32(seen, _mm512_castps_si512(t[i]), _mm512_castps_si512(t[i + 1]), 0xFE);
      transpose16(t);
#pragma GCC unroll 8
      for (int j = 0; j < 16; j += 2) {
        s = _mm512_add_ps(s, t[j + 1]);
        s = _mm512_add_ps(s, t[j]);
      }
    }
    _mm512_mask_storeu_ps(out + g0, __mmask16((1u << n) - 1u), s);
  }
  return seen;
}

}  // namespace
}  // namespace moefuse::gemm::detail
