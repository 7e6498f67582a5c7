// What the AVX-512 GEMM kernels share (gemm__avx512.cpp, gemm_s8__avx512vnni.cpp, gemm_fp8__avx512.cpp,
// gemm_u4__avx512.cpp, gemm_u4s8__avx512vnni.cpp): widening a packed row to fp32, the even/odd column order some
// tiles accumulate in, column masks, the k loop over A with its small buffer, the tile's masked store (and reload,
// for kernels that carry a tile's accumulators through C from one K block to the next), and the float tile itself.
// Included only by files compiled for AVX-512 (the __avx512* suffixes give them the flags).
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "base/cpu_tuning.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/k_order.h"

namespace moefuse::gemm::detail {

/// One panel row (32 weights at p) widened exactly to fp32 into two vectors, lo and hi.
///   f32, f16: lo = columns 0..15, hi = columns 16..31.
///   bf16: one 64-byte load; lo = the even columns (0, 2, .., 30: the low half of each dword shifted up), hi = the
///   odd columns (the high half, low bits masked off): 2 simple ops instead of 2 widening shuffles + 2 shifts. Each
///   accumulator lane still holds exactly one output column's chain; unshuffle() restores column order at the store.
/// The maskz forms (all lanes set) compile to the plain instructions; the plain intrinsics trip a GCC 12 false
/// -Wmaybe-uninitialized inside their headers (_mm512_undefined_epi32).
inline void load_row(const float* p, __m512& lo, __m512& hi) {
  lo = _mm512_loadu_ps(p);
  hi = _mm512_loadu_ps(p + 16);
}
inline void load_row(const float16* p, __m512& lo, __m512& hi) {
  lo = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  hi = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
}
/// 32 bf16 (one per dword half) into the even (lo) and odd (hi) columns' fp32 vectors.
inline void widen_bf16_pairs(__m512i v, __m512& lo, __m512& hi) {
  lo = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, v, 16));
  hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int32_t(0xffff0000u))));
}
inline void load_row(const bfloat16* p, __m512& lo, __m512& hi) { widen_bf16_pairs(_mm512_loadu_si512(p), lo, hi); }

/// 32 values of a panel row in even/odd order (lo = columns 0, 2, .., 30; hi = columns 1, 3, .., 31) put back in
/// column order (lo = columns 0..15, hi = 16..31). Tiles whose weights come apart naturally into even and odd
/// columns (bf16 halves of a dword, the two nibbles of a byte) accumulate in that order and call this once at the
/// store.
inline void even_odd_to_columns(__m512& lo, __m512& hi) {
  const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 even = lo, odd = hi;
  lo = _mm512_permutex2var_ps(even, first, odd);
  hi = _mm512_permutex2var_ps(even, second, odd);
}

/// The inverse of even_odd_to_columns: 32 values in column order (lo = columns 0..15, hi = 16..31) as even columns
/// (lo) and odd columns (hi).
inline void columns_to_even_odd(__m512& lo, __m512& hi) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 first = lo, second = hi;
  lo = _mm512_permutex2var_ps(first, even, second);
  hi = _mm512_permutex2var_ps(first, odd, second);
}

/// The 32 values at p[0..32) (column order) as even columns and odd columns.
inline void columns_to_even_odd(const float* p, __m512& even, __m512& odd) {
  even = _mm512_loadu_ps(p);
  odd = _mm512_loadu_ps(p + 16);
  columns_to_even_odd(even, odd);
}

/// Accumulators of one panel in column order (lo = columns 0..15, hi = 16..31); bf16: from even/odd order.
template <class W>
inline void unshuffle(__m512& lo, __m512& hi) {
  if constexpr (std::is_same_v<W, bfloat16>) even_odd_to_columns(lo, hi);
}

/// The inverse of unshuffle: column order to the order load_row gives (bf16: even, odd).
template <class W>
inline void shuffle(__m512& lo, __m512& hi) {
  if constexpr (std::is_same_v<W, bfloat16>) columns_to_even_odd(lo, hi);
}

