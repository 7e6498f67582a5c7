// AVX512-BF16 int4 group-wise GEMM (W4A16; gemm.h, "int4 group-wise"; compiled with AVX-512 F/BW/VL/DQ + BF16 and
// only called when the CPU has them and the vdpbf16ps self-test passed, kernels::avx512_bf16_dot). Bitwise the scalar
// variant: the contract's group sums are vdpbf16ps's own arithmetic.
//
// Per group g, row m and column n the contract needs sq = Σ a q in pairs of k (odd first, fma_daz_ftz per product)
// and sa = Σ a in the same pairs; then acc = fma(s, fma(-z, sa, sq), acc).
//   sq: one vdpbf16ps per pair of k per 16 columns: A's pair (bf16(A[m, k]), bf16(A[m, k + 1])) broadcast (A must
//     be bf16 values, see below), the weights' pair (bf16(q[k, n]), bf16(q[k + 1, n])) in each dword. Those pairs
//     come from the two packed rows k, k + 1 (32 consecutive bytes) in 5 instructions per 64 weights: vpmovzxbw
//     (word i = byte i: words 0..15 row k, 16..31 row k + 1), vpermw interleaving them (word 2j = row k's byte j,
//     2j + 1 = row k + 1's), then vpermw with that as the index into the table bf16(i & 15) (vpermw reads the low 5
//     bits of each index word: the low nibble, and bit 4, which the table ignores) gives the even columns' pairs,
//     and vpsrlw 4 + vpermw the odd columns' (the high nibble). On a CPU with AVX512-VBMI (int4_vbmi.h) one vpermb
//     of the 32 loaded bytes does the first two (4 shuffles per 64 weights: the same words' low bytes, so the same
//     bits). The accumulators therefore hold the panel's columns in even/odd order (tile__avx512.h:
//     columns_to_even_odd for each group's scales and zeros, even_odd_to_columns once at the store).
//   sa: shared by every column, so computed once per call for every row and group, as fp32 adds (group_sums in
//     int4_sums__avx512.h, shared with the AVX-512 FMA kernel: fma(a, 1, sa) is the exact a + sa rounded once, which
//     an add computes; under DAZ|FTZ it is fma_daz_ftz).
//   acc: per group, vfnmadd (fma(-z, sa, sq), one rounding) and vfmadd; they run under DenormalsAreZero (MXCSR
//     DAZ|FTZ, the caller's MXCSR restored after); vdpbf16ps flushes by itself. The accumulators across groups live
//     in a small buffer (one load and store per group per 16 columns beside G / 2 vdpbf16ps), the sums in registers.
//
// Tiles: MR rows x NP panels, 2 NP vdpbf16ps chains per row: up to 4 x 2, up to 12 x 1 (24 chains; the 5 unpacking
// instructions shared by 12 rows). Each panel's stream is prefetched pf.bytes ahead (int4 setting), as the AVX-512 int4
// kernel does. A is read as bf16 pairs through a double buffer 32 k at a time (tile__avx512bf16.h, fill_pairs).
//
// A must be bf16 values (the pairs take each value's high half). group_sums sees every value of a run of rows before
// that run's tiles read them (int4_group_sums.h cuts M into runs): when a value is not a bf16 value the call runs
// the AVX-512 FMA kernel (gemm_u4g<G>w_f32_12x32__avx512, the same contract: the result never depends on which ran).
// bf16 models' activations always are bf16 values.
//
// Measured on the 2-core Zen 5 VM (AMD EPYC family 26 model 2), one thread, gemm_bench 2048 x 2048 (cold weights),
// --benchmark_repetitions=3 --benchmark_min_time=0.3, medians of CPU time, every row in one run, two runs (busy
// minutes: load average 5-7 from other builds; memory/stream_read_256MB 29.9 and 32.3 GB/s). This kernel, G = 128 /
// G = 32: M = 1 93-94 / 118-132 us (25.2-25.5 / 24.0-26.8 GB/s of packed weights, 0.79-0.89 of the stream read; the
// bf16 vdpbf16ps row read 28.2-29.7), M = 8 233-235 / 202-220 us, M = 64 265-291 / 254-267 GFLOP/s, M = 512 239-254
// / 246-247. The AVX-512 FMA int4 kernel (the old contract, the same work) in the same runs: M = 1 128-130 / 149-183
// us, M = 8 371-377 / 368-464 us, M = 64 174-175 / 149-198 GFLOP/s, M = 512 160-170 / 149-160. From L2 (K = 256) one
// row runs at about 41 GB/s: decode is about as much the unpacking as the memory. Tried and not kept: 4 panels for a
// lone row (8 chains but 4 streams: 10-20% slower), 8 panels (spills), a 64-byte load per 2 pairs with vpsrlvw
// instead of vpmovzxbw (the same speed), prefetching 1, 2 or 8 KB ahead (4 KB was best or equal), into L2 (slower).
// A layer (moefuse bench --preset olmoe-1b-7b --quant w4a16, 512 tokens, 2 threads, alternating with
// MOEFUSE_MAX_ISA=avx512 in the same busy minutes): chain 343-398 ms against 674-687, superkernel 361-412 against
// 541-722; decode was too noisy there to tell (medians 1.2-7 ms for 1 token, both levels).
//
// Decode (1-4 rows, issue 12; the same VM, 2026-12-03, one thread, 2048 x 2048, cold weights). Where the time goes
// (objdump of the tiles, instruction probes written for it, weights hot in L3 against cold): the k loop has no spills;
// per 64 weights it runs 5 shuffles (vpmovzxbw, 3 vpermw, vpsrlw: 2 per cycle, on pipes vdpbf16ps partly shares)
// and MR x 2 vdpbf16ps (latency 6 cycles, 2 per cycle). One row (2 panels, 4 chains) runs 55-62 us with the weights
// in L3 against 80-100 cold: its bound from the shuffles and the chains' latency is close to the stream's (~65-75
// us), and cold it loses the overlap. Four rows: 100-110 us hot, 120-140 cold (8 vdpbf16ps + 5 shuffles per 64
// weights on 3 pipes). Kept: vpermb where the CPU has VBMI (4 shuffles). Paired with the build before, 3 rounds
// (gemm_bench --benchmark_filter='stream|u4g(32|128)w_f32_12x32__avx512bf16/.*M:[12348]$'
// --benchmark_min_time=0.2, load 3-5 from other builds), medians of the rounds, before / after, us: G = 128: M = 1
// 96 / 97, M = 2 102 / 101, M = 3 118 / 112, M = 4 133 / 125, M = 8 234 / 235; G = 32: M = 1 140 / 143, M = 2 147 /
// 147, M = 3 151 / 150, M = 4 166 / 159, M = 8 256 / 248 (stream read 30-31 GB/s: 2.36 MB of G = 128 weights in
// about 75 us, 3.15 MB of G = 32 in 100); a second such run: G = 128 M = 1 92 / 99, M = 2 100 / 98, M = 3 116 / 112,
// M = 4 131 / 124, M = 8 222 / 227; G = 32 140 / 138, 135 / 139, 144 / 154, 163 / 155, 255 / 238: only M = 4 gained
// (5-7%) in both, the rest is the VM's noise. Tried and not kept: two or four groups in flight for 1-4 rows (each
// group's own sq chains, applied in group order: 8-16 chains; with the weights in L3 one row 55 against 57 us, but
// cold 10-60% slower: two or four blocks of each panel read at once); one panel for decode (one stream, as the W4A8
// kernel; 2 chains a row: slower); the block's prefetches spread over the 16 k steps instead of a burst (no
// difference above the noise); a masked 64-byte load feeding vpermb (0-10% slower than the build before in its paired
// run, likely as half of those loads span two cache lines; the 32-byte load is not).
// Tried and not kept (issue 12, the same VM, 2026-12-03, load 2-3 from other builds): the weight fed to vdpbf16ps as
// bf16 128 + q (bits 0x4300 | q: vpermb, vpsrlw 4 and two vpternlogd per 64 weights, no table lookup; the zero term
// fma(-(128 + z), sa, sq)), a contract change. Paired with main, alternating, the same gemm_bench command with
// --benchmark_min_time=0.3, before / after, us: G = 128 M = 1 85 / 97, 92 / 92, 91 / 93, 137 / 97, 100 / 81, 89 / 84,
// and in 8 more rounds of M = 1 alone medians 92 / 93 (G = 32 125 / 118); M = 4 G = 128 112 / 98, 138 / 134, 123 /
// 120. With the weights in L2 (2048 x 512, one thread): M = 1 52 / 52, M = 2 57 / 57, M = 4 85 / 79. One row is
// bound by its chains, not the unpack: a lone vdpbf16ps chain takes 1.63 ns a step here, and the 4-chain tile's
// 32768 steps (2048 x 2048) are 53 us, the hot time. The layer (layer_scaling --quant w4a16 --tokens 1 --rounds 3
// --forwards 40 --threads 2, alternating, medians of the rounds, ms): chain 0.84 / 0.94, 0.97 / 0.87, 0.80 / 0.81,
// superkernel 0.77 / 0.87, 0.89 / 0.80, 0.75 / 0.75. With it, 4 panels for a lone row (8 chains): hot 46 us, cold
// medians of 8 rounds G = 128 85 against 92, G = 32 130 against 125; the layer no faster in 3 alternating rounds.
// Prefetch across tiles (2026-12-03 23:00 UTC): a prefetch past a panel's end went into the tile's own second panel,
// so every tile's second panel began with 4 KB on demand (11% of a 36 KB panel); now it goes to the next tile's
// (base/cpu_tuning.h, next_tile_skip). The layer, one thread (layer_scaling --quant w4a16 --tokens 1 --threads 1,
// alternating with the build before, 3 rounds): 1.41-1.54 -> 1.17-1.30 ms, 0.55-0.68 -> 0.73-0.78 of the probe.
// Tried and not kept (2026-12-04, docs/performance.md "W4A16 decode: groups interleaved in one stream"): a packed
// layout interleaving 2 or 4 consecutive groups' row pairs every 32 bytes, so that one stream per panel feeds 4 or 8
// chains (bitwise the same results). One row at G = 128 gained only what a longer prefetch gives today's layout
// (8 KB: 64-65 us either way against 81 at 4 KB), G = 32 and 2-4 rows were slower, and 8 chains from one stream were
// slower than 4; the A pairs of a set must be filled before its k loop (a 32-k buffer read right after its store
// stalls on forwarding).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/int4_group_sums.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/int4_vbmi.h"
#include "kernels/gemm/int4_sums__avx512.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/tile__avx512bf16.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

