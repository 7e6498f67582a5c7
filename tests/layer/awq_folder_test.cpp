// AWQ int4 model folders (config.json's quantization_config quant_method "awq", AutoAWQ's GEMM packing) read as
// shipped: folders whose experts are packed here from AWQ's definition (util/gptq_folder.h: the pack order written
// from AutoAWQ's, not from the reader's table) run bitwise as the GPTQ folder of the same values, from the folder and
// from an explicit config; the settings moefuse cannot read and tensors of GPTQ's shapes are refused naming the key
// or the file and tensor.
#include <gtest/gtest.h>

#include <string>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/gptq_folder.h"

namespace moefuse {
namespace {

using testing::DerivedFolder;
using testing::TempDirectory;

std::string awq_json(int64_t G, const std::string& extra = "") {
  return R"({"bits": 4, "group_size": )" + std::to_string(G) +
         R"(, "modules_to_not_convert": null, "quant_method": "awq", "version": "gemm", "zero_point": true)" + extra +
         "}";
}

std::string gptq_v2_json(int64_t G, const std::string& extra = "") {
  return R"({"bits": 4, "group_size": )" + std::to_string(G) +
         R"(, "desc_act": false, "sym": false, "quant_method": "gptq", "checkpoint_format": "gptq_v2")" + extra + "}";
}

struct Case {
  const char* family;
  QuantMode mode;
  int64_t G;
};

TEST(AwqFolder, RunsBitwiseAsTheGptqFolderOfTheSameValues) {
  for (const Case& k : {Case{"qwen3_moe", QuantMode::w4a16, 32}, Case{"qwen2_moe", QuantMode::w4a8, 32},
                        Case{"mixtral", QuantMode::w4a16, 32}, Case{"deepseek_v3", QuantMode::w4a16, 32}}) {
    SCOPED_TRACE(k.family);
    TempDirectory dir;
    const std::string awq = dir.file("awq"), gptq = dir.file("gptq");
    const std::string mode = k.mode == QuantMode::w4a8 ? R"(, "moefuse_quant_mode": "w4a8")" : "";
    // The same seed gives the same q, z and scales: only the packing differs.
    testing::write_derived_folder(
        DerivedFolder{.family = k.family, .expert_width = 64, .G = k.G, .awq = true,
                      .quantization_json = awq_json(k.G, mode)},
        awq);
    testing::write_derived_folder(
        DerivedFolder{.family = k.family, .expert_width = 64, .G = k.G, .v2 = true,
                      .quantization_json = gptq_v2_json(k.G, mode)},
        gptq);
    const ModelConfig m = load_model_config(awq);
    EXPECT_EQ(m.gptq.quant_method, "awq");
    EXPECT_EQ(m.gptq.group_size, k.G);
    EXPECT_FALSE(m.gptq.sym);
    EXPECT_EQ(m.quant_mode, k.mode);
    EXPECT_EQ(m.quantized_layers, m.moe_layers);
    for (int64_t l : m.moe_layers) {
      SCOPED_TRACE("layer " + std::to_string(l));
      const MoeConfig c = m.layer_config(l);
      EXPECT_EQ(c, load_model_config(gptq).layer_config(l));
      MoeLayer from_awq = load_model_layer(awq, l, {.threads = 2});
      MoeLayer from_gptq = load_model_layer(gptq, l, {.threads = 2});
      // The explicit-config path reads the settings beside the checkpoint (read_gptq_settings).
      MoeLayer from_config = MoeLayer::from_checkpoint(c, Checkpoint(awq + "/model.safetensors"), l, {.threads = 2});
      const Tensor x = random_tokens(5, c.hidden_size, uint64_t(l) + 3, c.dtype);
      const Tensor want = from_gptq.forward(x, true);
      EXPECT_TENSOR_EQ(from_awq.forward(x, true), want);
      EXPECT_TENSOR_EQ(from_config.forward(x, true), want);
      EXPECT_TENSOR_EQ(from_awq.forward(x, false), from_gptq.forward(x, false));
    }
  }
}

TEST(AwqFolder, ConfigErrorsNameTheKey) {
  const std::string base = R"({"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2,
    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "dtype": "bfloat16",
    "quantization_config": )";
  auto parse = [&](const std::string& q) { return parse_model_config_json(base + q + "}", "m/config.json"); };
  EXPECT_EQ(parse(R"({"quant_method": "awq", "group_size": 32, "version": "GEMM"})").quant_mode, QuantMode::w4a16);
  EXPECT_EQ(parse(R"({"quant_method": "awq", "group_size": 32})").gptq.version, "gemm");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "awq", "group_size": 32, "version": "gemv"})"), ValueError,
                    "m/config.json: quantization_config.version: expected \"gemm\" (AutoAWQ's GEMM packing",
                    "got \"gemv\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "awq", "group_size": 32, "zero_point": false})"), ValueError,
                    "quantization_config.zero_point: expected true", "got false");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "awq", "bits": 8, "group_size": 32})"), ValueError,
                    "quantization_config.bits: expected 4", "got 8");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "awq", "group_size": 48})"), ValueError,
                    "quantization_config.group_size: expected 32, 64 or 128", "got 48");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "awq", "group_size": 32, "version": 1})"), ValueError,
                    "quantization_config.version");
}

