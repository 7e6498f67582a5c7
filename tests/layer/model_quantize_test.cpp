// quantize_model: a whole model folder (tests/data/models/) quantised and read back with no other config. Every
// quantised layer equals the float folder quantised on load (bitwise) and is within per-token cosine 0.99 (int4:
// 0.95) of the float layer; every other tensor is copied byte for byte; the output keeps the input's shards;
// failures leave nothing behind.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/gptq_folder.h"
#include "util/model_families.h"

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using namespace testing;  // the model families' test folders (Family, kFamilies, model_dir), the temp directory

bool int8_chain_allows(DType d, QuantMode q) { return q == QuantMode::w8a8 ? d != DType::f32 : d == DType::bf16; }

void expect_round_trip(const Family& f, QuantMode mode, const std::string& out) {
  const ModelConfig in = load_model_config(model_dir(f.name));
  const QuantizeModelResult r = quantize_model(model_dir(f.name), out, {.mode = mode, .threads = 2});
  EXPECT_EQ(r.layers, f.moe_layers);
  const ModelConfig q = load_model_config(out);
  EXPECT_EQ(q.quant_mode, mode);
  EXPECT_EQ(q.quantized_layers, f.moe_layers);
  EXPECT_EQ(q.layer, in.layer);
  const Checkpoint src(model_dir(f.name)), dst(out);
  EXPECT_EQ(dst.files().size(), src.files().size());
  for (size_t i = 0; i < src.files().size(); ++i)
    EXPECT_EQ(fs::path(dst.files()[i]).filename(), fs::path(src.files()[i]).filename());
  for (int64_t l : f.moe_layers) {
    SCOPED_TRACE("layer " + std::to_string(l));
    MoeLayer quantised = load_model_layer(out, l, {.threads = 2});
    EXPECT_EQ(quantised.config().quant_mode, mode);
    MoeConfig on_load = in.layer_config(l);
    on_load.quant_mode = mode;
    MoeLayer expected = MoeLayer::from_checkpoint(on_load, src, l, {.threads = 2});
    MoeLayer float_layer = load_model_layer(model_dir(f.name), l, {.threads = 2});
    const Tensor x = random_tokens(33, in.layer.hidden_size, uint64_t(l) + 5, in.layer.dtype);
    const Tensor y = quantised.forward(x, true);
    EXPECT_TENSOR_EQ(expected.forward(x, true), y);
    const double cos = testing::min_token_cosine(float_layer.forward(x, true), y);
    EXPECT_GE(cos, 0.99);
    ::testing::Test::RecordProperty(std::string(f.name) + "_" + std::string(quant_mode_name(mode)) + "_layer" + std::to_string(l) +
                       "_min_cosine",
                   std::to_string(cos));
  }
  // Every tensor that is not a quantised projection (or its new scale / clip factor) is the input's, byte for byte.
  for (const std::string& n : dst.names()) {
    if (src.has(n) && src.entry(n).dtype == dst.entry(n).dtype) {
      EXPECT_TENSOR_EQ(src.read(n), dst.read(n)) << n;
      EXPECT_EQ(fs::path(src.file_of(n)).filename(), fs::path(dst.file_of(n)).filename()) << n;
    } else if (src.has(n)) {
      EXPECT_EQ(dst.entry(n).dtype, "I8") << n;
      EXPECT_EQ(dst.entry(n).shape, src.entry(n).shape) << n;
    }
  }
  for (const std::string& n : src.names()) EXPECT_TRUE(dst.has(n)) << n;
}

class ModelQuantize : public ::testing::TestWithParam<Family> {};

