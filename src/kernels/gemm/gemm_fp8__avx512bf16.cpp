// AVX512-BF16 FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"; compiled with AVX-512 F/BW/VL/DQ + BF16 and only
// called when the CPU has them and the vdpbf16ps self-test passed, kernels::avx512_bf16_dot). Bitwise the scalar
// variant: the FP8 contract is "form bf16(e4m3 * s), then the bf16 contract", and the bf16 contract is vdpbf16ps's
// own arithmetic.
//
// From kDotBlockRows (8) rows: the AVX-512 kernel's block path (fp8_form__avx512.h, by_blocks: per pair of panels and 4
// 128-row blocks the weights formed once as bf16 into a 64 KiB buffer, the chains carried through C from one run of
// blocks to the next), with the AVX512-BF16 kernel's vdpbf16ps tiles (tile__avx512bf16.h: 6 x 64, 12 x 32 for a last
// single panel; two k per instruction where the FMA tile does one). Fewer rows (decode): direct tiles (tile_direct:
// M x 64 up to 4 rows, M x 32 for 5..7 and for a last single panel) that form the weights in registers, two rows of k at a
// time, straight into vdpbf16ps pair order (fp8_form__avx512.h, table_pairs: one vpermq and two vpshufb put the 64
// codes of rows k and k + 1 into the pairs, then the table formula on words), each panel's block by its own form; a
// block whose four vectors share one table (one scale per panel: checkpoints with 128 x 128 blocks) indexes its table
// with the code as it is (fp8::one_table). Per 32 weights and row of A that is about 7 instructions where the AVX-512
// kernel's direct tiles run 10. The odd last row of K takes the table32 form and the contract's zero pair;
// a block with a vector of form scales is formed into a buffer first (form_block). K = 0: the AVX-512 kernel.
//
// MXCSR: vdpbf16ps flushes and rounds by itself (no DenormalsAreZero scope), and form_block forms the scales form's
// weights under FloatDefaultMode, as in the AVX-512 kernel.
//
// A must be bf16 values for the vdpbf16ps tile (it takes each value's high half); every tile reports whether the A
// values it read were. Every column block reads all of A, so the first column block tells: when some value is not a
// bf16 value, the whole call is computed again by gemm_fp8w_f32_4x64__avx512 (the same contract: the result never
// depends on which ran; the chains carried through C cannot be resumed by another kernel, hence the whole call).
// Activations of bf16 models are bf16 values.
//
// Decode, measured on a 2-core AMD EPYC Zen 5 (family 26 model 2), one thread, cold weights, beside another
// session's benchmark on the other core (so CPU time, not wall time):
//   gemm_bench --benchmark_filter='memory/stream_read|gemm_(fp8w_f32_4x64__avx512(bf16)?|bf16w_f32_6x64__avx512bf16)
//     /K:(2048|1024)/N:2048/M:(1|2|4|7)$' --benchmark_repetitions=3 --benchmark_min_time=0.3
//     --benchmark_enable_random_interleaving=true
// in one run whose stream read was 40.8-41.6 GB/s (us per call, this kernel / the AVX-512 FP8 kernel / the
// AVX512-BF16 bf16 kernel on the same shape):
//   K = 2048: M = 1 118-129 / 145-152 / 190-235 (33.6-36.9 GB/s of packed FP8 weights: 82-90% of the stream read;
//             the AVX-512 kernel 28.5-30.0), M = 2 124-132 / 169-174 / 200-227, M = 4 154-156 / 214-236 / 253-263,
//             M = 7 215-221 / 283-289 / 305-327;
//   K = 1024: M = 1 68-74 / 80-84 / 98-156, M = 2 76-77 / 95-100 / 103-124, M = 4 84-87 / 117-122 / 137-148,
//             M = 7 107-114 / 150-153 / 168-176.
// With the weights in L2 (an ad-hoc timing loop over 512 x 512 copies, CPU time) one row forms 53 GB/s of them (the
// AVX-512 kernel 35): cold, M = 1 waits on the memory stream more than on the forming. The layer (moefuse bench
// --preset olmoe-1b-7b --tokens 1,8 --quant fp8 --paths superkernel,chain --iters 9, 2 threads, three runs alternating
// with the build before, beside other sessions' benchmarks): 8 tokens median 16-23 ms against 27-32 (minimum 12-15
// against 16-24); 1 token within the noise of those runs (medians 2-40 ms for either build).
// Prefill (the same machine, gemm_bench 2048 x 2048, the three rows interleaved in one run, 3 repetitions, wall
// time): M = 64 1.79-2.11 ms (254-300 GFLOP/s; the AVX-512 FP8 kernel
// 2.76-2.93 ms, 184-195; the AVX512-BF16 bf16 kernel 1.34-1.65 ms), M = 512 13.1-16.3 ms (264-327 GFLOP/s; AVX-512
// FP8 21.2-27.2 ms, 158-202; bf16 10.6-13.4 ms). What stands between this kernel and the bf16 one is the forming
// of each weight (once per pair of panels and block, not per row block). A layer (moefuse bench, olmoe-1b-7b, fp8,
// 512 tokens, chain path; runs alternating with MOEFUSE_MAX_ISA=avx512): 245 and 286 ms against 336 and 351 ms.
#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/gemm/fp8_form__avx512.h"
#include "kernels/gemm/tile__avx512bf16.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

