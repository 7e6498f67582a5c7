// Model folders as shipped (tests/data/models/, written by transformers' save_pretrained, see make_models.py there):
// each family's layer read from its config.json alone equals the same layer read with an explicit moefuse config,
// bit for bit, and the config.json errors (dense layer, contradicting shapes, execution keys) name what they must.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/model_families.h"

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using testing::Family;
using testing::kFamilies;
using testing::model_dir;

class ModelFolder : public ::testing::TestWithParam<Family> {};

TEST_P(ModelFolder, ConfigJsonGivesTheExplicitConfig) {
  const Family& f = GetParam();
  const ModelConfig m = load_model_config(model_dir(f.name));
  EXPECT_EQ(m.moe_layers, f.moe_layers);
  EXPECT_EQ(m.num_hidden_layers, f.num_hidden_layers);
  EXPECT_EQ(m.quant_mode, QuantMode::none);
  EXPECT_EQ(m.layer, parse_config_yaml(f.yaml, f.name));
}

TEST_P(ModelFolder, LayerFromTheFolderEqualsTheLayerWithAnExplicitConfigBitwise) {
  const Family& f = GetParam();
  const MoeConfig explicit_config = parse_config_yaml(f.yaml, f.name);
  const Checkpoint ck(model_dir(f.name));
  for (int64_t l : f.moe_layers) {
    SCOPED_TRACE("layer " + std::to_string(l));
    MoeLayer from_folder = load_model_layer(model_dir(f.name), l, {.threads = 2});
    MoeLayer from_config = MoeLayer::from_checkpoint(explicit_config, ck, l, {.threads = 2});
    for (bool prefill : {false, true}) {
      const Tensor x = random_tokens(prefill ? 37 : 3, 32, uint64_t(l) + 11, explicit_config.dtype);
      LayerRouting ra, rb;
      const Tensor a = from_folder.forward(x, prefill, &ra);
      const Tensor b = from_config.forward(x, prefill, &rb);
      EXPECT_TENSOR_EQ(b, a);
      EXPECT_TENSOR_EQ(rb.topk_idx, ra.topk_idx);
      EXPECT_TENSOR_EQ(rb.topk_weight, ra.topk_weight);
    }
    // The oracle agrees with both (the folder's weights are real trained-like values, not the generator's).
    const Tensor x = random_tokens(5, 32, 3, explicit_config.dtype);
    EXPECT_TENSOR_EQ(reference_layer_forward(explicit_config, from_folder.weights(), x), from_folder.forward(x));
  }
}

TEST_P(ModelFolder, DenseLayerNamesTheMoeLayers) {
  const Family& f = GetParam();
  const ModelConfig m = load_model_config(model_dir(f.name));
  for (int64_t l = 0; l <= f.num_hidden_layers; ++l) {
    if (m.is_moe_layer(l)) continue;
    std::string list;
    for (int64_t x : f.moe_layers) list += (list.empty() ? "" : ", ") + std::to_string(x);
    EXPECT_THROWS_MSG(load_model_layer(model_dir(f.name), l), ValueError,
                     "config.json", "--layer", "one of the MoE layers " + list,
                      l < f.num_hidden_layers ? "(a dense layer)" : "(no such layer)");
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ModelFolder, ::testing::ValuesIn(kFamilies),
                         [](const ::testing::TestParamInfo<Family>& i) { return std::string(i.param.name); });

// A copy of a family's folder whose config.json has `from` replaced by `to`.
std::string edited_copy(const testing::TempDirectory& dir, const std::string& family, const std::string& from,
                        const std::string& to) {
  const fs::path out = dir.path() / family;
  fs::create_directories(out);
  for (const auto& e : fs::directory_iterator(model_dir(family))) fs::copy_file(e.path(), out / e.path().filename());
  std::string json = testing::read_bytes((out / "config.json").string());
  const size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  json.replace(at, from.size(), to);
  testing::write_bytes((out / "config.json").string(), json);
  return out.string();
}

TEST(ModelFolderErrors, ConfigJsonContradictingTheTensorsNamesBoth) {
  testing::TempDirectory dir;
  const std::string d = edited_copy(dir, "qwen3_moe", "\"moe_intermediate_size\": 16", "\"moe_intermediate_size\": 24");
  EXPECT_THROWS_MSG(load_model_layer(d, 0), ValueError,
                   "config.json: moe_intermediate_size = 24, hidden_size = 32 contradict",
                    "model.layers.0.mlp.experts.0.gate_proj.weight of shape [16, 32]");
  const std::string e = edited_copy(dir, "mixtral", "\"num_local_experts\": 4", "\"num_local_experts\": 3");
  EXPECT_THROWS_MSG(load_model_layer(e, 1), ValueError,
                   "config.json: num_experts = 3, hidden_size = 32 contradict",
                    "model.layers.1.block_sparse_moe.gate.weight of shape [4, 32]");
}

TEST(ModelFolderErrors, ExecutionKeysComeFromTheOptionsConfigAndModelKeysMustAgree) {
  const Family& f = kFamilies[5];  // deepseek_v3
  MoeConfig options = parse_config_yaml(f.yaml, "opts.yaml");
  options.exe_mode = ExeMode::eager;
  options.moe_chunk_max_len = 4;
  options.enable_superkernel = false;
  options.router_logits_dtype = RouterLogitsDtype::model;
  MoeLayer layer = load_model_layer(model_dir(f.name), 1, {.threads = 1}, &options, "opts.yaml");
  EXPECT_EQ(layer.config(), options);
  options.num_experts = 16;
  EXPECT_THROWS_MSG(load_model_layer(model_dir(f.name), 1, {}, &options, "opts.yaml"), ValueError,
                   "opts.yaml: model_config.num_experts: expected 8 (as ", "config.json says), got 16");
}

TEST(ModelFolderErrors, FloatFolderQuantisedOnLoadByTheOptionsConfig) {
  const Family& f = kFamilies[0];
  MoeConfig options = parse_config_yaml(f.yaml, "opts.yaml");
  options.quant_mode = QuantMode::w8a8;
  const MoeLayer a = load_model_layer(model_dir(f.name), 2, {.threads = 1}, &options, "opts.yaml");
  const MoeLayer b = MoeLayer::from_checkpoint(options, Checkpoint(model_dir(f.name)), 2, {.threads = 1});
  EXPECT_EQ(a.config().quant_mode, QuantMode::w8a8);
  EXPECT_TENSOR_EQ(b.weights().w13, a.weights().w13);
}

}  // namespace
}  // namespace moefuse
