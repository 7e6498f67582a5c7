// AVX-512 VNNI int8 GEMM: vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to an int32
// lane, so one instruction does 64 multiply-adds. Its first operand is unsigned, so A is shifted into u8:
//     ua = a + 128 (in 0..255, the xor of the byte with 0x80),   Σ_k ua·b = Σ_k a·b + 128·Σ_k b,
// and the column sums Σ_k b (packed with the weights) are subtracted once at the end.
//
// Why the result is exact even though int32 lanes may wrap: vpdpbusd (without saturation) and vpsubd compute modulo
// 2^32, so the lane ends up holding (Σ a·b + 128·colsum − 128·colsum) mod 2^32 = (Σ a·b) mod 2^32 whatever happened
// in between. The true Σ a·b lies in int32 range (|Σ a·b| <= 128·128·K < 2^30 for K < 65536), and a value in range
// is the only int32 with that residue, so the lane holds exactly Σ a·b. (For K < 65536 the shifted sum does not even
// wrap: |Σ ua·b| <= 255·128·65535 < 2^31; the argument above does not depend on it.)
//
// Tiles, as for the float kernels (gemm__avx512.cpp): 6 x 64 (two panels, 4 zmm accumulators per row) and 12 x 32
// (one panel, 2 per row); 24 chains of vpdpbusd either way. Which one serves which M: see the driver below.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRows = 12;     // rows of the single-panel tile
constexpr int kMaxRowsPair = 6;  // rows of the two-panel tile

// One group of 4 k: the 4 A bytes of each row (already shifted to u8, from the tile's A buffer) broadcast and
// multiplied with B's [32][4] bytes of each panel.
// Pf: the two lines of each panel a step reads are prefetched pf.bytes ahead (the int8 entry of the prefetch
// settings, base/cpu_tuning.h: off in the generic entry and on the Zen 5, where 8 KB was faster at M = 8 only), moved
// on by `skip` bytes (past the panel's end: the next tile's panels, cpu_tuning.h next_tile_skip).
template <int MR, int NP, bool Pf = false>
__attribute__((always_inline)) inline void step(const uint8_t* ua4, const int8_t* bg, int64_t pstride,
                                                __m512i (&acc)[MR][2 * NP], [[maybe_unused]] Prefetch pf,
                                                [[maybe_unused]] size_t skip = 0) {
  __m512i bv[2 * NP];
#pragma GCC unroll 2
  for (int p = 0; p < NP; ++p) {
    if constexpr (Pf) {
      prefetch_ahead(bg + p * pstride + skip, pf);
      prefetch_ahead(bg + p * pstride + skip + 64, pf);
    }
    bv[2 * p] = _mm512_loadu_si512(bg + p * pstride);           // columns 0..15, 4 k each
    bv[2 * p + 1] = _mm512_loadu_si512(bg + p * pstride + 64);  // columns 16..31
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    int32_t a4;
    std::memcpy(&a4, ua4 + 64 * m, 4);
    const __m512i ua = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NP; ++v) acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], ua, bv[v]);
  }
}

// A chunk of 64 k (16 groups) of every row into the tile's buffer, shifted to u8 (xor 0x80); bytes at k >= K are
// not read (masked load) and become 0 + 128, which meets B's zero padding.
template <int MR>
__attribute__((always_inline)) inline void fill_abuf(const int8_t* a, int64_t lda, int64_t k0, __mmask64 mask,
                                                     uint8_t* abuf) {
  const __m512i shift = _mm512_set1_epi8(int8_t(0x80));
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
    _mm512_store_si512(abuf + 64 * m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, a + m * lda + k0), shift));
}

// The same for a whole chunk (every k < K), as one vpxord with the row's 64 bytes as its memory operand per row.
// Written as asm because GCC 12, short of registers beside the two-panel tile's 24 accumulators, loaded every row
// after the first into a register, stored it to the stack and xor'ed the reloaded copy: two more memory operations
// per row and chunk, on the path that feeds the next chunk's broadcasts. Without them the w8a8 prefill layer ran
// about 1% faster (Zen 5, T = 512 and 2048, one and two threads, forward by forward in one process: 19 of 20 pairs,
// 0.1-2.7%; docs/performance.md).
template <int MR>
__attribute__((always_inline)) inline void fill_abuf_full(const int8_t* a, int64_t lda, int64_t k0, uint8_t* abuf) {
  const __m512i shift = _mm512_set1_epi8(int8_t(0x80));
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    __m512i ua;
    asm("vpxord %1, %2, %0" : "=v"(ua) : "m"(*reinterpret_cast<const int8_t(*)[64]>(a + m * lda + k0)), "v"(shift));
    _mm512_store_si512(abuf + 64 * m, ua);
  }
}

// Lines of weights a tile fetches for the tiles after it (see gemm_s8): per_chunk of them at each 64 k, from p on
// up to end. prefetcht0, not t1: on the Zen 5 the w8a8 prefill layer took 0.90-0.91 of the old kernel's time with
// t0 against 0.95-0.96 with t1 (T = 2048, one in-process comparison).
struct Ahead {
  const char* p = nullptr;
  const char* end = nullptr;
  int per_chunk = 0;
  __attribute__((always_inline)) void chunk() {
    for (int i = 0; i < per_chunk && p < end; ++i, p += 64) __builtin_prefetch(p, 0, 3);
  }
};

