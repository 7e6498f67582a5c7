// The fused decode path at shapes that cut each group's work into several tasks of each kind: H = 512 and
// I = 256 (shared width 512) give, at decode batch sizes, several A blocks per group (column offset j0 > 0), several
// B blocks (h0 > 0) that each wait for all of the group's A tasks, and two C blocks per token (c0 > 0); I = 96 and
// 160 end on a partial A block; I = 80 (not a multiple of the 32-column panels) makes the layer run the chain. Every
// chain, 1 to 3 threads, bit for bit against the independent per-expert reference (hf_reference.h). The layer tests
// at H = 64, I = 32 reach only one block of each kind per group.
#include <gtest/gtest.h>

#include <cctype>
#include <ostream>
#include <string>
#include <vector>

#include "layer/hf_reference.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::hf_moe_forward;
using testing::Rng;

struct Chain {
  DType dtype;
  QuantMode quant;
  bool smooth;  // quantised chains: with smooth scales (w8a8 quantises per (row, expert) then) or without
};

struct Case {
  std::string preset;
  Chain chain;
  int64_t I;
};

// H = 512, 8 experts, 2 per token (few groups per step, so the fused path cuts each group into many blocks); the
// shared expert, where the family has one, 512 wide at I = 256 (deepseek: two experts of width I).
MoeConfig wide(const Case& k) {
  MoeConfig c = load_preset(k.preset);
  c.hidden_size = 512;
  c.moe_intermediate_size = k.I;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = 2 * k.I;
  c.dtype = k.chain.dtype;
  c.quant_mode = k.chain.quant;
  validate(c, "test config");
  return c;
}

std::string describe(const Case& k) {
  return k.preset + "_" + std::string(dtype_name(k.chain.dtype)) + "_" + std::string(quant_mode_name(k.chain.quant)) +
         (k.chain.smooth ? "_smooth" : "") + "_I" + std::to_string(k.I);
}

void PrintTo(const Case& k, std::ostream* os) { *os << describe(k); }

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = describe(info.param);
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

std::vector<Case> cases() {
  const char* const presets[] = {"olmoe-1b-7b", "qwen1.5-moe-a2.7b", "deepseek-v2-lite"};  // none, gated, plain shared
  const Chain all[] = {{DType::f32, QuantMode::none, false},  {DType::bf16, QuantMode::none, false},
                       {DType::f16, QuantMode::none, false},  {DType::bf16, QuantMode::w8a8, true},
                       {DType::f16, QuantMode::w8a8, false},  {DType::bf16, QuantMode::w8a8c8, true}};
  std::vector<Case> v;
  for (const char* p : presets) {
    for (const Chain& ch : all) v.push_back({p, ch, 256});
    for (int64_t I : {96, 160, 80}) {  // partial last A block; 80: the chain
      v.push_back({p, all[0], I});
      v.push_back({p, all[3], I});
    }
  }
  return v;
}

class LayerMultiBlock : public ::testing::TestWithParam<Case> {};

TEST_P(LayerMultiBlock, DecodeMatchesThePerExpertReferenceExactly) {
  const Case& k = GetParam();
  const MoeConfig c = wide(k);
  LayerWeights w = MoeLayer::with_random_weights(c, 17, {.threads = 1}).weights();
  if (!k.chain.smooth) w.smooth_scale1 = Tensor{};  // w8a8 quantises each token once for all its experts
  if (k.chain.smooth) {
    Rng rng(6);
    w.smooth_scale1 = rng.uniform_tensor(DType::f32, {c.num_experts, c.hidden_size}, 0.5f, 2.0f);
    if (c.quant_mode == QuantMode::w8a8)
      w.smooth_scale2 = rng.uniform_tensor(DType::f32, {c.num_experts, c.moe_intermediate_size}, 0.5f, 2.0f);
  }
  // w8a8c8: clip factors below 1, so that the clip, over a row that several A tasks wrote, changes values.
  if (c.quant_mode == QuantMode::w8a8c8) w.clip_alpha = Rng(7).uniform_tensor(DType::f32, {c.num_experts}, 0.3f, 1.0f);
  const bool fused = c.moe_intermediate_size % 32 == 0;
  // 1 and 4 tokens: 2 to 9 groups, each cut into blocks of 64 columns; 24 tokens: wider blocks, more groups.
  std::vector<std::pair<Tensor, Tensor>> batches;  // (x, the reference's output)
  for (int64_t T : {1, 4, 24}) {
    Tensor x = Rng(40 + uint64_t(T)).normal_tensor(c.dtype, {T, c.hidden_size}, 1.0f);
    Tensor expected = hf_moe_forward(c, w, x);
    batches.emplace_back(std::move(x), std::move(expected));
  }
  for (int threads : {1, 2, 3}) {
    MoeLayer layer(c, w, {.threads = threads});
    for (const auto& [x, expected] : batches) {
      EXPECT_TENSOR_EQ(expected, layer.forward(x)) << "threads " << threads << " T " << x.size(0);
      const std::string path = layer.path();  // "chain: <why the fused path declined>" names the chain too
      EXPECT_EQ(path.substr(0, path.find(':')), fused ? "superkernel" : "chain");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WideShapes, LayerMultiBlock, ::testing::ValuesIn(cases()), case_name);

}  // namespace
}  // namespace moefuse
