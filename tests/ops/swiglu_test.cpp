// npu_swiglu against values computed by hand and an independent reference written from the torch_npu semantics.
#include <gtest/gtest.h>

#include <cmath>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::element_at;
using testing::Rng;

// the torch_npu semantics: out[..., j, ...] = a / (1 + exp(-a)) * b with a = x[..., j, ...], b = x[..., j + half, ...]
// along dim, fp32 math, one RNE rounding. Written against item()/set_item() so it shares no code with the library's
// loops.
Tensor swiglu_oracle(const Tensor& x, int dim) {
  Shape os = x.shape();
  os[dim] /= 2;
  Tensor out = Tensor::empty(x.dtype(), os);
  const int64_t half = os[dim];
  for (int64_t flat = 0; flat < out.numel(); ++flat) {
    // Multi-index of `flat` in the output, then the two source positions in x.
    int64_t rem = flat, xa = 0, xb = 0;
    for (int d = os.rank() - 1; d >= 0; --d) {
      int64_t i = rem % os[d];
      rem /= os[d];
      xa += i * x.strides()[d];
      xb += (d == dim ? i + half : i) * x.strides()[d];
    }
    float a = float(element_at(x, xa));
    float b = float(element_at(x, xb));
    float silu = a / (1.0f + std::exp(-a));
    float v = silu * b;
    out.reshape({out.numel()}).set_item({flat}, v);
  }
  return out;
}

TEST(Swiglu, HandComputedValues) {
  // silu(0) = 0; silu(1) = 1/(1+e^-1) = 0.7310586; silu(-1) = -0.2689414.
  Tensor x = Tensor::from_values<float>({1, 6}, {0.0f, 1.0f, -1.0f, 5.0f, 2.0f, 3.0f});
  Tensor y = swiglu(x);
  ASSERT_EQ(y.shape(), (Shape{1, 3}));
  EXPECT_EQ(y.item({0, 0}), 0.0);
  EXPECT_NEAR(y.item({0, 1}), 2.0 * 0.7310585786, 1e-6);
  EXPECT_NEAR(y.item({0, 2}), 3.0 * -0.2689414214, 1e-6);
}

TEST(Swiglu, FirstHalfIsTheGate) {
  Tensor x = Tensor::from_values<float>({2}, {-100.0f, 7.0f});
  EXPECT_NEAR(swiglu(x).item({0}), 0.0, 1e-30);  // silu(-100) * 7 ~ -2.6e-42
  Tensor y = Tensor::from_values<float>({2}, {7.0f, -100.0f});
  EXPECT_NEAR(swiglu(y).item({0}), 7.0 / (1.0 + std::exp(-7.0)) * -100.0, 1e-3);
}

class SwigluSweep : public ::testing::TestWithParam<DType> {};

TEST_P(SwigluSweep, MatchesOracleOnShapesAndDims) {
  const DType dt = GetParam();
  Rng rng(1234);
  // 2-D shapes split along dim 1 take the typed fast path (blocks of 32 rows over the thread pool); the rest the
  // reference.
  const Shape shapes[] = {{2}, {1, 2}, {7, 2}, {3, 130}, {0, 8}, {2, 3, 4}, {5, 6, 7, 2}, {33, 66}, {100, 2}};
  for (const Shape& s : shapes) {
    for (int d = 0; d < s.rank(); ++d) {
      if (s[d] % 2) continue;
      Tensor x = rng.uniform_tensor(dt, s, -8.0f, 8.0f);
      Tensor expected = swiglu_oracle(x, d);
      EXPECT_TENSOR_EQ(expected, swiglu(x, d)) << s.str() << " dim " << d;
      EXPECT_TENSOR_EQ(expected, swiglu(x, d - s.rank())) << "negative dim";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFloatTypes, SwigluSweep, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Swiglu, StridedInputGivesTheSameResultAsContiguous) {
  Rng rng(5);
  Tensor base = rng.uniform_tensor(DType::bf16, {6, 4}, -3.0f, 3.0f);
  Tensor strided = base.transpose(0, 1);  // [4, 6], non-contiguous
  EXPECT_TENSOR_EQ(swiglu(strided.contiguous(), -1), swiglu(strided, -1));
}

TEST(Swiglu, RowsOfAWiderMatrixTakeTheFastPathWithTheSameBits) {
  Rng rng(6);
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor wide = rng.uniform_tensor(dt, {70, 40}, -6.0f, 6.0f);
    Tensor x = wide.narrow(1, 3, 34);  // row stride 40, contiguous along the split dim
    EXPECT_TENSOR_EQ(swiglu_oracle(x, 1), swiglu(x, -1)) << dtype_name(dt);
  }
}

TEST(Swiglu, ExtremeValues) {
  Tensor x = Tensor::from_values<float>({1, 8}, {INFINITY, -INFINITY, NAN, 1e30f, 1.0f, 1.0f, 1.0f, 1e10f});
  Tensor y = swiglu(x);
  EXPECT_EQ(y.item({0, 0}), INFINITY);        // silu(inf) = inf / (1 + 0), times 1
  EXPECT_TRUE(std::isnan(y.item({0, 1})));    // -inf / (1 + inf)
  EXPECT_TRUE(std::isnan(y.item({0, 2})));    // NaN propagates
  EXPECT_EQ(y.item({0, 3}), INFINITY);        // 1e30 * 1e10 overflows fp32
}

TEST(Swiglu, OutVariantWritesTheCallersBuffer) {
  Rng rng(9);
  Tensor x = rng.uniform_tensor(DType::f16, {3, 10});
  Tensor out = Tensor::zeros(DType::f16, {3, 5});
  swiglu_out(x, -1, out);
  EXPECT_TENSOR_EQ(swiglu(x), out);
}

TEST(Swiglu, Errors) {
  Tensor odd = Tensor::zeros(DType::f32, {2, 3});
  EXPECT_THROWS_MSG(swiglu(odd), ValueError, "swiglu", "x", "even size along dim 1", "f32[2, 3]");
  EXPECT_THROWS_MSG(swiglu(Tensor::zeros(DType::f32, {2, 2}), 2), ValueError, "swiglu", "dim", "-2 <= dim < 2",
                    "got 2");
  EXPECT_THROWS_MSG(swiglu(Tensor::zeros(DType::i32, {2, 2})), TypeError, "swiglu", "x", "f32, bf16 or f16", "i32");
  EXPECT_THROWS_MSG(swiglu(Tensor{}), ValueError, "swiglu", "x", "a tensor", "none");
  EXPECT_THROWS_MSG(swiglu(Tensor::zeros(DType::f32, {})), ValueError, "1 to 8 dims");

  Tensor x = Tensor::zeros(DType::f32, {2, 4});
  Tensor wrong_dtype = Tensor::zeros(DType::bf16, {2, 2});
  EXPECT_THROWS_MSG(swiglu_out(x, -1, wrong_dtype), TypeError, "swiglu", "out", "f32", "bf16");
  Tensor wrong_shape = Tensor::full(DType::f32, {2, 3}, 42.0);
  EXPECT_THROWS_MSG(swiglu_out(x, -1, wrong_shape), ValueError, "out", "shape [2, 2]", "shape [2, 3]");
  EXPECT_EQ(wrong_shape.item({0, 0}), 42.0);  // untouched
  const float ro[4] = {};
  EXPECT_THROWS_MSG(swiglu_out(x, -1, Tensor::view(ro, DType::f32, {2, 2})), ValueError, "writable");
}

}  // namespace
}  // namespace moefuse