// Word i: bf16(i & 15) (the table vpermw indexes with a weight byte's low 5 bits).
constexpr std::array<uint16_t, 32> kBf16Nibbles = [] {
  std::array<uint16_t, 32> t{};
  for (int i = 0; i < 32; ++i) t[size_t(i)] = uint16_t(std::bit_cast<uint32_t>(float(i & 15)) >> 16);
  return t;
}();
// Word 2j: j (row k's byte j), word 2j + 1: 16 + j (row k + 1's byte j).
constexpr std::array<uint16_t, 32> kInterleave = [] {
  std::array<uint16_t, 32> t{};
  for (int j = 0; j < 16; ++j) t[size_t(2 * j)] = uint16_t(j), t[size_t(2 * j + 1)] = uint16_t(16 + j);
  return t;
}();

// The same interleave in bytes, for vpermb straight from the 32 loaded bytes: word 2j is row k's byte j (bytes 4j,
// 4j + 1), word 2j + 1 row k + 1's (byte 16 + j; bytes 4j + 2, 4j + 3): each word's high byte a copy of its low one,
// which the table lookups below ignore (the low nibble: bits 0..3, bit 4 ignored; the high one after vpsrlw 4: the
// low byte's bits 4..7, then bit 0 of the high byte, ignored).
constexpr std::array<uint8_t, 64> kInterleaveBytes = [] {
  std::array<uint8_t, 64> t{};
  for (int j = 0; j < 16; ++j) {
    t[size_t(4 * j)] = t[size_t(4 * j + 1)] = uint8_t(j);
    t[size_t(4 * j + 2)] = t[size_t(4 * j + 3)] = uint8_t(16 + j);
  }
  return t;
}();

