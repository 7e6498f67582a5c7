// A model folder's MoE layer: a config.json's layer config merged with a moefuse config's execution keys, checked
// against the checkpoint's tensor shapes, then loaded (moefuse/model.h).
#include <span>
#include <sstream>

#include "base/check.h"
#include "layer/weights.h"
#include "moefuse/error.h"
#include "moefuse/model.h"

namespace moefuse {
namespace {

std::string shape_str(const std::vector<int64_t>& s) { return Shape(std::span<const int64_t>(s)).str(); }

std::string number_str(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}

}  // namespace

MoeConfig with_execution_options(const MoeConfig& model, std::string_view model_source, const MoeConfig& options,
                                 std::string_view options_source) {
  auto same = [&](bool equal, const char* key, const std::string& want, const std::string& got) {
    if (!equal)
      throw ValueError(check::message(options_source, std::string("model_config.") + key,
                                      want + " (as " + std::string(model_source) + " says)", got));
  };
  auto num = [](int64_t v) { return std::to_string(v); };
  same(model.model_type == options.model_type, "model_type", std::string(model_type_name(model.model_type)),
       std::string(model_type_name(options.model_type)));
  same(model.num_experts == options.num_experts, "num_experts", num(model.num_experts), num(options.num_experts));
  same(model.num_experts_per_tok == options.num_experts_per_tok, "num_experts_per_tok",
       num(model.num_experts_per_tok), num(options.num_experts_per_tok));
  same(model.hidden_size == options.hidden_size, "hidden_size", num(model.hidden_size), num(options.hidden_size));
  same(model.moe_intermediate_size == options.moe_intermediate_size, "moe_intermediate_size",
       num(model.moe_intermediate_size), num(options.moe_intermediate_size));
  same(model.n_shared_experts == options.n_shared_experts, "n_shared_experts", num(model.n_shared_experts),
       num(options.n_shared_experts));
  same(model.shared_expert_intermediate_size == options.shared_expert_intermediate_size,
       "shared_expert_intermediate_size", num(model.shared_expert_intermediate_size),
       num(options.shared_expert_intermediate_size));
  same(model.scoring_func == options.scoring_func, "scoring_func", std::string(scoring_func_name(model.scoring_func)),
       std::string(scoring_func_name(options.scoring_func)));
  same(model.norm_topk_prob == options.norm_topk_prob, "norm_topk_prob", model.norm_topk_prob ? "true" : "false",
       options.norm_topk_prob ? "true" : "false");
  same(model.n_group == options.n_group, "n_group", num(model.n_group), num(options.n_group));
  same(model.topk_group == options.topk_group, "topk_group", num(model.topk_group), num(options.topk_group));
  same(model.routed_scaling_factor == options.routed_scaling_factor, "routed_scaling_factor",
       number_str(model.routed_scaling_factor), number_str(options.routed_scaling_factor));
  if (model.quant_mode != QuantMode::none)
    same(model.quant_mode == options.quant_mode, "quant_mode", std::string(quant_mode_name(model.quant_mode)),
         std::string(quant_mode_name(options.quant_mode)));
  if (int4_weights(model.quant_mode)) {  // a GPTQ folder's groups are the model's
    same(model.quant_group_size == options.quant_group_size, "quant_group_size", num(model.quant_group_size),
         num(options.quant_group_size));
    same(model.quant_symmetric == options.quant_symmetric, "quant_symmetric", model.quant_symmetric ? "true" : "false",
         options.quant_symmetric ? "true" : "false");
  }
  MoeConfig c = model;
  if (model.quant_mode == QuantMode::none) {  // a float folder quantised on load: the options' groups
    c.quant_group_size = options.quant_group_size;
    c.quant_symmetric = options.quant_symmetric;
  }
  c.exe_mode = options.exe_mode;
  c.numerics = options.numerics;
  c.enable_superkernel = options.enable_superkernel;
  c.moe_chunk_max_len = options.moe_chunk_max_len;
  c.router_logits_dtype = options.router_logits_dtype;
  c.fp8_activations = options.fp8_activations;
  c.dtype = options.dtype;
  c.quant_mode = options.quant_mode;
  validate(c, std::string(options_source) + " over " + std::string(model_source));
  return c;
}

void check_model_tensors(const MoeConfig& c, std::string_view config_source, const Checkpoint& ck, int64_t layer) {
  const std::string p = layer::moe_prefix(c, layer);
  auto expect = [&](const std::string& name, std::vector<int64_t> shape, const std::string& keys) {
    const SafetensorsEntry& e = ck.entry(name);  // IoError naming the checkpoint and the tensor when absent
    if (e.shape != shape)
      throw ValueError(std::string(config_source) + ": " + keys + " contradict " + ck.path() + ": " + name +
                       " of shape " + shape_str(e.shape) + " (expected " + shape_str(shape) + ")");
  };
  const std::string eh = "num_experts = " + std::to_string(c.num_experts) + ", hidden_size = " +
                         std::to_string(c.hidden_size);
  expect(p + ".gate.weight", {c.num_experts, c.hidden_size}, eh);
  const std::string gate = layer::projection_names(c).gate;
  // A GPTQ projection [out, in] is stored as qweight [in / 8, out], an AWQ one as qweight [in, out / 8] (gptq.h); a
  // float or int8 one as weight [out, in].
  const bool gptq = int4_weights(c.quant_mode) && !ck.has(p + ".experts.0." + gate + ".weight");
  const bool awq = gptq && read_gptq_settings(ck).quant_method == "awq";
  const std::string suffix = gptq ? ".qweight" : ".weight";
  auto stored = [&](int64_t out, int64_t in) {
    return awq ? std::vector<int64_t>{in, out / 8} : gptq ? std::vector<int64_t>{in / 8, out} : std::vector{out, in};
  };
  expect(p + ".experts.0." + gate + suffix, stored(c.moe_intermediate_size, c.hidden_size),
         "moe_intermediate_size = " + std::to_string(c.moe_intermediate_size) + ", hidden_size = " +
             std::to_string(c.hidden_size));
  const std::string beyond = p + ".experts." + std::to_string(c.num_experts) + "." + gate + suffix;
  if (ck.has(beyond))
    throw ValueError(std::string(config_source) + ": num_experts = " + std::to_string(c.num_experts) +
                     " contradicts " + ck.path() + ": it holds " + beyond);
  if (const int64_t is = c.shared_expert_width(); is > 0) {
    const std::string sp = p + (c.model_type == ModelType::qwen2_moe ? ".shared_expert" : ".shared_experts");
    expect(sp + ".gate_proj" + suffix, stored(is, c.hidden_size),
           c.model_type == ModelType::qwen2_moe
               ? "shared_expert_intermediate_size = " + std::to_string(is)
               : "n_shared_experts = " + std::to_string(c.n_shared_experts) + " (width " + std::to_string(is) + ")");
  }
}

MoeLayer load_model_layer(const std::string& dir, int64_t layer, const LayerOptions& options,
                          const MoeConfig* options_config, std::string_view options_source) {
  const ModelConfig m = load_model_config(dir);
  MoeConfig c = m.layer_config(layer);
  if (options_config != nullptr) c = with_execution_options(c, m.source, *options_config, options_source);
  const Checkpoint ck(dir);
  check_model_tensors(c, m.source, ck, layer);
  return MoeLayer::from_checkpoint(c, ck, layer, options);
}

}  // namespace moefuse
