// The AMX-INT8 W4A8 driver (gemm.h, "int4 group-wise x int8"), written over amx_gemm.h's tile-operations policy `T`
// so that it runs on the tile instructions (gemm_amx__amx.cpp) and, in the tests, on a scalar model of the tiles
// (tests/util/amx_tile_model.h), which checks it bit for bit on a machine without AMX.
//
// Weights. TDPBSSD multiplies signed bytes by signed bytes, so the weights enter the tiles as q - z (-15 .. 15), not
// as the nibbles: each product is then the contract's (q - z) · a and the tile's int32 sum is isum_g itself, exact
// (|isum_g| < 2^24), with no Σ a correction (the VNNI kernel's unsigned nibbles need one). A B tile row is 16
// columns x 4 consecutive k, so each panel is unpacked per block of up to kU4S8KBlock k into a buffer of quad rows
// (128 bytes: the 32 columns' 4 bytes, the int8 panel layout of gemm.h), reused by every 32-row block of A. The
// policy may unpack with vector instructions (T::unpack_quads); without it, detail::unpack_quads below (the same for
// the fold below: T::fold, else detail::fold).
//
// Groups. The group's sums must stay apart from the next group's (each has its own scale), so each group starts
// from zeroed C tiles: G = 64 and 128 run 1 or 2 full steps (A tiles of 64 k, B tiles of 16 quad rows, amx_gemm.h's
// configuration), G = 32 a half step (A tiles of 16 rows x 32 bytes, B tiles of 8 quad rows: its own configuration,
// u4s8_tile_config). The group's four C tiles are then stored as int32 and folded into the fp32 chains in the
// contract's order, acc = fma(float(isum_g), s[g, n], acc), one group behind the tiles: group g's products are
// issued before group g - 1's fold, so the fold's vector work overlaps the tile products instead of waiting on them.
//
// The fp32 chains of a 32 x 32 block live in a stack buffer for one k block and are carried from one k block to the
// next through C itself (stored and reloaded as fp32: exact), so the result does not depend on the block size; the
// row scale is applied once, after the last group (C = acc · a_scale[m]). k blocks are the outer loop, as in
// amx_gemm.h's bf16 driver; a last row block of fewer than 32 rows is staged once per k block, zero-padded, and the
// next re-layout's weights are prefetched over the first row block's groups.
//
// A. Two schedules, the same tiles and sums (so the same bits): U4S8A::in_place loads A's tiles from the rows
// themselves (lda apart; the last block of fewer than 32 rows staged, zero-padded, once per k block), U4S8A::dense
// copies the k block of every row once into a scratch buffer laid out [32-row block][step][32 rows][step bytes]
// (zero rows past M), so that each tile load reads 1 KB (512 B at G = 32) of consecutive bytes. Why: the int8 driver
// on a Sapphire Rapids lost most of its time to A's tiles read in place (16 rows lda = 2048 bytes apart fall into
// two of L1's 64 sets; amx_gemm.h, "int8 schedules"), and the dense copy was its largest gain. The buffer is M x 512
// bytes (1 MB at 2048 rows), from the thread's scratch stack (base/scratch.h), not the stack.
//
// Edges. K is a multiple of G (so of every step); a panel cut at n1 computes its padded columns in the buffers but
// writes only n < n1; nothing outside gemm.h's memory rules is read or written.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "base/scratch.h"
#include "kernels/gemm/amx_gemm.h"
#include "kernels/gemm/int4_layout.h"

