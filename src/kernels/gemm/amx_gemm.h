// The AMX GEMM drivers, written once over a tile-operations policy `T` so that the same code runs on AMX hardware
// (gemm_amx__amx.cpp: T = the tile instructions) and, in the tests, on a scalar model of the tiles
// (tests/kernels/gemm_amx_emulated_test.cpp), which lets the layout, tail and edge handling below be checked bit for
// bit on a machine without AMX.
//
// Tiles. Every tile is configured as 16 rows of 64 bytes (palette 1), and the eight are used as
//     C(t, h) = tile 2t + h (t: the 16-row half of a 32-row block of A; h: the 16-column half of a panel),
//     A(t)    = tile 4 + t,   B(h) = tile 6 + h,
// so one pass over K computes a 32 x 32 block of C (one panel of the packed weights) with four tile products per
// step: the largest block eight tiles allow (four accumulators, two A and two B tiles).
//
// int8 (TDPBSSD: int8 x int8 -> int32, exact). The packed int8 panel (gemm.h: [Kp / 4][32][4] bytes) is already
// what a B tile wants: a tile row is 16 columns x 4 consecutive k. B(h) is loaded straight from the panel with a
// row stride of 128 bytes, at byte offset 64 h. An A tile is 16 rows x 64 consecutive k of A, loaded in place or from
// a dense copy (the int8 schedules below say which and why). One step covers 64 k.
//
// bf16 (TDPBF16PS: pairs of bf16 products accumulated into fp32 with the instruction's own rounding). A B tile row
// is 16 columns x the pair (k, k + 1), but the float panel stores k rows of 32 columns, so each panel is re-laid out
// per block of up to kBf16KBlock k into a buffer of pair rows (128 bytes: the 32 columns' pairs), reused by every
// 32-row block of A. The policy may interleave a pair row with vector instructions (T::pair_row; the hardware policy
// does, two vpermt2w per row where the scalar loop moves 64 words one by one); without it, detail::pair_row below. An
// A tile is 16 rows x 32 consecutive k (16 pairs), loaded in place from a 32-row block; a last block of fewer rows
// is staged once per k block, zero-padded, for every panel. The k blocks are the outer loop. C is carried from one k
// block to the next through C itself (stored and reloaded as fp32: exact), so the result does not depend on the block
// size. While the first row block's tile products run, the weights of the next re-layout are prefetched (the tiles
// read only the buffer, so nothing else would stream them meanwhile).
//
// Order and determinism. C(m, n) is the chain of the steps over k ascending (64 k per int8 step, 32 per bf16 step),
// each step one tile product that reads only row m of A and column n of B. No step depends on M, on the rows that
// share the tile, on the column range of the call or on the thread: a row's result is a function of that row and the
// weights alone. int8 sums are exact in any order anyway; for bf16 this is what makes the native tier deterministic.
//
// Edges. Full tiles are loaded from and stored to A, B and C in place. A tile that would reach past M, past K or
// past the panel (the last rows of the VNNI layout) is assembled in a zero-filled buffer instead, and a C tile that
// would reach past M or past n1 goes through a buffer, of which only the valid part is copied: nothing outside the
// ranges of gemm.h's memory rules is read or written.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "base/scratch.h"
#include "kernels/gemm/gemm.h"

namespace moefuse::gemm::amx {

inline constexpr int kTileRows = 16;   // rows of every tile
inline constexpr int kTileBytes = 64;  // bytes of every tile row
inline constexpr int64_t kBf16KBlock = 512;  // k per re-laid bf16 block: 256 pair rows of 128 bytes (32 KB)

/// The 64-byte operand of LDTILECFG: palette 1, every tile 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {kTileBytes, kTileBytes, kTileBytes, kTileBytes, kTileBytes, kTileBytes, kTileBytes,
                        kTileBytes};
  uint8_t rows[16] = {kTileRows, kTileRows, kTileRows, kTileRows, kTileRows, kTileRows, kTileRows, kTileRows};
};
static_assert(sizeof(TileConfig) == 64);