template <bool Vbmi>
struct Consts {
  __m512i table = _mm512_loadu_si512(kBf16Nibbles.data());
  __m512i interleave = _mm512_loadu_si512(Vbmi ? static_cast<const void*>(kInterleaveBytes.data()) : kInterleave.data());
};

// vpermb (AVX512-VBMI) of the 32 bytes at p (a ymm load, which zeroes the rest), written as asm: the file's flags
// are AVX512-BF16's, which do not include VBMI, and only the tiles chosen when the CPU has it (gemm_dp) run it.
__attribute__((always_inline)) inline __m512i permute_bytes32(__m512i idx, const uint8_t* p) {
  __m512i r;
  asm("vmovdqu8 %1, %t0\n\tvpermb %0, %2, %0" : "=&v"(r) : "m"(*reinterpret_cast<const uint8_t(*)[32]>(p)), "v"(idx));
  return r;
}

// The weights of rows k and k + 1 of a panel (32 bytes at `rows2`) as bf16 pairs: the even columns (0, 2, .., 30) into
// `even`, the odd ones into `odd`; dword j holds (q[k], q[k + 1]) of column 2j (even) or 2j + 1 (odd). Vbmi: the
// interleave in one vpermb instead of vpmovzxbw + vpermw (4 shuffles per 64 weights instead of 5).
template <bool Vbmi>
__attribute__((always_inline)) inline void pair_weights(const Consts<Vbmi>& c, const uint8_t* rows2, __m512i& even,
                                                        __m512i& odd) {
  __m512i v;
  if constexpr (Vbmi) {
    v = permute_bytes32(c.interleave, rows2);
  } else {
    // maskz form: the plain intrinsic trips a GCC 12 false -Wmaybe-uninitialized (tile__avx512.h, load_row)
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows2));
    v = _mm512_permutexvar_epi16(c.interleave, _mm512_maskz_cvtepu8_epi16(~__mmask32(0), bytes));
  }
  even = _mm512_permutexvar_epi16(v, c.table);
  odd = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), c.table);
}

