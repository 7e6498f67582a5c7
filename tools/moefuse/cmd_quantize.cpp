// `moefuse quantize`: reads one layer of a float checkpoint with a quantised config (MoeLayer::from_checkpoint
// quantises every expert projection per output channel on load, refusing non-finite weights) and writes its
// weights, under the names of layer_checkpoint_tensors (int8 "weight" + f32 "weight_scale"), into one safetensors
// file. With --weights a model folder (config.json beside the checkpoint) and no --config/--preset, it quantises the
// whole model into a folder instead (quantize_folder.cpp).
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "common.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "moefuse/model.h"
#include "quantize_folder.h"

namespace moefuse::cli {
namespace {

struct QuantizeArgs {
  ConfigArgs config;
  std::string weights;
  std::string out;
  std::string mode;  // empty: the config's quant_mode, or w8a8 when it has none
  std::string config_out;
  int64_t layer = 0;
  int threads = 0;
  bool json = false;
  std::string layers;  // whole-model mode only
  bool layer_given = false;
};

int quantize(const QuantizeArgs& a) {
  if (a.config.config_path.empty() && a.config.preset.empty() && is_model_folder(a.weights)) {
    if (a.layer_given)
      throw ValueError("--layer: expected --layers for a model folder (every MoE layer by default), got --layer");
    if (!a.config_out.empty())
      throw ValueError("--config-out: expected no value for a model folder (its config.json is written into --out), "
                       "got " + a.config_out);
    return quantize_folder(QuantizeFolderArgs{a.weights, a.out, a.mode, a.layers, a.threads, a.json});
  }
  if (!a.layers.empty())
    throw ValueError("--layers: expected a model folder as --weights (a directory with config.json) and no "
                     "--config/--preset, got " + a.weights);
  LoadedConfig lc = load_config(a.config);
  MoeConfig& c = lc.config;
  if (!a.mode.empty()) c.quant_mode = a.mode == "w8a8c8" ? QuantMode::w8a8c8 : QuantMode::w8a8;
  else if (c.quant_mode == QuantMode::none) c.quant_mode = QuantMode::w8a8;
  const std::string mode(quant_mode_name(c.quant_mode));
  validate(c, lc.source + " with quant_mode " + mode);
  OutputSet files;
  files.add_input("--config", a.config.config_path);
  files.add_checkpoint("--weights", a.weights);
  files.add_output("--out", a.out);
  files.add_output("--config-out", a.config_out);

  LayerOptions o;
  o.threads = a.threads;
  const Checkpoint ck(a.weights);
  const MoeLayer layer = MoeLayer::from_checkpoint(c, ck, a.layer, o);
  const NamedTensors tensors = layer_checkpoint_tensors(c, layer.weights(), a.layer);
  int64_t bytes = 0;
  for (const auto& [name, t] : tensors) bytes += t.numel() * int64_t(t.element_size());
  write_safetensors(files.staging("--out"), tensors, {{"format", "pt"}, {"moefuse_quant_mode", mode}});
  if (!a.config_out.empty()) write_config_file(files.staging("--config-out"), c);
  files.commit();

  const std::string prefix = layer_checkpoint_prefix(c, a.layer);
  if (a.json) {
    Json j{{"command", "quantize"},
           {"version", MOEFUSE_VERSION},
           {"model", describe_model(lc)},
           {"input", Json{{"path", a.weights}, {"layer", a.layer}}},
           {"quant_mode", mode},
           {"output", a.out},
           {"config_output", a.config_out.empty() ? Json(nullptr) : Json(a.config_out)},
           {"tensors", tensors.size()},
           {"data_bytes", bytes}};
    print_json(j);
    return 0;
  }
  std::printf("model:      %s (%s)\n", std::string(model_type_name(c.model_type)).c_str(), lc.source.c_str());
  std::printf("read:       layer %lld of %s\n", static_cast<long long>(a.layer), a.weights.c_str());
  std::printf("quantised:  %s, int8 weights with one f32 scale per output channel\n", mode.c_str());
  std::printf("wrote:      %s: %zu tensors, %lld bytes of data, names %s.*\n", a.out.c_str(), tensors.size(),
              static_cast<long long>(bytes), prefix.c_str());
  if (!a.config_out.empty()) std::printf("config:     %s (quant_mode %s)\n", a.config_out.c_str(), mode.c_str());
  std::printf("run it:     moefuse run --weights %s --layer %lld --config <a config with quant_mode: %s>\n",
              a.out.c_str(), static_cast<long long>(a.layer), mode.c_str());
  return 0;
}

}  // namespace

void add_quantize_command(CLI::App& app, int& status) {
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantise a model folder's MoE layers, or one layer of a checkpoint, to int8 (per output channel)");
  auto a = std::make_shared<QuantizeArgs>();
  add_config_options(cmd, a->config);
  cmd->add_option("--weights", a->weights,
                  "The float checkpoint (file, index or directory); a model folder (with config.json) and no "
                  "--config/--preset: the whole model")
      ->required();
  cmd->add_option("--out", a->out, "The safetensors file to write (a model folder: the folder to write)")->required();
  cmd->add_option("--mode", a->mode, "w8a8 or w8a8c8 (default: the config's quant_mode, else w8a8)")
      ->check(CLI::IsMember({"w8a8", "w8a8c8"}));
  CLI::Option* layer = cmd->add_option("--layer", a->layer, "Layer index (default 0); the output keeps it in its names")
      ->check(integer_at_least(0));
  cmd->add_option("--layers", a->layers,
                  "Model folder: the MoE layers to quantise, e.g. 3,5-7 (default: every MoE layer)");
  cmd->add_option("--config-out", a->config_out, "Also write the config with quant_mode set, as YAML");
  cmd->add_option("--threads", a->threads, "Threads (default 0: every core)")->check(integer_at_least(0));
  cmd->add_flag("--json", a->json, "Print one JSON object instead of text");
  cmd->callback([a, layer, &status] {
    a->layer_given = layer->count() > 0;
    status = quantize(*a);
  });
}

}  // namespace moefuse::cli
