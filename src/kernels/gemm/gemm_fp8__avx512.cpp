// AVX-512 (F/BW/VL/DQ) FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"): e4m3 widened in registers, never in
// memory, and bitwise the scalar variant for every M, n range and form.
//
// Weights are formed 32 at a time, one panel row, in 16-bit lanes: the contract's weight is a bf16, and the table
// formula of fp8_layout.h (fp8_table_bits) is, on the upper 16 bits it touches, a 16-bit add:
//     w16 = t1[code & 7] + ((int16(int8(code)) << 4) & 0x8780)        (t0[code & 7] where the exponent field is 0)
// (the code's exponent field lands on the bf16 exponent, bits 7..10, its sign on bit 15; a carry past bit 15 is
// the one fp8_table_bits drops past bit 31). Per block the four vectors' t1 (and t0) entries are gathered into one
// 32-word table (vector v's entry m at word 8v + m), so one vpermw with index (code & 7) | 8v looks up all 32
// columns. Per row: vpmovsxbw (the 32 codes), vpsllw + vpand (exponent and sign), vpternlogd (index), vpermw,
// vpaddw — 6 instructions for 32 weights (table_sub: + vptestnmw and a masked vpermw from t0) — then the same two
// instructions as the bf16 kernel's load_row widen the 32 bf16 to fp32, even columns and odd columns, whose
// accumulators are put back in column order at the store (tile__avx512.h).
// A vector of form scales is formed the long way (mixed32: the contract's arithmetic, as in the AVX2 kernel:
// e4m3 through fp16, times the scale, integer round to nearest even to bf16, NaN codes forced to all-ones) and
// blended in by a word mask; such blocks are rare in checkpoints and their speed does not matter. The kernel's FMAs
// run under DenormalsAreZero (the bf16 contract, gemm.h); that long way multiplies in fp32, so it runs in the default
// mode (form_block, FloatDefaultMode): its block is formed into a buffer first, even in the tiles below that
// otherwise form their weights in registers. The table forms are integer arithmetic, which MXCSR does not touch.
// The forming code and the block path's loop (below) are in fp8_form__avx512.h, shared with the AVX512-BF16 FP8
// kernel (gemm_fp8__avx512bf16.cpp), which runs the same block path on vdpbf16ps tiles, its own direct tiles below
// 8 rows, and this kernel where A holds a value that is not a bf16 value.
//
// Tiles (the weights of a panel row are formed once per tile):
//   M <= 4 rows: tiles of M rows x 64 columns (two panels: 4 independent chains per row, as the bf16 kernel's 6 x 64
//     tiles, so one row is not bound by FMA latency), a last single panel as M x 32.
//   up to kBlockPathRows - 1 rows: M x 32 tiles of at most kDirectRows rows (M = 5..8: one tile, so each weight is
//     formed once).
//   from kBlockPathRows rows: per pair of panels and 4 128-row blocks (fp8::kFormBlocks), the weights are formed
//     once as bf16 into a 64 KiB buffer on the stack (in L2), and the bf16 kernel's own 6 x 64 tile (12 x 32 for a
//     last single panel) runs on it, its accumulators carried from one such run of blocks to the next through C
//     (stored and reloaded exactly, so every output is still one fma chain from +0 in the bf16 contract's order:
//     blocks but the last have an even number of rows, so no pair of k straddles two runs): prefill costs the bf16
//     kernel's loop plus forming each weight once (not once per row block), and the kernel allocates nothing
//     (fp8::by_blocks).
//
// Measured on a 2-core AMD EPYC Zen 5 (family 26 model 2; gemm_bench, 2048 x 2048, cold weights, a quiet minute
// with a 29 GB/s stream read): M = 1 181-187 us (23-24 GB/s of packed weights; the bf16 kernel 353-355 us, the AVX2
// FP8 kernel 379-400 us), M = 8 372-393 us (bf16 572-582, AVX2 FP8 1299-1366), M = 64 173-183 GFLOP/s (bf16 198,
// AVX2 FP8 82-84), M = 512 182-185 (bf16 205-207, AVX2 FP8 92-101). One row reaches 81-84% of the read bandwidth;
// what stands between is the forming: about 8 vector instructions per 32 weights beside 2 FMAs.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/fp8_form__avx512.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

using fp8::block_tables, fp8::Consts, fp8::form_block, fp8::table32, fp8::Tables;