// From this many rows the block path on vdpbf16ps tiles (the AVX-512 kernel takes its FMA block path from 64). With
// two k per instruction the tiles leave time for forming the buffer from fewer rows than the FMA tiles do. Measured
// (gemm_bench, 2048 x 2048, one thread, Zen 5, in paired runs beside the AVX-512 kernel, which runs its direct
// tiles there): M = 8 358-387 us against 390-419, M = 9 380-448 against 481-553, M = 12 465-491 against 619-633,
// M = 16 617-720 against 684-922, M = 24 712-836 against 1084-1121, M = 32 1181-1269 against 1418-1851, M = 48
// 1205-1300 against 2180-2634. Below 8 rows a single direct tile (tile_direct) forms each weight once, in registers.
constexpr int kDotBlockRows = 8;

// Two-panel direct tiles (MR x 64: 4 independent chains per row) up to this many rows; MR x 32 from there to
// kDotBlockRows - 1 (a single tile, so each weight is formed once; 5 x 64 would not fit the 32 registers).
constexpr int kDirectPairRows = 4;

// MR rows x 32·NP columns from NP panels (panel_bytes apart) starting at `panel`, the weights formed in registers
// two rows of k at a time, in vdpbf16ps pair order (fp8::table_pairs; see the top); a block with a vector of form
// scales is formed into a buffer first (fp8::form_block). The block's A pairs are built at its start (dp::fill_pairs,
// 4 chunks of 16 pairs; blocks but the last have 128 rows, so no pair straddles two). Returns whether every A value
// read was a bf16 value (C is the contract's only then).
template <int MR, int NP, class TA>
bool tile_direct(int64_t K, const TA* a, int64_t lda, const std::byte* panel, size_t panel_bytes, float* c,
                 int64_t ldc, int width) {
  constexpr int NV = 2 * NP;
  constexpr int kChunk = MR * 16;  // uint32 of one chunk of 16 A pairs per row
  const fp8::Consts k(MR);  // one tile covers the call's rows: MR = M
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  __m512i seen = _mm512_setzero_si512();
  alignas(64) uint32_t abuf[kFp8BlockK / 32 * kChunk];
  for (int64_t g = 0; g < fp8_blocks(K); ++g) {
    const uint8_t* q[NP];
    fp8::Tables t[NP];
    int subs = 0;  // bit p: panel p's block has a vector of form table_sub (and none of form scales)
    bool scales = false, one = true;  // one: every panel's block has one table (fp8::one_table)
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const std::byte* pp = panel + size_t(p) * panel_bytes;
      const uint8_t forms = reinterpret_cast<const uint8_t*>(pp)[g];
      const std::byte* blk = pp + fp8_block_offset(K, g);
      q[p] = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
      t[p] = fp8::block_tables(blk);
      int worst = 0;
      for (int v = 0; v < 4; ++v) worst = std::max(worst, int(fp8_form(forms, v)));
      subs |= int(worst == int(Fp8Form::table_sub)) << p;
      scales |= worst == int(Fp8Form::scales);
      one &= fp8::one_table(blk);
    }
    const int64_t rows = fp8_block_rows(K, g);
    for (int64_t r = 0; r < rows; r += 32)
      dp::fill_pairs<MR>(a + g * kFp8BlockK, lda, r, rows, abuf + r / 32 * kChunk, seen);
    // pair(p, i, lo, hi): rows 2i and 2i + 1 of panel p's block in pair order; row(p, r): row r's 32 bf16 weights.
    const auto run = [&](const auto& pair, const auto& row) __attribute__((always_inline)) {
      const int64_t pairs = rows / 2;
      for (int64_t i = 0; i < pairs; ++i) {
        __m512i bv[NV];
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) pair(p, i, bv[2 * p], bv[2 * p + 1]);
        dp::dot_pairs<MR, NV>(bv, abuf + i / 16 * kChunk + i % 16, acc);
      }
      if (rows % 2) {  // the last row of an odd K, with the contract's zero pair
        __m512i even[NP], odd[NP];
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) {
          even[p] = row(p, rows - 1);
          odd[p] = _mm512_setzero_si512();
        }
        dp::pair_dot<MR, NP>(even, odd, abuf + pairs / 16 * kChunk + pairs % 16, acc);
      }
    };
    // Each panel's block by its own form, not the worse of the two (table_sub costs two more instructions per 32
    // weights, and in gemm_bench's release-like weights many blocks have a subnormal or zero code in some vector).
    const auto run_tables = [&]<int Subs>() __attribute__((always_inline)) {
      const auto row = [&](int p, int64_t r) __attribute__((always_inline)) {
        return (Subs >> p) & 1 ? fp8::table32<true>(k, q[p] + r * kGemmNR, t[p])
                               : fp8::table32<false>(k, q[p] + r * kGemmNR, t[p]);
      };
      const auto run_with = [&]<bool One>(const fp8::Tables* u) __attribute__((always_inline)) {
        run(
            [&, u](int p, int64_t i, __m512i& lo, __m512i& hi) __attribute__((always_inline)) {
              const uint8_t* qi = q[p] + 2 * i * kGemmNR;
              // past the panel's end the prefetch goes on in the next tile's panel (cpu_tuning.h)
              const size_t skip = next_tile_skip(reinterpret_cast<const std::byte*>(q[0] + 2 * i * kGemmNR) - panel,
                                                 int64_t(panel_bytes), NP, panel_bytes, k.pf);
              if ((Subs >> p) & 1) fp8::table_pairs<true, One>(k, qi, u[p], lo, hi, skip);
              else fp8::table_pairs<false, One>(k, qi, u[p], lo, hi, skip);
            },
            row);
      };
      if (one) {
        fp8::Tables u[NP];
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) u[p] = fp8::code_tables(t[p]);
        run_with.template operator()<true>(u);
      } else {
        run_with.template operator()<false>(t);
      }
    };
    if (!scales) {
      if (subs == 0) run_tables.template operator()<0>();
      else if (subs == 1) run_tables.template operator()<1>();
      else if constexpr (NP == 2) {
        if (subs == 2) run_tables.template operator()<2>();
        else run_tables.template operator()<3>();
      }
    } else {
      // A vector of form scales: the block formed first, the long way, in the default mode (form_block).
      alignas(64) bfloat16 w[NP][kFp8BlockK * kGemmNR];
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) fp8::form_block(k, panel + size_t(p) * panel_bytes, K, g, w[p]);
      const auto row = [&](int p, int64_t r) __attribute__((always_inline)) {
        return _mm512_load_si512(w[p] + r * kGemmNR);
      };
      run(
          [&](int p, int64_t i, __m512i& lo, __m512i& hi) __attribute__((always_inline)) {
            const __m512i even = row(p, 2 * i), odd = row(p, 2 * i + 1);
            lo = _mm512_unpacklo_epi16(even, odd);
            hi = _mm512_unpackhi_epi16(even, odd);
          },
          row);
    }
  }
  return dp::store_pairs<MR, NP>(acc, c, ldc, width, seen);
}