namespace detail {

// Loads tile t from `rows` rows of `bytes` bytes at src (row stride `stride` bytes): in place when the tile is full,
// else through `buf` (16 x 64 bytes), zero past the rows and bytes given.
template <class T, int t>
inline void load_tile(const void* src, int64_t stride, int rows, int bytes, uint8_t* buf) {
  if (rows == kTileRows && bytes == kTileBytes) {
    T::template load<t>(src, stride);
    return;
  }
  std::memset(buf, 0, kTileRows * kTileBytes);
  for (int r = 0; r < rows; ++r) std::memcpy(buf + r * kTileBytes, static_cast<const uint8_t*>(src) + r * stride, size_t(bytes));
  T::template load<t>(buf, kTileBytes);
}

// Stores the rows x cols 32-bit elements of tile t to dst (row stride ldc elements): in place when full, else
// through `buf`.
template <class T, int t, class E>
inline void store_tile(E* dst, int64_t ldc, int rows, int cols, E* buf) {
  if (rows == kTileRows && cols == 16) {
    T::template store<t>(dst, ldc * int64_t(sizeof(E)));
    return;
  }
  T::template store<t>(buf, kTileBytes);
  for (int r = 0; r < rows; ++r) std::memcpy(dst + r * ldc, buf + r * 16, size_t(cols) * sizeof(E));
}

// The inverse of store_tile: tile t from the rows x cols elements at dst (zero elsewhere).
template <class T, int t, class E>
inline void reload_tile(const E* dst, int64_t ldc, int rows, int cols, E* buf) {
  if (rows == kTileRows && cols == 16) {
    T::template load<t>(dst, ldc * int64_t(sizeof(E)));
    return;
  }
  std::memset(buf, 0, kTileRows * kTileBytes);
  for (int r = 0; r < rows; ++r) std::memcpy(buf + r * 16, dst + r * ldc, size_t(cols) * sizeof(E));
  T::template load<t>(buf, kTileBytes);
}

// One pair row: out[2 j] = even[j], out[2 j + 1] = odd[j] (0 without an odd row), j < 32.
inline void pair_row(const uint16_t* even, const uint16_t* odd, uint16_t* out) {
  for (int j = 0; j < kGemmNR; ++j) {
    out[2 * j] = even[j];
    out[2 * j + 1] = odd ? odd[j] : uint16_t(0);
  }
}

// The four C tiles of a block of rows0 (+ rows1) rows and `width` columns: stored (Reload false) or loaded.
template <class T, bool Reload, class E>
inline void move_c(E* c, int64_t ldc, int rows0, int rows1, int width, E* buf) {
  const int w0 = std::min(width, 16), w1 = width - w0;
  auto one = [&]<int t>(E* dst, int rows, int cols) {
    if (Reload) reload_tile<T, t>(dst, ldc, rows, cols, buf);
    else store_tile<T, t>(dst, ldc, rows, cols, buf);
  };
  one.template operator()<0>(c, rows0, w0);
  if (w1 > 0) one.template operator()<1>(c + 16, rows0, w1);
  if (rows1 > 0) {
    one.template operator()<2>(c + kTileRows * ldc, rows1, w0);
    if (w1 > 0) one.template operator()<3>(c + kTileRows * ldc + 16, rows1, w1);
  }
}

// Zeroes the four C tiles.
template <class T>
inline void zero_c() {
  T::template zero<0>();
  T::template zero<1>();
  T::template zero<2>();
  T::template zero<3>();
}

// The four C tiles at the start of a k block: zero for the first block, else C as the previous blocks left it.
template <class T, class E>
inline void begin_c(bool first, E* c, int64_t ldc, int rows0, int rows1, int width, E* buf) {
  if (first) zero_c<T>();
  else move_c<T, true>(c, ldc, rows0, rows1, width, buf);
}

}  // namespace detail

namespace detail {

// One int8 step of 64 k: A(0) (and A(1) when `two`) by `load_a` (called with the tile number), B(0) and B(1) from
// the panel's VNNI rows at bk (grows of them: 16 but at the end of K), then the two or four tile products.
template <class T, class LoadA>
inline void s8_step(const LoadA& load_a, const int8_t* bk, int grows, bool two,
                    uint8_t (&bbuf)[2][kTileRows * kTileBytes]) {
  load_a.template operator()<4>();
  load_tile<T, 6>(bk, 4 * kGemmNR, grows, kTileBytes, bbuf[0]);
  load_tile<T, 7>(bk + 64, 4 * kGemmNR, grows, kTileBytes, bbuf[1]);
  T::template dp_s8<0, 4, 6>();
  T::template dp_s8<1, 4, 7>();
  if (two) {
    load_a.template operator()<5>();
    T::template dp_s8<2, 5, 6>();
    T::template dp_s8<3, 5, 7>();
  }
}

// Prefetches (to L1) the `lines` 64-byte lines from p.
inline void prefetch_lines(const void* p, int lines) {
  for (int l = 0; l < lines; ++l) __builtin_prefetch(static_cast<const char*>(p) + 64 * l, 0, 3);
}

// Prefetches the 64 bytes from k0 of each of `rows` rows of A (both lines when the rows are not 64-byte aligned).
inline void prefetch_a_rows(const int8_t* a, int64_t lda, int rows, bool aligned) {
  for (int r = 0; r < rows; ++r) {
    __builtin_prefetch(a + r * lda, 0, 3);
    if (!aligned) __builtin_prefetch(a + r * lda + 63, 0, 3);
  }
}

}  // namespace detail

