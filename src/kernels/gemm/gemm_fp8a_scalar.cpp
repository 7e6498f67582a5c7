// Dynamic FP8 activations x FP8 weights (fp8_act.h): the activation quantiser, the scalar reference every GEMM
// variant matches bit for bit, and the choice of variant.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/gemm/fp8_act.h"
#include "kernels/gemm/fp8_layout.h"
#include "moefuse/cpu.h"

namespace moefuse::gemm {

const std::array<double, 256>& e4m3_f64_table() {
  static const std::array<double, 256> t = [] {
    std::array<double, 256> v{};
    for (int i = 0; i < 256; ++i) v[size_t(i)] = double(f32_from_e4m3(uint8_t(i)));
    return v;
  }();
  return t;
}

void quantise_fp8_act_row(const float* x, int64_t K, uint8_t* q, float* s) {
  for (int64_t g = 0, k0 = 0; k0 < K; ++g, k0 += kFp8BlockK) {
    const int64_t k1 = std::min(K, k0 + kFp8BlockK);
    float amax = 0;
    bool finite = true;
    for (int64_t k = k0; k < k1; ++k) {
      finite = finite && std::isfinite(x[k]);
      amax = std::max(amax, std::fabs(x[k]));
    }
    const float scale = finite ? amax / 448.0f : f32_from_bits(0x7fc00000u);
    s[g] = scale;
    if (!(scale > 0)) {  // zero, underflow or non-finite: codes +0
      std::memset(q + k0, 0, size_t(k1 - k0));
      continue;
    }
    for (int64_t k = k0; k < k1; ++k) q[k] = e4m3_rne_sat(x[k] / scale);
  }
}

namespace detail {

void gemm_fp8a_fp8w_f32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                                const float* sa, int64_t ldsa, const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  const auto* b = static_cast<const std::byte*>(b_data);
  const size_t panel_bytes = fp8_panel_bytes(K);
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int64_t width = std::min<int64_t>(kGemmNR, n1 - p0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < width; ++j) {
        float acc = 0.0f;
        for (int64_t g = 0; g < fp8_blocks(K); ++g) {
          const std::byte* blk = panel + fp8_block_offset(K, g);
          const float sw = reinterpret_cast<const float*>(blk)[j];  // scales_only: 32 scales in column order
          const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
          double d = 0.0;  // exact (fp8_act.h)
          for (int64_t r = 0; r < fp8_block_rows(K, g); ++r)
            d += double(f32_from_e4m3(qa[m * lda + g * kFp8BlockK + r])) * double(f32_from_e4m3(q[r * kGemmNR + j]));
          acc = acc + (float(d) * sa[m * ldsa + g]) * sw;
        }
        c[m * ldc + (p0 - n0) + j] = acc;
      }
  }
}

}  // namespace detail

GemmFp8ActKernel select_gemm_fp8_act() {
  if (active_isa() >= Isa::avx512) return {detail::gemm_fp8a_fp8w_f32__avx512, "gemm_fp8a_fp8w_f32__avx512"};
  if (active_isa() >= Isa::avx2) return {detail::gemm_fp8a_fp8w_f32__avx2, "gemm_fp8a_fp8w_f32__avx2"};
  return {detail::gemm_fp8a_fp8w_f32__scalar, "gemm_fp8a_fp8w_f32__scalar"};
}

}  // namespace moefuse::gemm
