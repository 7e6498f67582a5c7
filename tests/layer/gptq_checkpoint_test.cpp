// GPTQ int4 checkpoints for the w4a16 chain (src/layer/gptq.h): the layer's own writer and reader round trip,
// tensors packed here independently from GPTQ's definition (both zero-point conventions) read back to the values
// packed, and every refusal names the file, the tensor and what was wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/errors.h"
#include "util/gptq_folder.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::GptqProjection;
using testing::random_projection;
using testing::Rng;
using testing::TempDirectory;

MoeConfig int4_config(const std::string& preset, int64_t G, bool symmetric) {
  MoeConfig c = load_preset(preset);
  c.hidden_size = 128;
  c.moe_intermediate_size = 64;
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = 64;
  c.num_experts = std::min<int64_t>(c.num_experts, 16);
  c.n_group = std::min<int64_t>(c.n_group, 4);
  c.topk_group = std::min<int64_t>(c.topk_group, 2);
  c.num_experts_per_tok = std::min<int64_t>(c.num_experts_per_tok, 4);
  c.quant_mode = QuantMode::w4a16;
  c.quant_group_size = G;
  c.quant_symmetric = symmetric;
  validate(c, "test config");
  return c;
}

const auto& kPresets = testing::kPresetNames;

// Every int4 tensor of the experts and the shared expert (an undefined one only matches an undefined one).
void expect_same_weights(const LayerWeights& a, const LayerWeights& b) {
  for (Tensor LayerWeights::*m :
       {&LayerWeights::w13, &LayerWeights::w13_scale, &LayerWeights::w13_zero, &LayerWeights::w2,
        &LayerWeights::w2_scale, &LayerWeights::w2_zero, &LayerWeights::shared_w13, &LayerWeights::shared_w13_scale,
        &LayerWeights::shared_w13_zero, &LayerWeights::shared_w2, &LayerWeights::shared_w2_scale,
        &LayerWeights::shared_w2_zero}) {
    EXPECT_EQ((a.*m).defined(), (b.*m).defined());
    if ((a.*m).defined()) EXPECT_TENSOR_EQ(a.*m, b.*m);
  }
}

// Every family's expert names: write the layer in GPTQ's format, read it back: the same int4 weights and output.
TEST(GptqCheckpoint, EveryFamilyRoundTripsThroughTheGptqFormat) {
  TempDirectory dir;
  for (const char* p : kPresets)
    for (bool sym : {true, false}) {
      const MoeConfig c = int4_config(p, 32, sym);
      MoeLayer a = MoeLayer::with_random_weights(c, 4, {.threads = 2});
      const std::string file = dir.file(std::string(p) + (sym ? "_sym" : "_asym") + ".safetensors");
      const NamedTensors tensors = layer_checkpoint_tensors(c, a.weights(), 2);
      bool has_qweight = false;
      for (const auto& [name, t] : tensors) {
        if (name.find(".qweight") != std::string::npos) {
          has_qweight = true;
          EXPECT_EQ(t.dtype(), DType::i32) << name;
        }
        if (name.find(".scales") != std::string::npos) EXPECT_EQ(t.dtype(), DType::f16) << name;
        EXPECT_EQ(name.find("experts.0.") != std::string::npos && name.ends_with(".weight"), false) << name;
      }
      EXPECT_TRUE(has_qweight);
      write_safetensors(file, tensors);
      MoeLayer b = MoeLayer::from_checkpoint(c, Checkpoint(file), 2, {.threads = 2});
      expect_same_weights(a.weights(), b.weights());
      Rng rng(3);
      const Tensor x = rng.normal_tensor(c.dtype, {6, c.hidden_size});
      EXPECT_TENSOR_EQ(a.forward(x, false), b.forward(x, false)) << p;
    }
}

// A whole olmoe-shaped layer in GPTQ tensors packed here (router float), and the LayerWeights it means.
struct HandMade {
  NamedTensors tensors;
  std::vector<GptqProjection> gate, up, down;
};

