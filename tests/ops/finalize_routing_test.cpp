// npu_moe_finalize_routing against values computed by hand, an independent oracle written from the torch_npu semantics
// (with docs/operators.md, Numerics: fp32 math, -1 indices, determinism), and the round-trip invariant with a routing
// built here by a stable sort.
// Over 500 lines: one suite per operator keeps its oracle next to every case of its contract.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "base/elements.h"
#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

// One call's arguments, in torch_npu order.
struct Args {
  Tensor rows, skip1, skip2, bias, scales, src_to_dst, experts;
  int64_t mode = 0;
  int64_t k = 1;
};

Tensor run(const Args& a) {
  return finalize_routing(a.rows, a.skip1, a.skip2, a.bias, a.scales, a.src_to_dst, a.experts, a.mode, a.k);
}

// the torch_npu semantics, docs/operators.md, Numerics: fp32 math, -1 indices, determinism, written with
// item()/set_item() so it shares no code with the library:
//   acc = skip1 + skip2 | skip1 | (none: starts from the first term)
//   for k in 0..K-1: j = k*N+n (modes 0/1) or n*K+k (modes 2/3); d = src[j]; row = d == -1 ? 0 : rows.flat_row(d)
//                    acc += scales[n,k] * (row + bias[expert[n,k]])   (each factor only when given)
// Every operation is one fp32 operation; the result is rounded once to the rows' dtype by set_item.
Tensor oracle(const Args& a) {
  const int64_t K = a.scales.defined() ? a.scales.size(1) : a.k;
  const int64_t N = a.scales.defined() ? a.scales.size(0) : a.src_to_dst.size(0) / a.k;
  const int64_t H = a.rows.size(-1);
  Tensor out = Tensor::empty(a.rows.dtype(), {N, H});
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t h = 0; h < H; ++h) {
      bool have_acc = false;
      float acc = 0.0f;
      if (a.skip1.defined()) {
        acc = float(a.skip1.item({n, h}));
        have_acc = true;
        if (a.skip2.defined()) {
          float s2 = float(a.skip2.item({n, h}));
          acc = acc + s2;
        }
      }
      for (int64_t k = 0; k < K; ++k) {
        int64_t j = (a.mode == 0 || a.mode == 1) ? k * N + n : n * K + k;
        int64_t d = int64_t(a.src_to_dst.item({j}));
        float row = 0.0f;
        if (d != -1) {
          if (a.rows.dim() == 2) {
            row = float(a.rows.item({d, h}));
          } else {
            int64_t C = a.rows.size(1);
            row = float(a.rows.item({d / C, d % C, h}));
          }
        }
        float v = row;
        if (a.bias.defined()) {
          int64_t e = int64_t(a.experts.item({n, k}));
          float b = float(a.bias.item({e, h}));
          v = v + b;
        }
        float term = v;
        if (a.scales.defined()) {
          float s = float(a.scales.item({n, k}));
          term = s * v;
        }
        acc = have_acc ? acc + term : term;
        have_acc = true;
      }
      out.set_item({n, h}, double(acc));
    }
  }
  return out;
}

