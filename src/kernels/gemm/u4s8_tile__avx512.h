// The AVX-512 W4A8 GEMM (gemm.h, "int4 group-wise x int8"): exact integer sums per group, then the contract's fp32
// steps; one template for the VNNI kernel (vpdpbusd: gemm_u4s8__avx512vnni.cpp) and the AVX-512BW one (vpmaddubsw
// and vpmaddwd, for AVX-512 CPUs without VNNI: gemm_u4s8__avx512.cpp). Included only by files compiled for AVX-512
// (with VNNI or not); everything is in an unnamed namespace, so the two copies never meet at link time. What follows
// describes the VNNI kernel; the AVX-512BW one differs where `Vnni` is false: odd columns unpacked as q (not 16 q),
// the products summed in int16 lanes per 32 k (kChunkBw, exact) and then widened, one-panel tiles of up to 6 rows.
//
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to an int32 lane: exactly a nibble
// q (0..15, unsigned) times an activation (int8, signed), four k at once, with no saturation (products <= 15·128,
// and a group's sum <= 15·128·G < 2^24 fits an int32 lane).
//
// Unpacking. Four packed rows k .. k+3 of a group block are 64 consecutive bytes: one zmm, row i in 128-bit lane i.
// vpermd (dword i of lane L <- dword L of row i) then vpshufb (a 4 x 4 byte transpose in each lane) leave in dword j
// the four bytes j of rows k .. k+3, k in byte order: the vpdpbusd operand of byte column j. Its low nibbles
// (& 0x0F) are column 2j's four q; its high nibbles, masked in place (& 0xF0), are 16 q of column 2j + 1, whose sums
// are shifted right by 4 once per group (exact: multiples of 16). So the even columns land in one accumulator and
// the odd ones in another: the group's scales and zero points are permuted to that order once per group, and the
// results back once per tile (tile__avx512.h).
//
// Why the zero point is subtracted once per group: Σ (q - z) a = Σ q a - z Σ a. The kernel sums q a with unsigned q
// and subtracts z · Σ a. Σ a (per row and group, shared by every column) is formed once per call for a chunk of rows
// (int4_group_sums.h; one vpdpbusd of ones per 64 bytes) and kept as floats: exact, |Σ a| <= 128 G. The subtraction
// is done in fp32: float(Σ q a) and z · Σ a are integers of magnitude below 2^24 (at most 15 · 128 · G), and so is
// their difference isum_g, so one fnmadd forms float(isum_g) exactly, the contract's value; then
// acc = fma(float(isum_g), s, acc) group by group, and C = acc · a_scale at the end. (The sums used to be formed in
// every tile and subtracted with vpmulld and vpsubd: that epilogue took 30% of the 6 x 64 tile's samples at M = 512,
// G = 128, while its k loop ran at the vpdpbusd bound; see "The per-group epilogue" below.)
//
// Tiles: the group's int32 sums stay in registers, the fp32 chains (2 zmm of 16 lanes per row and panel) in a small
// stack buffer (L1) that each group updates once: a load, an fma and a store per chain every G/4 k steps. That
// leaves the registers to the sums: MR <= 6 rows x two panels (64 columns, 4 sums per row, so one broadcast of a
// row's 4 bytes feeds 4 vpdpbusd; 24 chains) for pairs of panels from M = 11 on, and MR <= 12 rows x one panel (2 per
// row; 24 chains) for fewer rows and for a last odd panel. Unpacking costs the same per vpdpbusd either way (4 ops
// per panel and 4 k: 8 per 24 vpdpbusd); the two-panel tile halves the broadcasts. G = 32 from M = 11 on runs
// one-panel tiles of at most 6 rows with the fp32 chains in registers instead (12 sums + 12 chains): with 8 k steps
// per group, the buffer's round trip and the per-group work weigh more than the tile's width gains (measured below).
// The first row block of each panel (pair) in each chunk of rows prefetches it pf.bytes ahead (the int4 entry of the
// prefetch settings, base/cpu_tuning.h; 4 KB in the generic entry).
//
// Why the empty asm in the k loop: without it GCC 12 copies every int32 sum to another register and back each k step
// (24 vmovdqa per 24 vpdpbusd in the 6 x 64 tile) or keeps a stack copy of them up to date, because each group starts
// them from zero and the per-group epilogue needs them after the loop. Pinning each sum to a register at the end of
// the step removes both: the 6 x 64 k loop is 44 instructions, 24 of them vpdpbusd, no moves and no stack accesses
// (objdump of the release build; the 12 x 32 one: 24 vpdpbusd in 47, the constant of vpshufb read from the stack).
// Tiles of 1-4 rows keep a few copies with or without it (decode, bound by the weights' stream).
//
// Measured on the 2-core Zen 5 (family 26 model 2), one thread, 2048 x 2048, cold weights, GOP/s, gemm_bench
// --benchmark_repetitions=3 --benchmark_min_time=0.3 --benchmark_enable_random_interleaving=true, this build and
// main's (the kernel before: MR <= 6 rows x one panel, sums and fp32 chains in registers, GCC's copies above in its
// k loop) alternating twice, other builds running beside (load 6 on 2 cores): G = 128, M = 1: 108-111 against 108-109;
// M = 8: 546-569 against 424-431; M = 64: 622-679 against 420-438 (the W8A8 gemm_s8_s32_6x64 beside: 642-710); M = 512:
// 590-615 against 388-403 (W8A8: 743-778). G = 32, M = 1: 67-77 against 65-66; M = 8: 311-339 against 283-295; M = 64:
// 371-383 against 396-402; M = 512: 360-366 against 374-377. In a quieter window (load 2-3), G = 128: M = 64 740-767,
// M = 512 728-745.
//
// Prefetch of each block's scales and zero biases (G = 32 and 64; issue 12, 2026-12-04, same machine, load 4.5-7
// from other sessions). Before, the k steps' prefetches covered the rows only, so 4 of every block's lines (a third of
// the stream at G = 32) were left to the hardware. One process, the prefetch switched off and on call by call (a
// temporary switch), 31 alternating pairs, 2048 x 2048 in 512-column calls as the layer makes them, cold weights,
// medians us, off / on (pairs where on was faster): G = 32 M = 1 96.6 / 89.4 (27), 117.9 / 109.8 (24); M = 2 113.8 /
// 95.4 (29), 124.5 / 105.5 (30); M = 4 157.8 / 134.3 (29); M = 8 186.5 / 191.6 (15: level, compute bound); K = 1024
// M = 1 67.8 / 61.8 (28). G = 64: M = 1 84.4 / 82.8 (22), M = 2 77.8 / 77.4 (25), M = 4 92.6 / 90.7 (21). G = 128:
// slower, M = 1 76.2 / 82.1 (4), 75.8 / 83.8 (4), M = 2 67.0 / 71.8 (1), M = 4 82.9 / 91.2 (4), K = 1024 43.5 / 45.7
// (10). The layer (olmoe-1b-7b w4a8, bench/layer_scaling with the same switch forward by forward, 1 and 2 threads,
// fused and chain, 3 rounds, both orders): G = 32 faster in 47 of 48 pairs at T = 1 and 8 (1-20%; the other 4%
// slower), G = 64 in 11 of 12 at T = 1; G = 128 slower in 42 of 48. Hence G <= 64.
//
// The per-group epilogue (issue 12, 2026-12-05, same machine, quiet). perf at M = 512, G = 128 (6 x 64 tile): the
// k loop, 11.6 cycles per 24 vpdpbusd (the instruction's 2 per cycle), held 70% of the tile's samples, the
// per-group epilogue and the tile's setup 30%: per group and row a horizontal Σ a (12 dependent ops), per sum a
// vpmulld and a vpsubd, GCC's spills around them. With Σ a formed once per call and the subtraction one fnmadd (above)
// the k loop holds 78% (the rest: the contract's cvt, fnmadd and fma per sum and group, on the vpdpbusd pipes; timed
// in performance.md, "W4A8 prefill: the per-group epilogue").
//
// Tried and not kept (same machine, paired runs): G = 32's rows on the two-panel tile again after the epilogue above
// (2026-12-05, M = 64 / 512: 0.90-1.02 / 7.8-9.5 ms against 0.83-0.89 / 6.6-7.6 for the 6-row register tile); the
// two-panel tile for M <= 10 too (M = 1, G = 128: 116-132 against
// 131-141 for the one-panel tile); for G = 32 from M = 11 on (loaded machine: M = 64 280-312 against 372-448 for the
// 6-row tile with chains in registers, M = 512 280-300 against 382-397), the 12-row one-panel tile there (M = 64
// 327-372); for G = 64 the 6-row register tile instead of pairs (M = 64 524-537 against 544-584); without the asm pin,
// the same tiles ran at 290-330 GOP/s at M = 64, G = 128 (copies and stores of the sums inside the k loop). Earlier
// (against the kernel before this one, G = 128): a block path for large M that unpacks each panel once per chunk of
// 256 or 512 k into a stack buffer and runs every row block over it (tiles of 6-12 rows carried through C between
// chunks) was not faster (M = 512 at 360-480 GOP/s against 410-590); the unpacking (4 ops per 4 k, off the vpdpbusd
// pipes) is not what bounds these tiles.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "kernels/gemm/int4_group_sums.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