TEST(AwqFolder, TensorsOfGptqsShapesAreRefusedNamingTheTensor) {
  TempDirectory dir;
  const std::string p = "model.layers.1.mlp.";
  const std::string f = dir.file("f");
  testing::write_derived_folder(
      DerivedFolder{.family = "qwen2_moe", .awq = true, .quantization_json = awq_json(32)}, f);
  // Expert 0's gate in GPTQ's layout [H / 8, I] where AWQ's is [H, I / 8]: check_model_tensors names both.
  testing::replace_tensor(f, p + "experts.0.gate_proj.qweight", Tensor::zeros(DType::i32, {4, 32}));
  EXPECT_THROWS_MSG(load_model_layer(f, 1), ValueError, f + "/config.json: moe_intermediate_size = 32",
                    "contradict " + f + ": " + p + "experts.0.gate_proj.qweight of shape [4, 32] (expected [32, 4])");
  const std::string g = dir.file("g");
  testing::write_derived_folder(
      DerivedFolder{.family = "qwen2_moe", .awq = true, .quantization_json = awq_json(32)}, g);
  testing::replace_tensor(g, p + "experts.3.down_proj.qweight", Tensor::zeros(DType::i32, {4, 32}));
  EXPECT_THROWS_MSG(load_model_layer(g, 1), ValueError, g + "/model.safetensors", p + "experts.3.down_proj.qweight",
                    "expected shape [I, H/8] = [32, 4]", "AWQ's 4-bit weights", "got [4, 32]");
  // A float projection where the folder declares AWQ: refused, not quantised on load.
  const std::string h = dir.file("h");
  testing::write_derived_folder(
      DerivedFolder{.family = "qwen2_moe", .awq = true, .quantization_json = awq_json(32)}, h);
  {
    NamedTensors all;
    const Checkpoint ck(h + "/model.safetensors");
    for (const std::string& n : ck.names())
      if (n.find("experts.2.up_proj.") == std::string::npos) all.emplace_back(n, ck.read(n));
    all.emplace_back(p + "experts.2.up_proj.weight", Tensor::zeros(DType::bf16, {32, 32}));
    write_safetensors(h + "/model.safetensors", all);
  }
  EXPECT_THROWS_MSG(load_model_layer(h, 1), IoError, p + "experts.2.up_proj.qweight",
                    "declares AWQ int4 weights), got none (only the float " + p + "experts.2.up_proj.weight)");
}

}  // namespace
}  // namespace moefuse
