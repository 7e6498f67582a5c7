// parse_model_config_json: the six families' keys, which layers are MoE layers, quantization_config, and errors
// that name the file, the key, what was expected and what was given.
#include <gtest/gtest.h>

#include <string>

#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/errors.h"

namespace moefuse {
namespace {

const char* kQwen3 = R"({"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 6, "num_experts": 8,
  "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": true, "decoder_sparse_step": 2,
  "mlp_only_layers": [3], "dtype": "bfloat16", "vocab_size": 100, "rope_scaling": null})";

std::string with(std::string json, const std::string& from, const std::string& to) {
  const size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return json.replace(at, from.size(), to);
}

TEST(ModelConfigJson, Qwen3KeysAndSparseLayers) {
  const ModelConfig m = parse_model_config_json(kQwen3, "q/config.json");
  EXPECT_EQ(m.layer.model_type, ModelType::qwen3_moe);
  EXPECT_EQ(m.layer.hidden_size, 64);
  EXPECT_EQ(m.layer.num_experts, 8);
  EXPECT_EQ(m.layer.moe_intermediate_size, 32);
  EXPECT_TRUE(m.layer.norm_topk_prob);
  EXPECT_EQ(m.layer.dtype, DType::bf16);
  EXPECT_EQ(m.moe_layers, (std::vector<int64_t>{1, 5}));  // (l + 1) % 2 == 0, and 3 is mlp_only
  EXPECT_EQ(m.layer.exe_mode, MoeConfig{}.exe_mode);
  EXPECT_EQ(m.layer.moe_chunk_max_len, MoeConfig{}.moe_chunk_max_len);
}

TEST(ModelConfigJson, DtypeSpellingsAndDefault) {
  EXPECT_EQ(parse_model_config_json(with(kQwen3, "\"dtype\"", "\"torch_dtype\"")).layer.dtype, DType::bf16);
  EXPECT_EQ(parse_model_config_json(with(kQwen3, "\"bfloat16\"", "\"float16\"")).layer.dtype, DType::f16);
  EXPECT_EQ(parse_model_config_json(with(kQwen3, "\"dtype\": \"bfloat16\",", "")).layer.dtype, DType::f32);
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"bfloat16\"", "\"float8\""), "c.json"), ValueError,
                    "c.json: dtype: expected bfloat16, float16 or float32, got \"float8\"");
}

TEST(ModelConfigJson, DeepseekV3DefaultsAndDenseLayers) {
  const ModelConfig m = parse_model_config_json(R"({"model_type": "deepseek_v3", "hidden_size": 64,
    "num_hidden_layers": 5, "n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 32})");
  EXPECT_EQ(m.moe_layers, (std::vector<int64_t>{3, 4}));  // first_k_dense_replace defaults to 3
  EXPECT_EQ(m.layer.scoring_func, ScoringFunc::sigmoid);
  EXPECT_TRUE(m.layer.norm_topk_prob);
  EXPECT_EQ(m.layer.n_shared_experts, 1);
  EXPECT_EQ(m.layer.n_group, 8);
  EXPECT_EQ(m.layer.topk_group, 4);
  EXPECT_EQ(m.layer.routed_scaling_factor, 2.5);
  EXPECT_EQ(m.layer.dtype, DType::f32);
}

TEST(ModelConfigJson, DeepseekV2GreedyAndFrequency) {
  const ModelConfig m = parse_model_config_json(R"({"model_type": "deepseek_v2", "hidden_size": 64,
    "num_hidden_layers": 6, "n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 32,
    "first_k_dense_replace": 1, "moe_layer_freq": 2, "n_shared_experts": null, "n_group": 4, "topk_group": 2,
    "topk_method": "greedy", "routed_scaling_factor": 16.0})");
  EXPECT_EQ(m.moe_layers, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(m.layer.n_shared_experts, 0);  // null: none
  EXPECT_EQ(m.layer.n_group, 1);           // greedy ignores the groups
  EXPECT_EQ(m.layer.routed_scaling_factor, 16.0);
  EXPECT_FALSE(m.layer.norm_topk_prob);
}

