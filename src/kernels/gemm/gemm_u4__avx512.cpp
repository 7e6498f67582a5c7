// AVX-512 int4 group-wise GEMM (gemm.h, "int4 group-wise"): per group, the sums Σ a·q on float(q) formed in
// registers, then the group's zero point and scale once per group. Every FMA runs under DenormalsAreZero.
//
// Per group and panel the tile keeps one fma chain per row and 16 columns, sq = fma(A[m, k], float(q), sq) over the
// group's pairs of k (the odd k first); at the group's end acc = fma(s, fma(-z, sa, sq), acc), with sa the row's sum
// of A over the group (int4_group_sums.h and int4_sums__avx512.h: formed once per call, 16 groups per vector). The
// accumulators acc live in a small buffer on the stack (read and written once per group), so the registers hold the
// sq chains.
//
// float(q). A packed row (16 bytes: 32 columns' nibbles, byte j holding columns 2j (low) and 2j + 1 (high)) is
// widened to 16 dwords by one vpmovzxbd; vpermps reads only the low 4 bits of each index dword, so with the table
// {0, 1, .., 15} it gives float(low nibble) with no mask, and after a vpsrld by 4 float(high nibble): 4 vector
// instructions per 32 weights. (The or-with-magic form, (x & 0x0F) | bits(2^23) and (x & 0xF0) | bits(2^19) by
// vpternlogd, then a subtract of the magic, takes 5; vpermps for the low nibble and the magic for the high one 4;
// with the weights in cache all three ran at the same 32 GB/s of packed bytes at M = 1, CPU time.)
// The chains therefore hold the panel's columns in even/odd order (even = 0, 2, .., 30; odd = 1, 3, .., 31); each
// group's scales and zero biases are put in that order at the group's end (columns_to_even_odd), and the results
// back once per tile (store_tile, even_odd_to_columns), both in tile__avx512.h.
//
// Tiles: MR rows x NP panels (2·NP chains per row, one vector of 16 weights per half panel per k shared by the MR
// rows). Which tile serves which M: see tile_panels below. A is read through a 16-k buffer (fill_abuf), and each
// panel's stream is prefetched pf.bytes ahead (the int4 entry of the prefetch settings, base/cpu_tuning.h; 4 KB in
// the generic entry: why there).
//
// Measured on the 2-core Zen 5 (family 26 model 2), gemm_bench gemm_u4g{128,32}w_f32_12x32__avx512/K:2048/N:2048
// (cold weights, one thread, --benchmark_repetitions=3 --benchmark_min_time=0.3 with memory/stream_read, CPU-time
// medians of two runs alternating with the kernel of the contract before; stream read 31-40 GB/s): G = 128, M = 1
// 92-101 us against 116-122 (23-26 GB/s of packed bytes; about 32 GB/s with the weights in L2 or L3, so the unpacking
// and the FMAs bound it about as much as memory does); M = 8 309-331 us against 349-369 (203-217 GFLOP/s, 85-90% of
// one core's FMA peak: one FMA per weight and row is the floor); M = 64 2.92-3.03 ms against 2.92-3.10 (177-184
// GFLOP/s). G = 32: M = 1 101-105 us against 187-195 (30-31 GB/s); M = 8 315-357 against 424-463.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/int4_group_sums.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/int4_sums__avx512.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

// float(q) of the low nibble of each dword of x (the index bits vpermps reads), and of its bits 4..7. The maskz
// forms: see load_row in tile__avx512.h.
__attribute__((always_inline)) inline void nibbles_to_float(__m512i x, __m512 table, __m512& low, __m512& high) {
  low = _mm512_maskz_permutexvar_ps(0xffff, x, table);
  high = _mm512_maskz_permutexvar_ps(0xffff, _mm512_maskz_srli_epi32(0xffff, x, 4), table);
}

