// Packing of FP8 block-scaled weights into gemm.h's FP8 panel layout, and the weights they stand for. Runs once, at
// weight load.
#include <algorithm>
#include <cstring>
#include <string>

#include "base/check.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/gemm.h"

namespace moefuse::gemm {

PackedWeights pack_weights_fp8(const Fp8Source& src, int64_t K, int64_t N) {
  static constexpr const char* op = "pack_weights_fp8";
  if (K < 0) check::fail_value(op, "K", "K >= 0", std::to_string(K));
  if (N < 0) check::fail_value(op, "N", "N >= 0", std::to_string(N));
  if (src.block_k != kFp8BlockK)
    check::fail_value(op, "block_k", std::to_string(kFp8BlockK) + " (the block the FP8 kernels are built for)",
                      std::to_string(src.block_k));
  if (src.block_n < 1) check::fail_value(op, "block_n", "block_n >= 1", std::to_string(src.block_n));
  PackedWeights w = PackedWeights::allocate(DType::u8, K, N, K, false, fp8_panel_bytes(K));
  w.fp8_ = true;
  if (w.data_bytes() == 0) return w;
  auto* dst = static_cast<std::byte*>(const_cast<void*>(w.data()));
  std::memset(dst, 0, w.data_bytes());
  const int64_t blocks = (K + kFp8BlockK - 1) / kFp8BlockK;
  for (int64_t p = 0; p < w.panels(); ++p) {
    const int64_t n0 = p * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, N - n0);
    for (int64_t g = 0; g < blocks; ++g) {
      std::byte* b = dst + size_t(p) * w.panel_bytes() + fp8_block_offset(g);
      auto* scale = reinterpret_cast<float*>(b);
      for (int64_t j = 0; j < width; ++j) {  // padded columns keep scale 0 and q 0
        float s = src.scale_inv[g * src.s_stride_kb + ((n0 + j) / src.block_n) * src.s_stride_nb];
        // One quiet NaN for every NaN scale, so that the AVX2 kernels' integer bf16 rounding keeps it a NaN.
        if (s != s) s = f32_from_bits(0x7fc00000u);
        scale[j] = s;
      }
      auto* q = reinterpret_cast<uint8_t*>(b + kFp8ScaleBytes);
      const int64_t k0 = g * kFp8BlockK;
      for (int64_t r = 0; r < fp8_block_rows(K, g); ++r)
        for (int64_t j = 0; j < width; ++j) q[r * kGemmNR + j] = src.q[(k0 + r) * src.q_stride_k + (n0 + j) * src.q_stride_n];
    }
  }
  return w;
}

void dequantise_weights_fp8(const PackedWeights& w, bfloat16* dst, int64_t stride_k, int64_t stride_n) {
  const int64_t K = w.k(), N = w.n();
  if (K == 0 || N == 0 || !w.fp8()) return;
  const auto* base = static_cast<const std::byte*>(w.data());
  for (int64_t n = 0; n < N; ++n) {
    const int64_t j = n % kGemmNR;
    const std::byte* panel = base + size_t(n / kGemmNR) * w.panel_bytes();
    for (int64_t k = 0; k < K; ++k) {
      const std::byte* b = panel + fp8_block_offset(k / kFp8BlockK);
      const float s = reinterpret_cast<const float*>(b)[j];
      const uint8_t q = reinterpret_cast<const uint8_t*>(b + kFp8ScaleBytes)[(k % kFp8BlockK) * kGemmNR + j];
      dst[k * stride_k + n * stride_n] = to_bf16(fp8_weight(q, s));
    }
  }
}

}  // namespace moefuse::gemm
