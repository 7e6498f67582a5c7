// npu_moe_gating_top_k against values computed by hand and an independent oracle written from the torch_npu semantics
// and the project decisions (docs/operators.md, Numerics: ties, no garbage, determinism; renorm semantics in
// include/moefuse/ops/gating.h).
// Over 500 lines: one suite per operator keeps its oracle next to every case of its contract.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/argsort.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::argsort_desc;
using testing::Rng;

std::vector<int64_t> iota_ids(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

// The oracle: the torch_npu semantics step by step, reading x and bias through item() (so it shares no loop with the
// library). Weights follow the same fp32 formula order as the documented contract, so the comparison is bitwise:
//   softmax p = exp(s - max) * (1 / sequential sum), sigmoid p = 1 / (1 + exp(-s)), both with std::exp;
//   w = p[idx]; if sigmoid or renorm: w / (sequential sum over slots + eps); w * scale; one rounding.
GatingTopKResult oracle(const Tensor& x, int64_t k, const GatingTopKOptions& o) {
  const int64_t N = x.size(0), E = x.size(1), G = o.group_count, g = E / G;
  GatingTopKResult r{Tensor::empty(x.dtype(), {N, k}), Tensor::empty(DType::i32, {N, k}),
                     Tensor::zeros(DType::f32, {N, E})};
  for (int64_t n = 0; n < N; ++n) {
    std::vector<float> s(static_cast<size_t>(E)), p(static_cast<size_t>(E)), b(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) s[size_t(e)] = float(x.item({n, e}));
    if (o.norm_type == 0) {
      float m = s[0];
      for (float v : s) m = std::max(m, v);
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) {
        p[size_t(e)] = std::exp(s[size_t(e)] - m);
        sum += p[size_t(e)];
      }
      float inv = 1.0f / sum;
      for (float& v : p) v = v * inv;
    } else {
      for (int64_t e = 0; e < E; ++e) p[size_t(e)] = 1.0f / (1.0f + std::exp(-s[size_t(e)]));
    }
    for (int64_t e = 0; e < E; ++e)
      b[size_t(e)] = o.bias.defined() ? p[size_t(e)] + float(o.bias.item({e})) : p[size_t(e)];

    std::vector<float> group_score(static_cast<size_t>(G));
    for (int64_t j = 0; j < G; ++j) {
      std::vector<int64_t> members(static_cast<size_t>(g));
      std::iota(members.begin(), members.end(), j * g);
      std::vector<int64_t> order = argsort_desc(b, members);
      group_score[size_t(j)] =
          o.group_select_mode == 0 ? b[size_t(order[0])] : b[size_t(order[0])] + b[size_t(order[1])];
    }
    std::vector<int64_t> groups = argsort_desc(group_score, iota_ids(G));
    std::vector<int64_t> allowed;
    for (int64_t j = 0; j < o.k_group; ++j)
      for (int64_t e = groups[size_t(j)] * g; e < (groups[size_t(j)] + 1) * g; ++e) allowed.push_back(e);
    std::vector<int64_t> idx = argsort_desc(b, allowed);

    std::vector<float> w(static_cast<size_t>(k));
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      w[size_t(j)] = p[size_t(idx[size_t(j)])];
      sum += w[size_t(j)];
    }
    for (int64_t j = 0; j < k; ++j) {
      float v = w[size_t(j)];
      if (o.norm_type == 1 || o.renorm == 1) v = v / (sum + float(o.eps));
      v = v * float(o.routed_scaling_factor);
      r.y.set_item({n, j}, v);
      r.expert_idx.set_item({n, j}, double(idx[size_t(j)]));
    }
    if (o.out_flag)
      for (int64_t e = 0; e < E; ++e) r.out.set_item({n, e}, p[size_t(e)]);
  }
  return r;
}

void expect_same(const GatingTopKResult& expected, const GatingTopKResult& actual) {
  EXPECT_TENSOR_EQ(expected.expert_idx, actual.expert_idx);
  EXPECT_TENSOR_EQ(expected.y, actual.y);
  EXPECT_TENSOR_EQ(expected.out, actual.out);
}