// MR rows x NP panels (the first at `panel`, the next pstride bytes further) over K = groups · G; sa[m * groups + g]:
// the rows' sums of A. `width`: valid columns (1..32·NP). pf: the prefetch (off: pf.bytes = 0).
template <int G, int MR, int NP>
void tile(int64_t groups, const float* a, int64_t lda, std::byte* panel, size_t pstride, const float* sa, float* c,
          int64_t ldc, int width, Prefetch pf) {
  constexpr int NV = 2 * NP;
  const __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // acc[m][v] (even/odd order), read and written once per group.
  alignas(64) float accbuf[MR][NV][16] = {};

  // A 16 k at a time, double-buffered (K is a multiple of G, so of 16): the next 16 are loaded before the current
  // 16 are used.
  const int64_t K = groups * G;
  alignas(64) float abuf[2][MR * 16];
  if (K > 0) fill_abuf<MR>(a, lda, 0, __mmask16(0xffff), abuf[0]);
  int cur = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* rows[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const Int4Block blk = int4_block(panel + p * pstride, G, g);
      rows[p] = blk.rows;
      // The block's scales and zero biases (4 lines) pf.bytes further on: the rows' prefetches below skip them (G
      // rows of 16 bytes against a block of 256 + 16 G).
      // (past the panel's end, the next tile's: cpu_tuning.h)
      const size_t skip = next_tile_skip(int64_t(g * int4_block_bytes(G)), groups * int64_t(int4_block_bytes(G)), NP,
                                         pstride, pf);
      if (pf.on())
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l) prefetch_ahead(reinterpret_cast<const std::byte*>(blk.scale) + skip + 64 * l, pf);
    }
    __m512 sq[MR][NV];
    zero_tile(sq);
    for (int k0 = 0; k0 < G; k0 += 16, cur ^= 1) {
      if (g * G + k0 + 16 < K) fill_abuf<MR>(a, lda, g * G + k0 + 16, __mmask16(0xffff), abuf[cur ^ 1]);
      // The 4 lines of each panel this 16-k step reads, pf.bytes further on (past the panel's end, the next tile's).
      if (pf.on()) {
        const int64_t off = g * int64_t(int4_block_bytes(G)) + 2 * kGemmNR * int64_t(sizeof(float)) + k0 * kInt4RowBytes;
        const size_t skip = next_tile_skip(off, groups * int64_t(int4_block_bytes(G)), NP, pstride, pf);
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
          for (int l = 0; l < 4; ++l) prefetch_ahead(rows[p] + skip + k0 * kInt4RowBytes + 64 * l, pf);
      }
      // The pairs of k, the odd one first; step(ab, off): the k whose A values are at ab (rows 16 floats apart) and
      // whose packed rows are `off` bytes into the group's.
      const auto step = [&](const float* ab, int64_t off) __attribute__((always_inline)) {
        __m512 w[NV];
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) {
          // maskz form: see load_row in tile__avx512.h (a GCC 12 false warning in the plain intrinsic)
          const __m512i x =
              _mm512_maskz_cvtepu8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[p] + off)));
          nibbles_to_float(x, table, w[2 * p], w[2 * p + 1]);
        }
#pragma GCC unroll 16
        for (int m = 0; m < MR; ++m) {
          const __m512 av = _mm512_set1_ps(ab[m * 16]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) sq[m][v] = _mm512_fmadd_ps(av, w[v], sq[m][v]);
        }
      };
