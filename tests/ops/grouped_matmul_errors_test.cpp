// npu_grouped_matmul: every rejected input, with its message (op, argument, what was expected, what was given), and
// the caller's output left untouched.
#include <gtest/gtest.h>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"

namespace moefuse {
namespace {

GroupedMatmulOptions grouped(Tensor group_list, int64_t type = 1) {
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = std::move(group_list);
  o.group_list_type = type;
  return o;
}

Tensor counts(std::initializer_list<int64_t> v) { return Tensor::from_values<int64_t>({int64_t(v.size())}, v); }

TEST(GroupedMatmulErrors, XAndWeight) {
  Tensor x = Tensor::zeros(DType::f32, {4, 5});
  Tensor w = Tensor::zeros(DType::f32, {2, 5, 3});
  const auto o = grouped(counts({2, 2}));
  EXPECT_THROWS_MSG(grouped_matmul(Tensor{}, w, o), ValueError, "grouped_matmul: x: expected a tensor, got none");
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::i32, {4, 5}), w, o), TypeError, "grouped_matmul", "x",
                    "dtype f32, bf16, f16 or i8", "got i32");
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::f32, {1, 4, 5}), w, o), ValueError, "grouped_matmul", "x",
                    "a 2-D tensor [M, K]", "f32[1, 4, 5]");
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor{}, o), ValueError, "grouped_matmul: weight: expected a tensor, got none");
  EXPECT_THROWS_MSG(grouped_matmul(x.to(DType::bf16), w, o), TypeError, "grouped_matmul", "weight",
                    "dtype bf16 (the dtype of x)", "got f32");
  EXPECT_THROWS_MSG(grouped_matmul(x.to(DType::bf16), Tensor::zeros(DType::i8, {2, 5, 3}), o), TypeError, "weight",
                    "antiquant", "not supported", "got i8");
  GroupedMatmulOptions oi = o;
  oi.output_dtype = DType::i32;
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::i8, {4, 5}), Tensor::zeros(DType::i32, {2, 5, 3}), oi),
                    TypeError, "weight", "int4 weights packed in i32 are not supported", "got i32");
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor::zeros(DType::f32, {5, 3}), o), ValueError, "grouped_matmul", "weight",
                    "a 3-D tensor [E, K, N] (group_type 0)", "f32[5, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor::zeros(DType::f32, {1, 1, 5, 3})), ValueError, "weight",
                    "a tensor [K, N] or [1, K, N]", "f32[1, 1, 5, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor::zeros(DType::f32, {0, 5, 3}), grouped(counts({}))), ValueError,
                    "weight", "at least one expert (E >= 1)", "f32[0, 5, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, w), ValueError, "weight", "a single expert [1, K, N] when group_type is None/-1",
                    "f32[2, 5, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor::zeros(DType::f32, {2, 6, 3}), o), ValueError, "grouped_matmul",
                    "weight", "K = size(-2) equal to x.size(1) = 5", "f32[2, 6, 3]");
  // Inner dims < 65536.
  GroupedMatmulOptions to_i32;
  to_i32.output_dtype = DType::i32;
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::i8, {1, 65536}), Tensor::zeros(DType::i8, {65536, 1}), to_i32),
                    ValueError, "grouped_matmul", "x", "K < 65536", "i8[1, 65536]");
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::i8, {1, 1}), Tensor::zeros(DType::i8, {1, 65536}), to_i32),
                    ValueError, "grouped_matmul", "weight", "N < 65536", "i8[1, 65536]");
}

TEST(GroupedMatmulErrors, UnsupportedArgumentsAndFlags) {
  Tensor x = Tensor::zeros(DType::f32, {4, 5});
  Tensor w = Tensor::zeros(DType::f32, {2, 5, 3});
  const Tensor any = Tensor::zeros(DType::f32, {2, 3});
  auto with = [&](auto set) {
    GroupedMatmulOptions o = grouped(counts({2, 2}));
    set(o);
    return o;
  };
  EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.offset = any; })), ValueError,
                    "grouped_matmul: offset: expected none (offset is not supported), got f32[2, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.antiquant_scale = any; })), ValueError,
                    "antiquant_scale", "weight-only antiquant is not supported", "f32[2, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.antiquant_offset = any; })), ValueError,
                    "antiquant_offset", "weight-only antiquant is not supported");
  for (int64_t gt : {2, 1, -2}) {
    EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.group_type = gt; })), ValueError, "grouped_matmul",
                      "group_type", "0 (groups of rows, the MoE form); 2 (groups along K) is not supported",
                      "got " + std::to_string(gt));
  }
  for (int64_t s : {-1, 4}) {
    EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.split_item = s; })), ValueError, "split_item",
                      "expected 0, 1, 2 or 3", "got " + std::to_string(s));
  }
  EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.group_list_type = 3; })), ValueError,
                    "group_list_type", "0 (cumsum), 1 (count) or 2 (key-value)", "got 3");
  for (int64_t a : {3, 6, -1}) {
    EXPECT_THROWS_MSG(grouped_matmul(x, w, with([&](auto& o) { o.act_type = a; })), ValueError,
                      "grouped_matmul: act_type: expected 0 (none), 1 (ReLU), 2 (GELU-tanh), 4 (FastGELU) or 5 (SiLU)",
                      "got " + std::to_string(a));
  }
}

