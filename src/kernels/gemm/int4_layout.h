// The int4 group-wise panel layout of gemm.h, as addresses: shared by the packer and every int4 kernel variant, so
// the layout is written once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/gemm/gemm.h"

namespace moefuse::gemm {

/// 2^23: float(2^23 + q) has q in its low mantissa bits, so or-ing q (0..15) into its bit pattern makes it exactly.
inline constexpr float kInt4Magic = 8388608.0f;
inline constexpr uint32_t kInt4MagicBits = 0x4B000000u;
/// Bytes of one packed row of a panel: 32 nibbles.
inline constexpr int64_t kInt4RowBytes = kGemmNR / 2;

/// Bytes of one group block of a panel: 32 scales, 32 zero biases, G rows of 16 bytes.
constexpr size_t int4_block_bytes(int64_t G) { return 2 * kGemmNR * sizeof(float) + size_t(G) * kInt4RowBytes; }

struct Int4Block {
  float* scale;      // [32]
  float* zero_bias;  // [32]: 2^23 + z
  uint8_t* rows;     // [G][16]
};

/// Group g's block of the panel starting at `panel`.
inline Int4Block int4_block(std::byte* panel, int64_t G, int64_t g) {
  std::byte* b = panel + size_t(g) * int4_block_bytes(G);
  auto* f = reinterpret_cast<float*>(b);
  return Int4Block{f, f + kGemmNR, reinterpret_cast<uint8_t*>(f + 2 * kGemmNR)};
}

/// The panels of columns [n0, n1) (n0 a multiple of 32) of packed weights with K rows in groups of G:
/// fn(panel, its first column, its valid columns 1..32), in column order.
template <class Fn>
inline void for_each_int4_panel(const void* b_data, int64_t K, int64_t G, int64_t n0, int64_t n1, Fn fn) {
  auto* b = static_cast<std::byte*>(const_cast<void*>(b_data));
  const size_t panel_bytes = size_t(K / G) * int4_block_bytes(G);
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR)
    fn(b + size_t(p0 / kGemmNR) * panel_bytes, p0, std::min<int64_t>(kGemmNR, n1 - p0));
}

}  // namespace moefuse::gemm
