// The AVX512-BF16 (vdpbf16ps) tile for bf16 weights, on the packed layout every bf16 variant reads (gemm.h: panel p
// is K rows of 32 bf16). Included only by files compiled with the __avx512bf16 flags (gemm_bf16__avx512bf16.cpp, and
// gemm_fp8__avx512bf16.cpp, whose per-block bf16 buffer has the same layout: it runs the tile with Carry).
//
// What one vdpbf16ps does per fp32 lane j: acc = fma_daz_ftz(a.hi, b.hi, acc); acc = fma_daz_ftz(a.lo, b.lo, acc)
// with (lo, hi) the two bf16 of dword j, i.e. the bf16 contract's step for the pair (2i, 2i + 1) when the low half
// holds element 2i (gemm.h, "bf16 weights"; base/bf16_dot.h).
//   B: each lane must hold (B[2i, n], B[2i + 1, n]). vpunpcklwd / vpunpckhwd of the packed rows 2i and 2i + 1 build
//     that, 128-bit lane by 128-bit lane: in panel p's first accumulator ("lo") dword 4L + j is column 8L + j, in the
//     second ("hi") column 8L + 4 + j (L = 0..3, j = 0..3). Each accumulator lane is still exactly one output
//     element's chain; pairs_to_columns() puts the columns in order once, at the store. For odd K the last pair is
//     (row K - 1, a zero row), the contract's zero pair.
//   A: the pair (bf16(A[m, 2i]), bf16(A[m, 2i + 1])) broadcast to every lane. bf16(x) here is the high half of x's
//     bits, which is x itself only when x's low 16 bits are zero (x is a bf16 value). The tile builds its A pairs
//     in a small buffer (16 pairs per row at a time, one vpermt2w per 32 values) and ORs every A value it reads: it
//     returns false when some value was not a bf16 value, and its C is then not the contract's (the caller computes
//     the call another way).
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

#include "base/cpu_tuning.h"
#include "kernels/gemm/gemm.h"

namespace moefuse::gemm::detail::dp {

/// The two accumulators of one panel in pair order (see the top) into column order (lo = columns 0..15, hi =
/// 16..31): 128-bit lanes (lo.0, hi.0, lo.1, hi.1) and (lo.2, hi.2, lo.3, hi.3).
__attribute__((always_inline)) inline void pairs_to_columns(__m512& lo, __m512& hi) {
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const __m512 x = lo, y = hi;
  lo = _mm512_permutex2var_ps(x, first, y);
  hi = _mm512_permutex2var_ps(x, second, y);
}

/// The inverse of pairs_to_columns.
__attribute__((always_inline)) inline void columns_to_pairs(__m512& lo, __m512& hi) {
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
  const __m512i second = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  const __m512 x = lo, y = hi;
  lo = _mm512_permutex2var_ps(x, first, y);
  hi = _mm512_permutex2var_ps(x, second, y);
}

/// Mask of the columns of vector v (16 columns) below `width`.
inline __mmask16 columns_below(int width, int v) {
  const int n = width - 16 * v;
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

/// A[m, k0 .. min(k0 + 32, K)) of MR rows as 16 bf16 pairs per row into buf (dword i of row m at buf[16 m + i]: low
/// half the high half of A[m, k0 + 2i], high half that of A[m, k0 + 2i + 1]; zeros past K, which is never read).
/// ORs every value read into seen.
template <int MR>
__attribute__((always_inline)) inline void fill_pairs(const float* a, int64_t lda, int64_t k0, int64_t K, uint32_t* buf,
                                                      __m512i& seen) {
  const int64_t r = K - k0;
  const __mmask16 m0 = r >= 16 ? __mmask16(0xffff) : __mmask16((1u << r) - 1u);
  const __mmask16 m1 = r >= 32 ? __mmask16(0xffff) : r <= 16 ? __mmask16(0) : __mmask16((1u << (r - 16)) - 1u);
  // Word w of the result is word 2w + 1 (a value's high half) of the 64 words of (x0, x1).
  const __m512i odd_words = _mm512_setr_epi32(0x00030001, 0x00070005, 0x000b0009, 0x000f000d, 0x00130011, 0x00170015,
                                              0x001b0019, 0x001f001d, 0x00230021, 0x00270025, 0x002b0029, 0x002f002d,
                                              0x00330031, 0x00370035, 0x003b0039, 0x003f003d);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    const __m512i x0 = _mm512_maskz_loadu_epi32(m0, a + m * lda + k0);
    const __m512i x1 = _mm512_maskz_loadu_epi32(m1, a + m * lda + k0 + 16);
    seen = _mm512_ternarylogic_epi32(seen, x0, x1, 0xfe);  // seen | x0 | x1
    _mm512_store_si512(buf + 16 * m, _mm512_permutex2var_epi16(x0, odd_words, x1));
  }
}

/// The same pairs from bf16 rows of A: in memory a bf16 row already is its pairs (dword i holds elements 2i, low
/// half, and 2i + 1), so this is a copy of 64 bytes per row. Every value is a bf16 value: seen is not touched.
template <int MR>
__attribute__((always_inline)) inline void fill_pairs(const bfloat16* a, int64_t lda, int64_t k0, int64_t K,
                                                      uint32_t* buf, __m512i& /*seen*/) {
  const int64_t r = K - k0;
  const __mmask32 mask = r >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << r) - 1u);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) _mm512_store_si512(buf + 16 * m, _mm512_maskz_loadu_epi16(mask, a + m * lda + k0));
}

