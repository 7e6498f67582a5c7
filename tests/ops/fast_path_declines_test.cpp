// A fast path that does not take a call says why (and writes nothing); the operator then runs the reference.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ops/dequant_swiglu_quant_fast.h"
#include "util/random.h"

namespace moefuse {
namespace {

DequantSwigluQuantArgs chain_case() {
  DequantSwigluQuantArgs a;
  a.x = Tensor::full(DType::i32, {3, 8}, 5.0);
  a.weight_scale = Tensor::full(DType::f32, {8}, 0.5);
  a.activation_scale = Tensor::full(DType::f32, {3}, 0.25);
  a.dynamic = true;
  return a;
}

TEST(FastPathDeclines, DequantSwigluQuantTakesTheChainsCaseAndNamesWhatItDeclines) {
  Tensor y = Tensor::zeros(DType::i8, {3, 4}), scale = Tensor::zeros(DType::f32, {3});
  EXPECT_EQ(dequant_swiglu_quant_fast(chain_case(), y, scale), nullptr);
  EXPECT_NE(scale.item({0}), 0.0);

  auto declines = [](DequantSwigluQuantArgs a) {
    const char* why = dequant_swiglu_quant_fast_declines(a);
    return std::string(why ? why : "");
  };
  DequantSwigluQuantArgs a = chain_case();
  a.dynamic = false;
  EXPECT_EQ(declines(a), "static quantisation (quant_mode 0)");
  a = chain_case();
  a.bias = Tensor::zeros(DType::f32, {8});
  EXPECT_EQ(declines(a), "a bias");
  a = chain_case();
  a.swiglu_mode = 1;
  EXPECT_EQ(declines(a), "swiglu_mode 1 (the clamped variant)");
  a = chain_case();
  a.x = Tensor::full(DType::f32, {3, 8}, 1.0);
  EXPECT_EQ(declines(a), "x is not i32");

  // Declining writes nothing.
  Tensor y2 = Tensor::full(DType::i8, {3, 4}, 7.0), s2 = Tensor::full(DType::f32, {3}, 9.0);
  a = chain_case();
  a.dynamic = false;
  EXPECT_STREQ(dequant_swiglu_quant_fast(a, y2, s2), "static quantisation (quant_mode 0)");
  EXPECT_EQ(y2.item({0, 0}), 7.0);
  EXPECT_EQ(s2.item({0}), 9.0);
}

}  // namespace
}  // namespace moefuse
