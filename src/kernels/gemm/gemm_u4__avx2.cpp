// AVX2 + FMA int4 group-wise GEMM (gemm.h, "int4 group-wise"): nibbles unpacked in registers, never in memory.
//
// Eight columns of one packed row are one 32-bit word: broadcast it, shift lane i right by 4i (vpsrlvd), mask to
// 4 bits, or the result into the bits of 2^23 (giving float 2^23 + q exactly), subtract the group's zero bias
// 2^23 + z (exact: q - z) and multiply by the scale: the contract's weight, bit for bit. Then one vfmadd per k per
// output element, k in order: the float contract's chain.
//
// Tiles: for M <= 2 a tile is M rows x 32 columns (the whole panel dequantised once per k, 4 or 8 FMA chains);
// otherwise each panel is done in 8-column strips with tiles of up to 8 rows (8 accumulators, one weight vector per
// k shared by 8 rows). Dequantisation costs about 6 vector instructions per 8 weights, so decode (M small) is
// bounded by it rather than by memory on this 2-core Zen 3; prefill reaches a fraction of the FMA peak only.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx2.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRows = 8;
constexpr int kMaxRowsFullPanel = 2;

struct Consts {
  __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  __m256i mask = _mm256_set1_epi32(0xF);
  __m256i magic = _mm256_set1_epi32(int(kInt4MagicBits));
};

// The fp32 weights of columns 8v .. 8v + 7 of packed row `row` (16 bytes) of a group block.
__attribute__((always_inline)) inline __m256 dequant8(const Consts& k, const uint8_t* row, int v, const float* zb,
                                                      const float* s) {
  uint32_t word;
  std::memcpy(&word, row + 4 * v, 4);
  const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), k.shifts), k.mask);
  const __m256 biased = _mm256_castsi256_ps(_mm256_or_si256(q, k.magic));  // 2^23 + q
  return _mm256_mul_ps(_mm256_sub_ps(biased, _mm256_loadu_ps(zb + 8 * v)), _mm256_loadu_ps(s + 8 * v));
}

// MR rows x 8*NV columns starting at vector v0 of the panel at `panel`; `width`: valid columns counted from 8*v0.
template <int G, int MR, int NV>
void tile(int64_t K, const float* a, int64_t lda, std::byte* panel, int v0, float* c, int64_t ldc, int width) {
  const Consts k;
  __m256 acc[MR][NV];
  zero_tile(acc);
  for (int64_t g = 0; g < K / G; ++g) {
    const Int4Block blk = int4_block(panel, G, g);
    const float* ak = a + g * G;
    for (int r = 0; r < G; ++r) {
      const uint8_t* row = blk.rows + r * kInt4RowBytes;
      __m256 w[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) w[v] = dequant8(k, row, v0 + v, blk.zero_bias, blk.scale);
      fma_step<MR, NV>(ak + r, lda, w, acc);
    }
  }
  store_tile<MR, NV>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, std::byte*, int, float*, int64_t, int);

template <int G, int NV, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1, NV>...};
}

template <int G>
void gemm_u4(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
             int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto full = make_tiles<G, 4>(std::make_integer_sequence<int, kMaxRowsFullPanel>{});
  static constexpr auto strip = make_tiles<G, 1>(std::make_integer_sequence<int, kMaxRows>{});
  run_tiles(M, K, n0, n1, a, lda, static_cast<std::byte*>(const_cast<void*>(b_data)),
            size_t(K / G) * int4_block_bytes(G), c, ldc, full, strip);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DEFINE, 8x8, avx2)

}  // namespace moefuse::gemm::detail