/// The vdpbf16ps steps of one pair of k: rows k (`even`) and k + 1 (`odd`, a zero row for the last pair of an odd
/// K) of 32 bf16 weights from each of NP panels, interleaved into pairs (see the top), against the A pairs at ak (row
/// m at ak[16 m]).
template <int MR, int NV>
__attribute__((always_inline)) inline void dot_pairs(const __m512i (&bv)[NV], const uint32_t* ak,
                                                     __m512 (&acc)[MR][NV]) {
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    const __m512i av = _mm512_set1_epi32(int32_t(ak[16 * m]));
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], (__m512bh)av, (__m512bh)bv[v]);
  }
}

template <int MR, int NP>
__attribute__((always_inline)) inline void pair_dot(const __m512i (&even)[NP], const __m512i (&odd)[NP],
                                                    const uint32_t* ak, __m512 (&acc)[MR][2 * NP]) {
  __m512i bv[2 * NP];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    bv[2 * p] = _mm512_unpacklo_epi16(even[p], odd[p]);
    bv[2 * p + 1] = _mm512_unpackhi_epi16(even[p], odd[p]);
  }
  dot_pairs<MR, 2 * NP>(bv, ak, acc);
}

/// One pair step of the tile: rows k and k + 1 (Half: row k alone, with a zero row: the last pair of an odd K) of
/// NP panels at bk (pstride elements apart), A pairs at ak (row m at ak[16 m]).
template <int MR, int NP, bool Half>
__attribute__((always_inline)) inline void pair_step(const bfloat16* bk, int64_t pstride, const uint32_t* ak,
                                                     __m512 (&acc)[MR][2 * NP]) {
  __m512i even[NP], odd[NP];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    even[p] = _mm512_loadu_si512(bk + p * pstride);
    odd[p] = Half ? _mm512_setzero_si512() : _mm512_loadu_si512(bk + p * pstride + kGemmNR);
  }
  pair_dot<MR, NP>(even, odd, ak, acc);
}

/// Stores the accumulators of pair order (see the top) in column order: C[0..MR) x [0..width) at c. Returns
/// whether `seen` (the OR of every A value read) says they were all bf16 values.
template <int MR, int NP>
__attribute__((always_inline)) inline bool store_pairs(__m512 (&acc)[MR][2 * NP], float* c, int64_t ldc, int width,
                                                       __m512i seen) {
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) pairs_to_columns(acc[m][2 * p], acc[m][2 * p + 1]);
#pragma GCC unroll 8
  for (int v = 0; v < 2 * NP; ++v) {
    const __mmask16 mask = columns_below(width, v);
    if (mask == 0xffff) {
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) _mm512_storeu_ps(c + m * ldc + 16 * v, acc[m][v]);
    } else if (mask) {
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) _mm512_mask_storeu_ps(c + m * ldc + 16 * v, mask, acc[m][v]);
    }
  }
  return _mm512_test_epi32_mask(seen, _mm512_set1_epi32(0xffff)) == 0;
}

