// Scalar GEMM variants: portable C++, the fallback on any CPU and the shape every other variant must match bit for
// bit. One output row at a time against one 32-column panel (a 1x32 tile), k outer so that B is read in packed order
// (bf16 weights: pairs of k, odd row first, each step fma_daz_ftz: gemm.h, "bf16 weights").
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/bf16_dot.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

inline float widen(float v) { return v; }
inline float widen(float16 v) { return to_f32(v); }

// The bf16 contract over one panel row block: acc[j] over pairs (2i + 1, 2i), a zero pair standing in for k = K
// when K is odd.
void gemm_bf16_panel(int64_t K, const float* arow, const bfloat16* panel, int64_t width, float* acc) {
  for (int64_t k = 0; k < K; k += 2) {
    const bfloat16* even = panel + k * kGemmNR;
    if (k + 1 < K) {
      const float av = arow[k + 1];
      for (int64_t j = 0; j < width; ++j) acc[j] = fma_daz_ftz(av, to_f32(even[kGemmNR + j]), acc[j]);
    } else {
      for (int64_t j = 0; j < width; ++j) acc[j] = fma_daz_ftz(0.0f, 0.0f, acc[j]);
    }
    const float av = arow[k];
    for (int64_t j = 0; j < width; ++j) acc[j] = fma_daz_ftz(av, to_f32(even[j]), acc[j]);
  }
}

template <class W>
void gemm_float(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
                int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  const W* b = static_cast<const W*>(b_data);
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const W* panel = b + (p0 / kGemmNR) * K * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, n1 - p0);
    for (int64_t m = 0; m < M; ++m) {
      const float* arow = a + m * lda;
      float acc[kGemmNR] = {};
      if constexpr (std::is_same_v<W, bfloat16>) {
        gemm_bf16_panel(K, arow, panel, width, acc);
      } else {
        for (int64_t k = 0; k < K; ++k) {
          const float av = arow[k];
          const W* brow = panel + k * kGemmNR;
          for (int64_t j = 0; j < width; ++j) acc[j] = std::fma(av, widen(brow[j]), acc[j]);
        }
      }
      std::memcpy(c + m * ldc + (p0 - n0), acc, size_t(width) * sizeof(float));
    }
  }
}

}  // namespace

void gemm_f32w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc) {
  gemm_float<float>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_bf16w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                 const void* b, float* c, int64_t ldc) {
  gemm_float<bfloat16>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_f16w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc) {
  gemm_float<float16>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_s8_s32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                              const int8_t* b, const int32_t* /*col_sums: not needed without the +128 shift*/,
                              int32_t* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  const int64_t Kp = (K + 3) / 4 * 4;
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const int8_t* panel = b + (p0 / kGemmNR) * Kp * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, n1 - p0);
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* arow = a + m * lda;
      // |sum| <= 65535 * 128 * 128 < 2^31: no overflow in int32.
      int32_t acc[kGemmNR] = {};
      for (int64_t k = 0; k < K; ++k) {
        const int32_t av = arow[k];
        const int8_t* bk = panel + (k / 4) * (kGemmNR * 4) + k % 4;
        for (int64_t j = 0; j < width; ++j) acc[j] += av * int32_t(bk[j * 4]);
      }
      std::memcpy(c + m * ldc + (p0 - n0), acc, size_t(width) * sizeof(int32_t));
    }
  }
}

}  // namespace moefuse::gemm::detail
