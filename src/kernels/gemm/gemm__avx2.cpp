// AVX2 + FMA (+ F16C) GEMM variants, for CPUs without AVX-512 (16 ymm registers).
//
// Float: for M = 1 a tile is 1 row x 3 panels (96 columns, 12 accumulators): the three panels are three streams
// read side by side, which one core reads faster than one stream (Zen 3, one thread, bf16 2048 x 2048 from DRAM:
// one panel at a time 16 GB/s, two 19, three 23, four 22 with spills); a last one or two panels go on their own.
// For M = 2 a tile is 2 rows x 32 columns (4 ymm accumulators per row: 8 independent FMA chains, the panel streamed
// once; two panels at once would need 16 accumulators and spill, measured slower). Otherwise each panel is done in two 16-column halves with tiles of up to 6 rows x 16 columns
// (12 accumulators + 2 B registers + 1 broadcast = 15 of 16 ymm). Either way each accumulator lane is one output
// element's chain, one vfmadd per k, in the contract's order: k = 0..K-1 for f32/f16, pairs (k + 1, k) for bf16
// (k_order.h), whose entry point runs its FMAs under DenormalsAreZero (gemm.h, "bf16 weights").
//
// int8: rows whose activations hold no -128 (the layer's dynamic quantisation gives -127..127) take vpmaddubsw on
// |w| and the activations with w's sign, exact there (tile_s8_sign), in blocks of up to 2 rows, each a whole panel
// per pass (one thread, 2048 x 2048 from DRAM, Zen 3, against the widening path: M = 1 level at 21-22 GB/s,
// M = 2 14 -> 19-20, M = 4 7.9 -> 11.9, M = 8 4.9 -> 7.0, M = 64 0.80 -> 1.01). Otherwise bytes are widened to
// int16 and multiplied with vpmaddwd (exact for every value); one row takes a whole panel, more rows tiles of up to
// 2 rows x 16 columns; 4 ymm accumulators per 16 columns and row hold two partial sums per column, added pairwise at
// the end.
//
// Software prefetch (base/cpu_tuning.h; off in the generic entry; not swept on an AVX2-only CPU): where the settings'
// bf16 or int8 entry asks for it, the decode tiles (bf16: M = 1 and 2, whole panels; int8: the sign path's tiles) prefetch each panel
// line they read that many bytes ahead. They are instantiated with and without it (Pf), chosen per call.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "base/bf16_dot.h"
#include "base/integers.h"
#include "kernels/gemm/tile__avx2.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRowsF = 6;
constexpr int kMaxRowsFullPanel = 2;  // rows up to which a tile spans the whole 32-column panel
constexpr int kMaxRowsS8 = 2;

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const bfloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load8(const float16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// MR rows x 8*NV columns of one panel row layout (stride 32 elements per k), starting at b (already offset to the
// first column of the tile). `width`: valid columns of the tile.
template <class W, int MR, int NV, bool Pf = false>
void tile_f(int64_t K, const float* a, int64_t lda, const W* b, float* c, int64_t ldc, int width,
            [[maybe_unused]] Prefetch pf) {
  __m256 acc[MR][NV];
  zero_tile(acc);

  const auto step = [&](int64_t k) __attribute__((always_inline)) {
    if constexpr (Pf) prefetch_ahead(b + k * kGemmNR, pf);  // a whole bf16 panel row: one line
    __m256 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load8(b + k * kGemmNR + 8 * v);
    fma_step<MR, NV>(a + k, lda, bv, acc);
  };
  walk_k<kPairsOfK<W>>(K, step, [&]() __attribute__((always_inline)) { zero_pair(acc); });

  store_tile<MR, NV>(acc, c, ldc, width);
}

// One row x P whole panels (P streams), starting at panel b; `width`: valid columns of the last panel.
template <class W, int P, bool Pf>
void tile_f_row(int64_t K, const float* a, const W* b, int64_t pstride, float* c, int width,
                [[maybe_unused]] Prefetch pf) {
  __m256 acc[P][1][4];  // panel q's tile
#pragma GCC unroll 4
  for (int q = 0; q < P; ++q) zero_tile(acc[q]);
  const auto step = [&](int64_t k) __attribute__((always_inline)) {
    const __m256 av = _mm256_broadcast_ss(a + k);
    if constexpr (Pf) {
      // whole panels: past a panel's end, the next tile's (cpu_tuning.h)
      const size_t skip = next_tile_skip(k * kGemmNR * int64_t(sizeof(W)), pstride * int64_t(sizeof(W)), P,
                                         size_t(pstride) * sizeof(W), pf);
#pragma GCC unroll 4
      for (int q = 0; q < P; ++q)
        prefetch_ahead(reinterpret_cast<const std::byte*>(b + q * pstride + k * kGemmNR) + skip, pf);
    }
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) acc[q][0][v] = _mm256_fmadd_ps(av, load8(b + q * pstride + k * kGemmNR + 8 * v), acc[q][0][v]);
  };
  const auto zero = [&]() __attribute__((always_inline)) {
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q) zero_pair(acc[q]);
  };
  walk_k<kPairsOfK<W>>(K, step, zero);
