// AVX-512 GEMM variants (F/BW/VL/DQ; this file is compiled with those flags and only called when the CPU has them).
//
// Float: a tile of MR rows x 32·NP columns (NP panels) keeps MR x 2·NP zmm accumulators; per k it loads each panel's
// row (2 zmm, widened from bf16/f16 in registers; see load_row in tile__avx512.h, which holds the tile itself,
// tile_f, shared with the FP8 kernel) and does one vfmadd231ps per accumulator with A[m, k] broadcast. Each
// accumulator lane is one output element's chain in the contract's order, whatever the tile: k = 0..K-1 for f32/f16,
// pairs (k + 1, k) for bf16 (k_order.h), whose entry point runs its FMAs under DenormalsAreZero (gemm.h, "bf16
// weights": the FMAs are then exactly fma_daz_ftz; everything else in it moves bits). Two tiles:
//   6 x 64 (NP = 2): 24 accumulators + 4 B registers. Used for every pair of panels (but see use_pairs), rows cut
//     into balanced blocks of at most 6. Decode (M <= 6) streams the panels once, two sequential streams, 4 independent
//     chains even for one row; and measured on Zen 4 it beats 12 x 32 at every M (2048 x 2048 bf16, cold weights: M =
//     8: 95 against 75 GFLOP/s, M = 64: 108 against 100; the peak is 114).
//   12 x 32 (NP = 1): 24 accumulators + 2 B registers, for a last single panel (N % 64 in 1..32, or a call over one
//     32-column block), rows in balanced blocks of at most 12 (64 rows = 4 x 11 + 2 x 10).
// Tiles of 14 rows spill (measured slower); blocking K (partial sums kept in C) was measured slower too and is not
// used. Software prefetch of B was measured slower too when these tiles were written; it runs only where the prefetch
// settings' bf16 entry asks for it (base/cpu_tuning.h; the Zen 5's entry was swept on the vdpbf16ps kernel, not on
// this one), in tiles instantiated with it (Pf); f32 and f16 weights never prefetch.
//
// int8 without VNNI: bytes are widened to int16 and multiplied with vpmaddwd (exact: no saturation, unlike
// vpmaddubsw); a tile is MR <= 6 rows x 32 columns with 4 zmm accumulators per row holding two partial sums per
// column, added pairwise at the end.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <type_traits>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRowsF = 12;    // rows of the single-panel float tile
constexpr int kMaxRowsPair = 6;  // rows of the two-panel float tile
constexpr int kMaxRowsS8 = 6;    // rows of the int8 (vpmaddwd) tile
constexpr int kPairsF32Lo = 8;   // f32 weights: 7..8 rows use the single-panel tile (see use_pairs)

// Whether M rows go through the two-panel tiles. Above 6 rows they take two row blocks, and the second pass over the
// panels then does not overlap the memory stream of the first. With f32 weights (memory-bound there) the one-pass
// single-panel 12 x 32 tile is faster for 7..8 rows (measured, 2048 x 2048 cold: M = 7: 82 against 70 GFLOP/s; from
// M = 9 on pairs win: M = 10: 90 against 73). bf16/f16 weights (half the bytes, compute-bound) gain from pairs at
// every M.
template <class W>
constexpr bool use_pairs(int64_t M) {
  return !(std::is_same_v<W, float> && M > kMaxRowsPair && M <= kPairsF32Lo);
}

// Pf: the tiles prefetch B pf.bytes ahead (tile_f). A: the element type of A's rows (float, or bfloat16 for the bf16-A
// entry: widened exactly as the tiles buffer them).
template <class W, bool Pf = false, class A = float>
void gemm_float(int64_t M, int64_t K, int64_t n0, int64_t n1, const A* a, int64_t lda, const void* b_data, float* c,
                int64_t ldc, Prefetch pf = {}) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto tiles1 = make_tiles_f<W, 1, false, Pf, A>(std::make_integer_sequence<int, kMaxRowsF>{});
  static constexpr auto tiles2 = make_tiles_f<W, 2, false, Pf, A>(std::make_integer_sequence<int, kMaxRowsPair>{});
  if (M <= 0) return;
  const W* b = static_cast<const W*>(b_data);
  const int64_t pstride = K * kGemmNR;
  int64_t p0 = n0;
  if (use_pairs<W>(M)) {
    // Pairs of panels: 6 x 64 tiles, rows split in balanced blocks of at most 6.
    const int64_t blocks = (M + kMaxRowsPair - 1) / kMaxRowsPair;
    const int64_t base = M / blocks, extra = M % blocks;
    for (; p0 + kGemmNR < n1; p0 += 2 * kGemmNR) {
      int64_t m0 = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t rows = base + (blk < extra ? 1 : 0);
        tiles2[rows - 1](K, a + m0 * lda, lda, b + (p0 / kGemmNR) * pstride, pstride, c + m0 * ldc + (p0 - n0), ldc,
                         int(std::min<int64_t>(2 * kGemmNR, n1 - p0)), pf);
        m0 += rows;
      }
    }
  }
  // A last single panel: 12 x 32 tiles, rows split in balanced blocks of at most 12 (64 rows = 4 x 11 + 2 x 10).
  const int64_t blocks = (M + kMaxRowsF - 1) / kMaxRowsF;
  const int64_t base = M / blocks, extra = M % blocks;
  for (; p0 < n1; p0 += kGemmNR) {
    const W* panel = b + (p0 / kGemmNR) * pstride;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    int64_t m0 = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t rows = base + (blk < extra ? 1 : 0);
      tiles1[rows - 1](K, a + m0 * lda, lda, panel, pstride, c + m0 * ldc + (p0 - n0), ldc, width, pf);
      m0 += rows;
    }
  }
}

