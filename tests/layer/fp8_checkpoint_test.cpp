// FP8 block-scaled checkpoints (docs/layer.md §8): the two test folders (made with torch's float8_e4m3fn by
// tests/data/models/make_models.py, named as the DeepSeek-V3 and Qwen3 FP8 releases) and a checkpoint written here
// with a width the fused decode path takes, each equal bit for bit to the oracle "dequantise in fp32, round to the
// model dtype, run the float layer"; and every bad FP8 checkpoint refused with an error naming what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/fp8_checkpoint.h"
#include "util/model_families.h"

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using testing::model_dir;

TEST(Fp8, EveryE4m3EncodingWidensToItsValue) {
  for (int v = 0; v < 256; ++v) {
    const float want = testing::e4m3_by_definition(uint8_t(v)), got = f32_from_e4m3(uint8_t(v));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << v;
    } else {
      EXPECT_EQ(f32_bits(want), f32_bits(got)) << v;  // signed zeros included
    }
  }
  EXPECT_EQ(f32_from_e4m3(0x7e), 448.0f);
  EXPECT_EQ(f32_from_e4m3(0x01), std::ldexp(1.0f, -9));
}

struct Fp8Folder {
  const char* name;
  std::vector<int64_t> moe_layers;
  int64_t bn, bk;
};

const Fp8Folder kFolders[] = {{"qwen3_moe_fp8", {0, 2}, 128, 128}, {"deepseek_v3_fp8", {1, 2}, 8, 12}};

class Fp8ModelFolder : public ::testing::TestWithParam<Fp8Folder> {};

TEST_P(Fp8ModelFolder, LayerEqualsTheDequantiseThenFloatOracleBitwise) {
  const Fp8Folder& f = GetParam();
  const ModelConfig m = load_model_config(model_dir(f.name));
  EXPECT_FALSE(m.fp8.source.empty());
  EXPECT_EQ(m.fp8.block_n, f.bn);
  EXPECT_EQ(m.fp8.block_k, f.bk);
  EXPECT_EQ(m.quant_mode, QuantMode::none);
  const Checkpoint ck(model_dir(f.name));
  for (int64_t l : f.moe_layers) {
    SCOPED_TRACE("layer " + std::to_string(l));
    MoeLayer layer = load_model_layer(model_dir(f.name), l, {.threads = 2});
    const MoeConfig& c = layer.config();
    const LayerWeights oracle = testing::fp8_oracle_weights(c, ck, l, layer.weights(), f.bn, f.bk);
    for (bool prefill : {false, true}) {
      const Tensor x = random_tokens(prefill ? 37 : 3, c.hidden_size, uint64_t(l) + 5, c.dtype);
      LayerRouting got_r, want_r;
      const Tensor got = layer.forward(x, prefill, &got_r);
      EXPECT_TENSOR_EQ(reference_layer_forward(c, oracle, x, &want_r), got);
      EXPECT_TENSOR_EQ(want_r.topk_idx, got_r.topk_idx);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Folders, Fp8ModelFolder, ::testing::ValuesIn(kFolders),
                         [](const ::testing::TestParamInfo<Fp8Folder>& i) { return std::string(i.param.name); });

// A qwen3_moe layer (H 64, I 32: the fused decode path's widths) written as an FP8 checkpoint with blocks [16, 24]
// (K = 64 and 32 both end in a partial block), random e4m3 values (no NaN) and scales; `edit` may change the
// tensors and the quantization_config before they are written.
constexpr const char* kYaml = R"(model_config:
  model_type: qwen3_moe
  num_experts: 4
  num_experts_per_tok: 2
  hidden_size: 64
  moe_intermediate_size: 32
  scoring_func: softmax
  norm_topk_prob: true
  dtype: bf16
)";
constexpr const char* kQuantConfig =
    R"({"quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [16, 24]}})";