constexpr int kPairRows = 4;    // two-panel tiles up to this many rows
constexpr int kDirectRows = 8;  // rows of the single-panel tiles that form weights in registers
// From this many rows the block path (see the top). Below it the direct tiles are as fast or faster, although they
// form each weight once per 8 rows: the forming instructions run beside the FMAs (which use two of Zen 5's four
// vector pipes), and there is no buffer, no carry through C and no restart of the A buffer per block. Measured on
// Zen 5 (2048 x 2048, cold weights, time against the bf16 kernel's): M = 16 direct 0.74, blocks 1.2; M = 32 and 48
// both about 1.0..1.1; M = 512 direct 1.1..1.3, blocks 1.0..1.1. Both give the same bits. (The AVX512-BF16 FP8
// kernel's vdpbf16ps tiles take the block path from fewer rows: gemm_fp8__avx512bf16.cpp.)
constexpr int kBlockPathRows = 64;
// MR rows x 32·NP columns from NP panels (panel_bytes apart) starting at `panel`, weights formed in registers.
template <int MR, int NP>
void tile(int64_t K, const float* a, int64_t lda, const std::byte* panel, size_t panel_bytes, float* c, int64_t ldc,
          int width, int64_t call_rows) {
  constexpr int NV = 2 * NP;
  const Consts k(call_rows);  // the call's M (for the prefetch's row threshold), not the tile's MR
  __m512 acc[MR][NV];
  zero_tile(acc);
  for (int64_t g = 0; g < fp8_blocks(K); ++g) {
    const uint8_t* q[NP];
    Tables t[NP];
    int worst = 0;
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const std::byte* pp = panel + size_t(p) * panel_bytes;
      const uint8_t forms = reinterpret_cast<const uint8_t*>(pp)[g];
      const std::byte* blk = pp + fp8_block_offset(K, g);
      q[p] = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
      t[p] = block_tables(blk);
      for (int v = 0; v < 4; ++v) worst = std::max(worst, int(fp8_form(forms, v)));
    }
    const float* ak = a + g * kFp8BlockK;
    const int64_t rows = fp8_block_rows(K, g);
    const auto run = [&]<int Form>() __attribute__((always_inline)) {
      const auto row = [&](int64_t r, __m512 (&bv)[NV]) __attribute__((always_inline)) {
        // past the panel's end the prefetch goes on in the next tile's panel (cpu_tuning.h)
        const size_t skip = next_tile_skip(reinterpret_cast<const std::byte*>(q[0] + r * kGemmNR) - panel,
                                           int64_t(panel_bytes), NP, panel_bytes, k.pf);
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) {
          const uint8_t* qr = q[p] + r * kGemmNR;
          const __m512i w =
              Form == int(Fp8Form::table) ? table32<false>(k, qr, t[p], skip) : table32<true>(k, qr, t[p], skip);
          widen_bf16_pairs(w, bv[2 * p], bv[2 * p + 1]);
        }
      };
      fma_k<MR, NV, true>(rows, ak, lda, row, acc);
    };
    if (worst == int(Fp8Form::table)) {
      run.template operator()<int(Fp8Form::table)>();
    } else if (worst == int(Fp8Form::table_sub)) {
      run.template operator()<int(Fp8Form::table_sub)>();
    } else {
      // A vector of form scales: the block's weights formed first, in the default mode (form_block), then the bf16
      // loop on them. Such blocks are rare in checkpoints.
      alignas(64) bfloat16 w[NP][kFp8BlockK * kGemmNR];
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) form_block(k, panel + size_t(p) * panel_bytes, K, g, w[p]);
      const auto row = [&](int64_t r, __m512 (&bv)[NV]) __attribute__((always_inline)) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) load_row(w[p] + r * kGemmNR, bv[2 * p], bv[2 * p + 1]);
      };
      fma_k<MR, NV, true>(rows, ak, lda, row, acc);
    }
  }
  store_tile<bfloat16, MR, NV>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, const std::byte*, size_t, float*, int64_t, int, int64_t);

template <int NP, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<R + 1, NP>...};
}

// Panels of [n0, n1) with weights formed in registers (M < kBlockPathRows, or K = 0).
void gemm_direct(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b,
                 float* c, int64_t ldc) {
  static constexpr auto pairs = make_tiles<2>(std::make_integer_sequence<int, kPairRows>{});
  static constexpr auto singles = make_tiles<1>(std::make_integer_sequence<int, kDirectRows>{});
  const size_t panel_bytes = fp8_panel_bytes(K);
  fp8::direct_panels(K, n0, n1, b, M <= kPairRows, [&](int np, const std::byte* panel, int64_t c0, int width) {
    if (np == 2) pairs[size_t(M - 1)](K, a, lda, panel, panel_bytes, c + c0, ldc, width, M);
    else
      for_row_blocks(M, kDirectRows, [&](int64_t m0, int64_t rows) {
        singles[size_t(rows - 1)](K, a + m0 * lda, lda, panel, panel_bytes, c + m0 * ldc + c0, ldc, width, M);
      });
    return true;
  });
}


// Panels of [n0, n1) for M >= kBlockPathRows rows (fp8::by_blocks) on the bf16 kernel's FMA tiles.
void gemm_by_blocks(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b,
                    float* c, int64_t ldc) {
  using fp8::kBlockPairRows, fp8::kBlockSingleRows;
  static constexpr auto pairs_first = make_tiles_f<bfloat16, 2, false>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto pairs_carry = make_tiles_f<bfloat16, 2, true>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto singles_first =
      make_tiles_f<bfloat16, 1, false>(std::make_integer_sequence<int, kBlockSingleRows>{});
  static constexpr auto singles_carry =
      make_tiles_f<bfloat16, 1, true>(std::make_integer_sequence<int, kBlockSingleRows>{});
  fp8::by_blocks(M, K, n0, n1, a, lda, b, c, ldc,
                 [&](int np, bool carry, int64_t mr, int64_t rows, const float* ab, const bfloat16* w, int64_t stride,
                     float* cb, int width) {
                   const auto& tiles = np == 2 ? (carry ? pairs_carry : pairs_first)[size_t(mr - 1)]
                                               : (carry ? singles_carry : singles_first)[size_t(mr - 1)];
                   tiles(rows, ab, lda, w, stride, cb, ldc, width, Prefetch{});  // w: in L1 (formed here)
                   return true;
                 });
}

}  // namespace

void gemm_fp8w_f32_4x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0) return;
  const auto* b = static_cast<const std::byte*>(b_data);
  const DenormalsAreZero guard;  // the bf16 contract's FMAs (weights formed in the default mode: form_block)
  if (M >= kBlockPathRows && K > 0) return gemm_by_blocks(M, K, n0, n1, a, lda, b, c, ldc);
  gemm_direct(M, K, n0, n1, a, lda, b, c, ldc);
}

}  // namespace moefuse::gemm::detail