Tensor f32(const Shape& shape, std::initializer_list<float> values) {
  return Tensor::from_values<float>(shape, values);
}
Tensor i32(const Shape& shape, std::initializer_list<int32_t> values) {
  return Tensor::from_values<int32_t>(shape, values);
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-computed cases: N = 2 tokens, K = 2 slots, H = 3.
//
// Four expert output rows r0..r3 and where each (token n, slot k) was sent:
//   r0 = [ 1,  2,  3]    (n,k) = (1,0) -> r0      experts [[1, 0],      scales [[0.5, 2   ],
//   r1 = [ 4,  5,  6]    (n,k) = (1,1) -> r1                [0, 1]]               [1,   0.25]]
//   r2 = [ 7,  8,  9]    (n,k) = (0,0) -> r2      bias b0 = [0.5, 0, -0.5], b1 = [1, 1, 1]
//   r3 = [-1, -2, -3]    (n,k) = (0,1) -> r3      skip1 = [[1,1,1],[2,2,2]], skip2 = [[0,1,0],[0.5,0,0]]
//
// out[0] = skip1[0] + skip2[0] + 0.5 * (r2 + b1) + 2 * (r3 + b0)
//        = [1, 2, 1]  + 0.5 * [8, 9, 10] + 2 * [-0.5, -2, -3.5]
//        = [1, 2, 1]  + [4, 4.5, 5]      + [-1, -4, -7]            = [4, 2.5, -1]
// out[1] = skip1[1] + skip2[1] + 1 * (r0 + b0) + 0.25 * (r1 + b1)
//        = [2.5, 2, 2] + [1.5, 2, 2.5] + 0.25 * [5, 6, 7]
//        = [2.5, 2, 2] + [1.5, 2, 2.5] + [1.25, 1.5, 1.75]          = [5.25, 5.5, 6.25]
// Every value is exact in bf16 and f16, so the same numbers hold for every dtype.
// ---------------------------------------------------------------------------------------------------------------

Args hand_args(DType dt, int64_t mode) {
  Args a;
  a.mode = mode;
  a.skip1 = f32({2, 3}, {1, 1, 1, 2, 2, 2}).to(dt);
  a.skip2 = f32({2, 3}, {0, 1, 0, 0.5f, 0, 0}).to(dt);
  a.bias = f32({2, 3}, {0.5f, 0, -0.5f, 1, 1, 1}).to(dt);
  a.scales = f32({2, 2}, {0.5f, 2, 1, 0.25f}).to(dt);
  a.experts = i32({2, 2}, {1, 0, 0, 1});
  if (mode == 0 || mode == 2) {
    a.rows = f32({4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3}).to(dt);
    // (0,0)->2, (0,1)->3, (1,0)->0, (1,1)->1.
    a.src_to_dst = mode == 0 ? i32({4}, {2, 0, 3, 1})   // k-major: j = k*N + n
                             : i32({4}, {2, 3, 0, 1});  // token-major: j = n*K + k
  } else {
    // [E=2, C=3, H=3]: the same rows at flat positions 0, 2, 3, 4 (r0, r2, r3, r1), padding 9s elsewhere.
    a.rows = f32({2, 3, 3}, {1, 2, 3, 9, 9, 9, 7, 8, 9, -1, -2, -3, 4, 5, 6, 9, 9, 9}).to(dt);
    a.src_to_dst = mode == 1 ? i32({4}, {2, 0, 3, 4}) : i32({4}, {2, 3, 0, 4});
  }
  return a;
}

class FinalizeRoutingHand : public ::testing::TestWithParam<DType> {};

TEST_P(FinalizeRoutingHand, EveryModeGivesTheHandComputedValues) {
  const DType dt = GetParam();
  Tensor expected = f32({2, 3}, {4, 2.5f, -1, 5.25f, 5.5f, 6.25f}).to(dt);
  for (int64_t mode = 0; mode < 4; ++mode) {
    Args a = hand_args(dt, mode);
    EXPECT_TENSOR_EQ(expected, run(a)) << "drop_pad_mode " << mode;
    a.k = 2;  // k equal to scales.size(1) is the same call
    EXPECT_TENSOR_EQ(expected, run(a)) << "drop_pad_mode " << mode << ", k = 2";
    EXPECT_TENSOR_EQ(expected, oracle(a)) << "the oracle agrees with the hand computation";
  }
}

TEST_P(FinalizeRoutingHand, DroppedEntryWithAndWithoutBias) {
  // Drop (1,1): its index becomes -1. With bias the slot still contributes 0.25 * (0 + b1) = [0.25, 0.25, 0.25]:
  //   out[1] = [2.5, 2, 2] + [1.5, 2, 2.5] + [0.25, 0.25, 0.25] = [4.25, 4.25, 4.75]
  // Without bias: out[0] = [1, 2, 1] + 0.5 * [7, 8, 9] + 2 * [-1, -2, -3] = [2.5, 2, -0.5]
  //               out[1] = [2.5, 2, 2] + [1, 2, 3] + 0.25 * 0 = [3.5, 4, 5]
  const DType dt = GetParam();
  for (int64_t mode = 0; mode < 4; ++mode) {
    Args a = hand_args(dt, mode);
    // (n,k) = (1,1) sits at j = k*N + n = 3 (k-major) and at j = n*K + k = 3 (token-major).
    a.src_to_dst.set_item({3}, -1);
    EXPECT_TENSOR_EQ(f32({2, 3}, {4, 2.5f, -1, 4.25f, 4.25f, 4.75f}).to(dt), run(a)) << "mode " << mode;
    a.bias = Tensor{};
    EXPECT_TENSOR_EQ(f32({2, 3}, {2.5f, 2, -0.5f, 3.5f, 4, 5}).to(dt), run(a)) << "mode " << mode << " no bias";
    a.experts = Tensor{};
    EXPECT_TENSOR_EQ(f32({2, 3}, {2.5f, 2, -0.5f, 3.5f, 4, 5}).to(dt), run(a)) << "mode " << mode << " no ids";
  }
}

TEST_P(FinalizeRoutingHand, NoOptionalInputs) {
  // No skip, bias or scales, k = 2: out[n] = sum of its two rows.
  //   out[0] = r2 + r3 = [6, 6, 6], out[1] = r0 + r1 = [5, 7, 9]
  const DType dt = GetParam();
  for (int64_t mode = 0; mode < 4; ++mode) {
    Args a = hand_args(dt, mode);
    a.skip1 = a.skip2 = a.bias = a.scales = a.experts = Tensor{};
    a.k = 2;
    EXPECT_TENSOR_EQ(f32({2, 3}, {6, 6, 6, 5, 7, 9}).to(dt), run(a)) << "mode " << mode;
    // Only skip1: [1,1,1] + [6,6,6], [2,2,2] + [5,7,9].
    a.skip1 = hand_args(dt, mode).skip1;
    EXPECT_TENSOR_EQ(f32({2, 3}, {7, 7, 7, 7, 9, 11}).to(dt), run(a)) << "mode " << mode << " skip1";
    // k = 1 reads the same four indices as four tokens of one slot each: out = the rows in index order.
    a.skip1 = Tensor{};
    a.k = 1;
    Tensor out = run(a);
    ASSERT_EQ(out.shape(), (Shape{4, 3}));
    EXPECT_EQ(out.item({0, 0}), 7.0);  // src[0] = 2 -> r2 in every mode
  }
}

INSTANTIATE_TEST_SUITE_P(AllFloatTypes, FinalizeRoutingHand, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(FinalizeRouting, ScalesNoneMeansOneAndNComesFromK) {
  // 6 indices, k = 3 -> N = 2, K = 3 (k-major). rows[i] = [i]. Token 0 takes j = 0, 2, 4 -> rows 5, 1, 3 -> 9;
  // token 1 takes j = 1, 3, 5 -> rows 0, 2, 4 -> 6.
  Tensor rows = f32({6, 1}, {0, 1, 2, 3, 4, 5});
  Tensor src = i32({6}, {5, 0, 1, 2, 3, 4});
  Tensor out = finalize_routing(rows, {}, {}, {}, {}, src, {}, 0, 3);
  EXPECT_TENSOR_EQ(f32({2, 1}, {9, 6}), out);
  // Token-major: token 0 takes j = 0, 1, 2 -> rows 5, 0, 1 -> 6; token 1 takes rows 2, 3, 4 -> 9.
  EXPECT_TENSOR_EQ(f32({2, 1}, {6, 9}), finalize_routing(rows, {}, {}, {}, {}, src, {}, 2, 3));
}

TEST(FinalizeRouting, EmptyBatch) {
  for (int64_t mode = 0; mode < 4; ++mode) {
    Tensor rows = (mode == 0 || mode == 2) ? Tensor::zeros(DType::bf16, {0, 5}) : Tensor::zeros(DType::bf16, {3, 2, 5});
    Tensor src = Tensor::zeros(DType::i32, {0});
    Tensor out = finalize_routing(rows, Tensor::zeros(DType::bf16, {0, 5}), {}, {}, {}, src, {}, mode, 4);
    EXPECT_EQ(out.shape(), (Shape{0, 5}));
    EXPECT_EQ(out.dtype(), DType::bf16);
    Tensor out2 = finalize_routing(rows, {}, {}, Tensor::zeros(DType::bf16, {3, 5}), Tensor::zeros(DType::f32, {0, 4}),
                                   src, Tensor::zeros(DType::i32, {0, 4}), mode);
    EXPECT_EQ(out2.shape(), (Shape{0, 5}));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Precision and order (docs/operators.md, Numerics: fp32 math, determinism).
// ---------------------------------------------------------------------------------------------------------------

TEST(FinalizeRouting, F16AccumulatesInF32) {
  // skip1 = 2048, two slots of 1. In fp16 (spacing 2 at 2048) a native accumulation rounds 2048 + 1 back to 2048
  // twice and gives 2048; fp32 accumulation gives 2050, which fp16 holds exactly.
  Tensor rows = f32({2, 1}, {1, 1}).to(DType::f16);
  Tensor skip1 = f32({1, 1}, {2048}).to(DType::f16);
  Tensor out = finalize_routing(rows, skip1, {}, {}, {}, i32({2}, {0, 1}), {}, 2, 2);
  EXPECT_EQ(out.item({0, 0}), 2050.0);
}

TEST(FinalizeRouting, Bf16RoundsOnceAtTheEnd) {
  // bf16 spacing at 256 is 2: 256 + 1 + 1 = 258 exactly when accumulated in fp32 (257 would round to 256 per step).
  Tensor rows = f32({2, 1}, {1, 1}).to(DType::bf16);
  Tensor skip1 = f32({1, 1}, {256}).to(DType::bf16);
  Tensor out = finalize_routing(rows, skip1, {}, {}, {}, i32({2}, {0, 1}), {}, 0, 2);
  EXPECT_EQ(out.item({0, 0}), 258.0);
  // And the final rounding is to nearest even: 256 + 1 = 257 -> 256 (tie, even mantissa), 256 + 3 = 259 -> 260.
  EXPECT_EQ(finalize_routing(rows.narrow(0, 0, 1), skip1, {}, {}, {}, i32({1}, {0}), {}, 0, 1).item({0, 0}), 256.0);
  Tensor three = f32({1, 1}, {3}).to(DType::bf16);
  EXPECT_EQ(finalize_routing(three, skip1, {}, {}, {}, i32({1}, {0}), {}, 0, 1).item({0, 0}), 260.0);
}

TEST(FinalizeRouting, SummationOrderIsSkipsThenSlotsInOrder) {
  // (skip1 + skip2) first: (1e8 + -1e8) + 1 = 1, whereas 1e8 + 1 would round to 1e8 and give 0.
  Tensor rows = f32({1, 1}, {1});
  Tensor out = finalize_routing(rows, f32({1, 1}, {1e8f}), f32({1, 1}, {-1e8f}), {}, {}, i32({1}, {0}), {}, 0, 1);
  EXPECT_EQ(out.item({0, 0}), 1.0);
  // Slots 0, 1, 2 in order: (1e8 + 1) - 1e8 = 0; any other order gives 1.
  Tensor three = f32({3, 1}, {1e8f, 1, -1e8f});
  EXPECT_EQ(finalize_routing(three, {}, {}, {}, {}, i32({3}, {0, 1, 2}), {}, 2, 3).item({0, 0}), 0.0);
  // Slot order follows k, not the row index: same rows visited as 0, 2, 1 -> (1e8 - 1e8) + 1 = 1.
  EXPECT_EQ(finalize_routing(three, {}, {}, {}, {}, i32({3}, {0, 2, 1}), {}, 2, 3).item({0, 0}), 1.0);
}

TEST(FinalizeRouting, RowPlusBiasThenScaleWithoutFma) {
  // acc = -(1 + 2^-11); term = s * v with s = v = 1 + 2^-12, whose exact product 1 + 2^-11 + 2^-24 rounds (tie to
  // even) to 1 + 2^-11 in fp32, so acc + term = 0. A fused multiply-add would keep the 2^-24 and give 2^-24.
  const float a = 1.0f + std::ldexp(1.0f, -12);
  const float c = -(1.0f + std::ldexp(1.0f, -11));
  Tensor out = finalize_routing(f32({1, 1}, {a}), f32({1, 1}, {c}), {}, {}, f32({1, 1}, {a}), i32({1}, {0}), {}, 2);
  EXPECT_EQ(out.item({0, 0}), 0.0);
  // (row + bias) is formed before the scale: row = 2^24, bias = 1, scale = 3 -> (2^24 + 1 -> 2^24) * 3 = 50331648;
  // distributing, 3 * 2^24 + 3 = 50331651 rounds to 50331652 (spacing 4 there), so the two orders differ.
  Tensor out2 = finalize_routing(f32({1, 1}, {16777216.0f}), {}, {}, f32({1, 1}, {1}), f32({1, 1}, {3}),
                                 i32({1}, {0}), i32({1, 1}, {0}), 0);
  EXPECT_EQ(out2.item({0, 0}), 50331648.0);
}

TEST(FinalizeRouting, WithoutSkipTheSumStartsFromTheFirstTerm) {
  // A single term of -0 stays -0 (starting from +0 would give +0). Compared bitwise.
  Tensor out = finalize_routing(f32({1, 2}, {-0.0f, 3}), {}, {}, {}, {}, i32({1}, {0}), {}, 0, 1);
  EXPECT_TENSOR_EQ(f32({1, 2}, {-0.0f, 3}), out);
  EXPECT_TRUE(std::signbit(out.item({0, 0})));
}

TEST(FinalizeRouting, F32ScalesWithLowPrecisionRows) {
  // scales f32 for bf16/f16 rows (extension): the scales are used at full fp32 precision (the oracle widens them
  // exactly), which is not the same as first rounding them to the rows' dtype.
  Rng rng(77);
  for (DType dt : {DType::bf16, DType::f16}) {
    Args a;
    a.rows = rng.uniform_tensor(dt, {12, 16}, -4, 4);
    a.scales = rng.uniform_tensor(DType::f32, {4, 3}, 0, 1);
    std::vector<int32_t> perm(12);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng.engine());
    a.src_to_dst = Tensor::from_values<int32_t>({12}, std::span<const int32_t>(perm));
    a.mode = 2;
    Tensor out = run(a);
    EXPECT_TENSOR_EQ(oracle(a), out);
    Args rounded = a;
    rounded.scales = a.scales.to(dt);
    EXPECT_FALSE(testing::tensors_equal(run(rounded), out)) << "the f32 scales were rounded to " << dtype_name(dt);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Round trip: permute x by a stable sort of random expert ids (as init_routing does, written here), feed the
// permuted rows through identity experts, finalize with unit scales: out = (kept slots) * x + skip1 + skip2.
// ---------------------------------------------------------------------------------------------------------------

struct Routing {
  std::vector<int64_t> experts;     // [N*K] token-major
  std::vector<int64_t> dst;         // [N*K] token-major src -> dst (-1 = dropped)
  int64_t rows = 0;                 // number of destination rows (N*K, or E*C)
};

// Stable sort of the token-major positions t = n*K + k by expert id. Dropless: dst[perm[i]] = i. Drop/pad with
// capacity C: the first C positions of each expert go to e*C + slot, the others are dropped (-1).
Routing make_routing(Rng& rng, int64_t N, int64_t K, int64_t E, int64_t C /* -1: dropless */) {
  Routing r;
  r.experts.resize(size_t(N * K));
  for (auto& e : r.experts) e = rng.integer(0, E - 1);
  std::vector<int64_t> perm(size_t(N * K));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t x, int64_t y) { return r.experts[size_t(x)] < r.experts[size_t(y)]; });
  r.dst.assign(size_t(N * K), -1);
  if (C < 0) {
    for (size_t i = 0; i < perm.size(); ++i) r.dst[size_t(perm[i])] = int64_t(i);
    r.rows = N * K;
  } else {
    std::vector<int64_t> used(size_t(E), 0);
    for (int64_t t : perm) {
      int64_t e = r.experts[size_t(t)];
      if (used[size_t(e)] < C) r.dst[size_t(t)] = e * C + used[size_t(e)]++;
    }
    r.rows = E * C;
  }
  return r;
}

// The index tensor of `mode` (k-major for 0/1) from a token-major map.
Tensor index_tensor(const std::vector<int64_t>& token_major, int64_t N, int64_t K, int64_t mode, DType dt) {
  Tensor t = Tensor::empty(dt, {N * K});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      int64_t j = (mode == 0 || mode == 1) ? k * N + n : n * K + k;
      t.set_item({j}, double(token_major[size_t(n * K + k)]));
    }
  return t;
}

TEST(FinalizeRouting, RoundTripThroughIdentityExperts) {
  Rng rng(2024);
  const int64_t H = 7;
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t mode = 0; mode < 4; ++mode) {
      for (int64_t N : {1, 5, 33}) {
        for (int64_t K : {1, 2, 8}) {
          const bool drop = mode == 1 || mode == 3;
          const int64_t E = rng.integer(1, 12);
          const int64_t C = drop ? rng.integer(0, N) : -1;
          Routing r = make_routing(rng, N, K, E, C);
          // Small integers: every partial sum (|.| <= 8*4 + 2*16 + 8*4) is exact in bf16 and f16.
          Tensor x = rng.int_tensor(DType::i32, {N, H}, -4, 4).to(dt);
          Tensor skip1 = rng.int_tensor(DType::i32, {N, H}, -16, 16).to(dt);
          Tensor skip2 = rng.int_tensor(DType::i32, {N, H}, -16, 16).to(dt);
          Tensor bias = rng.int_tensor(DType::i32, {E, H}, -4, 4).to(dt);
          // Scatter x into the expanded rows (zero where nothing lands).
          Tensor rows = Tensor::zeros(dt, {r.rows, H});
          for (int64_t t = 0; t < N * K; ++t)
            if (r.dst[size_t(t)] >= 0)
              for (int64_t h = 0; h < H; ++h) rows.set_item({r.dst[size_t(t)], h}, x.item({t / K, h}));
          if (drop) rows = rows.reshape({E, C, H});
          Tensor src = index_tensor(r.dst, N, K, mode, rng.coin() ? DType::i32 : DType::i64);
          Tensor experts = Tensor::empty(DType::i32, {N, K});
          for (int64_t t = 0; t < N * K; ++t) experts.set_item({t / K, t % K}, double(r.experts[size_t(t)]));

          Tensor expected = Tensor::empty(dt, {N, H});
          Tensor expected_bias = Tensor::empty(dt, {N, H});
          for (int64_t n = 0; n < N; ++n)
            for (int64_t h = 0; h < H; ++h) {
              double kept = 0, b = 0;
              for (int64_t k = 0; k < K; ++k) {
                kept += r.dst[size_t(n * K + k)] >= 0 ? 1 : 0;
                b += bias.item({r.experts[size_t(n * K + k)], h});
              }
              double base = kept * x.item({n, h}) + skip1.item({n, h}) + skip2.item({n, h});
              expected.set_item({n, h}, base);
              expected_bias.set_item({n, h}, base + b);
            }
          SCOPED_TRACE(std::string(dtype_name(dt)) + " mode " + std::to_string(mode) + " N " + std::to_string(N) +
                       " K " + std::to_string(K) + " E " + std::to_string(E) + " C " + std::to_string(C));
          EXPECT_TENSOR_EQ(expected, finalize_routing(rows, skip1, skip2, {}, {}, src, {}, mode, K));
          Tensor ones = Tensor::full(dt, {N, K}, 1.0);
          EXPECT_TENSOR_EQ(expected, finalize_routing(rows, skip1, skip2, {}, ones, src, {}, mode));
          // The bias of a dropped slot is still added (docs/operators.md, Numerics: -1 indices).
          EXPECT_TENSOR_EQ(expected_bias, finalize_routing(rows, skip1, skip2, bias, {}, src, experts, mode, K));
          if (!drop) {
            // Dropless with all slots kept: exactly K * x + skip1 + skip2.
            Tensor kx = Tensor::empty(dt, {N, H});
            for (int64_t n = 0; n < N; ++n)
              for (int64_t h = 0; h < H; ++h)
                kx.set_item({n, h}, double(K) * x.item({n, h}) + skip1.item({n, h}) + skip2.item({n, h}));
            EXPECT_TENSOR_EQ(kx, expected);
          }
        }
      }
    }
  }
}

