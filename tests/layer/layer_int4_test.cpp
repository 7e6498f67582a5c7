// The w4a16 chain (int4 group-wise weights, model-dtype activations): bit for bit the oracle (the layer's oracle
// computes the w4a16 projections group by group as gemm.h defines them, Σ s (Σ a q - z Σ a), in plain loops with its
// own fma_daz_ftz, then the float chain), on both paths,
// for every family, dtype and group size; its accuracy against the float layer on the same weights; and its errors.
// The w4a8 chain (the same int4 weights, int8 per-token activations) against the same oracle, whose w4a8 expert is
// the integer definition of gemm.h in plain loops (exact Σ (q - z) a per group, fma with the group scale, times the
// token's scale), on both paths, with and without smooth scales.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::min_token_cosine;
using testing::Rng;

const auto& kPresets = testing::kPresetNames;

// A preset shrunk to test size (routing kept), as w4a16 with group size G.
MoeConfig small_int4(const std::string& preset, DType dtype, int64_t G, bool symmetric, int64_t H = 128,
                     int64_t I = 64, QuantMode mode = QuantMode::w4a16) {
  MoeConfig c = testing::shrunk_preset(preset, dtype, mode, H, I, I);
  c.quant_group_size = G;
  c.quant_symmetric = symmetric;
  validate(c, "test config");
  return c;
}

Tensor tokens(const MoeConfig& c, int64_t T, uint64_t seed) { return testing::layer_tokens(c, T, seed); }

struct Case {
  std::string preset;
  DType dtype;
  int64_t G;
  bool symmetric;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const char* p : kPresets) {
    out.push_back({p, DType::bf16, 32, true});
    out.push_back({p, DType::bf16, 64, false});
    out.push_back({p, DType::f16, 32, false});
  }
  out.push_back({"deepseek-v3", DType::f32, 64, true});
  out.push_back({"qwen1.5-moe-a2.7b", DType::f32, 32, false});
  return out;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.preset + "_" + std::string(dtype_name(info.param.dtype)) + "_g" +
                  std::to_string(info.param.G) + (info.param.symmetric ? "_sym" : "_asym");
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

class Int4Layer : public ::testing::TestWithParam<Case> {};

TEST_P(Int4Layer, EqualsTheGroupWiseOracleBitwiseOnBothPaths) {
  const Case& k = GetParam();
  const MoeConfig c = small_int4(k.preset, k.dtype, k.G, k.symmetric);
  MoeLayer layer = MoeLayer::with_random_weights(c, 3, {.threads = 2});
  for (int64_t T : {1, 8, 13}) {
    const Tensor x = tokens(c, T, 20 + uint64_t(T));
    LayerRouting want_routing, routing;
    const Tensor want = reference_layer_forward(c, layer.weights(), x, &want_routing);
    EXPECT_TENSOR_EQ(want, layer.forward(x, true, &routing)) << "prefill T=" << T;
    EXPECT_EQ(layer.path(), "chain");
    EXPECT_TENSOR_EQ(want_routing.topk_idx, routing.topk_idx);
    EXPECT_TENSOR_EQ(want, layer.forward(x, false, &routing)) << "decode T=" << T;
    EXPECT_EQ(layer.path(), "superkernel");
  }
  EXPECT_NE(layer.kernel().find("gemm_u4g" + std::to_string(k.G) + "w_f32"), std::string::npos) << layer.kernel();
}

INSTANTIATE_TEST_SUITE_P(Families, Int4Layer, ::testing::ValuesIn(cases()), case_name);

// Random w4a16 weights are the float layer's weights (same seed) rounded to int4, so the two layers differ by the
// int4 error alone. Round-to-nearest int4 keeps a per-token cosine of about 0.98-0.99 at G = 32 and 0.97-0.98 at
// G = 128 on these weights (docs/layer.md §5); 0.95 leaves room for the test's small shapes.
TEST(Int4Layer, StaysCloseToTheFloatLayerOnTheSameWeights) {
  for (const char* p : kPresets)
    for (int64_t G : {32, 128})
      for (bool sym : {true, false}) {
        const MoeConfig c = small_int4(p, DType::bf16, G, sym, 256, 128);
        MoeConfig cf = c;
        cf.quant_mode = QuantMode::none;
        MoeLayer q = MoeLayer::with_random_weights(c, 5, {.threads = 2});
        MoeLayer f = MoeLayer::with_random_weights(cf, 5, {.threads = 2});
        const Tensor x = tokens(c, 16, 9);
        EXPECT_GE(min_token_cosine(q.forward(x, true), f.forward(x, true)), 0.95) << p << " G=" << G << " sym=" << sym;
      }
}