// VNNI: rows of the one-panel tile, of the two-panel tile, M from which pairs of panels take the two-panel tile (see
// the driver), rows of the one-panel tile with its fp32 chains in registers (G = 32).
constexpr int kMaxRows = 12;
constexpr int kMaxRowsPair = 6;
constexpr int kMinRowsPair = 11;
constexpr int kMaxRowsRegs = 6;
// AVX-512BW: each int32 sum has an int16 partner (below), so one-panel tiles of at most 6 rows (24 sums), only.
constexpr int kMaxRowsBw = 6;
// AVX-512BW: k per int16 accumulation. vpmaddubsw adds two products q a (|q a| <= 15 · 128 = 1920) into an int16
// lane: 8 steps of 4 k add 16 products, at most 30720 < 2^15 in magnitude, exact; then vpmaddwd with ones widens
// adjacent lanes into the int32 sum (4 k of one column). The AVX2 kernel's scheme, on zmm.
constexpr int kChunkBw = 32;

struct Consts {
  __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512i ones8 = _mm512_set1_epi8(1);
  // vpermd indices: dword 4L + i <- dword 4i + L; vpshufb indices (per lane): byte 4c + i <- byte 4i + c. The same
  // 4 x 4 transpose, of dwords across lanes and of bytes within one.
  __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512i transpose8 =
      _mm512_maskz_broadcast_i32x4(0xffff, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  __m512 magic = _mm512_castsi512_ps(_mm512_set1_epi32(int(kInt4MagicBits)));  // 2^23, the zero biases' offset
  __m512i ones16 = _mm512_set1_epi16(1);
};

// Σ a[0 .. G) of one row (int8) as int32 in every lane. Without VNNI: vpmaddubsw of ones (int16 lanes of at most
// 2 · 128 per 64 bytes), then vpmaddwd with ones.
template <int G, bool Vnni>
__attribute__((always_inline)) inline __m512i group_sum(const Consts& k, const int8_t* a) {
  __m512i s = _mm512_setzero_si512();
  const auto add = [&](__m512i bytes) __attribute__((always_inline)) {
    if constexpr (Vnni) s = _mm512_dpbusd_epi32(s, k.ones8, bytes);
    else s = _mm512_maskz_add_epi16(~__mmask32(0), s, _mm512_maskz_maddubs_epi16(~__mmask32(0), k.ones8, bytes));
  };
  if constexpr (G == 32) {
    add(_mm512_maskz_loadu_epi8(__mmask64(0xffffffffull), a));
  } else {
#pragma GCC unroll 2
    for (int c = 0; c < G / 64; ++c) add(_mm512_loadu_si512(a + 64 * c));
  }
  if constexpr (!Vnni) s = _mm512_maskz_madd_epi16(0xffff, s, k.ones16);
  // Every lane the sum of all 16 (maskz forms, as in tile below; _mm512_reduce_add_epi32 would trip the warning too).
  s = _mm512_add_epi32(s, _mm512_maskz_shuffle_i32x4(0xffff, s, s, 0x4E));
  s = _mm512_add_epi32(s, _mm512_maskz_shuffle_i32x4(0xffff, s, s, 0xB1));
  s = _mm512_add_epi32(s, _mm512_maskz_shuffle_epi32(0xffff, s, _MM_PERM_BADC));
  return _mm512_add_epi32(s, _mm512_maskz_shuffle_epi32(0xffff, s, _MM_PERM_CDAB));
}

// Σ a of each of the `groups` groups of one row (a at its first), as floats (exact: |Σ a| <= 128 G), in out.
template <int G, bool Vnni>
void group_sums(const int8_t* a, int64_t groups, float* out) {
  const Consts k;
  for (int64_t g = 0; g < groups; ++g)
    out[g] = float(_mm512_cvtsi512_si32(group_sum<G, Vnni>(k, a + g * G)));
}

// Rows k .. k+3 of a group block (64 bytes at p) as the vpdpbusd operands of the panel's even columns (q) and odd
// columns (VNNI: 16 q, masked in place; AVX-512BW: q, shifted down, as vpmaddubsw's pairs of 16 q could saturate).
// maskz forms (all lanes set): the plain intrinsics trip a GCC 12 false -Wmaybe-uninitialized (see load_row in
// tile__avx512.h); they compile to the plain instructions.
template <bool Vnni>
__attribute__((always_inline)) inline void unpack4(const Consts& k, const uint8_t* p, __m512i& even, __m512i& odd) {
  __m512i x = _mm512_loadu_si512(p);
  x = _mm512_maskz_shuffle_epi8(~__mmask64(0), _mm512_maskz_permutexvar_epi32(0xffff, k.transpose, x), k.transpose8);
  even = _mm512_maskz_and_epi32(0xffff, x, k.nibble);
  if constexpr (Vnni) odd = _mm512_maskz_andnot_epi32(0xffff, k.nibble, x);
  else odd = _mm512_maskz_and_epi32(0xffff, _mm512_maskz_srli_epi16(~__mmask32(0), x, 4), k.nibble);
}

// MR rows x NP panels (32 NP columns) from the panel at `panel` (the next one panel_bytes on); `width`: valid
// columns; asum: the rows' Σ a per group (row m's group g at asum[m * K / G + g]). The group's int32 sums live in
// registers (2 NP per row); the fp32 chains in facc, a stack buffer in L1 that each group updates once, or with
// RegAcc in registers too (see the header). pf.bytes > 0: prefetch the panels pf.bytes ahead; the first row block of
// a panel does, the others find it in cache. pf.bytes = 0: the prefetch touches the line the step reads (as t0),
// which spares the k loop a branch.
template <int G, int MR, int NP, bool RegAcc, bool Vnni>
void tile(int64_t K, const int8_t* a, int64_t lda, const float* a_scale, const float* asum, std::byte* panel,
          size_t panel_bytes, float* c, int64_t ldc, int width, Prefetch pf) {
  constexpr int NV = 2 * NP;
  const Consts k;
  const int64_t groups = K / G;
  alignas(64) float facc[RegAcc ? 1 : MR][NV][16];  // per panel: the even columns' chains, then the odd ones'
  [[maybe_unused]] __m512 racc[RegAcc ? MR : 1][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if constexpr (RegAcc) racc[m][v] = _mm512_setzero_ps();
      else _mm512_store_ps(facc[m][v], _mm512_setzero_ps());  // stores, not memset's rep stos: 1% of the tile
    }
  const auto update = [&](int m, int v, __m512 x, __m512 sc) __attribute__((always_inline)) {
    if constexpr (RegAcc) racc[m][v] = _mm512_fmadd_ps(x, sc, racc[m][v]);
    else _mm512_store_ps(facc[m][v], _mm512_fmadd_ps(x, sc, _mm512_load_ps(facc[m][v])));
  };
  const auto chain = [&](int m, int v) __attribute__((always_inline)) {
    if constexpr (RegAcc) return racc[m][v];
    else return _mm512_load_ps(facc[m][v]);
  };
  for (int64_t g = 0; g < K / G; ++g) {
    Int4Block blk[NP];
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) blk[p] = int4_block(panel + p * panel_bytes, G, g);
    // The k steps below prefetch the rows, one line per 4 k (G / 4 per group), while the stream moves on by the whole
    // block, 4 lines more (its scales and zero biases): 4 of every block's lines were never asked for. These are
    // the block's own 4 lines pf.bytes on, which fills that gap. G = 32 and 64 only (33% and 20% of the stream):
    // at G = 128 (11%) it was slower, per kernel and in the layer (header).
    if constexpr (G <= 64) {
      const size_t skip = next_tile_skip(g * int64_t(int4_block_bytes(G)), int64_t(panel_bytes), NP, panel_bytes, pf);
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l) prefetch_ahead(reinterpret_cast<const std::byte*>(blk[p].scale) + skip + 64 * l, pf);
    }
    const int8_t* ag = a + g * G;
    __m512i acc[MR][NV];  // per panel: Σ q a (even columns), Σ 16 q a (odd columns; AVX-512BW: Σ q a)
    [[maybe_unused]] __m512i acc16[Vnni ? 1 : MR][NV];  // AVX-512BW: the int16 sums of the current 32 k
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        acc[m][v] = _mm512_setzero_si512();
        if constexpr (!Vnni) acc16[m][v] = _mm512_setzero_si512();
      }
    for (int r = 0; r < G; r += 4) {
      __m512i w[NV];
      // past the panel's end: the next tile's (cpu_tuning.h)
      const int64_t off = g * int64_t(int4_block_bytes(G)) + 2 * kGemmNR * int64_t(sizeof(float)) + r * kInt4RowBytes;
      const size_t skip = next_tile_skip(off, int64_t(panel_bytes), NP, panel_bytes, pf);
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) {
        // the line this step reads, pf bytes on (pf = 0: that line itself, which spares the k loop a branch)
        prefetch_ahead(blk[p].rows + r * kInt4RowBytes + skip, pf);
        unpack4<Vnni>(k, blk[p].rows + r * kInt4RowBytes, w[2 * p], w[2 * p + 1]);
      }
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        int32_t a4;
        std::memcpy(&a4, ag + m * lda + r, 4);
        const __m512i av = _mm512_set1_epi32(a4);
        if constexpr (Vnni) {
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], w[v], av);
        } else {
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v)
            acc16[m][v] = _mm512_maskz_add_epi16(~__mmask32(0), acc16[m][v],
                                                 _mm512_maskz_maddubs_epi16(~__mmask32(0), w[v], av));
        }
      }
      if constexpr (!Vnni) {
        if (r % kChunkBw == kChunkBw - 4) {  // the chunk's last step: its int16 sums into the int32 ones
#pragma GCC unroll 16
          for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) {
              acc[m][v] = _mm512_add_epi32(acc[m][v], _mm512_maskz_madd_epi16(0xffff, acc16[m][v], k.ones16));
              acc16[m][v] = _mm512_setzero_si512();
            }
        }
      }
      // Each sum in a register here (see the header: GCC's copies otherwise); emits nothing.
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) asm("" : "+v"(acc[m][v]));
    }
    // float(isum_g) = fnmadd(z, Σ a, float(Σ q a)), exact (header), then acc = fma(float(isum_g), s, acc): in
    // even/odd column order, panel by panel (its scales and zero points in 4 registers beside the 24 sums).
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      __m512 se, so, ze, zo;
      columns_to_even_odd(blk[p].scale, se, so);
      columns_to_even_odd(blk[p].zero_bias, ze, zo);
      ze = _mm512_sub_ps(ze, k.magic);  // 2^23 + z less 2^23: z, exactly
      zo = _mm512_sub_ps(zo, k.magic);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const __m512 sa = _mm512_set1_ps(asum[m * groups + g]);
        const __m512i odd = Vnni ? _mm512_maskz_srai_epi32(0xffff, acc[m][2 * p + 1], 4) : acc[m][2 * p + 1];
        update(m, 2 * p, _mm512_fnmadd_ps(ze, sa, _mm512_maskz_cvtepi32_ps(0xffff, acc[m][2 * p])), se);
        update(m, 2 * p + 1, _mm512_fnmadd_ps(zo, sa, _mm512_maskz_cvtepi32_ps(0xffff, odd)), so);
      }
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    const __m512 rs = _mm512_set1_ps(a_scale[m]);
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      __m512 lo = _mm512_mul_ps(chain(m, 2 * p), rs);
      __m512 hi = _mm512_mul_ps(chain(m, 2 * p + 1), rs);
      even_odd_to_columns(lo, hi);
      _mm512_mask_storeu_ps(c + m * ldc + 32 * p, column_mask(width, 2 * p), lo);
      _mm512_mask_storeu_ps(c + m * ldc + 32 * p + 16, column_mask(width, 2 * p + 1), hi);
    }
  }
}