TEST(ModelConfigJson, MixtralAndOlmoe) {
  const ModelConfig mx = parse_model_config_json(R"({"model_type": "mixtral", "hidden_size": 64,
    "num_hidden_layers": 2, "num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 96})");
  EXPECT_EQ(mx.layer.num_experts, 8);
  EXPECT_EQ(mx.layer.moe_intermediate_size, 96);
  EXPECT_TRUE(mx.layer.norm_topk_prob);
  EXPECT_EQ(mx.moe_layers, (std::vector<int64_t>{0, 1}));
  const ModelConfig ol = parse_model_config_json(R"({"model_type": "olmoe", "hidden_size": 64,
    "num_hidden_layers": 1, "num_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 96})");
  EXPECT_EQ(ol.layer.moe_intermediate_size, 96);
  EXPECT_FALSE(ol.layer.norm_topk_prob);
}

TEST(ModelConfigJson, Qwen2SharedExpert) {
  const ModelConfig m = parse_model_config_json(R"({"model_type": "qwen2_moe", "hidden_size": 64,
    "num_hidden_layers": 2, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 128})");
  EXPECT_EQ(m.layer.n_shared_experts, 1);
  EXPECT_EQ(m.layer.shared_expert_width(), 128);
  EXPECT_TRUE(m.layer.shared_expert_gated());
}

TEST(ModelConfigJson, UnknownModelTypeListsTheKnownOnes) {
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "qwen3_moe", "llama"), "m/config.json"), ValueError,
                    "m/config.json: model_type: expected one of the MoE families moefuse reads: deepseek_v2, "
                    "deepseek_v3, mixtral, olmoe, qwen2_moe, qwen3_moe, got \"llama\"");
}

TEST(ModelConfigJson, MissingAndMistypedKeys) {
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"num_experts\": 8,", ""), "c.json"), ValueError,
                    "c.json: num_experts: expected an integer >= 1 (a required key), got none");
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"num_experts\": 8", "\"num_experts\": \"8\""), "c.json"),
                    ValueError, "c.json: num_experts: expected an integer >= 1, got the string \"8\"");
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"num_experts\": 8", "\"num_experts\": 8.5"), "c.json"),
                    ValueError, "num_experts: expected an integer >= 1, got the number 8.5");
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "true", "1"), "c.json"), ValueError,
                    "c.json: norm_topk_prob: expected true or false, got the number 1");
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "[3]", "[-1]"), "c.json"), ValueError,
                    "c.json: mlp_only_layers: expected an integer >= 0, got -1");
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9")),
                    ValueError, "num_experts_per_tok", "got 9");
  EXPECT_THROWS_MSG(parse_model_config_json("[1, 2]", "c.json"), ValueError, "c.json: (top level): expected a JSON object");
  EXPECT_THROWS_MSG(parse_model_config_json("{\"model_type\": ", "c.json"), IoError, "c.json", "valid JSON");
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"num_experts\": 8", "\"num_experts\": 8, \"num_experts\": 4"),
                                            "c.json"),
                    IoError, "c.json");
}

TEST(ModelConfigJson, NoMoeLayerIsAnError) {
  EXPECT_THROWS_MSG(parse_model_config_json(with(kQwen3, "\"decoder_sparse_step\": 2", "\"decoder_sparse_step\": 7")),
                    ValueError, "num_hidden_layers: expected at least one MoE layer");
}

TEST(ModelConfigJson, CombinationsTheLayerDoesNotCompute) {
  const std::string v2 = R"({"model_type": "deepseek_v2", "hidden_size": 64, "num_hidden_layers": 2,
    "n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 32, "topk_method": "greedy"})";
  EXPECT_THROWS_MSG(parse_model_config_json(with(v2, "\"greedy\"", "\"noaux_tc\""), "c.json"), ValueError,
                    "c.json: topk_method: expected \"greedy\" or \"group_limited_greedy\" (deepseek_v2), got \"noaux_tc\"");
  EXPECT_THROWS_MSG(parse_model_config_json(with(v2, "\"greedy\"", "\"greedy\", \"norm_topk_prob\": true"), "c.json"),
                    ValueError, "c.json: norm_topk_prob: expected false for deepseek_v2");
  const std::string v3 = R"({"model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 4,
    "n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 32, "norm_topk_prob": false})";
  EXPECT_THROWS_MSG(parse_model_config_json(v3, "c.json"), ValueError, "c.json: norm_topk_prob: expected true");
  EXPECT_THROWS_MSG(parse_model_config_json(with(v3, "false", "true, \"scoring_func\": \"softmax\""), "c.json"),
                    ValueError, "c.json: scoring_func: expected \"sigmoid\" (deepseek_v3), got \"softmax\"");
}