// The lines of one row of a tile's C (the columns below width) fetched for writing (prefetchw, which every
// AVX-512 CPU has), so that the stores at the tile's end do not wait on reads for ownership: a prefill's gate/up
// output is far larger than the caches, and those stores otherwise stall the next tile.
template <int NV>
__attribute__((always_inline)) inline void own_row(int32_t* c, int width) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v)
    if (16 * v < width) asm volatile("prefetchw %0" : : "m"(c[16 * v]));
}

// A is read 64 k at a time into a contiguous buffer (see tile_f in gemm__avx512.cpp: rows lda apart with lda a
// multiple of 4 KB share one L1 set), shifted to u8 once there rather than at every broadcast.
// Own: row m's C lines are fetched for writing during the m-th of the last MR chunks of 64 k (all at the start when
// there are fewer). Fetch: `fetch` names weight lines to bring in for the tiles after this one.
template <int MR, int NP, bool Pf, bool Own = false, bool Fetch = false>
void tile(int64_t K, const int8_t* a, int64_t lda, const int8_t* b, int64_t pstride, const int32_t* col_sums,
          int32_t* c, int64_t ldc, int width, Prefetch pf, [[maybe_unused]] const Ahead& fetch) {
  constexpr int NV = 2 * NP;
  // (by reference: a by-value struct argument was rebuilt on the stack and read back across two stores, a failed
  // store forward that waited on every pending store, the last tile's C included)
  [[maybe_unused]] Ahead ahead = fetch;
  __m512i acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_si512();
  const int64_t full = K / 64 * 64;
  alignas(64) uint8_t abuf[2][MR * 64];
  // The last K % 64 first (integer sums do not depend on the order, and with this tail after the loop GCC keeps a
  // stack copy of every accumulator up to date inside the loop).
  if (full < K) {
    const int rem = int(K - full);
    fill_abuf<MR>(a, lda, full, __mmask64(~0ull >> (64 - rem)), abuf[0]);
    if constexpr (Fetch) ahead.chunk();
    for (int g = 0; g < (rem + 3) / 4; ++g)
      step<MR, NP>(abuf[0] + 4 * g, b + (full / 4 + g) * 4 * kGemmNR, pstride, acc, pf);
  }
  const int64_t own0 = full / 64 - MR;
  if constexpr (Own)
    for (int64_t m = 0; m < -own0 && m < MR; ++m) own_row<NV>(c + m * ldc, width);
  // Double-buffered: the next 64 k of A are loaded before the current 64 are used (see tile_f in gemm__avx512.cpp).
  if (full > 0) fill_abuf_full<MR>(a, lda, 0, abuf[0]);
  int cur = 0;
  for (int64_t k0 = 0; k0 < full; k0 += 64, cur ^= 1) {
    if (k0 + 64 < full) fill_abuf_full<MR>(a, lda, k0 + 64, abuf[cur ^ 1]);
    if constexpr (Own)
      if (k0 / 64 >= own0) own_row<NV>(c + (k0 / 64 - own0) * ldc, width);
    if constexpr (Fetch) ahead.chunk();
    for (int g = 0; g < 16; ++g) {
      const int64_t off = (k0 / 4 + g) * 4 * kGemmNR;  // bytes into the panel
      const size_t skip = Pf ? next_tile_skip(off, pstride, NP, size_t(pstride), pf) : 0;
      step<MR, NP, Pf>(abuf[cur] + 4 * g, b + off, pstride, acc, pf, skip);
    }
  }

#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __mmask16 mask = column_mask(width, v);
    if (!mask) continue;
    // 128 · colsum (maskz form: see load_row in gemm__avx512.cpp)
    const __m512i comp = _mm512_maskz_slli_epi32(0xffff, _mm512_loadu_si512(col_sums + 16 * v), 7);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m)
      _mm512_mask_storeu_epi32(c + m * ldc + 16 * v, mask, _mm512_sub_epi32(acc[m][v], comp));
  }
}

template <int NP>
using Tile = void (*)(int64_t, const int8_t*, int64_t, const int8_t*, int64_t, const int32_t*, int32_t*, int64_t, int,
                     Prefetch, const Ahead&);

template <int NP, bool Pf, bool Own, bool Fetch, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<Tile<NP>, sizeof...(R)>{&tile<R + 1, NP, Pf, Own, Fetch>...};
}