using TileFn = void (*)(int64_t, const int8_t*, int64_t, const float*, const float*, std::byte*, size_t, float*,
                        int64_t, int, Prefetch);

template <int G, int NP, bool RegAcc, bool Vnni, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1, NP, RegAcc, Vnni>...};
}

template <int G, bool Vnni>
void gemm_u4s8_avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0) return;
  auto* b = static_cast<std::byte*>(const_cast<void*>(b_data));
  const int64_t groups = K / G;
  const size_t panel_bytes = size_t(groups) * int4_block_bytes(G);
  const Prefetch pf = prefetch_for(PrefetchStream::int4, M);
  // The rows m_first .. m_first + m_rows of one chunk of Σ a (sa: theirs, int4_group_sums.h), every panel. Each
  // chunk streams the weights again: its first row block prefetches them.
  const auto tiles = [&](int64_t m_first, int64_t m_rows, const float* sa) {
    int64_t p0 = n0;
    // Runs tiles of np panels (rows in balanced blocks of at most max_rows) from panel p0 on while np panels start
    // below n1 (the last of them holding at least one column); leaves p0 at the first panel not done.
    const auto sweep = [&](const auto& fns, int np, int64_t max_rows) {
      for (; p0 + (np - 1) * kGemmNR < n1; p0 += np * kGemmNR) {
        std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
        const int width = int(std::min<int64_t>(np * kGemmNR, n1 - p0));
        for_row_blocks(m_rows, max_rows, [&](int64_t r0, int64_t rows) {
          const int64_t m0 = m_first + r0;
          fns[rows - 1](K, a + m0 * lda, lda, a_scale + m0, sa + r0 * groups, panel, panel_bytes,
                        c + m0 * ldc + (p0 - n0), ldc, width, r0 == 0 ? pf : Prefetch{});
        });
      }
    };
    if constexpr (!Vnni) {  // AVX-512BW: one-panel tiles of up to 6 rows (kMaxRowsBw)
      static constexpr auto tiles_bw = make_tiles<G, 1, false, false>(std::make_integer_sequence<int, kMaxRowsBw>{});
      sweep(tiles_bw, 1, kMaxRowsBw);
      return;
    }
    // From 11 rows on: G >= 64, pairs of panels in two-panel tiles of at most 6 rows; G = 32, every panel in
    // one-panel tiles of at most 6 rows with the fp32 chains in registers. Fewer rows (decode: one pass, one panel
    // stream) and a last odd panel: one-panel tiles of up to 12 rows (see the header).
    if (m_rows >= kMinRowsPair) {
      if constexpr (G == 32) {
        static constexpr auto tiles_r = make_tiles<G, 1, true, true>(std::make_integer_sequence<int, kMaxRowsRegs>{});
        sweep(tiles_r, 1, kMaxRowsRegs);
      } else {
        static constexpr auto tiles2 = make_tiles<G, 2, false, true>(std::make_integer_sequence<int, kMaxRowsPair>{});
        sweep(tiles2, 2, kMaxRowsPair);
      }
    }
    static constexpr auto tiles1 = make_tiles<G, 1, false, true>(std::make_integer_sequence<int, kMaxRows>{});
    sweep(tiles1, 1, kMaxRows);
  };
  for_int4_sum_chunks(M, K, G, a, lda, &group_sums<G, Vnni>, tiles);
}

}  // namespace
}  // namespace moefuse::gemm::detail

// The registry's entry points of one kernel file (variants.h's W4A8 signature), one per group size: `vnni` chooses
// the template's instructions.
#define MOEFUSE_GEMM_U4S8_AVX512_DEFINE(G, tile, isa, vnni) \
  MOEFUSE_GEMM_U4S8_SIGNATURE(G, tile, isa) { gemm_u4s8_avx512<G, vnni>(M, K, n0, n1, a, lda, a_scale, b, c, ldc); }