// MR rows x NP panels (the first at `panel`, the next pstride bytes further); sa: row m's group sums at sa[m * sa_ld];
// `width`: valid columns (1..32 NP); Vbmi: the CPU has AVX512-VBMI (pair_weights). Runs under DenormalsAreZero (the
// caller's).
template <int G, int MR, int NP, bool Vbmi>
void tile(int64_t K, const float* a, int64_t lda, const std::byte* panel, size_t pstride, const float* sa,
          int64_t sa_ld, float* c, int64_t ldc, int width, Prefetch pf) {
  constexpr int NV = 2 * NP;
  constexpr int64_t kBlockBytes = int64_t(int4_block_bytes(G)), kChunkBytes = kBlockBytes * 32 / G;
  constexpr int kChunkLines = int((kChunkBytes + 63) / 64);
  const Consts<Vbmi> k;
  __m512 acc[MR][NV];
  zero_tile(acc);

  // A 32 k (16 pairs) at a time, double-buffered (K is a multiple of G, so of 32); its bf16 check is group_sums'.
  alignas(64) uint32_t abuf[2][MR * 16];
  __m512i seen = _mm512_setzero_si512();
  if (K > 0) dp::fill_pairs<MR>(a, lda, 0, K, abuf[0], seen);
  int cur = 0;
  for (int64_t g = 0; g < K / G; ++g) {
    const uint8_t* rows[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) rows[p] = int4_block(const_cast<std::byte*>(panel) + p * pstride, G, g).rows;
    __m512 sq[MR][NV];
    zero_tile(sq);
    for (int k0 = 0; k0 < G; k0 += 32, cur ^= 1) {
      if (g * G + k0 + 32 < K) dp::fill_pairs<MR>(a, lda, g * G + k0 + 32, K, abuf[cur ^ 1], seen);
      // Each panel's stream pf.bytes further on: a group's block (scales and zeros included) in G / 32
      // equal parts, one per 32 k (prefetching only the rows left a third of G = 32's stream to the hardware).
      const int64_t off = g * kBlockBytes + k0 / 32 * kChunkBytes;
      const size_t skip = next_tile_skip(off, K / G * kBlockBytes, NP, pstride, pf);  // past the panel: next tile's
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) {
        const std::byte* at = panel + p * pstride + skip + off;
#pragma GCC unroll 12
        for (int l = 0; l < kChunkLines; ++l) prefetch_ahead(at + 64 * l, pf);
      }
#pragma GCC unroll 2
      for (int i = 0; i < 16; ++i) {
        __m512i w[NV];
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) pair_weights(k, rows[p] + (k0 + 2 * i) * kInt4RowBytes, w[2 * p], w[2 * p + 1]);
#pragma GCC unroll 16
        for (int m = 0; m < MR; ++m) {
          const __m512i av = _mm512_set1_epi32(int32_t(abuf[cur][m * 16 + i]));
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) sq[m][v] = _mm512_dpbf16_ps(sq[m][v], (__m512bh)av, (__m512bh)w[v]);
        }
      }
    }
    // acc = fma(s, fma(-z, sa, sq), acc), scales and zeros in the accumulators' even/odd order.
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const Int4Block blk = int4_block(const_cast<std::byte*>(panel) + p * pstride, G, g);
      __m512 s[2], z[2];
      columns_to_even_odd(blk.scale, s[0], s[1]);
      columns_to_even_odd(blk.zero_bias, z[0], z[1]);
      const __m512 magic = _mm512_set1_ps(kInt4Magic);
      z[0] = _mm512_sub_ps(z[0], magic), z[1] = _mm512_sub_ps(z[1], magic);  // z, exact
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const __m512 sam = _mm512_set1_ps(sa[m * sa_ld + g]);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m512 t = _mm512_fnmadd_ps(z[h], sam, sq[m][2 * p + h]);  // -(z sa) + sq: fma(-z, sa, sq)
          acc[m][2 * p + h] = _mm512_fmadd_ps(s[h], t, acc[m][2 * p + h]);
        }
      }
    }
  }
  store_tile<bfloat16, MR, NV>(acc, c, ldc, width);  // bfloat16: the even/odd order (even_odd_to_columns)
}

