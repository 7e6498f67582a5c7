// The layer and the operators with each ISA level this machine has forced (set_max_isa, as MOEFUSE_MAX_ISA does):
// a layer chooses its kernels once, when it is made, so a layer made under each cap runs that level's GEMM and rows
// kernels on both paths, and every level gives the scalar reference's bits. (CTest also runs the layer and operator
// suites under MOEFUSE_MAX_ISA=scalar: tests/CMakeLists.txt.)
#include <gtest/gtest.h>

#include <string>

#include "kernels/gemm/gemm.h"
#include "moefuse/config.h"
#include "moefuse/cpu.h"
#include "moefuse/layer.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/random.h"

namespace moefuse {
namespace {

struct IsaCap {
  explicit IsaCap(Isa cap) { set_max_isa(cap); }
  ~IsaCap() { set_max_isa(kTopIsa); }
};

MoeConfig small(const char* preset, DType dtype, QuantMode quant) {
  MoeConfig c = testing::shrunk_preset(preset, dtype, quant, 64, 64, 32);
  c.enable_superkernel = true;
  return c;
}

TEST(IsaForced, LayerGivesTheReferenceBitsAtEveryLevelOnBothPaths) {
  struct Case {
    const char* preset;
    DType dtype;
    QuantMode quant;
  };
  for (Case k : {Case{"olmoe-1b-7b", DType::bf16, QuantMode::none}, Case{"qwen1.5-moe-a2.7b", DType::f16, QuantMode::none},
                 Case{"deepseek-v2-lite", DType::bf16, QuantMode::w8a8}}) {
    const MoeConfig c = small(k.preset, k.dtype, k.quant);
    const Tensor x = testing::Rng(7).normal_tensor(c.dtype, {5, c.hidden_size});
    for (Isa isa : gemm::available_isas()) {
      SCOPED_TRACE(std::string(k.preset) + " " + std::string(isa_name(isa)));
      IsaCap cap(isa);
      MoeLayer layer = MoeLayer::with_random_weights(c, 5, {.threads = 2});
      const Tensor expected = reference_layer_forward(c, layer.weights(), x);
      EXPECT_TENSOR_EQ(expected, layer.forward(x, /*is_prefill=*/false));
      EXPECT_EQ(layer.path(), "superkernel");
      EXPECT_TENSOR_EQ(expected, layer.forward(x, /*is_prefill=*/true));
      EXPECT_EQ(layer.path(), "chain");
    }
  }
}

TEST(IsaForced, FusedPathDeclinesWithItsReason) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16, QuantMode::none);
  c.moe_intermediate_size = 80;
  MoeLayer layer = MoeLayer::with_random_weights(c, 5, {.threads = 1});
  const Tensor x = testing::Rng(8).normal_tensor(c.dtype, {2, c.hidden_size});
  EXPECT_TENSOR_EQ(reference_layer_forward(c, layer.weights(), x), layer.forward(x, false));
  EXPECT_EQ(layer.path(), "chain: I=80 is not a multiple of 32");
  MoeConfig q = small("qwen1.5-moe-a2.7b", DType::bf16, QuantMode::w8a8c8);
  q.shared_expert_intermediate_size = 48;
  MoeLayer ql = MoeLayer::with_random_weights(q, 5, {.threads = 1});
  EXPECT_TENSOR_EQ(reference_layer_forward(q, ql.weights(), x), ql.forward(x, false));
  EXPECT_EQ(ql.path(), "chain: the shared expert's width 48 is not a multiple of 32");
}

TEST(IsaForced, OperatorsGiveTheSameBitsAtEveryLevel) {
  testing::Rng rng(9);
  const Tensor h = rng.normal_tensor(DType::bf16, {37, 2 * 70});
  const Tensor x = rng.normal_tensor(DType::bf16, {11, 70});
  const Tensor idx = Tensor::from_values<int32_t>({11, 2}, {0, 3, 1, 2, 2, 2, 3, 0, 1, 1, 0, 2, 3, 1, 2, 0, 1, 3, 0, 1, 2, 3});
  const Tensor scales = rng.normal_tensor(DType::bf16, {11, 2});
  Tensor first_swiglu, first_q, first_qs, first_combine;
  for (Isa isa : gemm::available_isas()) {
    SCOPED_TRACE(std::string(isa_name(isa)));
    IsaCap cap(isa);
    const Tensor s = swiglu(h);
    InitRoutingV2Options o;
    o.expert_num = 4;
    o.quant_mode = 1;
    const InitRoutingV2Result r = init_routing_v2(x, idx, o);
    const Tensor y = finalize_routing(r.expanded_x.to(DType::bf16), Tensor{}, Tensor{}, Tensor{}, scales,
                                      r.expanded_row_idx, Tensor{}, 2, 2);
    if (!first_swiglu.defined()) {
      first_swiglu = s, first_q = r.expanded_x, first_qs = r.expanded_scale, first_combine = y;
      continue;
    }
    EXPECT_TENSOR_EQ(first_swiglu, s);
    EXPECT_TENSOR_EQ(first_q, r.expanded_x);
    EXPECT_TENSOR_EQ(first_qs, r.expanded_scale);
    EXPECT_TENSOR_EQ(first_combine, y);
  }
}

}  // namespace
}  // namespace moefuse
