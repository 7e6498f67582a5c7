// AVX-512 int4 group-wise GEMM (gemm.h, "int4 group-wise"): nibbles unpacked in registers, never in memory.
//
// Unpacking. A packed row (16 bytes: 32 columns' nibbles, byte j holding columns 2j (low) and 2j + 1 (high)) is
// widened to 16 dwords by one vpmovzxbd. Then one vpternlogd per half forms the biased weight as a float:
//   even columns: (x & 0x0F) | bits(2^23)  = float 2^23 + q  (q in mantissa bits 0..3)
//   odd columns:  (x & 0xF0) | bits(2^19)  = float 2^19 + q  (2^19's mantissa bit i weighs 2^(i - 4): bits 4..7
//                                                             are the high nibble's q exactly)
// and subtracting the zero bias of the same magnitude (2^23 + z as packed; 2^19 + z = that - (2^23 - 2^19), exact:
// integers below 2^24) gives q - z exactly, the same value as the contract's float(q) - float(z); one vmulps by
// the scale is the contract's product, one rounding. Then one vfmadd231ps per k per output element, k in order: the
// float contract's chain, bit for bit.
//
// The accumulators therefore hold the panel's columns in even/odd order (lo = 0, 2, .., 30; hi = 1, 3, .., 31);
// each group's scales and zero biases are permuted into that order once per group (columns_to_even_odd), and the
// results back once per tile (even_odd_to_columns), both in tile__avx512.h.
//
// Tiles: MR rows x NP panels (2·NP zmm accumulators per row, one vector of 16 weights per half panel per k shared by
// the MR rows). Which tile serves which M: see tile_panels below. A is read through a 16-k buffer (fill_abuf), and
// each panel's stream is prefetched 4 KB ahead (kInt4PrefetchBytes).
//
// Measured on the 2-core Zen 5 (family 26 model 2), 2048 x 2048, G = 128, cold weights, paired with the AVX2 row:
// M = 1: 128 us against 316 us (18.6 GB/s, 54% of one core's 34.7 GB/s read bandwidth: per 32 weights the
// unpacking takes 7 vector instructions besides the 2 FMAs, about 4 instructions a cycle, and runs at about the same
// rate from L2); M = 8: 379 against 1099 us; M = 64: 175 against 74 GFLOP/s (72% of the measured FMA peak).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr uint32_t kMagic19Bits = 0x49000000u;  // 2^19
constexpr float kMagic23Less19 = 8388608.0f - 524288.0f;  // 2^23 - 2^19

struct Consts {
  __m512i lo = _mm512_set1_epi32(0x0F);
  __m512i hi = _mm512_set1_epi32(0xF0);
  __m512i magic23 = _mm512_set1_epi32(int(kInt4MagicBits));
  __m512i magic19 = _mm512_set1_epi32(int(kMagic19Bits));
};

// One group of one panel in even/odd column order: scales and the zero biases that match each half's magic.
struct GroupVecs {
  __m512 s_even, s_odd, zb_even, zb_odd;
};

__attribute__((always_inline)) inline GroupVecs load_group(const Int4Block& blk) {
  GroupVecs v;
  columns_to_even_odd(blk.scale, v.s_even, v.s_odd);
  columns_to_even_odd(blk.zero_bias, v.zb_even, v.zb_odd);
  v.zb_odd = _mm512_sub_ps(v.zb_odd, _mm512_set1_ps(kMagic23Less19));  // 2^19 + z, exact
  return v;
}

// The fp32 weights of one packed row (16 bytes at `row`): the even columns into `even`, the odd ones into `odd`.
__attribute__((always_inline)) inline void dequant_row(const Consts& k, const uint8_t* row, const GroupVecs& gv,
                                                       __m512& even, __m512& odd) {
  // maskz form: see load_row in gemm__avx512.cpp (a GCC 12 false warning in the plain intrinsic)
  const __m512i x = _mm512_maskz_cvtepu8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row)));
  // vpternlogd 0xEA: (x & mask) | magic
  const __m512 be = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(x, k.lo, k.magic23, 0xEA));  // 2^23 + q
  const __m512 bo = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(x, k.hi, k.magic19, 0xEA));  // 2^19 + q
  even = _mm512_mul_ps(_mm512_sub_ps(be, gv.zb_even), gv.s_even);
  odd = _mm512_mul_ps(_mm512_sub_ps(bo, gv.zb_odd), gv.s_odd);
}