#pragma GCC unroll 1
      for (int kk = 0; kk < 16; kk += 2) {
        const float* ab = abuf[cur] + kk;
        const int64_t off = (k0 + kk) * kInt4RowBytes;
        step(ab + 1, off + kInt4RowBytes);
        step(ab, off);
      }
    }
    // The group's zero points and scales (even/odd order): acc = fma(s, fma(-z, sa, sq), acc). -z = 2^23 - (2^23 +
    // z) is exact (integers below 2^24).
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const Int4Block blk = int4_block(panel + p * pstride, G, g);
      __m512 s[2], nz[2];
      columns_to_even_odd(blk.scale, s[0], s[1]);
      columns_to_even_odd(blk.zero_bias, nz[0], nz[1]);
      nz[0] = _mm512_sub_ps(_mm512_set1_ps(kInt4Magic), nz[0]);
      nz[1] = _mm512_sub_ps(_mm512_set1_ps(kInt4Magic), nz[1]);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const __m512 sav = _mm512_set1_ps(sa[m * groups + g]);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          float* accp = accbuf[m][2 * p + h];
          const __m512 t = _mm512_fmadd_ps(nz[h], sav, sq[m][2 * p + h]);
          _mm512_store_ps(accp, _mm512_fmadd_ps(s[h], t, _mm512_load_ps(accp)));
        }
      }
    }
  }

  // Even/odd column order, as bf16 rows give it: store_tile puts the columns back in order (even_odd_to_columns).
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_load_ps(accbuf[m][v]);
  store_tile<bfloat16, MR, NV>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, std::byte*, size_t, const float*, float*, int64_t, int,
                        Prefetch);

template <int G, int NP, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1, NP>...};
}

// Rows of the tiles of each width: 1 x 4 panels, up to 4 x 2 panels, up to 12 x 1 panel (24 chains).
constexpr int kRowsNp4 = 1, kRowsNp2 = 4, kRowsNp1 = 12;

// The panels a tile spans for M rows. Each k step of a row is one fma chain per 16 columns, 4 cycles of latency
// apart, so a lone row needs several panels at once to keep enough chains in flight for decode to stream its
// weights at memory speed; from 5 rows on one panel has enough chains, and the one-panel tile shares each unpacked
// row among the most rows.
constexpr int tile_panels(int64_t M) { return M <= kRowsNp4 ? 4 : M <= kRowsNp2 ? 2 : 1; }

template <int G>
void gemm_u4(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
             int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto np4 = make_tiles<G, 4>(std::make_integer_sequence<int, kRowsNp4>{});
  static constexpr auto np2 = make_tiles<G, 2>(std::make_integer_sequence<int, kRowsNp2>{});
  static constexpr auto np1 = make_tiles<G, 1>(std::make_integer_sequence<int, kRowsNp1>{});
  if (M <= 0) return;
  const DenormalsAreZero guard;  // the contract's FMAs (and the sums' adds)
  auto* b = static_cast<std::byte*>(const_cast<void*>(b_data));
  const int64_t groups = K / G;
  const size_t panel_bytes = size_t(groups) * int4_block_bytes(G);
  const int np_max = tile_panels(M);
  const Prefetch pf = prefetch_for(PrefetchStream::int4, M);
  const auto tiles = [&](int64_t m_first, int64_t m_rows, const float* sa) {
    for (int64_t p0 = n0; p0 < n1;) {
      const int64_t left = (n1 - p0 + kGemmNR - 1) / kGemmNR;
      const int np = left >= 4 && np_max >= 4 ? 4 : left >= 2 && np_max >= 2 ? 2 : 1;  // the tail: fewer panels
      const TileFn* fns = np == 4 ? np4.data() : np == 2 ? np2.data() : np1.data();
      const int64_t max_rows = np == 4 ? kRowsNp4 : np == 2 ? kRowsNp2 : kRowsNp1;
      const int width = int(std::min<int64_t>(kGemmNR * np, n1 - p0));
      std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
      for_row_blocks(m_rows, max_rows, [&](int64_t r0, int64_t rows) {
        const int64_t m0 = m_first + r0;
        fns[rows - 1](groups, a + m0 * lda, lda, panel, panel_bytes, sa + r0 * groups, c + m0 * ldc + (p0 - n0), ldc,
                      width, pf);
      });
      p0 += kGemmNR * np;
    }
  };
  const auto sums = [](const float* arow, int64_t n_groups, float* out) { group_sums<G>(arow, n_groups, out); };
  for_int4_sum_chunks(M, K, G, a, lda, sums, tiles);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DEFINE, 12x32, avx512)

}  // namespace moefuse::gemm::detail
