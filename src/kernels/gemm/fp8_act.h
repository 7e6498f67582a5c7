// FP8 weights x dynamic FP8 activations (DeepSeek-V3's second inference mode; docs/layer.md §7, "FP8 activations").
//
// Activations: each row of A is quantised per block of 128 consecutive input channels (the last block of a row
// whose K is not a multiple of 128 is partial):
//   amax = max |x_k| over the block (fp32);
//   a block holding a NaN or an infinity: s = NaN, every code 0 (the row's outputs become NaN through s);
//   else s = amax / 448 (one fp32 division, RNE); s == 0 (an all-zero block, or amax so small that the division
//   underflows): every code 0 (+0), so the block adds exactly +0 and no 0/0 is ever formed;
//   else q_k = e4m3(x_k / s): the fp32 quotient rounded to e4m3 (fn) to nearest even, magnitudes above 448
//   saturating to 448 (never NaN).
// Weights: the FP8 panels of gemm.h packed with Fp8Source::scales_only (every vector area holds its 8 fp32 scales),
// so s_w[g, n] is the block's own scale as the checkpoint gives it (no bf16 rounding of the weight anywhere).
// Output C[m, n], from acc = +0, for g = 0, 1, ... in ascending K:
//   d   = Σ_{k in block g} e4m3(qa[m, k]) * e4m3(qw[k, n])   exactly (below), then rounded once to fp32 (RNE);
//   acc = acc + ((d * s_a[m, g]) * s_w[g, n])                three fp32 roundings, in this order (no fma).
// Why d is exact in any order: every e4m3 value is i * 2^u with an integer 0 <= i <= 15 and -9 <= u <= 5, so a
// product is an integer multiple of 2^-18 below 448^2 < 2^17.7, and a sum of at most 128 of them is a multiple of
// 2^-18 below 2^24.7: 43 bits, exact in fp64 (53) whatever the order, and +0 when it is zero. So the scalar
// reference sums in fp64 in k order and the AVX-512 kernel in fp64 FMAs per lane, and both give the same d. A NaN
// weight code (S.1111.111) makes d NaN. Products of the padded columns of a panel are 0 (code 0, scale 0).
#pragma once

#include <array>
#include <cstdint>

#include "moefuse/dtype.h"

namespace moefuse::gemm {

/// The e4m3 code of fp32 `x` (not NaN): round to nearest even, saturating at ±448; ±0 give ±0.
inline uint8_t e4m3_rne_sat(float x) {
  uint32_t bits = f32_bits(x);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80u);
  bits &= 0x7fffffffu;
  if (bits >= 0x43e00000u) return uint8_t(sign | 0x7eu);  // >= 448 (and +inf)
  if (bits < 0x3c800000u) {                              // below 2^-6: subnormal codes m * 2^-9, m = 0..8
    // a * 2^9 is exact; adding 2^23 rounds it to an integer with RNE (the fp32 default rounding).
    const float t = f32_from_bits(bits) * 512.0f + 8388608.0f;
    return uint8_t(sign | uint8_t(f32_bits(t) - 0x4b000000u));  // m = 8 is code 0x08, the smallest normal
  }
  bits += 0x7ffffu + ((bits >> 20) & 1u);  // RNE to 3 mantissa bits; 448 is the largest result (checked above)
  return uint8_t(sign | (((bits >> 23) - 120u) << 3) | ((bits >> 20) & 7u));
}

/// Every e4m3 code's value in fp64 (NaN codes NaN): the activation codes' table of the vector kernels (defined in the
/// scalar file, so that no ISA-flagged copy of it exists).
const std::array<double, 256>& e4m3_f64_table();

/// Quantises one row x[0, K) as above: codes to q[0, K), one scale per block of 128 to s[0, ceil(K / 128)).
void quantise_fp8_act_row(const float* x, int64_t K, uint8_t* q, float* s);

/// C[m, n - n0] for m < M, n0 <= n < n1 (n0 a multiple of kGemmNR; C holds n1 - n0 columns, row stride ldc) from the
/// activation codes qa (row m at qa + m * lda), their scales sa (row m at sa + m * ldsa, ceil(K / 128) per row) and
/// the scales-only FP8 panels b of K rows. Every variant computes exactly the definition above.
using GemmFp8ActFn = void (*)(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                              const float* sa, int64_t ldsa, const void* b, float* c, int64_t ldc);

struct GemmFp8ActKernel {
  GemmFp8ActFn fn = nullptr;
  const char* name = "";
};

/// The fastest variant the CPU (active_isa()) runs: AVX-512 from the avx512 level, AVX2 (with F16C) at the avx2
/// level, else the scalar reference.
GemmFp8ActKernel select_gemm_fp8_act();

namespace detail {
void gemm_fp8a_fp8w_f32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                                const float* sa, int64_t ldsa, const void* b, float* c, int64_t ldc);
void gemm_fp8a_fp8w_f32__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                              const float* sa, int64_t ldsa, const void* b, float* c, int64_t ldc);
void gemm_fp8a_fp8w_f32__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                                const float* sa, int64_t ldsa, const void* b, float* c, int64_t ldc);
}  // namespace detail

}  // namespace moefuse::gemm
