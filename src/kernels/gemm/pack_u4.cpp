// Packing of int4 group-wise weights into gemm.h's int4 panel layout, and back. Runs once, at weight load.
#include <algorithm>
#include <cstring>
#include <string>

#include "base/check.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/int4_layout.h"

namespace moefuse::gemm {

PackedWeights pack_weights_u4(const Int4Source& src, int64_t K, int64_t N, int64_t G) {
  static constexpr const char* op = "pack_weights_u4";
  if (K < 0) check::fail_value(op, "K", "K >= 0", std::to_string(K));
  if (N < 0) check::fail_value(op, "N", "N >= 0", std::to_string(N));
  if (G != 32 && G != 64 && G != 128) check::fail_value(op, "G", "a group size of 32, 64 or 128", std::to_string(G));
  if (K % G != 0) check::fail_value(op, "K", "a multiple of the group size " + std::to_string(G), std::to_string(K));
  if (K >= 65536) check::fail_value(op, "K", "K < 65536", std::to_string(K));
  const int64_t groups = K / G;
  const size_t block = int4_block_bytes(G);
  PackedWeights w = PackedWeights::allocate(DType::u8, K, N, K, false, size_t(groups) * block);
  w.group_size_ = G;
  if (w.data_bytes() == 0) return w;
  auto* dst = static_cast<std::byte*>(const_cast<void*>(w.data()));
  std::memset(dst, 0, w.data_bytes());
  for (int64_t p = 0; p < w.panels(); ++p) {
    const int64_t n0 = p * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, N - n0);
    for (int64_t g = 0; g < groups; ++g) {
      Int4Block b = int4_block(dst + size_t(p) * w.panel_bytes(), G, g);
      for (int64_t j = 0; j < kGemmNR; ++j) {
        b.zero_bias[j] = kInt4Magic;  // padding: z = 0, s = 0
        b.scale[j] = 0.0f;
      }
      for (int64_t j = 0; j < width; ++j) {
        const int64_t at = g * src.sz_stride_g + (n0 + j) * src.sz_stride_n;
        const uint8_t z = src.zero[at];
        if (z > 15)
          check::fail_value(op, "zero", "values 0..15", std::to_string(z) + " at [" + std::to_string(g) + ", " +
                                                             std::to_string(n0 + j) + "]");
        b.scale[j] = src.scale[at];
        b.zero_bias[j] = kInt4Magic + float(z);
      }
      for (int64_t r = 0; r < G; ++r) {
        const int64_t k = g * G + r;
        uint8_t* row = b.rows + r * kInt4RowBytes;
        for (int64_t j = 0; j < width; ++j) {
          const uint8_t q = src.q[k * src.q_stride_k + (n0 + j) * src.q_stride_n];
          if (q > 15)
            check::fail_value(op, "q", "values 0..15",
                              std::to_string(q) + " at [" + std::to_string(k) + ", " + std::to_string(n0 + j) + "]");
          row[j / 2] = uint8_t(row[j / 2] | (j % 2 ? q << 4 : q));
        }
      }
    }
  }
  return w;
}

void unpack_weights_u4(const PackedWeights& w, const Int4Source& dst) {
  const int64_t K = w.k(), N = w.n(), G = w.group_size();
  if (K == 0 || N == 0 || G == 0) return;
  auto* base = static_cast<std::byte*>(const_cast<void*>(w.data()));
  auto* q = const_cast<uint8_t*>(dst.q);
  auto* scale = const_cast<float*>(dst.scale);
  auto* zero = const_cast<uint8_t*>(dst.zero);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t p = n / kGemmNR, j = n % kGemmNR;
    for (int64_t g = 0; g < K / G; ++g) {
      const Int4Block b = int4_block(base + size_t(p) * w.panel_bytes(), G, g);
      scale[g * dst.sz_stride_g + n * dst.sz_stride_n] = b.scale[j];
      zero[g * dst.sz_stride_g + n * dst.sz_stride_n] = uint8_t(b.zero_bias[j] - kInt4Magic);
      for (int64_t r = 0; r < G; ++r)
        q[(g * G + r) * dst.q_stride_k + n * dst.q_stride_n] = uint8_t((b.rows[r * kInt4RowBytes + j / 2] >> (4 * (j % 2))) & 0xF);
    }
  }
}

}  // namespace moefuse::gemm
