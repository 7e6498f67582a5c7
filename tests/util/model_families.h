// The test model folders of tests/data/models/ (written by transformers' save_pretrained, make_models.py there):
// where they are, their MoE layers, and each one's config written out by hand as a moefuse YAML config.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace moefuse::testing {

inline std::string model_dir(const std::string& family) {
  return (std::filesystem::path(MOEFUSE_SOURCE_DIR) / "tests" / "data" / "models" / family).string();
}

struct Family {
  const char* name;
  std::vector<int64_t> moe_layers;
  int64_t num_hidden_layers;
  const char* yaml;  // the explicit config, written from make_models.py's parameters
};

inline const Family kFamilies[] = {
    {"qwen3_moe", {0, 2}, 3, R"(model_config:
  model_type: qwen3_moe
  num_experts: 8
  num_experts_per_tok: 2
  hidden_size: 32
  moe_intermediate_size: 16
  scoring_func: softmax
  norm_topk_prob: true
  dtype: bf16
)"},
    {"qwen2_moe", {1, 3}, 4, R"(model_config:
  model_type: qwen2_moe
  num_experts: 6
  num_experts_per_tok: 2
  hidden_size: 32
  moe_intermediate_size: 16
  shared_expert_intermediate_size: 32
  scoring_func: softmax
  norm_topk_prob: false
  dtype: bf16
)"},
    {"olmoe", {0, 1}, 2, R"(model_config:
  model_type: olmoe
  num_experts: 8
  num_experts_per_tok: 3
  hidden_size: 32
  moe_intermediate_size: 16
  scoring_func: softmax
  norm_topk_prob: false
  dtype: f32
)"},
    {"mixtral", {0, 1}, 2, R"(model_config:
  model_type: mixtral
  num_experts: 4
  num_experts_per_tok: 2
  hidden_size: 32
  moe_intermediate_size: 16
  scoring_func: softmax
  norm_topk_prob: true
  dtype: f16
)"},
    {"deepseek_v2", {1, 2}, 3, R"(model_config:
  model_type: deepseek_v2
  num_experts: 8
  num_experts_per_tok: 3
  hidden_size: 32
  moe_intermediate_size: 16
  n_shared_experts: 2
  scoring_func: softmax
  norm_topk_prob: false
  n_group: 4
  topk_group: 2
  routed_scaling_factor: 1.5
  dtype: bf16
)"},
    {"deepseek_v3", {1, 2}, 3, R"(model_config:
  model_type: deepseek_v3
  num_experts: 8
  num_experts_per_tok: 2
  hidden_size: 32
  moe_intermediate_size: 16
  n_shared_experts: 1
  scoring_func: sigmoid
  norm_topk_prob: true
  n_group: 4
  topk_group: 2
  routed_scaling_factor: 2.5
  dtype: bf16
)"},
};

}  // namespace moefuse::testing