std::vector<int64_t> row_ids(const Tensor& idx, int64_t n) {
  std::vector<int64_t> v;
  for (int64_t j = 0; j < idx.size(1); ++j) v.push_back(int64_t(idx.item({n, j})));
  return v;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// ---------------------------------------------------------------------------------------------------------------
// Hand-computed cases
// ---------------------------------------------------------------------------------------------------------------

TEST(GatingTopK, SoftmaxOneByFour) {
  // softmax([1,2,3,4]) = e^(x-4) / S with S = 1 + e^-1 + e^-2 + e^-3 = 1.55300179.
  Tensor x = Tensor::from_values<float>({1, 4}, {1.0f, 2.0f, 3.0f, 4.0f});
  GatingTopKOptions o;
  o.out_flag = true;
  GatingTopKResult r = gating_top_k(x, 2, o);
  ASSERT_EQ(r.y.shape(), (Shape{1, 2}));
  ASSERT_EQ(r.out.shape(), (Shape{1, 4}));
  EXPECT_EQ(r.y.dtype(), DType::f32);
  EXPECT_EQ(r.expert_idx.dtype(), DType::i32);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{3, 2}));
  EXPECT_NEAR(r.y.item({0, 0}), 0.64391426, 1e-7);  // 1 / S
  EXPECT_NEAR(r.y.item({0, 1}), 0.23688282, 1e-7);  // e^-1 / S
  // out holds the unbiased scores of all experts: e^(e-3) / S = 0.0320586, 0.0871443, 0.2368828, 0.6439143.
  const double S = 1.0 + std::exp(-1.0) + std::exp(-2.0) + std::exp(-3.0);
  for (int e = 0; e < 4; ++e) EXPECT_NEAR(r.out.item({0, e}), std::exp(e - 3.0) / S, 1e-7) << e;

  // renorm 1: w / (w0 + w1 + eps) = e^0 / (1 + e^-1) = sigmoid(1) and its complement.
  o.renorm = 1;
  r = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{3, 2}));
  EXPECT_NEAR(r.y.item({0, 0}), 0.73105858, 1e-7);
  EXPECT_NEAR(r.y.item({0, 1}), 0.26894142, 1e-7);
}

TEST(GatingTopK, SigmoidBiasChangesTheSelectionButNotTheWeights) {
  Tensor x = Tensor::from_values<float>({1, 4}, {0.0f, 1.0f, 2.0f, 3.0f});
  GatingTopKOptions o;
  o.norm_type = 1;
  o.out_flag = true;
  // Without bias: experts 3, 2; weights sigmoid(3), sigmoid(2) renormalised.
  GatingTopKResult plain = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(plain.expert_idx, 0), (std::vector<int64_t>{3, 2}));
  double s3 = sigmoid(3), s2 = sigmoid(2), s0 = sigmoid(0);
  EXPECT_NEAR(plain.y.item({0, 0}), s3 / (s3 + s2), 1e-7);
  EXPECT_NEAR(plain.y.item({0, 1}), s2 / (s3 + s2), 1e-7);

  // A bias of +10 on expert 0 makes it win the selection, but its weight is still from sigmoid(0) = 0.5.
  o.bias = Tensor::from_values<float>({4}, {10.0f, 0.0f, 0.0f, 0.0f});
  GatingTopKResult biased = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(biased.expert_idx, 0), (std::vector<int64_t>{0, 3}));
  EXPECT_NEAR(biased.y.item({0, 0}), s0 / (s0 + s3), 1e-7);
  EXPECT_NEAR(biased.y.item({0, 1}), s3 / (s0 + s3), 1e-7);
  EXPECT_TENSOR_EQ(plain.out, biased.out);  // out holds the unbiased scores
  EXPECT_EQ(biased.out.item({0, 0}), 0.5);

  // routed_scaling_factor multiplies after the renormalisation.
  o.routed_scaling_factor = 2.5;
  GatingTopKResult scaled = gating_top_k(x, 2, o);
  EXPECT_NEAR(scaled.y.item({0, 0}), 2.5 * s0 / (s0 + s3), 1e-6);
  EXPECT_EQ(scaled.y.item({0, 0}), double(float(biased.y.item({0, 0})) * 2.5f));
}