// ─── int8 schedules ─────────────────────────────────────────────────────────────────────────────────────────────
// Every schedule below computes the same exact sums (int8: any order gives the same int32), over the same tile
// block (C 32 x 32 in tiles 0-3, A(0), A(1), B(0), B(1)) and the same edge helpers; they differ only in the order in
// which they walk the blocks, in where each operand is read from, and in software prefetch. One step is 64 k: four
// tile products (16 x 16 x 64 each, 16 cycles of the tile unit on Sapphire Rapids: 64 cycles a step) fed by four
// 1 KB tile loads (1 KB per product). What limits a step is where those 4 KB come from and how: L1 gives 2 x 64 B a
// cycle (4 KB in 32 cycles), L2 about 48 B a cycle at best (4 KB in ~85 cycles: past the 64 the products take), L3
// about 20; and a tile of A read in place has its 16 rows lda bytes apart, which for lda a multiple of 2 KB (the
// models' hidden and intermediate sizes, in int8 bytes) puts all 16 lines in one or two of L1's 64 sets.
//
//   gemm_s8 (Prefetch false): panel, row block, all of K. C stays in the tiles for all of K, but a 32 x K block of A
//     and a K x 32 panel are 32 K bytes each (64 KB at K = 2048: neither fits L1's 48 KB), so every step loads A
//     (strided, in place) and B from L2, A from L3 once M K passes L2's 2 MB: 1 KB per product from L2 (or 512 B
//     from L2 + 512 B from L3).
//   gemm_s8<T, true>: the same, prefetching the next step's A and B rows into L1 during this step's products.
//   gemm_s8_kblock: rows in blocks of kS8RowBlock, and for each panel, K in blocks of KB (512): the panel's k block
//     (KB / 4 rows of 128 bytes, 16 KB) stays in L1 while the row blocks stream their A from L2 (strided, in place);
//     C is carried from one k block to the next through C itself (stored, reloaded: exact). Per product: 512 B of A
//     from L2 + the C traffic (below); optionally prefetching the next step's A rows.
//   gemm_s8_packed (the registry row's): columns in blocks of NC (kS8ColBlock), rows in blocks of MC (kS8RowBlock),
//     K in blocks of KB (kS8KBlock); each 32-row block's k block of A is copied once into a dense stack buffer
//     ([step][32 rows][64 bytes]: tile loads of stride 64, no set conflicts), reused by every panel of the column
//     block, whose B rows (dense) come from L2 (a column block's B, NC x K bytes = 1 MB at K = 2048, stays in L2
//     across the row blocks). With KB = 512 the copy (16 KB) stays in L1: 512 B of B from L2 per product + the C
//     traffic. With KB = 2048 (the default) C stays in the tiles for all of K up to 2048 and the copy (64 KB) is read
//     from L2: 1 KB per product from L2, all of it dense; the next step's B rows are prefetched (Prefetch = 1).
//   C traffic of the k-blocked schedules: per 32 x 32 block and k block, one 4 KB store and (but for the first) one
//     4 KB reload against KB / 16 products: (2 K / KB - 1) x 4 KB / (K / 16) per product, at KB = 512 224 B at
//     K = 2048 and 192 B at K = 1024, strided by ldc (8 KB at N = 2048: the same L1 set conflicts as A in place).
// Measured (one thread of a 16-core Sapphire Rapids-class Xeon VM at 2.1 GHz, N = 2048, cold weights; gemm_bench,
// medians of 3 in one process; the same code varied up to 2x between runs on that VM, so only pairs from one run are
// compared): gemm_s8 against gemm_s8_packed (KB 2048, Prefetch 1), K = 2048: M = 16 0.49 -> 0.38 ms, M = 64 0.71 ->
// 0.53 and 1.24 -> 0.93, M = 512 6.9 -> 3.0 and 7.7 -> 5.0, M = 2048 31.7 -> 11.4 and 37.5 -> 20.1; K = 1024: M = 512
// 3.2 -> 2.6 and 1.8 -> 1.4, M = 2048 21.7 -> 10.1 and 8.3 -> 7.6. Beside them (M = 512, K = 2048, one run): packed
// KB 512 with prefetch 6.0, KB 2048 without prefetch 5.3 (M = 64: 1.13 against 0.53 with it), prefetch 2 steps
// ahead or A's copy prefetched too no better than 1 step, MC 128 or NC 256 within the noise. The dense copy of A and
// keeping C in the tiles matter most, then the prefetch of B; L1-resident k blocks with C carried through C
// (kblock, packed KB 512) lose to both.
inline constexpr int64_t kS8KBlock = 2048;   // k per copy of A: 32 x 2048 bytes (64 KB) of stack
inline constexpr int64_t kS8RowBlock = 256;  // rows per block: A's rows x K in L2 (512 KB at K = 2048)
inline constexpr int64_t kS8ColBlock = 512;  // columns per block: B's 16 panels x K in L2 (1 MB at K = 2048)

