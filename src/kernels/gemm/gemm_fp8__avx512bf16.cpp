// AVX512-BF16 FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"; compiled with AVX-512 F/BW/VL/DQ + BF16 and only
// called when the CPU has them and the vdpbf16ps self-test passed, kernels::avx512_bf16_dot). Bitwise the scalar
// variant: the FP8 contract is "form bf16(e4m3 * s), then the bf16 contract", and the bf16 contract is vdpbf16ps's
// own arithmetic.
//
// From kDotBlockRows (8) rows: the AVX-512 kernel's block path (fp8_form__avx512.h, by_blocks: per pair of panels
// and 128-row block the weights formed once as bf16 into a 16 KiB buffer, the chains carried through C from block
// to block), with the AVX512-BF16 kernel's vdpbf16ps tiles (tile__avx512bf16.h: 6 x 64, 12 x 32 for a last single
// panel; two k per instruction where the FMA tile does one). Fewer rows (or K = 0): the AVX-512 kernel itself
// (gemm_fp8w_f32_4x64__avx512), whose direct tiles form the weights in registers; decode is bound by the weight
// stream and the forming, not by the FMAs.
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
// Measured on a 2-core AMD EPYC Zen 5 (family 26 model 2), one thread, gemm_bench 2048 x 2048, the three rows
// interleaved in one run (3 repetitions, wall time): M = 64 1.79-2.11 ms (254-300 GFLOP/s; the AVX-512 FP8 kernel
// 2.76-2.93 ms, 184-195; the AVX512-BF16 bf16 kernel 1.34-1.65 ms), M = 512 13.1-16.3 ms (264-327 GFLOP/s; AVX-512
// FP8 21.2-27.2 ms, 158-202; bf16 10.6-13.4 ms). What stands between this kernel and the bf16 one is the forming
// of each weight (once per pair of panels and block, not per row block). A layer (moefuse bench, olmoe-1b-7b, fp8,
// 512 tokens, chain path; runs alternating with MOEFUSE_MAX_ISA=avx512): 245 and 286 ms against 336 and 351 ms.
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
// 1205-1300 against 2180-2634. Below 8 rows a single direct tile forms each weight once, in registers.
constexpr int kDotBlockRows = 8;

// Panels of [n0, n1) for M >= kDotBlockRows rows (fp8::by_blocks) on vdpbf16ps tiles; false when A holds a value
// that is not a bf16 value (C then is not the contract's).
bool gemm_by_blocks_dp(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b,
                       float* c, int64_t ldc) {
  using fp8::kBlockPairRows, fp8::kBlockSingleRows;
  static constexpr auto pairs_first = dp::make_tiles_dp<2, false>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto pairs_carry = dp::make_tiles_dp<2, true>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto singles_first =
      dp::make_tiles_dp<1, false>(std::make_integer_sequence<int, kBlockSingleRows>{});
  static constexpr auto singles_carry = dp::make_tiles_dp<1, true>(std::make_integer_sequence<int, kBlockSingleRows>{});
  return fp8::by_blocks(M, K, n0, n1, a, lda, b, c, ldc,
                        [&](int np, bool carry, int64_t mr, int64_t rows, const float* ab, const bfloat16* w,
                            int64_t stride, float* cb, int width) {
                          const auto& tile = np == 2 ? (carry ? pairs_carry : pairs_first)[size_t(mr - 1)]
                                                     : (carry ? singles_carry : singles_first)[size_t(mr - 1)];
                          return tile(rows, ab, lda, w, stride, cb, ldc, width);
                        });
}

}  // namespace

void gemm_fp8w_f32_4x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                    const void* b, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  if (M < kDotBlockRows || K == 0 ||
      !gemm_by_blocks_dp(M, K, n0, n1, a, lda, static_cast<const std::byte*>(b), c, ldc))
    gemm_fp8w_f32_4x64__avx512(M, K, n0, n1, a, lda, b, c, ldc);
}

}  // namespace moefuse::gemm::detail