TEST(GatingTopK, DeepSeekStyleGroupsExcludeAGroup) {
  // E = 8 in 4 groups of 2, keep 2 groups, pick 3 experts, sigmoid scores:
  //   group 0: sigmoid(3), sigmoid(-5) = 0.9526, 0.0067   max 0.9526  top-2 sum 0.9593
  //   group 1: sigmoid(.5) x2          = 0.6225, 0.6225   max 0.6225  top-2 sum 1.2449
  //   group 2: sigmoid(.2), sigmoid(.1) = 0.5498, 0.5250  max 0.5498  top-2 sum 1.0748
  //   group 3: sigmoid(-1) x2          = 0.2689, 0.2689   max 0.2689  top-2 sum 0.5379
  Tensor x = Tensor::from_values<float>({1, 8}, {3.0f, -5.0f, 0.5f, 0.5f, 0.2f, 0.1f, -1.0f, -1.0f});
  GatingTopKOptions o;
  o.norm_type = 1;
  o.group_count = 4;
  o.k_group = 2;
  o.group_select_mode = 1;
  // Mode 1 keeps groups 1 and 2: the best expert overall (0) is excluded with its group.
  GatingTopKResult r = gating_top_k(x, 3, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{2, 3, 4}));  // 2 and 3 tie: lower index first
  double a = sigmoid(0.5), c = sigmoid(0.2f), sum = a + a + c;
  EXPECT_NEAR(r.y.item({0, 0}), a / sum, 1e-6);
  EXPECT_NEAR(r.y.item({0, 1}), a / sum, 1e-6);
  EXPECT_NEAR(r.y.item({0, 2}), c / sum, 1e-6);
  EXPECT_EQ(r.y.item({0, 0}), r.y.item({0, 1}));

  // Mode 0 (group max) keeps groups 0 and 1.
  o.group_select_mode = 0;
  r = gating_top_k(x, 3, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{0, 2, 3}));
  double t = sigmoid(3);
  EXPECT_NEAR(r.y.item({0, 0}), t / (t + a + a), 1e-6);

  // Without groups the same row picks 0, 2, 3 as well; with one group kept of 4 only group 0 (mode 0) remains.
  o.k_group = 1;
  r = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{0, 1}));
  EXPECT_THROWS_MSG(gating_top_k(x, 3, o), ValueError, "k <= k_group * E / group_count (2)");
}

TEST(GatingTopK, ExpertsOfDroppedGroupsAreNeverSelected) {
  // Group 1 is kept (score 1.5); its expert 3 has a biased score of -inf. It is still chosen before experts of the
  // dropped group 0 (the hardware's -inf mask would tie with it and pick expert 0). Its weight is unbiased.
  Tensor x = Tensor::zeros(DType::f32, {1, 4});
  GatingTopKOptions o;
  o.norm_type = 1;
  o.group_count = 2;
  o.k_group = 1;
  o.bias = Tensor::from_values<float>({4}, {0.0f, 0.0f, 1.0f, -INFINITY});
  GatingTopKResult r = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.y.item({0, 1}), 0.5);  // 0.5 / (0.5 + 0.5 + eps)
}

TEST(GatingTopK, ConstantRowsBreakTiesByLowerIndex) {
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor x = Tensor::full(dt, {3, 16}, 0.5);
    GatingTopKOptions o;
    GatingTopKResult r = gating_top_k(x, 16, o);
    for (int64_t n = 0; n < 3; ++n) {
      EXPECT_EQ(row_ids(r.expert_idx, n), iota_ids(16));
      for (int64_t j = 0; j < 16; ++j) EXPECT_EQ(r.y.item({n, j}), 0.0625);  // exp(0) * (1/16)
    }
    // Groups tie too: the lowest groups are kept, then the lowest experts.
    o.group_count = 4;
    o.k_group = 2;
    o.norm_type = 1;
    for (int64_t mode : {0, 1}) {
      o.group_select_mode = mode;
      r = gating_top_k(x, 5, o);
      EXPECT_EQ(row_ids(r.expert_idx, 2), (std::vector<int64_t>{0, 1, 2, 3, 4}));
      EXPECT_TENSOR_EQ(oracle(x, 5, o).y, r.y);
    }
    // A bias that separates the groups but not the experts inside them.
    o.bias = Tensor::from_values<float>({16}, {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2});
    r = gating_top_k(x, 5, o);
    EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{12, 13, 14, 15, 4}));
  }
}

