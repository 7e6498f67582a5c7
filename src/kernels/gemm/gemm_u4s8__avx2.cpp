// AVX2 W4A8 GEMM (gemm.h, "int4 group-wise x int8"): exact integer sums per group with vpmaddubsw, then the
// contract's fp32 steps.
//
// Unpacking. Four packed rows k .. k+3 of a group block (16 bytes each: 32 columns of nibbles) are interleaved
// byte-wise and then word-wise (punpck*bw, punpck*wd), which puts the four k of one byte column (two columns' nibbles)
// into one dword. Per 8 output columns 8v .. 8v+7 one ymm holds, in its low lane, the low nibbles (columns 8v, 8v+2,
// 8v+4, 8v+6) and, in its high lane, the high nibbles (columns 8v+1, +3, +5, +7), each as four u8 of k .. k+3:
// the vpdpbusd layout, in the permuted column order P = (0, 2, 4, 6, 1, 3, 5, 7) that the group scales and zero
// points are permuted to once per group and the results back once per tile.
//
// Why vpmaddubsw is exact here: it multiplies u8 by s8 and adds adjacent pairs with int16 saturation. The u8 operand
// is a nibble q in 0..15 and the s8 one an activation a in -128..127, so a pair is at most 2 · 15 · 128 = 3840 in
// magnitude: no saturation. Its int16 results are added up over 8 steps of 4 k (16 products per lane, at most
// 16 · 1920 = 30720 < 32767: still exact), then vpmaddwd with ones widens adjacent pairs into int32, one per column.
//
// Why the zero point is subtracted once per group: Σ (q - z) a = Σ q a - z Σ a. Forming q - z per weight would make
// the weights signed (vpmaddubsw needs one unsigned operand), so the kernel sums q a with unsigned q and subtracts
// z · Σ a per group. Σ a (per row and group, shared by every column) is formed once per call for a chunk of rows
// (int4_group_sums.h; vpmaddubsw with ones) and kept as floats, exact (|Σ a| <= 128 G); the subtraction is one fnmadd
// in fp32, exact too: float(Σ q a), z · Σ a and their difference isum_g are integers below 2^24 in magnitude (at most
// 15 · 128 · G), so it gives float(isum_g), the contract's value, with no rounding. (Before, every tile formed the
// sums again and subtracted them with vpmulld and vpsubd, as the AVX-512 kernels did; here the change was level to
// 6% faster on a Zen 5: docs/performance.md, "W4A8 prefill: the per-group epilogue".)
//
// Tiles: 1 or 2 rows x 32 columns (the whole panel); the unpacked weights of a step serve both rows.
//
// Prefetch: the first row block of each panel prefetches its stream pf.bytes ahead (the int4 entry of the prefetch
// settings, base/cpu_tuning.h), one line per 4 k (the rows a step reads) and, for G <= 64, each block's 4 lines of
// scales and zero biases, as the AVX-512 kernels do (u4s8_tile__avx512.h: why G <= 64). The panels follow each other
// in memory, so a prefetch past a panel's end lands in the next tile's. Before, this kernel prefetched nothing.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "kernels/gemm/int4_group_sums.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx2.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRows = 2;
constexpr int kChunk = 32;  // k per int16 accumulation: 16 products per lane stay below 2^15 (above)

struct Consts {
  __m256i nibble = _mm256_set1_epi8(0x0F);
  __m256i hi_shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);  // the high lane takes the high nibbles
  __m256i ones16 = _mm256_set1_epi16(1);
  __m256i ones8 = _mm256_set1_epi8(1);
  __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);    // P: permuted lane i holds column P[i]
  __m256i unperm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // P's inverse
  __m256 magic = _mm256_castsi256_ps(_mm256_set1_epi32(int(kInt4MagicBits)));  // 2^23, the zero biases' offset
};

// Σ a[0 .. G) of one row as int32 in every lane.
template <int G>
__attribute__((always_inline)) inline __m256i row_sum(const Consts& k, const int8_t* a) {
  __m256i s16 = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int c = 0; c < G / 32; ++c)  // each int16 lane: at most 8 · 128 = 1024 in magnitude
    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(k.ones8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * c))));
  __m256i s = _mm256_madd_epi16(s16, k.ones16);
  s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0x4E));
  s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0xB1));
  return _mm256_add_epi32(s, _mm256_permute2x128_si256(s, s, 1));
}

// Σ a of each of the `groups` groups of one row (a at its first), as floats (exact: |Σ a| <= 128 G), in out.
template <int G>
void group_sums(const int8_t* a, int64_t groups, float* out) {
  const Consts k;
  for (int64_t g = 0; g < groups; ++g) out[g] = float(_mm256_cvtsi256_si32(row_sum<G>(k, a + g * G)));
}