class W4a8Layer : public ::testing::TestWithParam<Case> {};

TEST_P(W4a8Layer, EqualsTheIntegerOracleBitwiseOnBothPaths) {
  const Case& k = GetParam();
  const MoeConfig c = small_int4(k.preset, k.dtype, k.G, k.symmetric, 128, std::max<int64_t>(64, k.G), QuantMode::w4a8);
  LayerWeights w = MoeLayer::with_random_weights(c, 3).weights();
  for (bool smooth : {false, true}) {
    if (smooth) {  // smooth scales as w8a8 has them: x's before its quantisation, SwiGLU's before requantisation
      Rng rng(6);
      w.smooth_scale1 = rng.uniform_tensor(DType::f32, {c.num_experts, c.hidden_size}, 0.5f, 2.0f);
      w.smooth_scale2 = rng.uniform_tensor(DType::f32, {c.num_experts, c.moe_intermediate_size}, 0.5f, 2.0f);
    }
    MoeLayer layer(c, w, {.threads = 2});
    for (int64_t T : {1, 8, 13}) {
      const Tensor x = tokens(c, T, 40 + uint64_t(T));
      LayerRouting want_routing, routing;
      const Tensor want = reference_layer_forward(c, w, x, &want_routing);
      EXPECT_TENSOR_EQ(want, layer.forward(x, true, &routing)) << "prefill T=" << T << " smooth " << smooth;
      EXPECT_EQ(layer.path(), "chain");
      EXPECT_TENSOR_EQ(want_routing.topk_idx, routing.topk_idx);
      EXPECT_TENSOR_EQ(want, layer.forward(x, false, &routing)) << "decode T=" << T << " smooth " << smooth;
      EXPECT_EQ(layer.path(), "superkernel");
    }
    EXPECT_NE(layer.kernel().find("gemm_u4g" + std::to_string(k.G) + "w_s8_f32"), std::string::npos) << layer.kernel();
  }
}

std::vector<Case> w4a8_cases() {
  std::vector<Case> out;
  for (const char* p : kPresets) out.push_back({p, DType::bf16, 32, true});
  out.push_back({"qwen1.5-moe-a2.7b", DType::f16, 64, false});
  out.push_back({"mixtral-8x7b", DType::f16, 128, false});  // 8 experts: G = 128 (I = 128) stays cheap
  return out;
}

INSTANTIATE_TEST_SUITE_P(Families, W4a8Layer, ::testing::ValuesIn(w4a8_cases()), case_name);

// w4a8 adds the int8 activation error to int4's: still close to the float layer on the same weights.
TEST(W4a8Layer, StaysCloseToTheFloatLayerOnTheSameWeights) {
  for (int64_t G : {32, 128}) {
    const MoeConfig c = small_int4("mixtral-8x7b", DType::bf16, G, false, 256, 128, QuantMode::w4a8);
    MoeConfig cf = c;
    cf.quant_mode = QuantMode::none;
    MoeLayer q = MoeLayer::with_random_weights(c, 5, {.threads = 2});
    MoeLayer f = MoeLayer::with_random_weights(cf, 5, {.threads = 2});
    const Tensor x = tokens(c, 16, 9);
    EXPECT_GE(min_token_cosine(q.forward(x, true), f.forward(x, true)), 0.95) << "G=" << G;
  }
}

