// Scalar FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"): the portable variant every other one matches bit for
// bit. One output row at a time against one 32-column panel, k outer in the bf16 contract's pairs, each weight formed
// as its vector's form says (fp8_layout.h: the packer stores a form only where it equals the contract's weight for
// every code it holds).
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "base/bf16_dot.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {

void gemm_fp8w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  const auto* b = static_cast<const std::byte*>(b_data);
  const size_t panel_bytes = fp8_panel_bytes(K);
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int64_t width = std::min<int64_t>(kGemmNR, n1 - p0);
    for (int64_t m = 0; m < M; ++m) {
      const float* arow = a + m * lda;
      float acc[kGemmNR] = {};
      for (int64_t g = 0; g < fp8_blocks(K); ++g) {
        const std::byte* blk = panel + fp8_block_offset(K, g);
        const auto forms = reinterpret_cast<const uint8_t*>(panel)[g];
        const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
        const int64_t rows = fp8_block_rows(K, g);
        const auto step = [&](int64_t r) {
          for (int64_t j = 0; j < width; ++j) {
            const int v = int(j / 8);
            const float w = fp8_packed_weight(fp8_form(forms, v), blk + size_t(v) * kFp8VectorBytes, int(j % 8),
                                              q[r * kGemmNR + j]);
            acc[j] = fma_daz_ftz(arow[g * kFp8BlockK + r], w, acc[j]);
          }
        };
        // Pairs (r + 1, r), as the bf16 contract; blocks hold an even number of rows except the last, whose odd
        // row pairs with the zero pair of k = K.
        for (int64_t r = 0; r < rows; r += 2) {
          if (r + 1 < rows) step(r + 1);
          else for (int64_t j = 0; j < width; ++j) acc[j] = fma_daz_ftz(0.0f, 0.0f, acc[j]);
          step(r);
        }
      }
      std::memcpy(c + m * ldc + (p0 - n0), acc, size_t(width) * sizeof(float));
    }
  }
}

}  // namespace moefuse::gemm::detail