TEST(GatingTopK, RoutedScalingFactorZeroGivesZeroWeights) {
  Rng rng(11);
  for (int64_t norm : {0, 1}) {
    Tensor x = rng.normal_tensor(DType::bf16, {5, 32}, 2.0f);
    GatingTopKOptions o;
    o.norm_type = norm;
    o.routed_scaling_factor = 0.0;
    GatingTopKResult r = gating_top_k(x, 4, o);
    EXPECT_TENSOR_EQ(Tensor::zeros(DType::bf16, {5, 4}), r.y);
    o.routed_scaling_factor = 1.0;
    EXPECT_TENSOR_EQ(gating_top_k(x, 4, o).expert_idx, r.expert_idx);  // selection unchanged
  }
}

TEST(GatingTopK, EpsIsAddedToTheRenormalisationDenominator) {
  Tensor x = Tensor::zeros(DType::f32, {1, 2});
  GatingTopKOptions o;
  o.norm_type = 1;                                       // sigmoid(0) = 0.5 for both experts, sum 1
  EXPECT_EQ(gating_top_k(x, 2, o).y.item({0, 0}), 0.5);  // 0.5 / (1 + 1e-20) = 0.5 in fp32
  o.eps = 1.0;
  EXPECT_EQ(gating_top_k(x, 2, o).y.item({0, 1}), 0.25);  // 0.5 / (1 + 1)
  o.norm_type = 0;                                        // softmax: 0.5 each, no renormalisation ...
  EXPECT_EQ(gating_top_k(x, 2, o).y.item({0, 0}), 0.5);
  o.renorm = 1;  // ... unless renorm 1, with the same eps
  EXPECT_EQ(gating_top_k(x, 2, o).y.item({0, 0}), 0.25);
  o.eps = 0.0;
  EXPECT_EQ(gating_top_k(x, 2, o).y.item({0, 0}), 0.5);
}

TEST(GatingTopK, RenormVariants) {
  Rng rng(12);
  Tensor x = rng.normal_tensor(DType::f32, {9, 64}, 1.5f);
  GatingTopKOptions o;
  o.group_count = 8;
  o.k_group = 4;
  o.group_select_mode = 1;
  o.out_flag = true;
  for (int64_t norm : {0, 1})
    for (int64_t renorm : {0, 1}) {
      o.norm_type = norm;
      o.renorm = renorm;
      GatingTopKResult r = gating_top_k(x, 6, o);
      expect_same(oracle(x, 6, o), r);
      for (int64_t n = 0; n < 9; ++n) {
        double sum = 0;
        for (int64_t j = 0; j < 6; ++j) sum += r.y.item({n, j});
        if (norm == 1 || renorm == 1)
          EXPECT_NEAR(sum, 1.0, 1e-6);
        else
          EXPECT_LT(sum, 1.0);  // plain softmax probabilities of 6 of 64 experts
      }
    }
  // Sigmoid renormalises whatever renorm says.
  o.norm_type = 1;
  o.renorm = 0;
  GatingTopKResult a = gating_top_k(x, 6, o);
  o.renorm = 1;
  expect_same(a, gating_top_k(x, 6, o));
}

TEST(GatingTopK, OutIsZeroWithoutOutFlag) {
  Rng rng(13);
  Tensor x = rng.normal_tensor(DType::f16, {4, 8});
  GatingTopKOptions o;
  GatingTopKResult r = gating_top_k(x, 2, o);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {4, 8}), r.out);
  // The _out form overwrites whatever the caller's buffer held.
  GatingTopKResult buffers{Tensor::full(DType::f16, {4, 2}, 7.0), Tensor::full(DType::i32, {4, 2}, -3),
                           Tensor::full(DType::f32, {4, 8}, 7.0)};
  gating_top_k_out(x, 2, o, buffers);
  expect_same(r, buffers);
  o.out_flag = true;
  gating_top_k_out(x, 2, o, buffers);
  expect_same(oracle(x, 2, o), buffers);
  EXPECT_GT(buffers.out.item({0, 0}), 0.0);
}

TEST(GatingTopK, Float32BiasWithHalfInputs) {
  Rng rng(14);
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor x = rng.normal_tensor(dt, {7, 256}, 2.0f);
    GatingTopKOptions o;
    o.norm_type = 1;
    o.group_count = 8;
    o.k_group = 4;
    o.group_select_mode = 1;
    o.routed_scaling_factor = 2.5;
    o.bias = rng.uniform_tensor(DType::f32, {256}, -0.01f, 0.01f);  // not representable in bf16/f16
    GatingTopKResult f32_bias = gating_top_k(x, 8, o);
    expect_same(oracle(x, 8, o), f32_bias);
    o.bias = o.bias.to(dt);
    GatingTopKResult rounded_bias = gating_top_k(x, 8, o);
    expect_same(oracle(x, 8, o), rounded_bias);
  }
}