template <class TA>
using DirectFn = bool (*)(int64_t, const TA*, int64_t, const std::byte*, size_t, float*, int64_t, int);

template <int NP, class TA, int... R>
constexpr auto make_direct(std::integer_sequence<int, R...>) {
  return std::array<DirectFn<TA>, sizeof...(R)>{&tile_direct<R + 1, NP, TA>...};
}

// Panels of [n0, n1) for 1 <= M < kDotBlockRows rows and K > 0 with the direct tiles (one tile covers all M rows);
// false when A holds a value that is not a bf16 value (C then is not the contract's).
template <class TA>
bool gemm_direct_dp(int64_t M, int64_t K, int64_t n0, int64_t n1, const TA* a, int64_t lda, const std::byte* b,
                    float* c, int64_t ldc) {
  static constexpr auto pairs = make_direct<2, TA>(std::make_integer_sequence<int, kDirectPairRows>{});
  static constexpr auto singles = make_direct<1, TA>(std::make_integer_sequence<int, kDotBlockRows - 1>{});
  const size_t panel_bytes = fp8_panel_bytes(K);
  return fp8::direct_panels(K, n0, n1, b, M <= kDirectPairRows,
                            [&](int np, const std::byte* panel, int64_t c0, int width) {
                              const DirectFn<TA> tile = np == 2 ? pairs[size_t(M - 1)] : singles[size_t(M - 1)];
                              return tile(K, a, lda, panel, panel_bytes, c + c0, ldc, width);
                            });
}