TEST(FinalizeRouting, ResultOfATokenDoesNotDependOnTheBatch) {
  // Drop/pad rows [E, C, H] do not depend on N, so each token can be finalized alone with the same rows.
  Rng rng(31);
  const int64_t N = 9, K = 3, E = 4, C = 5, H = 33;
  Routing r = make_routing(rng, N, K, E, C);
  Tensor rows = rng.normal_tensor(DType::bf16, {E, C, H});
  Tensor skip1 = rng.normal_tensor(DType::bf16, {N, H});
  Tensor bias = rng.normal_tensor(DType::bf16, {E, H});
  Tensor scales = rng.uniform_tensor(DType::f32, {N, K}, 0, 1);
  Tensor experts = Tensor::empty(DType::i32, {N, K});
  for (int64_t t = 0; t < N * K; ++t) experts.set_item({t / K, t % K}, double(r.experts[size_t(t)]));
  Tensor src = index_tensor(r.dst, N, K, 3, DType::i32);
  Tensor all = finalize_routing(rows, skip1, {}, bias, scales, src, experts, 3);
  for (int64_t n = 0; n < N; ++n) {
    Tensor one = finalize_routing(rows, skip1.narrow(0, n, 1), {}, bias, scales.narrow(0, n, 1),
                                  src.narrow(0, n * K, K), experts.narrow(0, n, 1), 3);
    EXPECT_TENSOR_EQ(all.narrow(0, n, 1).contiguous(), one) << "token " << n;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Random sweeps against the oracle: every mode and dtype, N in {0,1,5,33}, K in {1,2,8}, H in {1,3,64,129}, optional
// inputs drawn at random, i32/i64 indices, -1 entries in every mode; then the same inputs strided.
// ---------------------------------------------------------------------------------------------------------------

Args random_args(Rng& rng, DType dt, int64_t mode, int64_t N, int64_t K, int64_t H) {
  Args a;
  a.mode = mode;
  const bool drop = mode == 1 || mode == 3;
  const int64_t E = rng.integer(1, 6);
  std::vector<int64_t> dst;
  if (drop) {
    const int64_t C = rng.integer(0, N + 1);
    Routing r = make_routing(rng, N, K, E, C);
    dst = r.dst;
    a.rows = rng.uniform_tensor(dt, {E, C, H}, -4, 4);
  } else {
    dst.resize(size_t(N * K));
    std::iota(dst.begin(), dst.end(), 0);
    std::shuffle(dst.begin(), dst.end(), rng.engine());
    for (auto& d : dst)
      if (rng.coin(0.1)) d = -1;
    a.rows = rng.uniform_tensor(dt, {N * K, H}, -4, 4);
  }
  a.src_to_dst = index_tensor(dst, N, K, mode, rng.coin() ? DType::i32 : DType::i64);
  if (rng.coin(0.7)) {
    a.skip1 = rng.uniform_tensor(dt, {N, H}, -8, 8);
    if (rng.coin()) a.skip2 = rng.uniform_tensor(dt, {N, H}, -8, 8);
  }
  const bool with_ids = rng.coin(0.7);
  if (with_ids) a.experts = rng.int_tensor(rng.coin() ? DType::i32 : DType::i64, {N, K}, 0, E - 1);
  if (with_ids && rng.coin()) a.bias = rng.uniform_tensor(dt, {E, H}, -2, 2);
  switch (rng.integer(0, 2)) {
    case 0: a.k = K; break;
    case 1: a.scales = rng.uniform_tensor(dt, {N, K}, -1, 1); a.k = rng.coin() ? 1 : K; break;
    default: a.scales = rng.uniform_tensor(DType::f32, {N, K}, -1, 1); a.k = rng.coin() ? 1 : K; break;
  }
  return a;
}

// A non-contiguous view with the same values: every stride doubled (the gaps hold 99), backed by `keep`.
Tensor spread(const Tensor& t, std::vector<Tensor>& keep) {
  if (!t.defined()) return t;
  Shape big, strides;
  for (int i = 0; i < t.dim(); ++i) big.push_back(std::max<int64_t>(2 * t.size(i), 1));
  Shape cs = contiguous_strides(big);
  for (int i = 0; i < t.dim(); ++i) strides.push_back(2 * cs[i]);
  Tensor storage = Tensor::full(t.dtype(), big, 99.0);
  keep.push_back(storage);
  Tensor v = Tensor::view(storage.data(), t.dtype(), t.shape(), strides);
  for (int64_t flat = 0; flat < t.numel(); ++flat) {
    int64_t rem = flat, off = 0;
    for (int d = t.dim() - 1; d >= 0; --d) {
      off += (rem % t.size(d)) * strides[d];
      rem /= t.size(d);
    }
    store_element(storage.data(), t.dtype(), off, t.item_flat(flat));
  }
  return v.as_readonly();
}

class FinalizeRoutingSweep : public ::testing::TestWithParam<std::tuple<int64_t, DType>> {};

TEST_P(FinalizeRoutingSweep, MatchesOracle) {
  const auto [mode, dt] = GetParam();
  Rng rng(uint64_t(1000 + 10 * mode + int(dt)));
  for (int64_t N : {0, 1, 5, 33})
    for (int64_t K : {1, 2, 8})
      for (int64_t H : {1, 3, 64, 129}) {
        Args a = random_args(rng, dt, mode, N, K, H);
        SCOPED_TRACE("N " + std::to_string(N) + " K " + std::to_string(K) + " H " + std::to_string(H) + " skip1 " +
                     std::to_string(a.skip1.defined()) + " skip2 " + std::to_string(a.skip2.defined()) + " bias " +
                     std::to_string(a.bias.defined()) + " scales " +
                     (a.scales.defined() ? std::string(dtype_name(a.scales.dtype())) : "none") + " k " +
                     std::to_string(a.k));
        Tensor expected = oracle(a);
        Tensor out = run(a);
        EXPECT_TENSOR_EQ(expected, out);

        Tensor into = Tensor::full(dt, {out.size(0), H}, 123.0);
        finalize_routing_out(a.rows, a.skip1, a.skip2, a.bias, a.scales, a.src_to_dst, a.experts, a.mode, a.k, into);
        EXPECT_TENSOR_EQ(expected, into);

        std::vector<Tensor> keep;
        Args s = a;
        s.rows = spread(a.rows, keep);
        s.skip1 = spread(a.skip1, keep);
        s.skip2 = spread(a.skip2, keep);
        s.bias = spread(a.bias, keep);
        s.scales = spread(a.scales, keep);
        s.src_to_dst = spread(a.src_to_dst, keep);
        s.experts = spread(a.experts, keep);
        EXPECT_TENSOR_EQ(expected, run(s)) << "strided inputs";
      }
}

INSTANTIATE_TEST_SUITE_P(ModesAndTypes, FinalizeRoutingSweep,
                         ::testing::Combine(::testing::Values<int64_t>(0, 1, 2, 3),
                                            ::testing::Values(DType::f32, DType::bf16, DType::f16)),
                         [](const auto& info) {
                           return "mode" + std::to_string(std::get<0>(info.param)) + "_" +
                                  std::string(dtype_name(std::get<1>(info.param)));
                         });

TEST(FinalizeRouting, TransposedRowsAndScales) {
  // Realistic non-contiguous layouts: rows stored [H, N*K] and read transposed, scales stored [K, N].
  Rng rng(8);
  const int64_t N = 6, K = 4, H = 10;
  Tensor rows_t = rng.normal_tensor(DType::f32, {H, N * K});
  Tensor scales_t = rng.uniform_tensor(DType::f32, {K, N}, 0, 1);
  std::vector<int64_t> dst(size_t(N * K));
  std::iota(dst.begin(), dst.end(), 0);
  std::shuffle(dst.begin(), dst.end(), rng.engine());
  Tensor src = index_tensor(dst, N, K, 2, DType::i32);
  Tensor skip1 = rng.normal_tensor(DType::f32, {N, H});
  Tensor out = finalize_routing(rows_t.transpose(0, 1), skip1, {}, {}, scales_t.transpose(0, 1), src, {}, 2);
  EXPECT_TENSOR_EQ(finalize_routing(rows_t.transpose(0, 1).contiguous(), skip1, {}, {},
                                    scales_t.transpose(0, 1).contiguous(), src, {}, 2),
                   out);
}

TEST(FinalizeRouting, ExtremeValuesPropagate) {
  Tensor rows = f32({2, 3}, {INFINITY, NAN, 3e38f, 1, 1, 3e38f});
  Tensor out = finalize_routing(rows, {}, {}, {}, {}, i32({2}, {0, 1}), {}, 2, 2);
  EXPECT_EQ(out.item({0, 0}), INFINITY);
  EXPECT_TRUE(std::isnan(out.item({0, 1})));
  EXPECT_EQ(out.item({0, 2}), INFINITY);  // 3e38 + 3e38 overflows fp32
  // A dropped slot with a zero scale contributes 0 * (0 + bias) = 0, but an infinite bias still gives NaN.
  Tensor bias = f32({1, 3}, {INFINITY, 0, 0});
  Tensor out2 = finalize_routing(rows, {}, {}, bias, f32({1, 2}, {1, 0}), i32({2}, {1, -1}), i32({1, 2}, {0, 0}), 2);
  EXPECT_TRUE(std::isnan(out2.item({0, 0})));
  EXPECT_EQ(out2.item({0, 1}), 1.0);
}

TEST(FinalizeRouting, ExpertIdsAreNotReadWithoutBias) {
  // Without bias, expert_for_source_row is only shape-checked: out-of-range ids are accepted.
  Args a = hand_args(DType::f32, 2);
  a.bias = Tensor{};
  a.experts = i32({2, 2}, {-5, 100, 7, 7});
  Args b = a;
  b.experts = Tensor{};
  EXPECT_TENSOR_EQ(run(b), run(a));
}

TEST(FinalizeRouting, OutVariantWritesTheCallersBuffer) {
  Args a = hand_args(DType::bf16, 3);
  Tensor out = Tensor::full(DType::bf16, {2, 3}, 7.0);
  finalize_routing_out(a.rows, a.skip1, a.skip2, a.bias, a.scales, a.src_to_dst, a.experts, a.mode, a.k, out);
  EXPECT_TENSOR_EQ(run(a), out);
}

// ---------------------------------------------------------------------------------------------------------------
// Errors: each names the op, the argument, what was expected and what was given; a failed _out call leaves `out`
// untouched.
// ---------------------------------------------------------------------------------------------------------------

// Calls both forms; the _out form gets a buffer of the right dtype and shape and must leave it untouched.
template <class Err>
::testing::AssertionResult fails(const Args& a, std::initializer_list<std::string_view> fragments,
                                 const Shape& out_shape = {2, 3}) {
  auto r = testing::throws_with<Err>([&] { run(a); }, fragments);
  if (!r) return r;
  const DType dt = a.rows.defined() ? a.rows.dtype() : DType::f32;
  const bool float_rows = dt == DType::f32 || dt == DType::bf16 || dt == DType::f16;
  Tensor out = Tensor::full(float_rows ? dt : DType::f32, out_shape, 42.0);
  Tensor before = out.clone();
  r = testing::throws_with<Err>(
      [&] {
        finalize_routing_out(a.rows, a.skip1, a.skip2, a.bias, a.scales, a.src_to_dst, a.experts, a.mode, a.k, out);
      },
      fragments);
  if (!r) return r << " (finalize_routing_out)";
  auto same = testing::tensors_equal(before, out);
  if (!same) return same << " (out was written by a failed call)";
  return ::testing::AssertionSuccess();
}

#define EXPECT_FAILS(ErrType, args, ...) EXPECT_TRUE(fails<ErrType>((args), {__VA_ARGS__}))

TEST(FinalizeRouting, ErrorsOnRowsModeAndK) {
  const char* op = "finalize_routing";
  Args a = hand_args(DType::f32, 0);
  Args b = a;
  b.rows = Tensor{};
  EXPECT_FAILS(ValueError, b, op, "expanded_permuted_rows", "expected a tensor", "got none");
  b.rows = a.rows.to(DType::i32);
  EXPECT_FAILS(TypeError, b, op, "expanded_permuted_rows", "f32, bf16 or f16", "got i32");
  b = a;
  b.mode = 4;
  EXPECT_FAILS(ValueError, b, op, "drop_pad_mode", "0 <= drop_pad_mode <= 3", "got 4");
  b.mode = -1;
  EXPECT_FAILS(ValueError, b, op, "drop_pad_mode", "0 <= drop_pad_mode <= 3", "got -1");
  b = a;
  b.k = 0;
  EXPECT_FAILS(ValueError, b, op, "k", "k >= 1", "got 0");
  b.k = 3;  // scales say K = 2
  EXPECT_FAILS(ValueError, b, op, "k", "1 or K = scales.size(1) = 2", "got 3");
  b = a;
  b.rows = Tensor::zeros(DType::f32, {2, 2, 3});  // 3-D rows in a dropless mode
  EXPECT_FAILS(ValueError, b, op, "expanded_permuted_rows", "a 2-D tensor [N*K, H] for drop_pad_mode 0",
               "f32[2, 2, 3]");
  b = hand_args(DType::f32, 3);
  b.rows = Tensor::zeros(DType::f32, {6, 3});  // 2-D rows in a drop/pad mode
  EXPECT_FAILS(ValueError, b, op, "expanded_permuted_rows", "a 3-D tensor [E, C, H] for drop_pad_mode 3",
               "f32[6, 3]");
  b = a;
  b.rows = Tensor::zeros(DType::f32, {5, 3});
  EXPECT_FAILS(ValueError, b, op, "expanded_permuted_rows", "size(0) = N*K = 4", "f32[5, 3]");
}

TEST(FinalizeRouting, ErrorsOnIndexTensors) {
  const char* op = "finalize_routing";
  Args a = hand_args(DType::f32, 0);
  Args b = a;
  b.src_to_dst = Tensor{};
  EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "a tensor", "none");
  b.src_to_dst = f32({4}, {2, 0, 3, 1});
  EXPECT_FAILS(TypeError, b, op, "expanded_src_to_dst_row", "i32 or i64", "got f32");
  b.src_to_dst = i32({2, 2}, {2, 0, 3, 1});
  EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "a 1-D tensor", "i32[2, 2]");
  b.src_to_dst = i32({5}, {2, 0, 3, 1, 0});
  EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "shape [N*K] with N = 2, K = 2 (from scales)",
               "i32[5]");
  b = a;
  b.scales = Tensor{};
  b.k = 3;
  EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "a length divisible by k = 3", "i32[4]");

  // Values out of range, dropless: [-1, N*K).
  for (int64_t mode : {0, 2}) {
    b = hand_args(DType::f32, mode);
    b.src_to_dst.set_item({2}, 4);
    EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "values in [-1, 4) (N*K)", "got 4 at index 2");
    b.src_to_dst.set_item({2}, -2);
    EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "values in [-1, 4) (N*K)", "got -2 at index 2");
  }
  // Drop/pad: [-1, E*C) with E*C = 6.
  for (int64_t mode : {1, 3}) {
    b = hand_args(DType::f32, mode);
    b.src_to_dst.set_item({3}, 6);
    EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "values in [-1, 6) (E*C)", "got 6 at index 3");
  }
  // i64 values beyond the i32 range are caught too.
  b = a;
  b.src_to_dst = Tensor::from_values<int64_t>({4}, {2, 0, int64_t(1) << 40, 1});
  EXPECT_FAILS(ValueError, b, op, "expanded_src_to_dst_row", "values in [-1, 4)", "1099511627776 at index 2");

  // expert_for_source_row.
  b = a;
  b.experts = f32({2, 2}, {1, 0, 0, 1});
  EXPECT_FAILS(TypeError, b, op, "expert_for_source_row", "i32 or i64", "got f32");
  b.experts = i32({2, 3}, {1, 0, 0, 1, 0, 0});
  EXPECT_FAILS(ValueError, b, op, "expert_for_source_row", "shape [N, K] = [2, 2]", "i32[2, 3]");
  b.experts = i32({2, 2}, {1, 0, 2, 1});
  EXPECT_FAILS(ValueError, b, op, "expert_for_source_row", "values in [0, 2) (E = bias.size(0))", "got 2 at [1, 0]");
  b.experts = i32({2, 2}, {1, -1, 0, 1});
  EXPECT_FAILS(ValueError, b, op, "expert_for_source_row", "values in [0, 2)", "got -1 at [0, 1]");
  b.experts = Tensor{};
  EXPECT_FAILS(ValueError, b, op, "expert_for_source_row", "a tensor when bias is given", "got none");
}

