// The scalar reference of grouped_matmul on the bf16 contract (src/kernels/gemm/gemm.h, "bf16 weights"): products
// with bf16 weights take pairs of k, the odd one first, each step an fma with DAZ/FTZ, and a zero pair when K is
// odd. Hand-computed edges (the pair order, odd K turning -0 into +0, denormal inputs read as zero, results flushed,
// the window where x86's tininess after rounding flushes what std::fma rounds up to FLT_MIN), f32 and f16 weights
// keeping k ascending with plain fma, and a sweep over the reference's row blocks and column tiles against a
// per-element chain (its step: the layer oracle's own, oracle/bf16_step.h). The reference is called directly with
// f32 x and an f32 output, which the public operator (weight and output in x's dtype) cannot express, so every bit
// of the sum shows.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "oracle/bf16_step.h"
#include "reference/grouped_matmul.h"
#include "util/compare.h"
#include "util/random.h"

namespace moefuse {
namespace {

// y [1, 1] (f32) = reference dot product of x (f32 values, K of them) with the column w (values exact in `wdt`).
float ref_dot(const std::vector<float>& x, const std::vector<float>& w, DType wdt) {
  const int64_t K = int64_t(x.size());
  reference::GroupedMatmulArgs a;
  a.x = Tensor::from_values<float>({1, K}, std::span<const float>(x));
  const Tensor wf = Tensor::from_values<float>({K, 1}, std::span<const float>(w));
  a.weight = wf.to(wdt);
  for (int64_t k = 0; k < K; ++k) EXPECT_EQ(a.weight.item({k, 0}), double(w[size_t(k)])) << "not exact in the dtype";
  const Tensor y = Tensor::empty(DType::f32, {1, 1});
  reference::grouped_matmul(a, y);
  return y.data_as<const float>()[0];
}

uint32_t bits(float v) { return std::bit_cast<uint32_t>(v); }

constexpr float kMin = 0x1p-126f;  // FLT_MIN

TEST(GroupedMatmulBf16Contract, PairsOfKTheOddOneFirst) {
  // x1 * w1 = 1 + 2^-7 + 2^-23 + 2^-30 needs 31 bits. Odd first: acc = RN(x1 w1) = 1 + 2^-7 + 2^-23, then
  // acc - 1 = 2^-7 + 2^-23. k ascending (the f32 contract): -1 first, then fma gives 2^-7 + 2^-23 + 2^-30 exactly.
  const std::vector<float> x = {-1.0f, 1.0f + 0x1p-23f}, w = {1.0f, 1.0f + 0x1p-7f};
  EXPECT_EQ(ref_dot(x, w, DType::bf16), 0x1p-7f + 0x1p-23f);
  EXPECT_EQ(ref_dot(x, w, DType::f32), 0x1p-7f + 0x1p-23f + 0x1p-30f);
  EXPECT_EQ(ref_dot(x, w, DType::f16), 0x1p-7f + 0x1p-23f + 0x1p-30f);
  // K = 3: the third term follows the zero pair, (x2, w2) = (5, 0) adds nothing.
  EXPECT_EQ(ref_dot({-1.0f, 1.0f + 0x1p-23f, 5.0f}, {1.0f, 1.0f + 0x1p-7f, 0.0f}, DType::bf16), 0x1p-7f + 0x1p-23f);
}

TEST(GroupedMatmulBf16Contract, TheZeroPairOfOddKTurnsMinusZeroIntoPlusZero) {
  // K = 2: 2^-70 * -2^-70 = -2^-140 is flushed to -0; then 0 * -1 = -0 and -0 + -0 = -0.
  const float m0 = ref_dot({0.0f, 0x1p-70f}, {-1.0f, -0x1p-70f}, DType::bf16);
  EXPECT_EQ(bits(m0), bits(-0.0f));
  // K = 3: the same pair, then the zero pair fma(0, 0, -0) = +0, then 0 * -1 + +0 = +0.
  const float p0 = ref_dot({0.0f, 0x1p-70f, 0.0f}, {-1.0f, -0x1p-70f, -1.0f}, DType::bf16);
  EXPECT_EQ(bits(p0), bits(0.0f));
  // f32 weights: no flush, so -2^-140 (a subnormal) stays.
  EXPECT_EQ(ref_dot({0.0f, 0x1p-70f}, {-1.0f, -0x1p-70f}, DType::f32), -0x1p-140f);
}

TEST(GroupedMatmulBf16Contract, DenormalInputsAreReadAsZero) {
  // A subnormal x (f32) or w (bf16) times 2^100 would be 2^-30; DAZ reads it as zero.
  EXPECT_EQ(bits(ref_dot({0x1p-130f}, {0x1p100f}, DType::bf16)), bits(0.0f));
  EXPECT_EQ(bits(ref_dot({0x1p100f}, {0x1p-130f}, DType::bf16)), bits(0.0f));
  EXPECT_EQ(bits(ref_dot({-0x1p-130f, 1.0f}, {0x1p100f, 0.5f}, DType::bf16)), bits(0.5f));
  // f32 and f16 weights: read exactly.
  EXPECT_EQ(ref_dot({0x1p-130f}, {0x1p100f}, DType::f32), 0x1p-30f);
  EXPECT_EQ(ref_dot({0x1p-130f}, {0x1p10f}, DType::f16), 0x1p-120f);
}

TEST(GroupedMatmulBf16Contract, TinyResultsAreFlushedToAZeroOfTheirSign) {
  EXPECT_EQ(bits(ref_dot({0x1p-70f}, {0x1p-70f}, DType::bf16)), bits(0.0f));
  EXPECT_EQ(bits(ref_dot({-0x1p-70f}, {0x1p-70f}, DType::bf16)), bits(-0.0f));
  EXPECT_EQ(ref_dot({0x1p-70f}, {0x1p-56f}, DType::bf16), kMin);  // FLT_MIN itself is normal: kept
  EXPECT_EQ(ref_dot({0x1p-70f}, {0x1p-70f}, DType::f32), 0x1p-140f);
  // A sum that cancels: 2^-125 - 1.5 * 2^-125 = -2^-126 stays; 2^-125 - 1.25 * 2^-125 = -2^-127 is flushed.
  EXPECT_EQ(ref_dot({-1.5f, 1.0f}, {0x1p-125f, 0x1p-125f}, DType::bf16), -kMin);
  EXPECT_EQ(bits(ref_dot({-1.25f, 1.0f}, {0x1p-125f, 0x1p-125f}, DType::bf16)), bits(-0.0f));
}

TEST(GroupedMatmulBf16Contract, TininessIsDecidedAfterRoundingTo24Bits) {
  // FLT_MIN - 2^-150: std::fma rounds it to FLT_MIN (subnormal precision, ties to even), but at 24 bits with an
  // unbounded exponent it is representable and below FLT_MIN: tiny, so flushed.
  EXPECT_EQ(bits(ref_dot({1.0f - 0x1p-24f}, {kMin}, DType::bf16)), bits(0.0f));
  EXPECT_EQ(bits(ref_dot({-1.0f + 0x1p-24f}, {kMin}, DType::bf16)), bits(-0.0f));
  EXPECT_EQ(bits(ref_dot({-0x1p-24f, 1.0f}, {kMin, kMin}, DType::bf16)), bits(0.0f));  // FLT_MIN, then - 2^-150
  EXPECT_EQ(ref_dot({1.0f - 0x1p-24f}, {kMin}, DType::f32), kMin);                       // plain fma
  // FLT_MIN - 2^-151 is a tie at 24 bits that rounds to even, FLT_MIN: not tiny.
  EXPECT_EQ(ref_dot({-0x1p-25f, 1.0f}, {kMin, kMin}, DType::bf16), kMin);
  EXPECT_EQ(ref_dot({0x1p-25f, -1.0f}, {kMin, kMin}, DType::bf16), -kMin);
  // Just below that tie: FLT_MIN - 2^-151 - 2^-152, tiny.
  EXPECT_EQ(bits(ref_dot({-0x1.8p-25f, 1.0f}, {kMin, kMin}, DType::bf16)), bits(0.0f));
}

// Every output element of the reference (its 8-row blocks, 256-column tiles, pairs across them) against the chain
// written per element.
TEST(GroupedMatmulBf16Contract, EveryElementFollowsTheChainAcrossRowBlocksAndColumnTiles) {
  testing::Rng rng(77);
  for (int64_t K : {1, 2, 3, 8, 17, 64, 129}) {
    const int64_t M = 11, N = 300;
    reference::GroupedMatmulArgs a;
    Tensor x = rng.normal_tensor(DType::f32, {M, K});
    Tensor w = rng.normal_tensor(DType::bf16, {K, N});
    // Some tiny and subnormal values, so that DAZ and FTZ are exercised in the chains too.
    for (int64_t i = 0; i < x.numel(); i += 7) x.data_as<float>()[i] *= (i % 2 ? 0x1p-127f : 0x1p-60f);
    for (int64_t i = 0; i < w.numel(); i += 5) {
      bfloat16& v = w.data_as<bfloat16>()[i];
      v = to_bf16(to_f32(v) * 0x1p-66f);
    }
    a.x = x;
    a.weight = w;
    const Tensor y = Tensor::empty(DType::f32, {M, N});
    reference::grouped_matmul(a, y);
    Tensor want = Tensor::empty(DType::f32, {M, N});
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        auto xk = [&](int64_t k) { return k < K ? x.data_as<const float>()[m * K + k] : 0.0f; };
        auto wk = [&](int64_t k) { return k < K ? to_f32(w.data_as<const bfloat16>()[k * N + n]) : 0.0f; };
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k += 2) {
          acc = oracle::fma_daz_ftz(xk(k + 1), wk(k + 1), acc);
          acc = oracle::fma_daz_ftz(xk(k), wk(k), acc);
        }
        want.data_as<float>()[m * N + n] = acc;
      }
    EXPECT_TENSOR_EQ(want, y) << "K=" << K;
  }
}

}  // namespace
}  // namespace moefuse
