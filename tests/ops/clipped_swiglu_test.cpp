// npu_clipped_swiglu against values computed by hand and an independent reference written from the torch_npu semantics
// and the public goldens (op-plugin test_npu_clipped_swiglu.py, ops-nn activation/clipped_swiglu golden.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

// The golden's algorithm: x viewed as [pre, cut] (pre = product of the extents before dim, cut = the rest);
// rows >= min(Σ group_index, pre) are zero; A/B = even/odd elements of a row (interleaved) or its halves;
// a = clamp(A, max=limit), b = clamp(B, -limit, limit); out = a * sigmoid(alpha * a) * (b + bias), written in the
// kernel's order a / (exp(-alpha * a) + 1) in fp32 and rounded once. group_sum < 0 means "no group_index".
Tensor clipped_oracle(const Tensor& x, int dim, int64_t group_sum, float alpha, float limit, float bias,
                      bool interleaved) {
  int64_t pre = 1, cut = 1;
  for (int i = 0; i < x.dim(); ++i) (i < dim ? pre : cut) *= x.size(i);
  const int64_t rows = group_sum < 0 ? pre : std::min(group_sum, pre);
  Shape os = x.shape();
  os[dim] /= 2;
  Tensor out = Tensor::empty(x.dtype(), os);
  Tensor flat_out = out.reshape({out.numel()});
  for (int64_t p = 0; p < pre; ++p)
    for (int64_t j = 0; j < cut / 2; ++j) {
      float v = 0.0f;
      if (p < rows) {
        // std::min/std::max with the value first keep NaN, like torch.clamp.
        float a = float(x.item_flat(p * cut + (interleaved ? 2 * j : j)));
        float b = float(x.item_flat(p * cut + (interleaved ? 2 * j + 1 : j + cut / 2)));
        a = std::min(a, limit);
        b = std::max(std::min(b, limit), -limit);
        float glu = a / (std::exp(-alpha * a) + 1.0f);
        v = glu * (b + bias);
      }
      flat_out.set_item({p * (cut / 2) + j}, v);
    }
  return out;
}

Tensor counts(std::initializer_list<int64_t> c) {
  return Tensor::from_values<int64_t>({int64_t(c.size())}, std::span<const int64_t>(c.begin(), c.size()));
}

TEST(ClippedSwiglu, HandComputedInterleavedAndHalves) {
  // Pairs (2, 1) and (-1, 0.5) with alpha = 1, limit = 7, bias = 1:
  //   2 * sigmoid(2) * (1 + 1)     = 2 * 0.8807970780 * 2   =  3.5231883119
  //  -1 * sigmoid(-1) * (0.5 + 1)  = -0.2689414214 * 1.5    = -0.4034121320
  Tensor x = Tensor::from_values<float>({1, 4}, {2.0f, 1.0f, -1.0f, 0.5f});
  ClippedSwigluOptions o;
  o.alpha = 1.0;
  Tensor y = clipped_swiglu(x, o);
  ASSERT_EQ(y.shape(), (Shape{1, 2}));
  EXPECT_NEAR(y.item({0, 0}), 3.5231883119, 1e-6);
  EXPECT_NEAR(y.item({0, 1}), -0.4034121320, 1e-6);
  // Halves: A = [2, 1], B = [-1, 0.5]: 2 * sigmoid(2) * 0 = 0; 1 * sigmoid(1) * 1.5 = 0.7310585786 * 1.5.
  o.interleaved = false;
  y = clipped_swiglu(x, o);
  EXPECT_EQ(y.item({0, 0}), 0.0);
  EXPECT_NEAR(y.item({0, 1}), 1.0965878679, 1e-6);
}

TEST(ClippedSwiglu, HandComputedClamps) {
  // (10, 9): a = min(10, 7) = 7, b = 7: 7 * sigmoid(7) * 8 = 56 * 0.9990889488 = 55.948981134.
  // (-20, -9): A has no lower clamp, b = -7: -20 * sigmoid(-20) * -6 = 120 * 2.0611536e-9 = 2.4733843e-7.
  Tensor x = Tensor::from_values<float>({1, 4}, {10.0f, 9.0f, -20.0f, -9.0f});
  ClippedSwigluOptions o;
  o.alpha = 1.0;
  Tensor y = clipped_swiglu(x, o);
  EXPECT_NEAR(y.item({0, 0}), 55.948981134, 1e-4);
  EXPECT_NEAR(y.item({0, 1}), 2.4733843e-7, 1e-12);
  // The default alpha 1.702: 7 / (1 + exp(-11.914)) * 8 = 55.99630...
  y = clipped_swiglu(x);
  EXPECT_NEAR(y.item({0, 0}), 56.0 / (1.0 + std::exp(-1.702 * 7.0)), 1e-4);
}

