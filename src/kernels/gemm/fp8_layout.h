// The FP8 block-scaled panel layout of gemm.h, as addresses, and the weight the kernels compute with: shared by the
// packer and every FP8 kernel variant, so both are written once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/gemm/gemm.h"
#include "moefuse/dtype.h"

namespace moefuse::gemm {

/// Bytes before a block's rows: the 32 columns' fp32 scales.
inline constexpr size_t kFp8ScaleBytes = size_t(kGemmNR) * sizeof(float);

/// Rows of block g of a panel of K rows: kFp8BlockK, the last one K - g * kFp8BlockK.
constexpr int64_t fp8_block_rows(int64_t K, int64_t g) {
  return K - g * kFp8BlockK < kFp8BlockK ? K - g * kFp8BlockK : kFp8BlockK;
}

/// Bytes of one panel of K rows: its blocks (32 scales, then 32 bytes per row) rounded up to 64.
constexpr size_t fp8_panel_bytes(int64_t K) {
  const int64_t blocks = (K + kFp8BlockK - 1) / kFp8BlockK;
  return (size_t(blocks) * kFp8ScaleBytes + size_t(K) * size_t(kGemmNR) + 63) / 64 * 64;
}

/// Offset of block g in its panel (every block before it is full).
constexpr size_t fp8_block_offset(int64_t g) { return size_t(g) * (kFp8ScaleBytes + size_t(kFp8BlockK * kGemmNR)); }

/// The contract's weight: e4m3 widened exactly, times the block's scale in fp32, rounded to bf16 (RNE), widened.
inline float fp8_weight(uint8_t q, float scale) { return to_f32(to_bf16(f32_from_e4m3(q) * scale)); }

}  // namespace moefuse::gemm
