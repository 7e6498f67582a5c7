// GPTQ int4 model folders read as shipped (config.json's quantization_config quant_method "gptq", no moefuse
// config): folders derived from the committed test folders with GPTQ tensors packed here (util/gptq_folder.h) run
// bitwise as the same layer loaded with an explicit w4a16 / w4a8 config; desc_act with the trivial g_idx and with a
// permuted one reads; every other refusal names the file, the key or tensor, what was expected and given.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/gptq_folder.h"
#include "util/model_families.h"

namespace moefuse {
namespace {

using testing::DerivedFolder;
using testing::TempDirectory;

std::string gptq_json(int64_t G, bool sym, const std::string& extra = "") {
  return R"({"bits": 4, "group_size": )" + std::to_string(G) + R"(, "damp_percent": 0.01, "desc_act": false, "sym": )" +
         (sym ? "true" : "false") + R"(, "true_sequential": true, "model_name_or_path": null, "quant_method": "gptq")" +
         extra + "}";
}

// The family's explicit config (written by hand in model_families.h) with the derived folder's expert width.
MoeConfig explicit_config(const std::string& family, QuantMode mode, int64_t G, bool sym) {
  for (const testing::Family& f : testing::kFamilies)
    if (f.name == family) {
      MoeConfig c = parse_config_yaml(f.yaml, family);
      c.moe_intermediate_size = 32;
      c.quant_mode = mode;
      c.quant_group_size = G;
      c.quant_symmetric = sym;
      validate(c, "test config");
      return c;
    }
  throw std::runtime_error("no family " + family);
}

struct Case {
  const char* family;
  QuantMode mode;
  bool sym;
  bool v2;
};

TEST(GptqFolder, RunsAsTheSameLayerWithAnExplicitConfig) {
  for (const Case& k : {Case{"qwen2_moe", QuantMode::w4a16, false, false},
                        Case{"mixtral", QuantMode::w4a16, true, false},
                        Case{"qwen3_moe", QuantMode::w4a8, false, true}}) {
    SCOPED_TRACE(k.family);
    TempDirectory dir;
    const std::string folder = dir.file("gptq");
    std::string extra = k.v2 ? R"(, "checkpoint_format": "gptq_v2")" : "";
    if (k.mode == QuantMode::w4a8) extra += R"(, "moefuse_quant_mode": "w4a8")";
    testing::write_derived_folder(
        DerivedFolder{
            .family = k.family, .symmetric = k.sym, .v2 = k.v2, .quantization_json = gptq_json(32, k.sym, extra)},
        folder);
    const ModelConfig m = load_model_config(folder);
    EXPECT_EQ(m.quant_mode, k.mode);
    EXPECT_EQ(m.quantized_layers, m.moe_layers);
    EXPECT_EQ(m.gptq.group_size, 32);
    EXPECT_EQ(m.gptq.sym, k.sym);
    EXPECT_EQ(m.gptq.checkpoint_format, k.v2 ? "gptq_v2" : "gptq");
    const MoeConfig want = explicit_config(k.family, k.mode, 32, k.sym);
    for (int64_t l : m.moe_layers) {
      SCOPED_TRACE("layer " + std::to_string(l));
      EXPECT_EQ(m.layer_config(l), want);
      MoeLayer from_folder = load_model_layer(folder, l, {.threads = 2});
      MoeLayer from_config =
          MoeLayer::from_checkpoint(want, Checkpoint(folder + "/model.safetensors"), l, {.threads = 2});
      const Tensor x = random_tokens(5, 32, uint64_t(l) + 1, want.dtype);
      EXPECT_TENSOR_EQ(from_folder.forward(x, true), from_config.forward(x, true));
      EXPECT_TENSOR_EQ(from_folder.forward(x, false), from_config.forward(x, false));
    }
    // A moefuse config beside the folder gives execution keys; its groups must be the folder's.
    MoeConfig options = want;
    options.enable_superkernel = !want.enable_superkernel;
    EXPECT_EQ(with_execution_options(m.layer_config(m.moe_layers[0]), m.source, options, "o.yaml").enable_superkernel,
              options.enable_superkernel);
    options.quant_group_size = 64;
    EXPECT_THROWS_MSG(with_execution_options(m.layer_config(m.moe_layers[0]), m.source, options, "o.yaml"),
                      ValueError, "o.yaml: model_config.quant_group_size: expected 32 (as", "got 64");
  }
}

TEST(GptqFolder, DescActReadsTheTrivialGIdxAndAPermutedOne) {
  TempDirectory dir;
  const std::string plain = dir.file("plain"), act = dir.file("act");
  testing::write_derived_folder(DerivedFolder{.family = "qwen3_moe", .quantization_json = gptq_json(32, false)}, plain);
  const std::string desc = R"({"bits": 4, "group_size": 32, "desc_act": true, "sym": false, "quant_method": "gptq"})";
  testing::write_derived_folder(DerivedFolder{.family = "qwen3_moe", .quantization_json = desc}, act);
  EXPECT_TRUE(load_model_config(act).gptq.desc_act);
  const Tensor x = random_tokens(3, 32, 9, DType::bf16);
  EXPECT_TENSOR_EQ(load_model_layer(plain, 2).forward(x), load_model_layer(act, 2).forward(x));
  EXPECT_FALSE(load_model_layer(act, 2).weights().w13_perm.defined());  // i / G: no gather
  // Down's 64 input channels (experts 64 wide) in two groups of the even and the odd ones: real act order, read
  // (the layer's own tests: gptq_act_order_test.cpp); the inner order is put into gate's and up's rows, not gathered.
  const std::string wide = dir.file("wide"), name = "model.layers.2.mlp.experts.5.down_proj.g_idx";
  testing::write_derived_folder(DerivedFolder{.family = "qwen3_moe", .expert_width = 64, .quantization_json = desc},
                                wide);
  Tensor g = Tensor::empty(DType::i32, {64});
  for (int64_t i = 0; i < 64; ++i) g.data_as<int32_t>()[i] = int32_t(i % 2);
  testing::replace_tensor(wide, name, g);
  MoeLayer layer = load_model_layer(wide, 2);
  EXPECT_FALSE(layer.weights().w13_perm.defined());
  const MoeConfig c = load_model_config(wide).layer_config(2);
  EXPECT_TENSOR_EQ(reference_layer_forward(c, layer.weights(), x), layer.forward(x));
  g.data_as<int32_t>()[3] = 2;  // two groups: no group 2
  testing::replace_tensor(wide, name, g);
  EXPECT_THROWS_MSG(load_model_layer(wide, 2), ValueError, wide + "/model.safetensors", name,
                    "expected groups 0..1 (I / 32 groups), got g_idx[3] = 2");
}

TEST(GptqFolder, ConfigErrorsNameTheKey) {
  const std::string base = R"({"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2,
    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "dtype": "bfloat16",
    "quantization_config": )";
  auto parse = [&](const std::string& q) { return parse_model_config_json(base + q + "}", "m/config.json"); };
  EXPECT_EQ(parse(R"({"quant_method": "gptq", "group_size": 32})").quant_mode, QuantMode::w4a16);
  EXPECT_EQ(parse(R"({"quant_method": "gptq", "group_size": 32, "quantized_layers": [1]})").layer_config(0).quant_mode,
            QuantMode::none);
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "bits": 8, "group_size": 32})"), ValueError,
                    "m/config.json: quantization_config.bits: expected 4", "got 8");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "bits": 4})"), ValueError,
                    "quantization_config.group_size: expected 32, 64 or 128, got none");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "group_size": -1})"), ValueError,
                    "quantization_config.group_size: expected 32, 64 or 128", "got -1 (one group per column");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "group_size": 48})"), ValueError,
                    "quantization_config.group_size: expected 32, 64 or 128", "got 48");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "group_size": 64})"), ValueError,
                    "quantization_config.group_size: expected a group size dividing moe_intermediate_size (32), "
                    "got 64");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "group_size": 32, "checkpoint_format": "marlin"})"),
                    ValueError,
                    "quantization_config.checkpoint_format: expected \"gptq\" or \"gptq_v2\", got \"marlin\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "group_size": 32, "moefuse_quant_mode": "w8a8"})"),
                    ValueError, "quantization_config.moefuse_quant_mode: expected \"w4a16\" or \"w4a8\", got \"w8a8\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "gptq", "group_size": 32, "sym": "yes"})"), ValueError,
                    "quantization_config.sym");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "bitsandbytes", "group_size": 32})"), ValueError,
                    "quantization_config.quant_method: expected one of: moefuse, fp8, gptq, awq",
                    "got \"bitsandbytes\"");
}