#pragma GCC unroll 4
  for (int q = 0; q < P; ++q)
    store_tile<1, 4>(acc[q], c + q * kGemmNR, 0, q == P - 1 ? width : int(kGemmNR));
}

template <class W>
using TileF = void (*)(int64_t, const float*, int64_t, const W*, float*, int64_t, int, Prefetch);

template <class W, int NV, bool Pf, int... R>
constexpr auto make_tiles_f(std::integer_sequence<int, R...>) {
  return std::array<TileF<W>, sizeof...(R)>{&tile_f<W, R + 1, NV, Pf>...};
}

// Pf: the decode tiles (M = 1, whole-panel tiles of up to 2 rows) prefetch B pf.bytes ahead.
template <class W, bool Pf = false>
void gemm_float(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
                int64_t ldc, Prefetch pf = {}) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto full = make_tiles_f<W, 4, Pf>(std::make_integer_sequence<int, kMaxRowsFullPanel>{});
  static constexpr auto half = make_tiles_f<W, 2, false>(std::make_integer_sequence<int, kMaxRowsF>{});
  if (M <= 0) return;
  const W* b = static_cast<const W*>(b_data);
  const int64_t pstride = K * kGemmNR;
  if (M == 1) {
    for (int64_t p0 = n0; p0 < n1; p0 += 3 * kGemmNR) {
      const W* panel = b + (p0 / kGemmNR) * pstride;
      const int64_t left = ceil_div(n1 - p0, kGemmNR);  // panels from p0 on
      const int width = int(std::min<int64_t>(kGemmNR, n1 - p0 - (std::min<int64_t>(left, 3) - 1) * kGemmNR));
      if (left >= 3) tile_f_row<W, 3, Pf>(K, a, panel, pstride, c + (p0 - n0), width, pf);
      else if (left == 2) tile_f_row<W, 2, Pf>(K, a, panel, pstride, c + (p0 - n0), width, pf);
      else tile_f_row<W, 1, Pf>(K, a, panel, pstride, c + (p0 - n0), width, pf);
    }
    return;
  }
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const W* panel = b + (p0 / kGemmNR) * pstride;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    if (M <= kMaxRowsFullPanel) {
      full[M - 1](K, a, lda, panel, c + (p0 - n0), ldc, width, pf);
      continue;
    }
    for (int h = 0; h < 2 && 16 * h < width; ++h)
      for_row_blocks(M, kMaxRowsF, [&](int64_t m0, int64_t rows) {
        half[rows - 1](K, a + m0 * lda, lda, panel + 16 * h, c + m0 * ldc + (p0 - n0) + 16 * h, ldc,
                       std::min(16, width - 16 * h), Prefetch{});
      });
  }
}

// ─── int8 with vpmaddwd ─────────────────────────────────────────────────────────────────────────────────────────