namespace detail {

// What gemm_s8 and gemm_s8_kblock set up alike: the panel layout's geometry (gemm.h: [Kp / 4][32][4] bytes a panel),
// whether A's rows start on cache lines, and the edge buffers of a block's tiles.
struct S8Frame {
  int64_t groups;   // rows of 4 k in a panel
  int64_t pstride;  // bytes from one panel to the next
  bool a_aligned;
  alignas(64) uint8_t abuf[2][kTileRows * kTileBytes];
  alignas(64) uint8_t bbuf[2][kTileRows * kTileBytes];
  alignas(64) int32_t cbuf[kTileRows * 16];
  S8Frame(int64_t K, const int8_t* a, int64_t lda)
      : groups((K + 3) / 4),
        pstride(groups * 4 * kGemmNR),
        a_aligned(((reinterpret_cast<uintptr_t>(a) | uintptr_t(lda)) & 63) == 0) {}
};

}  // namespace detail

/// int8 x int8 -> int32 on tiles (gemm.h's int8 contract: exact). Arguments as GemmS8Fn's, less col_sums (TDPBSSD
/// takes signed bytes on both sides, so nothing needs undoing). K < 65536.
template <class T, bool Prefetch = false>
void gemm_s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b, int32_t* c,
             int64_t ldc) {
  using detail::load_tile;
  detail::S8Frame frame(K, a, lda);
  auto& [groups, pstride, a_aligned, abuf, bbuf, cbuf] = frame;
  T::configure();
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const int8_t* panel = b + (p0 / kGemmNR) * pstride;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    for (int64_t m0 = 0; m0 < M; m0 += 2 * kTileRows) {
      const int rows0 = int(std::min<int64_t>(kTileRows, M - m0));
      const int rows1 = int(std::clamp<int64_t>(M - m0 - kTileRows, 0, kTileRows));
      const int8_t* a0 = a + m0 * lda;
      detail::zero_c<T>();
      for (int64_t k0 = 0; k0 < K; k0 += 64) {
        const int kbytes = int(std::min<int64_t>(64, K - k0));
        const int grows = int(std::min<int64_t>(kTileRows, groups - k0 / 4));
        const int8_t* bk = panel + (k0 / 4) * 4 * kGemmNR;
        if constexpr (Prefetch) {
          if (k0 + 64 < K) {
            detail::prefetch_a_rows(a0 + k0 + 64, lda, rows0 + rows1, a_aligned);
            detail::prefetch_lines(bk + kTileRows * 4 * kGemmNR,
                                   int(std::min<int64_t>(kTileRows, groups - k0 / 4 - kTileRows)) * 2);
          }
        }
        detail::s8_step<T>(
            [&]<int t>() {
              if constexpr (t == 4) load_tile<T, 4>(a0 + k0, lda, rows0, kbytes, abuf[0]);
              else load_tile<T, 5>(a0 + kTileRows * lda + k0, lda, rows1, kbytes, abuf[1]);
            },
            bk, grows, rows1 > 0, bbuf);
      }
      detail::move_c<T, false>(c + m0 * ldc + (p0 - n0), ldc, rows0, rows1, width, cbuf);
    }
  }
  T::release();
}

/// gemm_s8's sums in the k-blocked order with the panel's k block resident (see the int8 schedules above). Same
/// arguments and contract.
template <class T, bool Prefetch = false, int64_t KB = 512>
void gemm_s8_kblock(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
                    int32_t* c, int64_t ldc) {
  using detail::load_tile;
  static_assert(KB % 64 == 0);
  if (K == 0) return gemm_s8<T>(M, K, n0, n1, a, lda, b, c, ldc);  // no step: zeros
  detail::S8Frame frame(K, a, lda);
  auto& [groups, pstride, a_aligned, abuf, bbuf, cbuf] = frame;
  T::configure();
  for (int64_t mc = 0; mc < M; mc += kS8RowBlock) {
    const int64_t mc1 = std::min(M, mc + kS8RowBlock);
    for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
      const int8_t* panel = b + (p0 / kGemmNR) * pstride;
      const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
      for (int64_t kb = 0; kb < K; kb += KB) {
        const int64_t kend = std::min(K, kb + KB);
        for (int64_t m0 = mc; m0 < mc1; m0 += 2 * kTileRows) {
          const int rows0 = int(std::min<int64_t>(kTileRows, M - m0));
          const int rows1 = int(std::clamp<int64_t>(M - m0 - kTileRows, 0, kTileRows));
          const int8_t* a0 = a + m0 * lda;
          int32_t* cblk = c + m0 * ldc + (p0 - n0);
          detail::begin_c<T>(kb == 0, cblk, ldc, rows0, rows1, width, cbuf);
          for (int64_t k0 = kb; k0 < kend; k0 += 64) {
            const int kbytes = int(std::min<int64_t>(64, K - k0));
            const int grows = int(std::min<int64_t>(kTileRows, groups - k0 / 4));
            if constexpr (Prefetch) {
              // the next step's A rows: this block's next step, else the next row block's first (its B is in L1)
              if (k0 + 64 < kend) detail::prefetch_a_rows(a0 + k0 + 64, lda, rows0 + rows1, a_aligned);
              else if (m0 + 2 * kTileRows < mc1)
                detail::prefetch_a_rows(a0 + 2 * kTileRows * lda + kb, lda,
                                        int(std::min<int64_t>(2 * kTileRows, M - m0 - 2 * kTileRows)), a_aligned);
            }
            detail::s8_step<T>(
                [&]<int t>() {
                  if constexpr (t == 4) load_tile<T, 4>(a0 + k0, lda, rows0, kbytes, abuf[0]);
                  else load_tile<T, 5>(a0 + kTileRows * lda + k0, lda, rows1, kbytes, abuf[1]);
                },
                panel + (k0 / 4) * 4 * kGemmNR, grows, rows1 > 0, bbuf);
          }
          detail::move_c<T, false>(cblk, ldc, rows0, rows1, width, cbuf);
        }
      }
    }
  }
  T::release();
}

