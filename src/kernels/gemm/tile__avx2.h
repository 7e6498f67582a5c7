// What the AVX2 float GEMM tiles share (gemm__avx2.cpp, gemm_u4__avx2.cpp): the fma step of an MR x 8NV register
// tile and its masked store. Included only by files compiled for AVX2 (the __avx2 suffix gives them the flags).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace moefuse::gemm::detail {

/// Lane mask (all ones = store) of the columns of an 8-column vector v that are below `width`; 0..8 lanes.
inline __m256i lane_mask(int width, int v) {
  const int n = std::clamp(width - 8 * v, 0, 8);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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

}  // namespace moefuse::gemm::detail