TEST(ClippedSwiglu, GroupIndexLimitsTheRowsAndZeroesTheRest) {
  Rng rng(11);
  Tensor x = rng.uniform_tensor(DType::f32, {4, 6}, -3.0f, 3.0f);
  ClippedSwigluOptions o;
  o.group_index = counts({1, 0, 2});  // 3 rows
  Tensor y = clipped_swiglu(x, o);
  EXPECT_TENSOR_EQ(clipped_oracle(x, 1, 3, 1.702f, 7.0f, 1.0f, true), y);
  Tensor full = clipped_swiglu(x);
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(y.item({2, j}), full.item({2, j}));
    EXPECT_EQ(y.item({3, j}), 0.0);  // past the groups
  }
  // A sum beyond the rows is clamped to the rows (kernel: min(sum, rows)).
  o.group_index = counts({3, 5});
  EXPECT_TENSOR_EQ(full, clipped_swiglu(x, o));
  // An empty group list computes nothing.
  o.group_index = Tensor::zeros(DType::i64, {0});
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {4, 3}), clipped_swiglu(x, o));
  // i32 counts are read the same way.
  o.group_index = Tensor::from_values<int32_t>({2}, {1, 1});
  EXPECT_TENSOR_EQ(clipped_oracle(x, 1, 2, 1.702f, 7.0f, 1.0f, true), clipped_swiglu(x, o));
}

TEST(ClippedSwiglu, InterleavedPairsAreConsecutiveInTheMergedRow) {
  // dim = 0 of a [4, 3] tensor: one merged row of 12 elements; output [2, 3], element k uses x.flat[2k], x.flat[2k+1]
  // (pairs run along the last axis here, not along dim: the golden's reshape(pre, cut) semantics).
  Tensor x =
      Tensor::from_values<float>({4, 3}, {0.5f, 1.0f, 2.0f, -1.0f, 3.0f, 0.25f, 1.5f, 2.5f, -0.5f, 4.0f, 1.0f, -2.0f});
  ClippedSwigluOptions o;
  o.dim = 0;
  o.alpha = 1.0;
  Tensor y = clipped_swiglu(x, o);
  ASSERT_EQ(y.shape(), (Shape{2, 3}));
  // y[0, 0] from (0.5, 1.0): 0.5 * sigmoid(0.5) * 2 = 0.6224593312; y[0, 1] from (2.0, -1.0): 2 * sigmoid(2) * 0 = 0.
  EXPECT_NEAR(y.item({0, 0}), 0.6224593312, 1e-6);
  EXPECT_EQ(y.item({0, 1}), 0.0);
  EXPECT_TENSOR_EQ(clipped_oracle(x, 0, -1, 1.0f, 7.0f, 1.0f, true), y);
  // Halves along dim 0: A = rows 0..1, B = rows 2..3, i.e. y[i, j] from x[i, j] and x[i + 2, j].
  o.interleaved = false;
  y = clipped_swiglu(x, o);
  Tensor top = x.narrow(0, 0, 2), bottom = x.narrow(0, 2, 2);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      float a = std::min(float(top.item({i, j})), 7.0f), b = float(bottom.item({i, j}));
      EXPECT_EQ(y.item({i, j}), double(a / (std::exp(-1.0f * a) + 1.0f) * (b + 1.0f)));
    }
}

class ClippedSwigluSweep : public ::testing::TestWithParam<DType> {};