/// gemm_s8's sums in the k-blocked order with a dense copy of A's k block resident (see the int8 schedules above).
/// Same arguments and contract; 32 x KB bytes of stack for the copy (64 KB at the default KB).
/// Prefetch: the B rows of the step `Prefetch` steps ahead are prefetched (0: none); PrefetchA: also the copy's
/// next step (when the copy is larger than L1). KB, MC, NC: the k, row and column blocks.
template <class T, int Prefetch = 1, bool PrefetchA = false, int64_t KB = kS8KBlock, int64_t MC = kS8RowBlock,
          int64_t NC = kS8ColBlock>
void gemm_s8_packed(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
                    int32_t* c, int64_t ldc) {
  constexpr int kStepBytes = 2 * kTileRows * kTileBytes;  // one step of the copy: 32 rows x 64 k
  static_assert(KB % 64 == 0 && MC % (2 * kTileRows) == 0 && NC % kGemmNR == 0);
  if (K == 0) return gemm_s8<T>(M, K, n0, n1, a, lda, b, c, ldc);  // no step: zeros
  const int64_t groups = (K + 3) / 4;
  const int64_t pstride = groups * 4 * kGemmNR;
  alignas(64) uint8_t apack[KB / 64 * kStepBytes];  // [step][32 rows][64 k], zero past M and K
  alignas(64) uint8_t bbuf[2][kTileRows * kTileBytes];
  alignas(64) int32_t cbuf[kTileRows * 16];
  T::configure();
  for (int64_t nc = n0; nc < n1; nc += NC) {
    const int64_t nc1 = std::min(n1, nc + NC);
    for (int64_t mc = 0; mc < M; mc += MC) {
      const int64_t mc1 = std::min(M, mc + MC);
      for (int64_t kb = 0; kb < K; kb += KB) {
        const int64_t kc = std::min(KB, K - kb);
        const int steps = int((kc + 63) / 64);
        for (int64_t m0 = mc; m0 < mc1; m0 += 2 * kTileRows) {
          const int rows0 = int(std::min<int64_t>(kTileRows, M - m0));
          const int rows1 = int(std::clamp<int64_t>(M - m0 - kTileRows, 0, kTileRows));
          const int rows = rows1 > 0 ? 2 * kTileRows : kTileRows;  // the rows the tiles read
          for (int s = 0; s < steps; ++s) {
            uint8_t* dst = apack + s * kStepBytes;
            const int bytes = int(std::min<int64_t>(64, kc - 64 * s));
            for (int r = 0; r < rows; ++r) {
              if (r < rows0 + rows1) {
                std::memcpy(dst + r * kTileBytes, a + (m0 + r) * lda + kb + 64 * s, size_t(bytes));
                if (bytes < kTileBytes) std::memset(dst + r * kTileBytes + bytes, 0, size_t(kTileBytes - bytes));
              } else {
                std::memset(dst + r * kTileBytes, 0, kTileBytes);
              }
            }
          }
          for (int64_t p0 = nc; p0 < nc1; p0 += kGemmNR) {
            const int8_t* panel = b + (p0 / kGemmNR) * pstride;
            const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
            int32_t* cblk = c + m0 * ldc + (p0 - n0);
            detail::begin_c<T>(kb == 0, cblk, ldc, rows0, rows1, width, cbuf);
            for (int s = 0; s < steps; ++s) {
              const int64_t k0 = kb + 64 * s;
              const int8_t* bk = panel + (k0 / 4) * 4 * kGemmNR;
              if constexpr (Prefetch > 0) {
                // the B rows `Prefetch` steps ahead: in this panel, else in the next panel's k block
                const int ahead = s + Prefetch;
                const int8_t* next = ahead < steps ? panel : p0 + kGemmNR < nc1 ? panel + pstride : nullptr;
                const int64_t g = kb / 4 + kTileRows * int64_t(ahead < steps ? ahead : ahead - steps);
                if (next && g < groups)
                  detail::prefetch_lines(next + g * 4 * kGemmNR, int(std::min<int64_t>(kTileRows, groups - g)) * 2);
              }
              if constexpr (PrefetchA) {
                if (s + 1 < steps) detail::prefetch_lines(apack + (s + 1) * kStepBytes, rows1 > 0 ? 32 : 16);
              }
              const uint8_t* as = apack + s * kStepBytes;
              detail::s8_step<T>(
                  [&]<int t>() { T::template load<t>(as + (t - 4) * kTileRows * kTileBytes, kTileBytes); }, bk,
                  int(std::min<int64_t>(kTileRows, groups - k0 / 4)), rows1 > 0, bbuf);
            }
            detail::move_c<T, false>(cblk, ldc, rows0, rows1, width, cbuf);
          }
        }
      }
    }
  }
  T::release();
}

