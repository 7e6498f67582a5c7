// AVX2 + FMA int4 group-wise GEMM (gemm.h, "int4 group-wise"): per group, the sums Σ a·q on float(q) formed in
// registers, then the group's zero point and scale once per group. Every FMA runs under DenormalsAreZero.
//
// float(q): eight columns of one packed row are one 32-bit word: broadcast it, shift lane i right by 4i (vpsrlvd),
// mask to 4 bits and convert (vcvtdq2ps, exact). Per group the tile keeps one fma chain per row and 8 columns,
// sq = fma(A[m, k], float(q), sq) over the group's pairs of k (the odd k first); at the group's end
// acc = fma(s, fma(-z, sa, sq), acc), with sa the row's sum of A over the group (int4_group_sums.h: formed once per
// call). The accumulators acc live in a small buffer on the stack (read and written once per group), so the 16
// registers hold the sq chains.
//
// Tiles: one row takes two whole panels (8 chains), two rows one panel (8 chains), more rows each half of a panel
// (16 columns) in row blocks of up to 4 (up to 8 chains), each unpacked row shared by the tile's rows. (The row's
// name keeps the 8 x 8 of the tiles before: 8-column strips of up to 8 rows, slower here at every M from 3 to 64 by
// 10-30%, CPU time with the weights in cache; 16 columns at 5 or 6 rows spill.)
//
// Measured on the 2-core Zen 5 (family 26 model 2), gemm_bench gemm_u4g{128,32}w_f32_8x8__avx2/K:2048/N:2048 (cold
// weights, one thread, --benchmark_repetitions=3 --benchmark_min_time=0.3 with memory/stream_read, CPU-time medians of
// two runs alternating with the kernel of the contract before): G = 128, M = 1 175-184 us against 351-383 (13 GB/s of
// packed bytes: 3 vector instructions per 8 weights besides the FMA bound it); M = 8 651-718 us against 1206-1236;
// M = 64 5.5-5.6 ms against 6.9-7.7 (96-98 GFLOP/s). G = 32: M = 1 190-225 us against 272-310; M = 8 700-781 against
// 1239-1292.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/int4_group_sums.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx2.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRowsFullPanel = 2;
// The tiles prefetch each panel they stream pf.bytes ahead (the int4 entry of the prefetch settings,
// base/cpu_tuning.h), as the AVX-512 int4 kernels do. Measured here with 4 KB (Zen 5, gemm_bench, 2048 x 2048, cold
// weights, alternating): M = 1 at G = 32 209-214 us against 333 without, at G = 128 192-197 against 220-251; M = 8
// 10-25% faster.
constexpr int kMaxRowsHalfPanel = 4;

// sa of `groups` groups of one row (a at the first): 8 groups at a time, one chain each (interleaved, so the adds of
// different groups overlap), in the contract's pairs (odd k first). An add is the contract's fma_daz_ftz(a, 1, sa):
// a · 1 is exact, so the fma rounds (and, under DAZ/FTZ, flushes) the same sum a + sa. Not inlined: the kernel calls
// it inside its DenormalsAreZero scope.
template <int G>
__attribute__((noinline)) void group_sums(const float* a, int64_t groups, float* out) {
  for (int64_t g0 = 0; g0 < groups; g0 += 8) {
    const int n = int(std::min<int64_t>(8, groups - g0));
    float s[8] = {};
    for (int r = 0; r < G; r += 2)
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i)
        if (i < n) {
          const float* ar = a + (g0 + i) * G + r;
          s[i] = s[i] + ar[1];
          s[i] = s[i] + ar[0];
        }
    std::copy(s, s + n, out + g0);
  }
}

// MR rows x NP panels (the next pstride bytes further) x NV vectors of 8 columns from vector v0 of each panel, over
// K = groups · G; sa[m * groups + g]: the rows' sums of A. `width`: valid columns counted from 8 * v0. Not inlined:
// GCC would inline the lone-row tile (a table of one) into the panel walk and keep its chains in memory there.
template <int G, int MR, int NP, int NV>
__attribute__((noinline)) void tile(int64_t groups, const float* a, int64_t lda, std::byte* panel, size_t pstride,
                                    int v0, const float* sa, float* c, int64_t ldc, int width, Prefetch pf) {
  constexpr int NT = NP * NV;  // vectors of the tile: panel p's vector v is p * NV + v
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i mask = _mm256_set1_epi32(0xF);
  alignas(32) float accbuf[MR][NT][8] = {};
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* rows[NP];
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const Int4Block blk = int4_block(panel + p * pstride, G, g);
      rows[p] = blk.rows + 4 * v0;
      // The block's scales and zero biases (4 lines) pf.bytes further on: the rows' prefetches skip them. Past the
      // panel's end, the next tile's (cpu_tuning.h).
      const size_t skip = next_tile_skip(int64_t(g * int4_block_bytes(G)), groups * int64_t(int4_block_bytes(G)), NP,
                                         pstride, pf);
      if (pf.on())
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l) prefetch_ahead(reinterpret_cast<const uint8_t*>(blk.scale) + skip + 64 * l, pf);
    }
    const float* ak = a + g * G;
    __m256 sq[NP][MR][NV];
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) zero_tile(sq[p]);
    // k's weights: word v of each panel's row (8 columns) to 8 floats, then the tile's FMAs, panel by panel.
    const auto step = [&](int r) __attribute__((always_inline)) {
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) {
        __m256 w[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          uint32_t word;
          std::memcpy(&word, rows[p] + r * kInt4RowBytes + 4 * v, 4);
          const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts), mask);
          w[v] = _mm256_cvtepi32_ps(q);
        }
        fma_step<MR, NV>(ak + r, lda, w, sq[p]);
      }
    };