TEST(FinalizeRouting, ErrorsOnOptionalTensors) {
  const char* op = "finalize_routing";
  Args a = hand_args(DType::f32, 2);
  Args b = a;
  b.skip1 = a.skip1.to(DType::bf16);
  EXPECT_FAILS(TypeError, b, op, "skip1", "dtype f32 (as expanded_permuted_rows)", "got bf16");
  b.skip1 = Tensor::zeros(DType::f32, {2, 4});
  EXPECT_FAILS(ValueError, b, op, "skip1", "shape [N, H] = [2, 3]", "f32[2, 4]");
  b.skip1 = Tensor::zeros(DType::f32, {6});
  EXPECT_FAILS(ValueError, b, op, "skip1", "shape [N, H] = [2, 3]", "f32[6]");
  b = a;
  b.skip1 = Tensor{};
  EXPECT_FAILS(ValueError, b, op, "skip2", "skip2 only together with skip1", "skip2 without skip1");
  b = a;
  b.skip2 = a.skip2.to(DType::f16);
  EXPECT_FAILS(TypeError, b, op, "skip2", "dtype f32 (as expanded_permuted_rows)", "got f16");
  b.skip2 = Tensor::zeros(DType::f32, {3, 3});
  EXPECT_FAILS(ValueError, b, op, "skip2", "shape [N, H] = [2, 3]", "f32[3, 3]");
  b = a;
  b.bias = a.bias.to(DType::bf16);
  EXPECT_FAILS(TypeError, b, op, "bias", "dtype f32 (as expanded_permuted_rows)", "got bf16");
  b.bias = Tensor::zeros(DType::f32, {2, 4});
  EXPECT_FAILS(ValueError, b, op, "bias", "a 2-D tensor [E, H] with H = 3", "f32[2, 4]");
  b.bias = Tensor::zeros(DType::f32, {3});
  EXPECT_FAILS(ValueError, b, op, "bias", "a 2-D tensor [E, H] with H = 3", "f32[3]");
  b = a;
  b.scales = i32({2, 2}, {1, 1, 1, 1});
  EXPECT_FAILS(TypeError, b, op, "scales", "dtype f32", "got i32");
  b.scales = Tensor::zeros(DType::f32, {4});
  EXPECT_FAILS(ValueError, b, op, "scales", "a 2-D tensor [N, K] with K >= 1", "f32[4]");
  b.scales = Tensor::zeros(DType::f32, {2, 0});
  EXPECT_FAILS(ValueError, b, op, "scales", "a 2-D tensor [N, K] with K >= 1", "f32[2, 0]");
  b.scales = Tensor::zeros(DType::f32, {4, 1});  // N*K = 4 but N changes: skip1 [2, 3] no longer matches
  EXPECT_TRUE(fails<ValueError>(b, {op, "skip1", "shape [N, H] = [4, 3]", "f32[2, 3]"}, {4, 3}));

  Args h = hand_args(DType::bf16, 2);
  h.scales = h.scales.to(DType::f16);
  EXPECT_FAILS(TypeError, h, op, "scales", "dtype bf16 (as expanded_permuted_rows) or f32", "got f16");
}