TEST(GatingTopK, NanScoresRankLast) {
  // Sigmoid keeps the NaN to its own expert, which then loses to every number.
  Tensor x = Tensor::from_values<float>({1, 3}, {NAN, 1.0f, -INFINITY});
  GatingTopKOptions o;
  o.norm_type = 1;
  GatingTopKResult r = gating_top_k(x, 3, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{1, 2, 0}));
  EXPECT_TRUE(std::isnan(r.y.item({0, 0})));  // the renormalisation sum includes the NaN
  r = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(r.y.item({0, 0}), 1.0);  // sigmoid(1) / (sigmoid(1) + 0 + eps)
  // Softmax: one NaN logit makes the whole row NaN, so the order is by index.
  o.norm_type = 0;
  r = gating_top_k(x, 2, o);
  EXPECT_EQ(row_ids(r.expert_idx, 0), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(std::isnan(r.y.item({0, 1})));
}

TEST(GatingTopK, RowsAreIndependentOfTheBatch) {
  Rng rng(15);
  Tensor x = rng.normal_tensor(DType::bf16, {33, 256}, 2.0f);
  GatingTopKOptions o;
  o.norm_type = 1;
  o.group_count = 8;
  o.k_group = 4;
  o.group_select_mode = 1;
  o.bias = rng.uniform_tensor(DType::bf16, {256}, -0.1f, 0.1f);
  o.out_flag = true;
  GatingTopKResult all = gating_top_k(x, 8, o);
  for (int64_t n : {0, 17, 32}) {
    GatingTopKResult one = gating_top_k(x.narrow(0, n, 1), 8, o);
    EXPECT_TENSOR_EQ(all.y.narrow(0, n, 1).contiguous(), one.y);
    EXPECT_TENSOR_EQ(all.expert_idx.narrow(0, n, 1).contiguous(), one.expert_idx);
    EXPECT_TENSOR_EQ(all.out.narrow(0, n, 1).contiguous(), one.out);
  }
}

TEST(GatingTopK, HardwareTilingLimitIsNotImposed) {
  // G * align32(E / G) = 128 * 32 = 4096 > 2048 would be refused by the Ascend tiling; any valid grouping works here.
  Rng rng(16);
  Tensor x = rng.normal_tensor(DType::f32, {3, 2048});
  GatingTopKOptions o;
  o.group_count = 128;
  o.k_group = 8;
  o.group_select_mode = 1;
  o.norm_type = 1;
  expect_same(oracle(x, 16, o), gating_top_k(x, 16, o));
}

// ---------------------------------------------------------------------------------------------------------------
// Sweeps against the oracle
// ---------------------------------------------------------------------------------------------------------------

struct GroupCase {
  int64_t E, G, k_group, mode;
};

// x of shape [N, E] with the given layout: 0 contiguous, 1 transposed storage, 2 a column window of a wider array.
Tensor make_x(Rng& rng, DType dt, int64_t N, int64_t E, int layout) {
  switch (layout) {
    case 1:
      return rng.normal_tensor(dt, {E, N}, 2.0f).transpose(0, 1);
    case 2:
      return rng.normal_tensor(dt, {N, E + 5}, 2.0f).narrow(1, 3, E);
    default:
      return rng.normal_tensor(dt, {N, E}, 2.0f);
  }
}