// MR rows x NP panels (the first at `panel`, the next pstride bytes further); `width`: valid columns (1..32·NP).
template <int G, int MR, int NP>
void tile(int64_t K, const float* a, int64_t lda, std::byte* panel, size_t pstride, float* c, int64_t ldc,
          int width) {
  constexpr int NV = 2 * NP;
  const Consts k;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();

  // A 16 k at a time, double-buffered (K is a multiple of G, so of 16): the next 16 are loaded before the current
  // 16 are used.
  alignas(64) float abuf[2][MR * 16];
  if (K > 0) fill_abuf<MR>(a, lda, 0, __mmask16(0xffff), abuf[0]);
  int cur = 0;
  for (int64_t g = 0; g < K / G; ++g) {
    GroupVecs gv[NP];
    const uint8_t* rows[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const Int4Block blk = int4_block(panel + p * pstride, G, g);
      gv[p] = load_group(blk);
      rows[p] = blk.rows;
    }
    for (int k0 = 0; k0 < G; k0 += 16, cur ^= 1) {
      if (g * G + k0 + 16 < K) fill_abuf<MR>(a, lda, g * G + k0 + 16, __mmask16(0xffff), abuf[cur ^ 1]);
      // The 4 lines of each panel this 16-k step reads, kInt4PrefetchBytes further on (tile__avx512.h: why).
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l) prefetch_t0(rows[p] + k0 * kInt4RowBytes + kInt4PrefetchBytes + 64 * l);
      for (int kk = 0; kk < 16; ++kk) {
        __m512 w[NV];
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p)
          dequant_row(k, rows[p] + (k0 + kk) * kInt4RowBytes, gv[p], w[2 * p], w[2 * p + 1]);
#pragma GCC unroll 16
        for (int m = 0; m < MR; ++m) {
          const __m512 av = _mm512_set1_ps(abuf[cur][m * 16 + kk]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(av, w[v], acc[m][v]);
        }
      }
    }
  }

  // Even/odd column order, as bf16 rows give it: store_tile puts the columns back in order (even_odd_to_columns).
  store_tile<bfloat16, MR, NV>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, std::byte*, size_t, float*, int64_t, int);

template <int G, int NP, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1, NP>...};
}

// Rows of the tiles of each width: 1 x 4 panels, up to 4 x 2 panels, up to 12 x 1 panel (24 accumulators).
constexpr int kRowsNp4 = 1, kRowsNp2 = 4, kRowsNp1 = 12;

// The panels a tile spans for M rows. Each k step of a row is one fma chain per 16 columns, 4 cycles of latency
// apart, so a lone row needs several panels at once to keep enough chains in flight for decode to stream its
// weights at memory speed; from 5 rows on one panel has enough chains, and the one-panel tile shares each dequantised
// row among the most rows.
constexpr int tile_panels(int64_t M) { return M <= kRowsNp4 ? 4 : M <= kRowsNp2 ? 2 : 1; }

template <int G>
void gemm_u4(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
             int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto np4 = make_tiles<G, 4>(std::make_integer_sequence<int, kRowsNp4>{});
  static constexpr auto np2 = make_tiles<G, 2>(std::make_integer_sequence<int, kRowsNp2>{});
  static constexpr auto np1 = make_tiles<G, 1>(std::make_integer_sequence<int, kRowsNp1>{});
  if (M <= 0) return;
  auto* b = static_cast<std::byte*>(const_cast<void*>(b_data));
  const size_t panel_bytes = size_t(K / G) * int4_block_bytes(G);
  const int np_max = tile_panels(M);
  for (int64_t p0 = n0; p0 < n1;) {
    const int64_t left = (n1 - p0 + kGemmNR - 1) / kGemmNR;
    const int np = left >= 4 && np_max >= 4 ? 4 : left >= 2 && np_max >= 2 ? 2 : 1;  // the tail: fewer panels
    const TileFn* tiles = np == 4 ? np4.data() : np == 2 ? np2.data() : np1.data();
    const int64_t max_rows = np == 4 ? kRowsNp4 : np == 2 ? kRowsNp2 : kRowsNp1;
    const int width = int(std::min<int64_t>(kGemmNR * np, n1 - p0));
    std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    for_row_blocks(M, max_rows, [&](int64_t m0, int64_t rows) {
      tiles[rows - 1](K, a + m0 * lda, lda, panel, panel_bytes, c + m0 * ldc + (p0 - n0), ldc, width);
    });
    p0 += kGemmNR * np;
  }
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DEFINE, 12x32, avx512)

}  // namespace moefuse::gemm::detail
