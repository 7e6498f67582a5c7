#include <gtest/gtest.h>

#include <vector>

#include "moefuse/error.h"
#include "moefuse/tensor.h"
#include "util/compare.h"
#include "util/errors.h"

namespace moefuse {
namespace {

TEST(Tensor, UndefinedByDefault) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_EQ(t.describe(), "undefined");
}

TEST(Tensor, EmptyIsAlignedContiguousAndOwning) {
  Tensor t = Tensor::empty(DType::bf16, {3, 5});
  EXPECT_TRUE(t.defined());
  EXPECT_TRUE(t.owns_storage());
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  EXPECT_EQ(t.strides(), (Shape{5, 1}));
  EXPECT_EQ(t.describe(), "bf16[3, 5]");
  EXPECT_EQ(t.size(-1), 5);
}

TEST(Tensor, ZeroSizedTensorsAreDefined) {
  Tensor t = Tensor::zeros(DType::f32, {0, 7});
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.numel(), 0);
  Tensor v = Tensor::view(static_cast<void*>(nullptr), DType::i32, {0});
  EXPECT_TRUE(v.defined());
}

TEST(Tensor, ViewSharesCallerMemoryAndTransposeIsFree) {
  std::vector<float> buf = {0, 1, 2, 3, 4, 5};
  Tensor t = Tensor::view(buf.data(), DType::f32, {2, 3});
  EXPECT_FALSE(t.owns_storage());
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.item({2, 1}), 5.0);
  EXPECT_EQ(tt.item({1, 0}), 1.0);
  Tensor c = tt.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({3, 2}, {0, 3, 1, 4, 2, 5}), c);
  t.set_item({0, 0}, 9.0);
  EXPECT_EQ(buf[0], 9.0f);
}

TEST(Tensor, ConstViewsAreReadOnly) {
  const std::vector<int32_t> buf = {1, 2};
  Tensor t = Tensor::view(buf.data(), DType::i32, {2});
  EXPECT_TRUE(t.is_readonly());
  EXPECT_THROWS_MSG(t.set_item({0}, 3.0), ValueError, "read-only");
}

TEST(Tensor, NarrowAndReshape) {
  Tensor t = Tensor::from_values<int32_t>({3, 2}, {0, 1, 2, 3, 4, 5});
  Tensor n = t.narrow(0, 1, 2);
  EXPECT_EQ(n.item({0, 0}), 2.0);
  EXPECT_EQ(n.reshape({4}).item({3}), 5.0);
  EXPECT_THROWS_MSG(t.narrow(0, 2, 2), ValueError, "Tensor::narrow", "[2, 4)");
  EXPECT_THROWS_MSG(t.reshape({4}), ValueError, "expected 6 elements", "[4]");
  EXPECT_THROWS_MSG(t.transpose(0, 1).reshape({6}), ValueError, "contiguous");
}

TEST(Tensor, ConversionRoundsOnceToNearestEven) {
  Tensor f = Tensor::from_values<float>({3}, {1.0f, 1.00390625f, -2.5f});
  Tensor b = f.to(DType::bf16);
  EXPECT_EQ(b.item({1}), 1.0);  // halfway -> even
  EXPECT_EQ(b.to(DType::f32).item({2}), -2.5);
  Tensor i = f.to(DType::i32);
  EXPECT_EQ(i.item({2}), -2.0);  // truncation toward zero
}

TEST(Tensor, TypedAccessChecksDType) {
  Tensor t = Tensor::zeros(DType::f16, {2});
  EXPECT_NO_THROW(t.data_as<float16>());
  EXPECT_THROWS_MSG(t.data_as<bfloat16>(), TypeError, "f16", "bf16");
}

TEST(Tensor, BadShapesAreRejected) {
  EXPECT_THROWS_MSG(Tensor::empty(DType::f32, {2, -1}), ValueError, "Tensor::empty", "[2, -1]");
  EXPECT_THROWS_MSG(Tensor::from_values<float>({2, 2}, {1.0f}), ValueError, "expected 4 elements", "got 1");
  EXPECT_THROWS_MSG((Shape{1, 2, 3, 4, 5, 6, 7, 8, 9}), ValueError, "at most 8");
  float x = 0;
  EXPECT_THROWS_MSG(Tensor::view(&x, DType::f32, {1}, {1, 1}), ValueError, "strides");
}

}  // namespace
}  // namespace moefuse
