// Scalar int4 group-wise GEMM (gemm.h, "int4 group-wise"): the portable variant every other one matches bit for bit.
// One output row at a time against one 32-column panel, group by group, each step as the contract writes it.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "base/bf16_dot.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

template <int G>
void gemm_u4(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
             int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  for_each_int4_panel(b_data, K, G, n0, n1, [&](std::byte* panel, int64_t p0, int64_t width) {
    for (int64_t m = 0; m < M; ++m) {
      const float* arow = a + m * lda;
      float acc[kGemmNR] = {};
      for (int64_t g = 0; g < K / G; ++g) {
        const Int4Block blk = int4_block(panel, G, g);
        const float* ag = arow + g * G;
        // Σ a over the group, in the same pairs as the products (the weight 1 for every k).
        float sa = 0.0f;
        for (int64_t r = 0; r < G; r += 2) {
          sa = fma_daz_ftz(ag[r + 1], 1.0f, sa);
          sa = fma_daz_ftz(ag[r], 1.0f, sa);
        }
        for (int64_t j = 0; j < width; ++j) {
          const int shift = 4 * int(j % 2);
          const auto q = [&](int64_t r) { return float((blk.rows[r * kInt4RowBytes + j / 2] >> shift) & 0xF); };
          float sq = 0.0f;
          for (int64_t r = 0; r < G; r += 2) {
            sq = fma_daz_ftz(ag[r + 1], q(r + 1), sq);
            sq = fma_daz_ftz(ag[r], q(r), sq);
          }
          const float z = blk.zero_bias[j] - kInt4Magic;  // exact: z is an integer below 16
          acc[j] = fma_daz_ftz(blk.scale[j], fma_daz_ftz(-z, sa, sq), acc[j]);
        }
      }
      std::memcpy(c + m * ldc + (p0 - n0), acc, size_t(width) * sizeof(float));
    }
  });
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DEFINE, 1x32, scalar)

}  // namespace moefuse::gemm::detail
