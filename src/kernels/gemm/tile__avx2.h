// What the AVX2 float GEMM tiles share (gemm__avx2.cpp, gemm_u4__avx2.cpp, gemm_fp8__avx2.cpp,
// gemm_u4s8__avx2.cpp): the tile's k step (and the bf16 contract's zero pair: k_order.h) and its masked store. Included only by files compiled for AVX2 (the __avx2 suffix gives them the flags).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "base/cpu_tuning.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/k_order.h"
#include "kernels/gemm/row_blocks.h"

namespace moefuse::gemm::detail {

/// Lane mask (all ones = store) of the columns of an 8-column vector v that are below `width`; 0..8 lanes.
inline __m256i lane_mask(int width, int v) {
  const int n = std::clamp(width - 8 * v, 0, 8);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Sets every accumulator of an MR x 8NV register tile to +0.
template <int MR, int NV>
__attribute__((always_inline)) inline void zero_tile(__m256 (&acc)[MR][NV]) {
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_setzero_ps();
}

/// One k step of the tile: acc[m][v] = fma(a[m * lda], w[v], acc[m][v]) for every row m and vector v, in that order
/// (the contract's one fma per k for each output element).
template <int MR, int NV>
__attribute__((always_inline)) inline void fma_step(const float* a, int64_t lda, const __m256 (&w)[NV],
                                                    __m256 (&acc)[MR][NV]) {
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    const __m256 av = _mm256_broadcast_ss(a + m * lda);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_fmadd_ps(av, w[v], acc[m][v]);
  }
}

/// The zero pair of the bf16 contract for an odd K (k_order.h): acc = fma(0, 0, acc) = acc + +0 (a -0 becomes +0).
template <int MR, int NV>
__attribute__((always_inline)) inline void zero_pair(__m256 (&acc)[MR][NV]) {
  const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_fmadd_ps(z, z, acc[m][v]);
}

/// Stores the tile's first `width` columns (0..8NV) to c, row stride ldc; the columns past `width` are not touched.
template <int MR, int NV>
__attribute__((always_inline)) inline void store_tile(const __m256 (&acc)[MR][NV], float* c, int64_t ldc, int width) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    if (width >= 8 * (v + 1)) {
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) _mm256_storeu_ps(c + m * ldc + 8 * v, acc[m][v]);
    } else if (width > 8 * v) {
      const __m256i mask = lane_mask(width, v);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) _mm256_maskstore_ps(c + m * ldc + 8 * v, mask, acc[m][v]);
    }
  }
}

/// Loads a tile stored by store_tile: the first `width` columns (0..8NV) from c, row stride ldc; lanes past `width`
/// are +0 and their memory is not read.
template <int MR, int NV>
__attribute__((always_inline)) inline void load_tile(__m256 (&acc)[MR][NV], const float* c, int64_t ldc, int width) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __m256i mask = lane_mask(width, v);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
      acc[m][v] = width >= 8 * (v + 1) ? _mm256_loadu_ps(c + m * ldc + 8 * v) : _mm256_maskload_ps(c + m * ldc + 8 * v, mask);
  }
}

/// The panel walk of the kernels that form their weights in registers (int4, FP8): over the panels of [n0, n1)
/// (panel p at b + p * panel_bytes), full[M - 1] on the whole panel when M <= F (all rows share each k's weights),
/// else strip[rows - 1] on each 8-column strip, rows in blocks of at most S. A tile is called as
/// (K, a, lda, panel, first 8-column vector, c, ldc, valid columns from that vector).
template <class Panel, class TileFn, size_t F, size_t S>
inline void run_tiles(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, Panel* b,
                      size_t panel_bytes, float* c, int64_t ldc, const std::array<TileFn, F>& full,
                      const std::array<TileFn, S>& strip) {
  if (M <= 0) return;
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    Panel* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    if (M <= int64_t(F)) {
      full[size_t(M - 1)](K, a, lda, panel, 0, c + (p0 - n0), ldc, width);
      continue;
    }
    for (int v = 0; v < 4 && 8 * v < width; ++v)
      for_row_blocks(M, int64_t(S), [&](int64_t m0, int64_t rows) {
        strip[size_t(rows - 1)](K, a + m0 * lda, lda, panel, v, c + m0 * ldc + (p0 - n0) + 8 * v, ldc,
                                std::min(8, width - 8 * v));
      });
  }
}

}  // namespace moefuse::gemm::detail