TEST(GroupedMatmulErrors, GroupList) {
  Tensor x = Tensor::zeros(DType::f32, {5, 2});
  Tensor w = Tensor::zeros(DType::f32, {4, 2, 3});
  GroupedMatmulOptions none;
  none.group_type = 0;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, none), ValueError,
                    "grouped_matmul: group_list: expected a tensor (group_type 0 needs a group_list), got none");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(Tensor::zeros(DType::f32, {2}))), TypeError, "group_list",
                    "i64 or i32", "f32");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(counts({1, 2}), 2)), ValueError, "group_list",
                    "a [G, 2] key-value tensor", "i64[2]");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(Tensor::zeros(DType::i64, {2, 2}), 1)), ValueError, "group_list",
                    "a 1-D tensor [G]", "i64[2, 2]");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(counts({3, 2}), 0)), ValueError, "grouped_matmul", "group_list[1]",
                    "non-decreasing", "got 2");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(counts({3, -1}), 1)), ValueError, "group_list[1]",
                    "a row count >= 0", "got -1");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(Tensor::from_values<int64_t>({2, 2}, {1, 2, 4, 1}), 2)), ValueError,
                    "group_list[1]", "an expert id in [0, 4)", "got 4");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(counts({3, 3}), 1)), ValueError, "group_list",
                    "groups covering at most 5 rows", "6 rows");
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(counts({0, 6}), 0)), ValueError, "group_list",
                    "groups covering at most 5 rows");
  // More groups than experts (types 0 and 1).
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(counts({1, 1, 1, 1, 1}), 1)), ValueError, "group_list",
                    "at most E = 4 groups (one per expert)", "5 groups");
  // At most 1024 groups.
  Tensor many = Tensor::zeros(DType::i64, {1025, 2});
  many.set_item({0, 1}, 1.0);
  EXPECT_THROWS_MSG(grouped_matmul(x, w, grouped(many, 2)), ValueError, "group_list", "at most 1024 groups",
                    "1025 groups");
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::f32, {5, 1}), Tensor::zeros(DType::f32, {1025, 1, 1}),
                                   grouped(Tensor::zeros(DType::i64, {1025}), 1)),
                    ValueError, "group_list", "at most 1024 groups");
  // A group_list without group_type 0.
  GroupedMatmulOptions stray;
  stray.group_list = counts({5});
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor::zeros(DType::f32, {2, 3}), stray), ValueError, "group_list",
                    "none when group_type is None/-1 (set group_type=0 to group rows)", "i64[1]");
}

TEST(GroupedMatmulErrors, FloatPath) {
  Tensor x = Tensor::zeros(DType::bf16, {4, 5});
  Tensor w = Tensor::zeros(DType::bf16, {2, 5, 3});
  GroupedMatmulOptions o = grouped(counts({2, 2}));
  o.output_dtype = DType::f32;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "grouped_matmul", "output_dtype",
                    "none or bf16 (the dtype of x)", "got f32");
  o.output_dtype = DType::bf16;  // explicit x dtype is fine
  EXPECT_NO_THROW(grouped_matmul(x, w, o));
  o.scale = Tensor::zeros(DType::f32, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "scale", "none (scale is for int8 x)", "f32[2, 3]");
  o.scale = Tensor{};
  o.per_token_scale = Tensor::zeros(DType::f32, {4});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "per_token_scale", "per_token_scale is for int8 x");
  o.per_token_scale = Tensor{};
  // Bias dtypes: f32 for bf16 and f32 x; f16 or f32 for f16 x.
  o.bias = Tensor::zeros(DType::bf16, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "grouped_matmul: bias: expected dtype f32, got bf16");
  o.output_dtype.reset();
  o.bias = Tensor::zeros(DType::bf16, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x.to(DType::f16), w.to(DType::f16), o), TypeError, "bias", "dtype f16 or f32",
                    "bf16");
  o.bias = Tensor::zeros(DType::f16, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x.to(DType::f32), w.to(DType::f32), o), TypeError, "bias", "dtype f32", "f16");
  // Bias shapes.
  o.bias = Tensor::zeros(DType::f32, {3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "grouped_matmul: bias: expected shape [E, N] = [2, 3], "
                    "got shape [3]");
  o.bias = Tensor::zeros(DType::f32, {2, 4});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "bias", "[E, N] = [2, 3]", "shape [2, 4]");
  GroupedMatmulOptions single;
  single.bias = Tensor::zeros(DType::f32, {4});
  EXPECT_THROWS_MSG(grouped_matmul(x, Tensor::zeros(DType::bf16, {5, 3}), single), ValueError, "bias",
                    "shape [E, N] = [1, 3] or [N] = [3]", "shape [4]");
}

