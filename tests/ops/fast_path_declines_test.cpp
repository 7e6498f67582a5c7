// A fast path that does not take a call says why (and writes nothing); the operator then runs the reference.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "moefuse/ops.h"
#include "ops/dequant_swiglu_quant_fast.h"
#include "ops/fast_path_declines.h"
#include "util/compare.h"
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
  a.x = Tensor::full(DType::bf16, {3, 8}, 1.0);  // f32 is taken: w4a8's already dequantised h
  EXPECT_EQ(declines(a), "x is not i32 or f32");

  // Declining writes nothing.
  Tensor y2 = Tensor::full(DType::i8, {3, 4}, 7.0), s2 = Tensor::full(DType::f32, {3}, 9.0);
  a = chain_case();
  a.dynamic = false;
  EXPECT_STREQ(dequant_swiglu_quant_fast(a, y2, s2), "static quantisation (quant_mode 0)");
  EXPECT_EQ(y2.item({0, 0}), 7.0);
  EXPECT_EQ(s2.item({0}), 9.0);
}

TEST(FastPathDeclines, SwigluTakesContiguousRowsAndNamesWhatItDeclines) {
  auto declines = [](const Tensor& x, int dim) {
    const char* why = swiglu_fast_path_declines(x, dim);
    return std::string(why ? why : "");
  };
  const Tensor x = testing::Rng(3).normal_tensor(DType::bf16, {5, 8});
  EXPECT_EQ(declines(x, 1), "");
  EXPECT_EQ(declines(x, 0), "the split is not along the last dim");
  EXPECT_EQ(declines(x.transpose(0, 1), 1), "x's last dim is not contiguous");
  EXPECT_EQ(declines(Tensor::zeros(DType::bf16, {2, 3, 8}), 2), "x is not 2-D");
  // Declined or not, the operator gives the same bits: the fast path on a copy against the reference on a view.
  const Tensor xt = x.transpose(0, 1).contiguous().transpose(0, 1);  // same values, last dim strided
  EXPECT_TENSOR_EQ(swiglu(x, -1), swiglu(xt, -1));
}

TEST(FastPathDeclines, FinalizeRoutingTakesContiguousHiddenRowsAndNamesWhatItDeclines) {
  const Tensor rows = Tensor::zeros(DType::f32, {6, 4}), strided = Tensor::zeros(DType::f32, {4, 6}).transpose(0, 1);
  const Tensor none;
  auto declines = [](const Tensor& r, const Tensor& s1, const Tensor& s2, const Tensor& b) {
    const char* why = finalize_routing_fast_path_declines(r, s1, s2, b);
    return std::string(why ? why : "");
  };
  EXPECT_EQ(declines(rows, none, none, none), "");
  EXPECT_EQ(declines(strided, none, none, none), "expanded_permuted_rows' last dim is not contiguous");
  EXPECT_EQ(declines(rows, strided, none, none), "skip1's last dim is not contiguous");
  EXPECT_EQ(declines(rows, none, strided, none), "skip2's last dim is not contiguous");
  EXPECT_EQ(declines(rows, none, none, strided), "bias's last dim is not contiguous");
}

}  // namespace
}  // namespace moefuse