/// C[0..MR) x [0..width) from NP panels (32 NP columns) at b, panels pstride elements apart: the bf16 contract's
/// chains over k = 0 .. K-1, by vdpbf16ps. A (element type TA) is fp32 or bf16 rows; both give the same C for the
/// same values (fill_pairs). Carry: the chains start from C's values (a previous call's store over the K before
/// these, which must have been even) instead of +0. Returns whether every A value read was a bf16 value (always,
/// for bf16 A); when not, C holds values that are not the contract's and the caller must compute them another way.
/// Pf: the two rows (lines) of each panel a pair step reads are prefetched pf.bytes ahead, for tiles that read whole
/// panels (K = pstride / 32 rows; past a panel's end the prefetch moves to the next tile's panels); without Pf, pf is
/// not read.
template <int MR, int NP, bool Carry = false, bool Pf = false, class TA = float>
bool tile_dp(int64_t K, const TA* a, int64_t lda, const bfloat16* b, int64_t pstride, float* c, int64_t ldc,
             int width, [[maybe_unused]] Prefetch pf) {
  constexpr int NV = 2 * NP;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      acc[m][v] = Carry ? _mm512_maskz_loadu_ps(columns_below(width, v), c + m * ldc + 16 * v) : _mm512_setzero_ps();
  if constexpr (Carry) {
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) columns_to_pairs(acc[m][2 * p], acc[m][2 * p + 1]);
  }

  // A is read 32 k at a time into a double buffer (as the fp32 tile's fma_k does, tile__avx512.h: rows lda apart
  // would share L1 sets, and the next chunk's loads hide behind this chunk's 16 steps).
  alignas(64) uint32_t abuf[2][MR * 16];
  __m512i seen = _mm512_setzero_si512();
  const int64_t full = K / 32 * 32;
  if (full > 0) fill_pairs<MR>(a, lda, 0, K, abuf[0], seen);
  int cur = 0;
  for (int64_t k0 = 0; k0 < full; k0 += 32, cur ^= 1) {
    if (k0 + 32 < K) fill_pairs<MR>(a, lda, k0 + 32, K, abuf[cur ^ 1], seen);
#pragma GCC unroll 2
    for (int i = 0; i < 16; ++i) {
      if constexpr (Pf) {
        // Pf tiles read whole panels (K = the panel's rows): past its end, the next tile's (cpu_tuning.h)
        const size_t skip = next_tile_skip((k0 + 2 * i) * kGemmNR * 2, pstride * 2, NP, size_t(pstride) * 2, pf);
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) {
          const auto* row = reinterpret_cast<const std::byte*>(b + (k0 + 2 * i) * kGemmNR + p * pstride) + skip;
          prefetch_ahead(row, pf);
          prefetch_ahead(row + 64, pf);  // row k + 1: 32 bf16 = one line further
        }
      }
      pair_step<MR, NP, false>(b + (k0 + 2 * i) * kGemmNR, pstride, abuf[cur] + i, acc);
    }
  }
  if (full < K) {
    if (full == 0) fill_pairs<MR>(a, lda, 0, K, abuf[cur], seen);
    const int rest = int(K - full), pairs = rest / 2;  // rest in 1..31
    for (int i = 0; i < pairs; ++i) pair_step<MR, NP, false>(b + (full + 2 * i) * kGemmNR, pstride, abuf[cur] + i, acc);
    if (rest % 2) pair_step<MR, NP, true>(b + (K - 1) * kGemmNR, pstride, abuf[cur] + pairs, acc);
  }

  return store_pairs<MR, NP>(acc, c, ldc, width, seen);
}

template <int NP, class TA = float>
using TileDp = bool (*)(int64_t, const TA*, int64_t, const bfloat16*, int64_t, float*, int64_t, int, Prefetch);

/// tile_dp<1 .. sizeof(R), NP, Carry, Pf, TA>, indexed by rows - 1.
template <int NP, bool Carry = false, bool Pf = false, class TA = float, int... R>
constexpr auto make_tiles_dp(std::integer_sequence<int, R...>) {
  return std::array<TileDp<NP, TA>, sizeof...(R)>{&tile_dp<R + 1, NP, Carry, Pf, TA>...};
}

}  // namespace moefuse::gemm::detail::dp