template <bool Pf>
void gemm_s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
             const int32_t* col_sums, int32_t* c, int64_t ldc, Prefetch pf) {
  // With several row blocks only the first pass over a panel streams it from memory; the later ones find it in the
  // caches, where the prefetches are only extra instructions (w8a8 prefill, T = 2048 on the Zen 5: 2-4% slower with
  // them), so only the first row block's tiles prefetch.
  using Rows1 = std::make_integer_sequence<int, kMaxRows>;
  using Rows2 = std::make_integer_sequence<int, kMaxRowsPair>;
  static constexpr auto tiles1 = make_tiles<1, Pf, false, false>(Rows1{});
  static constexpr auto tiles1_cached = make_tiles<1, false, false, false>(Rows1{});
  static constexpr auto tiles2 = make_tiles<2, Pf, false, false>(Rows2{});
  static constexpr auto tiles2_cached = make_tiles<2, false, false, false>(Rows2{});
  static constexpr auto tiles2_later = make_tiles<2, false, true, false>(Rows2{});
  static constexpr auto tiles2_ahead = make_tiles<2, false, true, true>(Rows2{});
  const int64_t pstride = (K + 3) / 4 * 4 * kGemmNR;
  int64_t p0 = n0;
  // Pairs of panels: 6 x 64 tiles, rows split in balanced blocks of at most 6: one pass when M <= 6 (decode: two
  // streams, 4 chains per row), and faster than 12 x 32 from 11 rows on. For 7..10 rows the 12 x 32 tile, which
  // streams each panel once in one pass, is faster (measured: M = 8, 2048 x 2048, cold weights, 330 against 290
  // GOP/s), so those take the single-panel path below for every panel.
  if (M <= kMaxRowsPair || M >= 11) {
    const int64_t blocks = (M + kMaxRowsPair - 1) / kMaxRowsPair;
    const int64_t base = M / blocks, extra = M % blocks;
    // The first row block of a pair streams its panels from memory; the later ones find them in the caches. Those
    // later blocks fetch the next pair's panels (or last panel), spread evenly over them (a few lines per 64 k), and
    // write their C rows after fetching them for writing (Own), so that the next pair's first block finds its
    // panels in the caches too and skips its own prefetch. Before (w8a8 prefill on the Zen 5, 2 threads): the first
    // blocks, 1 tile in about 21 at T = 2048, took about a fifth of the kernel's time; after it, the layer took
    // 0.89-0.91 of its time at T = 512 and 2048 (docs/performance.md). Up to 32 lines per 64 k (3 blocks and more);
    // calls of one block (decode) run as before.
    const int64_t chunks = (K + 63) / 64;
    const int64_t lines = 2 * pstride / 64;  // of a pair
    const int per_chunk = blocks > 1 ? int((lines + (blocks - 1) * chunks - 1) / ((blocks - 1) * chunks)) : 0;
    const bool fetch_all = per_chunk > 0 && per_chunk <= 32;
    const int64_t panels = (n1 + kGemmNR - 1) / kGemmNR;  // past n1 nothing is fetched
    for (bool fetched = false; p0 + kGemmNR < n1; p0 += 2 * kGemmNR) {
      const int64_t next_panel = std::min(p0 / kGemmNR + 2, panels);
      const int64_t next_bytes = (std::min(p0 / kGemmNR + 4, panels) - next_panel) * pstride;
      const char* next = reinterpret_cast<const char*>(b + next_panel * pstride);
      const bool fetch = fetch_all && next_bytes > 0;
      int64_t m0 = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t rows = base + (blk < extra ? 1 : 0);
        Ahead ahead;
        if (fetch && blk > 0) {
          ahead.p = next + std::min((blk - 1) * chunks * per_chunk * 64, next_bytes);
          ahead.end = next + next_bytes;
          ahead.per_chunk = per_chunk;
        }
        const auto& tiles = blk == 0                ? (fetched ? tiles2_cached : tiles2)
                            : ahead.p < ahead.end ? tiles2_ahead
                                                  : tiles2_later;
        tiles[rows - 1](K, a + m0 * lda, lda, b + (p0 / kGemmNR) * pstride, pstride, col_sums + p0,
                        c + m0 * ldc + (p0 - n0), ldc, int(std::min<int64_t>(2 * kGemmNR, n1 - p0)), pf, ahead);
        m0 += rows;
      }
      fetched = fetch;
    }
  }
  // A last single panel: 12 x 32 tiles, rows split in balanced blocks of at most 12.
  const int64_t blocks = (M + kMaxRows - 1) / kMaxRows;
  const int64_t base = M / blocks, extra = M % blocks;
  for (; p0 < n1; p0 += kGemmNR) {
    const int8_t* panel = b + (p0 / kGemmNR) * pstride;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    int64_t m0 = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t rows = base + (blk < extra ? 1 : 0);
      (blk == 0 ? tiles1 : tiles1_cached)[rows - 1](K, a + m0 * lda, lda, panel, pstride, col_sums + p0,
                                                     c + m0 * ldc + (p0 - n0), ldc, width, pf, Ahead{});
      m0 += rows;
    }
  }
}

}  // namespace

void gemm_s8_s32_6x64__avx512vnni(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                                  const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0) return;
  const Prefetch pf = prefetch_for(PrefetchStream::int8, M);
  if (pf.on()) gemm_s8<true>(M, K, n0, n1, a, lda, b, col_sums, c, ldc, pf);
  else gemm_s8<false>(M, K, n0, n1, a, lda, b, col_sums, c, ldc, pf);
}

}  // namespace moefuse::gemm::detail