TEST(GroupedMatmulErrors, Int8Paths) {
  Tensor x = Tensor::zeros(DType::i8, {4, 5});
  Tensor w = Tensor::zeros(DType::i8, {2, 5, 3});
  GroupedMatmulOptions o = grouped(counts({2, 2}));
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "grouped_matmul", "output_dtype",
                    "i32, bf16 or f16 for int8 x (an int8 output needs an i64 scale, which is not supported)",
                    "none (= i8)");
  o.output_dtype = DType::i8;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "output_dtype", "an int8 output needs an i64 scale",
                    "got i8");
  o.output_dtype = DType::f32;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "output_dtype", "i32, bf16 or f16 for int8 x", "got f32");
  o.output_dtype = DType::bf16;
  o.scale = Tensor::zeros(DType::i64, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "scale", "npu_trans_quant_param", "not supported", "i64");

  // int32 output: no scale, no per-token scale, no activation, i32 bias only.
  o.output_dtype = DType::i32;
  o.scale = Tensor::zeros(DType::f32, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "scale", "output_dtype is i32: no dequantisation");
  o.scale = Tensor{};
  o.per_token_scale = Tensor::zeros(DType::f32, {4});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "per_token_scale", "output_dtype is i32");
  o.per_token_scale = Tensor{};
  o.act_type = 1;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "act_type",
                    "0 when output_dtype is i32 (activations need a float output)", "got 1");
  o.act_type = 0;
  o.bias = Tensor::zeros(DType::f32, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "bias", "dtype i32", "f32");
  o.bias = Tensor::zeros(DType::i32, {2, 2});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "bias", "[E, N] = [2, 3]", "[2, 2]");

  // bf16/f16 output: a scale [E, N] of bf16/f32, per_token_scale [M] f32, bias i32/f32/bf16/f16.
  o = grouped(counts({2, 2}));
  o.output_dtype = DType::f16;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "grouped_matmul", "scale",
                    "a per-channel scale [E, N] (int8 x with a f16 output)", "none");
  o.per_token_scale = Tensor::zeros(DType::f32, {4});  // per_token_scale alone does not replace the scale
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "scale", "a per-channel scale");
  o.scale = Tensor::zeros(DType::f16, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "scale", "dtype bf16 or f32", "f16");
  o.scale = Tensor::zeros(DType::f32, {1, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "scale", "shape [E, N] = [2, 3]", "shape [1, 3]");
  o.scale = Tensor::zeros(DType::bf16, {2, 3});
  o.per_token_scale = Tensor::zeros(DType::bf16, {4});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "per_token_scale", "dtype f32", "bf16");
  o.per_token_scale = Tensor::zeros(DType::f32, {5});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "per_token_scale", "shape [M] = [4]", "shape [5]");
  o.per_token_scale = Tensor::zeros(DType::f32, {4, 1});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "per_token_scale", "shape [M] = [4]", "shape [4, 1]");
  o.per_token_scale = Tensor::zeros(DType::f32, {4});
  o.bias = Tensor::zeros(DType::i64, {2, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), TypeError, "bias", "dtype i32, f32, bf16 or f16", "i64");
  o.bias = Tensor::zeros(DType::bf16, {3, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, o), ValueError, "bias", "[E, N] = [2, 3]", "[3, 3]");
  o.bias = Tensor::zeros(DType::bf16, {2, 3});
  EXPECT_NO_THROW(grouped_matmul(x, w, o));
}

TEST(GroupedMatmulErrors, OutputBufferAndNothingWrittenOnError) {
  Tensor x = Tensor::zeros(DType::f16, {4, 5});
  Tensor w = Tensor::zeros(DType::f16, {2, 5, 3});
  const GroupedMatmulOptions o = grouped(counts({2, 2}));
  Tensor wrong_dtype = Tensor::zeros(DType::f32, {4, 3});
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, wrong_dtype), TypeError, "grouped_matmul", "y",
                    "an output of dtype f16", "f32");
  Tensor wrong_shape = Tensor::full(DType::f16, {4, 4}, 42.0);
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, wrong_shape), ValueError, "y", "shape [4, 3]", "shape [4, 4]");
  const uint16_t ro[12] = {};
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, Tensor::view(ro, DType::f16, {4, 3})), ValueError, "y", "writable");
  Tensor wide = Tensor::zeros(DType::f16, {4, 6});
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, wide.narrow(1, 0, 3)), ValueError, "y", "contiguous");
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, Tensor{}), ValueError, "y", "a tensor", "none");

  // A rejected call leaves a valid output buffer as it was.
  Tensor y = Tensor::full(DType::f16, {4, 3}, 42.0);
  GroupedMatmulOptions bad = o;
  bad.act_type = 3;
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, bad, y), ValueError, "act_type");
  bad = grouped(counts({2, 3}));
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, bad, y), ValueError, "group_list");
  EXPECT_TENSOR_EQ(Tensor::full(DType::f16, {4, 3}, 42.0), y);
}

}  // namespace
}  // namespace moefuse