using TileFn = void (*)(int64_t, const float*, int64_t, const std::byte*, size_t, const float*, int64_t, float*,
                        int64_t, int, Prefetch);

template <int G, int NP, bool Vbmi, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1, NP, Vbmi>...};
}

// Rows of the tiles of each width: up to 4 x 2 panels, up to 12 x 1 panel (24 chains).
constexpr int kRowsNp2 = 4, kRowsNp1 = 12;

// The panels a tile spans for M rows: up to 4 rows two panels (4 chains per row; at M = 1 four panels, 8 chains, were
// slower: 4 streams), from 5 rows one panel, whose unpacked weights the most rows share.
constexpr int tile_panels(int64_t M) { return M <= kRowsNp2 ? 2 : 1; }

// The call on vdpbf16ps; false (C not the contract's) when A holds a value that is not a bf16 value: each run of rows
// checks its rows' values as it sums them (group_sums), before its tiles read them as pairs.
template <int G>
bool gemm_dp(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b, float* c,
             int64_t ldc) {
  static constexpr auto np2 = make_tiles<G, 2, false>(std::make_integer_sequence<int, kRowsNp2>{});
  static constexpr auto np1 = make_tiles<G, 1, false>(std::make_integer_sequence<int, kRowsNp1>{});
  static constexpr auto np2_vbmi = make_tiles<G, 2, true>(std::make_integer_sequence<int, kRowsNp2>{});
  static constexpr auto np1_vbmi = make_tiles<G, 1, true>(std::make_integer_sequence<int, kRowsNp1>{});
  const bool vbmi = use_int4_vbmi();
  const int64_t groups = K / G;
  const size_t panel_bytes = size_t(groups) * int4_block_bytes(G);
  const DenormalsAreZero daz;
  const Prefetch pf = prefetch_for(PrefetchStream::int4, M);  // pf.bytes = 0: each chunk touches its own lines
  __m512i seen = _mm512_setzero_si512();
  bool bf16 = true;
  const auto sums = [&](const float* arow, int64_t n_groups, float* out) {
    seen = _mm512_or_si512(seen, group_sums<G>(arow, n_groups, out));
  };
  const auto tiles = [&](int64_t mb, int64_t rows, const float* sa) {
    bf16 = bf16 && _mm512_test_epi32_mask(seen, _mm512_set1_epi32(0xffff)) == 0;
    if (!bf16) return;
    const float* ab = a + mb * lda;
    const int np_max = tile_panels(rows);
    for (int64_t p0 = n0; p0 < n1;) {
      const int64_t left = (n1 - p0 + kGemmNR - 1) / kGemmNR;
      const int np = left >= 2 && np_max >= 2 ? 2 : 1;  // the tail: one panel
      const TileFn* fns = np == 2 ? (vbmi ? np2_vbmi : np2).data() : (vbmi ? np1_vbmi : np1).data();
      const int64_t max_rows = np == 2 ? kRowsNp2 : kRowsNp1;
      const int width = int(std::min<int64_t>(kGemmNR * np, n1 - p0));
      const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
      for_row_blocks(rows, max_rows, [&](int64_t m0, int64_t mr) {
        fns[mr - 1](K, ab + m0 * lda, lda, panel, panel_bytes, sa + m0 * groups, groups,
                    c + (mb + m0) * ldc + (p0 - n0), ldc, width, pf);
      });
      p0 += kGemmNR * np;
    }
  };
  for_int4_sum_chunks(M, K, G, a, lda, sums, tiles);
  return bf16;
}

// The AVX-512 FMA kernel of the same group size: the same contract, for A that is not bf16 values.
template <int G>
void gemm_fma(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b, float* c,
              int64_t ldc) {
  if constexpr (G == 32) gemm_u4g32w_f32_12x32__avx512(M, K, n0, n1, a, lda, b, c, ldc);
  else if constexpr (G == 64) gemm_u4g64w_f32_12x32__avx512(M, K, n0, n1, a, lda, b, c, ldc);
  else gemm_u4g128w_f32_12x32__avx512(M, K, n0, n1, a, lda, b, c, ldc);
}

template <int G>
void gemm_u4(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b, float* c,
             int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  if (!gemm_dp<G>(M, K, n0, n1, a, lda, static_cast<const std::byte*>(b), c, ldc))
    gemm_fma<G>(M, K, n0, n1, a, lda, b, c, ldc);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DEFINE, 12x32, avx512bf16)

}  // namespace moefuse::gemm::detail