TEST(FinalizeRouting, ErrorsOnTheOutputBuffer) {
  Args a = hand_args(DType::f32, 1);
  auto call = [&](const Tensor& out) {
    finalize_routing_out(a.rows, a.skip1, a.skip2, a.bias, a.scales, a.src_to_dst, a.experts, a.mode, a.k, out);
  };
  Tensor wrong_dtype = Tensor::full(DType::bf16, {2, 3}, 42.0);
  EXPECT_THROWS_MSG(call(wrong_dtype), TypeError, "finalize_routing", "out", "dtype f32", "bf16");
  Tensor wrong_shape = Tensor::full(DType::f32, {2, 4}, 42.0);
  EXPECT_THROWS_MSG(call(wrong_shape), ValueError, "finalize_routing", "out", "shape [2, 3]", "shape [2, 4]");
  EXPECT_TENSOR_EQ(Tensor::full(DType::f32, {2, 4}, 42.0), wrong_shape);
  const float ro[6] = {};
  EXPECT_THROWS_MSG(call(Tensor::view(ro, DType::f32, {2, 3})), ValueError, "out", "writable");
  Tensor base = Tensor::full(DType::f32, {3, 2}, 42.0);
  EXPECT_THROWS_MSG(call(base.transpose(0, 1)), ValueError, "out", "contiguous");
  EXPECT_TENSOR_EQ(Tensor::full(DType::f32, {3, 2}, 42.0), base);
  EXPECT_THROWS_MSG(call(Tensor{}), ValueError, "out", "a tensor", "none");
}

}  // namespace
}  // namespace moefuse
