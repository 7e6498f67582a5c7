// grouped_matmul with packed FP8 block-scaled weights (pack_grouped_fp8, src/ops/packed_grouped_weights.h: the layer's
// one-byte FP8 projections): bitwise the output of the bf16 weights they stand for (dequantise_grouped_fp8), with
// f32 and bf16 x (f32 x: the bf16 contract's chain on them, written out), K past one 128-row block and N not a
// multiple of 32; int8 x is a clear error; describe() names it.
#include <gtest/gtest.h>

#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "ops/packed_grouped_weights.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

TEST(GroupedMatmulFp8, EqualsTheBf16WeightsItStandsForBitwise) {
  Rng rng(31);
  const int64_t E = 3, N = 40, K = 150, M = 7, kb = 2;
  Tensor q = rng.int_tensor(DType::u8, {E, N, K}, 0, 255);
  for (int64_t i = 0; i < q.numel(); ++i)  // no NaN codes
    if ((q.data_as<uint8_t>()[i] & 0x7f) == 0x7f) q.data_as<uint8_t>()[i] = 0x7e;
  const Tensor scale = rng.uniform_tensor(DType::f32, {E, N, kb}, 0.001f, 0.01f);
  const PackedGroupedWeights w = pack_grouped_fp8(q, scale);
  EXPECT_EQ(w.describe(), "packed fp8 e4m3[3, 150, 40]");
  const Tensor wb = Tensor::empty(DType::bf16, {E, N, K});
  dequantise_grouped_fp8(w, wb);
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = Tensor::empty(DType::i64, {E});
  for (int64_t e = 0; e < E; ++e) o.group_list.set_item({e}, double(e == 1 ? 0 : e == 0 ? 3 : 4));
  o.group_list_type = 1;
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    const Tensor x = rng.normal_tensor(dt, {M, K}, 1.0f);
    if (dt == DType::bf16) {
      EXPECT_TENSOR_EQ(grouped_matmul(x, wb.transpose(1, 2), o), grouped_matmul(x, w, o));
      continue;
    }
    // f32 x: the operator takes no bf16 weights with f32 x (and f32 weights follow the f32 contract's k order), so
    // the bf16 contract's chain (gemm.h, "bf16 weights") on the same bf16 weights, group by group, written out.
    const int64_t rows[] = {3, 0, 4};
    std::vector<float> xs(size_t(M * K));
    for (int64_t i = 0; i < M * K; ++i) xs[size_t(i)] = x.data_as<float>()[i];
    Tensor want = Tensor::empty(DType::f32, {M, N});
    for (int64_t e = 0, m0 = 0; e < E; m0 += rows[e++]) {
      const std::vector<float> xe(xs.begin() + m0 * K, xs.begin() + (m0 + rows[e]) * K);
      const std::vector<float> ce = testing::bf16_chain(xe, K, rows[e], K, N, [&](int64_t k, int64_t n) {
        return float(wb.item({e, n, k}));
      });
      for (int64_t i = 0; i < rows[e] * N; ++i) want.data_as<float>()[m0 * N + i] = ce[size_t(i)];
    }
    EXPECT_TENSOR_EQ(want, grouped_matmul(x, w, o));
  }
  const Tensor xi = rng.int_tensor(DType::i8, {M, K}, -128, 127);
  GroupedMatmulOptions oi = o;
  oi.output_dtype = DType::bf16;
  EXPECT_THROWS_MSG(grouped_matmul(xi, w, oi), TypeError, "x", "FP8 weights run with float x", "got i8");
}

}  // namespace
}  // namespace moefuse