HandMade hand_made(const MoeConfig& c, bool v2) {
  Rng rng(17);
  HandMade h;
  const std::string p = "model.layers.0.mlp";
  h.tensors.emplace_back(p + ".gate.weight", rng.normal_tensor(c.dtype, {c.num_experts, c.hidden_size}, 0.1f));
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, G = c.quant_group_size;
  for (int64_t e = 0; e < c.num_experts; ++e) {
    h.gate.push_back(random_projection(rng, I, H, G));
    h.up.push_back(random_projection(rng, I, H, G));
    h.down.push_back(random_projection(rng, H, I, G));
    const std::string ep = p + ".experts." + std::to_string(e) + ".";
    for (auto [name, proj] : {std::pair<const char*, const GptqProjection*>{"gate_proj", &h.gate.back()},
                              {"up_proj", &h.up.back()}, {"down_proj", &h.down.back()}}) {
      h.tensors.emplace_back(ep + name + ".qweight", proj->qweight());
      h.tensors.emplace_back(ep + name + ".qzeros", proj->qzeros(v2));
      h.tensors.emplace_back(ep + name + ".scales", proj->scales());
      h.tensors.emplace_back(ep + name + ".g_idx", proj->g_idx());
    }
  }
  return h;
}

void expect_projection(const GptqProjection& p, const LayerWeights& w, const Tensor& q, const Tensor& s,
                       const Tensor& z, int64_t e, int64_t row0) {
  const int64_t rows = q.size(1), groups = p.in / p.G;
  for (int64_t o = 0; o < p.out; ++o) {
    const int64_t r = e * rows + row0 + o;
    for (int64_t i = 0; i < p.in; ++i)
      ASSERT_EQ(int(q.data_as<const uint8_t>()[r * p.in + i]), p.q[size_t(o * p.in + i)]) << "q " << o << "," << i;
    for (int64_t g = 0; g < groups; ++g) {
      ASSERT_EQ(int(z.data_as<const uint8_t>()[r * groups + g]), p.z[size_t(g * p.out + o)]) << "z " << o << "," << g;
      ASSERT_EQ(s.data_as<const float>()[r * groups + g], p.scale[size_t(g * p.out + o)]);
    }
  }
  (void)w;
}

TEST(GptqCheckpoint, ReadsTensorsPackedFromGptqsDefinitionInBothZeroPointConventions) {
  for (bool v2 : {false, true}) {
    TempDirectory dir;
    MoeConfig c = int4_config("olmoe-1b-7b", 64, false);
    const HandMade h = hand_made(c, v2);
    write_safetensors(dir.file("model.safetensors"), h.tensors);
    if (v2)
      testing::write_bytes(dir.file("quantize_config.json"),
                           R"({"bits": 4, "group_size": 64, "desc_act": false, "sym": false, "quant_method": "gptq",
                               "checkpoint_format": "gptq_v2"})");
    const LayerWeights w = MoeLayer::from_checkpoint(c, Checkpoint(dir.path().string()), 0, {.threads = 2}).weights();
    for (int64_t e = 0; e < c.num_experts; ++e) {
      expect_projection(h.gate[size_t(e)], w, w.w13, w.w13_scale, w.w13_zero, e, 0);
      expect_projection(h.up[size_t(e)], w, w.w13, w.w13_scale, w.w13_zero, e, c.moe_intermediate_size);
      expect_projection(h.down[size_t(e)], w, w.w2, w.w2_scale, w.w2_zero, e, 0);
    }
  }
}

// Replaces tensor `name` of `tensors`.
void replace(NamedTensors& tensors, const std::string& name, const Tensor& t) {
  for (auto& [n, v] : tensors)
    if (n == name) v = t;
}