namespace moefuse::gemm::amx {

inline constexpr int64_t kU4S8KBlock = 512;  // k per unpacked block: 128 quad rows of 128 bytes (16 KB)
inline constexpr int kQuadBytes = 4 * kGemmNR;  // one quad row: 32 columns x 4 k

/// Where the W4A8 driver's tiles read A from (above, "A").
enum class U4S8A { in_place, dense };

/// The tile configuration of a W4A8 step of group size G: amx_gemm.h's (every tile 16 x 64 bytes) for G >= 64; for
/// G = 32 A tiles (4, 5) of 16 rows x 32 bytes and B tiles (6, 7) of 8 quad rows, so that one product covers 32 k.
constexpr TileConfig u4s8_tile_config(int G) {
  TileConfig config{};
  if (G == 32) {
    config.colsb[4] = config.colsb[5] = 32;
    config.rows[6] = config.rows[7] = 8;
  }
  return config;
}

namespace detail {

// `quads` quad rows from 4 `quads` rows of a group block (16 bytes each, at rows): byte 4 j + i of quad row r is
// q(4 r + i, j) - z[j], j < 32.
inline void unpack_quads(const uint8_t* rows, const int8_t* z, int quads, int8_t* out) {
  for (int r = 0; r < quads; ++r)
    for (int j = 0; j < kGemmNR; ++j)
      for (int i = 0; i < 4; ++i) {
        const uint8_t byte = rows[(4 * r + i) * kInt4RowBytes + j / 2];
        out[r * kQuadBytes + 4 * j + i] = int8_t(((byte >> (4 * (j % 2))) & 0xF) - z[j]);
      }
}

// One group's C tiles (int32, tile 2 h + i holding rows 16 h .. 16 h + 15 and columns 16 i .. 16 i + 15) into the
// fp32 chains of `halves` 16-row halves: acc = fma(float(isum), s[n], acc), the contract's step.
inline void fold(const int32_t (*tiles)[kTileRows * 16], int halves, const float* s, float (*acc)[kGemmNR]) {
  for (int h = 0; h < halves; ++h)
    for (int r = 0; r < kTileRows; ++r)
      for (int j = 0; j < kGemmNR; ++j)
        acc[16 * h + r][j] = std::fma(float(tiles[2 * h + j / 16][r * 16 + j % 16]), s[j], acc[16 * h + r][j]);
}

}  // namespace detail

/// int4 group-wise weights x int8 rows -> fp32 on TDPBSSD (gemm.h's W4A8 contract, bitwise). Arguments as
/// GemmU4S8Fn's; `b` is the packed int4 data of group size G; K < 65536. `Source`: where the tiles read A (above).
template <class T, int G, U4S8A Source = U4S8A::in_place>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b, float* c, int64_t ldc) {
  static_assert(G == 32 || G == 64 || G == 128);
  static_assert(kU4S8KBlock % G == 0);
  constexpr int kStepK = G == 32 ? 32 : 64;  // k per tile product
  constexpr int kBlockRows = 2 * kTileRows;
  constexpr int64_t kGroupsPerBlock = kU4S8KBlock / G;
  if (M <= 0 || n0 >= n1) return;
  if (K == 0) {  // no group: C is +0 times the row scale
    for (int64_t m = 0; m < M; ++m) std::fill(c + m * ldc, c + m * ldc + (n1 - n0), 0.0f * a_scale[m]);
    return;
  }
  alignas(64) int8_t quads[kU4S8KBlock / 4 * kQuadBytes];    // the panel's k block, unpacked
  constexpr bool kDense = Source == U4S8A::dense;
  constexpr int64_t kSteps = kU4S8KBlock / kStepK;              // steps per k block (the dense copy's stride)
  alignas(64) int8_t tail[kDense ? 1 : kBlockRows * kU4S8KBlock];  // in place: the last row block's A, [32][512]
  alignas(64) int32_t isum[2][4][kTileRows * 16];             // two groups' C tiles (one folding, one in the tiles)
  alignas(64) float acc[kBlockRows][kGemmNR];                 // the block's fp32 chains
  alignas(64) int8_t zero[kGroupsPerBlock][kGemmNR];          // the k block's zero points, per group
  const size_t block_bytes = int4_block_bytes(G);
  const size_t panel_bytes = size_t(K / G) * block_bytes;
  const auto* bytes = static_cast<const std::byte*>(b);
  const int64_t tail_m0 = M / kBlockRows * kBlockRows;  // the first row of a block of fewer than 32 rows (M if none)
  const int tail_rows = int(M - tail_m0);
  const int64_t row_blocks = (M + kBlockRows - 1) / kBlockRows;
  Scratch<int8_t> dense(kDense ? row_blocks * kBlockRows * kU4S8KBlock : 0);
  // The dense copy's tile of rows [16 h, 16 h + 16) of row block mb at step st: 16 rows kStepK bytes apart.
  const auto dense_tile = [&](int64_t mb, int64_t st, int h) {
    return dense.data() + ((mb * kSteps + st) * kBlockRows + h * kTileRows) * kStepK;
  };
  static const TileConfig config = u4s8_tile_config(G);
  T::configure(config);
  for (int64_t kb = 0; kb < K; kb += kU4S8KBlock) {
    const int64_t kc = std::min<int64_t>(kU4S8KBlock, K - kb);
    const int64_t g0 = kb / G, ng = kc / G;  // the block's groups
    const bool last_kb = kb + kc == K;
    if constexpr (kDense) {
      for (int64_t m = 0; m < row_blocks * kBlockRows; ++m)
        for (int64_t st = 0; st < kc / kStepK; ++st) {
          int8_t* dst = dense_tile(m / kBlockRows, st, 0) + (m % kBlockRows) * kStepK;
          if (m < M) std::memcpy(dst, a + m * lda + kb + st * kStepK, size_t(kStepK));
          else std::memset(dst, 0, size_t(kStepK));
        }
    } else if (tail_rows > 0) {  // the short row block's A, staged once for every panel (amx_gemm.h's bf16 driver)
      std::memset(tail, 0, size_t(tail_rows <= kTileRows ? kTileRows : kBlockRows) * kU4S8KBlock);
      for (int r = 0; r < tail_rows; ++r) std::memcpy(tail + r * kU4S8KBlock, a + (tail_m0 + r) * lda + kb, size_t(kc));
    }
    for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
      auto* panel = const_cast<std::byte*>(bytes + size_t(p0 / kGemmNR) * panel_bytes);
      const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
      for (int64_t g = 0; g < ng; ++g) {
        const Int4Block blk = int4_block(panel, G, g0 + g);
        for (int j = 0; j < kGemmNR; ++j) zero[g][j] = int8_t(blk.zero_bias[j] - kInt4Magic);  // exact: 0 .. 15
        int8_t* out = quads + g * (G / 4) * kQuadBytes;
        if constexpr (requires { T::unpack_quads(blk.rows, zero[g], G / 4, out); })
          T::unpack_quads(blk.rows, zero[g], G / 4, out);
        else
          detail::unpack_quads(blk.rows, zero[g], G / 4, out);
      }
      // The weights the next re-layout reads (this k block of the next panel, else the next k block of the first),
      // prefetched over the first row block's groups: the tiles read only the buffer meanwhile.
      const char* next = nullptr;
      int64_t next_bytes = 0;
      if (p0 + kGemmNR < n1) {
        next = reinterpret_cast<const char*>(panel + panel_bytes + size_t(g0) * block_bytes);
        next_bytes = ng * int64_t(block_bytes);
      } else if (!last_kb) {
        next = reinterpret_cast<const char*>(bytes + size_t(n0 / kGemmNR) * panel_bytes +
                                             size_t(g0 + ng) * block_bytes);
        next_bytes = std::min<int64_t>(kGroupsPerBlock, K / G - g0 - ng) * int64_t(block_bytes);
      }
      const int64_t lines_per_group = (next_bytes / 64 + ng - 1) / ng;
      for (int64_t m0 = 0; m0 < M; m0 += kBlockRows) {
        const int rows0 = int(std::min<int64_t>(kTileRows, M - m0));
        const int rows1 = int(std::clamp<int64_t>(M - m0 - kTileRows, 0, kTileRows));
        const int halves = rows1 > 0 ? 2 : 1;
        const bool staged = m0 == tail_m0;
        float* cblk = c + m0 * ldc + (p0 - n0);
        if (kb == 0) {
          std::memset(acc, 0, sizeof(acc));
        } else {
          for (int r = 0; r < rows0 + rows1; ++r) std::memcpy(acc[r], cblk + r * ldc, size_t(width) * sizeof(float));
        }
        // Group g's int32 tiles into the chains (contract order: one fma per group, groups ascending).
        const auto fold = [&](int64_t g) {
          const float* s = int4_block(panel, G, g0 + g).scale;
          if constexpr (requires { T::fold(isum[g % 2], halves, s, acc); }) T::fold(isum[g % 2], halves, s, acc);
          else detail::fold(isum[g % 2], halves, s, acc);
        };
        for (int64_t g = 0; g < ng; ++g) {
          detail::zero_c<T>();
          for (int st = 0; st < G / kStepK; ++st) {
            const int64_t k0 = g * G + st * kStepK;  // within the k block
            const int8_t* bk = quads + (k0 / 4) * kQuadBytes;
            if constexpr (kDense) T::template load<4>(dense_tile(m0 / kBlockRows, k0 / kStepK, 0), kStepK);
            else if (staged) T::template load<4>(tail + k0, kU4S8KBlock);
            else T::template load<4>(a + m0 * lda + kb + k0, lda);
            T::template load<6>(bk, kQuadBytes);
            T::template load<7>(bk + 64, kQuadBytes);
            T::template dp_s8<0, 4, 6>();
            T::template dp_s8<1, 4, 7>();
            if (rows1 > 0) {
              if constexpr (kDense) T::template load<5>(dense_tile(m0 / kBlockRows, k0 / kStepK, 1), kStepK);
              else if (staged) T::template load<5>(tail + kTileRows * kU4S8KBlock + k0, kU4S8KBlock);
              else T::template load<5>(a + (m0 + kTileRows) * lda + kb + k0, lda);
              T::template dp_s8<2, 5, 6>();
              T::template dp_s8<3, 5, 7>();
            }
          }
          if (m0 == 0 && next)
            for (int64_t l = g * lines_per_group, e = std::min(l + lines_per_group, next_bytes / 64); l < e; ++l)
              __builtin_prefetch(next + l * 64, 0, 3);
          T::template store<0>(isum[g % 2][0], kTileBytes);
          T::template store<1>(isum[g % 2][1], kTileBytes);
          if (rows1 > 0) {
            T::template store<2>(isum[g % 2][2], kTileBytes);
            T::template store<3>(isum[g % 2][3], kTileBytes);
          }
          if (g > 0) fold(g - 1);
        }
        fold(ng - 1);
        if (last_kb) {
          for (int r = 0; r < rows0 + rows1; ++r) {
            const float sc = a_scale[m0 + r];
            for (int j = 0; j < width; ++j) cblk[r * ldc + j] = acc[r][j] * sc;
          }
        } else {
          for (int r = 0; r < rows0 + rows1; ++r) std::memcpy(cblk + r * ldc, acc[r], size_t(width) * sizeof(float));
        }
      }
    }
  }
  T::release();
}

/// The W4A8 driver's two schedules on the tile instructions (gemm_amx__amx.cpp), by name, for bench/gemm_bench.cpp to
/// time side by side on AMX hardware: gemm_u4g<G>w_s8_f32_32x32_<in_place|dense>__amx for G = 32, 64 and 128. Not
/// registry rows (gemm_u4g<G>w_s8_f32_32x32__amx runs in_place, with the VNNI kernel below kAmxInt8MinRows rows);
/// each has GemmU4S8Fn's arguments, needs the amx level and has no fallback.
struct U4S8Schedule {
  const char* name;
  int G;
  GemmU4S8Fn fn;
};
std::span<const U4S8Schedule> u4s8_schedules();

}  // namespace moefuse::gemm::amx