/// Rows of A for gemm_bf16: bf16 rows as they are (tiles may be loaded in place).
struct Bf16Rows {
  const bfloat16* a;
  int64_t lda;  // elements
  static constexpr bool kInPlace = true;
  const void* at(int64_t m, int64_t k) const { return a + m * lda + k; }
  int64_t stride_bytes() const { return lda * 2; }
  void copy(int64_t m, int64_t k, int n, uint16_t* dst) const { std::memcpy(dst, a + m * lda + k, size_t(n) * 2); }
};

/// Rows of A for gemm_bf16: fp32 rows whose values are bf16 values (the caller checked): their high halves.
struct F32Rows {
  const float* a;
  int64_t lda;
  static constexpr bool kInPlace = false;
  const void* at(int64_t, int64_t) const { return nullptr; }
  int64_t stride_bytes() const { return 0; }
  void copy(int64_t m, int64_t k, int n, uint16_t* dst) const {
    const float* src = a + m * lda + k;
    for (int i = 0; i < n; ++i) {
      uint32_t u;
      std::memcpy(&u, src + i, 4);
      dst[i] = uint16_t(u >> 16);
    }
  }
};

/// Where gemm_bf16's tiles read A from: BF16A::in_place loads bf16 rows' full tiles from the rows themselves (lda
/// apart) and copies every other tile (fp32 rows, a short step, the staged short row block) into a buffer just
/// before its load; BF16A::dense copies each 512-k block of every row once, as bf16, into a scratch buffer laid out
/// [32-row block][step of 32 k][32 rows][64 bytes] (zeros past M and K), so that every A tile is 1 KB of consecutive
/// bytes, written once per k block rather than per panel. Why: the int8 driver's dense copy was its largest gain on
/// a Sapphire Rapids (the int8 schedules above), and in place the fp32 rows of the fused path are converted per
/// step and per panel into a buffer the tile load then waits on. The same sums in the same order either way (the
/// same bits); the buffer is M x 1 KB (base/scratch.h), not the stack.
enum class BF16A { in_place, dense };