#pragma GCC unroll 1
    for (int r = 0; r < G; r += 2) {  // the pairs of k, the odd one first
      // Every other pair: the line of each panel the next 4 k read, pf.bytes further on.
      if (r % 4 == 0 && pf.on()) {
        const int64_t off = g * int64_t(int4_block_bytes(G)) + 2 * kGemmNR * int64_t(sizeof(float)) + r * kInt4RowBytes;
        const size_t skip = next_tile_skip(off, groups * int64_t(int4_block_bytes(G)), NP, pstride, pf);
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) prefetch_ahead(rows[p] + skip + r * kInt4RowBytes, pf);
      }
      step(r + 1);
      step(r);
    }
    // The group's zero points and scales: acc = fma(s, fma(-z, sa, sq), acc). -z = 2^23 - (2^23 + z) is exact
    // (integers below 2^24).
    const __m256 magic = _mm256_set1_ps(kInt4Magic);
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const Int4Block blk = int4_block(panel + p * pstride, G, g);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m256 s = _mm256_loadu_ps(blk.scale + 8 * (v0 + v));
        const __m256 nz = _mm256_sub_ps(magic, _mm256_loadu_ps(blk.zero_bias + 8 * (v0 + v)));
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          float* accp = accbuf[m][p * NV + v];
          const __m256 t = _mm256_fmadd_ps(nz, _mm256_broadcast_ss(sa + m * groups + g), sq[p][m][v]);
          _mm256_store_ps(accp, _mm256_fmadd_ps(s, t, _mm256_load_ps(accp)));
        }
      }
    }
  }
  __m256 acc[MR][NT];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NT; ++v) acc[m][v] = _mm256_load_ps(accbuf[m][v]);
  store_tile<MR, NT>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, std::byte*, size_t, int, const float*, float*, int64_t, int,
                        Prefetch);

template <int G, int NP, int NV, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1, NP, NV>...};
}

template <int G>
void gemm_u4(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b_data, float* c,
             int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto two_panels = make_tiles<G, 2, 4>(std::make_integer_sequence<int, 1>{});
  static constexpr auto full = make_tiles<G, 1, 4>(std::make_integer_sequence<int, kMaxRowsFullPanel>{});
  static constexpr auto half = make_tiles<G, 1, 2>(std::make_integer_sequence<int, kMaxRowsHalfPanel>{});
  if (M <= 0) return;
  const DenormalsAreZero guard;  // the contract's FMAs (and the sums' adds)
  auto* b = static_cast<std::byte*>(const_cast<void*>(b_data));
  const int64_t groups = K / G;
  const size_t panel_bytes = size_t(groups) * int4_block_bytes(G);
  const Prefetch pf = prefetch_for(PrefetchStream::int4, M);
  const auto tiles = [&](int64_t m_first, int64_t m_rows, const float* sa) {
    const float* ag = a + m_first * lda;
    float* cm = c + m_first * ldc;
    for (int64_t p0 = n0; p0 < n1;) {
      std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
      if (m_rows == 1 && n1 - p0 > kGemmNR) {  // a lone row: two panels at once (the second maybe partial)
        const int width = int(std::min<int64_t>(2 * kGemmNR, n1 - p0));
        two_panels[0](groups, ag, lda, panel, panel_bytes, 0, sa, cm + (p0 - n0), ldc, width, pf);
        p0 += 2 * kGemmNR;
        continue;
      }
      const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
      if (m_rows <= kMaxRowsFullPanel) {
        full[size_t(m_rows - 1)](groups, ag, lda, panel, panel_bytes, 0, sa, cm + (p0 - n0), ldc, width, pf);
      } else {
        for (int v = 0; v < 4 && 8 * v < width; v += 2)
          for_row_blocks(m_rows, kMaxRowsHalfPanel, [&](int64_t r0, int64_t rows) {
            half[size_t(rows - 1)](groups, ag + r0 * lda, lda, panel, panel_bytes, v, sa + r0 * groups,
                                   cm + r0 * ldc + (p0 - n0) + 8 * v, ldc, std::min(16, width - 8 * v), pf);
          });
      }
      p0 += kGemmNR;
    }
  };
  for_int4_sum_chunks(M, K, G, a, lda, &group_sums<G>, tiles);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DEFINE, 8x8, avx2)

}  // namespace moefuse::gemm::detail