// ─── int8 with vpmaddwd ─────────────────────────────────────────────────────────────────────────────────────────

template <int MR>
__attribute__((always_inline)) inline void step_s8(const int8_t* a, int64_t lda, int64_t k, int n, const int8_t* bg,
                                                   __m512i (&acc)[MR][4]) {
  __m512i bw[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j)  // columns 8j .. 8j+8, 4 k each, as int16
    bw[j] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bg + 32 * j)));
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    // (a0, a1, a2, a3) as int16, repeated: vpmaddwd gives a0*b0 + a1*b1 and a2*b2 + a3*b3 per column.
    const __m512i av = _mm512_cvtepi8_epi16(_mm256_set1_epi32(load_a4(a + m * lda + k, n)));
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_add_epi32(acc[m][j], _mm512_madd_epi16(av, bw[j]));
  }
}

template <int MR>
void tile_s8(int64_t K, const int8_t* a, int64_t lda, const int8_t* b, int32_t* c, int64_t ldc, int width) {
  __m512i acc[MR][4];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_setzero_si512();
  const int64_t full = K / 4;
  // The partial group of K % 4 first: integer sums do not depend on order, and with the tail after the loop GCC
  // keeps a stack copy of every accumulator up to date inside the loop.
  if (K % 4) step_s8<MR>(a, lda, 4 * full, int(K % 4), b + full * 4 * kGemmNR, acc);
  for (int64_t g = 0; g < full; ++g) step_s8<MR>(a, lda, 4 * g, 4, b + g * 4 * kGemmNR, acc);

  // acc[m][j] holds (lo, hi) partial sums of columns 8j .. 8j+8 in adjacent dwords: add the pairs.
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __mmask16 mask = column_mask(width, h);
    if (!mask) continue;
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512i s = _mm512_add_epi32(_mm512_permutex2var_epi32(acc[m][2 * h], even, acc[m][2 * h + 1]),
                                         _mm512_permutex2var_epi32(acc[m][2 * h], odd, acc[m][2 * h + 1]));
      _mm512_mask_storeu_epi32(c + m * ldc + 16 * h, mask, s);
    }
  }
}

using TileS8 = void (*)(int64_t, const int8_t*, int64_t, const int8_t*, int32_t*, int64_t, int);

template <int... R>
constexpr auto make_tiles_s8(std::integer_sequence<int, R...>) {
  return std::array<TileS8, sizeof...(R)>{&tile_s8<R + 1>...};
}

}  // namespace

void gemm_f32w_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc) {
  gemm_float<float>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_bf16w_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                 const void* b, float* c, int64_t ldc) {
  const DenormalsAreZero guard;
  const Prefetch pf = prefetch_for(PrefetchStream::bf16, M);
  if (pf.on()) gemm_float<bfloat16, true>(M, K, n0, n1, a, lda, b, c, ldc, pf);
  else gemm_float<bfloat16>(M, K, n0, n1, a, lda, b, c, ldc);
}

// bf16 rows of A (GemmBf16AFn): the same tiles, A widened as it is buffered (no per-call copy of A).
void gemm_bf16w_bf16a_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a, int64_t lda,
                                       const void* b, float* c, int64_t ldc) {
  const DenormalsAreZero guard;
  const Prefetch pf = prefetch_for(PrefetchStream::bf16, M);
  if (pf.on()) gemm_float<bfloat16, true, bfloat16>(M, K, n0, n1, a, lda, b, c, ldc, pf);
  else gemm_float<bfloat16, false, bfloat16>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_f16w_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc) {
  gemm_float<float16>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_s8_s32_6x32__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                              const int8_t* b, const int32_t* /*col_sums: not needed, A is not shifted*/, int32_t* c,
                              int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto tiles = make_tiles_s8(std::make_integer_sequence<int, kMaxRowsS8>{});
  if (M <= 0) return;
  const int64_t pstride = (K + 3) / 4 * 4 * kGemmNR;
  const int64_t blocks = (M + kMaxRowsS8 - 1) / kMaxRowsS8;
  const int64_t base = M / blocks, extra = M % blocks;
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const int8_t* panel = b + (p0 / kGemmNR) * pstride;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    int64_t m0 = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t rows = base + (blk < extra ? 1 : 0);
      tiles[rows - 1](K, a + m0 * lda, lda, panel, c + m0 * ldc + (p0 - n0), ldc, width);
      m0 += rows;
    }
  }
}

}  // namespace moefuse::gemm::detail
