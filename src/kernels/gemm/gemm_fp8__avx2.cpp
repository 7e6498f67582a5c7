// AVX2 + FMA + F16C FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"): e4m3 widened in registers, never in memory.
//
// Eight columns of a packed row are 8 bytes: vpmovzxbw widens them to 16-bit lanes, where ((q << 7) & 0x3f80) |
// ((q << 8) & 0x8000) is the fp16 whose exponent and mantissa fields hold e4m3's, i.e. e4m3's value times 2^-8
// (the exponent biases are 15 and 7; e4m3's subnormals land on fp16 subnormals, exactly); vcvtph2ps widens it to
// fp32 and one multiply by 2^8 gives the e4m3 value exactly. Then the block scale (one fp32 rounding) and the
// integer round-to-nearest-even to bf16 ((x + 0x7fff + bit 16) & 0xffff0000: to_bf16's arithmetic; a NaN product
// stays NaN because the packer stores NaN scales as the one quiet NaN); the two NaN codes are forced to all-ones (a
// NaN) last. That is the scalar variant's fp8_weight() bit for bit (up to NaN payloads, which gemm.h leaves open),
// and then one vfmadd per k per output element, k in order: the float contract's chain.
//
// Why through fp16: placing the bits straight into an fp32 ((q << 20) & 0x07f00000, times 2^120) makes e4m3's
// subnormal codes fp32 subnormals, and multiplies with subnormal operands cost this Zen 3 about 40% of the kernel's
// time on random codes (measured); vcvtph2ps produces normal fp32 values only. A 256-entry table would need
// vpgatherdd, slower here than these shifts; vpermps covers 8 entries only. The weight still costs about 14 vector
// instructions per 8 weights (the bf16 rounding is 5 of them), so at M = 1 the kernel is bounded by those
// instructions rather than by its 1 byte per weight (docs/performance.md has the measurement).
//
// Tiles as the int4 kernel's: for M <= 2 a tile is M rows x 32 columns (the panel's weights formed once per k);
// otherwise 8-column strips with tiles of up to 8 rows (one weight vector per k shared by 8 rows).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <utility>

#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx2.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRows = 8;
constexpr int kMaxRowsFullPanel = 2;

struct Consts {
  __m128i magnitude16 = _mm_set1_epi16(0x3F80);
  __m128i sign16 = _mm_set1_epi16(int16_t(0x8000));
  __m128i low7 = _mm_set1_epi16(0x7F);
  __m256 two8 = _mm256_set1_ps(256.0f);
  __m256i one = _mm256_set1_epi32(1);
  __m256i half = _mm256_set1_epi32(0x7FFF);
  __m256i high = _mm256_set1_epi32(int(0xFFFF0000u));
};

// The fp32 weights of 8 columns: q8 points at their 8 e4m3 bytes, s holds their scales.
__attribute__((always_inline)) inline __m256 dequant8(const Consts& k, const uint8_t* q8, __m256 s) {
  const __m128i x = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q8)));
  const __m128i h = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(x, 7), k.magnitude16),
                                 _mm_and_si128(_mm_slli_epi16(x, 8), k.sign16));
  const __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(h), k.two8);  // the e4m3 value, exactly
  const __m256i p = _mm256_castps_si256(_mm256_mul_ps(v, s));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(p, 16), k.one);
  const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(p, k.half), lsb), k.high);
  const __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(x, k.low7), k.low7);
  return _mm256_castsi256_ps(_mm256_or_si256(r, _mm256_cvtepi16_epi32(nan)));
}

// MR rows x 8*NV columns starting at vector v0 of the panel at `panel`; `width`: valid columns counted from 8*v0.
template <int MR, int NV>
void tile(int64_t K, const float* a, int64_t lda, const std::byte* panel, int v0, float* c, int64_t ldc, int width) {
  const Consts k;
  __m256 acc[MR][NV];
  zero_tile(acc);
  const int64_t blocks = (K + kFp8BlockK - 1) / kFp8BlockK;
  for (int64_t g = 0; g < blocks; ++g) {
    const std::byte* blk = panel + fp8_block_offset(g);
    const auto* scale = reinterpret_cast<const float*>(blk);
    const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8ScaleBytes);
    __m256 s[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) s[v] = _mm256_loadu_ps(scale + 8 * (v0 + v));
    const float* ak = a + g * kFp8BlockK;
    const int64_t rows = fp8_block_rows(K, g);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = q + r * kGemmNR;
      __m256 w[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) w[v] = dequant8(k, row + 8 * (v0 + v), s[v]);
      fma_step<MR, NV>(ak + r, lda, w, acc);
    }
  }
  store_tile<MR, NV>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, const std::byte*, int, float*, int64_t, int);

template <int NV, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<R + 1, NV>...};
}

}  // namespace

void gemm_fp8w_f32_8x8__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                             const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto full = make_tiles<4>(std::make_integer_sequence<int, kMaxRowsFullPanel>{});
  static constexpr auto strip = make_tiles<1>(std::make_integer_sequence<int, kMaxRows>{});
  run_tiles(M, K, n0, n1, a, lda, static_cast<const std::byte*>(b_data), fp8_panel_bytes(K), c, ldc, full, strip);
}

}  // namespace moefuse::gemm::detail
