// Dynamic FP8 activations x FP8 weights on AVX2 + F16C (fp8_act.h: the definition). The AVX-512 kernel's method
// (gemm_fp8a__avx512.cpp) in 256-bit registers, half a panel (16 columns) at a time: each weight row's 16 codes
// widened exactly to fp64 through fp16 bits (2^-8 times their value), the activations through the 256-entry fp64
// table, the block's sums exact fp64 FMAs, and the scale steps per column in scalar code, in the definition's order.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>

#include "kernels/gemm/fp8_act.h"
#include "kernels/gemm/fp8_layout.h"

namespace moefuse::gemm::detail {
namespace {

// 16 e4m3 codes -> 4 x 4 fp64 values, each 2^-8 times the code's value (NaN codes NaN).
inline void widen16(const uint8_t* q, __m256d w[4]) {
  const __m256i c16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
  __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(c16, 8), 1), _mm256_set1_epi16(int16_t(0xbf80)));
  const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(c16, _mm256_set1_epi16(0x7f)), _mm256_set1_epi16(0x7f));
  h = _mm256_blendv_epi8(h, _mm256_set1_epi16(0x7e00), nan);
  const __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  const __m256 hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
  w[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(lo));
  w[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(lo, 1));
  w[2] = _mm256_cvtps_pd(_mm256_castps256_ps128(hi));
  w[3] = _mm256_cvtps_pd(_mm256_extractf128_ps(hi, 1));
}

// Exact sums of MR rows (row i's codes at a + i * lda) against 16 columns (codes at q, row stride kGemmNR), into
// d[i * 16 + j], already times 2^8 (exact): the block's d.
template <int MR>
inline void half_sums(int64_t rows, const uint8_t* a, int64_t lda, const uint8_t* q, const double* tab, double* d) {
  __m256d acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm256_setzero_pd();
  for (int64_t r = 0; r < rows; ++r) {
    __m256d w[4];
    widen16(q + r * kGemmNR, w);
    for (int i = 0; i < MR; ++i) {
      const __m256d x = _mm256_broadcast_sd(tab + a[i * lda + r]);
      for (int v = 0; v < 4; ++v) acc[i][v] = _mm256_fmadd_pd(x, w[v], acc[i][v]);
    }
  }
  const __m256d two8 = _mm256_set1_pd(256.0);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 4; ++v) _mm256_storeu_pd(d + i * 16 + 4 * v, _mm256_mul_pd(acc[i][v], two8));
}

}  // namespace

void gemm_fp8a_fp8w_f32__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                              const float* sa, int64_t ldsa, const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  const double* tab = e4m3_f64_table().data();
  const auto* b = static_cast<const std::byte*>(b_data);
  const size_t panel_bytes = fp8_panel_bytes(K);
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int64_t width = std::min<int64_t>(kGemmNR, n1 - p0);
    float* cp = c + (p0 - n0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < width; ++j) cp[m * ldc + j] = 0.0f;  // acc = +0 (also the result when K = 0)
    for (int64_t g = 0; g < fp8_blocks(K); ++g) {
      const std::byte* blk = panel + fp8_block_offset(K, g);
      const auto* sw = reinterpret_cast<const float*>(blk);
      const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
      const int64_t rows = fp8_block_rows(K, g);
      const uint8_t* a = qa + g * kFp8BlockK;
      for (int h = 0; h * 16 < width; ++h) {
        const int64_t j0 = h * 16, j1 = std::min<int64_t>(width, j0 + 16);
        for (int64_t m = 0; m < M; m += 2) {
          const int mr = M - m >= 2 ? 2 : 1;
          alignas(32) double d[2 * 16];
          if (mr == 2) half_sums<2>(rows, a + m * lda, lda, q + j0, tab, d);
          else half_sums<1>(rows, a + m * lda, lda, q + j0, tab, d);
          for (int i = 0; i < mr; ++i) {
            const float s = sa[(m + i) * ldsa + g];
            float* row = cp + (m + i) * ldc;
            for (int64_t j = j0; j < j1; ++j) row[j] = row[j] + (float(d[i * 16 + (j - j0)]) * s) * sw[j];
          }
        }
      }
    }
  }
}

}  // namespace moefuse::gemm::detail