// MR rows x the 32 columns of the panel at `panel`; `width`: valid columns; asum: the rows' Σ a per group (row m's
// group g at asum[m * K / G + g]).
template <int G, int MR>
void tile(int64_t K, const int8_t* a, int64_t lda, const float* a_scale, const float* asum, std::byte* panel,
          float* c, int64_t ldc, int width, Prefetch pf) {
  const Consts k;
  const int64_t groups = K / G;
  __m256 facc[MR][4];
#pragma GCC unroll 2
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) facc[m][v] = _mm256_setzero_ps();
  for (int64_t g = 0; g < K / G; ++g) {
    const Int4Block blk = int4_block(panel, G, g);
    if constexpr (G <= 64)
      if (pf.on())
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l) prefetch_ahead(reinterpret_cast<const std::byte*>(blk.scale) + 64 * l, pf);
    __m256i isum[MR][4];
#pragma GCC unroll 2
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) isum[m][v] = _mm256_setzero_si256();
    for (int c0 = 0; c0 < G; c0 += kChunk) {
      __m256i acc[MR][4];
#pragma GCC unroll 2
      for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) acc[m][v] = _mm256_setzero_si256();
      for (int r = c0; r < c0 + kChunk; r += 4) {
        const uint8_t* rows = blk.rows + r * kInt4RowBytes;
        if (pf.on()) prefetch_ahead(rows, pf);
        const __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows));
        const __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 16));
        const __m128i r2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 32));
        const __m128i r3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 48));
        const __m128i u01l = _mm_unpacklo_epi8(r0, r1), u01h = _mm_unpackhi_epi8(r0, r1);
        const __m128i u23l = _mm_unpacklo_epi8(r2, r3), u23h = _mm_unpackhi_epi8(r2, r3);
        const __m128i grp[4] = {_mm_unpacklo_epi16(u01l, u23l), _mm_unpackhi_epi16(u01l, u23l),
                                _mm_unpacklo_epi16(u01h, u23h), _mm_unpackhi_epi16(u01h, u23h)};
        __m256i av[MR];
#pragma GCC unroll 2
        for (int m = 0; m < MR; ++m) av[m] = _mm256_set1_epi32(load_a4(a + m * lda + g * G + r, 4));
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const __m256i w = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set_m128i(grp[v], grp[v]), k.hi_shift), k.nibble);
#pragma GCC unroll 2
          for (int m = 0; m < MR; ++m) acc[m][v] = _mm256_add_epi16(acc[m][v], _mm256_maddubs_epi16(w, av[m]));
        }
      }
#pragma GCC unroll 2
      for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) isum[m][v] = _mm256_add_epi32(isum[m][v], _mm256_madd_epi16(acc[m][v], k.ones16));
    }
    // float(isum_g) = fnmadd(z, Σ a, float(Σ q a)), exact (header), then acc = fma(float(isum_g), s, acc): in the
    // permuted column order.
    __m256 z[4], s[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m256 zb = _mm256_permutevar8x32_ps(_mm256_loadu_ps(blk.zero_bias + 8 * v), k.perm);
      z[v] = _mm256_sub_ps(zb, k.magic);  // 2^23 + z less 2^23: z, exactly
      s[v] = _mm256_permutevar8x32_ps(_mm256_loadu_ps(blk.scale + 8 * v), k.perm);
    }
#pragma GCC unroll 2
    for (int m = 0; m < MR; ++m) {
      const __m256 sa = _mm256_set1_ps(asum[m * groups + g]);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m256 exact = _mm256_fnmadd_ps(z[v], sa, _mm256_cvtepi32_ps(isum[m][v]));
        facc[m][v] = _mm256_fmadd_ps(exact, s[v], facc[m][v]);
      }
    }
  }
#pragma GCC unroll 2
  for (int m = 0; m < MR; ++m) {
    const __m256 rs = _mm256_set1_ps(a_scale[m]);
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) facc[m][v] = _mm256_mul_ps(_mm256_permutevar8x32_ps(facc[m][v], k.unperm), rs);
  }
  store_tile<MR, 4>(facc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const int8_t*, int64_t, const float*, const float*, std::byte*, float*, int64_t, int,
                        Prefetch);

template <int G, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1>...};
}

template <int G>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto tiles = make_tiles<G>(std::make_integer_sequence<int, kMaxRows>{});
  if (M <= 0) return;
  auto* b = static_cast<std::byte*>(const_cast<void*>(b_data));
  const int64_t groups = K / G;
  const size_t panel_bytes = size_t(groups) * int4_block_bytes(G);
  const Prefetch pf = prefetch_for(PrefetchStream::int4, M);
  // One chunk of rows and their Σ a (int4_group_sums.h), every panel; each chunk's first row block prefetches.
  const auto chunk = [&](int64_t m_first, int64_t m_rows, const float* sa) {
    for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
      std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
      const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
      for_row_blocks(m_rows, kMaxRows, [&](int64_t r0, int64_t rows) {
        const int64_t m0 = m_first + r0;
        tiles[rows - 1](K, a + m0 * lda, lda, a_scale + m0, sa + r0 * groups, panel, c + m0 * ldc + (p0 - n0), ldc,
                        width, r0 == 0 ? pf : Prefetch{});
      });
    }
  };
  for_int4_sum_chunks(M, K, G, a, lda, &group_sums<G>, chunk);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DEFINE, 2x32, avx2)

}  // namespace moefuse::gemm::detail