// One group of 4 k for MR rows x 16 NH columns; bg points at the group's first byte of the tile's columns.
template <int MR, int NH>
__attribute__((always_inline)) inline void step_s8(const int8_t* a, int64_t lda, int64_t k, int n, const int8_t* bg,
                                                   __m256i (&acc)[MR][4 * NH]) {
  __m256i av[MR];
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m) av[m] = _mm256_cvtepi8_epi16(_mm_set1_epi32(load_a4(a + m * lda + k, n)));
#pragma GCC unroll 8
  for (int j = 0; j < 4 * NH; ++j) {  // columns 4j .. 4j+4, 4 k each, as int16
    const __m256i bw = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bg + 16 * j)));
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) acc[m][j] = _mm256_add_epi32(acc[m][j], _mm256_madd_epi16(av[m], bw));
  }
}

// MR rows x 16 NH columns: NH = 2 is a whole panel (one row: 8 accumulators, the panel's lines read in order, about
// 25% faster at M = 1 than two 16-column passes, Zen 3), NH = 1 a half (the 2-row tiles).
template <int MR, int NH>
void tile_s8(int64_t K, const int8_t* a, int64_t lda, const int8_t* b, int32_t* c, int64_t ldc, int width) {
  __m256i acc[MR][4 * NH];
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < 4 * NH; ++j) acc[m][j] = _mm256_setzero_si256();
  const int64_t full = K / 4;
  // The partial group of K % 4 first: integer sums do not depend on order, and with the tail after the loop GCC
  // keeps a stack copy of every accumulator up to date inside the loop.
  if (K % 4) step_s8<MR, NH>(a, lda, 4 * full, int(K % 4), b + full * 4 * kGemmNR, acc);
  for (int64_t g = 0; g < full; ++g) step_s8<MR, NH>(a, lda, 4 * g, 4, b + g * 4 * kGemmNR, acc);

  // acc[m][j] holds (lo, hi) partial sums of columns 4j .. 4j+4 in adjacent dwords. hadd of two of them gives
  // columns [0 1 4 5 | 2 3 6 7] of the pair; the 64-bit permute (0, 2, 1, 3) puts them in order.
#pragma GCC unroll 4
  for (int h = 0; h < 2 * NH; ++h) {
    if (width <= 8 * h) continue;
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) {
      const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[m][2 * h], acc[m][2 * h + 1]), 0xd8);
      if (width >= 8 * (h + 1))
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + m * ldc + 8 * h), s);
      else
        _mm256_maskstore_epi32(c + m * ldc + 8 * h, lane_mask(width, h), s);
    }
  }
}

// MR (1 or 2) rows x a whole panel with vpmaddubsw, for rows that hold no -128: per group of 4 k, a column's 4
// weights w and the row's 4 values a give vpmaddubsw(|w|, a with w's sign) = the two pair sums w0 a0 + w1 a1 and
// w2 a2 + w3 a3 in int16, exact because |w| <= 128 and |a| <= 127 (2 * 128 * 127 = 32512 < 32767; an a of -128
// could reach 32768, hence the condition); vpmaddwd with ones adds the pair into the column's int32. Five
// instructions per 32 bytes of weights against six for the widening path, and one accumulator per 8 columns
// (complete sums) instead of two, so two rows fit a whole panel too.
template <int MR, bool Pf>
void tile_s8_sign(int64_t K, const int8_t* a, int64_t lda, const int8_t* b, int32_t* c, int64_t ldc, int width,
                  [[maybe_unused]] Prefetch pf) {
  __m256i acc[MR][4];
#pragma GCC unroll 2
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) acc[m][q] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t groups = (K + 3) / 4;
  for (int64_t g = 0; g < groups; ++g) {
    const int n = int(std::min<int64_t>(4, K - 4 * g));
    __m256i av[MR];
#pragma GCC unroll 2
    for (int m = 0; m < MR; ++m) av[m] = _mm256_set1_epi32(load_a4(a + m * lda + 4 * g, n));
    const int8_t* bg = b + g * 4 * kGemmNR;
    if constexpr (Pf) {  // the group's two lines
      prefetch_ahead(bg, pf);
      prefetch_ahead(bg + 64, pf);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {  // columns 8q .. 8q+8, their 4 k each
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bg + 32 * q));
      const __m256i wabs = _mm256_abs_epi8(w);
#pragma GCC unroll 2
      for (int m = 0; m < MR; ++m) {
        const __m256i pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(av[m], w));
        acc[m][q] = _mm256_add_epi32(acc[m][q], _mm256_madd_epi16(pairs, ones));
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    if (width <= 8 * q) continue;
#pragma GCC unroll 2
    for (int m = 0; m < MR; ++m) {
      if (width >= 8 * (q + 1)) _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + m * ldc + 8 * q), acc[m][q]);
      else _mm256_maskstore_epi32(c + m * ldc + 8 * q, lane_mask(width, q), acc[m][q]);
    }
  }
}

