// `moefuse info --weights DIR`: what moefuse reads of a model folder — the model, its MoE layers, the layer config
// built from config.json (and an FP8 release's block size, a GPTQ release's settings), and the bytes of each MoE layer (in the checkpoint and
// resident once loaded).
#include <cstdio>
#include <string>

#include "common.h"
#include "info_model.h"
#include "moefuse/io.h"
#include "moefuse/model.h"

namespace moefuse::cli {

int model_info(const std::string& dir, bool json) {
  const ModelConfig m = load_model_config(dir);
  const Checkpoint ck(dir);
  const std::vector<std::string> names = ck.names();
  Json layers = Json::array();
  for (int64_t l : m.moe_layers) {
    const MoeConfig c = m.layer_config(l);
    const std::string prefix = layer_checkpoint_prefix(c, l) + ".";
    int64_t stored = 0, tensors = 0;
    for (const std::string& n : names)
      if (n.compare(0, prefix.size(), prefix) == 0) {
        const SafetensorsEntry& e = ck.entry(n);
        stored += int64_t(e.end - e.begin);
        ++tensors;
      }
    layers.push_back(Json{{"layer", l},
                          {"quant_mode", quant_mode_name(c.quant_mode)},
                          {"tensors", tensors},
                          {"checkpoint_bytes", stored},
                          {"fp8_one_byte", fp8_weights_kept_one_byte(c, m.fp8)},
                          {"resident_bytes", layer_weight_bytes(c, m.fp8)}});
  }
  const Json model = describe_model(LoadedConfig{m.layer, "file " + m.source, m.source});
  if (json) {
    print_json(Json{{"command", "info"},
                    {"version", MOEFUSE_VERSION},
                    {"weights", dir},
                    {"num_hidden_layers", m.num_hidden_layers},
                    {"checkpoint_files", ck.files().size()},
                    {"model", model},
                    {"fp8_weight_block", m.fp8.source.empty() ? Json(nullptr) : Json{m.fp8.block_n, m.fp8.block_k}},
                    {"gptq", m.gptq.source.empty() ? Json(nullptr)
                                                   : Json{{"quant_method", m.gptq.quant_method},
                                                          {"bits", m.gptq.bits},
                                                          {"group_size", m.gptq.group_size},
                                                          {"sym", m.gptq.sym},
                                                          {"desc_act", m.gptq.desc_act},
                                                          {"checkpoint_format", m.gptq.checkpoint_format}}},
                    {"moe_layers", layers}});
    return 0;
  }
  auto s = [](const Json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); };
  std::printf("model:      %s (%s)\n", s(model["model_type"]).c_str(), m.source.c_str());
  std::printf("layers:     %lld decoder layers, %zu MoE: ", static_cast<long long>(m.num_hidden_layers),
              m.moe_layers.size());
  for (size_t i = 0; i < m.moe_layers.size(); ++i)
    std::printf("%s%lld", i ? ", " : "", static_cast<long long>(m.moe_layers[i]));
  std::printf("\n");
  std::printf("shape:      H %s, I %s, E %s, K %s, shared width %s%s\n", s(model["hidden_size"]).c_str(),
              s(model["moe_intermediate_size"]).c_str(), s(model["num_experts"]).c_str(),
              s(model["num_experts_per_tok"]).c_str(), s(model["shared_expert_width"]).c_str(),
              model["shared_expert_gated"].get<bool>() ? " (gated)" : "");
  std::printf("routing:    %s, norm_topk_prob %s, groups %s/%s, scaling %s\n", s(model["scoring_func"]).c_str(),
              s(model["norm_topk_prob"]).c_str(), s(model["n_group"]).c_str(), s(model["topk_group"]).c_str(),
              s(model["routed_scaling_factor"]).c_str());
  std::printf("dtype:      %s; quantised: %s\n", s(model["dtype"]).c_str(),
              m.quant_mode == QuantMode::none ? "no" : std::string(quant_mode_name(m.quant_mode)).c_str());
  if (!m.fp8.source.empty()) {
    // What a layer holds (docs/layer.md §7): the one-byte form in a bf16 layer whose blocks fit the kernels'.
    const MoeConfig& c = m.layer;
    const std::string held =
        fp8_weights_kept_one_byte(c, m.fp8)
            ? "held one byte per weight, with an f32 scale per output channel and 128 input channels"
            : "dequantised to " + s(model["dtype"]) + " on load: " +
                  (c.dtype != DType::bf16 ? std::string("the FP8 kernels compute with bf16 weights")
                                          : "blocks of " + std::to_string(m.fp8.block_k) +
                                                " input channels do not fit the kernels' 128");
    std::printf("fp8:        expert weights float8 e4m3 with block scales [%lld, %lld] (%s)\n",
                static_cast<long long>(m.fp8.block_n), static_cast<long long>(m.fp8.block_k), held.c_str());
  }
  if (!m.gptq.source.empty() && m.gptq.quant_method == "awq")
    std::printf("awq:        int4 experts (%s), group size %lld, asymmetric (zero points), version %s; router float\n",
                std::string(quant_mode_name(m.quant_mode)).c_str(), static_cast<long long>(m.gptq.group_size),
                m.gptq.version.c_str());
  else if (!m.gptq.source.empty())
    std::printf("gptq:       int4 experts (%s), group size %lld, %s, desc_act %s, checkpoint_format %s; router float\n",
                std::string(quant_mode_name(m.quant_mode)).c_str(), static_cast<long long>(m.gptq.group_size),
                m.gptq.sym ? "symmetric" : "asymmetric (zero points)", m.gptq.desc_act ? "true" : "false",
                m.gptq.checkpoint_format.c_str());
  std::printf("checkpoint: %s (%zu file(s))\n", dir.c_str(), ck.files().size());
  std::printf("  %6s %-7s %8s %16s %16s\n", "layer", "quant", "tensors", "checkpoint bytes", "resident bytes");
  for (const Json& l : layers)
    std::printf("  %6lld %-7s %8lld %16lld %16lld\n", l["layer"].get<long long>(),
                l["quant_mode"].get<std::string>().c_str(), l["tensors"].get<long long>(),
                l["checkpoint_bytes"].get<long long>(), l["resident_bytes"].get<long long>());
  return 0;
}

}  // namespace moefuse::cli