// Panels of [n0, n1) for M >= kDotBlockRows rows (fp8::by_blocks) on vdpbf16ps tiles; false when A holds a value
// that is not a bf16 value (C then is not the contract's).
template <class TA>
bool gemm_by_blocks_dp(int64_t M, int64_t K, int64_t n0, int64_t n1, const TA* a, int64_t lda, const std::byte* b,
                       float* c, int64_t ldc) {
  using fp8::kBlockPairRows, fp8::kBlockSingleRows;
  static constexpr auto pairs_first =
      dp::make_tiles_dp<2, false, false, TA>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto pairs_carry =
      dp::make_tiles_dp<2, true, false, TA>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto singles_first =
      dp::make_tiles_dp<1, false, false, TA>(std::make_integer_sequence<int, kBlockSingleRows>{});
  static constexpr auto singles_carry =
      dp::make_tiles_dp<1, true, false, TA>(std::make_integer_sequence<int, kBlockSingleRows>{});
  return fp8::by_blocks(M, K, n0, n1, a, lda, b, c, ldc,
                        [&](int np, bool carry, int64_t mr, int64_t rows, const TA* ab, const bfloat16* w,
                            int64_t stride, float* cb, int width) {
                          const auto& tile = np == 2 ? (carry ? pairs_carry : pairs_first)[size_t(mr - 1)]
                                                     : (carry ? singles_carry : singles_first)[size_t(mr - 1)];
                          return tile(rows, ab, lda, w, stride, cb, ldc, width, Prefetch{});  // w: in L1
                        });
}

}  // namespace

void gemm_fp8w_f32_4x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                    const void* b, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  const auto* bp = static_cast<const std::byte*>(b);
  if (K == 0 || !(M < kDotBlockRows ? gemm_direct_dp(M, K, n0, n1, a, lda, bp, c, ldc)
                                    : gemm_by_blocks_dp(M, K, n0, n1, a, lda, bp, c, ldc)))
    gemm_fp8w_f32_4x64__avx512(M, K, n0, n1, a, lda, b, c, ldc);
}

// bf16 rows of A: the same tiles, their A pairs copied from the rows as they are (dp::fill_pairs); every value is a
// bf16 value, so no fallback. K = 0 (no blocks to run): C = +0 directly.
void gemm_fp8w_bf16a_f32_4x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a,
                                          int64_t lda, const void* b, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  const auto* bp = static_cast<const std::byte*>(b);
  if (K == 0) {
    for (int64_t m = 0; m < M; ++m) std::fill_n(c + m * ldc, n1 - n0, 0.0f);
  } else if (M < kDotBlockRows) {
    gemm_direct_dp(M, K, n0, n1, a, lda, bp, c, ldc);
  } else {
    gemm_by_blocks_dp(M, K, n0, n1, a, lda, bp, c, ldc);
  }
}

}  // namespace moefuse::gemm::detail