TEST(W4a8Layer, ConfigRoundTripsAndRefusesF32) {
  MoeConfig c = small_int4("olmoe-1b-7b", DType::bf16, 32, true, 128, 64, QuantMode::w4a8);
  const std::string y = to_yaml(c);
  EXPECT_NE(y.find("  quant_mode: w4a8\n  quant_group_size: 32\n"), std::string::npos) << y;
  EXPECT_EQ(parse_config_yaml(y, "y"), c);
  c.dtype = DType::f32;
  EXPECT_THROWS_MSG(validate(c, "cfg"), ValueError, "cfg", "quant_mode", "w4a8 experts output bf16 or f16", "got w4a8");
  c.dtype = DType::bf16;
  c.quant_group_size = 48;
  EXPECT_THROWS_MSG(validate(c, "cfg"), ValueError, "quant_group_size", "expected 32, 64 or 128", "got 48");
  c.quant_group_size = 32;
  LayerWeights w = MoeLayer::with_random_weights(c, 1).weights();
  w.clip_alpha = Tensor::full(DType::f32, {c.num_experts}, 1.0);
  EXPECT_THROWS_MSG(MoeLayer(c, w), ValueError, "clip_alpha", "w4a8 does not clip");
}

TEST(Int4Layer, WeightsGiveBackTheSameLayer) {
  const MoeConfig c = small_int4("deepseek-v2-lite", DType::bf16, 64, false);
  MoeLayer a = MoeLayer::with_random_weights(c, 8, {.threads = 1});
  const LayerWeights w = a.weights();
  EXPECT_EQ(w.w13.dtype(), DType::u8);
  EXPECT_EQ(w.w13_scale.shape(), Shape({c.num_experts, 2 * c.moe_intermediate_size, c.hidden_size / 64}));
  MoeLayer b(c, w, {.threads = 2});
  const Tensor x = tokens(c, 5, 1);
  EXPECT_TENSOR_EQ(a.forward(x, true), b.forward(x, false));
}

TEST(Int4Layer, ConfigKeysParseAndRoundTrip) {
  MoeConfig c = small_int4("qwen3-30b-a3b", DType::bf16, 64, false);
  const std::string y = to_yaml(c);
  EXPECT_NE(y.find("  quant_mode: w4a16\n  quant_group_size: 64\n  quant_symmetric: false\n"), std::string::npos) << y;
  EXPECT_EQ(parse_config_yaml(y, "y"), c);
  // Other modes write neither key while they hold the defaults (their YAML is unchanged).
  EXPECT_EQ(to_yaml(load_preset("olmoe-1b-7b")).find("quant_group_size"), std::string::npos);
  EXPECT_THROWS_MSG(parse_config_yaml(std::string(preset_text("olmoe-1b-7b")) + "  quant_symmetric: maybe\n", "p.yaml"),
                    ValueError, "p.yaml", "model_config.quant_symmetric", "got");
}

TEST(Int4Layer, BadConfigsAndWeightsAreClearErrors) {
  MoeConfig c = load_preset("olmoe-1b-7b");
  c.quant_mode = QuantMode::w4a16;
  c.quant_group_size = 48;
  EXPECT_THROWS_MSG(validate(c, "cfg"), ValueError, "cfg", "quant_group_size", "expected 32, 64 or 128", "got 48");
  c.quant_group_size = 128;
  c.moe_intermediate_size = 96;
  EXPECT_THROWS_MSG(validate(c, "cfg"), ValueError, "quant_group_size",
                    "a group size dividing the moe_intermediate_size (96)", "got 128");

  const MoeConfig s = small_int4("olmoe-1b-7b", DType::bf16, 32, true);
  const LayerWeights good = MoeLayer::with_random_weights(s, 1, {.threads = 1}).weights();
  LayerWeights w = good;
  w.w13_scale = Tensor::zeros(DType::f32, {s.num_experts, 2 * s.moe_intermediate_size, 2});
  EXPECT_THROWS_MSG(MoeLayer(s, w), ValueError, "MoeLayer", "w13_scale", "[64, 128, 4]");
  w = good;
  w.w2_zero = Tensor{};
  EXPECT_THROWS_MSG(MoeLayer(s, w), ValueError, "w2_zero");
  w = good;
  w.w13 = good.w13.clone();
  w.w13.data_as<uint8_t>()[5] = 16;
  EXPECT_THROWS_MSG(MoeLayer(s, w), ValueError, "q", "expected values 0..15", "got 16");
  w = good;
  w.w2_scale = good.w2_scale.clone();
  w.w2_scale.data_as<float>()[3] = NAN;
  EXPECT_THROWS_MSG(MoeLayer(s, w), ValueError, "w2_scale", "finite");
}

}  // namespace
}  // namespace moefuse