template <class Edit>
std::string write_fp8_checkpoint(const testing::TempDirectory& dir, Edit edit) {
  const MoeConfig c = parse_config_yaml(kYaml, "fp8.yaml");
  const MoeLayer random = MoeLayer::with_random_weights(c, 7, {.threads = 1});
  std::mt19937 rng(11);
  std::vector<testing::RawTensor> raw;
  for (const auto& [name, t] : layer_checkpoint_tensors(c, random.weights(), 0)) {
    if (name.find(".experts.") == std::string::npos) {
      raw.push_back(testing::raw_tensor(name, t));
      continue;
    }
    const int64_t n = t.size(0), k = t.size(1);
    testing::RawTensor q{name, "F8_E4M3", {n, k}, std::vector<std::byte>(size_t(n * k))};
    for (std::byte& b : q.bytes) {
      uint8_t v = uint8_t(rng());
      if ((v & 0x7f) == 0x7f) v = 0x7e;  // NaN -> 448
      b = std::byte(v);
    }
    Tensor s = Tensor::empty(DType::f32, {(n + 15) / 16, (k + 23) / 24});
    for (int64_t i = 0; i < s.numel(); ++i) s.data_as<float>()[i] = 1e-3f * float(1 + rng() % 1000) / 64.0f;
    raw.push_back(std::move(q));
    raw.push_back(testing::raw_tensor(name + "_scale_inv", s));
  }
  std::string config = kQuantConfig;
  edit(raw, config);
  const fs::path out = dir.path() / "fp8";
  fs::create_directories(out);
  testing::write_raw_safetensors((out / "model.safetensors").string(), raw);
  if (!config.empty()) testing::write_bytes((out / "config.json").string(), config);
  return out.string();
}

std::string write_fp8_checkpoint(const testing::TempDirectory& dir) {
  return write_fp8_checkpoint(dir, [](std::vector<testing::RawTensor>&, std::string&) {});
}

TEST(Fp8Checkpoint, FusedAndChainPathsEqualTheOracleBitwise) {
  testing::TempDirectory dir;
  const Checkpoint ck(write_fp8_checkpoint(dir));
  MoeConfig c = parse_config_yaml(kYaml, "fp8.yaml");
  MoeLayer fused = MoeLayer::from_checkpoint(c, ck, 0, {.threads = 2});
  c.enable_superkernel = false;
  MoeLayer chain = MoeLayer::from_checkpoint(c, ck, 0, {.threads = 2});
  const LayerWeights oracle = testing::fp8_oracle_weights(c, ck, 0, fused.weights(), 16, 24);
  for (int64_t T : {1, 5}) {
    const Tensor x = random_tokens(T, 64, uint64_t(T), DType::bf16);
    const Tensor want = reference_layer_forward(c, oracle, x);
    EXPECT_TENSOR_EQ(want, fused.forward(x));
    EXPECT_EQ(fused.path(), "superkernel");
    EXPECT_TENSOR_EQ(want, chain.forward(x));
    EXPECT_EQ(chain.path(), "chain");
  }
}

// The first routed-expert weight of the checkpoint (gate_proj of expert 0), and its scale.
testing::RawTensor* find(std::vector<testing::RawTensor>& raw, const std::string& suffix) {
  for (testing::RawTensor& t : raw)
    if (t.name == "model.layers.0.mlp.experts.0.gate_proj." + suffix) return &t;
  ADD_FAILURE() << suffix;
  return nullptr;
}

MoeLayer load(const std::string& path) {
  return MoeLayer::from_checkpoint(parse_config_yaml(kYaml, "fp8.yaml"), Checkpoint(path), 0, {.threads = 1});
}