TEST_P(ModelQuantize, RoundTripsThroughTheFolder) {
  const Family& f = GetParam();
  const DType dtype = load_model_config(model_dir(f.name)).layer.dtype;
  for (QuantMode mode : {QuantMode::w8a8, QuantMode::w8a8c8}) {
    SCOPED_TRACE(std::string(quant_mode_name(mode)));
    testing::TempDirectory dir;
    const std::string out = dir.file("out");
    if (int8_chain_allows(dtype, mode)) {
      expect_round_trip(f, mode, out);
    } else {
      EXPECT_THROWS_MSG(quantize_model(model_dir(f.name), out, {.mode = mode}), ValueError, "quant_mode");
      EXPECT_TRUE(dir.listing().empty());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ModelQuantize, ::testing::ValuesIn(kFamilies),
                         [](const ::testing::TestParamInfo<Family>& i) { return std::string(i.param.name); });

TEST(ModelQuantizeLayers, OnlyTheChosenLayersAreQuantised) {
  testing::TempDirectory dir;
  const std::string out = dir.file("q");
  const QuantizeModelResult r = quantize_model(model_dir("qwen3_moe"), out, {.mode = QuantMode::w8a8, .layers = {2}});
  EXPECT_EQ(r.layers, std::vector<int64_t>{2});
  const ModelConfig q = load_model_config(out);
  EXPECT_EQ(q.quantized_layers, std::vector<int64_t>{2});
  EXPECT_EQ(q.layer_config(0).quant_mode, QuantMode::none);
  const Checkpoint dst(out), src(model_dir("qwen3_moe"));
  EXPECT_EQ(dst.entry("model.layers.0.mlp.experts.0.gate_proj.weight").dtype, "BF16");
  EXPECT_EQ(dst.entry("model.layers.2.mlp.experts.0.gate_proj.weight").dtype, "I8");
  const Tensor x = random_tokens(4, 32, 1, DType::bf16);
  EXPECT_TENSOR_EQ(load_model_layer(model_dir("qwen3_moe"), 0).forward(x), load_model_layer(out, 0).forward(x));
  // Other files of the folder come along, config.json gets the quantization_config.
  const std::string config = testing::read_bytes(dir.file("q/config.json"));
  EXPECT_NE(config.find("\"quant_method\": \"moefuse\""), std::string::npos) << config;
}

TEST(ModelQuantizeErrors, OutputInsideOrEqualToTheInputIsRefused) {
  EXPECT_THROWS_MSG(quantize_model(model_dir("mixtral"), model_dir("mixtral"), {}), ValueError,
                    "quantize_model: out_dir: expected a directory outside the input folder", "(the input itself)");
  EXPECT_THROWS_MSG(quantize_model(model_dir("mixtral"), model_dir("mixtral") + "/q", {}), ValueError, "(inside it)");
  EXPECT_THROWS_MSG(quantize_model(model_dir("mixtral"), model_dir("mixtral") + "/../mixtral/./", {}), ValueError,
                    "(the input itself)");
  EXPECT_FALSE(fs::exists(model_dir("mixtral") + "/q"));
}

TEST(ModelQuantizeErrors, ExistingOutputMustBeEmpty) {
  testing::TempDirectory dir;
  fs::create_directories(dir.file("full"));
  testing::write_bytes(dir.file("full/x"), "x");
  EXPECT_THROWS_MSG(quantize_model(model_dir("mixtral"), dir.file("full"), {}), IoError,
                    "a new directory name or an empty directory", "not empty");
  fs::create_directories(dir.file("empty"));
  quantize_model(model_dir("mixtral"), dir.file("empty"), {});
  EXPECT_EQ(load_model_config(dir.file("empty")).quant_mode, QuantMode::w8a8);
}

TEST(ModelQuantizeErrors, DenseLayersAndQuantisedInputsAreRefused) {
  testing::TempDirectory dir;
  EXPECT_THROWS_MSG(quantize_model(model_dir("deepseek_v3"), dir.file("q"), {.layers = {0}}), ValueError,
                    "quantize_model: layers: expected distinct MoE layers of", "(1, 2), got 0");
  EXPECT_THROWS_MSG(quantize_model(model_dir("deepseek_v3"), dir.file("q"), {.layers = {1, 1}}), ValueError,
                    "got 1 twice");
  quantize_model(model_dir("deepseek_v3"), dir.file("q"), {});
  EXPECT_THROWS_MSG(quantize_model(dir.file("q"), dir.file("q2"), {}), ValueError,
                    "quantization_config: expected a float model, got one already quantised (w8a8)");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"q"});
}

TEST(ModelQuantizeErrors, ANonFiniteWeightLeavesNothingBehind) {
  testing::TempDirectory dir;
  const fs::path in = dir.path() / "in";
  fs::create_directories(in);
  for (const auto& e : fs::directory_iterator(model_dir("qwen3_moe"))) fs::copy_file(e.path(), in / e.path().filename());
  // A NaN (bf16 0x7fc0) in layer 2's expert 3 up projection, row 1, column 2.
  const std::string name = "model.layers.2.mlp.experts.3.up_proj.weight";
  uint64_t header = 0;
  const SafetensorsEntry e = SafetensorsFile((in / "model.safetensors").string()).entry(name);
  std::string bytes = testing::read_bytes((in / "model.safetensors").string());
  std::memcpy(&header, bytes.data(), 8);
  const size_t at = size_t(8 + header + e.begin + (1 * 32 + 2) * 2);
  bytes[at] = char(0xc0);
  bytes[at + 1] = char(0x7f);
  testing::write_bytes((in / "model.safetensors").string(), bytes);
  EXPECT_THROWS_MSG(quantize_model(in.string(), dir.file("out"), {}), ValueError, name, "got nan at [1, 2]");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"in"});  // no output, no staging folder
}

// int4: the committed folders' experts (width 16) are narrower than any group, so the float folders are derived
// with width 32 (util/gptq_folder.h: experts random, everything else copied).
struct Int4Case {
  const char* family;
  QuantMode mode;
  bool symmetric;
};