TEST(GptqCheckpoint, RefusesWhatItCannotReadWithClearErrors) {
  const MoeConfig c = int4_config("olmoe-1b-7b", 64, false);
  const std::string e1 = "model.layers.0.mlp.experts.1.";
  auto load_with = [&](const std::function<void(NamedTensors&, TempDirectory&)>& edit) {
    TempDirectory dir;
    HandMade h = hand_made(c, false);
    edit(h.tensors, dir);
    write_safetensors(dir.file("model.safetensors"), h.tensors);
    return MoeLayer::from_checkpoint(c, Checkpoint(dir.path().string()), 0);
  };
  // 8-bit weights: four values per int32, so qweight has in / 4 rows.
  EXPECT_THROWS_MSG(load_with([&](NamedTensors& t, TempDirectory&) {
                      replace(t, e1 + "up_proj.qweight", Tensor::zeros(DType::i32, {128 / 4, 64}));
                    }),
                    ValueError, e1 + "up_proj.qweight", "[H/8, I] = [16, 64]", "4-bit", "got [32, 64]");
  // Scales of another group size.
  EXPECT_THROWS_MSG(load_with([&](NamedTensors& t, TempDirectory&) {
                      replace(t, e1 + "down_proj.scales", Tensor::zeros(DType::f16, {2, 128}));
                    }),
                    ValueError, e1 + "down_proj.scales", "[I/64, H] = [1, 128]", "group size 64", "got [2, 128]");
  EXPECT_THROWS_MSG(load_with([&](NamedTensors& t, TempDirectory&) {
                      replace(t, e1 + "gate_proj.qzeros", Tensor::zeros(DType::i32, {2, 4}));
                    }),
                    ValueError, e1 + "gate_proj.qzeros", "[H/64, I/8] = [2, 8]", "got [2, 4]");
  EXPECT_THROWS_MSG(load_with([&](NamedTensors& t, TempDirectory&) {
                      replace(t, e1 + "gate_proj.qweight", Tensor::zeros(DType::f32, {16, 64}));
                    }),
                    TypeError, e1 + "gate_proj.qweight", "expected dtype i32", "got f32");
  // A g_idx whose groups are not G channels each (act order reads otherwise: gptq_act_order_test.cpp).
  EXPECT_THROWS_MSG(load_with([&](NamedTensors& t, TempDirectory&) {
                      Tensor g = Tensor::zeros(DType::i32, {128});
                      g.data_as<int32_t>()[0] = 1;
                      replace(t, e1 + "gate_proj.g_idx", g);
                    }),
                    ValueError, e1 + "gate_proj.g_idx", "expected 64 input channels in each group",
                    "got 127 in group 0");
  // A v1 zero point of 16 (stored 15).
  EXPECT_THROWS_MSG(load_with([&](NamedTensors& t, TempDirectory&) {
                      replace(t, e1 + "gate_proj.qzeros", Tensor::full(DType::i32, {2, 8}, -1.0));
                    }),
                    ValueError, e1 + "gate_proj.qzeros", "expected zero points 0..15, got 16");
  // Settings that say something else.
  for (auto [json, key] : {std::pair<const char*, const char*>{R"({"bits": 8})", "bits"},
                           {R"({"bits": "4"})", "bits"},
                           {R"({"bits": 4, "group_size": 128})", "group_size"},
                           {R"({"quant_method": "bitsandbytes"})", "quant_method"},
                           {R"({"quant_method": "awq", "version": "gemv"})", "version"},
                           {R"({"quant_method": "awq", "zero_point": false})", "zero_point"},
                           {R"({"checkpoint_format": "marlin"})", "checkpoint_format"}})
    EXPECT_THROWS_MSG(load_with([&](NamedTensors&, TempDirectory& d) {
                        testing::write_bytes(d.file("quantize_config.json"), json);
                      }),
                      ValueError, "quantize_config.json", key, "expected");
}

}  // namespace
}  // namespace moefuse