TEST(Fp8Checkpoint, BadCheckpointsAreClearErrors) {
  using Raw = std::vector<testing::RawTensor>;
  const std::string w = "model.layers.0.mlp.experts.0.gate_proj.weight";
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) { find(raw, "weight")->dtype = "F8_E5M2"; });
    EXPECT_THROWS_MSG(load(p), TypeError, w + ": expected dtype F8_E4M3 (", "config.json: quantization_config declares fmt \"e4m3\"), got F8_E5M2");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      raw.erase(raw.begin() + (find(raw, "weight_scale_inv") - raw.data()));
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + "_scale_inv: expected a tensor of this checkpoint (the block scales of the F8_E4M3 weight " + w + "), got none");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      testing::RawTensor* s = find(raw, "weight_scale_inv");
      s->shape = {2, 2};  // [ceil(32 / 16), ceil(64 / 24)] is [2, 3]
      s->bytes.resize(16);
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + "_scale_inv: expected shape [2, 3] (weight [32, 64] in blocks of [16, 24], ",
                      "weight_block_size), got [2, 2]");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      const float inf = INFINITY;
      std::memcpy(find(raw, "weight_scale_inv")->bytes.data() + 4, &inf, 4);
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + "_scale_inv: expected finite values", "got inf at [0, 1]");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      find(raw, "weight")->bytes[70] = std::byte(0xff);  // row 1, column 6: NaN
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + ": expected finite values", "got nan at [1, 6]");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw&, std::string& config) { config.clear(); });
    EXPECT_THROWS_MSG(load(p), ValueError, w + ": expected a config.json beside the checkpoint whose quantization_config has quant_method \"fp8\"",
                      "for a weight of dtype F8_E4M3, got none");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw&, std::string& config) {
      config.replace(config.find("dynamic"), 7, "static");
    });
    EXPECT_THROWS_MSG(load(p), ValueError, "config.json: quantization_config.activation_scheme: expected \"dynamic\"",
                      "got \"static\"");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw&, std::string& config) {
      config.replace(config.find("[16, 24]"), 8, "[16]");
    });
    EXPECT_THROWS_MSG(load(p), ValueError, "config.json: quantization_config.weight_block_size: expected two integers >= 1",
                      "got [16]");
  }
}

TEST(Fp8Checkpoint, QuantizeRefusesAnFp8Folder) {
  testing::TempDirectory dir;
  EXPECT_THROWS_MSG(quantize_model(model_dir("qwen3_moe_fp8"), (dir.path() / "out").string(), {}), ValueError,
                    "config.json: quantization_config: expected a float model, got an FP8 block-scaled one");
  EXPECT_FALSE(fs::exists(dir.path() / "out"));
}

TEST(Fp8Checkpoint, ConfigJsonErrors) {
  const std::string base = R"({"model_type": "qwen3_moe", "hidden_size": 32, "num_hidden_layers": 1, "num_experts": 4,
    "num_experts_per_tok": 2, "moe_intermediate_size": 16, "dtype": "bfloat16", "quantization_config": )";
  auto parse = [&](const std::string& qc) { return parse_model_config_json(base + qc + "}", "m/config.json"); };
  const ModelConfig m = parse(R"({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 64], "activation_scheme": "dynamic"})");
  EXPECT_EQ(m.fp8.block_n, 128);
  EXPECT_EQ(m.fp8.block_k, 64);
  EXPECT_EQ(m.fp8.source, "m/config.json: quantization_config");
  EXPECT_EQ(parse(R"({"quant_method": "fp8"})").fp8.block_k, 128);  // transformers' defaults
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "fp8", "fmt": "e5m2"})"), ValueError,
                    "m/config.json: quantization_config.fmt: expected \"e4m3\" (the FP8 format moefuse reads), got \"e5m2\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "fp8", "activation_scheme": "static"})"), ValueError,
                    "m/config.json: quantization_config.activation_scheme: expected \"dynamic\"", "got \"static\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "fp8", "weight_block_size": [0, 128]})"), ValueError,
                    "quantization_config.weight_block_size: expected two integers >= 1", "got [0, 128]");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "awq"})"), ValueError,
                    "m/config.json: quantization_config.quant_method: expected one of: moefuse, fp8", "got \"awq\"");
}

}  // namespace
}  // namespace moefuse