TEST_P(ClippedSwigluSweep, MatchesOracleOnShapesDimsModesAndGroups) {
  const DType dt = GetParam();
  Rng rng(2024);
  const Shape shapes[] = {{2}, {1, 2}, {7, 2}, {33, 6}, {0, 8}, {3, 130}, {2, 3, 4}, {5, 6, 7, 2}, {4, 0, 2}};
  for (const Shape& s : shapes)
    for (int d = 0; d < s.rank(); ++d) {
      if (s[d] % 2) continue;
      Tensor x = rng.uniform_tensor(dt, s, -10.0f, 10.0f);
      int64_t pre = 1;
      for (int i = 0; i < d; ++i) pre *= s[i];
      for (bool interleaved : {true, false})
        for (int grouping = 0; grouping < 3; ++grouping) {
          ClippedSwigluOptions o;
          o.dim = d - (grouping == 1 ? s.rank() : 0);  // negative dims too
          o.interleaved = interleaved;
          o.alpha = rng.uniform(0.5f, 2.0f);
          o.limit = rng.uniform(0.5f, 8.0f);
          o.bias = rng.uniform(-1.0f, 1.0f);
          int64_t sum = -1;
          if (grouping > 0) {
            // grouping 1: a sum within the rows; grouping 2: possibly past them.
            int64_t a = rng.integer(0, pre), b = rng.integer(0, grouping == 2 ? pre + 3 : pre - a);
            o.group_index = counts({a, b});
            sum = a + b;
          }
          Tensor expected = clipped_oracle(x, d, sum, float(o.alpha), float(o.limit), float(o.bias), interleaved);
          EXPECT_TENSOR_EQ(expected, clipped_swiglu(x, o))
              << s.str() << " dim " << o.dim << (interleaved ? " interleaved" : " halves") << " sum " << sum;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllFloatTypes, ClippedSwigluSweep, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(ClippedSwiglu, StridedInputGivesTheSameResultAsContiguous) {
  Rng rng(5);
  Tensor base = rng.uniform_tensor(DType::bf16, {8, 6}, -9.0f, 9.0f);
  Tensor strided = base.transpose(0, 1);  // [6, 8], non-contiguous
  for (bool interleaved : {true, false}) {
    ClippedSwigluOptions o;
    o.interleaved = interleaved;
    o.group_index = counts({2, 1});
    EXPECT_TENSOR_EQ(clipped_swiglu(strided.contiguous(), o), clipped_swiglu(strided, o));
    o.dim = 0;  // pairs across a transposed layout
    EXPECT_TENSOR_EQ(clipped_swiglu(strided.contiguous(), o), clipped_swiglu(strided, o));
  }
}

TEST(ClippedSwiglu, ExtremeValues) {
  Tensor x = Tensor::from_values<float>({1, 8}, {INFINITY, 1.0f, NAN, 1.0f, 1.0f, NAN, -1e30f, INFINITY});
  ClippedSwigluOptions o;
  o.alpha = 1.0;
  Tensor y = clipped_swiglu(x, o);
  EXPECT_NEAR(y.item({0, 0}), 7.0 / (1.0 + std::exp(-7.0)) * 2.0, 1e-5);  // inf clamps to the limit
  EXPECT_TRUE(std::isnan(y.item({0, 1})));                                // NaN in the glu part propagates
  EXPECT_TRUE(std::isnan(y.item({0, 2})));                                // NaN in the linear part propagates
  EXPECT_EQ(y.item({0, 3}), 0.0 * -1.0);                                  // -1e30 / (exp(1e30) + 1) * 8 = -0
  EXPECT_TRUE(std::signbit(y.item({0, 3})));
}

TEST(ClippedSwiglu, OutVariantWritesEveryElementOfTheCallersBuffer) {
  Rng rng(9);
  Tensor x = rng.uniform_tensor(DType::f16, {3, 10});
  ClippedSwigluOptions o;
  o.group_index = counts({2});
  Tensor out = Tensor::full(DType::f16, {3, 5}, 42.0);
  clipped_swiglu_out(x, o, out);
  EXPECT_TENSOR_EQ(clipped_swiglu(x, o), out);
  EXPECT_EQ(out.item({2, 4}), 0.0);
}

TEST(ClippedSwiglu, Errors) {
  const char* op = "clipped_swiglu";
  Tensor x = Tensor::zeros(DType::f32, {2, 4});
  EXPECT_THROWS_MSG(clipped_swiglu(Tensor{}), ValueError, op, "x", "a tensor", "none");
  EXPECT_THROWS_MSG(clipped_swiglu(Tensor::zeros(DType::i32, {2, 4})), TypeError, op, "x", "f32, bf16 or f16", "i32");
  EXPECT_THROWS_MSG(clipped_swiglu(Tensor::zeros(DType::f32, {})), ValueError, op, "x", "1 to 8 dims");
  EXPECT_THROWS_MSG(clipped_swiglu(Tensor::zeros(DType::f32, {2, 3})), ValueError, op, "x", "even size along dim 1",
                    "f32[2, 3]");
  ClippedSwigluOptions o;
  o.dim = 2;
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "dim", "-2 <= dim < 2", "got 2");
  o = {};
  o.limit = 0.0;
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "limit", "finite fp32 value > 0", "got 0");
  o.limit = NAN;
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "limit", "finite fp32 value > 0", "got nan");
  o = {};
  o.alpha = INFINITY;
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "alpha", "a finite fp32 value", "got inf");
  o = {};
  o.bias = 1e39;  // beyond the fp32 range
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "bias", "a finite fp32 value", "got 1e+39");
  o = {};
  o.group_index = Tensor::zeros(DType::i64, {2, 2});
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "group_index", "a 1-D tensor [G]", "i64[2, 2]");
  o.group_index = counts({1, -1});
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), ValueError, op, "group_index[1]", "a row count >= 0", "got -1");
  o.group_index = Tensor::zeros(DType::f32, {2});
  EXPECT_THROWS_MSG(clipped_swiglu(x, o), TypeError, op, "group_index", "i64 or i32", "f32");

  Tensor wrong_dtype = Tensor::zeros(DType::bf16, {2, 2});
  EXPECT_THROWS_MSG(clipped_swiglu_out(x, {}, wrong_dtype), TypeError, op, "out", "f32", "bf16");
  Tensor wrong_shape = Tensor::full(DType::f32, {2, 3}, 42.0);
  EXPECT_THROWS_MSG(clipped_swiglu_out(x, {}, wrong_shape), ValueError, op, "out", "shape [2, 2]", "shape [2, 3]");
  EXPECT_EQ(wrong_shape.item({0, 0}), 42.0);  // untouched
  Tensor good = Tensor::full(DType::f32, {2, 2}, 42.0);
  o = {};
  o.limit = -1.0;
  EXPECT_THROWS_MSG(clipped_swiglu_out(x, o, good), ValueError, op, "limit");
  EXPECT_EQ(good.item({1, 1}), 42.0);  // untouched after a failed argument check
  const float ro[4] = {};
  EXPECT_THROWS_MSG(clipped_swiglu_out(x, {}, Tensor::view(ro, DType::f32, {2, 2})), ValueError, op, "writable");
}

}  // namespace
}  // namespace moefuse
