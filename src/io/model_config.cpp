// A model's config.json (Hugging Face) read into the MoE layer's config: the six families' keys, which layers are
// MoE layers, and the quantization_config that `moefuse quantize` writes (moefuse/model.h).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "base/check.h"
#include "io/config_enums.h"
#include "io/files.h"
#include "io/fp8_settings.h"
#include "io/json_util.h"
#include "io/model_keys.h"
#include "moefuse/error.h"
#include "moefuse/model.h"

namespace moefuse {
namespace {

using nlohmann::json;
using model_detail::join_layers;
using model_detail::Keys;


DType read_dtype(const Keys& k) {
  // transformers writes "dtype" since 4.56 and "torch_dtype" before; a config without either loads as float32.
  const char* key = k.has("dtype") ? "dtype" : "torch_dtype";
  const std::string v = k.string_or(key, "float32");
  if (v == "bfloat16") return DType::bf16;
  if (v == "float16") return DType::f16;
  if (v == "float32") return DType::f32;
  k.fail(key, "bfloat16, float16 or float32", io_detail::quote_for_message(v));
}

// Which decoder layers are MoE layers, by the family's rule (its transformers modeling code).
std::vector<int64_t> moe_layers_of(ModelType t, const Keys& k, int64_t layers) {
  std::vector<int64_t> out;
  if (t == ModelType::deepseek_v2 || t == ModelType::deepseek_v3) {
    const int64_t first_dense = k.int_or("first_k_dense_replace", t == ModelType::deepseek_v3 ? 3 : 0, 0);
    const int64_t freq = k.int_or("moe_layer_freq", 1, 1);
    for (int64_t l = first_dense; l < layers; ++l)
      if (l % freq == 0) out.push_back(l);
  } else if (t == ModelType::qwen3_moe || t == ModelType::qwen2_moe) {
    const int64_t step = k.int_or("decoder_sparse_step", 1, 1);
    const std::vector<int64_t> listed = k.int_list_or("mlp_only_layers");
    const std::set<int64_t> dense(listed.begin(), listed.end());
    for (int64_t l = 0; l < layers; ++l)
      if ((l + 1) % step == 0 && !dense.count(l)) out.push_back(l);
  } else {  // mixtral, olmoe: every layer
    for (int64_t l = 0; l < layers; ++l) out.push_back(l);
  }
  if (out.empty())
    k.fail("num_hidden_layers", "at least one MoE layer (first_k_dense_replace, moe_layer_freq, decoder_sparse_step, "
                                "mlp_only_layers leave none of the " + std::to_string(layers) + " layers)",
           std::to_string(layers));
  return out;
}

// The routing and shared-expert keys of each family, with its transformers config class's defaults.
void read_family(ModelType t, const Keys& k, MoeConfig& c) {
  switch (t) {
    case ModelType::qwen3_moe:
    case ModelType::qwen2_moe:
    case ModelType::olmoe:
      c.num_experts = k.int_required("num_experts", 1);
      c.moe_intermediate_size =
          k.int_required(t == ModelType::olmoe ? "intermediate_size" : "moe_intermediate_size", 1);
      c.norm_topk_prob = k.bool_or("norm_topk_prob", false);
      if (t == ModelType::qwen2_moe) {
        c.shared_expert_intermediate_size = k.int_required("shared_expert_intermediate_size", 0);
        c.n_shared_experts = c.shared_expert_intermediate_size > 0 ? 1 : 0;
      }
      return;
    case ModelType::mixtral:
      c.num_experts = k.int_required("num_local_experts", 1);
      c.moe_intermediate_size = k.int_required("intermediate_size", 1);
      c.norm_topk_prob = true;  // Mixtral always renormalises its top-k weights
      return;
    case ModelType::deepseek_v2:
    case ModelType::deepseek_v3: {
      const bool v3 = t == ModelType::deepseek_v3;
      c.num_experts = k.int_required("n_routed_experts", 1);
      c.moe_intermediate_size = k.int_required("moe_intermediate_size", 1);
      // deepseek_v2 writes null for "no shared experts"; an absent key is the config class's default (2 / 1).
      c.n_shared_experts = k.is_null("n_shared_experts") ? 0 : k.int_or("n_shared_experts", v3 ? 1 : 2, 0);
      c.norm_topk_prob = k.bool_or("norm_topk_prob", v3);
      // DeepSeek-V2's own code renormalises without the scaling factor when norm_topk_prob is set, transformers'
      // never renormalises: every released V2 sets it false, the one reading both agree on.
      if (!v3 && c.norm_topk_prob)
        k.fail("norm_topk_prob", "false for deepseek_v2 (its reference implementations disagree on true)", "true");
      c.routed_scaling_factor = k.number_or("routed_scaling_factor", v3 ? 2.5 : 1.0);
      const std::string scoring = k.string_or("scoring_func", v3 ? "sigmoid" : "softmax");
      if (scoring != (v3 ? "sigmoid" : "softmax"))
        k.fail("scoring_func", v3 ? "\"sigmoid\" (deepseek_v3)" : "\"softmax\" (deepseek_v2)",
               io_detail::quote_for_message(scoring));
      c.scoring_func = v3 ? ScoringFunc::sigmoid : ScoringFunc::softmax;
      const std::string method = k.string_or("topk_method", v3 ? "noaux_tc" : "greedy");
      if (v3 ? method != "noaux_tc" : (method != "greedy" && method != "group_limited_greedy"))
        k.fail("topk_method",
               v3 ? "\"noaux_tc\" (deepseek_v3)" : "\"greedy\" or \"group_limited_greedy\" (deepseek_v2)",
               io_detail::quote_for_message(method));
      if (method != "greedy") {
        c.n_group = k.int_or("n_group", v3 ? 8 : 1, 1);
        c.topk_group = k.int_or("topk_group", v3 ? 4 : 1, 1);
      }
      if (v3 && !c.norm_topk_prob)
        k.fail("norm_topk_prob", "true (deepseek_v3's sigmoid gating renormalises its top-k weights)", "false");
      return;
    }
  }
}

// The layers a quantization_config names in "quantized_layers" (distinct MoE layers, sorted), or every MoE layer
// when `all_by_default` and the key is absent.
std::vector<int64_t> quantized_layers_of(const Keys& k, const ModelConfig& m, bool all_by_default) {
  if (all_by_default && !k.has("quantized_layers")) return m.moe_layers;
  std::vector<int64_t> layers = k.int_list_or("quantized_layers");
  std::sort(layers.begin(), layers.end());
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t l = layers[i];
    if (!m.is_moe_layer(l) || (i > 0 && layers[i - 1] == l))
      k.fail("quantized_layers", "distinct MoE layers (" + join_layers(m.moe_layers) + ")", std::to_string(l));
  }
  if (layers.empty()) k.fail("quantized_layers", "at least one layer", "an empty list");
  return layers;
}

// An int4 release's quantization_config: GPTQ's (GPTQ / AutoGPTQ / GPTQModel / optimum write it; `moefuse quantize`
// too, adding moefuse_quant_mode and quantized_layers) or AutoAWQ's ({"quant_method": "awq", "bits": 4,
// "group_size": G, "zero_point": true, "version": "gemm"}). GPTQ's defaults for absent keys; the group size has none.
void read_int4(const Keys& k, ModelConfig& m, bool awq) {
  GptqSettings& g = m.gptq;
  g.source = m.source + ": quantization_config";
  g.quant_method = awq ? "awq" : "gptq";
  g.bits = k.int_or("bits", 4, 1);
  if (g.bits != 4)
    k.fail("bits", awq ? "4 (int4 weights)" : "4 (int4 weights; GPTQ's 2, 3 and 8 bits are not read)",
           std::to_string(g.bits));
  if (!k.has("group_size")) k.fail("group_size", "32, 64 or 128", "none");
  g.group_size = k.int_or("group_size", 0, -1);
  if (g.group_size != 32 && g.group_size != 64 && g.group_size != 128)
    k.fail("group_size",
           "32, 64 or 128 (the int4 kernels' group sizes)",
           std::to_string(g.group_size) + (g.group_size == -1 ? " (one group per column: not supported)" : ""));
  if (awq) {
    g.zero_point = k.bool_or("zero_point", true);
    if (!g.zero_point) k.fail("zero_point", "true (AWQ weights with zero points; AWQ without them is not read)", "false");
    g.sym = false;
    g.version = k.string_or("version", "gemm");
    if (!is_awq_gemm_version(g.version))
      k.fail("version", "\"gemm\" (AutoAWQ's GEMM packing; gemv, marlin and other packings are not read)",
             io_detail::quote_for_message(g.version));
  } else {
    g.sym = k.bool_or("sym", true);
    g.desc_act = k.bool_or("desc_act", false);  // act order: each tensor's g_idx gives its order (gptq.cpp)
    g.checkpoint_format = k.string_or("checkpoint_format", "gptq");
    if (g.checkpoint_format != "gptq" && g.checkpoint_format != "gptq_v2")
      k.fail("checkpoint_format", "\"gptq\" or \"gptq_v2\"", io_detail::quote_for_message(g.checkpoint_format));
  }
  const std::string mode = k.string_or("moefuse_quant_mode", "w4a16");
  if (mode == "w4a16") m.quant_mode = QuantMode::w4a16;
  else if (mode == "w4a8") m.quant_mode = QuantMode::w4a8;
  else k.fail("moefuse_quant_mode", "\"w4a16\" or \"w4a8\"", io_detail::quote_for_message(mode));
  m.quantized_layers = quantized_layers_of(k, m, true);
  // Every projection's input width must be whole groups: hidden_size (gate, up) and the expert widths (down).
  const MoeConfig& c = m.layer;
  for (auto [key, v] : {std::pair<const char*, int64_t>{"hidden_size", c.hidden_size},
                        {c.model_type == ModelType::mixtral || c.model_type == ModelType::olmoe
                             ? "intermediate_size" : "moe_intermediate_size", c.moe_intermediate_size},
                        {c.model_type == ModelType::qwen2_moe ? "shared_expert_intermediate_size"
                                                              : "moe_intermediate_size x n_shared_experts",
                         c.shared_expert_width()}})
    if (v > 0 && v % g.group_size != 0)
      k.fail("group_size", std::string("a group size dividing ") + key + " (" + std::to_string(v) + ")",
             std::to_string(g.group_size));
}

// quantization_config: absent for a float model; written by `moefuse quantize` as
// {"quant_method": "moefuse", "quant_mode": "w8a8" | "w8a8c8", "quantized_layers": [..]}; a GPTQ int4 release's
// {"quant_method": "gptq", "bits": 4, "group_size": G, ...} or AutoAWQ's {"quant_method": "awq", ...} (read_int4); or an FP8 block-scaled release's
// {"quant_method": "fp8", ...} (its expert projections are read as they are: the layer stays a float one).
// Other methods are named and refused here, so that a build that reads one adds it in this one place.
void read_quantization(const Keys& root, ModelConfig& m) {
  const json* q = root.find("quantization_config");
  if (q == nullptr) return;
  const Keys k = root.object("quantization_config");
  const std::string method = k.string_required("quant_method");
  if (method == "fp8") {
    m.fp8 = io_detail::parse_fp8_quantization(k, m.source + ": quantization_config");
    return;
  }
  if (method == "gptq" || method == "awq") {
    read_int4(k, m, method == "awq");
    return;
  }
  if (method != "moefuse")
    k.fail("quant_method", "one of: moefuse, fp8, gptq, awq (not supported in this build: others)",
           io_detail::quote_for_message(method));
  const std::string mode = k.string_required("quant_mode");
  if (mode == "w8a8") m.quant_mode = QuantMode::w8a8;
  else if (mode == "w8a8c8") m.quant_mode = QuantMode::w8a8c8;
  else k.fail("quant_mode", "\"w8a8\" or \"w8a8c8\"", io_detail::quote_for_message(mode));
  m.quantized_layers = quantized_layers_of(k, m, false);
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t l) const {
  return std::binary_search(moe_layers.begin(), moe_layers.end(), l);
}

MoeConfig ModelConfig::layer_config(int64_t l) const {
  if (!is_moe_layer(l))
    throw ValueError(check::message(
        source, "--layer",
        "one of the MoE layers " + join_layers(moe_layers) + " (of " + std::to_string(num_hidden_layers) +
            " decoder layers)",
        std::to_string(l) + (l >= 0 && l < num_hidden_layers ? " (a dense layer)" : " (no such layer)")));
  MoeConfig c = layer;
  if (std::binary_search(quantized_layers.begin(), quantized_layers.end(), l)) {
    c.quant_mode = quant_mode;
    if (!gptq.source.empty()) {
      c.quant_group_size = gptq.group_size;
      c.quant_symmetric = gptq.sym;
    }
  }
  return c;
}

std::vector<std::string> model_type_names() {
  std::vector<std::string> v;
  for (const auto& [type, name] : config_detail::EnumNames<ModelType>::v) v.emplace_back(name);
  std::sort(v.begin(), v.end());
  return v;
}

ModelConfig parse_model_config_json(std::string_view text, std::string_view source_name) {
  const json root = io_detail::parse_json_strict(text, source_name, "config.json", 64);
  const Keys k(root, source_name, "");
  ModelConfig m;
  m.source = std::string(source_name);
  const std::string type = k.string_required("model_type");
  bool known = false;
  for (const auto& [t, name] : config_detail::EnumNames<ModelType>::v)
    if (name == type) {
      m.layer.model_type = t;
      known = true;
    }
  if (!known) {
    std::string list;
    for (const std::string& n : model_type_names()) list += (list.empty() ? "" : ", ") + n;
    k.fail("model_type", "one of the MoE families moefuse reads: " + list, io_detail::quote_for_message(type));
  }
  MoeConfig& c = m.layer;
  c.hidden_size = k.int_required("hidden_size", 1);
  m.num_hidden_layers = k.int_required("num_hidden_layers", 1);
  if (m.num_hidden_layers > kMaxModelLayers)
    k.fail("num_hidden_layers", "at most " + std::to_string(kMaxModelLayers), std::to_string(m.num_hidden_layers));
  c.num_experts_per_tok = k.int_required("num_experts_per_tok", 1);
  c.dtype = read_dtype(k);
  c.scoring_func = ScoringFunc::softmax;
  read_family(c.model_type, k, c);
  m.moe_layers = moe_layers_of(c.model_type, k, m.num_hidden_layers);
  read_quantization(k, m);
  validate(c, m.source + " (the MoE layer's config)");
  if (m.quant_mode != QuantMode::none)
    validate(m.layer_config(m.quantized_layers.front()), m.source + " (the quantised layers' config)");
  return m;
}

bool is_model_folder(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) &&
         std::filesystem::exists(std::filesystem::path(path) / "config.json", ec);
}

ModelConfig load_model_config(const std::string& path) {
  std::error_code ec;
  const std::string file =
      std::filesystem::is_directory(path, ec) ? (std::filesystem::path(path) / "config.json").string() : path;
  const std::string text = io_detail::read_whole_file(file, "load_model_config", kMaxModelConfigBytes);
  return parse_model_config_json(text, file);
}

}  // namespace moefuse