TEST(GatingTopK, MatchesOracleOverSweeps) {
  Rng rng(2024);
  const GroupCase cases[] = {{1, 1, 1, 0},    {8, 1, 1, 0},     {8, 4, 2, 1},     {8, 8, 3, 0},
                             {64, 8, 3, 0},   {64, 16, 16, 1},  {256, 8, 4, 1},   {256, 1, 1, 0},
                             {2048, 1, 1, 0}, {2048, 16, 4, 1}, {2048, 128, 8, 0}};
  int counter = 0;
  for (const GroupCase& c : cases)
    for (DType dt : {DType::f32, DType::bf16, DType::f16})
      for (int64_t N : {0, 1, 7, 33})
        for (int64_t k : {int64_t{1}, c.k_group * (c.E / c.G)}) {
          const int bits = counter++;
          GatingTopKOptions o;
          o.group_count = c.G;
          o.k_group = c.k_group;
          o.group_select_mode = c.mode;
          o.norm_type = bits & 1;
          o.renorm = (bits >> 2) & 1;
          o.out_flag = ((bits >> 3) & 1) == 0;
          o.routed_scaling_factor = bits % 3 == 0 ? 1.0 : 2.5;
          if ((bits >> 1) & 1) o.bias = rng.uniform_tensor(((bits >> 4) & 1) ? DType::f32 : dt, {c.E}, -0.2f, 0.2f);
          Tensor x = make_x(rng, dt, N, c.E, bits % 3);
          GatingTopKResult r = gating_top_k(x, k, o);
          ASSERT_EQ(r.y.dtype(), dt);
          ASSERT_EQ(r.y.shape(), (Shape{N, k}));
          SCOPED_TRACE(::testing::Message()
                       << "E=" << c.E << " G=" << c.G << " k_group=" << c.k_group << " mode=" << c.mode << " "
                       << dtype_name(dt) << " N=" << N << " k=" << k << " norm=" << o.norm_type
                       << " renorm=" << o.renorm << " bias=" << o.bias.defined() << " layout=" << bits % 3);
          expect_same(oracle(x, k, o), r);
        }
}

TEST(GatingTopK, DeepSeekV3Configuration) {
  // E = 256, 8 groups, 4 kept, k = 8, top-2-sum group score, sigmoid, fp32 correction bias, scaling 2.5.
  Rng rng(7);
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t N : {0, 1, 7, 33}) {
      GatingTopKOptions o;
      o.norm_type = 1;
      o.group_count = 8;
      o.k_group = 4;
      o.group_select_mode = 1;
      o.routed_scaling_factor = 2.5;
      o.bias = rng.uniform_tensor(dt, {256}, -0.5f, 0.5f);
      Tensor x = make_x(rng, dt, N, 256, int(N % 3));
      GatingTopKResult r = gating_top_k(x, 8, o);
      expect_same(oracle(x, 8, o), r);
      // Invariants: 8 distinct experts from at most 4 groups.
      for (int64_t n = 0; n < N; ++n) {
        std::vector<int64_t> ids = row_ids(r.expert_idx, n);
        std::vector<int64_t> groups;
        for (int64_t id : ids) groups.push_back(id / 32);
        std::sort(ids.begin(), ids.end());
        EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());
        std::sort(groups.begin(), groups.end());
        EXPECT_LE(std::unique(groups.begin(), groups.end()) - groups.begin(), 4);
      }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