TEST(ModelConfigJson, QuantizationConfig) {
  const std::string q = with(kQwen3, "\"vocab_size\"",
                             "\"quantization_config\": {\"quant_method\": \"moefuse\", \"quant_mode\": \"w8a8c8\", "
                             "\"quantized_layers\": [5]}, \"vocab_size\"");
  const ModelConfig m = parse_model_config_json(q, "c.json");
  EXPECT_EQ(m.quant_mode, QuantMode::w8a8c8);
  EXPECT_EQ(m.quantized_layers, (std::vector<int64_t>{5}));
  EXPECT_EQ(m.layer_config(5).quant_mode, QuantMode::w8a8c8);
  EXPECT_EQ(m.layer_config(1).quant_mode, QuantMode::none);
  EXPECT_THROWS_MSG(parse_model_config_json(with(q, "[5]", "[3]"), "c.json"), ValueError,
                    "c.json: quantization_config.quantized_layers: expected distinct MoE layers (1, 5), got 3");
  EXPECT_THROWS_MSG(parse_model_config_json(with(q, "\"w8a8c8\"", "\"w4a16\""), "c.json"), ValueError,
                    "c.json: quantization_config.quant_mode: expected \"w8a8\" or \"w8a8c8\", got \"w4a16\"");
  // A GPTQ or AWQ quantization_config is read (GptqFolder.*, AwqFolder.* test them); without its group size it names
  // the key.
  EXPECT_THROWS_MSG(parse_model_config_json(with(q, "\"moefuse\"", "\"gptq\""), "c.json"), ValueError,
                    "c.json: quantization_config.group_size: expected 32, 64 or 128, got none");
  EXPECT_THROWS_MSG(parse_model_config_json(with(q, "\"moefuse\"", "\"awq\""), "c.json"), ValueError,
                    "c.json: quantization_config.group_size: expected 32, 64 or 128, got none");  // AWQ: as GPTQ
  EXPECT_THROWS_MSG(parse_model_config_json(with(q, "\"moefuse\"", "\"bitsandbytes\""), "c.json"), ValueError,
                    "c.json: quantization_config.quant_method: expected one of: moefuse", "got \"bitsandbytes\"");
}

TEST(ModelConfigJson, LayerConfigOfADenseLayer) {
  const ModelConfig m = parse_model_config_json(kQwen3, "q/config.json");
  EXPECT_THROWS_MSG(m.layer_config(3), ValueError,
                    "q/config.json: --layer: expected one of the MoE layers 1, 5 (of 6 decoder layers), got 3 (a "
                    "dense layer)");
  EXPECT_THROWS_MSG(m.layer_config(6), ValueError, "got 6 (no such layer)");
}

TEST(ModelConfigJson, ModelTypeNames) {
  EXPECT_EQ(model_type_names(), (std::vector<std::string>{"deepseek_v2", "deepseek_v3", "mixtral", "olmoe",
                                                          "qwen2_moe", "qwen3_moe"}));
}

TEST(ModelConfigJson, LoadRefusesWhatIsNotAFile) {
  EXPECT_THROWS_MSG(load_model_config("/nonexistent/dir"), IoError, "load_model_config: /nonexistent/dir");
  EXPECT_THROWS_MSG(load_model_config("/dev/zero"), IoError, "load_model_config: /dev/zero", "regular file");
  EXPECT_FALSE(is_model_folder("/nonexistent/dir"));
}

}  // namespace
}  // namespace moefuse