TEST(GptqFolder, TensorErrorsNameTheFileAndTensor) {
  TempDirectory dir;
  const std::string folder = dir.file("f");
  testing::write_derived_folder(DerivedFolder{.family = "qwen2_moe", .quantization_json = gptq_json(32, false)},
                                folder);
  const std::string file = folder + "/model.safetensors", p = "model.layers.1.mlp.";
  // Expert 0's qweight of another width than config.json's: check_model_tensors names both.
  testing::replace_tensor(folder, p + "experts.0.gate_proj.qweight", Tensor::zeros(DType::i32, {4, 16}));
  EXPECT_THROWS_MSG(load_model_layer(folder, 1), ValueError, folder + "/config.json: moe_intermediate_size = 32",
                    "contradict " + folder + ": " + p +
                        "experts.0.gate_proj.qweight of shape [4, 16] (expected [4, 32])");
  testing::write_derived_folder(DerivedFolder{.family = "qwen2_moe", .quantization_json = gptq_json(32, false)},
                                dir.file("g"));
  // Another expert's scales of another group count.
  testing::replace_tensor(dir.file("g"), p + "experts.3.down_proj.scales", Tensor::zeros(DType::f16, {2, 32}));
  EXPECT_THROWS_MSG(load_model_layer(dir.file("g"), 1), ValueError, dir.file("g") + "/model.safetensors",
                    p + "experts.3.down_proj.scales", "expected shape [I/32, H] = [1, 32]", "got [2, 32]");
  // The shared expert's qzeros.
  testing::write_derived_folder(DerivedFolder{.family = "qwen2_moe", .quantization_json = gptq_json(32, false)},
                                dir.file("h"));
  testing::replace_tensor(dir.file("h"), p + "shared_expert.down_proj.qzeros", Tensor::zeros(DType::i32, {1, 2}));
  EXPECT_THROWS_MSG(load_model_layer(dir.file("h"), 1), ValueError, p + "shared_expert.down_proj.qzeros",
                    "expected shape [Is/32, H/8] = [1, 4]", "got [1, 2]");
  // A float projection where the folder declares GPTQ: refused, not quantised on load.
  testing::write_derived_folder(DerivedFolder{.family = "qwen2_moe", .quantization_json = gptq_json(32, false)},
                                dir.file("i"));
  {
    NamedTensors all;
    const Checkpoint ck(dir.file("i") + "/model.safetensors");
    for (const std::string& n : ck.names())
      if (n.find("experts.2.up_proj.") == std::string::npos) all.emplace_back(n, ck.read(n));
    all.emplace_back(p + "experts.2.up_proj.weight", Tensor::zeros(DType::bf16, {32, 32}));
    write_safetensors(dir.file("i") + "/model.safetensors", all);
  }
  EXPECT_THROWS_MSG(load_model_layer(dir.file("i"), 1), IoError, p + "experts.2.up_proj.qweight",
                    "config.json: quantization_config declares GPTQ int4 weights), got none (only the float " + p +
                        "experts.2.up_proj.weight)");
}

}  // namespace
}  // namespace moefuse
