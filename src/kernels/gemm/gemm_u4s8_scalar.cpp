// Scalar W4A8 GEMM (gemm.h, "int4 group-wise x int8"): the portable variant every other one matches bit for bit.
// One output row at a time against one 32-column panel: per group the exact integer sums Σ (q - z) · a, then the
// contract's fp32 steps (fma with the group scale, groups in k order; times the row scale at the end).
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

template <int G>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  for_each_int4_panel(b_data, K, G, n0, n1, [&](std::byte* panel, int64_t p0, int64_t width) {
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* arow = a + m * lda;
      float acc[kGemmNR] = {};
      for (int64_t g = 0; g < K / G; ++g) {
        const Int4Block blk = int4_block(panel, G, g);
        int32_t isum[kGemmNR] = {};
        for (int64_t j = 0; j < width; ++j) {
          const int z = int(blk.zero_bias[j] - kInt4Magic);  // exact: z is an integer below 16
          for (int64_t r = 0; r < G; ++r) {
            const int q = (blk.rows[r * kInt4RowBytes + j / 2] >> (4 * (j % 2))) & 0xF;
            isum[j] += (q - z) * int32_t(arow[g * G + r]);
          }
        }
        for (int64_t j = 0; j < width; ++j) acc[j] = std::fma(float(isum[j]), blk.scale[j], acc[j]);
      }
      for (int64_t j = 0; j < width; ++j) c[m * ldc + (p0 - n0) + j] = acc[j] * a_scale[m];
    }
  });
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DEFINE, 1x32, scalar)

}  // namespace moefuse::gemm::detail