TEST(GatingTopK, InputErrors) {
  Tensor x = Tensor::zeros(DType::f32, {2, 8});
  EXPECT_THROWS_MSG(gating_top_k(Tensor{}, 1), ValueError, "gating_top_k: x: expected a tensor, got none");
  EXPECT_THROWS_MSG(gating_top_k(Tensor::zeros(DType::i32, {2, 8}), 1), TypeError, "gating_top_k", "x",
                    "f32, bf16 or f16", "i32");
  EXPECT_THROWS_MSG(gating_top_k(Tensor::zeros(DType::f32, {8}), 1), ValueError, "gating_top_k", "x",
                    "2-D tensor [N, E] with 1 <= E <= 2048", "f32[8]");
  EXPECT_THROWS_MSG(gating_top_k(Tensor::zeros(DType::f32, {1, 2, 8}), 1), ValueError, "x", "2-D", "f32[1, 2, 8]");
  EXPECT_THROWS_MSG(gating_top_k(Tensor::zeros(DType::bf16, {2, 2049}), 1), ValueError, "x", "E <= 2048",
                    "bf16[2, 2049]");
  EXPECT_THROWS_MSG(gating_top_k(Tensor::zeros(DType::f32, {2, 0}), 1), ValueError, "x", "1 <= E", "f32[2, 0]");
  EXPECT_THROWS_MSG(gating_top_k(x, 0), ValueError, "gating_top_k", "k", "1 <= k <= E (8)", "got 0");
  EXPECT_THROWS_MSG(gating_top_k(x, 9), ValueError, "gating_top_k", "k", "1 <= k <= E (8)", "got 9");

  GatingTopKOptions o;
  o.input_ids = Tensor::zeros(DType::i32, {2});
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "gating_top_k", "input_ids", "none (hash mode is not supported)",
                    "i32[2]");
  o = {};
  o.tid2eid = Tensor::zeros(DType::i64, {10, 1});
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "tid2eid", "hash mode is not supported", "i64[10, 1]");
  o = {};
  o.norm_type = 2;
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "gating_top_k", "norm_type",
                    "0 (softmax) or 1 (sigmoid); 2 (softplus) is not supported", "got 2");
  o.norm_type = -1;
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "norm_type", "got -1");
  o = {};
  o.group_select_mode = 2;
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "group_select_mode", "0 (max) or 1", "got 2");
  o = {};
  o.renorm = 2;
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "gating_top_k", "renorm", "0 or 1", "got 2");
  o = {};
  for (int64_t g : {0, 3, 16}) {
    o.group_count = g;
    EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "group_count", "a divisor of E (8) in [1, 8]",
                      "got " + std::to_string(g));
  }
  o.group_count = 4;
  for (int64_t kg : {0, 5}) {
    o.k_group = kg;
    EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "k_group", "1 <= k_group <= group_count (4)",
                      "got " + std::to_string(kg));
  }
  o.k_group = 2;
  EXPECT_THROWS_MSG(gating_top_k(x, 5, o), ValueError, "gating_top_k: k: expected k <= k_group * E / group_count (4)",
                    "got 5");
  o.group_count = 8;
  o.group_select_mode = 1;
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "group_count",
                    "E / group_count >= 2 with group_select_mode 1 (E = 8)", "got 8");
  o.group_select_mode = 0;
  EXPECT_NO_THROW(gating_top_k(x, 2, o));  // mode 0 accepts groups of one expert

  o = {};
  o.bias = Tensor::zeros(DType::f16, {8});
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), TypeError, "gating_top_k", "bias", "dtype f32 (as x)", "got f16");
  o.bias = Tensor::zeros(DType::f16, {8});
  EXPECT_THROWS_MSG(gating_top_k(x.to(DType::bf16), 1, o), TypeError, "bias", "dtype bf16 (as x) or f32", "got f16");
  o.bias = Tensor::zeros(DType::f32, {9});
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "bias", "shape [8]", "shape [9]");
  o.bias = Tensor::zeros(DType::f32, {1, 8});
  EXPECT_THROWS_MSG(gating_top_k(x, 1, o), ValueError, "bias", "shape [8]", "shape [1, 8]");
}

TEST(GatingTopK, OutputErrorsLeaveBuffersUntouched) {
  Tensor x = Tensor::zeros(DType::bf16, {3, 8});
  auto fresh = [] {
    return GatingTopKResult{Tensor::full(DType::bf16, {3, 2}, 42.0), Tensor::full(DType::i32, {3, 2}, 42.0),
                            Tensor::full(DType::f32, {3, 8}, 42.0)};
  };
  auto untouched = [](const GatingTopKResult& r) {
    return testing::all_hold({&r.y, &r.expert_idx, &r.out}, 42.0);
  };
  GatingTopKOptions o;

  GatingTopKResult b = fresh();
  b.y = Tensor::full(DType::f32, {3, 2}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), TypeError, "gating_top_k", "y", "dtype bf16", "f32");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.expert_idx = Tensor::full(DType::i64, {3, 2}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), TypeError, "expert_idx", "dtype i32", "i64");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.out = Tensor::full(DType::f32, {3, 7}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), ValueError, "gating_top_k", "out", "shape [3, 8]", "shape [3, 7]");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.y = Tensor::full(DType::bf16, {3, 3}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), ValueError, "y", "shape [3, 2]", "shape [3, 3]");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.out = Tensor::full(DType::f32, {8, 3}, 42.0).transpose(0, 1);
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), ValueError, "out", "contiguous");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.expert_idx = b.expert_idx.as_readonly();
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), ValueError, "expert_idx", "writable");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.out = Tensor{};
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), ValueError, "out", "a tensor", "none");
  EXPECT_TRUE(untouched(b));
  // A bad input is reported before any output is written.
  b = fresh();
  o.renorm = 5;
  EXPECT_THROWS_MSG(gating_top_k_out(x, 2, o, b), ValueError, "renorm");
  EXPECT_TRUE(untouched(b));
}

}  // namespace
}  // namespace moefuse