// Whether none of the M rows of K int8 at a (row stride lda) is -128 (the condition of tile_s8_sign).
bool rows_without_min(int64_t M, int64_t K, const int8_t* a, int64_t lda) {
  const __m256i min = _mm256_set1_epi8(-128);
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* row = a + m * lda;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32)
      if (!_mm256_testz_si256(_mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k)), min),
                              _mm256_set1_epi8(-1)))
        return false;
    for (; k < K; ++k)
      if (row[k] == -128) return false;
  }
  return true;
}

using TileS8 = void (*)(int64_t, const int8_t*, int64_t, const int8_t*, int32_t*, int64_t, int);

template <int... R>
constexpr auto make_tiles_s8(std::integer_sequence<int, R...>) {
  return std::array<TileS8, sizeof...(R)>{&tile_s8<R + 1, 1>...};
}

}  // namespace

void gemm_f32w_f32_6x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                              float* c, int64_t ldc) {
  gemm_float<float>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_bf16w_f32_6x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                               float* c, int64_t ldc) {
  const DenormalsAreZero guard;
  const Prefetch pf = prefetch_for(PrefetchStream::bf16, M);
  if (pf.on()) gemm_float<bfloat16, true>(M, K, n0, n1, a, lda, b, c, ldc, pf);
  else gemm_float<bfloat16>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_f16w_f32_6x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                              float* c, int64_t ldc) {
  gemm_float<float16>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_s8_s32_2x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
                            const int32_t* /*col_sums: not needed, A is not shifted*/, int32_t* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto tiles = make_tiles_s8(std::make_integer_sequence<int, kMaxRowsS8>{});
  if (M <= 0) return;
  const int64_t pstride = (K + 3) / 4 * 4 * kGemmNR;
  const bool sign_path = rows_without_min(M, K, a, lda);
  const Prefetch pf = prefetch_for(PrefetchStream::int8, M);
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const int8_t* panel = b + (p0 / kGemmNR) * pstride;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    if (sign_path) {
      for_row_blocks(M, 2, [&](int64_t m0, int64_t rows) {
        int32_t* cb = c + m0 * ldc + (p0 - n0);
        if (pf.on()) {
          if (rows == 1) tile_s8_sign<1, true>(K, a + m0 * lda, lda, panel, cb, ldc, width, pf);
          else tile_s8_sign<2, true>(K, a + m0 * lda, lda, panel, cb, ldc, width, pf);
        } else {
          if (rows == 1) tile_s8_sign<1, false>(K, a + m0 * lda, lda, panel, cb, ldc, width, pf);
          else tile_s8_sign<2, false>(K, a + m0 * lda, lda, panel, cb, ldc, width, pf);
        }
      });
      continue;
    }
    if (M == 1) {
      tile_s8<1, 2>(K, a, lda, panel, c + (p0 - n0), ldc, width);
      continue;
    }
    for (int h = 0; h < 2 && 16 * h < width; ++h)
      for_row_blocks(M, kMaxRowsS8, [&](int64_t m0, int64_t rows) {
        tiles[rows - 1](K, a + m0 * lda, lda, panel + 64 * h, c + m0 * ldc + (p0 - n0) + 16 * h, ldc,
                        std::min(16, width - 16 * h));
      });
  }
}

}  // namespace moefuse::gemm::detail