/// bf16 weights (the float panel layout of gemm.h, bf16 elements) x bf16 rows of A -> fp32, on TDPBF16PS. Arguments
/// as GemmFloatFn's with A given by `rows` (Bf16Rows or F32Rows); `Source`: where the tiles read A (above).
template <class T, class Rows, BF16A Source = BF16A::in_place>
void gemm_bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const Rows& rows, const bfloat16* b, float* c,
               int64_t ldc) {
  constexpr int kChunk = 32;  // k per tile product
  constexpr int kBlockRows = 2 * kTileRows;
  alignas(64) uint16_t pairs[kBf16KBlock / 2 * 2 * kGemmNR];  // pair rows: [k / 2][32 columns][k % 2]
  constexpr bool kDense = Source == BF16A::dense;
  constexpr int64_t kSteps = kBf16KBlock / kChunk;  // steps per k block (the dense copy's stride)
  alignas(64) uint16_t tail[kDense ? 1 : kBlockRows * kBf16KBlock];  // in place: the last row block's A, [32][512]
  alignas(64) uint8_t abuf[2][kTileRows * kTileBytes];
  alignas(64) float cbuf[kTileRows * 16];
  if (K == 0) {  // no step: C is the empty sum, +0
    for (int64_t m = 0; m < M; ++m) std::fill(c + m * ldc, c + m * ldc + (n1 - n0), 0.0f);
    return;
  }
  const int64_t tail_m0 = M / kBlockRows * kBlockRows;  // the first row of a block of fewer than 32 rows (M if none)
  const int tail_rows = int(M - tail_m0);
  const int64_t row_blocks = (M + kBlockRows - 1) / kBlockRows;
  Scratch<uint16_t> dense(kDense ? row_blocks * kBlockRows * kBf16KBlock : 0);
  // The dense copy's tile of rows [16 h, 16 h + 16) of row block mb at step st: 16 rows of 32 k, 64 bytes apart.
  const auto dense_tile = [&](int64_t mb, int64_t st, int h) {
    return dense.data() + ((mb * kSteps + st) * kBlockRows + h * kTileRows) * kChunk;
  };
  T::configure();
  for (int64_t kb = 0; kb < K; kb += kBf16KBlock) {
    const int64_t kc = std::min<int64_t>(kBf16KBlock, K - kb);
    const int64_t kc_padded = (kc + kChunk - 1) / kChunk * kChunk;
    if constexpr (kDense) {
      for (int64_t m = 0; m < row_blocks * kBlockRows; ++m)
        for (int64_t st = 0; st < kc_padded / kChunk; ++st) {
          uint16_t* dst = dense_tile(m / kBlockRows, st, 0) + (m % kBlockRows) * kChunk;
          const int n = m < M ? int(std::min<int64_t>(kChunk, kc - st * kChunk)) : 0;
          if (n > 0) rows.copy(m, kb + st * kChunk, n, dst);
          if (n < kChunk) std::memset(dst + n, 0, size_t(kChunk - n) * 2);
        }
    } else if (tail_rows > 0) {
      // The short row block's A for this k block, staged once for every panel: a tile loaded from a buffer just
      // written waits until the stores have drained, which per step (decode: every step) cost more than the step.
      // The rows the tiles read: 16, or 32 when the block has a second tile.
      std::memset(tail, 0, size_t(tail_rows <= kTileRows ? kTileRows : kBlockRows) * kBf16KBlock * 2);
      for (int r = 0; r < tail_rows; ++r) rows.copy(tail_m0 + r, kb, int(kc), tail + r * kBf16KBlock);
    }
    for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
      const bfloat16* panel = b + (p0 / kGemmNR) * K * kGemmNR;
      const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
      // The block's pair rows, then zero rows up to a whole tile (the last step of the block may be short).
      const int64_t prows = (kc + 1) / 2, prows_padded = kc_padded / 2;
      static_assert(sizeof(bfloat16) == 2);
      for (int64_t r = 0; r < prows; ++r) {
        const auto* even = reinterpret_cast<const uint16_t*>(panel + (kb + 2 * r) * kGemmNR);
        const uint16_t* odd = kb + 2 * r + 1 < K ? even + kGemmNR : nullptr;
        uint16_t* out = pairs + r * 2 * kGemmNR;
        if constexpr (requires { T::pair_row(even, odd, out); }) T::pair_row(even, odd, out);
        else detail::pair_row(even, odd, out);
      }
      std::memset(pairs + prows * 2 * kGemmNR, 0, size_t(prows_padded - prows) * 2 * kGemmNR * 2);
      // The weights the next re-layout reads (the next panel's rows of this k block, else the first panel's of the
      // next), prefetched over the first row block's steps: the tile products read only the buffer, so without it
      // no weight streams from memory while they run (decode: all the time but the re-layout's).
      const char* next = nullptr;
      int64_t next_bytes = 0;
      if (p0 + kGemmNR < n1) {
        next = reinterpret_cast<const char*>(panel + K * kGemmNR + kb * kGemmNR), next_bytes = kc * kGemmNR * 2;
      } else if (kb + kBf16KBlock < K) {
        next = reinterpret_cast<const char*>(b + (n0 / kGemmNR) * K * kGemmNR + (kb + kBf16KBlock) * kGemmNR);
        next_bytes = std::min<int64_t>(kBf16KBlock, K - kb - kBf16KBlock) * kGemmNR * 2;
      }
      const int64_t steps = kc_padded / kChunk, lines_per_step = (next_bytes / 64 + steps - 1) / steps;
      for (int64_t m0 = 0; m0 < M; m0 += kBlockRows) {
        const int rows0 = int(std::min<int64_t>(kTileRows, M - m0));
        const int rows1 = int(std::clamp<int64_t>(M - m0 - kTileRows, 0, kTileRows));
        const bool staged = m0 == tail_m0;
        float* cblk = c + m0 * ldc + (p0 - n0);
        detail::begin_c<T>(kb == 0, cblk, ldc, rows0, rows1, width, cbuf);
        for (int64_t k0 = 0; k0 < kc; k0 += kChunk) {
          const int kn = int(std::min<int64_t>(kChunk, kc - k0));  // k of A in this step
          const uint16_t* bk = pairs + (k0 / 2) * 2 * kGemmNR;
          if (m0 == 0 && next)
            for (int64_t l = (k0 / kChunk) * lines_per_step, e = std::min(l + lines_per_step, next_bytes / 64); l < e;
                 ++l)
              __builtin_prefetch(next + l * 64, 0, 3);
          auto load_a = [&]<int t>(int64_t m, int nrows, uint8_t* buf) {
            if constexpr (kDense) {
              T::template load<t>(dense_tile(m / kBlockRows, k0 / kChunk, int(m % kBlockRows) / kTileRows),
                                  kChunk * 2);
            } else if (staged) {
              T::template load<t>(tail + (m - tail_m0) * kBf16KBlock + k0, kBf16KBlock * 2);
            } else if (Rows::kInPlace && nrows == kTileRows && kn == kChunk) {
              T::template load<t>(rows.at(m, kb + k0), rows.stride_bytes());
            } else {
              std::memset(buf, 0, kTileRows * kTileBytes);
              for (int r = 0; r < nrows; ++r)
                rows.copy(m + r, kb + k0, kn, reinterpret_cast<uint16_t*>(buf + r * kTileBytes));
              T::template load<t>(buf, kTileBytes);
            }
          };
          load_a.template operator()<4>(m0, rows0, abuf[0]);
          T::template load<6>(bk, 2 * kGemmNR * 2);
          T::template load<7>(bk + kGemmNR, 2 * kGemmNR * 2);
          T::template dp_bf16<0, 4, 6>();
          T::template dp_bf16<1, 4, 7>();
          if (rows1 > 0) {
            load_a.template operator()<5>(m0 + kTileRows, rows1, abuf[1]);
            T::template dp_bf16<2, 5, 6>();
            T::template dp_bf16<3, 5, 7>();
          }
        }
        detail::move_c<T, false>(cblk, ldc, rows0, rows1, width, cbuf);
      }
    }
  }
  T::release();
}

