// What the AVX-512 GEMM kernels share (gemm__avx512.cpp, gemm_s8__avx512vnni.cpp, gemm_u4__avx512.cpp,
// gemm_u4s8__avx512vnni.cpp): column masks, the even/odd column order some tiles accumulate in, and the buffer rows
// of A are read through. Included only by files compiled for AVX-512 (the __avx512* suffixes give them the flags).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace moefuse::gemm::detail {

/// Mask of the columns of 16-column vector v that are below `width`.
inline __mmask16 column_mask(int width, int v) {
  const int n = width - 16 * v;
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

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

/// The inverse of even_odd_to_columns: 32 values in column order (p[0..32)) as even columns and odd columns.
inline void columns_to_even_odd(const float* p, __m512& even, __m512& odd) {
  const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 lo = _mm512_loadu_ps(p), hi = _mm512_loadu_ps(p + 16);
  even = _mm512_permutex2var_ps(lo, e, hi);
  odd = _mm512_permutex2var_ps(lo, o, hi);
}

/// How far ahead (bytes) the int4 kernels prefetch in each packed panel they stream. Their tiles read a panel at 16
/// bytes per k, interleaved with the unpacking, and the hardware prefetchers alone leave decode well short of the read
/// bandwidth. Measured on the Zen 5 (family 26 model 2), 2048 x 2048, cold weights, paired: W4A16 G = 32, M = 1: 11-13
/// GB/s without, 20-27 GB/s with 2-4 KB; M = 8: 5 against 8-9 GB/s. W4A8: M = 1, 22-27 against 32-37 GB/s; M = 8:
/// 9-11 against 15-18 GB/s. Prefill (M = 64) unchanged. An address past the last panel is harmless: a prefetch never
/// faults.
inline constexpr int64_t kInt4PrefetchBytes = 4096;

__attribute__((always_inline)) inline void prefetch_t0(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

/// A[m, k0 .. k0+16) of MR rows into buf (16 floats per row); lanes outside `mask` are not read and become 0.
///
/// Why tiles read A through such a buffer: reading the rows directly would touch MR lines lda apart at every k; with
/// lda * 4 a multiple of 4 KB (any hidden size that is a multiple of 1024) they all fall in one L1 set, more rows
/// than ways, and every broadcast misses L1. The buffer costs 2 memory ops per row per 16 k.
template <int MR>
__attribute__((always_inline)) inline void fill_abuf(const float* a, int64_t lda, int64_t k0, __mmask16 mask,
                                                     float* buf) {
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m) _mm512_store_ps(buf + 16 * m, _mm512_maskz_loadu_ps(mask, a + m * lda + k0));
}

}  // namespace moefuse::gemm::detail