/// Mask of the columns of vector v (16 columns) that are below `width`.
inline __mmask16 column_mask(int width, int v) {
  const int n = width - 16 * v;
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

/// A[m, k0 .. k0+16) of MR rows into buf (16 floats per row); lanes outside `mask` are not read and become 0. A is
/// float, or bfloat16 (the bf16-A entries: each value widened exactly, so the buffer holds what the fp32 rows of the
/// same values would give).
template <int MR, class A = float>
__attribute__((always_inline)) inline void fill_abuf(const A* a, int64_t lda, int64_t k0, __mmask16 mask,
                                                     float* buf) {
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m) {
    if constexpr (std::is_same_v<A, float>) {
      _mm512_store_ps(buf + 16 * m, _mm512_maskz_loadu_ps(mask, a + m * lda + k0));
    } else {
      static_assert(std::is_same_v<A, bfloat16>);
      const __m256i h = _mm256_maskz_loadu_epi16(mask, a + m * lda + k0);
      // maskz forms with every lane: see load_row
      _mm512_store_si512(buf + 16 * m, _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, h), 16));
    }
  }
}

/// The chains of an MR x 16·NV tile over k = 0 .. K-1 in the contract's order (k_order.h; Pairs: the bf16 contract's
/// pairs (k + 1, k), then the zero pair and K - 1 for an odd K): acc[m][v] = fma(A[m, k], w[v], acc[m][v]), with the
/// weights of row k given by row(k, w) (NV vectors).
///
/// A is read 16 k at a time: one zmm load per row into a small contiguous buffer, from which the broadcasts are
/// taken. Reading the rows directly would touch MR lines lda apart at every k; with lda * 4 a multiple of 4 KB (any
/// hidden size that is a multiple of 1024) they all fall in one L1 set, more rows than ways, and every broadcast
/// misses L1. The buffer costs 2 memory ops per row per 16 k (against 32 FMAs). It is double-buffered: the next 16 k
/// of A are loaded before the current 16 are used, so their latency (the rows often come from L2) hides behind 16
/// k steps of FMAs.
template <int MR, int NV, bool Pairs = false, class Row, class A = float>
__attribute__((always_inline)) inline void fma_k(int64_t K, const A* a, int64_t lda, const Row& row,
                                                 __m512 (&acc)[MR][NV]) {
  alignas(64) float abuf[2][MR * 16];
  const auto step = [&](int64_t k, const float* ak) __attribute__((always_inline)) {
    __m512 bv[NV];
    row(k, bv);
#pragma GCC unroll 32
    for (int m = 0; m < MR; ++m) {
      const __m512 av = _mm512_set1_ps(ak[m * 16]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(av, bv[v], acc[m][v]);
    }
  };
  [[maybe_unused]] const auto zero = [&]() __attribute__((always_inline)) {  // an odd K's zero pair: acc + +0
    const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 32
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(z, z, acc[m][v]);
  };
  const int64_t full = K / 16 * 16;
  if (full > 0) fill_abuf<MR, A>(a, lda, 0, __mmask16(0xffff), abuf[0]);
  int cur = 0;
  for (int64_t k0 = 0; k0 < full; k0 += 16, cur ^= 1) {
    if (k0 + 16 < full)
      fill_abuf<MR, A>(a, lda, k0 + 16, __mmask16(0xffff), abuf[cur ^ 1]);
    else if (full < K)  // the last K % 16 columns: a masked load reads nothing past the row
      fill_abuf<MR, A>(a, lda, full, __mmask16((1u << (K - full)) - 1u), abuf[cur ^ 1]);
    if constexpr (Pairs) {
      for (int kk = 0; kk < 16; kk += 2) {
        step(k0 + kk + 1, abuf[cur] + kk + 1);
        step(k0 + kk, abuf[cur] + kk);
      }
    } else {
      for (int kk = 0; kk < 16; ++kk) step(k0 + kk, abuf[cur] + kk);
    }
  }
  if (full < K) {
    if (full == 0) fill_abuf<MR, A>(a, lda, 0, __mmask16((1u << K) - 1u), abuf[cur]);
    if constexpr (Pairs) {
      const float* ab = abuf[cur];
      walk_k<true>(K - full, [&](int64_t kk) __attribute__((always_inline)) { step(full + kk, ab + kk); }, zero);
    } else {
      for (int kk = 0; kk < K - full; ++kk) step(full + kk, abuf[cur] + kk);
    }
  }
}

/// Sets every accumulator of the tile to +0.
template <int MR, int NV>
__attribute__((always_inline)) inline void zero_tile(__m512 (&acc)[MR][NV]) {
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
}

/// Stores C[0..MR) x [0..width) of a tile whose panels' accumulators are in load_row<W>'s order; columns past
/// `width` are not touched.
template <class W, int MR, int NV>
__attribute__((always_inline)) inline void store_tile(__m512 (&acc)[MR][NV], float* c, int64_t ldc, int width) {
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int p = 0; p < NV / 2; ++p) unshuffle<W>(acc[m][2 * p], acc[m][2 * p + 1]);
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __mmask16 mask = column_mask(width, v);
    if (mask == 0xffff) {
#pragma GCC unroll 32
      for (int m = 0; m < MR; ++m) _mm512_storeu_ps(c + m * ldc + 16 * v, acc[m][v]);
    } else if (mask) {
#pragma GCC unroll 32
      for (int m = 0; m < MR; ++m) _mm512_mask_storeu_ps(c + m * ldc + 16 * v, mask, acc[m][v]);
    }
  }
}