/// Calls visit(name, driver) for every int8 schedule above worth timing, driver a std::integral_constant holding the
/// driver's instantiation for the tile policy T: the one list the model tests and gemm_bench walk. "base" is the
/// old schedule, "packed_k2048_pf1" the registry row's; the rest differ as their names say (see the int8 schedules:
/// k<KB>, pf<distance in steps> of the B prefetch, a: A's copy prefetched too, m<MC>, n<NC>).
template <class T, class Visit>
void visit_s8_schedules(const Visit& visit) {
  auto one = [&]<auto F>(const char* name) { visit(name, std::integral_constant<decltype(F), F>{}); };
  one.template operator()<&gemm_s8<T, false>>("base");
  one.template operator()<&gemm_s8<T, true>>("pf");
  one.template operator()<&gemm_s8_kblock<T, true>>("kblockpf");
  one.template operator()<&gemm_s8_packed<T, 1, false, 512>>("packed_k512_pf1");
  one.template operator()<&gemm_s8_packed<T, 0>>("packed_k2048");
  one.template operator()<&gemm_s8_packed<T, 1>>("packed_k2048_pf1");  // the registry row's
  one.template operator()<&gemm_s8_packed<T, 2>>("packed_k2048_pf2");
  one.template operator()<&gemm_s8_packed<T, 1, true>>("packed_k2048_pf1a");
  one.template operator()<&gemm_s8_packed<T, 1, false, kS8KBlock, 128>>("packed_k2048_pf1_m128");
  one.template operator()<&gemm_s8_packed<T, 1, false, kS8KBlock, kS8RowBlock, 256>>("packed_k2048_pf1_n256");
}

/// The int8 schedules above on the tile instructions (gemm_amx__amx.cpp), by name, for bench/gemm_bench.cpp to time
/// side by side on AMX hardware: not registry rows (gemm_s8_s32_32x32__amx runs "packed_k2048_pf1", with its VNNI
/// fallback for few rows). Each has GemmS8Fn's arguments (col_sums unused), needs the amx level and has no fallback;
/// the names end in __amx, which gives them the AMX-INT8 peak in the bench's peak%.
struct S8Schedule {
  const char* name;
  GemmS8Fn fn;
};
std::span<const S8Schedule> s8_schedules();

/// gemm_bf16's two schedules of A (BF16A) on the tile instructions, for bench/gemm_bench.cpp to time side by side on
/// AMX hardware: gemm_bf16w_f32_32x32_<in_place|dense>__amx (fp32 rows holding bf16 values; others are computed on
/// the AVX512-BF16 kernel, as the registry row does) and gemm_bf16w_bf16a_f32_32x32_<in_place|dense>__amx (bf16
/// rows). Not registry rows (those run in_place); each needs the amx level.
struct Bf16Schedule {
  const char* f32_name;
  GemmFloatFn f32;
  const char* bf16a_name;
  GemmBf16AFn bf16a;
};
std::span<const Bf16Schedule> bf16_schedules();

}  // namespace moefuse::gemm::amx
