// The built-in presets: embedded bytes equal configs/*.yaml, and each preset has the numbers of docs/layer.md §4.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "util/errors.h"

namespace moefuse {
namespace {

const std::filesystem::path kConfigs = std::filesystem::path(MOEFUSE_SOURCE_DIR) / "configs";

TEST(Presets, NamesAreTheSixOfTheSpecSorted) {
  EXPECT_EQ(preset_names(), (std::vector<std::string>{"deepseek-v2-lite", "deepseek-v3", "mixtral-8x7b", "olmoe-1b-7b",
                                                      "qwen1.5-moe-a2.7b", "qwen3-30b-a3b"}));
}

TEST(Presets, EmbeddedTextEqualsTheFiles) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(kConfigs))
    if (e.path().extension() == ".yaml") files.push_back(e.path().stem().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, preset_names()) << "every configs/*.yaml is embedded, and nothing else";
  for (const std::string& name : preset_names()) {
    std::string file = testing::read_bytes((kConfigs / (name + ".yaml")).string());
    ASSERT_FALSE(file.empty()) << name;
    EXPECT_EQ(std::string(preset_text(name)), file) << name;
  }
  EXPECT_EQ(preset_text("default"), preset_text("olmoe-1b-7b"));
}

struct Row {
  const char* name;
  ModelType type;
  int64_t H, I, E, K, n_group, topk_group;
  ScoringFunc scoring;
  bool norm;
  double scaling;
  int64_t n_shared, shared_width;
  bool gated;
};

// docs/layer.md §4, one row per preset.
const Row kTable[] = {
    {"olmoe-1b-7b", ModelType::olmoe, 2048, 1024, 64, 8, 1, 1, ScoringFunc::softmax, false, 1.0, 0, 0, false},
    {"qwen3-30b-a3b", ModelType::qwen3_moe, 2048, 768, 128, 8, 1, 1, ScoringFunc::softmax, true, 1.0, 0, 0, false},
    {"qwen1.5-moe-a2.7b", ModelType::qwen2_moe, 2048, 1408, 60, 4, 1, 1, ScoringFunc::softmax, false, 1.0, 1, 5632,
     true},
    {"deepseek-v2-lite", ModelType::deepseek_v2, 2048, 1408, 64, 6, 1, 1, ScoringFunc::softmax, false, 1.0, 2, 2 * 1408,
     false},
    {"deepseek-v3", ModelType::deepseek_v3, 7168, 2048, 256, 8, 8, 4, ScoringFunc::sigmoid, true, 2.5, 1, 2048, false},
    {"mixtral-8x7b", ModelType::mixtral, 4096, 14336, 8, 2, 1, 1, ScoringFunc::softmax, true, 1.0, 0, 0, false},
};

TEST(Presets, NumbersOfTheSpecTable) {
  for (const Row& r : kTable) {
    SCOPED_TRACE(r.name);
    MoeConfig c = load_preset(r.name);
    EXPECT_NO_THROW(validate(c));
    EXPECT_EQ(c.model_type, r.type);
    EXPECT_EQ(c.hidden_size, r.H);
    EXPECT_EQ(c.moe_intermediate_size, r.I);
    EXPECT_EQ(c.num_experts, r.E);
    EXPECT_EQ(c.num_experts_per_tok, r.K);
    EXPECT_EQ(c.n_group, r.n_group);
    EXPECT_EQ(c.topk_group, r.topk_group);
    EXPECT_EQ(c.scoring_func, r.scoring);
    EXPECT_EQ(c.norm_topk_prob, r.norm);
    EXPECT_EQ(c.routed_scaling_factor, r.scaling);
    EXPECT_EQ(c.n_shared_experts, r.n_shared);
    EXPECT_EQ(c.shared_expert_width(), r.shared_width);
    EXPECT_EQ(c.shared_expert_gated(), r.gated);
    // The execution options are the seed's for every preset.
    EXPECT_EQ(c.exe_mode, ExeMode::ge_graph);
    EXPECT_TRUE(c.enable_superkernel);
    EXPECT_EQ(c.moe_chunk_max_len, 1024);
    EXPECT_EQ(c.dtype, DType::bf16);
    EXPECT_EQ(c.quant_mode, QuantMode::none);
    EXPECT_EQ(c.router_logits_dtype, RouterLogitsDtype::fp32);
    // Round trip through to_yaml.
    EXPECT_EQ(parse_config_yaml(to_yaml(c)), c);
    // And the file on disk reads the same.
    EXPECT_EQ(load_config_file((kConfigs / (std::string(r.name) + ".yaml")).string()), c);
  }
  EXPECT_EQ(std::size(kTable), preset_names().size());
}

TEST(Presets, DefaultIsTheSeedDefault) {
  EXPECT_EQ(load_preset("default"), MoeConfig{});
  EXPECT_EQ(load_preset("olmoe-1b-7b"), MoeConfig{});
}

TEST(Presets, UnknownPreset) {
  EXPECT_THROWS_MSG(load_preset("llama-moe"), ValueError,
                    "preset: name: expected one of default, deepseek-v2-lite, deepseek-v3, mixtral-8x7b, olmoe-1b-7b, "
                    "qwen1.5-moe-a2.7b or qwen3-30b-a3b, got \"llama-moe\"");
  EXPECT_THROWS_MSG(preset_text(""), ValueError, "preset: name: expected one of default", "got \"\"");
  EXPECT_THROWS_MSG(preset_text("OLMOE-1B-7B"), ValueError, "got \"OLMOE-1B-7B\"");
}

}  // namespace
}  // namespace moefuse