/// Loads a tile stored by store_tile (exactly: the same fp32 values, in load_row<W>'s order); lanes past `width`
/// are +0 and their memory is not read.
template <class W, int MR, int NV>
__attribute__((always_inline)) inline void load_tile(__m512 (&acc)[MR][NV], const float* c, int64_t ldc, int width) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __mmask16 mask = column_mask(width, v);
#pragma GCC unroll 32
    for (int m = 0; m < MR; ++m) acc[m][v] = _mm512_maskz_loadu_ps(mask, c + m * ldc + 16 * v);
  }
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int p = 0; p < NV / 2; ++p) shuffle<W>(acc[m][2 * p], acc[m][2 * p + 1]);
}

/// The float tile: C[0..MR) x [0..width) from NP panels (32 * NP columns) starting at b, panels pstride elements
/// apart, each accumulator lane one output element's chain over k = 0..K-1 in W's contract order (k_order.h: bf16 in
/// pairs). Carry: the chains start from C's values (a previous call's store over the K before these) instead of +0.
/// Pf: each panel's row is prefetched pf.bytes ahead as it is read (bf16 weights: one 64-byte line per row), for tiles
/// that read whole panels (K = pstride / 32 rows; past a panel's end the prefetch moves to the next tile's panels);
/// without Pf, pf is not read and the loop is the one without prefetch.
template <class W, int MR, int NP, bool Carry = false, bool Pf = false, class A = float>
void tile_f(int64_t K, const A* a, int64_t lda, const W* b, int64_t pstride, float* c, int64_t ldc, int width,
            [[maybe_unused]] Prefetch pf) {
  constexpr int NV = 2 * NP;
  __m512 acc[MR][NV];
  if constexpr (Carry) load_tile<W, MR, NV>(acc, c, ldc, width);
  else zero_tile(acc);
  const auto row = [&](int64_t k, __m512 (&bv)[NV]) __attribute__((always_inline)) {
    [[maybe_unused]] size_t skip = 0;  // Pf tiles read whole panels: past a panel's end, the next tile's (cpu_tuning.h)
    if constexpr (Pf)
      skip = next_tile_skip(k * kGemmNR * int64_t(sizeof(W)), pstride * int64_t(sizeof(W)), NP,
                            size_t(pstride) * sizeof(W), pf);
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      if constexpr (Pf) prefetch_ahead(reinterpret_cast<const std::byte*>(b + k * kGemmNR + p * pstride) + skip, pf);
      load_row(b + k * kGemmNR + p * pstride, bv[2 * p], bv[2 * p + 1]);
    }
  };
  fma_k<MR, NV, kPairsOfK<W>>(K, a, lda, row, acc);
  store_tile<W, MR, NV>(acc, c, ldc, width);
}

template <class W, int NP, class A = float>
using TileF = void (*)(int64_t, const A*, int64_t, const W*, int64_t, float*, int64_t, int, Prefetch);

/// tile_f<W, 1 .. sizeof(R), NP, Carry, Pf, A>, indexed by rows - 1.
template <class W, int NP, bool Carry = false, bool Pf = false, class A = float, int... R>
constexpr auto make_tiles_f(std::integer_sequence<int, R...>) {
  return std::array<TileF<W, NP, A>, sizeof...(R)>{&tile_f<W, R + 1, NP, Carry, Pf, A>...};
}

}  // namespace moefuse::gemm::detail
