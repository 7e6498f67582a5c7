// grouped_matmul with int8 x and packed int4 weights (W4A8, src/ops/packed_grouped_weights.h): its output dtypes
// agree (bf16 is the f32 result rounded once), and the arguments it does not take are clear errors.
#include <gtest/gtest.h>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "ops/packed_grouped_weights.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

TEST(GroupedMatmulW4a8, OutputDtypesAgreeAndUnsupportedArgumentsAreErrors) {
  Rng rng(12);
  const int64_t E = 2, N = 40, K = 64, G = 32, M = 5;
  const Tensor q = rng.int_tensor(DType::u8, {E, N, K}, 0, 15);
  const Tensor zero = rng.int_tensor(DType::u8, {E, N, K / G}, 0, 15);
  const Tensor scale = rng.uniform_tensor(DType::f32, {E, N, K / G}, 0.001f, 0.01f);
  const PackedGroupedWeights w = pack_grouped_int4(q, scale, zero, G);
  const Tensor x = rng.int_tensor(DType::i8, {M, K}, -128, 127);
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = Tensor::empty(DType::i64, {E});
  o.group_list.set_item({0}, 2.0);
  o.group_list.set_item({1}, 3.0);
  o.group_list_type = 1;
  o.per_token_scale = rng.uniform_tensor(DType::f32, {M}, 0.01f, 0.1f);
  const Tensor y32 = grouped_matmul(x, w, o);
  EXPECT_EQ(y32.dtype(), DType::f32);
  o.output_dtype = DType::bf16;
  EXPECT_TENSOR_EQ(y32.to(DType::bf16), grouped_matmul(x, w, o));

  GroupedMatmulOptions bad = o;
  bad.per_token_scale = Tensor{};
  EXPECT_THROWS_MSG(grouped_matmul(x, w, bad), ValueError, "per_token_scale", "a per-row scale [M]", "got none");
  bad = o;
  bad.scale = Tensor::full(DType::f32, {E, N}, 1.0);
  EXPECT_THROWS_MSG(grouped_matmul(x, w, bad), ValueError, "scale", "int4 weights carry their group scales");
  bad = o;
  bad.output_dtype = DType::i32;
  EXPECT_THROWS_MSG(grouped_matmul(x, w, bad), TypeError, "output_dtype", "none, f32, bf16 or f16", "got i32");
}

}  // namespace
}  // namespace moefuse