TEST(ModelQuantizeInt4, RoundTripsThroughAGptqFolder) {
  for (const Int4Case& k : {Int4Case{"qwen2_moe", QuantMode::w4a16, true}, Int4Case{"mixtral", QuantMode::w4a16, false},
                            Int4Case{"qwen3_moe", QuantMode::w4a8, false}}) {
    SCOPED_TRACE(k.family);
    testing::TempDirectory dir;
    const std::string in = dir.file("float"), out = dir.file("int4");
    testing::write_derived_folder(testing::DerivedFolder{.family = k.family, .gptq = false}, in);
    const ModelConfig m = load_model_config(in);
    const QuantizeModelResult r =
        quantize_model(in, out, {.mode = k.mode, .group_size = 32, .symmetric = k.symmetric, .threads = 2});
    EXPECT_EQ(r.layers, m.moe_layers);
    const ModelConfig q = load_model_config(out);
    EXPECT_EQ(q.quant_mode, k.mode);
    EXPECT_EQ(q.quantized_layers, m.moe_layers);
    EXPECT_EQ(q.gptq.group_size, 32);
    EXPECT_EQ(q.gptq.sym, k.symmetric);
    EXPECT_FALSE(q.gptq.desc_act);
    const Checkpoint src(in), dst(out);
    for (int64_t l : m.moe_layers) {
      SCOPED_TRACE("layer " + std::to_string(l));
      MoeConfig on_load = m.layer_config(l);
      on_load.quant_mode = k.mode;
      on_load.quant_group_size = 32;
      on_load.quant_symmetric = k.symmetric;
      EXPECT_EQ(q.layer_config(l), on_load);
      const Tensor x = random_tokens(17, 32, uint64_t(l) + 3, m.layer.dtype);
      const Tensor y = load_model_layer(out, l, {.threads = 2}).forward(x, true);
      EXPECT_TENSOR_EQ(MoeLayer::from_checkpoint(on_load, src, l, {.threads = 2}).forward(x, true), y);
      const double cos = testing::min_token_cosine(load_model_layer(in, l, {.threads = 2}).forward(x, true), y);
      EXPECT_GE(cos, 0.95);
      ::testing::Test::RecordProperty(std::string(k.family) + "_" + std::string(quant_mode_name(k.mode)) + "_layer" +
                                          std::to_string(l) + "_min_cosine",
                                      std::to_string(cos));
      const std::string e0 = layer_checkpoint_prefix(on_load, l) + ".experts.0.";
      const std::string gate = k.family == std::string("mixtral") ? "w1" : "gate_proj";
      EXPECT_EQ(dst.entry(e0 + gate + ".qweight").dtype, "I32");
      EXPECT_EQ(dst.entry(e0 + gate + ".qweight").shape, (std::vector<int64_t>{4, 32}));
      EXPECT_EQ(dst.entry(e0 + gate + ".scales").dtype, "F16");
      EXPECT_FALSE(dst.has(e0 + gate + ".weight"));
    }
    for (const std::string& n : dst.names())
      if (src.has(n)) EXPECT_TENSOR_EQ(src.read(n), dst.read(n)) << n;
  }
}

TEST(ModelQuantizeInt4, RefusalsAsForInt8) {
  testing::TempDirectory dir;
  const std::string in = dir.file("float");
  testing::write_derived_folder(testing::DerivedFolder{.family = "olmoe", .gptq = false}, in);  // f32
  EXPECT_THROWS_MSG(quantize_model(in, dir.file("a"), {.mode = QuantMode::w4a8, .group_size = 32}), ValueError,
                    "quant_mode w4a8");
  EXPECT_THROWS_MSG(quantize_model(in, dir.file("a"), {.mode = QuantMode::w4a16, .group_size = 64}), ValueError,
                    "quant_group_size: expected a group size dividing the");
  quantize_model(in, dir.file("q"), {.mode = QuantMode::w4a16, .group_size = 32, .layers = {1}});
  const ModelConfig q = load_model_config(dir.file("q"));
  EXPECT_EQ(q.quantized_layers, std::vector<int64_t>{1});
  EXPECT_EQ(q.layer_config(0).quant_mode, QuantMode::none);
  const Tensor x = random_tokens(3, 32, 2, DType::f32);
  EXPECT_TENSOR_EQ(load_model_layer(in, 0).forward(x), load_model_layer(dir.file("q"), 0).forward(x));
  EXPECT_THROWS_MSG(quantize_model(dir.file("q"), dir.file("q2"), {.mode = QuantMode::w4a16}), ValueError,
                    "quantization_config: expected a float model, got one already quantised (w4a16)");
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"float", "q"}));
}

}  // namespace
}  // namespace moefuse
