// Packing of FP8 block-scaled weights into gemm.h's FP8 panel layout (fp8_layout.h: the forms and why), and the
// weights they stand for. Runs once, at weight load.
#include <algorithm>
#include <array>
#include <bitset>
#include <cstring>
#include <string>

#include "base/check.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/gemm.h"

namespace moefuse::gemm {
namespace {

// bf16(2^-7 (1 + m/8) s) and bf16(2^-9 m s) for m = 0..7: fp8_layout.h's t1 and t0 for scale s.
void make_tables(float s, uint16_t* t1, uint16_t* t0) {
  for (uint32_t m = 0; m < 8; ++m) {
    t1[m] = to_bf16(f32_from_bits((120u << 23) | (m << 20)) * s).bits;
    t0[m] = to_bf16(float(m) * f32_from_bits(0x3b000000u) * s).bits;
  }
}

// Fills one vector area (8 columns of a block) and returns its form: the tables of the first column's scale when
// fp8_table_bits equals fp8_weight for every code each column holds, with that column's scale; else the scales.
Fp8Form fill_vector(const std::array<std::bitset<256>, 8>& codes, const float* scale, std::byte* area,
                    bool scales_only) {
  if (scales_only) {
    std::memcpy(area, scale, kFp8VectorBytes);
    return Fp8Form::scales;
  }
  std::array<uint16_t, 16> tables{};
  make_tables(scale[0], tables.data(), tables.data() + 8);
  bool exact = true, subnormal = false;
  for (int j = 0; j < 8 && exact; ++j)
    for (int q = 0; q < 256 && exact; ++q) {
      if (!codes[size_t(j)][size_t(q)]) continue;
      subnormal = subnormal || (q & 0x78) == 0;
      exact = fp8_table_bits(uint8_t(q), tables.data(), tables.data() + 8) == f32_bits(fp8_weight(uint8_t(q), scale[j]));
    }
  if (!exact) {
    std::memcpy(area, scale, kFp8VectorBytes);
    return Fp8Form::scales;
  }
  std::memcpy(area, tables.data(), kFp8VectorBytes);
  return subnormal ? Fp8Form::table_sub : Fp8Form::table;
}

}  // namespace

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
  for (int64_t p = 0; p < w.panels(); ++p) {
    std::byte* panel = dst + size_t(p) * w.panel_bytes();
    const int64_t n0 = p * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, N - n0);
    for (int64_t g = 0; g < fp8_blocks(K); ++g) {
      std::byte* b = panel + fp8_block_offset(K, g);
      auto* q = reinterpret_cast<uint8_t*>(b + kFp8HeadBytes);
      const int64_t k0 = g * kFp8BlockK;
      float scale[kGemmNR] = {};  // padded columns keep scale 0 and q 0
      std::array<std::bitset<256>, kGemmNR> codes{};
      for (int64_t j = 0; j < width; ++j) {
        float s = src.scale_inv[g * src.s_stride_kb + ((n0 + j) / src.block_n) * src.s_stride_nb];
        // One quiet NaN for every NaN scale, so that the AVX2 kernels' integer bf16 rounding keeps it a NaN.
        if (s != s) s = f32_from_bits(0x7fc00000u);
        scale[j] = s;
      }
      for (int64_t r = 0; r < fp8_block_rows(K, g); ++r)
        for (int64_t j = 0; j < kGemmNR; ++j) {
          const uint8_t v = j < width ? src.q[(k0 + r) * src.q_stride_k + (n0 + j) * src.q_stride_n] : 0;
          q[r * kGemmNR + j] = v;
          codes[size_t(j)].set(v);
        }
      uint8_t forms = 0;
      for (int v = 0; v < 4; ++v) {
        std::array<std::bitset<256>, 8> vector_codes;
        std::copy_n(codes.begin() + 8 * v, 8, vector_codes.begin());
        forms |= uint8_t(uint8_t(fill_vector(vector_codes, scale + 8 * v, b + size_t(v) * kFp8VectorBytes,
                                                   src.scales_only)) << (2 * v));
      }
      reinterpret_cast<uint8_t*>(panel)[g] = forms;
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
      const int64_t g = k / kFp8BlockK;
      const std::byte* b = panel + fp8_block_offset(K, g);
      const Fp8Form f = fp8_form(reinterpret_cast<const uint8_t*>(panel)[g], int(j / 8));
      const uint8_t q = reinterpret_cast<const uint8_t*>(b + kFp8HeadBytes)[(k % kFp8BlockK) * kGemmNR + j];
      dst[k * stride_k + n * stride_n] = to_bf16(fp8_packed_weight(f, b + size_t(j / 8) * kFp8VectorBytes, int(j % 8), q));
    }
  }
}

}  // namespace moefuse::gemm
